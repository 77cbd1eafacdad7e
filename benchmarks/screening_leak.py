"""How much of a pair's signal the faint mains of a working set take from its test when they
are chosen on the same margins, and whether cross-fitting the mains gets it back: a simulation
of the dense-tail game's selection (issue 31).

    .venv/bin/python -m benchmarks.screening_leak --draws 3

``players`` Bernoulli(1/2) players on ``models`` masks; every player a faint main ``N(0, 0.01)``,
``n_mains`` of them ``N(0, 0.1)`` more, and ``pairs`` redundant pairs (mains 0.3, pair -0.3), plus
noise. :func:`leak_shares`: a working set of ``working_set`` players chosen as a screening would
(largest ``|<x_i - mean_i, y>|``) and, beside it, as many players at random; the share of each
pair's numerator ``<c_S, r>`` that one coordinate step of their mains (the pair test's "other
mains unshrunk" model) takes. With independent masks it is the span's share of ``c_S``, about
``working_set / models``, for random players; players chosen on ``y`` were each chosen partly for
the pairs' signal (a bias too small to see in any one of them) and together take much more.
:func:`statistics`: the pairs' statistics under models of the mains from the members alone to
the oracle.
"""

import argparse

import numpy as np

from benchmarks.harness import pin_threads, save_results

_BLOCK = 5000  # players converted to float at a time


