"""Where the catalog goes: metadata files DataHub accepts, the real DataHub Lite, and a GMS
(a local HTTP server standing in for it, checking paths, payloads and the bearer token:
tests/engine/catalog/gms_fake.py)."""

from __future__ import annotations

import json
import logging
import threading
import time
from pathlib import Path

import pytest

from autokfp.catalog.crawl import accept_schema, crawl_sources
from autokfp.catalog.datahub import emit_to_gms, lite_home, metadata_proposals, read_lite
from autokfp.catalog.discovery import discover
from tests.engine.catalog.conftest import check_metadata_file, run_datahub, write_table
from tests.engine.catalog.gms_fake import FakeGms

TOKEN = "eyJhbGciOiJIUzI1NiJ9.test-token-value"
CUSTOMERS_URN = "urn:li:dataset:(urn:li:dataPlatform:sqlite,main.customers,PROD)"


def test_crawl_metadata_passes_datahub_check_and_lands_in_lite(churn_sources, catalog_home,
                                                               tmp_path) -> None:
    config, _folder, db, frame = churn_sources
    report = crawl_sources(config)
    published = report.published
    assert published["lite_written"] == published["proposals"] == 15
    assert published["lite_error"] is None and published["gms_url"] is None
    check_metadata_file(published["metadata_uri"], tmp_path / "home")

    # the real datahub CLI, pointed at the Lite catalog through autokfp's own HOME
    home = lite_home(catalog_home.catalog_dir)
    listed = run_datahub(["lite", "list-urns"], home)
    assert listed.returncode == 0, listed.stderr
    assert CUSTOMERS_URN in listed.stdout
    csv_name = str(_folder / "customers.csv").lstrip("/")  # DataHub names a file by its path
    assert f"urn:li:dataset:(urn:li:dataPlatform:file,{csv_name},PROD)" in listed.stdout
    got = run_datahub(["lite", "get", "--urn", CUSTOMERS_URN], home)
    assert got.returncode == 0, got.stderr
    entity = json.loads(got.stdout)
    fields = {f["fieldPath"]: f for f in entity["schemaMetadata"]["fields"]}
    email_tags = {t["tag"] for t in fields["email"]["globalTags"]["tags"]}
    assert {"urn:li:tag:pii", "urn:li:tag:pii:email"} <= email_tags
    assert "urn:li:tag:target" in {t["tag"] for t in fields["churned"]["globalTags"]["tags"]}
    assert entity["datasetProperties"]["customProperties"]["schema_version"] == "1"
    assert entity["datasetProfile"]["rowCount"] == len(frame)
    assert not (Path.home() / ".datahubenv").exists() or "autokfp" not in (
        Path.home() / ".datahubenv").read_text()

    # a breaking change is visible in the catalog, and accepting it clears the mark
    write_table(db, "customers", frame.drop(columns=["tenure_months"]))
    report = crawl_sources(config)
    assert report.published["proposals"] == 5  # only the changed dataset is re-sent
    check_metadata_file(report.published["metadata_uri"], tmp_path / "home")
    entity = read_lite(catalog_home.catalog_dir, CUSTOMERS_URN)
    props = entity["datasetProperties"]["customProperties"]
    assert props["schema_verdict"] == "breaking" and props["breaking_columns"] == "tenure_months"
    assert props["schema_version"] == "2" and props["accepted_schema_version"] == "1"
    assert entity["schemaMetadata"]["version"] == 2
    assert "urn:li:tag:schema:breaking" in {t["tag"] for t in entity["globalTags"]["tags"]}
    accept_schema("warehouse/customers")
    entity = read_lite(catalog_home.catalog_dir, CUSTOMERS_URN)
    assert "urn:li:tag:schema:breaking" not in {t["tag"] for t in entity["globalTags"]["tags"]}
    assert entity["datasetProperties"]["customProperties"]["accepted_schema_version"] == "2"


