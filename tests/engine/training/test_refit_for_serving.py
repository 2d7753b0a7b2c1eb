"""Refit for serving (issue 17): after the champion gate, the chosen H2O configuration is
fitted again on every labelled row and served; the gated model stays in the registered
version and is what the next run's gate scores on the test rows.

Real H2O (the session's small GLM/GBM package on 2,000 churn rows) and AutoKeras (the
session's 600-row package), the real MLflow registry. Marked slow: before the held-out check
the tests' own calls took 350 s at load 30 on the shared 2-core box; since every accepted
refit fits twice (the recipe on the training rows, then on every labelled row), at load
21-45: the accepted H2O refit with its explanation 201-317 s, the registered one 230 s,
the overfitting recipe 242 s, the unfair one 147 s, the gate-rows reproduction 96 s, on top
of the session's two packages.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from autokfp.modeling.model_package import GATE_MODEL_DIR, load_gate_model, load_model_package

pytestmark = pytest.mark.slow


def _meta(package: Path) -> dict:
    return json.loads((package / "artifacts" / "meta.json").read_text())


def _rows(path: Path) -> int:
    return len(pd.read_parquet(path))


@pytest.fixture(scope="module")
def gate_evaluation(trained_package, tmp_path_factory) -> Path:
    """The session's package through the gate (no champion: the baseline gate), once for the
    module, in a home of its own: refit_model reads only the gate's decision from it."""
    from autokfp.steps.evaluate_model import evaluate_model
    from tests.conftest import use_home

    root = tmp_path_factory.mktemp("refit-gate")
    evaluation = root / "evaluation.json"
    with pytest.MonkeyPatch.context() as patch:
        use_home(patch, root / "autokfp-home")
        evaluated = evaluate_model(trained_package.config, str(trained_package.paths.model),
                                   str(trained_package.paths.test), str(evaluation))
    assert evaluated.promote, evaluated.decision  # the churn GLM/GBM beats the class prior
    return evaluation


@pytest.fixture
def gated(trained_package, gate_evaluation, autokfp_home):
    """The run config and the gate's evaluation, for a test in a fresh home."""
    return trained_package.config, gate_evaluation


def _with_fairness(package: Path, tmp_path: Path, verdict: str = "pass") -> Path:
    """A copy of ``package`` as bias_check leaves it: checked on ``gender``, ``verdict``."""
    copy = tmp_path / "checked"
    shutil.copytree(package, copy)
    meta = _meta(copy)
    meta["fairness"] = {"verdict": verdict, "sensitive_columns": ["gender"]}
    (copy / "artifacts" / "meta.json").write_text(json.dumps(meta))
    return copy


def _policy(config, **limits):
    from autokfp.config import parse_config

    data = config.to_dict()
    data["governance"] = {**data.get("governance", {}), **limits}
    return parse_config(data)


# the accepted refit's held-out check: how far below the gated model the recipe may score
HOLDOUT_TOLERANCE = 0.05
# what the H2O engine's refit reports when it refitted only the base models a stacked
# ensemble's metalearner weights (h2o_automl.weighted_members, tested on a real ensemble in
# test_h2o_refit_weighted): the accepted fixture's refit reports it too, so the served
# reason's wiring (refit_model._members_note) is tested on the module's one accepted refit
BASE_MODELS = "2 of 3 (weight 0: not refitted)"


