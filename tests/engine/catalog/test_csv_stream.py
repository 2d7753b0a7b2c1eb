"""A CSV training file copied to Parquet in Arrow blocks (``copy_csv_dataset``): the same
frame and profile as ``load_dataset`` (``pd.read_csv`` of the whole file), or, when Arrow
cannot promise that, nothing written and the file left to ``load_dataset``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from autokfp.catalog.csv_stream import copy_csv_dataset
from autokfp.catalog.discovery import load_dataset
from autokfp.catalog.sources.files import DATA_CHANGES
from autokfp.config import parse_config
from autokfp.examples.churn import generate_churn
from tests.memory_probe import growth_mb


def _config(folder: Path, dataset: str):
    return parse_config({"name": "csv", "sources": [{"name": "files", "kind": "folder",
                                                     "path": str(folder)}],
                         "training": {"dataset": f"files/{dataset}", "target": "churned"}})


def _frame(rows: int = 3_000) -> pd.DataFrame:
    frame = generate_churn(rows, seed=4)
    rng = np.random.default_rng(4)
    frame["paperless"] = np.where(rng.random(rows) < 0.5, "true", "false")
    frame.loc[::41, "paperless"] = ""
    frame["code"] = rng.integers(0, 9, rows)
    frame.loc[2_000::53, "code"] = None  # missing values only after the first blocks
    frame.loc[::17, "region"] = "NA"  # pandas' missing spelling
    return frame


def _copied_as_loaded(config, out: Path):
    """The training file copied in blocks of 64 kB (~10 for 3,000 rows) to ``out``, checked
    against ``load_dataset``'s whole read: the same frame (as the discover step writes it:
    without pandas' index), profile and noted changes. (load_dataset's frame, the copy's
    schema, the copy's changes)."""
    frame, loaded = load_dataset(config)
    changes: list[str] = []
    schema = copy_csv_dataset(config, config.training.dataset, str(out), block_bytes=64 << 10,
                              changes=changes)
    assert schema is not None
    pd.testing.assert_frame_equal(pd.read_parquet(out), frame.reset_index(drop=True))
    assert schema.to_dict() == loaded.to_dict()
    assert changes == frame.attrs[DATA_CHANGES]
    return frame, schema, changes


@pytest.mark.parametrize("sep", [",", ";"])
def test_blocks_give_the_whole_files_frame_and_profile(tmp_path: Path, sep: str) -> None:
    folder = tmp_path / "data"
    folder.mkdir()
    _frame().to_csv(folder / "customers.csv", index=False, sep=sep)
    config = _config(folder, "customers.csv")
    out = tmp_path / "dataset.parquet"
    frame, schema, changes = _copied_as_loaded(config, out)
    assert (sep == ",") == (not changes)
    assert schema.column("churned").tags == ["target"]
    small = copy_csv_dataset(config, config.training.dataset, str(out), sample_rows=500,
                             block_bytes=64 << 10)
    assert small is not None and (small.row_count, small.sample_rows) == (3_000, 500)


def _write_case(folder: Path, case: str) -> str:
    """A file the first blocks alone would type otherwise than pandas types the whole file
    (64 kB blocks: ~10 for 3,000 rows)."""
    frame = _frame()
    name = f"{case}.csv"
    if case == "late_values":
        frame["code"] = frame["code"].astype(object)
        frame.loc[2_500, "code"] = "n/k"  # text in a number column: pandas makes it object
        frame["tenure_months"] = frame["tenure_months"].astype(object)
        frame.loc[2_900, "tenure_months"] = "2.5"  # a fraction in an integer column: float64
        frame["paperless"] = frame["paperless"].astype(object)
        frame.loc[2_700, "paperless"] = "maybe"  # text in a boolean column: object
    elif case == "empty_first_blocks":
        for column in ("flags", "counts", "notes", "never"):
            frame[column] = None
        frame.loc[2_000::3, "flags"] = "true"  # object of True and NaN
        frame.loc[2_000::5, "counts"] = 7  # float64
        frame.loc[2_000::7, "notes"] = "seen"
        frame.loc[2_999, "counts"] = "true"  # and then text: pandas makes it object
    if case == "repeated":
        frame.to_csv(folder / name, index=False,
                     header=[*frame.columns[:-2], frame.columns[0], ""])  # x.1, Unnamed: n
    elif case.startswith("index_field"):  # the header names all but the first field(s)
        fields = 2 if case == "index_fields" else 1
        header, body = frame.to_csv(index=False).split("\n", 1)
        (folder / name).write_text(header.split(",", fields)[fields] + "\n" + body)
    elif case.startswith("latin"):
        frame["city"] = "Malmö"
        text = frame.to_csv(index=False)
        lines = text.splitlines(keepends=True)
        if case == "latin_late":  # UTF-8 until the last line, then a latin-1 byte
            data = "".join(lines[:-1]).encode() + lines[-1].replace("ö", "ø").encode("latin-1")
        else:
            data = text.replace("city", "ville_é").encode("latin-1")
        (folder / name).write_bytes(data)
    else:
        frame.to_csv(folder / name, index=False)
    return name