def test_crawl_sends_every_aspect_to_a_gms_with_the_bearer_token(churn_sources, catalog_home,
                                                                 monkeypatch, caplog) -> None:
    config, _folder, _db, _frame = churn_sources
    caplog.set_level(logging.DEBUG)
    with FakeGms(TOKEN) as gms:
        monkeypatch.setenv("DATAHUB_GMS_URL", gms.url)
        monkeypatch.setenv("DATAHUB_GMS_TOKEN", TOKEN)
        report = crawl_sources(config)
    assert report.published["gms_error"] is None
    assert report.published["gms_sent"] == 15 and report.published["gms_url"] == gms.url
    assert gms.requests[0]["method"] == "GET" and gms.requests[0]["path"] == "/config"
    posts = [r for r in gms.requests if r["method"] == "POST"]
    assert len(posts) == 1  # GMS's batch endpoint, as DataHub's REST sink uses it
    assert {r["path"] for r in posts} == {"/aspects?action=ingestProposalBatch"}
    assert len(gms.proposals()) == 15 and gms.refused == []  # each valid to DataHub's schemas
    assert {r["authorization"] for r in gms.requests} == {f"Bearer {TOKEN}"}
    proposals = gms.proposals()
    assert {p["entityType"] for p in proposals} == {"dataset"}
    assert {p["changeType"] for p in proposals} == {"UPSERT"}
    customers = {p["aspectName"]: json.loads(p["aspect"]["value"]) for p in proposals
                 if p["entityUrn"] == CUSTOMERS_URN}
    assert set(customers) == {"status", "datasetProperties", "schemaMetadata",
                              "datasetProfile", "globalTags"}
    assert customers["status"] == {"removed": False}
    assert customers["datasetProperties"]["customProperties"]["schema_version"] == "1"
    assert "email" in {f["fieldPath"] for f in customers["schemaMetadata"]["fields"]}
    assert TOKEN not in caplog.text


def test_a_refusing_gms_is_reported_never_fatal_and_never_leaks_the_token(
        churn_sources, catalog_home, monkeypatch, caplog) -> None:
    config, _folder, _db, _frame = churn_sources
    with FakeGms("another-token") as gms:
        monkeypatch.setenv("DATAHUB_GMS_URL", gms.url)
        monkeypatch.setenv("DATAHUB_GMS_TOKEN", TOKEN)
        report = crawl_sources(config)
    error = report.published["gms_error"]
    assert error and "DATAHUB_GMS_TOKEN" in error and "authentication error" in error
    assert TOKEN not in error and TOKEN not in caplog.text
    assert report.published["gms_sent"] == 0
    assert report.published["lite_written"] == 15  # the local catalog still has it all
    assert report.counts()["catalogued"] == 3


def test_emitter_without_token_sends_no_authorization(churn_sources) -> None:
    config, *_ = churn_sources
    proposals = [p for item in discover(config.sources) for p in metadata_proposals(item.schema)]
    with FakeGms(None) as gms:
        assert emit_to_gms(proposals[:2], gms.url) == 2
    assert {r["authorization"] for r in gms.requests} == {None}
    assert [r["path"] for r in gms.requests] == ["/config",
                                                 "/aspects?action=ingestProposalBatch"]
    assert len(gms.proposals()) == 2


@pytest.mark.parametrize("url", ["http://127.0.0.1:9"])
def test_unreachable_gms_raises_a_catalog_error(url) -> None:
    from autokfp.catalog.datahub import CatalogPublishError

    with pytest.raises(CatalogPublishError, match="DATAHUB_GMS_URL"):
        emit_to_gms([], url, token=TOKEN, timeout_sec=2)


def _published_aspects(report) -> list[tuple[str, str, dict]]:
    records = json.loads(Path(report.published["metadata_uri"]).read_text())
    return [(r["entityUrn"], r["aspectName"], r["aspect"]["json"]) for r in records]


def test_stateful_recrawl_sends_nothing_new_and_soft_deletes_a_dropped_table(
        churn_sources, catalog_home, tmp_path) -> None:
    """As DataHub's stateful ingestion: an unchanged re-crawl emits nothing, a dropped table
    is soft-deleted once (Status removed=true, its history kept), and it is live again
    when it comes back."""
    import sqlite3

    config, _folder, db, frame = churn_sources
    first = crawl_sources(config)
    assert first.published["lite_error"] is None
    assert read_lite(catalog_home.catalog_dir, CUSTOMERS_URN)["status"] == {"removed": False}

    unchanged = crawl_sources(config)
    assert unchanged.published == {} and unchanged.counts()["unchanged"] == 3

    with sqlite3.connect(db) as connection:
        connection.execute("DROP TABLE customers")
    dropped = crawl_sources(config)
    assert dropped.outcome("warehouse/customers").status == "missing"
    assert _published_aspects(dropped) == [(CUSTOMERS_URN, "status", {"removed": True})]
    check_metadata_file(dropped.published["metadata_uri"], tmp_path / "home")
    entity = read_lite(catalog_home.catalog_dir, CUSTOMERS_URN)
    assert entity["status"] == {"removed": True}
    assert entity["schemaMetadata"]["fields"]  # soft: what was known stays
    assert crawl_sources(config).published == {}  # still gone: nothing is sent again

    write_table(db, "customers", frame)
    back = crawl_sources(config)
    assert (CUSTOMERS_URN, "status", {"removed": False}) in _published_aspects(back)
    assert read_lite(catalog_home.catalog_dir, CUSTOMERS_URN)["status"] == {"removed": False}


