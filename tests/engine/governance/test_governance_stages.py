"""The governance stages on the session's trained H2O model (example churn data, gender bias).

One module-scoped run goes through every stage as the pipeline would: data check → bias
check (+ mitigation) → explain → evaluate → register → model card + compliance report.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import mlflow
import numpy as np
import pandas as pd
import pytest

from autokfp.catalog.schema import DatasetSchema
from autokfp.governance import PolicyError, approval, audit
from autokfp.modeling import registry
from autokfp.steps import bias_check as bias_check_step
from autokfp.steps import check_data_bias as check_data_bias_step
from autokfp.steps import evaluate_model as evaluate_model_step
from autokfp.steps import explain_model as explain_model_step
from autokfp.steps import register_model as register_model_step
from autokfp.steps import write_model_card as write_model_card_step
from tests.conftest import small_config, use_home

GOVERNANCE = {"shap_rows": 3, "explain_rows": 150}
# The pipeline-order fixture is about the example data's documented gender bias and its
# mitigation, so it checks gender alone. The catalog also tags `age`: its quartile bands have
# fewer than governance.min_group_size (100) of the 400 test rows, so it is measured on the
# engine's out-of-fold rows, where this model breaks the age demographic-parity ratio (about
# 0.78 < 0.8) and a gender mitigation cannot fix it: a 'fail', tested on its own below
# (test_groups_the_test_rows_cannot_measure_are_measured_out_of_fold).
GENDER_ONLY = {**GOVERNANCE, "sensitive_columns": ["gender"]}


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    with pytest.MonkeyPatch.context() as patch:
        yield use_home(patch, tmp_path_factory.mktemp("governance-home"))


@pytest.fixture(scope="module")
def governed(home, trained_package, tmp_path_factory):
    """Every governance stage run once, in pipeline order."""
    out = tmp_path_factory.mktemp("governed")
    paths = trained_package.paths
    config = small_config(trained_package.folder, governance=GENDER_ONLY)
    p = SimpleNamespace(**{name: str(out / name) for name in (
        "data_report.md", "data.json", "model", "fairness.md", "fairness.json", "explanation.json",
        "explanation.html", "plots", "evaluation.json", "registration.json", "card.md",
        "compliance.md", "compliance.json")})
    data = check_data_bias_step.check_data_bias(config, str(paths.train), str(paths.plan), str(paths.schema),
                                      p.__dict__["data_report.md"], p.__dict__["data.json"])
    bias = bias_check_step.bias_check(config, str(paths.model), str(paths.train), str(paths.test),
                                       str(paths.schema), p.model, p.__dict__["fairness.md"],
                                       p.__dict__["fairness.json"])
    explained = explain_model_step.explain_model(config, p.model, str(paths.train), str(paths.test),
                                         p.__dict__["explanation.json"],
                                         p.__dict__["explanation.html"], p.plots)
    evaluate_model_step.evaluate_model(config, p.model, str(paths.test), p.__dict__["evaluation.json"])
    register_model_step.register_model(config, p.model, p.__dict__["evaluation.json"], str(paths.schema),
                          p.__dict__["registration.json"])
    documented = write_model_card_step.write_model_card(
        config, p.model, p.__dict__["registration.json"], p.__dict__["evaluation.json"],
        str(paths.schema), p.__dict__["fairness.json"], p.__dict__["explanation.json"],
        p.__dict__["card.md"], p.__dict__["compliance.md"], p.__dict__["compliance.json"])
    return SimpleNamespace(config=config, out=out, data=data, bias=bias, explained=explained,
                           documented=documented, trained=trained_package,
                           read=lambda name: (out / name).read_text())


def test_training_data_check_finds_the_label_gap(governed) -> None:
    report = json.loads(governed.read("data.json"))
    assert report["sensitive_columns"] == ["gender"]  # from the config (the catalog: below)
    groups = report["data"]["gender"]["groups"]
    train = pd.read_parquet(governed.trained.paths.train)
    female = train[train["gender"] == "female"]["churned"].mean()
    assert groups["female"]["positive_rate"] == pytest.approx(female)
    assert groups["female"]["positive_rate"] > groups["male"]["positive_rate"]
    assert "Training data fairness check" in governed.read("data_report.md")


def test_bias_is_found_and_mitigated_within_policy(governed) -> None:
    report = json.loads(governed.read("fairness.json"))
    assert governed.bias.verdict == report["verdict"] == "mitigated", report["verdict_reason"]
    assert any(c["status"] == "fail" for c in report["before"]["gender"]["checks"])
    assert not any(c["status"] == "fail" for c in report["after"]["gender"]["checks"])
    assert governed.bias.accuracy_cost == pytest.approx(report["accuracy_cost"])
    text = governed.read("fairness.md")
    assert "## Mitigation" in text and "cost" in text
    # a group too small to measure is said so, not passed
    if "nonbinary" in report["before"]["gender"]["too_small"]:
        assert "'nonbinary'" in text and "too small to measure" in text


def test_the_registered_package_serves_the_mitigated_decisions(governed) -> None:
    """Per-group figures recomputed by hand from the package's own predictions."""
    report = json.loads(governed.read("fairness.json"))
    test = pd.read_parquet(governed.trained.paths.test)
    model = mlflow.pyfunc.load_model(str(governed.out / "model"))
    meta = model.unwrap_python_model().meta
    assert meta["fairness_mitigation"]["column"] == "gender"
    assert len(meta["explain_background"]) == 25
    predictions = model.predict(test.drop(columns=["churned"]))
    y = test["churned"].to_numpy()
    decided = predictions["prediction"].to_numpy()
    for group, expected in report["after"]["gender"]["groups"].items():
        mask = (test["gender"] == group).to_numpy()
        assert expected["rows"] == mask.sum()
        assert expected["selection_rate"] == pytest.approx(decided[mask].mean(), abs=1e-12)
        positives = y[mask] == 1
        assert expected["tpr"] == pytest.approx(decided[mask][positives].mean(), abs=1e-12)
        assert expected["mean_score"] == pytest.approx(
            predictions["probability_1"].to_numpy()[mask].mean(), abs=1e-12)


