"""Semantic types and column profiles."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from autokfp.catalog.profiling import (
    infer_semantic_type,
    luhn_valid,
    parse_datetime_text,
    profile_frame,
)
from autokfp.catalog.schema import DatasetSchema

N = 200
RNG = np.random.default_rng(7)
FIRST = ["Alice", "Bob", "Carol", "David", "Erin", "Frank", "Grace", "Heidi", "Ivan", "Judy"]
LAST = ["Smith", "Jones", "Brown", "Taylor", "Wilson", "Davies", "Evans", "O'Brien", "Walker"]


def _card(rng: np.random.Generator) -> str:
    body = [4] + [int(d) for d in rng.integers(0, 10, 14)]
    total = 0
    for i, digit in enumerate(reversed(body)):  # check digit goes to the right
        if i % 2 == 0:
            digit *= 2
            digit = digit - 9 if digit > 9 else digit
        total += digit
    return "".join(map(str, body)) + str((10 - total % 10) % 10)


def _frame() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    words = ["the", "order", "arrived", "late", "and", "support", "was", "slow", "great"]
    return pd.DataFrame(
        {
            "customer_id": np.arange(1000, 1000 + N),
            "account_code": [f"AC-{i:05d}-{chr(65 + i % 26)}" for i in range(N)],
            "amount": rng.normal(100, 20, N),
            "tenure_months": rng.integers(0, 72, N),
            "plan": rng.choice(["basic", "premium", "gold"], N),
            "num_products": rng.integers(1, 5, N),
            "is_active": rng.choice(["yes", "no"], N),
            "churned": rng.integers(0, 2, N),
            "flag": rng.choice([True, False], N),
            "signup": pd.date_range("2021-01-01", periods=N, freq="D"),
            "last_seen": pd.date_range("2022-03-01", periods=N, freq="7h").strftime(
                "%Y-%m-%d %H:%M:%S"
            ),
            "us_date": pd.date_range("2020-01-01", periods=N).strftime("%m/%d/%Y"),
            "review": [" ".join(rng.choice(words, 9)) for _ in range(N)],
            "contact": [f"user{i}.x@example.org" for i in range(N)],
            "phone": [
                f"+1 555-{rng.integers(100, 999)}-{rng.integers(1000, 9999)}" for _ in range(N)
            ],
            "alt_number": [
                f"({rng.integers(200, 999)}) {rng.integers(100, 999)}-{rng.integers(1000, 9999)}"
                for _ in range(N)
            ],
            "cc": [_card(rng) for _ in range(N)],
            "client_ip": [
                f"10.{rng.integers(0, 255)}.{rng.integers(0, 255)}.{rng.integers(1, 255)}"
                for _ in range(N)
            ],
            "full_name": [f"{rng.choice(FIRST)} {rng.choice(LAST)}" for _ in range(N)],
            "city": rng.choice(["New York", "San Francisco", "Los Angeles"], N),
            "country": ["US"] * N,
            "notes": [None] * N,
            "ratio_text": [f"{v:.3f}" for v in rng.normal(size=N)],
            "gender": rng.choice(["f", "m", "x"], N),
            "applicant_race": rng.choice(["a", "b", "c", "d"], N),
            "sussex_score": rng.normal(size=N),
        }
    )


EXPECTED = {
    "customer_id": "id",
    "account_code": "id",
    "amount": "numeric",
    "tenure_months": "numeric",
    "plan": "categorical",
    "num_products": "categorical",
    "is_active": "boolean",
    "churned": "boolean",
    "flag": "boolean",
    "signup": "datetime",
    "last_seen": "datetime",
    "us_date": "datetime",
    "review": "text",
    "contact": "email",
    "phone": "phone",
    "alt_number": "phone",
    "cc": "card_number",
    "client_ip": "ip_address",
    "full_name": "person_name",
    "city": "categorical",
    "country": "constant",
    "notes": "empty",
    "ratio_text": "numeric",
}


@pytest.mark.parametrize("column", sorted(EXPECTED))
def test_semantic_type_of_each_kind(column: str) -> None:
    df = _frame()
    assert infer_semantic_type(df[column], column) == EXPECTED[column]


def test_content_decides_over_the_column_name() -> None:
    # an id-like name on repeating values is not an id; an email-named column of plain
    # words is not an email; a "name" column of plan labels is not a person's name
    assert infer_semantic_type(pd.Series(RNG.integers(0, 5, N)), "order_id") == "categorical"
    assert infer_semantic_type(pd.Series(["a", "b", "c"] * 70), "email") == "categorical"
    assert infer_semantic_type(pd.Series(["Basic", "Premium"] * 100), "name") != "person_name"
    # unique integers without an id-like name stay numbers
    assert infer_semantic_type(pd.Series(RNG.permutation(N) * 3.5), "score") == "numeric"
    # the same person names are found without a helpful column name
    names = pd.Series([f"{FIRST[i % 10]} {LAST[i // 10 % 9]}" for i in range(90)])
    assert infer_semantic_type(names, "col_7") == "person_name"


def test_many_distinct_sentences_are_text_even_when_few_enough_to_be_categories() -> None:
    # templated notes: 4 topics x 6 sentences x 3 endings = 72 distinct values, repeated over
    # 3,000 rows (well under the categorical limit of 150): words, not 72 category levels
    rng = np.random.default_rng(3)
    sentences = [f"Customer {verb} about the {thing}{end}"
                 for verb in ("complained", "asked", "wrote", "called")
                 for thing in ("bill", "router", "outage", "price", "modem", "contract")
                 for end in (".", ". Ticket closed.", ". Follow-up scheduled.")]
    notes = pd.Series(rng.choice(sentences, 3000))
    assert notes.nunique() == 72
    assert infer_semantic_type(notes, "support_notes") == "text"
    # a category with a few multi-word labels stays a category ...
    education = pd.Series(rng.choice(["Some college, no degree", "High school or less",
                                      "Bachelor's degree or higher"], 3000))
    assert infer_semantic_type(education, "education") == "categorical"
    # ... and so do many short labels (codes, towns): not sentences
    towns = pd.Series(rng.choice([f"New Town {i}" if i % 2 else f"Town{i}" for i in range(72)],
                                 3000))
    assert infer_semantic_type(towns, "town") == "categorical"
    # ... and so do names of three words or more whose words are their own (24 cities, each
    # word in 1.3 of them on average): the words would say no more than the category
    cities = ["San Francisco CA", "New York NY", "Los Angeles CA", "San Diego CA",
              "Salt Lake City UT", "Las Vegas NV", "Kansas City MO", "El Paso TX", "San Jose CA",
              "Fort Worth TX", "New Orleans LA", "St Louis MO", "Oklahoma City OK",
              "Colorado Springs CO", "Long Beach CA", "Virginia Beach VA", "Santa Ana CA",
              "Corpus Christi TX", "Baton Rouge LA", "Des Moines IA", "Grand Rapids MI",
              "Little Rock AR", "Sioux Falls SD", "Palm Springs CA"]
    assert infer_semantic_type(pd.Series(rng.choice(cities, 5000)), "city") == "categorical"
    # at 20 distinct sentences or fewer it is still a category (the categorical floor)
    assert infer_semantic_type(pd.Series(rng.choice(sentences[:20], 3000)), "x") == "categorical"
    assert infer_semantic_type(pd.Series(rng.choice(sentences[:21], 3000)), "x") == "text"


def test_pii_needs_most_values_to_match() -> None:
    mostly_text = ["hello world"] * 150 + [f"u{i}@example.com" for i in range(50)]
    assert infer_semantic_type(pd.Series(mostly_text), "x") != "email"
    # Luhn-invalid 16-digit numbers are not card numbers
    not_cards = pd.Series([f"4{i:015d}" for i in range(1, 201) if not luhn_valid(f"4{i:015d}")])
    assert infer_semantic_type(not_cards, "x") != "card_number"


def test_luhn() -> None:
    assert luhn_valid("4111111111111111")
    assert not luhn_valid("4111111111111112")


def test_profile_frame_statistics_and_tags() -> None:
    df = _frame()
    df.loc[:9, "amount"] = np.nan
    schema = profile_frame(
        df,
        "files/customers.csv",
        "file",
        "/data/customers.csv",
        fmt="csv",
        sensitive_columns=["city"],
    )
    assert isinstance(schema, DatasetSchema)
    assert schema.row_count == schema.sample_rows == N
    amount = schema.column("amount")
    assert amount.physical_type == "float64"
    assert amount.null_count == 10 and amount.nullable
    assert amount.min == pytest.approx(df["amount"].min())
    assert amount.max == pytest.approx(df["amount"].max())
    assert amount.mean == pytest.approx(df["amount"].mean())
    plan = schema.column("plan")
    assert plan.physical_type == "string" and plan.distinct_count == 3
    counts = df["plan"].value_counts()
    assert plan.top_values[0] == (counts.index[0], int(counts.iloc[0]))
    assert sum(n for _, n in plan.top_values) == N
    signup = schema.column("signup")
    assert signup.physical_type == "datetime64"
    assert signup.min == "2021-01-01T00:00:00" and signup.max.startswith("2021-07-19")
    assert schema.column("flag").physical_type == "bool"
    assert schema.column("customer_id").physical_type == "int64"

    assert schema.column("contact").tags == ["pii", "pii:email"]
    assert "pii:card_number" in schema.column("cc").tags
    assert "pii:person_name" in schema.column("full_name").tags
    assert schema.column("gender").is_sensitive
    assert schema.column("applicant_race").is_sensitive
    assert schema.column("city").is_sensitive  # named explicitly
    assert not schema.column("sussex_score").is_sensitive  # "sex" only as a whole word
    assert not schema.column("plan").is_pii
    # the schema survives its JSON round trip (it travels as a KFP artifact)
    assert DatasetSchema.from_json(schema.to_json()).to_dict() == schema.to_dict()


def test_large_frames_are_sampled() -> None:
    df = pd.DataFrame({"x": np.arange(5_000), "y": RNG.normal(size=5_000)})
    schema = profile_frame(df, "s/t", "sqlite", "sqlite:///t.db", row_count=9_999, max_rows=1_000)
    assert schema.sample_rows == 1_000
    assert schema.row_count == 9_999
    assert schema.column("y").null_count == 0
    assert schema.column("x").distinct_count == 1_000


def test_parse_datetime_text_converts_only_date_columns() -> None:
    df = pd.DataFrame(
        {
            "created_at": ["2024-01-05 10:00:00", "2024-02-06 11:30:00", None, "2024-03-01"],
            "code": ["2024", "A1", "B2", "C3"],
            "n": [1, 2, 3, 4],
        }
    )
    out = parse_datetime_text(df)
    assert pd.api.types.is_datetime64_any_dtype(out["created_at"])
    assert out["created_at"].iloc[1] == pd.Timestamp("2024-02-06 11:30:00")
    assert out["code"].dtype == object
    assert df["created_at"].dtype == object  # the input is left alone


def test_schema_to_dict_equals_dataclasses_asdict() -> None:
    """``to_plain`` (the catalog's fast ``asdict``) gives what ``asdict`` gives, copies
    included, for a profiled schema with a view, nested fields and top values, and for a
    crawl outcome with a change."""
    import collections
    import dataclasses

    from autokfp.catalog.crawl import DatasetOutcome
    from autokfp.catalog.schema import to_plain

    frame = pd.DataFrame({"id": range(30), "city": ["a", "b", "c"] * 10,
                          "amount": np.linspace(0, 1, 30),
                          "when": pd.date_range("2024-01-01", periods=30, freq="D")})
    schema = profile_frame(frame, "s/t", "file", "/x/t.csv", fmt="csv")
    schema.catalog = {"schema_version": 2, "tags": ["a"], "nested": {"k": (1, 2)}}
    schema.nested_fields = [["address.city", "str", False]]
    schema.view = {"definition": "select 1", "upstreams": ["urn:a"],
                   "columns": [{"column": "x", "upstreams": [["urn:a", "x"]]}]}
    schema.columns[1].min = pd.Timestamp("2024-01-01")  # a value asdict deep-copies
    expected = dataclasses.asdict(schema)
    got = to_plain(schema)
    assert got == expected
    assert [c["top_values"] for c in got["columns"]] == [
        c["top_values"] for c in expected["columns"]]
    assert isinstance(got["columns"][1]["top_values"][0], tuple)
    assert got["catalog"] is not schema.catalog and got["view"]["columns"][0] is not (
        schema.view["columns"][0])
    got["columns"][0]["tags"].append("changed")  # a copy: the schema is untouched
    assert "changed" not in schema.columns[0].tags
    assert schema.to_dict() == {**expected, "fingerprint": schema.fingerprint}

    outcome = DatasetOutcome(dataset_id="s/t", source="s", status="changed",
                             change={"added": ["x"], "reasons": ["'x' was added"]},
                             notes=["n"], pii_columns=["email"])
    assert outcome.to_dict() == dataclasses.asdict(outcome)
    Pair = collections.namedtuple("Pair", "a b")
    odd = {"pair": Pair(1, [2]), "counts": collections.defaultdict(int, {"k": 1})}
    assert to_plain(odd) == odd and isinstance(to_plain(odd)["pair"], Pair)
    assert to_plain(odd)["counts"].default_factory is int


@pytest.mark.parametrize("values", [
    [f"2024-01-{d:02d} 10:00:00" for d in range(1, 29)] + [None],  # parsed once, reused
    [f" 2024-02-{d:02d}T08:30:00+02:00 " for d in range(1, 29)],  # spaces: parsed again
    [f"2023-{m:02d}-01" for m in range(1, 13)] + ["2023-12-31T23:59:59Z"],
    [str(pd.Timestamp("2020-01-01") + pd.Timedelta(hours=h)) for h in range(1500)],  # sampled
])
def test_a_text_date_columns_range_is_that_of_all_its_values(values: list) -> None:
    """The range of a text column typed datetime: from the type test's parse when it parsed
    every value as written, else from a parse of all of them; the same either way."""
    from autokfp.catalog.profiling import _to_datetime

    series = pd.Series(values, dtype=object)
    column = profile_frame(pd.DataFrame({"when": series}), "s/t", "file", "/t.csv").columns[0]
    assert column.semantic_type == "datetime"
    stamps = _to_datetime(series.dropna().astype(str)).dropna()
    assert (column.min, column.max) == (stamps.min().isoformat(), stamps.max().isoformat())


def _varied_columns() -> dict[str, pd.Series]:
    """Many kinds of column, as they come from SQL (dates parsed), from CSV and as built."""
    import datetime as dt
    import io

    from autokfp.catalog.profiling import parse_datetime_text
    from tests.engine.catalog.catalog_snapshot import _frames

    rng = np.random.default_rng(3)
    n = 1200  # above the content sample of 1,000
    extra = pd.DataFrame({
        "int_na": pd.array([None if r < 0.1 else int(v) for r, v in
                            zip(rng.random(n), rng.integers(0, 9, n))], dtype="Int64"),
        "str_na": pd.array([None if r < 0.1 else v for r, v in
                            zip(rng.random(n), rng.choice(["a", "b"], n))], dtype="string"),
        "cat": pd.Categorical(rng.choice(["lo", "hi", "mid"], n)),
        "inf": np.where(rng.random(n) < 0.05, np.inf, rng.normal(size=n)),
        "obj_nan": [np.nan if r < 0.2 else v for r, v in zip(rng.random(n),
                                                             rng.choice(["x", "y"], n))],
        "none_text": [None if i % 5 == 0 else f" padded {i % 40} " for i in range(n)],
        "nat": pd.to_datetime([None if r < 0.1 else pd.Timestamp("2024-01-01").value + int(v)
                               for r, v in zip(rng.random(n), rng.integers(0, 10**15, n))]),
        "dates": [dt.date(2024, 1, 1 + i % 28) for i in range(n)],
        "json": [[i % 3, "a"] if i % 4 else {"k": i % 2} for i in range(n)],
        "bytes": [b"ab" if i % 2 else b"cd" for i in range(n)],
        "delta": pd.to_timedelta(rng.integers(0, 100, n), unit="s"),
        "num_text_na": [None if i % 9 == 0 else str(i % 50) for i in range(n)],
        "codes": [f"{i % 12:03d}" for i in range(n)],
        "uints": rng.integers(0, 5, n).astype(np.uint8),
        "bools_na": [None if i % 7 == 0 else bool(i % 2) for i in range(n)],
        "float_ints": rng.integers(0, 100, n).astype(float),
        "neg_zero": np.where(rng.random(n) < 0.5, 0.0, -0.0),
        "nan_all": [np.nan] * n,
        "none_all": [None] * n,
        "words": [f"the order {i % 30} was late again" for i in range(n)],
        "mixed_dates": [f"2024-0{1 + i % 9}-1{i % 10}" if i % 2
                        else f"1{i % 10}/0{1 + i % 9}/2024" for i in range(n)],
        # naive ISO 8601 text (session 17: numpy parses it): T or space, to the minute,
        # second or fraction, a few missing; one with a 29 February of a non-leap year
        "iso_text": [None if i % 11 == 0 else
                     str(pd.Timestamp("2024-01-01") + pd.Timedelta(seconds=int(v) * 977)
                         ).replace(" ", "T" if i % 2 else " ")[:[10, 16, 19, 26][i % 4]]
                     for i, v in enumerate(rng.integers(0, 10**5, n))],
        "iso_bad": ["2023-02-29" if i == 50 else f"2023-0{1 + i % 9}-1{i % 10} 10:00"
                    for i in range(n)],
    })
    columns: dict[str, pd.Series] = {}
    for label, frame in [*_frames().items(), ("extra", extra)]:
        as_csv = pd.read_csv(io.StringIO(frame.to_csv(index=False)))
        for kind, version in (("built", frame), ("csv", as_csv),
                              ("sql", parse_datetime_text(frame)),
                              ("head", frame.head(7))):
            for name in version.columns:
                columns[f"{label}.{kind}.{name}"] = version[name]
    return columns


def test_sql_date_text_is_parsed_as_pandas_parses_it(monkeypatch) -> None:
    """``parse_datetime_text`` (a SQL table's date text) with the shortcuts (session 17:
    plain ISO 8601 text parsed by numpy) gives the frame pandas' ``to_datetime`` gives, on
    every frame of the varied columns, whole and as a 7-row head."""
    import autokfp.catalog.profiling as profiling
    from tests.engine.catalog.catalog_snapshot import _frames

    frames = {label: frame for label, frame in _frames().items()}
    times = ("", " 10:0{}", "T10:00:1{}.25")
    frames["iso"] = pd.DataFrame({"iso": [
        f"2024-0{1 + i % 9}-1{i % 10}" + times[i % 3].format(i % 10) for i in range(40)],
        "other": ["a b"] * 40})
    frames["iso_na"] = pd.DataFrame({"iso": [None if i % 7 == 0 else v for i, v in
                                             enumerate(frames["iso"]["iso"])]})
    frames["leap"] = pd.DataFrame({"d": ["2023-02-29"] + ["2023-03-01 10:00"] * 30})
    fast = {label: profiling.parse_datetime_text(f) for label, f in frames.items()}
    fast_heads = {label: profiling.parse_datetime_text(f.head(7)) for label, f in frames.items()}
    monkeypatch.setattr(profiling, "_SHORTCUTS", False)
    for label, frame in frames.items():
        pd.testing.assert_frame_equal(fast[label], profiling.parse_datetime_text(frame))
        pd.testing.assert_frame_equal(fast_heads[label],
                                      profiling.parse_datetime_text(frame.head(7)))
    assert str(fast["iso"]["iso"].dtype) == "datetime64[ns]"  # it was date text
    assert fast["leap"]["d"].isna().sum() == 1  # the 29 February of 2023 is no date


def test_the_shortcuts_profile_as_the_pandas_calls_do(monkeypatch) -> None:
    """Every column profiled with the shortcuts (session 15) and without them (the pandas
    calls they replace) gives the same schema, field for field."""
    import autokfp.catalog.profiling as profiling

    columns = _varied_columns()
    assert len(columns) > 300
    fast = {key: profiling.profile_column(s.copy(), key.rsplit(".", 1)[1])
            for key, s in columns.items()}
    monkeypatch.setattr(profiling, "_SHORTCUTS", False)
    slow = {key: profiling.profile_column(s.copy(), key.rsplit(".", 1)[1])
            for key, s in columns.items()}
    kinds = {c.semantic_type for c in slow.values()}
    assert kinds >= {"id", "numeric", "categorical", "boolean", "datetime", "text", "email",
                     "constant", "empty"}, kinds
    different = [key for key in columns if fast[key] != slow[key]]
    assert not different, [(k, fast[k], slow[k]) for k in different[:3]]
