"""Tables of the fitted terms: every term's strength in units of its target's residual sd
(:func:`term_strength`), triples judged as groups (:func:`judge_triples`), the strongest terms,
pairs and targets with their players named, and the counts and class patterns of the terms; a
target's margins over the sweep (:func:`target_summary`); and the sentence that concludes on the
strongest terms of a kind (:func:`kind_conclusion`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa

from ..fit.results import default_engine, fitted_metrics, residual_sd
from ..renamed import renamed_keyword
from ..sweep.run_data import AnalysisError
from .run_view import RunView

KINDS = ("main", "synergy", "redundancy")


@renamed_keyword("method", "engine")
def term_strength(view: RunView, engine: str | None = None, orders=(1, 2, 3)) -> pd.DataFrame:
    """Every fitted term of ``engine`` of the given orders, with ``strength = |m(S)| / tau_t``: its
    size in units of its target's residual sd (:func:`residual_sd`), so that a term of a target
    the fit explains well and one of a noisy target are compared on the scale of what each
    target's fit can be trusted to. Only the terms it may state (:meth:`RunView.terms` with
    ``claims=True``: not ProxySPEX's untested interactions)."""
    engine = engine or default_engine(view)
    tau = residual_sd(view, engine)
    rows = judge_triples(view, view.terms(engine=engine, orders=orders, members=False, claims=True), engine)
    return rows.assign(strength=rows["mobius"].abs().to_numpy() / tau.reindex(rows["target"]).to_numpy())


def _members(view: RunView, rows: pd.Index, order: int) -> np.ndarray:
    """The members of the table's ``rows`` (all of one ``order``), sorted, as ``[len(rows), order]`` ints."""
    members = view.interactions_arrow.column("members").take(pa.array(rows, pa.int64())).combine_chunks()
    return np.sort(members.flatten().to_numpy(zero_copy_only=False).astype(np.int64).reshape(len(rows), order), 1)


def judge_triples(view: RunView, rows: pd.DataFrame, engine: str) -> pd.DataFrame:
    """``rows`` (of :meth:`RunView.terms`) with each triple's ``kind`` judged as a group, the
    fit's own label kept in ``fit_kind``.

    The fit labels a triple ``S`` as it labels a pair: ``m(S)`` against the sum of its members'
    main effects ``M``. For a triple that misreads the commonest pattern: three look-alikes of
    which any one suffices (``f = 1 - (1-x_a)(1-x_b)(1-x_c)``) have ``m = +1`` on each member,
    ``-1`` on each pair and ``+1`` on the triple, whose sign agrees with ``M``: the fit calls the
    triple synergy while its pairs, rightly, are redundancy. So the views judge a triple by the
    pair rule (:func:`~datamodels.interactions.interaction_table`: same sign as the main effects:
    synergy; opposite: redundancy) applied to the whole group and to its parts:

    - **synergy**: ``m(S)`` has the sign of ``M`` (the fit's label) and none of its fitted pairs
      is redundant: the three do more together, and no two of them cover for each other;
    - **redundancy**: the group's whole interaction, ``m(S)`` plus its fitted pairs' ``m``, has
      the sign opposite to ``M``: together they do less than the sum of their main effects (the
      look-alikes above: ``+1 - 3 = -2`` against ``M = 3``);
    - **mixed**: neither (e.g. a synergy pair whose triple takes part of it back); shown under
      neither caption.
    """
    triples = rows.index[rows["order"].to_numpy() == 3]
    if len(triples) == 0:
        return rows
    members = _members(view, triples, 3)
    targets = rows.loc[triples, "target"].to_numpy(np.int64)
    lower = view.terms(engine=engine, orders=[1, 2], members=False, claims=True)
    lower = lower[lower["target"].isin(np.unique(targets))]
    mains, pairs = lower[lower["order"] == 1], lower[lower["order"] == 2]
    main = pd.Series(mains["mobius"].to_numpy(), index=pd.MultiIndex.from_arrays(
        [mains["target"].to_numpy(np.int64), _members(view, mains.index, 1)[:, 0]]))
    pair_members = _members(view, pairs.index, 2)
    pair_index = pd.MultiIndex.from_arrays([pairs["target"].to_numpy(np.int64), pair_members[:, 0],
                                            pair_members[:, 1]])
    pair = pd.Series(pairs["mobius"].to_numpy(), index=pair_index)
    redundant_pair = pd.Series((pairs["kind"] == "redundancy").to_numpy(), index=pair_index)
    net = sum(main.reindex(pd.MultiIndex.from_arrays([targets, members[:, c]])).fillna(0.0).to_numpy()
              for c in range(3))
    sub = [pd.MultiIndex.from_arrays([targets, members[:, a], members[:, b]]) for a, b in ((0, 1), (0, 2), (1, 2))]
    group = rows.loc[triples, "mobius"].to_numpy(float) + sum(pair.reindex(i).fillna(0.0).to_numpy() for i in sub)
    any_redundant = np.any([redundant_pair.reindex(i).fillna(False).to_numpy(bool) for i in sub], axis=0)
    fit_kind = rows.loc[triples, "kind"].to_numpy()
    kind = np.where((fit_kind == "synergy") & ~any_redundant, "synergy",
                    np.where(group * net < 0, "redundancy", "mixed"))
    out = rows.assign(fit_kind=rows["kind"])
    out.loc[triples, "kind"] = kind
    return out