def test_explanations_and_plots(governed) -> None:
    result = json.loads(governed.read("explanation.json"))
    assert result["permutation_importance"]["metric"] == "auc"
    assert len(result["local"]) == 3 and result["shap"]["status"] == "run"
    for local in result["local"]:
        total = local["base_value"] + sum(local["contributions"].values())
        assert total == pytest.approx(local["value"], abs=1e-6)
    for name in result["plots"]:
        assert (governed.out / "plots" / name).stat().st_size > 1000
    assert governed.read("explanation.html").count("data:image/png;base64,") == len(result["plots"])


def test_model_card_and_compliance_report_say_what_was_found(governed) -> None:
    registration = json.loads(governed.read("registration.json"))
    card = governed.read("card.md")
    fairness = json.loads(governed.read("fairness.json"))
    schema = DatasetSchema.from_json(Path(governed.trained.paths.schema).read_text())
    for section in ("## Intended use", "## Data", "## Metrics", "## Fairness", "## Explanations",
                    "## Limitations", "## Training configuration", "## Package versions"):
        assert section in card
    assert f"v{registration['version']}" in card and schema.fingerprint in card
    assert "urn:li:dataset:" in card and "**mitigated**" in card
    assert f"{fairness['accuracy_cost']:+.4f}" in card
    assert "| fairlearn |" in card and "| h2o | 3.46.0.11 |" in card
    train_rows = len(pd.read_parquet(governed.trained.paths.train))
    assert f"fitted on all {train_rows} training rows" in card  # the rows the model used, stated

    report = json.loads(governed.read("compliance.json"))
    assert report["verdict"] == governed.documented.compliance == "pass", report["summary"]
    items = {i["requirement"]: i for i in report["items"]}
    assert {"EU AI Act Art. 10(2)", "EU AI Act Art. 10(2)(f)-(g)", "EU AI Act Art. 11",
            "EU AI Act Art. 12", "EU AI Act Art. 13", "EU AI Act Art. 14", "EU AI Act Art. 15",
            "GDPR Art. 5(1)(c), 25"} == set(items)
    assert "mitigated" in items["EU AI Act Art. 10(2)(f)-(g)"]["detail"]
    assert "email" in items["GDPR Art. 5(1)(c), 25"]["detail"]
    assert items["EU AI Act Art. 14"]["status"] == "not_required"
    assert any("runs:/" in e for e in items["EU AI Act Art. 11"]["evidence"])
    assert "mitigated" in governed.read("compliance.md")


