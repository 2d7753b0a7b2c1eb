"""Column profiling: physical type, semantic type (incl. PII kinds) and summary statistics.

Semantic types are decided by content; a column's name only breaks ties (``customer_id``
holding unique integers is an id, ``score`` holding unique integers is numeric). Content
checks run on a deterministic sample of at most ``_CONTENT_SAMPLE`` non-null values, so
profiling cost does not grow with the number of rows beyond counting.
"""

from __future__ import annotations

import functools
import json
import logging
import re
import warnings
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import pandas as pd

from autokfp.catalog.schema import PII_TYPES, ColumnSchema, DatasetSchema, SemanticType

log = logging.getLogger(__name__)

DEFAULT_MAX_ROWS = 100_000
_CONTENT_SAMPLE = 1_000
_SEED = 0

# A text column with at most this many distinct values stays a category whatever its
# values look like (also the smallest categorical limit, ``_categorical_limit``); above it,
# distinct values of ``_SENTENCE_WORDS`` words or more on average make it text.
_CATEGORY_FLOOR = 20
_SENTENCE_WORDS = 3
# ... and only when the distinct values share their words: each word is found, on average,
# in at least this many distinct values. Word features then carry what one value says to
# the others (templated notes: 6.3); names of places or products whose words are their own
# (24 cities "San Francisco CA", "New York NY", ...: 1.3) stay categories.
_SHARED_WORDS = 2.0

# A content rule must hold for this fraction of sampled non-null values.
_PII_MATCH = 0.9
_DATETIME_MATCH = 0.95

# protected attributes by name (a whole name or one ``_``-separated part of it), including
# the usual spellings and codes: a ``black``/``white`` indicator is a race code
SENSITIVE_ATTRIBUTES: frozenset[str] = frozenset(
    {
        "gender", "sex",
        "race", "racial", "ethnicity", "ethnic", "ethnic_group", "black", "white", "hispanic",
        "asian", "colour", "color", "skin_colour", "skin_color",
        "age", "age_group", "age_band",
        "religion", "religious", "faith",
        "nationality", "national_origin", "citizenship", "country_of_birth",
        "marital_status", "marital", "married",
        "disability", "disabled", "handicap",
    }
)

_BOOLEAN_TOKENS = [
    {"true", "false"},
    {"t", "f"},
    {"yes", "no"},
    {"y", "n"},
    {"0", "1"},
    {"on", "off"},
]

# \w: internationalised addresses (RFC 6531: "chloé.1@exämple.com") are addresses too
_EMAIL = re.compile(r"^[\w.%+'-]+@[\w-]+(?:\.[\w-]+)*\.[^\W\d_]{2,}$")
_IPV4 = re.compile(r"^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$")
_IPV6 = re.compile(r"^(?=.*:.*:)[0-9A-Fa-f:]{2,39}$")
_CARD = re.compile(r"^\d(?:[ -]?\d){12,18}$")
_PHONE = re.compile(
    r"^\+?\(?\d{1,4}\)?(?:[\s.-]?\(?\d{1,5}\)?){1,5}(?:\s*(?:x|ext\.?)\s*\d{1,5})?$"
)
_PHONE_SEPARATED = re.compile(r"^\+|[\s().-]")
# Latin letters with their accents (Müller, García, Chloé, Łukasz): upper and lower case
_UP = "A-ZÀ-ÖØ-Þ\u0100-\u017f"
_LO = "a-zß-öø-ÿ\u0100-\u017f"
_NAME_WORD = rf"(?:[{_UP}]['’])?[{_UP}][{_LO}]+(?:[{_UP}][{_LO}]+)?(?:-[{_UP}][{_LO}]+)?"
# lower-case particles of family names: Van der Berg, da Silva, de la Cruz, von Trapp
_PARTICLES = r"(?:(?:van|von|der|den|de|da|das|dos|del|della|di|du|la|le|bin|al) ){0,2}"
_PERSON_NAME = re.compile(
    rf"^(?:{_NAME_WORD}\.? )?{_NAME_WORD}(?: [{_UP}]\.)?(?: {_PARTICLES}{_NAME_WORD}){{1,2}}$"
    rf"|^{_PARTICLES}{_NAME_WORD}(?: {_PARTICLES}{_NAME_WORD})?, {_NAME_WORD}(?: [{_UP}]\.)?$"
)
_SINGLE_NAME = re.compile(rf"^{_NAME_WORD}$")
_DATE_SHAPE = re.compile(
    r"^\d{4}[-/.]\d{1,2}[-/.]\d{1,2}([T ]\d{1,2}:\d{2}(:\d{2}(\.\d+)?)?\s*(Z|[+-]\d{2}:?\d{2})?)?$"
    r"|^\d{1,2}[-/.]\d{1,2}[-/.]\d{2,4}( \d{1,2}:\d{2}(:\d{2})?\s*([AaPp][Mm])?)?$"
    r"|^\d{1,2}[ -]?[A-Za-z]{3,9}[ -,]*\d{2,4}"
    r"|^[A-Za-z]{3,9}\.? \d{1,2},? \d{4}"
    r"|^\d{4}-\d{2}-\d{2}T"
)
# no leading "+": "+15551234567" is a phone number, not a number
_NUMERIC_TEXT = re.compile(r"^-?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")