@renamed_keyword("method", "engine")
def strongest_pair(view: RunView, kind: str, engine: str | None = None,
                   strength: pd.DataFrame | None = None) -> pd.Series | None:
    """The pair of ``kind`` (synergy or redundancy, by the fit's pair rule) whose ``|m|`` is
    largest in units of its target's residual sd (:func:`term_strength`; ``strength``: its table,
    when the caller has it), named; None when the fit has none. The fit's console summary
    (:func:`datamodels.fit.outputs.summary`) and the report name the same pair."""
    rows = term_strength(view, engine, orders=(2,)) if strength is None else strength
    rows = rows[(rows["order"] == 2) & (rows["kind"] == kind)]
    if rows.empty:
        return None
    top = _named(view, rows.loc[[rows["strength"].idxmax()]]).iloc[0]
    return top


def pair_sentence(view: RunView, kind: str, row: pd.Series | None, engine: str) -> str:
    """One sentence naming the strongest pair of ``kind`` (:func:`strongest_pair`)."""
    if row is None:
        return f"the {engine} fit has no {kind} pair"
    members = ", ".join(str(int(p)) for p in row["members"])
    return (f"the strongest {kind} pair ({engine}, by |m| / residual sd) is players [{members}] on "
            f"{view.target_name(int(row['target']))}: {row['players']}, m = {row['mobius']:+.3f}, "
            f"{row['strength']:.2f} residual sd")


def _named(view: RunView, rows: pd.DataFrame) -> pd.DataFrame:
    """``rows`` (of :meth:`RunView.terms`) with their members, and the players' classes and names
    (``player 123 (class 4)``)."""
    if "members" not in rows:
        members = view.interactions_arrow.column("members").take(pa.array(rows.index, pa.int64())).to_pylist()
        rows = rows.assign(members=members)
    out = rows.reset_index(drop=True).copy()
    out["classes"] = [[view.player_class(int(p)) for p in members] for members in out["members"]]
    out["players"] = [" + ".join(view.player_name(int(p)) for p in members) for members in out["members"]]
    return out


@renamed_keyword("method", "engine")
def top_effects(view: RunView, target: int, kind: str | None = None, k: int = 10, engine: str = "proxyspex",
                order: int | None = None) -> pd.DataFrame:
    """The ``k`` strongest (by |Möbius|) terms of one target, optionally of one kind/order (those it
    may state: :meth:`RunView.terms` with ``claims=True``)."""
    fitted = fitted_metrics(view, engine)["target"]
    if target not in set(fitted):
        known = sorted(int(t) for t in fitted)
        raise AnalysisError(f"target {target} has no {engine} fit (fitted targets: "
                            f"{known[:10]}{' ...' if len(known) > 10 else ''})")
    rows = view.terms(engine=engine, target=target, claims=True)
    rows = judge_triples(view, rows[rows["order"] > 0], engine)
    if kind is not None:
        if kind not in KINDS:
            raise AnalysisError(f"kind must be one of {KINDS}, got {kind!r}")
        rows = rows[rows["kind"] == kind]
    if order is not None:
        rows = rows[rows["order"] == order]
    return _named(view, rows.reindex(rows["mobius"].abs().sort_values(ascending=False).index).head(k))


@renamed_keyword("method", "engine")
def strongest_terms(view: RunView, k: int = 20, engine: str | None = None, orders=(2, 3),
                    strength: pd.DataFrame | None = None, per_target: int | None = None) -> pd.DataFrame:
    """The ``k`` strongest terms over all targets by :func:`term_strength` (``strength``: its table,
    when the caller has it already), pairs and triples by default, with the players named; at
    most ``per_target`` of one target (None: no limit), so that a few targets with many strong
    terms do not fill the table."""
    rows = term_strength(view, engine, orders) if strength is None else strength
    rows = rows[rows["order"].isin(list(orders))].sort_values("strength", ascending=False, kind="stable")
    if per_target is not None:
        rows = rows.groupby("target", sort=False).head(per_target)
    top = rows.head(k)
    out = _named(view, top)
    out.insert(1, "target_name", [view.target_name(int(t)) for t in out["target"]])
    return out