@pytest.fixture(scope="module")
def accepted(trained_package, gate_evaluation, tmp_path_factory):
    """The session's package, checked fair, past the gate and through an accepted refit,
    once for the module (each refit fits H2O twice): the served refit's own test and the
    test that registers it both read it. Made in a home of its own."""
    from types import SimpleNamespace

    from autokfp.governance import audit
    from autokfp.steps import refit_model as step
    from tests.conftest import use_home
    from tests.engine.training.test_h2o_start import _java_home, _launched

    root = tmp_path_factory.mktemp("refit-accepted")
    evaluation = gate_evaluation
    home, launches = _java_home(root, "pass")  # counts the H2O JVMs the refit's child starts
    refit_packages = step._refit_packages

    def some_base_models_refitted(*args, **kwargs):
        # the fits as the child returned them, each saying (as an ensemble's refit whose
        # metalearner left a member at weight 0 does) how many base models it refitted
        outcomes = refit_packages(*args, **kwargs)
        for outcome in outcomes:
            if "summary" in outcome:
                outcome["summary"]["params"]["refit_base_models"] = BASE_MODELS
        return outcomes

    with pytest.MonkeyPatch.context() as patch:
        use_home(patch, root / "autokfp-home")
        patch.setattr(step, "_refit_packages", some_base_models_refitted)
        # the product's own held-out rule: the recipe fitted on the 1,600 training rows
        # reproduces the gated model (issue 17: a GBM leader's refit was cut by the per-model
        # time limit under load, 0.0081 and 0.022 AUC below in the CIs of ed060f0 and
        # 0c7dace; its trees are no longer cut), and the rule's margin is the shortfall's se
        patch.setenv("H2O_JAVA_HOME", str(home))
        # a policy any model meets: the refit's fairness check runs and passes
        config = _policy(trained_package.config, max_demographic_parity_difference=1.0,
                         min_demographic_parity_ratio=0.0)
        paths = trained_package.paths
        checked = _with_fairness(paths.model, root)
        out = root / "served"
        result = step.refit_model(config, str(checked), str(evaluation), str(paths.train),
                                  str(paths.test), str(out))
        events = audit.events_for(config.model_name, None, kind="model.refit")
    return SimpleNamespace(config=config, evaluation=evaluation, out=out, result=result,
                           jvm_starts=_launched(launches), events=events)