def test_fast_serialisation_equals_datahubs_for_every_kind_of_aspect(churn_frame) -> None:
    """The metadata file and Lite use autokfp's converter (no validation pass); every kind
    of proposal autokfp writes serialises exactly as DataHub's own ``to_obj`` does, key
    order included (it skips DataHub's validation pass: typed aspect classes build them)."""
    import math

    from datahub.emitter.mcp import MetadataChangeProposalWrapper
    from datahub.metadata.schema_classes import SystemMetadataClass

    from autokfp.catalog import datahub
    from autokfp.catalog.profiling import profile_frame

    frame = churn_frame.head(300).copy()
    frame["address"] = [{"city": "Lyon", "geo": {"lat": 1.5}}] * len(frame)
    frame.loc[frame.index[:5], "email"] = None
    schema = profile_frame(frame, "files/churn.jsonl", "file", "/data/churn.jsonl", fmt="jsonl",
                           row_count=10_000, sensitive_columns=["gender"])
    schema.urn = "urn:li:dataset:(urn:li:dataPlatform:file,data/churn.jsonl,PROD)"
    schema.nested_fields = [["address.city", "str", False], ["address.geo", "dict", False],
                            ["address.geo.lat", "float", True]]
    schema.modified_at = "2024-03-01T10:00:00+00:00"
    schema.catalog = {"schema_version": 3, "accepted_version": 2, "verdict": "breaking"}
    feature = datahub.feature_set_urn("churn")
    model = datahub.model_version_urn("churn", 4)
    proposals = [
        *datahub.metadata_proposals(schema),
        *datahub.removal_proposals([schema.urn]),
        *datahub.feature_set_proposals(feature, "churn", [schema.urn], {
            "numeric": ["tenure"], "categorical": ["plan"], "boolean": ["b"],
            "datetime": ["d"], "text": ["t"], "target": "churned", "dropped": {"id": "id"}}),
        *datahub.model_proposals("churn", 4, feature, [schema.urn], {"auc": 0.91, "f1": math.pi},
                                 {"engine": "h2o"}, ["urn:li:mlModelDeployment:(x)"]),
        *datahub.deployment_proposals(datahub.deployment_urn("ns", "churn"), model, 4, "ns",
                                      "churn"),
    ]
    proposals[0].systemMetadata = SystemMetadataClass(lastObserved=1, runId="r",
                                                      properties={"a": "b"})
    kinds = {type(p.aspect).__name__ for p in proposals}
    assert {"SchemaMetadataClass", "DatasetProfileClass", "StatusClass", "TrainingDataClass",
            "MLModelPropertiesClass", "UpstreamLineageClass"} <= kinds
    for proposal in proposals:
        theirs = MetadataChangeProposalWrapper.to_obj(proposal, simplified_structure=True)
        assert json.dumps(datahub.simplified_obj(proposal)) == json.dumps(theirs), (
            proposal.aspectName)


def _wire(proposal) -> dict:
    """A proposal as DataHub's REST emitter sends it (rest.li JSON)."""
    from datahub.emitter.serialization_helper import pre_json_transform

    return pre_json_transform(proposal.to_obj())


def test_the_fake_gms_refuses_what_gms_refuses_and_stores_nothing_of_a_bad_batch(
        churn_sources) -> None:
    """The GMS stand-in checks every proposal against the schemas shipped in acryl-datahub
    (GMS validates the same PDL models): autokfp's proposals all pass; a wrong value type, a
    missing required field, an aspect the entity does not have, a mismatched entity type
    get GMS's 422 (as does a field the aspect's schema does not define), an unknown envelope
    field rest.li's 400, and a batch holding one of them
    stores nothing."""
    import requests

    config, *_ = churn_sources
    proposals = [p for item in discover(config.sources) for p in metadata_proposals(item.schema)]
    good = [_wire(p) for p in proposals]
    schema = next(p for p in good if p["aspectName"] == "schemaMetadata")
    fields = json.loads(schema["aspect"]["value"])
    del fields["fields"][0]["nativeDataType"]
    status = next(p for p in good if p["aspectName"] == "status")
    bad = {
        "wrong type": (422, {**status, "aspect": {**status["aspect"],
                                                  "value": '{"removed": "yes"}'}}),
        "missing field": (422, {**schema, "aspect": {**schema["aspect"],
                                                     "value": json.dumps(fields)}}),
        "not a dataset aspect": (422, {**status, "aspectName": "mlModelProperties",
                                       "aspect": {**status["aspect"],
                                                  "value": '{"customProperties": {}}'}}),
        "unknown field": (422, {**status, "aspect": {**status["aspect"],
                                                     "value": '{"removed": false, "x": 1}'}}),
        "entity type": (422, {**status, "entityType": "chart"}),
        "envelope field": (400, {**status, "aspectVersion": 3}),
    }
    with FakeGms(None) as gms:
        url = f"{gms.url}/aspects?action=ingestProposalBatch"
        for name, (code, proposal) in bad.items():
            answer = requests.post(url, json={"proposals": [good[0], proposal]}, timeout=10)
            assert answer.status_code == code, (name, answer.text)
            assert answer.json()["exceptionClass"].endswith("RestLiServiceException")
        assert gms.aspects == {} and gms.proposals() == []
        answer = requests.post(url, json={"proposals": good}, timeout=10)
        assert answer.status_code == 200, answer.text
        assert len(gms.proposals()) == len(good) == 15
        kept = {(p["entityUrn"], p["aspectName"]) for p in good}
        assert kept == set(gms.aspects) | set(gms.timeseries)
        assert {name for _, name in gms.timeseries} == {"datasetProfile"}  # timeseries

        # DataHub's emitter reports GMS's refusal; autokfp's error names it
        from datahub.emitter.mcp import MetadataChangeProposalWrapper
        from datahub.metadata.schema_classes import MLModelPropertiesClass

        from autokfp.catalog.datahub import CatalogPublishError

        wrong = MetadataChangeProposalWrapper(entityUrn=CUSTOMERS_URN,
                                              aspect=MLModelPropertiesClass())
        with pytest.raises(CatalogPublishError,
                           match="Unknown aspect mlModelProperties for entity dataset"):
            emit_to_gms([wrong], gms.url)


