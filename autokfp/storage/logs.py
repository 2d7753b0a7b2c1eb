"""Append-only JSON-lines logs (audit trails, run records) in any store."""

from __future__ import annotations

import json
from collections.abc import Callable

from autokfp.errors import StorageError
from autokfp.storage.stores import store_for
from autokfp.storage.uris import Uri, as_str


def _json_line(uri: str, record: dict) -> bytes:
    if not isinstance(record, dict):
        raise StorageError(
            f"append_jsonl('{uri}') needs a dict record, got {type(record).__name__}."
        )
    try:
        line = json.dumps(record, ensure_ascii=False, default=str, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise StorageError(f"Record for '{uri}' is not JSON-serialisable: {exc}") from exc
    return (line + "\n").encode("utf-8")


def append_jsonl(uri: Uri, record: dict | Callable[[bytes], dict]) -> None:
    """Append ``record`` as one JSON line to a file or object, creating it if needed.

    ``record`` may be a function of the current content (bytes) returning the record: it
    is called under the same exclusion that protects the append, so the new line can depend
    on the last one (the audit trail's hash chain does).

    Locally the line is written with one ``O_APPEND`` write under an exclusive ``flock``,
    then flushed and fsynced, so concurrent writers do not interleave. In an object store
    (GCS, S3: objects cannot be appended to) the object is read, extended and written back
    only if its generation (ETag) is unchanged; a concurrent writer makes the write retry, a
    few times with backoff. Values that JSON cannot hold (dates, paths) are written as
    strings; NaN is refused.

    Raises:
        StorageError: the record is not JSON-serialisable, the write fails, or the store
        kept refusing the write because others wrote concurrently.
    """
    text = as_str(uri)
    store = store_for(text)
    if callable(record):
        make = record
        with store.errors(text):
            store.append(text, lambda content: _json_line(text, make(content)))
        return
    line = _json_line(text, record)  # refuse a bad record before touching the file
    with store.errors(text):
        store.append(text, line)