def test_the_served_model_is_refitted_on_every_labelled_row_and_the_gate_model_is_kept(
        trained_package, accepted, autokfp_home, tmp_path) -> None:
    config, evaluation, out, result = (accepted.config, accepted.evaluation, accepted.out,
                                       accepted.result)
    paths = trained_package.paths
    train_rows, test_rows = _rows(paths.train), _rows(paths.test)
    assert result.served == "refit", result.reason
    # both fits (training rows, then every labelled row) ran in one child on one H2O JVM
    assert accepted.jvm_starts == 1
    served, gate = _meta(out), _meta(out / GATE_MODEL_DIR)
    # row counts: the served model saw the test rows too, the gate model did not
    assert served["fitted_rows"] == train_rows + test_rows == result.served_fitted_rows
    assert gate["fitted_rows"] == train_rows == result.gate_fitted_rows
    assert served["serving"]["model"] == "refit"
    assert served["serving"]["gate_fitted_rows"] == train_rows
    assert served["serving"]["test_rows"] == test_rows
    assert "serving" not in gate
    # a different model: other engine files, and the refit's leader is a new H2O model of
    # the gated one's algorithm
    mojo = Path("artifacts", "engine", "model.zip")
    assert (out / mojo).read_bytes() != (out / GATE_MODEL_DIR / mojo).read_bytes()
    assert served["serving"]["gate_leader"] == gate["leader"] != served["leader"]
    # it learnt from the rows it was given: on the test rows it alone was fitted on, the refit
    # is closer to the truth than the gate model (log loss), and both are far from chance
    test = pd.read_parquet(paths.test)
    truth = (test[gate["target"]].astype(str) == str(gate["positive_class"])).to_numpy()
    losses = {}
    for who, folder in (("refit", out), ("gate", out / GATE_MODEL_DIR)):
        p = load_model_package(str(folder)).predict(test)[
            f"probability_{gate['positive_class']}"].to_numpy().clip(1e-6, 1 - 1e-6)
        losses[who] = float(-np.mean(truth * np.log(p) + (~truth) * np.log(1 - p)))
    prior = truth.mean()
    chance = float(-(prior * np.log(prior) + (1 - prior) * np.log(1 - prior)))
    assert losses["gate"] < 0.9 * chance, losses
    # fitted on these rows too, the refit fits them at least about as well as the gate model
    # (H2O's early stopping may stop a little earlier on more rows: 0.4076 against 0.4059 in
    # the fresh-clone CI of c13f8c9); a refit that learnt nothing would sit near chance
    assert losses["refit"] < min(1.02 * losses["gate"], 0.9 * chance), losses
    # the held-out check: the recipe fitted on the training rows only scored the test rows
    # about as the gated model did (a GLM leader's recipe to the bit: 0.8353 both, 2 runs at
    # load 11-17; a GBM's not: 0.0081 and 0.022 AUC below in the fresh-clone CIs of ed060f0
    # and 0c7dace, under 0.005 before), within the tolerance the fixture set; a broken recipe
    # scores ~0.5; the sanity check then compared both on every labelled row
    check = served["serving"]["check"]
    assert check["passed"] and check["rows"] == train_rows + test_rows
    holdout = check["holdout"]
    assert holdout["passed"] and holdout["rows"] == test_rows
    metric = holdout["metric"]
    assert abs(holdout["refit"][metric] - holdout["gate"][metric]) < HOLDOUT_TOLERANCE, holdout
    # the rule, the shortfall and its se are kept with the check (the model card quotes it)
    rule = holdout["rule"]
    assert rule["shortfall"] == pytest.approx(holdout["gate"][metric] - holdout["refit"][metric])
    assert rule["probability_beyond"] < rule["confidence"] and rule["se"] >= 0
    assert f"se {rule['se']:.4f}" in holdout["detail"]
    assert result.figures[f"holdout_{metric}_refit"] == holdout["refit"][metric]
    # what serves was audited: the recipe's decisions per gender on the test rows
    fairness = check["fairness"]
    assert fairness["verdict"] == "pass" and fairness["rows"] == test_rows
    assert fairness["columns"] == ["gender"] and len(fairness["before"]["gender"]["measured"]) >= 2
    # what is explained is what serves: the refit, and the explanation says what that means
    explained = _explain(config, out, paths, tmp_path)
    assert explained["served"]["model"] == "refit"
    assert explained["served"]["fitted_rows"] == train_rows + test_rows
    from autokfp.governance.model_card import _explanations_section

    assert "test rows the served refit was fitted on" in "\n".join(
        _explanations_section(explained))
    # the model card, and its machine-readable form, say which model serves and which was
    # gated, with both row counts
    from types import SimpleNamespace

    from autokfp.governance.model_card import _metrics_section, card_metadata

    document = json.loads(evaluation.read_text())
    text = "\n".join(_metrics_section(document, {}, served))
    assert f"fitted again on all {train_rows + test_rows} labelled rows" in text
    assert f"gated model (fitted on {train_rows} rows without them)" in text
    machine = card_metadata(name="churn-test", version="1", tags={"dataset": "d"}, meta=served,
                            schema=SimpleNamespace(dataset_id="d", fingerprint="f"),
                            evaluation=document)["autokfp"]["serving"]
    assert machine["served"] == "refit"
    assert (machine["served_fitted_rows"], machine["gate_fitted_rows"]) == (
        train_rows + test_rows, train_rows)
    assert machine["gate_model"] == GATE_MODEL_DIR


def test_the_served_reason_says_how_many_base_models_the_engine_refitted(accepted) -> None:
    """When the engine refitted only some of an ensemble's base models (its params'
    ``refit_base_models``), the served model's reason says so, and so the package's
    meta.serving, the ``model.refit`` audit event and the model card's metadata carry it."""
    from types import SimpleNamespace

    from autokfp.governance.model_card import card_metadata

    note = f"; base models refitted: {BASE_MODELS}"
    assert accepted.result.served == "refit", accepted.result.reason
    served = _meta(accepted.out)
    reason = served["serving"]["reason"]
    assert note in reason and reason.startswith("the gated h2o configuration"), reason
    assert served["params"]["refit_after_gate"]["refit_base_models"] == BASE_MODELS
    assert accepted.result.reason == reason
    (event,) = [e for e in accepted.events if e["kind"] == "model.refit"]
    assert event["details"]["reason"] == reason
    document = json.loads(accepted.evaluation.read_text())
    machine = card_metadata(name="churn-test", version="1", tags={"dataset": "d"}, meta=served,
                            schema=SimpleNamespace(dataset_id="d", fingerprint="f"),
                            evaluation=document)["autokfp"]["serving"]
    assert machine["reason"] == reason


