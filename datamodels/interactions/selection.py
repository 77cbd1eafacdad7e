"""Which proposed interactions enter a target's model: forward selection with familywise tests.

The third step of :class:`.ProxySPEX`. Rounds. Each round ranks the proposals against the
residual ``r`` of the current model (the mains and the interactions accepted so far) by
``|<r, c_S>| / ||c_S||``, takes the top ``n_candidates`` with their sub-terms one member
smaller, and tests each: ``z_S = <r, c_S> / (sigma ||c_S||)``. Here
``c_S = prod_{i in S} (x_i - mean_i)`` is the part of ``S`` that its sub-terms cannot explain
(orthogonal to every other such feature for independent mask entries, at any alpha), and
``sigma^2 = RSS / (m - terms - 1)``, times the design effect of models that share a mask
(:func:`.design_effect`: a mask's seeds share what the mask decides and no term explains, such
as a dense tail of faint mains outside the working set). Passing terms enter and the model is
refitted: strong terms leave the residual first, and weaker ones are judged against less
unexplained signal.

The current model fits the accepted terms, the clearly non-zero mains and the terms' members by
least squares, unshrunk, so that a term in the model leaves none of its signal to its sub-terms'
tests (with the L1 fit instead, a noiseless sum of unanimity games, n = 60, 10^4 masks, came
back with 62 false sub-pairs of its triples, each at about 0.005). The other mains stay at the
Lasso's values at the linear datamodel's penalty (a coordinate step from the current model each
time terms enter). Least squares on all of the working set's mains, as before, took the real
pairs' signal away: the working set is chosen on the same margins, and on a dense-tail game
(n = 50,000, 8,000 distinct masks, ~1,100 mains kept) planted pairs scored 2.1, 2.1 and 3.5
where this model gives 4.1, 4.2 and 5.3, null pairs at unit scale under both
(``benchmarks/tail_pair_statistics.py``).

When nothing passes, in this order: a proposal may replace two or more of its accepted
sub-terms if it alone fits at least as well (what a real triple leaves on its pairs while its
own test is out of reach); every proposal is ranked again against the current residual (a
term masked by the others at the start may stand out now); new trees are grown on the
residual. Selection ends when the trees' proposals bring nothing that passes. Accepted terms
that differ in one member propose their union (``{i,j}`` and ``{j,l}`` give ``{i,j,l}``): trees
grown on a residual cannot propose a pure higher-order part whose sub-terms the model already
holds (nothing is left to split on), but a real triple's pairs name it.

Sub-terms are judged on their own evidence: a passing term whose passing superset has not
entered yet waits one round, so that it is tested against a model that contains the superset
(``x_i x_j x_k`` carries ``mean_k c_ij``, as detectable as the pair's own signal, until the
triple is in the model). At the end, each accepted term with an accepted superset, and each
merged term whose replaced sub-terms all came back, is tested again without itself and dropped
if it fails. (Before, every subset of an accepted term was kept out for good: a hierarchical
triple came back as the triple alone, at 0.80 for a true 0.5, with its pairs at 0, at any
number of models.)

Multiplicity: a term's statistic does not depend on which other terms were proposed or in which
round, so the trees' and the ranking's choices on the same data are covered by correcting for
every subset of its order, ``C(n, k)``. ``level / (max_order - 1)`` per order is shared by that
family and, equally, by smaller ones a term may belong to (a union bound): the hereditary
family, terms all of whose members have clearly non-zero main effects (familywise over the
``n`` mains), ``C(n_strong, k)`` of them; and for ``k >= 3`` the extensions of accepted terms of
order ``k - 1``, ``n - k + 1`` each. The mains' statistics use features orthogonal to the terms'
(independent entries), so choosing a family this way does not bias the terms' tests; and in
retraining games the near-duplicates and complements that interact are examples that matter
alone too. A joint L1 fit over all candidates, debiased, was tried first: its estimates of null
candidates were inflated by the other candidates, and 2-6 false pairs per target got through
on planted games.

With ``error_rate="fdr"`` the tests control the false discovery rate instead, with the same
families and shares as above: in each family (all ``C(n, k)`` terms, the hereditary ones, the
extensions) Benjamini and Hochberg's step-up over the family's size (a term not tested counts
as a p-value of 1), counting the family's terms already accepted as discoveries, so that each
round's threshold is ``p <= share (accepted + r) / size`` for its ``r``-th smallest p-value; a
term passes in any family it belongs to. The hub families keep their familywise share. Where a target has many real terms the threshold falls with
every one accepted; where it has none it is the familywise one.
"""