@pytest.mark.parametrize("case", ["late_values", "empty_first_blocks", "repeated",
                                  "latin_late", "latin_header", "index_field", "index_fields"])
def test_what_the_first_blocks_type_otherwise_is_read_as_the_whole_file(
        tmp_path: Path, case: str) -> None:
    """A value a later block has that the first block's type cannot take, a column empty in
    the first blocks, repeated or empty header names, text that is not UTF-8, rows with one
    or two more fields than the header (pandas reads those first fields as the index, which
    the discover step does not write): the copy still gives ``load_dataset``'s frame,
    profile and noted changes."""
    folder = tmp_path / "data"
    folder.mkdir()
    name = _write_case(folder, case)
    config = _config(folder, name)
    out = tmp_path / "dataset.parquet"
    frame, schema, changes = _copied_as_loaded(config, out)
    assert not list(tmp_path.glob(".*tmp"))
    # what the first blocks alone would have typed otherwise
    if case == "late_values":
        assert [frame[c].dtype.kind for c in ("code", "tenure_months", "paperless")] == \
            ["O", "f", "O"]
    elif case == "empty_first_blocks":
        assert [frame[c].dtype.kind for c in ("flags", "counts", "notes", "never")] == \
            ["O", "O", "O", "f"]
    elif case == "repeated":
        assert list(frame.columns[-2:]) == [f"{frame.columns[0]}.1", f"Unnamed: {len(frame.columns) - 1}"]
    elif case.startswith("index_field"):
        fields = 2 if case == "index_fields" else 1
        assert frame.index.nlevels == fields and not isinstance(frame.index, pd.RangeIndex)
        assert schema.column_names == list(_frame().columns[fields:])
        assert len(changes) == 1 and f"have {fields} more field" in changes[0]
        assert name in changes[0]
    else:
        assert any("not UTF-8" in note for note in changes)


