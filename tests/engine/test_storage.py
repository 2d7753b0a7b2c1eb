"""The artifact store behaves the same on a local folder, on GCS (emulated) and on S3 (moto)."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import uuid
from pathlib import Path

import pytest

from autokfp import storage
from autokfp.errors import StorageError

BINARY = bytes(range(256)) * 64 + b"\x00\r\n\xff"


@pytest.fixture(params=["local", "gcs", "s3"])
def base(request, tmp_path) -> str:
    """A fresh, empty folder URI: a tmp_path folder or a unique prefix in an emulator."""
    if request.param == "local":
        return str(tmp_path / "store")
    if request.param == "s3":
        return f"{request.getfixturevalue('s3_server').base_uri}/{uuid.uuid4().hex}"
    emulator = request.getfixturevalue("gcs_emulator")
    return f"{emulator.base_uri}/{uuid.uuid4().hex}"


def _make_tree(root: Path) -> dict[str, bytes]:
    files = {
        "MLmodel": b"flavors: {}\n",
        "model.bin": BINARY,
        "sub/conda.yaml": b"name: x\n",
        "sub/deeper/weights.h5": b"\x89HDF" + BINARY[:100],
    }
    for name, data in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return files


def _leftover_temp(folder: Path) -> list[str]:
    return [p.name for p in folder.rglob("*") if p.name.startswith(".autokfp-tmp-")]


# --------------------------------------------------------------------------- URIs


@pytest.mark.parametrize(
    ("uri", "remote"),
    [
        ("gs://bucket/key", True),
        ("GS://bucket", True),
        ("s3://bucket/key", True),
        ("minio://bucket/key", True),
        ("/abs/path", False),
        ("rel/path.csv", False),
        ("file:///abs/path", False),
        (Path("/x/y"), False),
    ],
)
def test_is_remote(uri, remote):
    assert storage.is_remote(uri) is remote


@pytest.mark.parametrize(
    ("base_uri", "parts", "expected"),
    [
        ("gs://b", ("x", "y.txt"), "gs://b/x/y.txt"),
        ("gs://b/", ("/x//", "", "y"), "gs://b/x/y"),
        ("gs://b/pre/", ("a/b",), "gs://b/pre/a/b"),
        ("/tmp/root/", ("runs", "1"), "/tmp/root/runs/1"),
        ("/", ("etc",), "/etc"),
        ("rel", ("a",), "rel/a"),
        ("file:///data/", ("x.csv",), "file:///data/x.csv"),
        ("gs://b", (), "gs://b"),
    ],
)
def test_join_uses_single_slashes(base_uri, parts, expected):
    assert storage.join(base_uri, *parts) == expected


@pytest.mark.parametrize(
    "call",
    [
        lambda: storage.read_bytes("hdfs://nn/key"),
        lambda: storage.write_text("azure://c/key", "x"),
        lambda: storage.exists("hdfs://nn/x"),
        lambda: storage.list_uris("abfs://c"),
        lambda: storage.is_remote("azure://c/x"),
        lambda: storage.append_jsonl("hdfs://nn/log.jsonl", {"a": 1}),
        lambda: storage.download_dir("azure://c/model", "/tmp/never"),
    ],
)
def test_unsupported_scheme_lists_supported_ones(call):
    with pytest.raises(StorageError, match="Unsupported URI scheme") as info:
        call()
    assert all(scheme in str(info.value) for scheme in ("gs://", "s3://", "minio://", "file://"))


def test_gs_uri_without_bucket_is_rejected():
    with pytest.raises(StorageError, match="names no bucket"):
        storage.read_bytes("gs:///key")


# --------------------------------------------------------------------------- files


def test_binary_round_trip_and_overwrite(base):
    uri = storage.join(base, "nested", "deep", "blob.bin")
    storage.write_bytes(uri, BINARY)
    assert storage.read_bytes(uri) == BINARY
    storage.write_bytes(uri, b"second")
    assert storage.read_bytes(uri) == b"second"


def test_text_round_trip(base):
    uri = storage.join(base, "card.md")
    storage.write_text(uri, "# Modèle ✓\nline 2\n")
    assert storage.read_text(uri) == "# Modèle ✓\nline 2\n"
    storage.write_text(uri, "latin", encoding="latin-1")
    assert storage.read_text(uri, encoding="latin-1") == "latin"


def test_read_text_of_binary_says_what_to_do(base):
    uri = storage.join(base, "blob.bin")
    storage.write_bytes(uri, b"\xff\xfe\xfa")
    with pytest.raises(StorageError, match="read_bytes"):
        storage.read_text(uri)


def test_missing_object_error_names_the_uri(base):
    uri = storage.join(base, "no", "such.parquet")
    with pytest.raises(StorageError) as info:
        storage.read_bytes(uri)
    assert uri in str(info.value)
    assert "does not exist" in str(info.value) and "check" in str(info.value)


def test_exists(base):
    uri = storage.join(base, "folder", "file.txt")
    assert not storage.exists(uri)
    assert not storage.exists(storage.join(base, "folder"))
    storage.write_text(uri, "x")
    assert storage.exists(uri)
    assert storage.exists(storage.join(base, "folder"))
    assert not storage.exists(storage.join(base, "fold"))


def test_delete(base):
    uri = storage.join(base, "gone.txt")
    storage.write_text(uri, "x")
    storage.delete(uri)
    assert not storage.exists(uri)
    with pytest.raises(StorageError, match="gone.txt"):
        storage.delete(uri)


def test_write_bytes_rejects_str(base):
    with pytest.raises(StorageError, match="write_text"):
        storage.write_bytes(storage.join(base, "x"), "not bytes")  # type: ignore[arg-type]


def test_local_copy(base):
    uri = storage.join(base, "data", "table.parquet")
    storage.write_bytes(uri, BINARY)
    with storage.local_copy(uri) as path:
        assert isinstance(path, Path)
        assert path.read_bytes() == BINARY
        assert path.name == "table.parquet"
    if storage.is_remote(uri):
        assert not path.exists(), "the temp download is removed on exit"
    else:
        assert path == Path(uri) and path.exists(), "a local file is used in place"


def test_local_copy_missing_names_the_uri(base):
    uri = storage.join(base, "missing.csv")
    with pytest.raises(StorageError, match="missing.csv"):
        with storage.local_copy(uri):
            pass


# --------------------------------------------------------------------------- listing


def test_list_uris_nested_and_flat(base):
    names = ["a.csv", "b/c.csv", "b/d/e.json", "z.txt"]
    for name in names:
        storage.write_text(storage.join(base, "data", name), name)
    storage.write_text(storage.join(base, "database.csv"), "sibling, not inside data/")

    root = storage.join(base, "data")
    assert storage.list_uris(root) == sorted(storage.join(root, n) for n in names)
    assert storage.list_uris(root + "/") == storage.list_uris(root)
    assert storage.list_uris(root, recursive=False) == [
        storage.join(root, "a.csv"),
        storage.join(root, "z.txt"),
    ]
    assert storage.list_uris(storage.join(base, "nothing-here")) == []
    for uri in storage.list_uris(root):
        assert storage.read_text(uri).endswith(uri.rsplit("/", 1)[-1])


def test_list_uris_keeps_file_uri_form(tmp_path):
    storage.write_text(tmp_path / "x" / "a.txt", "a")
    assert storage.list_uris(f"file://{tmp_path}/x") == [f"file://{tmp_path}/x/a.txt"]


# --------------------------------------------------------------------------- trees


def test_upload_then_download_tree(base, tmp_path):
    files = _make_tree(tmp_path / "model")
    dest = storage.join(base, "models", "run-1")

    written = storage.upload_dir(tmp_path / "model", dest)
    assert written == sorted(storage.join(dest, n) for n in files)
    assert storage.list_uris(dest) == written

    local = tmp_path / "downloaded" / "model"
    got = storage.download_dir(dest, local)
    assert got == sorted(str(local / n) for n in files)
    for name, data in files.items():
        assert (local / name).read_bytes() == data
    assert _leftover_temp(tmp_path / "downloaded") == []


def test_download_into_existing_folder_needs_overwrite(base, tmp_path):
    _make_tree(tmp_path / "model")
    dest = storage.join(base, "m")
    storage.upload_dir(tmp_path / "model", dest)

    target = tmp_path / "out"
    (target / "old").mkdir(parents=True)
    (target / "old" / "stale.txt").write_text("old")
    with pytest.raises(StorageError, match="overwrite=True"):
        storage.download_dir(dest, target)
    assert (target / "old" / "stale.txt").read_text() == "old"

    storage.download_dir(dest, target, overwrite=True)
    assert not (target / "old").exists(), "overwrite replaces the folder as a whole"
    assert (target / "MLmodel").exists()
    assert _leftover_temp(tmp_path) == []


def test_upload_into_non_empty_destination_needs_overwrite(base, tmp_path):
    _make_tree(tmp_path / "v1")
    (tmp_path / "v1" / "only-in-v1.txt").write_text("v1")
    dest = storage.join(base, "m")
    storage.upload_dir(tmp_path / "v1", dest)

    (tmp_path / "v2").mkdir()
    (tmp_path / "v2" / "MLmodel").write_text("v2")
    with pytest.raises(StorageError, match="overwrite=True"):
        storage.upload_dir(tmp_path / "v2", dest)

    assert storage.upload_dir(tmp_path / "v2", dest, overwrite=True) == [
        storage.join(dest, "MLmodel")
    ]
    assert storage.list_uris(dest) == [storage.join(dest, "MLmodel")]
    assert storage.read_text(storage.join(dest, "MLmodel")) == "v2"


def test_failed_download_leaves_no_half_tree(base, tmp_path, monkeypatch):
    _make_tree(tmp_path / "model")
    dest = storage.join(base, "m")
    storage.upload_dir(tmp_path / "model", dest)

    calls = {"n": 0}

    def fail_on_second(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError("disk on fire")
        return original(*args, **kwargs)

    if dest.startswith("s3://"):
        from s3fs import S3FileSystem

        original_async = S3FileSystem._get_file

        async def fail_on_second_async(*args, **kwargs):
            calls["n"] += 1
            if calls["n"] == 2:
                raise OSError("disk on fire")
            return await original_async(*args, **kwargs)

        monkeypatch.setattr(S3FileSystem, "_get_file", fail_on_second_async)
        storage.reset_client()  # the sync wrappers are bound when the filesystem is built
    elif storage.is_remote(dest):
        from google.cloud.storage import Blob

        original = Blob.download_to_filename
        monkeypatch.setattr(Blob, "download_to_filename", fail_on_second)
    else:
        original = shutil.copy2
        monkeypatch.setattr(shutil, "copy2", fail_on_second)

    target = tmp_path / "out" / "model"
    with pytest.raises((StorageError, OSError)):
        storage.download_dir(dest, target)
    assert calls["n"] == 2
    assert not target.exists()
    assert _leftover_temp(tmp_path / "out") == []


def test_download_of_missing_prefix_names_it(base, tmp_path):
    src = storage.join(base, "no-model-here")
    with pytest.raises(StorageError, match="no-model-here"):
        storage.download_dir(src, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_upload_of_missing_folder_names_it(base, tmp_path):
    with pytest.raises(StorageError, match="not a folder"):
        storage.upload_dir(tmp_path / "nope", storage.join(base, "x"))


# --------------------------------------------------------------------------- append


def test_append_jsonl_keeps_order(base):
    uri = storage.join(base, "logs", "predictions.jsonl")
    records = [{"i": i, "score": i / 10, "label": f"c{i % 3}"} for i in range(15)]
    for record in records:
        storage.append_jsonl(uri, record)
    lines = storage.read_text(uri).splitlines()
    assert [json.loads(line) for line in lines] == records


def test_an_append_after_a_torn_last_line_starts_a_line_of_its_own(base):
    """A log whose last append was cut short (a writer killed mid-write, a full disk) ends
    in half a line: the next record starts on a new line, whatever the store, so only the
    torn line is damaged (readers skip it) and the new record is read back (before, a local
    append of a plain record was glued onto the torn line and lost with it)."""
    uri = storage.join(base, "logs", "history.jsonl")
    storage.write_bytes(uri, b'{"run": 1}\n{"run": 2, "drift_sh')
    storage.append_jsonl(uri, {"run": 3})
    storage.write_bytes(uri, storage.read_bytes(uri) + b'{"run": 4, "dr')
    storage.append_jsonl(uri, lambda content: {"run": 5, "after": len(content)})
    lines = storage.read_text(uri).splitlines()
    readable = []
    for line in lines:
        try:
            readable.append(json.loads(line)["run"])
        except ValueError:
            continue
    assert readable == [1, 3, 5] and len(lines) == 5


def test_append_jsonl_rejects_nan_and_non_dict(base):
    uri = storage.join(base, "log.jsonl")
    with pytest.raises(StorageError, match="JSON"):
        storage.append_jsonl(uri, {"x": float("nan")})
    with pytest.raises(StorageError, match="dict"):
        storage.append_jsonl(uri, [1, 2])  # type: ignore[arg-type]
    assert not storage.exists(uri)


def test_a_first_append_that_fails_loses_no_record_of_a_writer_waiting_for_it(tmp_path):
    """A first local append whose record cannot be made (a callable that raises) removes the
    empty file it created: a writer that opened that file meanwhile and waits for its lock
    must then write to the file that is at the path, never to the removed one (its record
    was acknowledged and lost: the file was gone)."""
    import threading
    import time

    uri = str(tmp_path / "audit" / "trail.jsonl")
    entered, go = threading.Event(), threading.Event()
    failed: list[BaseException] = []

    def bad_record(content: bytes) -> dict:
        entered.set()
        go.wait(10)
        raise StorageError("this record cannot be made")

    def first() -> None:
        try:
            storage.append_jsonl(uri, bad_record)
        except StorageError as exc:
            failed.append(exc)

    first_writer = threading.Thread(target=first)
    first_writer.start()
    assert entered.wait(10)
    second_writer = threading.Thread(target=storage.append_jsonl, args=(uri, {"run": 2}))
    second_writer.start()
    time.sleep(0.5)  # the second writer opened the file and waits for its lock
    go.set()
    first_writer.join(10)
    second_writer.join(10)
    assert failed and not second_writer.is_alive()
    assert [json.loads(line) for line in storage.read_text(uri).splitlines()] == [{"run": 2}]


def test_gcs_append_retries_when_another_writer_wins(gcs_emulator, monkeypatch):
    from google.api_core.exceptions import PreconditionFailed
    from google.cloud.storage import Blob

    uri = f"{gcs_emulator.base_uri}/{uuid.uuid4().hex}/log.jsonl"
    storage.append_jsonl(uri, {"n": 1})
    original = Blob.upload_from_string
    seen: list[object] = []

    def lose_first_race(self, data, **kwargs):
        seen.append(kwargs.get("if_generation_match"))
        if len(seen) == 1:
            raise PreconditionFailed("generation changed")
        return original(self, data, **kwargs)

    monkeypatch.setattr(Blob, "upload_from_string", lose_first_race)
    storage.append_jsonl(uri, {"n": 2})
    assert len(seen) == 2 and all(isinstance(g, int) and g > 0 for g in seen)
    assert [json.loads(x)["n"] for x in storage.read_text(uri).splitlines()] == [1, 2]


def test_s3_append_retries_when_another_writer_wins(s3_server):
    """A writer landing between our read and our write makes our conditional PUT fail on the
    server (moto checks If-Match); the retry keeps both lines."""
    uri = f"{s3_server.base_uri}/{uuid.uuid4().hex}/log.jsonl"
    storage.append_jsonl(uri, {"n": 1})
    raced: list[bytes] = []

    def record(content: bytes) -> dict:
        if not raced:  # another writer appends right after we read the log
            raced.append(content)
            storage.write_bytes(uri, content + b'{"n": "other"}\n')
        return {"n": 2}

    storage.append_jsonl(uri, record)
    assert [json.loads(x)["n"] for x in storage.read_text(uri).splitlines()] == [1, "other", 2]


def test_s3_create_does_not_overwrite_a_log_created_concurrently(s3_server):
    uri = f"{s3_server.base_uri}/{uuid.uuid4().hex}/log.jsonl"
    calls: list[bytes] = []

    def record(content: bytes) -> dict:
        calls.append(content)
        if len(calls) == 1:  # someone creates the log while we prepare the first line
            storage.write_bytes(uri, b'{"n": "first"}\n')
        return {"n": "mine"}

    storage.append_jsonl(uri, record)
    assert [json.loads(x)["n"] for x in storage.read_text(uri).splitlines()] == ["first", "mine"]


def test_minio_uri_needs_an_endpoint(monkeypatch):
    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "MLFLOW_S3_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)
    storage.reset_client()
    with pytest.raises(StorageError, match="AWS_ENDPOINT_URL"):
        storage.read_bytes("minio://bucket/key.csv")


def test_minio_uri_is_the_s3_store_behind_the_endpoint(s3_server):
    key = f"{uuid.uuid4().hex}/x.txt"
    storage.write_text(f"minio://{s3_server.bucket}/{key}", "hello")
    assert storage.read_text(f"s3://{s3_server.bucket}/{key}") == "hello"
    assert storage.fetchable_uri(f"minio://{s3_server.bucket}/{key}") == f"s3://{s3_server.bucket}/{key}"


def test_s3_errors_name_the_uri_and_the_fix(s3_server, monkeypatch):
    with pytest.raises(StorageError, match="does not exist"):
        storage.read_bytes(f"{s3_server.base_uri}/missing/object.bin")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # nothing listens there
    storage.reset_client()
    try:
        with pytest.raises(StorageError, match="AWS_ENDPOINT_URL"):
            storage.read_bytes(f"{s3_server.base_uri}/x/object.bin")
    finally:
        monkeypatch.setenv("AWS_ENDPOINT_URL", s3_server.endpoint)
        storage.reset_client()


# --------------------------------------------------------------------------- atomicity


def test_text_written_from_pieces_is_whole_and_never_half(base):
    """write_text_pieces writes what write_text would, taking one piece at a time; a
    generator that fails part-way leaves the previous content, not half a file."""
    uri = storage.join(base, "meta", "file.json")
    taken = []

    def pieces(count: int, fail_at: int | None = None):
        for i in range(count):
            if i == fail_at:
                raise RuntimeError("the producer failed")
            taken.append(i)
            yield f"piece {i} ✓\n"

    storage.write_text_pieces(uri, pieces(5))
    assert storage.read_text(uri) == "".join(f"piece {i} ✓\n" for i in range(5))
    assert taken == list(range(5))
    with pytest.raises(RuntimeError, match="producer failed"):
        storage.write_text_pieces(uri, pieces(5, fail_at=3))
    assert storage.read_text(uri) == "".join(f"piece {i} ✓\n" for i in range(5))
    assert storage.list_uris(storage.join(base, "meta")) == [uri]


def test_failed_local_write_keeps_previous_content(tmp_path, monkeypatch):
    path = tmp_path / "state" / "champion.json"
    storage.write_text(path, '{"v": 1}')

    def broken_fsync(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(StorageError, match="champion.json"):
        storage.write_text(path, '{"v": 2}')
    monkeypatch.undo()

    assert path.read_text() == '{"v": 1}'
    assert os.listdir(path.parent) == ["champion.json"], "the temp file is cleaned up"


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root ignores file modes")
def test_write_into_read_only_folder_fails_cleanly(tmp_path):
    path = tmp_path / "ro" / "a.txt"
    storage.write_text(path, "before")
    path.parent.chmod(0o555)
    try:
        with pytest.raises(StorageError, match="Permission denied"):
            storage.write_text(path, "after")
    finally:
        path.parent.chmod(0o755)
    assert path.read_text() == "before"


def test_unwritable_folder_error_says_what_to_check(tmp_path, monkeypatch):
    path = tmp_path / "a.txt"
    storage.write_text(path, "before")

    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(tempfile, "mkstemp", denied)
    with pytest.raises(StorageError, match="Permission denied.*owner and mode"):
        storage.write_text(path, "after")
    monkeypatch.undo()
    assert path.read_text() == "before"


def test_local_paths_in_every_form(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    storage.write_text("rel/a.txt", "relative")
    assert storage.read_text(f"file://{tmp_path}/rel/a.txt") == "relative"
    assert storage.read_text(tmp_path / "rel" / "a.txt") == "relative"
    storage.write_text(f"file://{tmp_path}/rel/b.txt", "uri")
    assert storage.list_uris("rel") == ["rel/a.txt", "rel/b.txt"]


def test_new_local_files_get_normal_permissions(tmp_path):
    path = tmp_path / "x.txt"
    storage.write_text(path, "x")
    assert path.stat().st_mode & 0o777 == 0o644


# --------------------------------------------------------------------------- GCS specifics


def test_gcs_errors_are_wrapped_with_the_uri(gcs_emulator, monkeypatch):
    from google.api_core.exceptions import Forbidden
    from google.cloud.storage import Blob
    from requests.exceptions import ConnectionError as RequestsConnectionError

    uri = f"{gcs_emulator.base_uri}/secret/model.bin"

    def forbidden(self, *args, **kwargs):
        raise Forbidden("caller lacks storage.objects.get")

    monkeypatch.setattr(Blob, "download_as_bytes", forbidden)
    with pytest.raises(StorageError, match="Permission denied") as info:
        storage.read_bytes(uri)
    assert uri in str(info.value)

    def unreachable(self, *args, **kwargs):
        raise RequestsConnectionError("connection refused")

    monkeypatch.setattr(Blob, "upload_from_string", unreachable)
    with pytest.raises(StorageError, match="Could not reach GCS") as info:
        storage.write_bytes(uri, b"x")
    assert uri in str(info.value)


def test_gcs_client_is_cached_and_follows_the_emulator_setting(gcs_emulator, monkeypatch):
    first = storage.gcs.client()
    assert storage.gcs.client() is first
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs_emulator.host + "/")
    assert storage.gcs.client() is not first
    monkeypatch.undo()
    storage.reset_client()


def test_gcs_content_type_follows_the_extension(gcs_emulator):
    uri = f"{gcs_emulator.base_uri}/{uuid.uuid4().hex}/report.html"
    storage.write_text(uri, "<html></html>")
    blob = storage.gcs.client().bucket(gcs_emulator.bucket).get_blob(uri.split("/", 3)[3])
    assert blob.content_type == "text/html"


def test_gcs_object_functions_refuse_bucket_uris(gcs_emulator):
    with pytest.raises(StorageError, match="not an object"):
        storage.write_text(gcs_emulator.base_uri + "/folder/", "x")
    assert storage.exists(gcs_emulator.base_uri)


def test_missing_gcs_credentials_say_how_to_fix(monkeypatch, tmp_path):
    monkeypatch.delenv("STORAGE_EMULATOR_HOST", raising=False)
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "no-such-key.json"))
    storage.reset_client()
    try:
        with pytest.raises(StorageError, match="GOOGLE_APPLICATION_CREDENTIALS") as info:
            storage.read_bytes("gs://some-bucket/model/MLmodel")
        assert "gs://some-bucket/model/MLmodel" in str(info.value)
    finally:
        storage.reset_client()


def test_content_addressed_folder_round_trip_and_check(base, tmp_path):
    """The training inputs' content-addressed folder (engineer_features -> load_training_data)
    on every store: the same files give the same URI, the copy read back is checked, and an
    object changed in the store is refused."""
    from autokfp.storage.content import get_content_addressed, put_content_addressed

    files = {"train.parquet": tmp_path / "in" / "train.parquet", "plan.json": tmp_path / "in" / "plan.json"}
    files["train.parquet"].parent.mkdir()
    files["train.parquet"].write_bytes(BINARY)
    files["plan.json"].write_text('{"target": "y"}')
    uri = put_content_addressed(base + "/training-data", files)
    assert uri.startswith(base + "/training-data/sha256-")
    assert put_content_addressed(base + "/training-data", files) == uri
    out = {name: tmp_path / "out" / name for name in files}
    assert get_content_addressed(uri, out) == uri.rsplit("sha256-", 1)[1]
    assert out["train.parquet"].read_bytes() == BINARY
    storage.write_text(uri + "/plan.json", '{"target": "z"}')
    with pytest.raises(StorageError, match="other content than its name says"):
        get_content_addressed(uri, {name: tmp_path / "again" / name for name in files})
    for damaged in ("{not json", "[]", '{"files": 3}'):  # a manifest edited or cut short
        storage.write_text(uri + "/manifest.json", damaged)
        with pytest.raises(StorageError, match="not a manifest autokfp wrote"):
            get_content_addressed(uri, {name: tmp_path / "damaged" / name for name in files})


@pytest.mark.parametrize("store", ["gcs_emulator", "s3_server"])
def test_a_bucket_that_does_not_exist_holds_nothing_and_cannot_be_listed(store, request):
    """``exists`` says False for anything in a bucket that does not exist (it never raises
    for a missing location, on either store), while a listing of it is an error naming the
    bucket: a typo in a bucket name must not read as an empty prefix."""
    server = request.getfixturevalue(store)
    scheme = "gs" if store == "gcs_emulator" else "s3"
    missing = f"{server.bucket}-missing-{uuid.uuid4().hex[:6]}"
    for uri in (f"{scheme}://{missing}/a/b.csv", f"{scheme}://{missing}/a/"):
        assert storage.exists(uri) is False, uri
    lister = (storage.iter_s3_objects if scheme == "s3"
              else lambda uri: (blob for _, blob in storage.gcs.iter_blobs(uri)))
    with pytest.raises(StorageError, match=f"bucket '{missing}' does not exist .*check the "
                                           "bucket name"):
        list(lister(f"{scheme}://{missing}/a"))
    for recursive in (True, False):  # what monitoring reads prediction logs with
        with pytest.raises(StorageError, match=f"bucket '{missing}' does not exist"):
            storage.list_uris(f"{scheme}://{missing}/logs", recursive=recursive)
    # an existing bucket with nothing under the prefix is still an empty listing
    assert storage.list_uris(f"{scheme}://{server.bucket}/nothing-{uuid.uuid4().hex}") == []


def test_an_empty_prefix_of_an_s3_bucket_the_credentials_cannot_head_lists_as_empty(
        s3_server, monkeypatch):
    """Credentials that may list a prefix but not HEAD the bucket (a policy granting
    s3:ListBucket on a prefix only, without s3:GetBucketLocation; moto does not enforce
    policies, so the two probes are refused here as S3 refuses them): an empty prefix still
    lists as empty. Whether the bucket exists is asked with the listing itself
    (ListObjectsV2's NoSuchBucket), not with s3fs's exists(bucket), which says False for
    any refused probe and made an existing bucket read as a typo."""
    uri = f"s3://{s3_server.bucket}/team-{uuid.uuid4().hex[:6]}/logs"
    fs = storage.s3.filesystem(uri)
    fs.invalidate_cache()
    real = fs._call_s3

    async def refusing(method, *args, **kwargs):
        if method in ("head_bucket", "get_bucket_location"):
            raise PermissionError(f"Access Denied ({method})")
        return await real(method, *args, **kwargs)

    monkeypatch.setattr(fs, "_call_s3", refusing)
    for recursive in (True, False):
        assert storage.list_uris(uri, recursive=recursive) == []
    missing = f"{s3_server.bucket}-missing-{uuid.uuid4().hex[:6]}"
    with pytest.raises(StorageError, match=f"bucket '{missing}' does not exist"):
        storage.list_uris(f"s3://{missing}/logs")


def test_scratch_folders_of_killed_processes_are_removed(tmp_path, monkeypatch):
    """A crawl killed with kill -9 leaves its ledger folder; the next crawl removes it, and
    only it: not a running process's folder, not one without an owner file (being created,
    or an older autokfp's), not another host's, and not a folder of another prefix."""
    import signal
    import socket
    import subprocess
    import sys

    from autokfp.catalog import ledger
    from autokfp.storage import scratch

    killed = subprocess.run(
        [sys.executable, "-c", "import os, signal; from autokfp.catalog import ledger; "
         "held = ledger.CrawlLedger(); print(held._folder, flush=True); "
         "os.kill(os.getpid(), signal.SIGKILL)"],
        capture_output=True, text=True, env={**os.environ, "TMPDIR": str(tmp_path)})
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    left = Path(killed.stdout.strip())
    assert left.parent == tmp_path and (left / "ledger.sqlite").exists()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    running = Path(scratch.scratch_folder(ledger.CRAWL_SCRATCH))  # this process: alive
    unowned = tmp_path / f"{ledger.CRAWL_SCRATCH}unowned"
    unowned.mkdir()
    elsewhere = Path(scratch.scratch_folder(ledger.CRAWL_SCRATCH))
    owner = json.loads((elsewhere / scratch.OWNER_FILE).read_text())
    owner.update(host=socket.gethostname() + "-other", pid=_owner_pid(left))
    (elsewhere / scratch.OWNER_FILE).write_text(json.dumps(owner))
    other_prefix = Path(scratch.scratch_folder("someone-else-"))
    reused = Path(scratch.scratch_folder(ledger.CRAWL_SCRATCH))  # this pid, another start
    owner = json.loads((reused / scratch.OWNER_FILE).read_text())
    owner["started"] = owner["started"] - 1
    (reused / scratch.OWNER_FILE).write_text(json.dumps(owner))

    crawl = ledger.CrawlLedger()  # what every crawl makes first
    assert not left.exists() and not reused.exists()
    assert running.is_dir() and unowned.is_dir() and elsewhere.is_dir() and other_prefix.is_dir()
    assert Path(crawl._folder).is_dir()
    crawl.close()
    assert not Path(crawl._folder).exists()


def _owner_pid(folder):
    return json.loads((folder / "owner.json").read_text())["pid"]


def _age(folder: Path, days: float) -> None:
    """Set the mtime of the folder and of everything in it ``days`` back."""
    import time

    when = time.time() - days * 86400
    for path in [*folder.rglob("*"), folder]:
        os.utime(path, (when, when))


def test_a_scratch_folder_whose_owner_cannot_be_judged_is_left_until_idle_a_week(
        tmp_path, monkeypatch):
    """Only an owner provably gone on this host, boot and PID namespace loses its folder at
    once. A folder of another boot (or another machine of the same name), of another PID
    namespace (its process id names another process here, or none), or whose owner file
    lacks those (an older autokfp's), is unreadable or absent, is left alone until nothing in
    it has changed for STALE_AFTER_SECS (7 days); a provably running owner's folder never."""
    import subprocess
    import sys

    from autokfp.storage import scratch

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    prefix = "autokfp-crawl-"
    ended = subprocess.Popen([sys.executable, "-c", "pass"])
    ended.wait()  # a process of this namespace, gone

    def made(**changes) -> Path:
        folder = Path(scratch.scratch_folder(prefix))
        owner = json.loads((folder / scratch.OWNER_FILE).read_text())
        owner.update(changes)
        for key in [k for k, v in changes.items() if v is KeyError]:
            del owner[key]
        (folder / scratch.OWNER_FILE).write_text(json.dumps(owner))
        (folder / "ledger.sqlite").write_bytes(b"rows")
        return folder

    gone = made(pid=ended.pid)
    unjudged = {
        "another boot": made(pid=ended.pid, boot="0" * 8 + "-other-boot"),
        "another namespace": made(pid=ended.pid, pidns=1),
        "an older owner file": made(pid=ended.pid, pidns=KeyError),
        "no start time": made(pid=ended.pid, started=None),
        "another host": made(pid=ended.pid, host="elsewhere"),
    }
    broken = Path(scratch.scratch_folder(prefix))
    (broken / scratch.OWNER_FILE).write_text("{half")
    unjudged["an unreadable owner file"] = broken
    unjudged["no owner file"] = tmp_path / f"{prefix}unowned"
    unjudged["no owner file"].mkdir()
    running = made()  # this process

    assert scratch.remove_stale(prefix) == [str(gone)]
    for why, folder in unjudged.items():
        assert folder.is_dir(), why
    for folder in [*unjudged.values(), running]:
        _age(folder, 6.9)
    assert scratch.remove_stale(prefix) == []  # not yet a week
    (unjudged["another namespace"] / "ledger.sqlite").touch()  # still written: in use
    for folder in [*unjudged.values(), running]:
        if folder != unjudged["another namespace"]:
            _age(folder, 7.1)
    assert sorted(scratch.remove_stale(prefix)) == sorted(
        str(f) for why, f in unjudged.items() if why != "another namespace")
    assert running.is_dir() and unjudged["another namespace"].is_dir()
    assert scratch.owner_state(json.loads((running / scratch.OWNER_FILE).read_text())) \
        == scratch.RUNNING


def _unshared_pid_namespace_works() -> bool:
    import subprocess

    if shutil.which("unshare") is None:
        return False
    done = subprocess.run(["unshare", "--pid", "--fork", "--mount-proc", "true"],
                          capture_output=True)
    return done.returncode == 0


OWNER_IN_ANOTHER_NAMESPACE = """
import sys
from autokfp.storage import scratch
print(scratch.scratch_folder("autokfp-crawl-"), flush=True)
sys.stdin.read()  # until the test closes it
"""


@pytest.mark.skipif(not _unshared_pid_namespace_works(),
                    reason="needs unshare --pid (root or user namespaces)")
def test_a_live_owner_in_another_pid_namespace_keeps_its_folder(tmp_path, monkeypatch):
    """A crawl in another PID namespace (a container sharing the volume: its id is 1 there,
    the host's init here) sharing this temp dir keeps its folder while it runs, and after it
    ended too: from here it cannot be proven gone, so only the week's idle limit removes it.
    (Judged by its id alone, the folder was removed under the running crawl.)"""
    import subprocess
    import sys

    from autokfp.storage import scratch

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    owner = subprocess.Popen(
        ["unshare", "--pid", "--fork", "--mount-proc", sys.executable, "-c",
         OWNER_IN_ANOTHER_NAMESPACE], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        text=True, env={**os.environ, "TMPDIR": str(tmp_path)})
    try:
        folder = Path(owner.stdout.readline().strip())
        assert folder.parent == tmp_path
        recorded = json.loads((folder / scratch.OWNER_FILE).read_text())
        assert recorded["pid"] == 1 and recorded.get("pidns") != os.stat("/proc/self/ns/pid").st_ino
        assert isinstance(recorded["started"], int)
        assert scratch.remove_stale("autokfp-crawl-") == [] and folder.is_dir()
    finally:
        owner.stdin.close()
        owner.wait(30)
    assert scratch.remove_stale("autokfp-crawl-") == [] and folder.is_dir()
    _age(folder, 8)
    assert scratch.remove_stale("autokfp-crawl-") == [str(folder)]
