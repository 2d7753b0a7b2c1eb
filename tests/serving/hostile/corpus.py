"""A corpus of hostile and malformed requests for the predictor, run against the real server.

Each case is (name, method, path, body bytes or None, headers, statuses allowed, words the
error must contain). Built from one good row of the served model (``good``), the model's
plan (``columns``: which column is a number, a category, a date, text) and its name.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

JSON = {"Content-Type": "application/json"}
MB = 1024 * 1024


@dataclass
class Case:
    name: str
    method: str
    path: str
    body: bytes | None
    statuses: tuple[int, ...]
    words: tuple[str, ...] = ()
    headers: dict[str, str] = field(default_factory=lambda: dict(JSON))

    def __repr__(self) -> str:  # pytest ids
        return self.name


def _deep(depth: int) -> Any:
    value: Any = "x"
    for _ in range(depth):
        value = [value]
    return value


def cases(model: str, version: str, good: dict[str, Any], columns: dict[str, str],
          max_bytes: int) -> list[Case]:
    """Every hostile request; ``columns`` maps 'number', 'category', 'date' (and 'text' when
    the model has one) to a column of that kind."""
    number, category, date = (columns[k] for k in ("number", "category", "date"))
    text = columns.get("text") or category  # a model without a text column: a category
    v1 = f"/v1/models/{model}:predict"
    explain = f"/v1/models/{model}:explain"
    v2 = f"/v2/models/{model}/infer"

    def body(value: Any) -> bytes:
        return json.dumps(value).encode()

    def row(**changes: Any) -> dict[str, Any]:
        return {**good, **changes}

    def one(**changes: Any) -> bytes:
        return body({"instances": [row(**changes)]})

    def many(count: int, **changes: Any) -> bytes:
        return body({"instances": [good] * (count - 1) + [row(**changes)]})

    def tensors(rows: int = 1) -> list[dict[str, Any]]:
        out = []
        for name, value in good.items():
            if isinstance(value, bool):
                datatype = "BOOL"
            elif isinstance(value, (int, float)):
                datatype = "FP64"
            else:
                datatype = "BYTES"
            out.append({"name": name, "datatype": datatype, "shape": [rows], "data": [value] * rows})
        return out

    def v2_with(change) -> bytes:
        inputs = tensors()
        change(inputs)
        return body({"inputs": inputs})

    def set_input(field_name: str, value: Any, column: str = number):
        def change(inputs: list[dict[str, Any]]) -> None:
            for tensor in inputs:
                if tensor["name"] == column:
                    tensor[field_name] = value
        return change

    huge = "9" * (4 * MB)
    out = [
        # -- state-changing and unknown routes
        Case("unload the model", "POST", f"/v2/repository/models/{model}/unload", b"", (404,),
             ("disabled",)),
        Case("load a model", "POST", f"/v2/repository/models/{model}/load", b"", (404,),
             ("disabled",)),
        Case("load another model", "POST", "/v2/repository/models/other/load", b"{}", (404,),
             ("disabled",)),
        Case("unknown version infer", "POST", f"/v2/models/{model}/versions/999/infer",
             body({"inputs": tensors()}), (404,), ("999", f"version {version}")),
        Case("unknown version ready", "GET", f"/v2/models/{model}/versions/999/ready", None,
             (404,), ("999",)),
        Case("unknown version metadata", "GET", f"/v2/models/{model}/versions/999", None,
             (404,), ("999",)),
        Case("unknown model", "POST", "/v1/models/nobody:predict", one(), (404,), ("nobody",)),
        Case("repository route over the body limit", "POST",
             f"/v2/repository/models/{model}/load", b"x" * (max_bytes + 1), (404, 413)),
        Case("health route over the body limit", "POST", "/v2/health/ready",
             b"x" * (max_bytes + 1), (413,), ("larger than",)),
        # -- malformed bodies
        Case("malformed JSON", "POST", v1, b'{"instances": [{"a": 1,', (400,)),
        Case("not UTF-8", "POST", v1, b'\xff\xfe{"instances": []}', (400,)),
        Case("a JSON list", "POST", v1, b"[1, 2, 3]", (400,), ("instances",)),
        Case("a JSON string", "POST", v1, b'"hello"', (400,), ("instances",)),
        Case("instances is a number", "POST", v1, body({"instances": 7}), (400,), ("instances",)),
        Case("instance is a list", "POST", v1, body({"instances": [[1, 2, 3]]}), (400,),
             ("instance 0",)),
        Case("900-deep nested body", "POST", v1, body({"instances": _deep(900)}), (400,)),
        Case("5000-deep nested body", "POST", v1,
             b'{"instances": ' + b"[" * 5000 + b"]" * 5000 + b"}", (400,)),
        Case("dataframe_split ragged", "POST", v1,
             body({"dataframe_split": {"columns": list(good), "data": [[1]]}}), (400,),
             ("dataframe_split",)),
        Case("too many rows", "POST", v1, body({"instances": [{}] * 10_001}), (400,),
             ("10000",)),
        # -- wrong types and sizes per column
        Case("list in a category", "POST", v1, one(**{category: ["a", "b"]}), (400,),
             (category,)),
        Case("object in a category", "POST", v1, one(**{category: {"level": "a"}}), (400,),
             (category,)),
        Case("900-deep list in a category", "POST", v1, one(**{category: _deep(900)}), (400,),
             (category,)),
        Case("list in a category, frame path", "POST", v1,
             many(80, **{category: ["a"]}), (400,), (category,)),
        Case("object in a text column", "POST", v1, one(**{text: {"a": 1}}), (400,), (text,)),
        Case("list in a number", "POST", v1, one(**{number: [1]}), (400,), (number,)),
        Case("huge number string", "POST", v1, one(**{number: huge}), (400,), (number, "characters")),
        Case("huge date string", "POST", v1, one(**{date: "2020-01-01" + " " * (4 * MB)}),
             (400,), (date, "characters")),
        Case("huge date string, frame path", "POST", v1,
             many(80, **{date: "1" * (MB // 2)}), (400,), (date, "characters")),
        Case("huge category", "POST", v1, one(**{category: "c" * (2 * MB)}), (400,),
             (category, "characters")),
        Case("huge text", "POST", v1, one(**{text: "word " * (MB // 2)}), (400,),
             (text, "characters")),
        Case("huge unknown column name", "POST", v1, one(**{"k" * (MB // 2): 1}), (400,),
             ("unknown column",)),
        Case("number too big for an integer", "POST", v1,
             b'{"instances": [{"' + number.encode() + b'": 1' + b"0" * 5000 + b"}]}", (400,)),
        # -- v2
        Case("v2 duplicate input names", "POST", v2,
             v2_with(lambda inputs: inputs.append(dict(inputs[0]))), (400,), ("more than once",)),
        Case("v2 shape says 2, data has 1", "POST", v2, v2_with(set_input("shape", [2])),
             (400,), ("shape",)),
        Case("v2 shape of 10**12", "POST", v2, v2_with(set_input("shape", [10**12])), (400,),
             ("rows",)),
        Case("v2 negative shape", "POST", v2, v2_with(set_input("shape", [-1])), (400,),
             ("shape",)),
        Case("v2 three-dimensional shape", "POST", v2, v2_with(set_input("shape", [1, 1, 1])),
             (400,), ("shape",)),
        Case("v2 datatype FP128", "POST", v2, v2_with(set_input("datatype", "FP128")), (400,),
             ("FP128",)),
        Case("v2 text in an FP64 tensor", "POST", v2, v2_with(set_input("data", ["abc"])),
             (400,), (number,)),
        Case("v2 no inputs", "POST", v2, body({"inputs": []}), (400,), ("inputs",)),
        Case("v2 inputs is a string", "POST", v2, body({"inputs": "x"}), (400, 422)),
        Case("v2 tensors of different lengths", "POST", v2,
             v2_with(set_input("data", [1.0, 2.0])), (400,)),
        # -- explain
        Case("explain parameters is a string", "POST", explain,
             body({"instances": [good], "parameters": "x"}), (400,), ("parameters",)),
        Case("explain nsamples is text", "POST", explain,
             body({"instances": [good], "parameters": {"nsamples": "many"}}), (400,),
             ("nsamples",)),
        Case("explain nsamples 2**40", "POST", explain,
             body({"instances": [good], "parameters": {"nsamples": 2**40}}), (400,),
             ("nsamples",)),
        Case("explain 20 rows × 2048 samples", "POST", explain,
             body({"instances": [good] * 20, "parameters": {"nsamples": 2048}}), (400,),
             ("nsamples",)),
        Case("explain 20 rows × 1024 samples", "POST", explain,
             body({"instances": [good] * 20, "parameters": {"nsamples": 1024}}), (400,),
             ("budget",)),
        Case("explain 20 rows at the default samples", "POST", explain,
             body({"instances": [good] * 20}), (400,), ("budget",)),
        Case("explain 21 rows", "POST", explain, body({"instances": [good] * 21}), (400,),
             ("at most",)),
        Case("explain unknown parameter", "POST", explain,
             body({"instances": [good], "parameters": {"steps": 9}}), (400,), ("steps",)),
        Case("explain a list in a category", "POST", explain,
             body({"instances": [row(**{category: [1]})]}), (400,), (category,)),
        Case("explain a list body", "POST", explain, b"[1]", (400,)),
    ]
    return out