def test_index_fields_are_noted_once_when_a_late_latin1_byte_reads_the_header_again(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Rows with one more field than the header and a latin-1 byte in the last row: the
    copy reads the file again as latin-1 (the header too), and logs the index-field WARNING
    once, as the whole read does (it logged it on each read of the header)."""
    folder = tmp_path / "data"
    folder.mkdir()
    frame = _frame()
    frame["city"] = "Malmö"
    header, body = frame.to_csv(index=False).split("\n", 1)
    *lines, last = body.splitlines(keepends=True)
    (folder / "both.csv").write_bytes((header.split(",", 1)[1] + "\n" + "".join(lines)).encode()
                                      + last.replace("ö", "ø").encode("latin-1"))
    config = _config(folder, "both.csv")
    with caplog.at_level("WARNING"):
        _, _, changes = _copied_as_loaded(config, tmp_path / "dataset.parquet")
    assert len(changes) == 2 and "not UTF-8" in changes[0] and "1 more field" in changes[1]
    warned = [r.getMessage() for r in caplog.records if "more field" in r.getMessage()]
    assert len(warned) == 2  # one from load_dataset's whole read, one from the copy


def test_rows_with_fewer_fields_than_the_header_are_padded_as_pandas_pads_them(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Rows with fewer fields than the header (in the first block, later, in the last row,
    one whose fields stop before an integer column that a later short row has a fraction in)
    and a row of spaces: pandas fills the missing fields with missing values and skips the
    blank row. The copy reads them so (serially, each short row padded and put back in its
    place): ``load_dataset``'s frame, profile and notes; and the padding, silent in pandas,
    is now a noted data change of both."""
    folder = tmp_path / "data"
    folder.mkdir()
    lines = _frame().to_csv(index=False).splitlines(keepends=True)  # lines[0]: the header
    lines[10] = lines[10].split(",", 1)[0] + "\n"  # only the id: in the first block
    lines[2_500] = lines[2_500].rsplit(",", 1)[0] + "\n"  # no 'code'
    fields = lines[2_600].split(",")
    lines[2_600] = ",".join([*fields[:8], "2.5"]) + "\n"  # a fraction in 'tenure_months'
    lines[2_999] = "  \n"  # pandas skips a row of spaces
    lines[3_000] = lines[3_000].rsplit(",", 2)[0] + "\n"  # the last row
    (folder / "short.csv").write_text("".join(lines))
    config = _config(folder, "short.csv")
    frame, _, changes = _copied_as_loaded(config, tmp_path / "dataset.parquet")
    assert len(frame) == 2_999 and frame["tenure_months"].dtype == "float64"
    assert frame.iloc[9, 1:].isna().all() and frame["code"].iloc[[2_499, 2_998]].isna().all()
    assert frame["tenure_months"].iloc[2_599] == 2.5 and frame.iloc[2_599, 9:].isna().all()
    assert len(changes) == 1 and "4 rows of" in changes[0] and "fewer fields" in changes[0]
    assert "data row 10" in changes[0] and "short.csv" in changes[0]
    assert lines[10].strip() not in changes[0]  # not the row's text (a customer's id)
    # the discover step streams it and reports (audits) the note
    from autokfp.catalog import discovery
    from autokfp.steps.discover import _write_training_data

    def no_whole_read(*args, **kwargs):
        raise AssertionError("the file was loaded whole")

    monkeypatch.setattr(discovery, "load_dataset", no_whole_read)
    _, rows, _, reported = _write_training_data(config, str(tmp_path / "d.parquet"))
    assert (rows, reported) == (2_999, changes)


@pytest.mark.parametrize("case", ["utf-8", "latin-1", "crlf_rows"])
def test_a_quoted_crlf_line_break_streams_as_pandas_reads_it_wherever_a_block_ends(
        tmp_path: Path, case: str, caplog: pytest.LogCaptureFixture) -> None:
    """A quoted value with a CRLF line break ("c\\r\\nd", a note typed in a web form or
    on Windows) in every row: when one of Arrow's blocks ended between the CR and the LF,
    Arrow read "c\\rd" where pandas keeps "c\\r\\nd" (pyarrow 23, 64 kB blocks: one row
    of this 95 kB file when its first value is padded by 12 bytes, of 0-23), and until
    session 23 such a file was loaded whole (a WARNING). Now at every padding the copy gives
    ``load_dataset``'s frame, profile and notes, without a WARNING; also when the file is
    latin-1 (transcoded by the copy itself) and when its rows end with CRLF too."""
    folder = tmp_path / "data"
    folder.mkdir()
    rows = 6_000
    frame = pd.DataFrame({"id": np.arange(rows), "support_notes": "c\r\nd",
                          "x": np.arange(rows) % 7, "churned": np.arange(rows) % 2})
    if case == "latin-1":
        frame.loc[rows - 1, "support_notes"] = "Malmø\r\nöl"
    for pad in range(24):
        padded = frame.copy()
        padded.loc[0, "support_notes"] = "x" * pad + "c\r\nd"
        text = padded.to_csv(index=False,
                             lineterminator="\r\n" if case == "crlf_rows" else "\n")
        (folder / "crlf.csv").write_bytes(text.encode("latin-1" if case == "latin-1"
                                                      else "utf-8"))
        caplog.clear()
        with caplog.at_level("WARNING", logger="autokfp.catalog.csv_stream"):
            loaded, _schema, changes = _copied_as_loaded(_config(folder, "crlf.csv"),
                                                         tmp_path / f"crlf-{pad}.parquet")
        assert [r.getMessage() for r in caplog.records  # no "loaded whole"
                if r.levelname == "WARNING" and r.name == "autokfp.catalog.csv_stream"] == [], pad
        assert loaded["support_notes"].tolist() == padded["support_notes"].tolist(), pad
        assert len(changes) == (case == "latin-1"), pad
    assert not list(tmp_path.glob(".*tmp"))


@pytest.mark.parametrize("case", ["lines", "short_rows"])
def test_quoted_values_spanning_lines_at_block_boundaries_stream_as_pandas_reads_them(
        tmp_path: Path, case: str, caplog: pytest.LogCaptureFixture) -> None:
    """Quoted values with line breaks (\\n, an empty line, three lines, one starting with
    a break, a quote inside) in (almost) every row, so the ~10 blocks of 64 kB end inside one
    (a block ends at a line break): until session 22 the file was loaded whole. Now one
    value each, ``load_dataset``'s frame, profile and notes; with rows with fewer fields
    than the header after them too (read serially, each padded in its place). No WARNING;
    a file that is missing writes nothing either."""
    folder = tmp_path / "data"
    folder.mkdir()
    frame = _frame()
    spelled = ["two\nlines", "a\n\nb", "one\ntwo\nthree", "\nstarts", 'say "hi"\nthen']
    frame["support_notes"] = [spelled[i % 5] for i in range(len(frame))]
    frame.loc[[1_003, 2_501], "support_notes"] = "plain"
    text = frame.to_csv(index=False, lineterminator="\n")
    if case == "short_rows":
        records, record, quoted = [], "", False  # the file's rows, each of one or more lines
        for line in text.split("\n"):
            record += line if not quoted else "\n" + line
            quoted ^= line.count('"') % 2 == 1
            if not quoted:
                records.append(record)
                record = ""
        assert len(records) == 3_002  # the header, 3,000 rows, the empty end
        for row in (1_003, 2_501):  # the rows without a quoted value, their last 3 fields cut
            assert ",plain," in records[row + 1] and "\"" not in records[row + 1]
            records[row + 1] = records[row + 1].rsplit(",", 3)[0]
        text = "\n".join(records)
    (folder / "lines.csv").write_bytes(text.encode())
    config = _config(folder, "lines.csv")
    out = tmp_path / "dataset.parquet"
    with caplog.at_level("WARNING", logger="autokfp.catalog.csv_stream"):
        loaded, schema, changes = _copied_as_loaded(config, out)
        assert copy_csv_dataset(_config(folder, "missing.csv"), "files/missing.csv", str(out),
                                block_bytes=64 << 10) is None
    assert not list(tmp_path.glob(".*tmp"))
    assert [r.getMessage() for r in caplog.records  # no "loaded whole"
            if r.levelname == "WARNING" and r.name == "autokfp.catalog.csv_stream"] == []
    assert len(loaded) == 3_000 and schema.row_count == 3_000
    assert loaded["support_notes"].iloc[:5].tolist() == spelled
    if case == "short_rows":
        assert len(changes) == 1 and "2 rows of" in changes[0] and "fewer fields" in changes[0]
    else:
        assert changes == []


_PROBE = """
from autokfp.catalog.csv_stream import copy_csv_dataset
from autokfp.catalog.discovery import load_dataset
from autokfp.config import parse_config

folder, name, out, how = sys.argv[1:]
config = parse_config({"name": "csv", "sources": [{"name": "files", "kind": "folder",
                                                   "path": folder}],
                       "training": {"dataset": "files/warm.csv", "target": "churned"}})
copy_csv_dataset(config, "files/warm.csv", out, sample_rows=2_000)  # imports, pools
load_dataset(config, "files/warm.csv", sample_rows=2_000)
before = peak_kb()
if how == "blocks":
    assert copy_csv_dataset(config, f"files/{name}", out, sample_rows=2_000,
                            block_bytes=256 << 10) is not None
else:  # the whole file through pandas, as discover read it before
    frame, _ = load_dataset(config, f"files/{name}", sample_rows=2_000)
    frame.to_parquet(out, index=False)
report(before)
"""


def test_memory_stays_bounded_by_the_block(tmp_path: Path) -> None:
    """Copying a CSV in 256 kB blocks: tripling the file (200,000 -> 600,000 rows, 38 -> 113
    MB) adds less than a fifth of what reading the smaller file whole adds (measured: blocks
    16.8 -> 33.2 MB, ~40 bytes a row, against ~850 bytes a row whole: 168.7 MB; Arrow's
    reader keeps a read-ahead of ~30 blocks); so does the larger file when its last row
    makes the copy start over twice (33.6 MB). Each in a fresh process (~80 s under
    load)."""
    folder = tmp_path / "data"
    folder.mkdir()
    frame = _frame(200_000)
    frame.to_csv(folder / "big.csv", index=False)
    frame.head(3_000).to_csv(folder / "warm.csv", index=False)
    text = (folder / "big.csv").read_text()
    body = text.split("\n", 1)[1]
    (folder / "triple.csv").write_text(text + body + body)
    # the triple file, but the last row has text in a number column and a latin-1 byte: the
    # copy starts over twice (as text, as latin-1), still block by block
    late = frame.assign(code=frame["code"].astype(object))
    late.loc[len(late) - 1, ["code", "region"]] = ["n/k", "Malmø"]
    *rest, last = late.to_csv(index=False).split("\n", 1)[1].splitlines(keepends=True)
    (folder / "late.csv").write_bytes((text + body + "".join(rest)).encode()
                                      + last.encode("latin-1"))

    def growth(how: str, name: str) -> float:
        return growth_mb(_PROBE, str(folder), name, str(tmp_path / f"{how}-{name}.parquet"),
                         how)

    whole = growth("whole", "big.csv")
    blocks, triple = growth("blocks", "big.csv"), growth("blocks", "triple.csv")
    restarted = growth("blocks", "late.csv")
    print(f"peak growth: whole 200k rows {whole:.1f} MB; blocks 200k {blocks:.1f} MB, "
          f"600k {triple:.1f} MB; 600k read again as text and latin-1 {restarted:.1f} MB")
    assert triple - blocks < whole / 5, (blocks, triple, whole)
    # latin-1 is transcoded as it is read: more read-ahead (~25 MB at 1 MB blocks), not
    # more with the file (measured with 1 MB blocks: 101.8 MB at 600k rows, 103-106 at 200k)
    assert restarted < triple + 30, (triple, restarted)
    assert restarted < whole, (restarted, whole)
    assert triple < whole, (triple, whole)
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "blocks-big.csv.parquet"),
                                  pd.read_parquet(tmp_path / "whole-big.csv.parquet"))
    assert len(pd.read_parquet(tmp_path / "blocks-triple.csv.parquet")) == 600_000
    copied = pd.read_parquet(tmp_path / "blocks-late.csv.parquet")
    assert len(copied) == 600_000 and copied["code"].dtype == object
    assert copied["region"].iloc[-1] == "Malmø"