def test_a_gms_answering_503_is_retried_by_the_emitter(churn_sources) -> None:
    """GMS behind a load balancer answers 503 while it restarts: DataHub's emitter retries
    (429 and 5xx, with backoff), so one blip loses nothing; a GMS that stays down fails the
    publish with a clear error (the crawl itself goes on: test above)."""
    from autokfp.catalog.datahub import CatalogPublishError

    config, *_ = churn_sources
    proposals = [p for item in discover(config.sources) for p in metadata_proposals(item.schema)]
    with FakeGms(None) as gms:
        gms.fail_next = [503]
        assert emit_to_gms(proposals[:4], gms.url) == 4
        posts = [r for r in gms.requests if r["method"] == "POST"]
        assert len(posts) == 2 and len(gms.proposals()) == 4  # refused once, taken once
        gms.fail_next = [503] * 3
        with pytest.raises(CatalogPublishError,
                           match="DataHub GMS at .* acknowledged 0 aspect"):
            emit_to_gms(proposals[4:6], gms.url)
        assert len(gms.proposals()) == 4


def test_gms_batches_are_sent_several_at_a_time_and_a_refused_one_is_named(
        churn_sources, monkeypatch) -> None:
    """A GMS answers a batch after writing it (the stand-in takes 0.15 s per request): 8
    batches one after another take 8 answers' time; with 4 workers 4 are in flight at once
    (the stand-in holds each until 4 are, or 10 s), every aspect taken either way. A batch GMS refuses (its checks, before it writes) is
    named with its aspects, nothing of it is written, and the error counts what GMS
    acknowledged."""
    import time

    from datahub.emitter.mcp import MetadataChangeProposalWrapper
    from datahub.metadata.schema_classes import MLModelPropertiesClass

    from autokfp.catalog import datahub
    from autokfp.catalog.datahub import CatalogPublishError

    config, *_ = churn_sources
    proposals = [p for item in discover(config.sources) for p in metadata_proposals(item.schema)]
    monkeypatch.setattr(datahub, "_GMS_BATCH", 2)  # 15 aspects: 8 batches
    took = {}
    for workers in (1, 4):
        with FakeGms(None, latency=0.15, together=workers) as gms:
            started = time.perf_counter()
            assert emit_to_gms(proposals, gms.url, workers=workers) == 15
            took[workers] = time.perf_counter() - started
        assert gms.most_in_flight == workers
        assert sorted((p["entityUrn"], p["aspectName"]) for p in gms.proposals()) == sorted(
            (p.entityUrn, p.aspectName) for p in proposals)
    # the 4 workers are told by the stand-in's count of POSTs in flight at once, held until 4
    # are: a serial sender never has 2 (and waits 10 s on each POST). Not by
    # 'took[4] < 0.5 * took[1]': under load 16 took[1] was 6.8-10.5 s (the first emit also
    # imports DataHub's emitter) and took[4] 1.1-2.6 s, one run saw 3 of 4 in flight, and
    # with the import done by an earlier test the ratio was the per-request overhead's
    assert took[1] >= 8 * 0.15, took  # one after another: 8 answers' latency at least

    wrong = MetadataChangeProposalWrapper(entityUrn=CUSTOMERS_URN,
                                          aspect=MLModelPropertiesClass())
    sent = [*proposals[:7], wrong, *proposals[7:]]  # batch 4 holds aspects 7 and 8
    with FakeGms(None, latency=0.15) as gms:
        with pytest.raises(CatalogPublishError, match=r"batch 4 \(aspects 7-8\) failed: .*"
                           r"Unknown aspect mlModelProperties for entity dataset") as refused:
            emit_to_gms(sent, gms.url, workers=4)
    taken = {(p["entityUrn"], p["aspectName"]) for p in gms.proposals()}
    assert refused.value.sent == len(gms.proposals()) == len(taken)
    assert "aspect(s), then failed" in str(refused.value)
    batches = [{(p.entityUrn, p.aspectName) for p in sent[i:i + 2]} for i in range(0, 16, 2)]
    assert all(batch <= taken or not batch & taken for batch in batches)  # checked first
    assert not batches[3] & taken and batches[0] <= taken