_ID_TOKENS = {"id", "uuid", "guid", "key", "pk", "identifier"}
_ID_SUFFIX_TOKENS = {"code", "number", "no", "num", "ref"}
_NAME_TOKENS = {"name", "fullname", "surname", "firstname", "lastname", "givenname", "person"}
_NOT_PERSON_TOKENS = {
    "product",
    "file",
    "host",
    "user",
    "username",
    "company",
    "city",
    "street",
    "country",
    "brand",
    "item",
    "table",
    "column",
    "field",
    "plan",
    "store",
    "category",
    "model",
    "app",
    "team",
    "org",
    "organization",
    "region",
    "state",
    "town",
    "place",
    "dataset",
    "event",
}
_SINGLE_NAME_COLUMNS = {
    "first_name",
    "last_name",
    "firstname",
    "lastname",
    "surname",
    "given_name",
    "givenname",
    "family_name",
    "middle_name",
}


def name_tokens(name: str) -> list[str]:
    """Split a column name into lowercase words: ``customerId`` and ``customer_id`` agree."""
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", str(name))
    return [t for t in re.split(r"[^A-Za-z0-9]+", spaced.lower()) if t]


# Column names recur across a catalog's datasets (id, amount, email...), and what a name
# says does not change: the name tests are cached (they were a tenth of profiling a column)
_NAME_CACHE = 4096


@functools.lru_cache(maxsize=_NAME_CACHE)
def _snake(name: str) -> str:
    return "_".join(name_tokens(name))


@functools.lru_cache(maxsize=_NAME_CACHE)
def _id_like_name(name: str) -> bool:
    tokens = name_tokens(name)
    if not tokens:
        return False
    return (
        tokens[-1] in _ID_TOKENS
        or tokens[0] in _ID_TOKENS
        or (len(tokens) > 1 and tokens[-1] in _ID_SUFFIX_TOKENS)
        or _snake(name) in {"unnamed_0", "index"}
    )


@functools.lru_cache(maxsize=_NAME_CACHE)
def _person_like_name(name: str) -> bool:
    tokens = set(name_tokens(name))
    if tokens & _NOT_PERSON_TOKENS:
        return False
    return bool(tokens & _NAME_TOKENS) or _snake(name) in _SINGLE_NAME_COLUMNS


@functools.lru_cache(maxsize=_NAME_CACHE)
def _phone_like_name(name: str) -> bool:
    return bool(set(name_tokens(name)) & {"phone", "mobile", "tel", "telephone", "cell", "fax"})


@functools.lru_cache(maxsize=_NAME_CACHE)
def is_sensitive_name(name: str) -> bool:
    """True for common protected-attribute names (``gender``, ``customer_race``...)."""
    snake = _snake(name)
    return any(re.search(rf"(^|_){attr}($|_)", snake) for attr in SENSITIVE_ATTRIBUTES)


def luhn_valid(digits: str) -> bool:
    """The Luhn checksum that every payment card number satisfies."""
    if not digits.isdigit():
        return False
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def _is_card(text: str) -> bool:
    if not _CARD.match(text):
        return False
    digits = re.sub(r"[ -]", "", text)
    return 13 <= len(digits) <= 19 and len(set(digits)) > 1 and luhn_valid(digits)