@pytest.mark.parametrize("case", ["later", "first", "past_uint64", "missing", "negative"])
def test_whole_numbers_past_int64_are_never_rounded(
        tmp_path: Path, case: str, caplog: pytest.LogCaptureFixture) -> None:
    """pandas makes a column of whole numbers with one past int64 uint64 when every value
    is a whole number from 0 to 2**64 - 1 and none is missing: the copy reads it so, whether
    the number is in a later block (int64 there) or the first (Arrow reads it as float64,
    which rounded 18446744073709551615 to 1.8446744073709552e19 until session 21, silently).
    Past uint64, beside a missing value or a negative number pandas keeps the text read
    (a missing value as '', not NaN): loaded whole, with the WARNING."""
    folder = tmp_path / "data"
    folder.mkdir()
    frame = _frame()
    frame["serial"] = np.arange(len(frame)).astype(object)
    big = "99999999999999999999" if case == "past_uint64" else "18446744073709551615"
    frame.loc[5 if case == "first" else 2_900, "serial"] = big  # ~10 blocks of 64 kB
    if case == "missing":
        frame.loc[100, "serial"] = ""
    elif case == "negative":
        frame.loc[100, "serial"] = "-1"
    frame.to_csv(folder / "serials.csv", index=False)
    config = _config(folder, "serials.csv")
    whole, _ = load_dataset(config)
    assert str(whole["serial"].iloc[5 if case == "first" else 2_900]) == big
    out = tmp_path / "dataset.parquet"
    if case in ("later", "first"):
        assert whole["serial"].dtype == "uint64"
        _copied_as_loaded(config, out)
        return
    assert whole["serial"].dtype == object
    with caplog.at_level("WARNING", logger="autokfp.catalog.csv_stream"):
        assert copy_csv_dataset(config, config.training.dataset, str(out),
                                block_bytes=64 << 10) is None
    assert not out.exists() and not list(tmp_path.glob(".*tmp"))
    warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warned) == 1 and "serials.csv" in warned[0] and "int64" in warned[0]