def test_h2o_refit_on_the_gate_rows_reproduces_the_gate_model(trained_package,
                                                              tmp_path) -> None:
    """The recipe is the gated configuration itself: fitted again on the very rows the gate
    model was fitted on, it gives the gate model's predictions."""
    from autokfp.steps.refit_model import refit_engine

    paths = trained_package.paths
    config = trained_package.config
    engine_dir = tmp_path / "engine"
    # at the product's own budget (15 s): a tree model's refit is no longer cut at the
    # per-model limit (on a busy machine a GBM leader's refit stopped short of its trees
    # there: CI predictions 0.016 apart, issue 17), a GLM's penalty search never was
    settings = config.training_settings("h2o").to_dict()
    summary = refit_engine(settings, "h2o", str(paths.model), str(paths.train), str(engine_dir))
    assert summary["fitted_rows"] == _rows(paths.train)
    again = tmp_path / "again"
    shutil.copytree(paths.model, again)
    shutil.rmtree(again / "artifacts" / "engine")
    shutil.copytree(engine_dir, again / "artifacts" / "engine")
    test = pd.read_parquet(paths.test)
    column = f"probability_{_meta(paths.model)['positive_class']}"
    before = load_model_package(str(paths.model)).predict(test)[column].to_numpy()
    after = load_model_package(str(again)).predict(test)[column].to_numpy()
    assert np.allclose(before, after, atol=1e-3), float(np.max(np.abs(before - after)))


def test_the_registered_refit_serves_the_all_rows_model_and_the_next_gate_scores_the_gate_model(
        trained_package, accepted, autokfp_home, tmp_path) -> None:
    from autokfp.catalog.schema import DatasetSchema  # noqa: F401 - register reads it
    from autokfp.modeling import registry
    from autokfp.steps.evaluation import evaluate_candidates
    from autokfp.steps.register_model import register_model

    config, evaluation, out = accepted.config, accepted.evaluation, accepted.out
    paths = trained_package.paths
    assert accepted.result.served == "refit", accepted.result.reason
    registered = register_model(config, str(out), str(evaluation), str(paths.schema),
                                str(tmp_path / "registration.json"))
    assert registered.promoted
    client = registry.configure()
    # what KServe's storageUri points at: the version's root, whose package is the refit
    uri = registry.serving_uri(client, config.model_name, registered.version)
    local = Path(uri.removeprefix("file://"))
    assert _meta(local)["serving"]["model"] == "refit"
    assert _meta(local)["fitted_rows"] == _rows(paths.train) + _rows(paths.test)
    # the next run's gate: the champion it loads is the gate model
    champion, kept = load_gate_model(registry.model_uri(config.model_name))
    assert kept
    assert champion.unwrap_python_model().meta["fitted_rows"] == _rows(paths.train)
    # the same gate package as a new candidate ties the champion on the test rows exactly:
    # the champion scored there is the gate model, not the refit (which saw those rows)
    document = evaluate_candidates(config, {"h2o": str(paths.model)}, str(paths.test),
                                   str(tmp_path / "evaluation-2.json"))
    comparison = document["comparison"]
    assert comparison["champion_version"] == registered.version
    assert comparison["champion"] == pytest.approx(comparison["challenger"], abs=1e-9)
    assert not comparison["promote"]


def test_a_refit_that_cannot_run_serves_the_gate_model_and_says_why(trained_package, gated,
                                                                    tmp_path) -> None:
    from autokfp.governance import audit
    from autokfp.steps.refit_model import refit_model

    config, evaluation = gated
    paths = trained_package.paths
    old = tmp_path / "old-package"  # a package from before recipes were kept
    shutil.copytree(paths.model, old)
    (old / "artifacts" / "engine" / "recipe.json").unlink()
    out = tmp_path / "served"
    result = refit_model(config, str(old), str(evaluation), str(paths.train), str(paths.test),
                         str(out))
    assert result.served == "gated"
    assert "recipe.json is missing" in result.reason
    served = _meta(out)
    assert served["serving"] == {"model": "gated", "fitted_rows": _rows(paths.train),
                                 "reason": result.reason, "refit": "failed"}
    assert not (out / GATE_MODEL_DIR).exists()
    assert (out / "artifacts" / "engine" / "model.zip").read_bytes() == \
        (paths.model / "artifacts" / "engine" / "model.zip").read_bytes()
    events = audit.events_for(config.model_name, None, kind="model.refit_rejected")
    assert events and "recipe.json is missing" in events[-1]["details"]["reason"]
    assert events[-1]["details"]["outcome"] == "failed"


