"""Interactions stated as findings: ProxySPEX's untested ones (``untested="cv"``) predict but are never claimed."""

import pandas as pd
import pyarrow as pa
import pytest

from datamodels.ablation.design import fitted_pairs
from datamodels.ablation.planning import _interaction_terms
from datamodels.fit.outputs import current_columns, read_fit_table, summary
from datamodels.run.folder import RunFolder
from datamodels.tables import write_frame
from datamodels.views.analysis import RunView, strongest_pair, top_effects

# (engine, members, mobius, kind, tested): the untested ProxySPEX pair is the strongest
TERMS = [("proxyspex", [0], 1.0, "main", False),
         ("proxyspex", [1, 2], 0.5, "synergy", True),
         ("proxyspex", [3, 4], 2.0, "synergy", False),
         ("spex", [5, 6], 0.3, "synergy", False)]


def _fitted_run(run_dir, earlier_release=False):
    """A run with a fit of TERMS; ``earlier_release``: its tables as a release before ``tested`` and
    ``shrunk`` wrote them, the engine in a column ``method``."""
    from test_fit_job import write_sweep

    write_sweep(run_dir)
    folder = RunFolder(run_dir)
    engine = "method" if earlier_release else "engine"
    interactions = pd.DataFrame([{"target": 0, "members": members, "order": len(members), "mobius": m, "kind": kind,
                                  engine: name, "tested": tested, "shrunk": m}
                                 for name, members, m, kind, tested in TERMS])
    if earlier_release:
        interactions = interactions.drop(columns=["tested", "shrunk"])
    metrics = pd.DataFrame({"target": [0, 0], engine: ["proxyspex", "spex"], "r2": [0.5, 0.5],
                            "spearman": [0.7, 0.7], "working_set": [24, 24], "penalty_at_floor": [False, False],
                            "tested_zeroed": [0, 0]})
    meta = {f"{engine}s": {"spex": {"heldout_fraction": 0.3}}}
    write_frame(folder.interactions_file(), interactions, meta)
    write_frame(folder.fit_metrics_file(), metrics, meta)
    return RunView.open(run_dir), interactions


def _members(terms: pd.DataFrame) -> set:
    return {tuple(int(p) for p in members) for members in terms["members"]}


def test_claims_leave_out_only_the_interactions_an_engine_tests_and_did_not_mark(tmp_path):
    view, interactions = _fitted_run(tmp_path)
    assert _members(view.terms()) == {(0,), (1, 2), (3, 4), (5, 6)}  # prediction: every term
    assert _members(view.terms(claims=True)) == {(0,), (1, 2), (5, 6)}  # SPEX never tests: its pair stays
    assert _members(view.terms(engine="proxyspex", orders=[2], claims=True)) == {(1, 2)}
    # the claim sites: the strongest pair, a target's top effects, the pairs the removal checks choose
    assert strongest_pair(view, "synergy", "proxyspex")["members"] == [1, 2]
    assert _members(top_effects(view, 0, engine="proxyspex")) == {(0,), (1, 2)}
    terms = _interaction_terms(view, "proxyspex")
    assert _members(terms) == {(1, 2), (3, 4)} and _members(terms[terms["claimed"]]) == {(1, 2)}
    # the checks list the stated pair only, and predict it with every term: an untested triple through it counts
    triple = pd.DataFrame([{"target": 0, "members": [1, 2, 7], "order": 3, "mobius": 0.4, "kind": "synergy",
                            "claimed": False}])
    pairs = fitted_pairs(pd.concat([terms, triple]), view.n, 0.5, pd.Series({0: 1.0}))
    assert pairs[["i", "j"]].values.tolist() == [[1, 2]]
    assert pairs["predicted"].item() == pytest.approx(0.5 + 0.4 * 0.5)
    assert "strongest synergy: players [1, 2]" in summary(interactions, view.fit_metrics)


def test_a_table_of_an_earlier_release_reads_as_today_s(tmp_path):
    view, interactions = _fitted_run(tmp_path, earlier_release=True)
    assert "engine" in view.fit_metrics and "method" not in view.fit_metrics  # the column renamed on reading
    assert read_fit_table(view.folder.fit_metrics_file())[1]["engines"] == {"spex": {"heldout_fraction": 0.3}}
    # before the tested column every interaction is claimed: ProxySPEX then kept only tested ones
    assert _members(view.terms(claims=True)) == _members(view.terms()) == {(0,), (1, 2), (3, 4), (5, 6)}
    assert view.interactions["tested"].tolist() == [False, True, True, False]
    assert view.interactions["shrunk"].equals(view.interactions["mobius"])
    trak = current_columns(pa.Table.from_pandas(interactions.assign(method="trak")))
    assert not any(trak.column("tested").to_pylist())  # no engine: no test
    with pytest.warns(DeprecationWarning, match=r"terms\(method=...\) is renamed engine="):
        assert _members(view.terms(method="spex")) == {(5, 6)}  # the old keyword, one release