def _gms_state(gms: FakeGms) -> tuple:
    return (gms.aspects, gms.versions, gms.timeseries)


def test_a_batch_gms_wrote_in_part_is_sent_again_harmlessly(churn_sources, monkeypatch) -> None:
    """A GMS can fail a batch after writing part of it (a time-series aspect indexed before
    the database write failed, async mode) or lose its answer after writing all of it.
    The emitter's retry sends the batch again, and so does the next crawl when the retries
    run out: every aspect is an UPSERT of its whole value, so GMS ends in the state one
    clean send gives (the same values, one version each, one profile per timestamp), and
    the error counts only the aspects GMS acknowledged."""
    from autokfp.catalog import datahub
    from autokfp.catalog.datahub import CatalogPublishError

    config, *_ = churn_sources
    proposals = [p for item in discover(config.sources) for p in metadata_proposals(item.schema)]
    assert {p.changeType for p in proposals} == {"UPSERT"}
    monkeypatch.setattr(datahub, "_GMS_BATCH", 4)  # 15 aspects: 4 batches
    with FakeGms(None) as clean:
        assert emit_to_gms(proposals, clean.url, workers=1) == 15
    assert set(clean.versions.values()) == {1} and clean.timeseries
    with FakeGms(None) as gms:
        gms.fail_after_writing = [(2, 500), (None, 504)]  # batch 1 in part, batch 2 whole
        assert emit_to_gms(proposals, gms.url, workers=1) == 15  # the emitter's retries
        assert len(gms.proposals()) == 15 + 2 + 4  # 6 aspects written twice
        assert _gms_state(gms) == _gms_state(clean)

    from urllib3.util.retry import Retry

    monkeypatch.setattr(Retry, "_sleep_backoff", lambda self: None)  # the 4 s of backoff
    with FakeGms(None) as gms:  # a batch failing after a partial write, retries and all
        gms.fail_after_writing = [(None, 200)] + [(1, 500)] * 3  # batch 1 fine, 2 fails
        with pytest.raises(CatalogPublishError, match=r"acknowledged 4 aspect\(s\), then "
                           r"failed: batch 2 \(aspects 5-8\)") as failed:
            emit_to_gms(proposals, gms.url, workers=1)
        assert failed.value.sent == 4 and len(gms.aspects) + len(gms.timeseries) == 5
        assert emit_to_gms(proposals, gms.url, workers=1) == 15  # the next crawl's send
        assert _gms_state(gms) == _gms_state(clean)


def _same(closed: list, made: list) -> bool:
    """Each emitter made closed exactly once (the CI of ed060f0 closed three in another order
    than they were made: the sending threads end in their own order)."""
    return sorted(map(id, closed)) == sorted(map(id, made))


def test_one_gms_connection_serves_a_whole_publication_and_is_closed(
        churn_sources, catalog_home, tmp_path, monkeypatch) -> None:
    """publish sends to GMS a batch of PUBLISH_BATCH at a time through one GmsSender: one
    connection check, at most one emitter per thread for the whole publication, every
    emitter closed and no sending thread left at the end, also when publishing fails."""
    from datahub.emitter.rest_emitter import DataHubRestEmitter

    from autokfp.catalog import datahub

    config, *_ = churn_sources
    schemas = [d.schema for d in discover(config.sources) if d.ok]
    for schema in schemas:
        schema.urn = schema.urn or datahub.dataset_urn(schema)
    monkeypatch.setattr(datahub, "PUBLISH_BATCH", 4)  # 15 aspects: 4 publish batches
    monkeypatch.setattr(datahub, "_GMS_BATCH", 2)
    made, closed = [], []

    class Counted(DataHubRestEmitter):
        def __init__(self, *args, **kwargs):
            made.append(self)
            super().__init__(*args, **kwargs)

        def close(self):
            closed.append(self)
            super().close()

    monkeypatch.setattr("datahub.emitter.rest_emitter.DataHubRestEmitter", Counted)

    def sending_threads() -> list[str]:
        return [t.name for t in threading.enumerate() if t.name.startswith("autokfp-gms")]

    with FakeGms(None) as gms:
        monkeypatch.setenv("DATAHUB_GMS_URL", gms.url)
        result = datahub.publish((p for s in schemas for p in metadata_proposals(s)),
                                 str(tmp_path / "crawl.json"), catalog_home.catalog_dir)
        assert (result.gms_sent, result.gms_error) == (15, None)
        assert [r["path"] for r in gms.requests].count("/config") == 1
        posts = [r for r in gms.requests if r["method"] == "POST"]
        assert len(posts) == 8  # publish batches of 4, 4, 4, 3 aspects; GMS batches of 2
        # every emitter closed, in whatever order the sending threads end (not made's order)
        assert 1 < len(made) <= 1 + datahub.GMS_WORKERS and _same(closed, made)
        assert sending_threads() == []

        made.clear()
        closed.clear()
        real_load = datahub.load_into_lite

        def failing_load(batch, catalog_dir):
            if len(gms.proposals()) >= 15 + 4:  # GMS took the first publish batch
                raise RuntimeError("disk full")
            return real_load(batch, catalog_dir)

        monkeypatch.setattr(datahub, "load_into_lite", failing_load)
        with pytest.raises(RuntimeError, match="disk full"):
            datahub.publish((p for s in schemas for p in metadata_proposals(s)),
                            str(tmp_path / "again.json"), catalog_home.catalog_dir)
        assert len(gms.proposals()) == 15 + 4
        assert made and _same(closed, made) and sending_threads() == []