@renamed_keyword("method", "engine")
def strongest_targets(view: RunView, kind: str, k: int = 3, engine: str | None = None,
                      strength: pd.DataFrame | None = None) -> list[int]:
    """The ``k`` targets whose strongest term of ``kind`` (a player for ``main``, else a pair or
    triple) is largest relative to the target's residual sd (``strength``: :func:`term_strength`'s
    table of ``engine``, when the caller has it already)."""
    if kind not in KINDS:
        raise AnalysisError(f"kind must be one of {KINDS}, got {kind!r}")
    rows = term_strength(view, engine) if strength is None else strength
    rows = rows[rows["kind"] == kind]
    best = rows.groupby("target")["strength"].max()
    return [int(t) for t in best.nlargest(k).index]


def target_summary(view: RunView, target: int) -> pd.Series:
    """Label, how often models get it right, and its margin distribution over the sweep."""
    margins = view.margins(target)
    return pd.Series({"target": target, "label": view.target_label(target),
                      "fraction_correct": float((margins > 0).mean()), "mean_margin": float(margins.mean()),
                      "std_margin": float(margins.std()), "models": len(margins)})


@renamed_keyword("method", "engine")
def class_pair_patterns(view: RunView, kind: str, engine: str = "proxyspex") -> pd.DataFrame:
    """Across targets: how often pairs of each (class, class) combination are synergistic or
    redundant, with the target's own class as the row's first level (where the targets' classes
    are known). Needs the players' classes."""
    if view.player_labels is None:
        raise AnalysisError(f"class pairs need the players' classes: {view.run_dir} has no dataset linked and no "
                            f"labels file ({', '.join(str(p) for p in view.folder.label_files)})")
    pairs = view.terms(engine=engine, orders=[2], kind=kind, members=False, claims=True)
    members = view.interactions_arrow.column("members").take(pa.array(pairs.index, pa.int64())).combine_chunks()
    members = members.flatten().to_numpy(zero_copy_only=False).astype(np.int64).reshape(len(pairs), 2)
    names = np.asarray(view.class_names if view.class_names is not None
                       else [str(c) for c in range(int(view.player_labels.max()) + 1)], dtype=object)
    classes = np.sort(view.player_labels[members], axis=1)  # a pair is unordered: (cat, dog) = (dog, cat)
    frame = pd.DataFrame({"class_a": names[classes[:, 0]], "class_b": names[classes[:, 1]]})
    if view.sweep_run is not None:
        target_labels = view.sweep_run.data.labels("target")[pairs["target"].to_numpy(np.int64)]
        frame.insert(0, "target_class", names[target_labels])
    return frame.value_counts().rename("pairs").reset_index()


def term_counts(view: RunView) -> pd.DataFrame:
    """How many terms each engine fitted, by order and kind (counted in Arrow: millions of rows)."""
    counts = view.interactions_arrow.group_by(["engine", "order", "kind"]).aggregate([([], "count_all")])
    return counts.to_pandas().rename(columns={"count_all": "terms"}).sort_values(
        ["engine", "order", "kind"], ignore_index=True)


def kind_conclusion(view: RunView, kind: str, engine: str, strength: pd.DataFrame) -> str:
    """The conclusion of a section "Targets with the strongest ...": the strongest term of the
    kind, and for synergy and redundancy the strongest pair (the one the fit's console names)
    and how many pairs and triples are of that kind."""
    if kind == "main":
        mains = strength[strength["kind"] == "main"]
        if mains.empty:
            return f"the {engine} fit has no main effect"
        row = _named(view, strength.loc[[mains["strength"].idxmax()]]).iloc[0]
        return (f"the strongest main effect is {row['players']} on {view.target_name(int(row['target']))} "
                f"(m = {row['mobius']:+.3f}, {row['strength']:.2f} residual sd)")
    counts = strength[strength["kind"] == kind].groupby("order").size()
    sentence = pair_sentence(view, kind, strongest_pair(view, kind, engine, strength), engine)
    relabelled = 0
    if "fit_kind" in strength:
        triples = strength[strength["order"] == 3]
        relabelled = int(((triples["fit_kind"] == kind) & (triples["kind"] != kind)).sum())
    note = (f"; {relabelled} triples the fit labels {kind} are not shown as {kind}: their pairs say otherwise"
            if relabelled else "")
    return (f"{sentence}; the fit holds {counts.get(2, 0)} {kind} pairs and {counts.get(3, 0)} {kind} triples "
            f"(judged as groups){note}")