@pytest.mark.parametrize("case", ["infinite", "exponent", "exponent_later"])
def test_floats_that_are_whole_or_infinite_beside_big_numbers_stay_float64_and_stream(
        tmp_path: Path, case: str) -> None:
    """A float column whose numbers are whole but written as floats (1e20) or infinite
    (inf, -inf) is float64 in pandas, also beside 18446744073709551615: it streams as
    float64 like any float column (the review of 70c60e4: |inf| counted as a number past
    int64, 1e20 asked for a uint64 read, and each file was then loaded whole)."""
    folder = tmp_path / "data"
    folder.mkdir()
    frame = _frame()
    frame["amount"] = np.arange(len(frame)).astype(object)
    if case == "infinite":
        frame.loc[5, "amount"], frame.loc[2_900, "amount"] = "inf", "-inf"
    elif case == "exponent":
        frame.loc[5, "amount"] = "1e20"
    else:  # a whole number past int64 first, then one written as a float ~10 blocks on
        frame.loc[5, "amount"], frame.loc[2_900, "amount"] = "18446744073709551615", "1e20"
    frame.to_csv(folder / "amounts.csv", index=False)
    config = _config(folder, "amounts.csv")
    whole, _, _ = _copied_as_loaded(config, tmp_path / "dataset.parquet")
    assert whole["amount"].dtype == "float64"