def test_an_aspect_sent_twice_keeps_its_last_value_when_batches_go_together(
        churn_sources, monkeypatch) -> None:
    """Batches go to GMS several at a time, yet a later proposal of an entity's aspect is
    written after an earlier one (DataHub's REST sink keeps each URN's records in order
    too): the batch holding the later one waits for the batch holding the earlier one,
    here made the slowest to answer. Batches sharing no aspect still go together."""
    from datahub.emitter.mcp import MetadataChangeProposalWrapper
    from datahub.emitter.rest_emitter import DataHubRestEmitter
    from datahub.metadata.schema_classes import DatasetPropertiesClass

    from autokfp.catalog import datahub

    config, *_ = churn_sources
    proposals = [p for item in discover(config.sources) for p in metadata_proposals(item.schema)]

    def described(text: str) -> MetadataChangeProposalWrapper:
        return MetadataChangeProposalWrapper(
            entityUrn=CUSTOMERS_URN, aspect=DatasetPropertiesClass(description=text))

    monkeypatch.setattr(datahub, "_GMS_BATCH", 2)
    others = [p for p in proposals if p.aspectName != "datasetProperties"][:5]
    sent = [described("old"), others[0], others[1], others[2], described("new"), *others[3:]]
    emit, lock, sending, most = DataHubRestEmitter.emit_mcps, threading.Lock(), [0], [0]
    started = threading.Condition(lock)

    def slow_first(self, batch, *args, **kwargs):
        with lock:
            sending[0] += 1
            most[0] = max(most[0], sending[0])
            started.notify_all()
        try:
            if any(p.aspectName == "datasetProperties" and p.aspect.description == "old"
                   for p in batch):
                # until another batch is sent beside it (up to 10 s: a loaded machine may
                # start the next thread later than a fixed 0.6 s), then answers last
                with lock:
                    started.wait_for(lambda: most[0] >= 2, timeout=10)
                time.sleep(0.6)  # the batch with the earlier value answers last
            return emit(self, batch, *args, **kwargs)
        finally:
            with lock:
                sending[0] -= 1

    monkeypatch.setattr(DataHubRestEmitter, "emit_mcps", slow_first)
    with FakeGms(None, latency=0.05) as gms:
        assert emit_to_gms(sent, gms.url, workers=4) == len(sent)
    assert gms.aspects[(CUSTOMERS_URN, "datasetProperties")]["description"] == "new"
    assert most[0] >= 2  # a batch sharing no aspect with the slow one went beside it


