"""Interactions stated as findings: ProxySPEX's untested ones (``untested="cv"``) predict but are never claimed."""

import pandas as pd
import pytest

from datamodels.ablation.design import fitted_pairs
from datamodels.ablation.planning import _interaction_terms
from datamodels.fit.stage import summary, with_current_columns
from datamodels.run.folder import RunFolder
from datamodels.tables import write_frame
from datamodels.views.analysis import RunView, strongest_pair, top_effects

# (method, members, mobius, kind, tested): the untested ProxySPEX pair is the strongest
TERMS = [("proxyspex", [0], 1.0, "main", False),
         ("proxyspex", [1, 2], 0.5, "synergy", True),
         ("proxyspex", [3, 4], 2.0, "synergy", False),
         ("spex", [5, 6], 0.3, "synergy", False)]


def _fitted_run(run_dir, tested_column=True):
    from test_fit_job import write_sweep

    write_sweep(run_dir)
    folder = RunFolder(run_dir)
    interactions = pd.DataFrame([{"target": 0, "members": members, "order": len(members), "mobius": m, "kind": kind,
                                  "method": method, "tested": tested, "shrunk": m}
                                 for method, members, m, kind, tested in TERMS])
    if not tested_column:
        interactions = interactions.drop(columns=["tested", "shrunk"])
    metrics = pd.DataFrame({"target": [0, 0], "method": ["proxyspex", "spex"], "r2": [0.5, 0.5],
                            "spearman": [0.7, 0.7], "working_set": [24, 24], "penalty_at_floor": [False, False],
                            "tested_zeroed": [0, 0]})
    meta = {"methods": {}}
    write_frame(folder.interactions(), interactions, meta)
    write_frame(folder.fit_metrics(), metrics, meta)
    return RunView.open(run_dir), interactions


def _members(terms: pd.DataFrame) -> set:
    return {tuple(int(p) for p in members) for members in terms["members"]}


def test_claims_leave_out_only_the_interactions_an_engine_tests_and_did_not_mark(tmp_path):
    view, interactions = _fitted_run(tmp_path)
    assert _members(view.terms()) == {(0,), (1, 2), (3, 4), (5, 6)}  # prediction: every term
    assert _members(view.terms(claims=True)) == {(0,), (1, 2), (5, 6)}  # SPEX never tests: its pair stays
    assert _members(view.terms(method="proxyspex", orders=[2], claims=True)) == {(1, 2)}
    # the claim sites: the strongest pair, a target's top effects, the pairs the removal checks choose
    assert strongest_pair(view, "synergy", "proxyspex")["members"] == [1, 2]
    assert _members(top_effects(view, 0, method="proxyspex")) == {(0,), (1, 2)}
    terms = _interaction_terms(view, "proxyspex")
    assert _members(terms) == {(1, 2), (3, 4)} and _members(terms[terms["claimed"]]) == {(1, 2)}
    # the checks list the stated pair only, and predict it with every term: an untested triple through it counts
    triple = pd.DataFrame([{"target": 0, "members": [1, 2, 7], "order": 3, "mobius": 0.4, "kind": "synergy",
                            "claimed": False}])
    pairs = fitted_pairs(pd.concat([terms, triple]), view.n, 0.5, pd.Series({0: 1.0}))
    assert pairs[["i", "j"]].values.tolist() == [[1, 2]]
    assert pairs["predicted"].item() == pytest.approx(0.5 + 0.4 * 0.5)
    assert "strongest synergy: players [1, 2]" in summary(interactions, view.fit_metrics)


def test_a_table_from_before_the_tested_column_claims_every_interaction(tmp_path):
    view, interactions = _fitted_run(tmp_path, tested_column=False)
    assert _members(view.terms(claims=True)) == _members(view.terms()) == {(0,), (1, 2), (3, 4), (5, 6)}
    # ProxySPEX then kept only tested interactions: a merge marks them so, and nothing else
    filled = with_current_columns(interactions)
    assert filled["tested"].tolist() == [False, True, True, False]
    assert filled["shrunk"].equals(filled["mobius"])
    assert not with_current_columns(interactions.assign(method="trak"))["tested"].any()  # no engine: no test