def test_governance_is_logged_to_mlflow_and_audited(governed, home) -> None:
    registration = json.loads(governed.read("registration.json"))
    client = registry.configure(home)
    files = {f.path for f in client.list_artifacts(registration["run_id"], "governance")}
    assert {"governance/model_card.md", "governance/compliance.md",
            "governance/fairness.json"} <= files
    tags = client.get_model_version(registration["name"], registration["version"]).tags
    assert tags["governance.fairness"] == "mitigated" and tags["governance.compliance"] == "pass"
    kinds = [e["kind"] for e in audit.read_events(home)]
    assert "bias.mitigated" in kinds and "model.documented" in kinds
    (documented,) = audit.events_for(registration["name"], registration["version"],
                                     kind="model.documented", settings=home)
    assert tags["audit.last_hash"] == documented["hash"]
    assert audit.verify_trail(home).ok


def test_required_approval_keeps_the_version_out_of_production_until_given(governed, home) -> None:
    config = small_config(governed.trained.folder,
                          governance={**GOVERNANCE, "require_approval": True})
    out = governed.out
    result = write_model_card_step.write_model_card(
        config, str(out / "model"), str(out / "registration.json"), str(out / "evaluation.json"),
        str(governed.trained.paths.schema), str(out / "fairness.json"),
        str(out / "explanation.json"), str(out / "card2.md"), str(out / "compliance2.md"),
        str(out / "compliance2.json"))
    assert result.compliance == "incomplete" and result.deployable is False
    assert "autokfp approve churn-test" in (out / "compliance2.md").read_text()
    version = result.version
    with pytest.raises(PolicyError):
        approval.ensure_approved(config.governance, "churn-test", version)
    approval.approve("churn-test", version, actor="reviewer")
    approval.ensure_approved(config.governance, "churn-test", version)


def _schema_without_tags(trained, tmp_path) -> str:
    data = json.loads(Path(trained.paths.schema).read_text())
    for column in data["columns"]:
        column["tags"] = [t for t in column.get("tags", []) if t != "sensitive"]
    path = tmp_path / "schema.json"
    path.write_text(json.dumps(data))
    return str(path)


def test_no_sensitive_attribute_is_stated_not_passed(governed, home, tmp_path) -> None:
    paths = governed.trained.paths
    tagged_only = small_config(governed.trained.folder, governance=GOVERNANCE)
    result = bias_check_step.bias_check(
        tagged_only, str(paths.model), str(paths.train), str(paths.test),
        _schema_without_tags(governed.trained, tmp_path), str(tmp_path / "model"),
        str(tmp_path / "f.md"), str(tmp_path / "f.json"))
    assert result.verdict == "not_run"
    assert "no sensitive attribute known" in (tmp_path / "f.md").read_text()
    event = audit.read_events(home)[-1]
    assert event["kind"] == "bias.not_run"
    # never silent: a warning `autokfp run` prints in its summary
    assert event["details"]["warning"].startswith("fairness not checked: no sensitive attribute")
    assert audit.warnings_since(event["timestamp"], model=event["model"], settings=home) == [event]