def test_every_kind_of_proposal_autokfp_sends_is_one_gms_takes(churn_sources) -> None:
    """Datasets (a view with column lineage among them), feature sets, model versions,
    deployments and soft-deletes, as the REST emitter sends them, pass the GMS stand-in's
    checks against DataHub's schemas."""
    from dataclasses import replace

    from datahub.emitter.serialization_helper import pre_json_transform

    from autokfp.catalog import datahub as dh
    from tests.engine.catalog.gms_fake import validate_proposal

    config, *_ = churn_sources
    schema = discover(config.sources)[0].schema
    view = replace(schema, urn=None, dataset_id="warehouse/v", view={
        "definition": "SELECT id AS customer FROM customers", "upstreams": [CUSTOMERS_URN],
        "columns": [{"column": "customer", "upstreams": [[CUSTOMERS_URN, "id"]],
                     "logic": "COPY: customers.id"}]})
    feature_set = dh.feature_set_urn("churn.features.abc")
    deployment = dh.deployment_urn("ns", "churn")
    proposals = [
        *dh.metadata_proposals(schema), *dh.metadata_proposals(view),
        *dh.feature_set_proposals(feature_set, "churn.features.abc", [CUSTOMERS_URN], {
            "input_columns": ["a"], "target": "y", "groups": {"numeric": ["a"]}}),
        *dh.model_proposals("churn", 3, feature_set, [CUSTOMERS_URN], {"auc": 0.8},
                            {"schema_version": "1"}, [deployment], "a model"),
        *dh.deployment_proposals(deployment, dh.model_version_urn("churn", 3), 3, "ns", "churn"),
        *dh.removal_proposals([CUSTOMERS_URN])]
    lineage = next(p for p in proposals if p.aspectName == "upstreamLineage"
                   and p.entityUrn == dh.dataset_urn(view))
    assert lineage.aspect.fineGrainedLineages[0].downstreams == [
        f"urn:li:schemaField:({dh.dataset_urn(view)},customer)"]
    kinds = set()
    for proposal in proposals:
        urn, aspect, _, _ = validate_proposal(pre_json_transform(proposal.to_obj()))
        kinds.add((proposal.entityType, aspect))
    assert {e for e, _ in kinds} == {"dataset", "dataFlow", "dataJob", "mlModel",
                                     "mlModelGroup", "mlModelDeployment"}


def test_publishing_writes_the_whole_file_first_then_sends_a_batch_at_a_time(
        churn_sources, catalog_home, tmp_path, monkeypatch) -> None:
    """publish puts the metadata file in place, whole, before anything reaches Lite or GMS,
    then sends the proposals a batch at a time; it holds one batch, not every dataset's:
    when a batch reaches Lite, no more proposals made by the caller are alive than that
    batch (the rest were written out and let go). The file and Lite end up with every
    proposal, and what was sent is what the file says."""
    import gc
    import weakref

    from autokfp.catalog import datahub

    config, _folder, _db, _frame = churn_sources
    schemas = [d.schema for d in discover(config.sources) if d.ok]
    for schema in schemas:
        schema.urn = schema.urn or datahub.dataset_urn(schema)
    monkeypatch.setattr(datahub, "PUBLISH_BATCH", 4)
    made: list[weakref.ref] = []
    keys: list[tuple[str, str]] = []
    loads, sent = [], []
    real_load = datahub.load_into_lite
    target = tmp_path / "meta" / "crawl.json"

    def counting_load(batch, catalog_dir):
        batch = list(batch)
        gc.collect()
        alive = sum(ref() is not None for ref in made)
        loads.append((len(batch), alive, target.read_text() if target.exists() else None))
        sent.extend(batch)
        return real_load(batch, catalog_dir)

    def produced():  # fresh proposals, only weakly referenced here
        for schema in schemas:
            for proposal in metadata_proposals(schema):
                made.append(weakref.ref(proposal))
                keys.append((proposal.entityUrn, proposal.aspectName))
                yield proposal

    monkeypatch.setattr(datahub, "load_into_lite", counting_load)
    result = datahub.publish(produced(), str(target), catalog_home.catalog_dir)
    assert (result.proposals, result.lite_written, result.lite_error) == (15, 15, None)
    assert len(made) == 15
    assert [size for size, _, _ in loads] == [4, 4, 4, 3]
    whole = target.read_text()
    assert [(r["entityUrn"], r["aspectName"]) for r in json.loads(whole)] == keys
    assert all(text == whole for _, _, text in loads)  # in place, whole, before any send
    assert all(alive <= 4 for _, alive, _ in loads)
    assert datahub.metadata_file_text(sent) == whole  # what was sent is what the file says
    for schema in schemas:
        assert read_lite(catalog_home.catalog_dir, schema.urn)["schemaMetadata"]
    assert datahub.publish(iter([]), str(tmp_path / "none.json"), None).proposals == 0
    assert not (tmp_path / "none.json").exists()
    # without a metadata file: every proposal still counted and sent, a batch at a time
    loads.clear()
    sent.clear()
    result = datahub.publish(produced(), None, catalog_home.catalog_dir)
    assert (result.proposals, result.lite_written, result.metadata_uri) == (15, 15, None)
    assert [size for size, _, _ in loads] == [4, 4, 4, 3]