def _is_phone(text: str) -> bool:
    if not _PHONE.match(text):
        return False
    digits = re.sub(r"\D", "", re.split(r"\s*(?:x|ext)", text)[0])
    return 7 <= len(digits) <= 15


def _fraction(values: list[str], predicate: Any) -> float:
    if not values:
        return 0.0
    return sum(1 for v in values if predicate(v)) / len(values)


_SCALAR_INFERRED = {
    "string",
    "empty",
    "boolean",
    "integer",
    "floating",
    "mixed-integer-float",
    "decimal",
    "datetime",
    "datetime64",
    "date",
    "time",
    "bytes",
}


def _hashable(series: pd.Series) -> pd.Series:
    """Nested JSON values (lists, dicts) become their JSON text so they can be counted."""
    if series.dtype != object:
        return series
    if pd.api.types.infer_dtype(series, skipna=True) in _SCALAR_INFERRED:
        return series
    if not series.map(lambda v: isinstance(v, (list, dict, set, np.ndarray))).any():
        return series

    def _text(v: Any) -> Any:
        if isinstance(v, np.ndarray):
            v = v.tolist()
        if isinstance(v, set):
            v = sorted(v, key=str)
        if isinstance(v, (list, dict)):
            return json.dumps(v, sort_keys=True, default=str)
        return v

    return series.map(_text)


# The shortcuts below give what the pandas calls they stand for give (tested against them:
# ``test_profiling.py::test_the_shortcuts_profile_as_the_pandas_calls_do`` turns them off).
# Profiling is about a dozen pandas calls per column, each costly on a small sample.
_SHORTCUTS = True


def _without_missing(series: pd.Series) -> pd.Series:
    """``series.dropna()``; a numpy-typed series with nothing missing is itself (never
    changed in place here), found by the same ``isna`` test ``dropna`` makes."""
    dtype = series.dtype
    if _SHORTCUTS and isinstance(dtype, np.dtype):
        if dtype.kind in "iub":  # numpy integers and booleans cannot be missing
            return series
        if not pd.isna(series.to_numpy()).any():
            return series
    return series.dropna()


def _content_sample(non_null: pd.Series) -> pd.Series:
    if len(non_null) > _CONTENT_SAMPLE:
        return non_null.sample(_CONTENT_SAMPLE, random_state=_SEED)
    return non_null


# naive ISO 8601 text that numpy's datetime64 parser reads as pandas' ISO8601 format does:
# a date, optionally a time to the minute, second or fraction, 'T' or a space between; years
# 1700-2199 (inside datetime64[ns]'s range), no zone
_PLAIN_ISO = re.compile(
    r"(?:1[7-9]|2[01])\d\d-\d\d-\d\d(?:[T ]\d\d:\d\d(?::\d\d(?:\.\d{1,9})?)?)?\Z")


def _plain_iso(values: pd.Series) -> pd.Series | None:
    """``pd.to_datetime(values, format="ISO8601", utc=True)`` of text that is all naive
    ISO 8601 (``_PLAIN_ISO``), parsed by numpy (a quarter of pandas' time on a sample of
    20); None for anything else, or a value numpy refuses (a 30 February, hour 24), which
    then goes to pandas as before."""
    items = values.tolist()
    if not items or not all(type(v) is str and _PLAIN_ISO.match(v) for v in items):
        return None
    try:
        stamps = np.array(items, dtype="datetime64[ns]")
    except (ValueError, OverflowError):
        return None
    return pd.Series(pd.DatetimeIndex(stamps, tz="UTC"), index=values.index, name=values.name)


def _to_datetime(values: pd.Series) -> pd.Series:
    if _SHORTCUTS and values.dtype == object:
        plain = _plain_iso(values)
        if plain is not None:
            return plain
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            iso = pd.to_datetime(values, errors="coerce", format="ISO8601", utc=True)
            # notna().sum() of each, counted on their arrays (two Series fewer per column)
            if (len(iso) - int(iso.array.isna().sum())
                    == len(values) - int(pd.isna(values.to_numpy()).sum())):
                return iso
        except (ValueError, TypeError):
            pass
        try:
            return pd.to_datetime(values, errors="coerce", format="mixed", utc=True)
        except (ValueError, TypeError, OverflowError):
            return pd.Series(pd.NaT, index=values.index)