def test_a_check_that_cannot_run_scores_nothing_and_reports_the_same(governed, home, tmp_path,
                                                                     monkeypatch) -> None:
    """With no sensitive column (or a model that is not a binary classifier) the check is not
    run: the model scores no row for it (session 23), and the report is the one the scores
    made before."""
    paths = governed.trained.paths
    tagged_only = small_config(governed.trained.folder, governance=GOVERNANCE)
    schema = _schema_without_tags(governed.trained, tmp_path)
    scored: list[int] = []
    real = bias_check_step.read_package

    def counting(path):
        model, plan, meta = real(path)
        predict = model.predict

        def counted(context, rows, *args, **kwargs):
            scored.append(len(rows))
            return predict(context, rows, *args, **kwargs)

        model.predict = counted
        return model, plan, meta

    monkeypatch.setattr(bias_check_step, "read_package", counting)
    needed = bias_check_step._scores_needed
    before = {"on": True}  # first the scores read as before this change
    monkeypatch.setattr(bias_check_step, "_scores_needed",
                        lambda meta, columns: before["on"] or needed(meta, columns))
    reports = {}
    for name in ("before", "now"):
        before["on"] = name == "before"
        scored.clear()
        bias_check_step.bias_check(tagged_only, str(paths.model), str(paths.train),
                                   str(paths.test), schema, str(tmp_path / f"model-{name}"),
                                   str(tmp_path / f"{name}.md"), str(tmp_path / f"{name}.json"))
        reports[name] = json.loads((tmp_path / f"{name}.json").read_text())
        if name == "before":
            assert scored  # the test rows and the fit rows were scored
    assert scored == []
    assert reports["now"] == reports["before"] and reports["now"]["verdict"] == "not_run"
    assert (tmp_path / "now.md").read_text() == (tmp_path / "before.md").read_text()


def test_a_policy_that_stays_broken_blocks_with_a_report(governed, home, tmp_path) -> None:
    paths = governed.trained.paths
    strict = {**GENDER_ONLY, "max_demographic_parity_difference": 0.0,
              "min_demographic_parity_ratio": 1.0, "mitigate": False}
    config = small_config(governed.trained.folder, governance=strict)
    with pytest.raises(PolicyError, match="block_deploy_on_bias"):
        bias_check_step.bias_check(config, str(paths.model), str(paths.train), str(paths.test),
                                    str(paths.schema), str(tmp_path / "model"),
                                    str(tmp_path / "f.md"), str(tmp_path / "f.json"))
    assert json.loads((tmp_path / "f.json").read_text())["verdict"] == "fail"
    event = audit.read_events(home)[-1]
    assert event["kind"] == "bias.blocked" and event["details"]["blocked"] is True

    allowed = small_config(governed.trained.folder,
                           governance={**strict, "block_deploy_on_bias": False})
    result = bias_check_step.bias_check(allowed, str(paths.model), str(paths.train),
                                         str(paths.test), str(paths.schema),
                                         str(tmp_path / "model2"), str(tmp_path / "g.md"),
                                         str(tmp_path / "g.json"))
    assert result.verdict == "fail"
    assert audit.read_events(home)[-1]["kind"] == "bias.accepted_despite_failure"
    assert np.isfinite(result.disparities["before_gender_demographic_parity_difference"])



def test_mitigation_is_fitted_on_a_bounded_sample_of_a_large_training_table(
        governed, home, tmp_path, monkeypatch) -> None:
    """Above MITIGATION_FIT_ROWS training rows the mitigation is fitted on a uniform sample
    (memory bounded), while the training-data check still counts every row.

    The large table is the session's training rows four times over, so a sample of a quarter
    of it has their distribution and must reach the same verdict."""
    paths = governed.trained.paths
    train = pd.read_parquet(paths.train)
    large = pd.concat([train] * 4, ignore_index=True)
    large_path = tmp_path / "train.parquet"
    large.to_parquet(large_path, index=False, row_group_size=1000)
    monkeypatch.setattr(bias_check_step, "MITIGATION_FIT_ROWS", len(train))
    result = bias_check_step.bias_check(governed.config, str(paths.model), str(large_path),
                                        str(paths.test), str(paths.schema), str(tmp_path / "model"),
                                        str(tmp_path / "f.md"), str(tmp_path / "f.json"))
    report = json.loads((tmp_path / "f.json").read_text())
    assert report["mitigation_fit_rows"] == {"used": len(train), "training_rows": len(large)}
    whole = json.loads(governed.read("fairness.json"))
    assert whole["mitigation_fit_rows"] == {"used": len(train), "training_rows": len(train)}
    for group, counted in report["data"]["gender"]["groups"].items():  # every row counted
        assert counted["rows"] == 4 * whole["data"]["gender"]["groups"][group]["rows"]
        assert counted["positive_rate"] == pytest.approx(
            whole["data"]["gender"]["groups"][group]["positive_rate"])
    assert result.verdict == "mitigated", report["verdict_reason"]
    assert not any(c["status"] == "fail" for c in report["after"]["gender"]["checks"])
    assert report["accuracy_cost"] == pytest.approx(whole["accuracy_cost"], abs=0.03)