def test_a_metadata_file_that_cannot_be_written_sends_nothing(
        churn_sources, catalog_home, gcs_emulator, monkeypatch) -> None:
    """The metadata file goes to a bucket that does not exist (the upload fails once the
    file is staged whole): publish raises the storage error, and neither Lite nor a GMS got
    any of the proposals."""
    from autokfp.catalog import datahub
    from autokfp.errors import StorageError

    config, *_ = churn_sources
    schemas = [d.schema for d in discover(config.sources) if d.ok]
    for schema in schemas:
        schema.urn = schema.urn or datahub.dataset_urn(schema)
    monkeypatch.setattr(datahub, "PUBLISH_BATCH", 4)
    with FakeGms(None) as gms:
        monkeypatch.setenv("DATAHUB_GMS_URL", gms.url)
        with pytest.raises(StorageError, match="no-such-bucket"):
            datahub.publish((p for s in schemas for p in metadata_proposals(s)),
                            "gs://no-such-bucket-h12/metadata/crawl.json",
                            catalog_home.catalog_dir)
    assert gms.proposals() == [] and [r for r in gms.requests if r["method"] == "POST"] == []
    for schema in schemas:
        assert read_lite(catalog_home.catalog_dir, schema.urn) is None


def test_a_lite_batch_is_written_whole_or_not_at_all(churn_sources, catalog_home) -> None:
    """DataHub Lite takes a publication batch in one transaction (session 15): a batch that
    fails part-way leaves none of its aspects and edges, and the batches before it stay."""
    import sqlite3

    from autokfp.catalog.datahub import CatalogPublishError, lite_path, load_into_lite

    config, *_ = churn_sources
    schemas = {d.dataset_id: d.schema for d in discover(config.sources) if d.ok}
    first, second = (metadata_proposals(s) for s in list(schemas.values())[:2])
    first, second = list(first), list(second)
    assert load_into_lite(first, catalog_home.catalog_dir) == len(first)

    def failing():
        yield from second[:3]  # written into the open transaction, then
        raise RuntimeError("the disk went away")

    with sqlite3.connect(lite_path(catalog_home.catalog_dir)) as db:
        before = db.execute("SELECT urn, aspect_name, version, metadata FROM metadata_aspect_v2 "
                            "ORDER BY 1, 2, 3").fetchall()
        edges = db.execute("SELECT * FROM metadata_edge_v2 ORDER BY 1, 2, 3").fetchall()
    with pytest.raises(CatalogPublishError, match="after 3 aspect.*None of the batch"):
        load_into_lite(failing(), catalog_home.catalog_dir)
    with sqlite3.connect(lite_path(catalog_home.catalog_dir)) as db:
        assert db.execute("SELECT urn, aspect_name, version, metadata FROM metadata_aspect_v2 "
                          "ORDER BY 1, 2, 3").fetchall() == before
        assert db.execute("SELECT * FROM metadata_edge_v2 ORDER BY 1, 2, 3").fetchall() == edges
    assert read_lite(catalog_home.catalog_dir, str(second[0].entityUrn)) is None
    assert read_lite(catalog_home.catalog_dir, str(first[0].entityUrn))["schemaMetadata"]
    assert load_into_lite(second, catalog_home.catalog_dir) == len(second)  # and then it goes
    assert read_lite(catalog_home.catalog_dir, str(second[0].entityUrn))["schemaMetadata"]


def test_lite_holds_the_system_metadata_its_own_write_gives(churn_sources, tmp_path) -> None:
    """``load_into_lite`` gives each proposal the system metadata Lite's ``write`` would
    (converted without avrogen's validation, session 17): DataHub Lite written so holds the
    same aspects and system metadata as Lite fed DataHub's own proposals, the time aside."""
    import sqlite3

    from datahub.emitter.mcp import MetadataChangeProposalWrapper
    from datahub.lite.lite_util import get_datahub_lite
    from datahub.metadata.schema_classes import SystemMetadataClass

    from autokfp.catalog import datahub

    assert json.dumps(datahub._LiteSystemMetadata(lastObserved=7, properties={}).to_obj()) == (
        json.dumps(SystemMetadataClass(lastObserved=7, properties={}).to_obj()))
    config, *_ = churn_sources
    schemas = [d.schema for d in discover(config.sources) if d.ok][:2]
    ours = [p for s in schemas for p in metadata_proposals(s)]
    theirs = [MetadataChangeProposalWrapper(entityUrn=p.entityUrn, aspect=p.aspect)
              for p in ours]
    assert datahub.load_into_lite(ours, tmp_path / "ours") == len(ours)
    lite = get_datahub_lite(datahub.lite_config(tmp_path / "theirs"))
    for proposal in theirs:
        lite.write(proposal)
    lite.close()

    def rows(folder):
        with sqlite3.connect(datahub.lite_path(folder)) as db:
            out = []
            for *key, metadata, system in db.execute(
                    "SELECT urn, aspect_name, version, metadata, system_metadata FROM "
                    "metadata_aspect_v2 ORDER BY 1, 2, 3"):
                system = json.loads(system)
                assert isinstance(system.pop("lastObserved"), int)
                out.append((*key, metadata, json.dumps(system)))
            return out

    written = rows(tmp_path / "ours")
    assert len(written) == 2 * len(ours)  # each aspect's version 0 and 1
    assert written == rows(tmp_path / "theirs")