def _datetime_sample(series: pd.Series) -> tuple[pd.Series | None, bool]:
    """(the parsed content sample, whether it is every non-null value as written) when
    ≥95% of the sampled non-null values are date/time strings that parse; else (None, False)."""
    if not (series.dtype == object or pd.api.types.is_string_dtype(series)):
        return None, False
    non_null = _without_missing(series)
    if non_null.empty:
        return None, False
    sample = _content_sample(non_null)
    values = sample.tolist()  # plain Python first: most text columns fail the shape test
    if not all(isinstance(v, str) for v in values):
        return None, False
    stripped = [v.strip() for v in values]
    if _fraction(stripped, lambda v: bool(_DATE_SHAPE.match(v))) < _DATETIME_MATCH:
        return None, False
    parsed = _to_datetime(pd.Series(stripped, index=sample.index, dtype=object))
    if float(parsed.notna().mean()) < _DATETIME_MATCH:
        return None, False
    return parsed, len(sample) == len(non_null) and stripped == values


def looks_like_datetime_text(series: pd.Series) -> bool:
    """True when ≥95% of sampled non-null values are date/time strings that parse."""
    return _datetime_sample(series)[0] is not None


def parse_datetime_text(df: pd.DataFrame, decided: Mapping[str, bool] | None = None,
                        unparsed: dict[str, list[Any]] | None = None) -> pd.DataFrame:
    """Convert text columns that hold dates/times to ``datetime64`` (SQLite stores them as text).

    Timezone-aware strings are converted to UTC and made naive so one column has one dtype.
    ``decided``: columns whose answer is given (parsed: True, kept as text: False) rather
    than found from their own values (what the whole table's values decided, for a chunk of
    it: ``chunk_copy``). ``unparsed`` gathers, per column parsed, how many values that are
    not dates were made missing and the first of them (``unparsed_date_notes``).
    """
    out = df
    decided = decided or {}
    for name in df.columns:
        column = df[name]
        if name in decided:
            if not decided[name]:
                continue
            parsed = _to_datetime(column.where(column.notna(), None).astype(object))
        else:
            sample, whole = _datetime_sample(column)
            if sample is None:
                continue
            if whole:  # the check parsed every value already (missing ones stay NaT)
                parsed = sample.reindex(column.index)
            else:
                parsed = _to_datetime(column.where(column.notna(), None).astype(object))
        if unparsed is not None:
            lost = column.notna().to_numpy() & parsed.isna().to_numpy()
            if lost.any():
                entry = unparsed.setdefault(name, [0, str(column[lost].iloc[0])])
                entry[0] += int(lost.sum())
        if out is df:
            out = df.copy()
        out[name] = parsed.dt.tz_convert(None) if parsed.dt.tz is not None else parsed
    return out


def unparsed_date_notes(unparsed: dict[str, list[Any]], columns: Iterable[str],
                        dataset: str) -> list[str]:
    """The data changes of ``parse_datetime_text``'s ``unparsed``: a note per column (in the
    order of ``columns``) whose values that are not dates were made missing."""
    return [f"column '{name}' of '{dataset}' holds dates as text; {unparsed[name][0]} "
            f"value{'s' if unparsed[name][0] > 1 else ''} that are not dates (e.g. "
            f"'{unparsed[name][1][:40]}') were made missing. Fix them in the table if they "
            "mean something" for name in columns if name in unparsed]


def datetime_text_sample(non_null_count: int) -> np.ndarray | None:
    """Which of a column's non-missing values (their places among them, in order)
    ``parse_datetime_text`` tests to decide whether the whole column is dates: None when it
    tests every value (the content sample ``_content_sample`` draws)."""
    if non_null_count <= _CONTENT_SAMPLE:
        return None
    # Series.sample(n, random_state=seed): RandomState(seed).choice(N, n, replace=False)
    chosen = np.random.RandomState(_SEED).permutation(non_null_count)[:_CONTENT_SAMPLE]
    return np.sort(chosen)