def test_a_file_whose_columns_widen_one_pass_after_another_is_read_whole_past_a_bound(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    """Each column empty until a text value further into the file costs a pass over it: 12
    such columns would cost 13 passes, so past MAX_PASSES the file is read whole (a
    WARNING says why), while 3 of them still stream (the passes counted)."""
    from autokfp.catalog import csv_stream

    passes: list[int] = []
    real = csv_stream._write_blocks

    def counted(*args, **kwargs):
        passes.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(csv_stream, "_write_blocks", counted)
    folder = tmp_path / "data"
    folder.mkdir()
    for columns in (3, 12):
        frame = _frame()
        for k in range(columns):
            frame[f"late_{k}"] = None
            frame.loc[300 + 200 * k, f"late_{k}"] = "seen"  # a later block each
        frame.to_csv(folder / f"sparse{columns}.csv", index=False)
    out = tmp_path / "dataset.parquet"
    config = _config(folder, "sparse3.csv")
    assert copy_csv_dataset(config, config.training.dataset, str(out),
                            block_bytes=64 << 10) is not None
    pd.testing.assert_frame_equal(pd.read_parquet(out), load_dataset(config)[0])
    assert 4 <= len(passes) <= csv_stream.MAX_PASSES
    passes.clear()
    config = _config(folder, "sparse12.csv")
    with caplog.at_level("WARNING", logger="autokfp.catalog.csv_stream"):
        assert copy_csv_dataset(config, config.training.dataset, str(tmp_path / "wide.parquet"),
                                block_bytes=64 << 10) is None
    assert len(passes) == csv_stream.MAX_PASSES
    warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warned) == 1 and "sparse12.csv" in warned[0] and "passes" in warned[0]