def _explain(config, package: Path, paths, tmp_path: Path) -> dict:
    from autokfp.steps.explain_model import explain_model

    data = config.to_dict()
    data["governance"] = {**data.get("governance", {}), "shap_rows": 0, "explain_rows": 100}
    from autokfp.config import parse_config

    explain_model(parse_config(data), str(package), str(paths.train), str(paths.test),
                  str(tmp_path / "explanation.json"), str(tmp_path / "explanation.html"),
                  str(tmp_path / "plots"))
    return json.loads((tmp_path / "explanation.json").read_text())


def _fits(captured: str) -> list[int]:
    """The rows of each H2O refit the step's child made (its log, on the inherited stderr)."""
    import re

    return [int(rows) for rows in re.findall(r"H2O refit of .* on (\d+) rows", captured)]


def test_a_refit_that_breaks_a_fairness_limit_the_gated_model_met_is_rejected(
        trained_package, gated, tmp_path, capfd) -> None:
    """A policy no model meets (equal selection rates per gender to the last decimal): the
    gated package says it passed, the recipe fitted on the training rows does not on the
    test rows, so the gated model serves."""
    from autokfp.config import parse_config
    from autokfp.steps.refit_model import refit_model

    # the score check comes first and is not what this test is about (it once rejected this
    # refit before fairness was looked at: CI of 0c7dace, 0.8322 vs 0.8542, when the refit's
    # GBM was cut by the time limit); with the tolerance wide (the rule's margin at least a
    # tenth of it, 0.1 AUC) the fairness check decides, as meant
    config, evaluation = gated
    config = _policy(config, max_demographic_parity_difference=0.0,
                     min_demographic_parity_ratio=1.0, ranking_parity=False)
    data = config.to_dict()
    data["training"]["refit_score_tolerance"] = 1.0
    config = parse_config(data)
    paths = trained_package.paths
    checked = _with_fairness(paths.model, tmp_path, verdict="pass")
    out = tmp_path / "served"
    capfd.readouterr()
    result = refit_model(config, str(checked), str(evaluation), str(paths.train),
                         str(paths.test), str(out))
    # the recipe was fitted on the training rows only: rejected there, it was not fitted on
    # every labelled row
    assert _fits(capfd.readouterr().err) == [_rows(paths.train)]
    assert result.served == "gated", result.reason
    assert "the refit was rejected" in result.reason
    assert f"on the {_rows(paths.test)} test rows: fail" in result.reason, result.reason
    assert "the gated model: pass" in result.reason
    assert result.figures["holdout_auc_refit"] > 0.7  # it was a good model, only unfair
    assert not any(key.startswith("all_rows_") for key in result.figures)
    assert _meta(out)["serving"]["model"] == "gated"


# A recipe corrupted to memorise its rows: deep trees down to single rows at full learning
# rate. On the rows it was fitted on it beats the gated model (a check there would pass it);
# on rows it did not see it is far worse.
OVERFIT_RECIPE = {"model_id": "corrupted", "algo": "gbm",
                  "params": {"ntrees": 60, "max_depth": 20, "min_rows": 1.0, "learn_rate": 1.0,
                             "sample_rate": 1.0, "col_sample_rate": 1.0, "nbins": 1024,
                             "seed": 7}}