def datetime_text_decision(values: list[Any]) -> bool:
    """Whether ``parse_datetime_text`` parses a column whose tested values (the whole
    column's ``datetime_text_sample``) are ``values``."""
    return _datetime_sample(pd.Series(values, dtype=object))[0] is not None


def physical_type(series: pd.Series, non_null: pd.Series | None = None) -> str:
    """A normalised storage type: int64, float64, bool, datetime64, string, category...

    ``non_null``: ``series.dropna()`` when the caller has it already.
    """
    dtype = series.dtype
    if pd.api.types.is_bool_dtype(dtype):
        return "bool"
    if pd.api.types.is_integer_dtype(dtype):
        return "int64"
    if pd.api.types.is_float_dtype(dtype):
        return "float64"
    if pd.api.types.is_datetime64_any_dtype(dtype):
        return "datetime64"
    if pd.api.types.is_timedelta64_dtype(dtype):
        return "timedelta64"
    if isinstance(dtype, pd.CategoricalDtype):
        return "category"
    if pd.api.types.is_complex_dtype(dtype):
        return "complex128"
    if non_null is None:
        non_null = _without_missing(series)
    if not non_null.empty:
        # the objects themselves (an object column's tolist does not convert them), tested
        # in plain Python: Series.map per test was most of this function's time
        values = _content_sample(non_null).tolist()
        if all(isinstance(v, (bool, np.bool_)) for v in values):
            return "bool"
        if all(isinstance(v, bytes) for v in values):
            return "bytes"
        if any(isinstance(v, (list, dict, np.ndarray)) for v in values):
            return "json"
    return "string"


def _boolean_values(non_null: pd.Series, count: int | None = None) -> bool:
    """``count``: ``non_null.nunique()`` when known (it is ``len(non_null.unique())``)."""
    if pd.api.types.is_bool_dtype(non_null.dtype):
        return True
    if _SHORTCUTS and count is not None and count != 2:
        return False
    distinct = non_null.unique()
    if len(distinct) != 2:
        return False
    if all(isinstance(v, (bool, np.bool_)) for v in distinct):
        return True
    if pd.api.types.is_numeric_dtype(non_null.dtype):
        return {float(v) for v in distinct} == {0.0, 1.0}
    lowered = {str(v).strip().lower() for v in distinct}
    return any(lowered == tokens for tokens in _BOOLEAN_TOKENS)


def _categorical_limit(n: int) -> int:
    return max(_CATEGORY_FLOOR, int(0.05 * n))


def _sentences(non_null: pd.Series) -> bool:
    """True when the distinct values are sentences: at least ``_SENTENCE_WORDS`` words on
    average (AutoGluon's test for a text column, on the distinct values so that one
    frequent short value does not hide the rest) whose words recur across the values
    (``_SHARED_WORDS``): a name whose words are its own is a category however long."""
    distinct = pd.unique(_content_sample(non_null).astype(str))
    if np.mean([len(v.split()) for v in distinct]) < _SENTENCE_WORDS:
        return False
    values_per_word = Counter(w for v in distinct for w in set(v.split()))
    shared = sum(values_per_word.values()) / max(len(values_per_word), 1)
    return bool(shared >= _SHARED_WORDS)


def _numeric_type(non_null: pd.Series, name: str, distinct: int) -> SemanticType:
    n = len(non_null)
    integral = pd.api.types.is_integer_dtype(non_null.dtype) or bool(
        np.all(np.mod(non_null.to_numpy(dtype=float), 1) == 0)
    )
    if integral:
        if distinct == n and n > 1 and _id_like_name(name):
            return "id"
        sample = _content_sample(non_null)
        digits = [str(int(v)) for v in sample]
        if _fraction(digits, _is_card) >= _PII_MATCH:
            return "card_number"
        if _phone_like_name(name) and _fraction(digits, lambda d: 7 <= len(d) <= 15) >= _PII_MATCH:
            return "phone"
        # Small integer codes (ratings, counts of a few levels) behave as categories.
        if distinct <= 20 and distinct <= max(2, int(0.05 * n)):
            return "categorical"
    return "numeric"