from __future__ import annotations

from math import comb

import numpy as np
from scipy.stats import chi2, norm

from ..packed import bool_t_dot
from .lasso import GramLasso
from .spectra import _PAD, _design_matrix
from .term_keys import best, completions, has_superset, merge_candidates, rows_in, with_subterms
from .term_scores import CentredTerms, scored
from .term_tests import design_effect, mask_groups, step_up, z_bonferroni

# Proposals kept for re-ranking (their centred features at hand), per candidate tested in a round.
_POOL_PER_CANDIDATE = 5
# Hubs (players of strongest main effect) whose families of pairs are tested together, and
# the largest family, as a share of the models, whose squared statistics add up to chi-squared.
MAX_HUBS, _FAMILY_SHARE = 20, 0.05
# Times new trees are grown on the residual when the proposals run dry, and times every
# proposal is ranked again against the current residual when the pool runs dry.
MAX_TREE_ROUNDS, MAX_RERANKS = 5, 4
# The smallest noise scale a test assumes, relative to the margin's standard deviation: below
# it a residual is rounding (a noiseless game fitted exactly), and tests against it would pass
# anything.
_RESOLUTION = 1e-6


class Selection:
    """One target's selection (see the module docstring). ``run()`` returns the accepted
    interactions (key rows over the columns of ``X``), their columns in ``gram`` and their test
    statistics when they entered.

    ``X``: bool ``[m, n]``, the players whose interactions are proposed and tested (the
    screened ones); ``gram``: the target's :class:`.GramLasso`, whose first ``mains`` columns are
    the working set's main effects (the screened players first); ``linear``: the linear
    datamodel's ``(penalty, coef, intercept)`` on those mains; ``propose(y)``: interactions of
    trees fitted to ``y``, as key rows ``max_order`` wide.
    """

    def __init__(self, X: np.ndarray, y: np.ndarray, gram: GramLasso, mains: int, linear, propose,
                 max_order: int, n_candidates: int, level: float, error_rate: str = "fwer"):
        self.X, self.gram, self.linear, self.propose = X, gram, linear, propose
        self.max_order, self.n_candidates = max_order, n_candidates
        self.centred = CentredTerms(X)
        self.mains = np.arange(mains)
        self.spread = y.std()
        self.per_order = level / max(max_order - 1, 1)
        self.error_rate = error_rate
        self.accepted = np.empty((0, max_order), dtype=np.int64)
        self.columns = np.empty(0, dtype=np.int64)  # of the accepted terms, in gram
        self.z: list[float] = []
        self.tested, self.tried, self.by_merge, self.tree_rounds = set(), set(), {}, 0
        self.groups, self.distinct = mask_groups(X)
        self.level, self.main_z, self.held = level, None, linear[1].copy()  # held: main values outside ``free``
        coef = linear[1]
        self.judge_mains(gram.residual(self.mains, coef, linear[2]), coef, int(np.count_nonzero(coef)))
        self.proposals = propose(y)

    def judge_mains(self, resid: np.ndarray, coef: np.ndarray, terms: int) -> None:
        """Which mains are clearly non-zero, from a model's residual, its main coefficients
        ``coef`` and its number of ``terms``: one-step debiased estimates (the coefficient plus
        what the residual still holds along the main), familywise over ``n``.

        They name the hereditary family of interactions, and they are the mains the tests'
        model fits by least squares; the others are held at Lasso values (module docstring). Judged again whenever terms enter: a model that explains more has a smaller
        noise scale, and more mains are clearly non-zero (in the end every main of a noiseless
        game). A main keeps its largest statistic: once a player's interactions are in the
        model, its own coefficient may be small (a unanimity game's player), and its other
        interactions still belong to the family it named.
        """
        m, n = self.X.shape
        mean = self.centred.mean
        norm = np.sqrt(m * mean * (1 - mean))  # of the centred 0/1 columns
        along = bool_t_dot(self.X, resid[:, None])[:, 0] - mean * resid.sum()
        safe = np.where(norm > 0, norm, 1)
        debiased = coef[:n] + along / safe**2
        z = np.abs(debiased) * norm / self.noise(resid, terms)
        self.main_z = z if self.main_z is None else np.maximum(self.main_z, z)
        self.strong = self.main_z > z_bonferroni(self.level, n)
        # Their gram columns (the screened players come first), and the members of accepted terms:
        # held at its linear value, a member's main would keep the term's own share of it.
        members = self.accepted[self.accepted != _PAD]
        self.free = np.union1d(np.flatnonzero(self.strong), members)
        # The others: a coordinate step of the Lasso at the linear datamodel's penalty from this
        # model (the soft-thresholded debiased estimate), so that a main whose share the terms
        # now explain goes to zero (a noiseless game's null players) rather than keeping a value
        # fitted when they were out of the model.
        self.held[:n] = np.sign(debiased) * np.maximum(np.abs(debiased) - self.linear[0] * m / safe**2, 0.0)
        self.held[self.free] = 0.0

    def model(self, columns: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
        """The tests' model with the terms in those ``gram`` columns: the terms, the strong mains
        and the terms' members by least squares, the other mains held (:meth:`judge_mains`). Its
        residual, its coefficients of the mains, and its number of terms."""
        support, weak = np.concatenate([self.free, columns]), np.flatnonzero(self.held)
        coef, intercept = self.gram.ols(support, fixed=(weak, self.held[weak]))
        resid = self.gram.residual(np.concatenate([support, weak]), np.concatenate([coef, self.held[weak]]), intercept)
        mains = self.held.copy()
        mains[self.free] = coef[:len(self.free)]
        return resid, mains, len(support) + len(weak)

    def fit(self, columns: np.ndarray) -> tuple[np.ndarray, float]:
        """Residual and noise scale of the tests' model with the terms in those ``gram`` columns."""
        resid, _, terms = self.model(columns)
        return resid, self.noise(resid, terms)

    def noise(self, resid: np.ndarray, terms: int) -> float:
        """The tests' noise scale: ``sqrt(RSS / (m - terms - 1))`` times the design effect, and
        not below the resolution of the margins."""
        rss = resid @ resid
        sigma = np.sqrt(rss / (len(resid) - terms - 1) * design_effect(resid, self.groups, rss))
        return max(sigma, _RESOLUTION * self.spread)

    def passes(self, keys: np.ndarray, z: np.ndarray, accepted: np.ndarray) -> np.ndarray:
        """Bool per term of ``keys`` with statistic ``z``: does it pass in one of the families it
        belongs to (:meth:`families`), each at a third of its order's level, with the terms
        ``accepted`` in the model (the discoveries that false-discovery control counts)?"""
        if self.error_rate == "fwer":
            return z > self.critical(keys)
        orders, held = (keys != _PAD).sum(axis=1), (accepted != _PAD).sum(axis=1)
        out = np.zeros(len(keys), dtype=bool)
        for k in np.unique(orders):
            at = np.flatnonzero(orders == k)
            for (size, inside), (_, known) in zip(self.families(int(k), keys[at]),
                                                  self.families(int(k), accepted[held == k])):
                if inside.any():
                    out[at[inside]] |= step_up(2 * norm.sf(z[at[inside]]), self.per_order / 3, size, int(known.sum()))
        return out

    def critical(self, keys: np.ndarray) -> np.ndarray:
        """Per term: the familywise critical value, the lowest among the families it belongs to."""
        orders = (keys != _PAD).sum(axis=1)
        crit = np.full(len(keys), np.inf)
        for k in np.unique(orders):
            at = np.flatnonzero(orders == k)
            for size, inside in self.families(int(k), keys[at]):
                if inside.any():
                    crit[at[inside]] = np.minimum(crit[at[inside]], z_bonferroni(self.per_order / 3, size))
        return crit

    def families(self, k: int, keys: np.ndarray) -> list[tuple[int, np.ndarray]]:
        """The families of terms of order ``k``, each tested at a third of the order's level:
        ``(size, bool per row of keys: in it)`` for all ``C(n, k)`` terms, the hereditary ones
        (all members clearly non-zero mains) and, for ``k >= 3``, the extensions of accepted
        terms of order ``k - 1``."""
        n, n_strong = self.X.shape[1], int(self.strong.sum())
        sets = [frozenset(row[row != _PAD].tolist()) for row in keys]
        out = [(comb(n, k), np.ones(len(keys), dtype=bool)),
               (comb(n_strong, k), np.array([self.strong[list(s)].all() for s in sets], dtype=bool))]
        parents = [frozenset(row[row != _PAD].tolist()) for row in self.accepted if (row != _PAD).sum() == k - 1]
        if k > 2:
            out.append((len(parents) * (n - k + 1), np.array([any(p < s for p in parents) for s in sets], dtype=bool)))
        return out

    def rank(self, resid: np.ndarray):
        """The proposals most worth a look against ``resid``, with their centred features: the
        pool each round re-ranks."""
        keys = self.proposals[~rows_in(self.proposals, self.accepted)]
        keys = best(keys, self.centred.scores(keys, resid, sample=True), _POOL_PER_CANDIDATE * self.n_candidates)
        return (keys, *self.centred.features(keys))

    def accept(self, terms: np.ndarray, z: np.ndarray) -> None:
        # Hierarchy: accepted terms that share all members but one propose their union.
        self.proposals = np.concatenate([self.proposals, completions(self.accepted, terms, self.max_order)])
        self.accepted = np.concatenate([self.accepted, terms])
        self.z.extend(z)
        self.columns = np.concatenate([self.columns, self.gram.add_columns(_design_matrix(self.X, terms) > 0)])
        self.judge_mains(*self.model(self.columns))

    def run(self) -> tuple[np.ndarray, np.ndarray, list[float]]:
        resid, _ = self.fit(self.columns)
        pool, reranks = self.rank(resid), 0
        fresh_pool = grown = True  # this pool was ranked against this residual; trees just grown
        while True:
            resid, sigma = self.fit(self.columns)
            keys, features, norms = pool
            fresh = ~rows_in(keys, self.accepted)
            top = best(keys[fresh], scored(features[fresh], norms[fresh], resid), self.n_candidates)
            candidates = with_subterms(top)
            candidates = candidates[~rows_in(candidates, self.accepted)]
            self.tested.update(map(tuple, candidates.tolist()))
            z = self.centred.scores(candidates, resid) / sigma
            passing = self.passes(candidates, z, self.accepted)
            new = passing & ~has_superset(candidates, passing)
            if new.any():
                self.accept(candidates[new], z[new])
                fresh_pool = grown = False
            elif self.merge(candidates, resid, sigma) or self.hub_pair(resid, sigma):
                fresh_pool = grown = False
            elif not fresh_pool and reranks < MAX_RERANKS:
                pool, fresh_pool, reranks = self.rank(resid), True, reranks + 1
            elif grown or self.tree_rounds == MAX_TREE_ROUNDS:
                break
            else:
                extra = self.propose(resid)
                extra = extra[~rows_in(extra, self.proposals)]
                if not len(extra):
                    break
                self.proposals = np.concatenate([self.proposals, extra])
                pool, self.tree_rounds, grown = self.rank(resid), self.tree_rounds + 1, True
        keep = self.prune()
        return self.accepted[keep], self.columns[keep], [z for z, k in zip(self.z, keep) if k]

    def merge(self, candidates: np.ndarray, resid: np.ndarray, sigma: float) -> bool:
        """Put one candidate in place of two or more of its accepted sub-terms when it alone fits
        at least as well; whether one was.

        Several accepted sub-terms of one candidate are what a real higher-order term leaves on
        them while its own test is still out of reach (a pure triple shows as its three pairs at
        ``alpha`` times its size): fewer terms, no worse a fit. The sub-terms are not locked
        out: each is tested again, on its own evidence, against the model with the merged term.
        """
        for row, parts in merge_candidates(candidates, self.accepted):
            attempt = (tuple(row.tolist()), tuple(np.flatnonzero(parts)))
            if attempt in self.tried:
                continue
            self.tried.add(attempt)
            column = self.gram.add_columns(_design_matrix(self.X, row[None]) > 0)
            trial, _ = self.fit(np.concatenate([self.columns[~parts], column]))
            if trial @ trial <= resid @ resid:
                self.by_merge[tuple(row.tolist())] = {tuple(r) for r in self.accepted[parts].tolist()}
                self.accepted = np.concatenate([self.accepted[~parts], row[None]])
                self.columns = np.concatenate([self.columns[~parts], column])
                self.z = [v for v, part in zip(self.z, parts) if not part] + [
                    self.centred.scores(row[None], resid)[0] / sigma]
                return True
        return False

    def hub_pair(self, resid: np.ndarray, sigma: float) -> bool:
        """Accept the strongest pair of a hub whose pairs not yet in the model are jointly
        significant; whether one was.

        A hub is a player with a clearly non-zero main effect; its family is every pair it
        forms. Real retraining games are stars: a target's own class interacts with every other
        class, each pair too weak to pass alone at a few hundred models (|z| near 2 against a
        critical value near 3.6) and the family far beyond chance together. Under the null the
        family's centred pair features are uncorrelated (independent mask entries), so the
        sum of their squared statistics is chi-squared with one degree per pair, tested at a
        third of the pairs' level, shared among the hubs in proportion to their squared main
        statistics (a weighted Bonferroni; the weights come from the mains, whose statistics are
        orthogonal to the pairs', so they do not bias the test): a target's own class, far
        stronger than the rest, gets most of it. A family that passes gives up its
        strongest pair, and is tested again against the refitted model: pairs enter one at a
        time while what is left of the family stays significant.
        """
        hubs = np.flatnonzero(self.strong)
        m, n = self.X.shape
        # The family's pair features are near orthogonal only while they are few against the
        # models: with n - 1 >= m they span every residual, and the sum would pass for noise
        # (n = 1,000 players, 500 models: 13 false pairs of one hub before this bound). Models
        # that repeat a mask add no direction, so the bound counts distinct masks.
        if not len(hubs) or self.max_order < 2 or n - 1 > self.distinct * _FAMILY_SHARE:
            return False
        weights = self.main_z[hubs] ** 2 / (self.main_z[hubs] ** 2).sum()
        order = np.argsort(-weights, kind="stable")[:MAX_HUBS]
        hubs, weights = hubs[order], weights[order]
        z = self.centred.hub_pairs(hubs, resid) / sigma  # [hubs, n]
        pairs = {tuple(sorted(row[row != _PAD].tolist())) for row in self.accepted if (row != _PAD).sum() == 2}
        for h, (hub, weight) in enumerate(zip(hubs, weights)):
            open_ = np.array([j != hub and (min(j, hub), max(j, hub)) not in pairs for j in range(len(z[h]))])
            if open_.any() and (z[h, open_] ** 2).sum() > chi2.isf(self.per_order / 3 * weight, open_.sum()):
                j = int(np.flatnonzero(open_)[np.argmax(z[h, open_])])
                key = np.full((1, self.max_order), _PAD, dtype=np.int64)
                key[0, -2:] = sorted((int(hub), j))
                self.accept(key, z[h, j:j + 1])
                return True
        return False

    def prune(self) -> np.ndarray:
        """Bool over the accepted terms: those that pass again against the model without them,
        for every term with an accepted superset and every merged term whose replaced
        sub-terms all came back (the others keep their place)."""
        keep = np.ones(len(self.accepted), dtype=bool)
        rows = {tuple(row) for row in self.accepted.tolist()}
        merged = np.array([row in self.by_merge and self.by_merge[row] <= rows
                           for row in map(tuple, self.accepted.tolist())], dtype=bool)
        for i in np.flatnonzero(has_superset(self.accepted, keep) | merged):
            keep[i] = False
            resid, sigma = self.fit(self.columns[keep])
            term = self.accepted[i:i + 1]
            keep[i] = self.passes(term, self.centred.scores(term, resid) / sigma, self.accepted[keep])[0]
        return keep