def test_a_refit_that_overfits_is_rejected_on_rows_it_did_not_see(trained_package, gated,
                                                                   tmp_path, capfd) -> None:
    from autokfp.governance import audit
    from autokfp.steps.refit_model import HOLDOUT_SCORE_TOLERANCE, refit_engine, refit_model

    config, evaluation = gated
    paths = trained_package.paths
    corrupted = tmp_path / "corrupted"
    shutil.copytree(paths.model, corrupted)
    (corrupted / "artifacts" / "engine" / "recipe.json").write_text(json.dumps(OVERFIT_RECIPE))
    # what a check on the refit's own rows would see: the corrupted recipe, fitted on the
    # training rows, beats the gated model on them (it memorised them)
    engine_dir = tmp_path / "engine"
    refit_engine(config.training_settings("h2o").to_dict(), "h2o", str(corrupted),
                 str(paths.train), str(engine_dir))
    fitted = tmp_path / "fitted"
    shutil.copytree(paths.model, fitted)
    shutil.rmtree(fitted / "artifacts" / "engine")
    shutil.copytree(engine_dir, fitted / "artifacts" / "engine")
    auc = _auc(fitted, paths.model, paths.train)
    assert auc["refit"] > auc["gate"] + 0.05, auc
    # the step fits it on the training rows and scores the test rows: rejected by a wide margin
    out = tmp_path / "served"
    capfd.readouterr()
    result = refit_model(config, str(corrupted), str(evaluation), str(paths.train),
                         str(paths.test), str(out))
    # rejected after its fit on the training rows, the recipe was not fitted on every row
    assert _fits(capfd.readouterr().err) == [_rows(paths.train)]
    assert result.served == "gated"
    assert "fitted on the training rows only" in result.reason and "test rows" in result.reason
    metric = _meta(paths.model)["primary_metric"]
    assert metric == "auc"
    gate, refit = result.figures["holdout_auc_gate"], result.figures["holdout_auc_refit"]
    assert refit < gate - HOLDOUT_SCORE_TOLERANCE - 0.03, result.figures
    # the rule that rejected it, with the shortfall and its se, in the reason and the figures
    assert result.figures["holdout_shortfall"] == pytest.approx(gate - refit)
    assert 0 < result.figures["holdout_se"] < gate - refit, result.figures
    assert "P(shortfall > margin)" in result.reason and "paired bootstrap se" in result.reason
    # the all-rows fit (made in the same child) is never checked or served
    assert not any(key.startswith("all_rows_") for key in result.figures)
    assert _meta(out)["serving"]["model"] == "gated"
    assert _meta(out)["serving"]["refit"] == "rejected"
    assert not (out / GATE_MODEL_DIR).exists()
    events = audit.events_for(config.model_name, None, kind="model.refit_rejected")
    assert events and events[-1]["details"]["holdout_auc_refit"] == refit
    assert events[-1]["details"]["outcome"] == "rejected"


def _auc(refit: Path, gate: Path, rows_path: Path) -> dict[str, float]:
    from sklearn.metrics import roc_auc_score

    rows = pd.read_parquet(rows_path)
    meta = _meta(gate)
    truth = (rows[meta["target"]].astype(str) == str(meta["positive_class"])).astype(int)
    column = f"probability_{meta['positive_class']}"
    return {who: float(roc_auc_score(truth, load_model_package(str(folder)).predict(rows)[column]))
            for who, folder in (("refit", refit), ("gate", gate))}


def test_refit_is_not_wanted_on_large_tables_without_a_passed_gate_or_when_off(
        trained_package) -> None:
    from autokfp.config import parse_config
    from autokfp.steps.refit_model import refit_wanted

    data = trained_package.config.to_dict()
    passed = {"comparison": {"promote": True}}
    assert refit_wanted(parse_config(data), passed, 2000) == ""
    assert "refit_max_rows" in refit_wanted(parse_config(data), passed, 10_001)
    data["training"]["refit_for_serving"] = "always"
    assert refit_wanted(parse_config(data), passed, 10_001) == ""
    assert "champion gate" in refit_wanted(parse_config(data), {"comparison": {"promote": False}},
                                           100)
    data["training"]["refit_for_serving"] = "never"
    assert "never" in refit_wanted(parse_config(data), passed, 100)