def _text_type(non_null: pd.Series, name: str, distinct: int,
               parsed: list[pd.Series] | None = None) -> SemanticType:
    """``parsed``: where a datetime column's parse of every value goes, when the test parsed
    them all (``profile_column`` takes its range from it instead of parsing them again)."""
    n = len(non_null)
    sample = _content_sample(non_null)
    text = [str(v).strip() for v in sample]

    if _fraction(text, lambda v: bool(_EMAIL.match(v))) >= _PII_MATCH:
        return "email"
    if _fraction(text, lambda v: bool(_IPV4.match(v) or _IPV6.match(v))) >= _PII_MATCH:
        return "ip_address"
    if _fraction(text, _is_card) >= _PII_MATCH:
        return "card_number"
    if _SHORTCUTS and sample.dtype == object and all(type(v) is str for v in sample.tolist()):
        as_text = sample  # astype(str) of strings: the same strings, the same object dtype
    else:
        as_text = sample.astype(str)
    dates, whole = _datetime_sample(as_text)
    if dates is not None:
        if parsed is not None and whole and len(sample) == n and as_text.dtype == object:
            parsed.append(dates)  # _to_datetime of every value as profile_column writes them
        return "datetime"
    phone_name = _phone_like_name(name)
    phone_shaped = _fraction(
        text,
        lambda v: _is_phone(v) and bool(_PHONE_SEPARATED.search(v)) and not _NUMERIC_TEXT.match(v),
    )
    if phone_shaped >= _PII_MATCH or (phone_name and _fraction(text, _is_phone) >= _PII_MATCH):
        return "phone"
    if _person_like_name(name):
        single = _snake(name) in _SINGLE_NAME_COLUMNS
        pattern = _SINGLE_NAME if single else _PERSON_NAME
        if _fraction(text, lambda v: bool(pattern.match(v) or _PERSON_NAME.match(v))) >= 0.8:
            return "person_name"
    elif (
        n >= 20
        and distinct >= 0.5 * n
        and _fraction(text, lambda v: bool(_PERSON_NAME.match(v))) >= 0.95
    ):
        return "person_name"

    if _fraction(text, lambda v: bool(_NUMERIC_TEXT.match(v))) == 1.0:
        if distinct == n and n > 1 and _id_like_name(name):
            return "id"
        numeric = pd.to_numeric(pd.Series(text), errors="coerce")
        return _numeric_type(numeric.dropna(), name, distinct)

    words = np.mean([len(v.split()) for v in text]) if text else 0.0
    lengths = np.mean([len(v) for v in text]) if text else 0.0
    codes = all(v and not any(c.isspace() for c in v) and len(v) <= 64 for v in text)
    if distinct == n and n > 1 and codes and (_id_like_name(name) or n >= 20):
        return "id"
    if distinct <= _categorical_limit(n):
        if distinct > _CATEGORY_FLOOR and _sentences(non_null):
            # Many distinct sentences (templated notes, canned replies) are text, not
            # categories: as one categorical of dozens of levels, H2O's GBM overfits its
            # group splits (churn_noleak: test AUC 0.832 vs 0.852 from words, docs/training.md)
            return "text"
        return "categorical"
    if words >= 3 or lengths >= 40:
        return "text"
    return "categorical"


def infer_semantic_type(series: pd.Series, name: str) -> SemanticType:
    """Decide what a column means: id, numeric, categorical, boolean, datetime, text, a PII
    kind (email, phone, card_number, ip_address, person_name), constant or empty.

    Args:
        series: the column's values (a sample is enough).
        name: the column name; it only helps where content is ambiguous.

    Returns:
        One of the ``SemanticType`` literals.
    """
    non_null = _hashable(series).dropna()
    return _semantic_type(non_null, name, int(non_null.nunique()))


def _semantic_type(non_null: pd.Series, name: str, distinct: int,
                   parsed: list[pd.Series] | None = None) -> SemanticType:
    """``infer_semantic_type`` of the hashable non-null values with ``distinct`` of them
    (``parsed``: see ``_text_type``)."""
    if non_null.empty:
        return "empty"
    if isinstance(non_null.dtype, pd.CategoricalDtype):
        non_null = non_null.astype(object)
    if distinct == 1:
        return "constant"
    if _boolean_values(non_null, distinct):
        return "boolean"
    if pd.api.types.is_datetime64_any_dtype(non_null.dtype):
        return "datetime"
    if pd.api.types.is_timedelta64_dtype(non_null.dtype):
        return "numeric"
    if pd.api.types.is_numeric_dtype(non_null.dtype):
        return _numeric_type(non_null, name, distinct)
    if all(hasattr(v, "isoformat") for v in non_null.tolist()):  # datetime.date / time objects
        return "datetime"
    return _text_type(non_null, name, distinct, parsed)