class Game:
    """One draw: masks ``X`` (bool ``[models, players]``), margins ``y``, the pairs' members."""

    def __init__(self, rng, models: int, players: int, n_mains: int, pairs: int, noise: float):
        self.X = rng.random((models, players), dtype=np.float32) < 0.5
        beta = rng.normal(0, 0.01, players)
        beta[:n_mains] += rng.normal(0, 0.1, n_mains)
        self.pairs = np.arange(n_mains, n_mains + 2 * pairs).reshape(pairs, 2)
        self.members, self.n_mains = self.pairs.ravel(), n_mains
        beta[self.members] = 0.3
        y = sum(self.X[:, s:s + _BLOCK].astype(np.float32) @ beta[s:s + _BLOCK].astype(np.float32)
                for s in range(0, players, _BLOCK)).astype(float)
        self.y = y + sum(-0.3 * (self.X[:, a] & self.X[:, b]) for a, b in self.pairs) + rng.normal(0, noise, models)

    def screened(self, rows: np.ndarray, k: int) -> np.ndarray:
        """The ``k`` players a screening of ``rows`` keeps: largest ``|<x_i - mean_i, y>|``."""
        X, y = self.X[rows], self.y[rows] - self.y[rows].mean()
        score = np.abs(np.concatenate([X[:, s:s + _BLOCK].T.astype(np.float32) @ y.astype(np.float32)
                                       for s in range(0, X.shape[1], _BLOCK)]))
        return np.argsort(-score)[:k]

    def pair_columns(self, rows: np.ndarray) -> np.ndarray:
        """The pairs' centred columns ``c_S`` on ``rows``."""
        X = self.X[rows]
        mean = X.mean(axis=0, dtype=float)
        return np.column_stack([(X[:, a] - mean[a]) * (X[:, b] - mean[b]) for a, b in self.pairs])

    def residual(self, rows: np.ndarray, others: np.ndarray, coef=None) -> np.ndarray:
        """``y`` on ``rows`` less least squares on the members, with the ``others`` held at ``coef``
        (least squares on ``rows`` with the members when None)."""
        others = np.setdiff1d(others, self.members)
        if coef is None:
            coef = self.least_squares(rows, others)[:len(others)]
        target = self.y[rows] - self.X[np.ix_(rows, others)] @ coef
        return target - self.design(rows, self.members) @ np.linalg.lstsq(self.design(rows, self.members), target,
                                                                          rcond=None)[0]

    def least_squares(self, rows: np.ndarray, others: np.ndarray) -> np.ndarray:
        """Coefficients of ``others`` then the members (then the intercept) by least squares on ``rows``."""
        others = np.setdiff1d(others, self.members)
        F = self.design(rows, np.concatenate([others, self.members]))
        return np.linalg.lstsq(F, self.y[rows], rcond=None)[0]

    def design(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        return np.column_stack([self.X[np.ix_(rows, cols)], np.ones(len(rows))]).astype(float)


def leak_shares(game: Game, working_set: int, rng) -> dict:
    """The share of each pair's numerator ``<c_S, r>`` that one coordinate step of the other mains
    of a working set takes, for a set screened on the margins and for random players."""
    rows = np.arange(len(game.y))
    c = game.pair_columns(rows)
    r = game.residual(rows, np.empty(0, dtype=np.int64))
    numerators = c.T @ r
    out = {}
    for name, chosen in (("screened", game.screened(rows, working_set)),
                         ("random", rng.choice(game.X.shape[1], working_set, replace=False))):
        others = np.setdiff1d(chosen, game.members)
        X = game.X[:, others].astype(np.float32)
        X -= X.mean(axis=0)
        step = X @ ((X.T @ r.astype(np.float32)) / np.einsum("ij,ij->j", X, X))
        out[f"taken, {name}"] = float(np.mean((c.T @ step) / numerators))
    return out


def statistics(game: Game, strongest: int, working_set: int, rng) -> dict:
    """Mean ``|z|`` of the pairs (``<c_S, r> / (sigma ||c_S||)``, ``sigma`` the residual's rms)
    under: the members alone; least squares on the ``strongest`` players a screening keeps, in
    sample (what the tests' model does with its strong mains); the same cross-fitted (screened
    and fitted on one half of the models, the pairs scored on the other, both ways); a stable
    support (the players both halves' screenings keep among their ``working_set`` strongest),
    fitted on all models; and the oracle, least squares on the game's ``n_mains`` true mains."""
    rows = np.arange(len(game.y))
    halves = np.array_split(rng.permutation(rows), 2)
    stable = np.intersect1d(*(game.screened(half, working_set) for half in halves))

    def z(parts):
        columns = [(game.pair_columns(r), res) for r, res in parts]
        num = sum(c.T @ res for c, res in columns)
        norms = np.sqrt(sum((c * c).sum(axis=0) for c, _ in columns))
        sigma = np.sqrt(sum(res @ res for _, res in parts) / len(game.y))
        return float(np.mean(np.abs(num) / (sigma * norms)))

    def cross_fitted(fit_rows, test_rows):
        others = np.setdiff1d(game.screened(fit_rows, strongest), game.members)
        return test_rows, game.residual(test_rows, others, game.least_squares(fit_rows, others)[:len(others)])

    return {"members only": z([(rows, game.residual(rows, np.empty(0, dtype=np.int64)))]),
            "in sample": z([(rows, game.residual(rows, game.screened(rows, strongest)))]),
            "cross-fitted": z([cross_fitted(*halves), cross_fitted(*halves[::-1])]),
            "stable": z([(rows, game.residual(rows, stable))]),
            "stable support": len(stable), "stable true mains": int(np.sum(stable < game.n_mains)),
            "oracle": z([(rows, game.residual(rows, np.arange(game.n_mains)))])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--draws", type=int, default=3)
    parser.add_argument("--models", type=int, default=8000)
    parser.add_argument("--players", type=int, default=50000)
    parser.add_argument("--working-set", type=int, default=1000)
    parser.add_argument("--strongest", type=int, default=140, help="mains fitted by least squares (the strong ones)")
    parser.add_argument("--n-mains", type=int, default=500)
    parser.add_argument("--pairs", type=int, default=6)
    parser.add_argument("--noise", type=float, default=1.3)
    args = parser.parse_args()
    pin_threads()
    rows = []
    for seed in range(args.draws):
        rng = np.random.default_rng(seed)
        game = Game(rng, args.models, args.players, args.n_mains, args.pairs, args.noise)
        row = {"draw": seed} | leak_shares(game, args.working_set, rng) | statistics(game, args.strongest, args.working_set, rng)
        rows.append(row)
        print(f"draw {seed}: share of the pairs' numerators one step of the other mains takes: screened on the "
              f"margins {row['taken, screened']:.0%}, random players {row['taken, random']:.0%}; mean |z|: "
              + ", ".join(f"{k} {row[k]:.2f}" for k in ("members only", "in sample", "cross-fitted", "stable", "oracle"))
              + f" (a stable support of {row['stable support']}, {row['stable true mains']} of them true mains)")
    save_results("screening_leak", rows)


if __name__ == "__main__":
    main()