def test_autokeras_refits_the_chosen_architecture_on_every_labelled_row(keras_package,
                                                                         autokfp_home,
                                                                         tmp_path) -> None:
    """The session's AutoKeras package (600 churn rows) past a gate: its network is trained
    again from fresh weights on the training and test rows, with its epochs and optimizer.
    The table is over ``refit_max_rows`` here (100), so it is refitted by its time estimate
    (``AutoKerasEngine.refit_seconds``: the training's own refit of the recipe, scaled to
    the rows), as an H2O package is; the estimate is checked against the refit's measured
    fit in CPU-seconds (wall time is the load's): measured 0.56, 0.70 and 0.92 of the
    estimate on seeds 1-3 at load 15-20 (the training's refit, on fewer rows, carries the
    same fixed set-up), so the bound is 0.25-2."""
    from sklearn.metrics import roc_auc_score

    from autokfp.config import parse_config
    from autokfp.steps.refit_model import refit_model

    paths = keras_package.paths
    evaluation = tmp_path / "evaluation.json"
    evaluation.write_text(json.dumps({"comparison": {"promote": True, "reason": "gate passed"}}))
    out = tmp_path / "served"
    data = keras_package.config.to_dict()
    data["training"] = {**data["training"], "refit_for_serving": "auto", "refit_max_rows": 100,
                        "refit_max_secs": 3600}
    result = refit_model(parse_config(data), str(paths.model), str(evaluation),
                         str(paths.train), str(paths.test), str(out))
    assert result.served == "refit", result.reason
    assert "over training.refit_max_rows (100) it was estimated at" in result.reason
    assert result.figures["refit_estimate_seconds"] > 0
    trained = _engine_json(paths.model)["recipe_fit"]
    refitted = _engine_json(out)["recipe_fit"]
    assert refitted["rows"] == _rows(paths.train) + _rows(paths.test)
    if "cpu_seconds" in trained:
        estimate = trained["cpu_seconds"] * refitted["rows"] / trained["rows"]
        assert 0.25 * estimate <= refitted["cpu_seconds"] <= 2 * estimate, (trained, refitted)
    else:  # the training's own refit was skipped (its estimate, by the best trial's wall
        # epoch times, over the budget's share on a loaded machine): the estimate then
        # stands on the best trial's epochs, wall time, which load makes no measure to check
        assert trained["source"] == "the best trial's epochs", trained
        assert trained["seconds"] > 0 and trained["rows"] < refitted["rows"], trained
        # and that was why: the package says its refit was skipped over the budget's share
        note = str(_engine_json(paths.model).get("refit", ""))
        assert note.startswith("skipped: about") and "refit_max_share" in note, note
    assert refitted["cpu_seconds"] > 0, refitted
    train_rows, test_rows = _rows(paths.train), _rows(paths.test)
    served = _meta(out)
    assert served["fitted_rows"] == train_rows + test_rows
    assert _meta(out / GATE_MODEL_DIR)["fitted_rows"] == _meta(paths.model)["fitted_rows"]
    network = Path("artifacts", "engine", "model.keras")
    assert (out / network).read_bytes() != (out / GATE_MODEL_DIR / network).read_bytes()
    engine = json.loads((out / "artifacts" / "engine" / "engine.json").read_text())
    assert engine["fitted_rows"] == train_rows + test_rows
    assert engine["best_epochs"] == _engine_json(paths.model)["best_epochs"] >= 1
    # it learnt: it ranks every labelled row far better than chance, and about as well as
    # the gated network
    rows = pd.concat([pd.read_parquet(paths.train), pd.read_parquet(paths.test)])
    truth = (rows["churned"].astype(str) == str(served["positive_class"])).astype(int)
    column = f"probability_{served['positive_class']}"
    auc = {who: roc_auc_score(truth, load_model_package(str(folder)).predict(rows)[column])
           for who, folder in (("refit", out), ("gate", out / GATE_MODEL_DIR))}
    assert auc["refit"] > 0.7 and auc["refit"] >= auc["gate"] - 0.05, auc


def _engine_json(package: Path) -> dict:
    return json.loads((package / "artifacts" / "engine" / "engine.json").read_text())