def _iso(value: Any) -> str:
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    return str(value)


def _number(value: Any) -> float | None:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if np.isfinite(out) else None


def profile_column(
    series: pd.Series, name: str, sensitive_columns: Iterable[str] = ()
) -> ColumnSchema:
    """Profile one column (physical and semantic type, counts, range, top values, tags)."""
    values = _hashable(series)
    non_null = _without_missing(values)
    distinct = int(non_null.nunique())
    parsed: list[pd.Series] = []
    semantic = _semantic_type(non_null, name, distinct, parsed)
    column = ColumnSchema(
        name=str(name),
        physical_type=physical_type(series, non_null if values is series else None),
        semantic_type=semantic,
        null_count=int(len(values) - len(non_null)),
        distinct_count=distinct,
    )
    column.nullable = column.null_count > 0
    is_bool = pd.api.types.is_bool_dtype(non_null.dtype)
    if pd.api.types.is_numeric_dtype(non_null.dtype) and not is_bool and not non_null.empty:
        numbers = non_null.astype(float)
        if _SHORTCUTS:  # nothing is missing: numpy's min and max are pandas' (exact)
            array = numbers.to_numpy()
            column.min, column.max = _number(array.min()), _number(array.max())
        else:
            column.min = _number(numbers.min())
            column.max = _number(numbers.max())
        column.mean = _number(numbers.mean())
    elif semantic == "datetime" and not non_null.empty:
        stamps = non_null
        if not pd.api.types.is_datetime64_any_dtype(stamps.dtype):
            stamps = (parsed[0] if parsed else _to_datetime(stamps.astype(str))).dropna()
        if not stamps.empty:
            column.min = _iso(stamps.min())
            column.max = _iso(stamps.max())
    if semantic in ("categorical", "boolean", "constant") and not non_null.empty:
        counts = non_null.astype(str).value_counts().head(5)
        column.top_values = [(str(k), int(v)) for k, v in counts.items()]

    tags: list[str] = []
    if semantic in PII_TYPES:
        tags += ["pii", f"pii:{semantic}"]
    if str(name) in set(sensitive_columns) or is_sensitive_name(str(name)):
        tags.append("sensitive")
    column.tags = tags
    return column


def profile_frame(
    df: pd.DataFrame,
    dataset_id: str,
    platform: str,
    location: str,
    fmt: str | None = None,
    row_count: int | None = None,
    sensitive_columns: Iterable[str] = (),
    max_rows: int = DEFAULT_MAX_ROWS,
) -> DatasetSchema:
    """Profile a table into a ``DatasetSchema``.

    Args:
        df: the data (or a sample of it).
        dataset_id: ``<source name>/<table or relative path>``.
        platform: ``file``, ``gcs``, ``sqlite``, ``postgres``...
        location: where it lives, without credentials.
        fmt: ``csv``, ``parquet``, ``jsonl`` for files.
        row_count: the full row count when ``df`` is a sample; defaults to ``len(df)``.
        sensitive_columns: extra columns to tag ``sensitive`` (protected attributes).
        max_rows: profile a seeded random sample of at most this many rows.

    Returns:
        The schema; ``sample_rows`` is the number of rows the statistics describe.
    """
    sample = df
    if len(df) > max_rows:
        sample = df.sample(max_rows, random_state=_SEED)
        log.info("profiling %s on a sample of %d of %d rows", dataset_id, max_rows, len(df))
    sensitive = {str(c) for c in sensitive_columns}
    columns = [
        profile_column(sample.iloc[:, i], str(name), sensitive)
        for i, name in enumerate(sample.columns)
    ]
    return DatasetSchema(
        dataset_id=dataset_id,
        platform=platform,
        location=location,
        row_count=int(row_count if row_count is not None else len(df)),
        sample_rows=int(len(sample)),
        columns=columns,
        format=fmt,
    )