def test_groups_the_test_rows_cannot_measure_are_measured_out_of_fold(
        governed, home, tmp_path) -> None:
    """With the catalog's tags (age and gender), age's quartile bands have fewer than 100 of
    the 400 test rows each: instead of leaving age unmeasured, the check runs on the engine's
    out-of-fold predictions of the 1,600 training rows (never pooled with the final model's
    test scores), with 90% intervals, and the gender mitigation is cross-fitted on them."""
    from autokfp.modeling.estimate import load_holdout

    paths = governed.trained.paths
    config = small_config(governed.trained.folder,
                          governance={**GOVERNANCE, "block_deploy_on_bias": False})
    result = bias_check_step.bias_check(config, str(paths.model), str(paths.train),
                                        str(paths.test), str(paths.schema), str(tmp_path / "model"),
                                        str(tmp_path / "f.md"), str(tmp_path / "f.json"))
    report = json.loads((tmp_path / "f.json").read_text())
    assert report["sensitive_columns"] == ["age", "gender"]  # from the catalog's tags
    assert report["measured_on"] == "out-of-fold"
    assert report["measured_groups"]["test"]["age"] < 2
    assert report["measured_groups"]["out_of_fold"]["age"] >= 2
    meta = json.loads((Path(paths.model) / "artifacts" / "meta.json").read_text())
    positions, scores, _ = load_holdout(paths.model, meta)
    train = pd.read_parquet(paths.train)
    assert report["test_rows"] == len(positions) == len(train)  # H2O: every training row
    # per-group figures are the out-of-fold scores' own, recomputed by hand
    genders = train["gender"].to_numpy()[positions]
    for group in report["before"]["gender"]["measured"]:
        mask = genders == group
        stats = report["before"]["gender"]["groups"][group]
        assert stats["rows"] == mask.sum()
        assert stats["mean_score"] == pytest.approx(scores[mask, 1].mean(), abs=1e-9)
    for column in ("age", "gender"):
        assert len(report["before"][column]["measured"]) >= 2
        for name, bounds in report["before"][column]["intervals"].items():
            value = report["before"][column]["disparities"][name]
            if bounds is not None and value is not None:
                assert bounds[0] - 1e-9 <= value <= bounds[1] + 1e-9, (column, name)
    assert "90% interval" in (tmp_path / "f.md").read_text()
    assert result.verdict != "not_run", report["verdict_reason"]
    assert any("scored out of fold" in note for note in report["notes"])
    if report["mitigation"].get("fitted_on"):
        assert "cross-fitted in 5 folds" in report["mitigation"]["fitted_on"]
        assert not any(c["status"] == "fail" for c in report["after"]["gender"]["checks"])
    kinds = {"pass": "bias.passed", "mitigated": "bias.mitigated",
             "fail": "bias.accepted_despite_failure"}
    assert audit.read_events(home)[-1]["kind"] == kinds[result.verdict]


def test_out_of_fold_predictions_that_do_not_match_the_training_rows_are_not_used(
        governed, tmp_path) -> None:
    """A training file in another order than the engine saw (the stored labels differ at
    the stored positions) is refused, and the check stays on the test rows."""
    paths = governed.trained.paths
    shuffled = tmp_path / "train.parquet"
    pd.read_parquet(paths.train).sample(frac=1.0, random_state=1).to_parquet(shuffled,
                                                                               index=False)
    config = small_config(governed.trained.folder,
                          governance={**GOVERNANCE, "block_deploy_on_bias": False})
    bias_check_step.bias_check(config, str(paths.model), str(shuffled), str(paths.test),
                               str(paths.schema), str(tmp_path / "model"),
                               str(tmp_path / "f.md"), str(tmp_path / "f.json"))
    report = json.loads((tmp_path / "f.json").read_text())
    assert report["measured_on"] == "test"
    assert report["test_rows"] == len(pd.read_parquet(paths.test))
