"""Print autokfp's requirements (the core plus EXTRAS) from pyproject.toml, one per line.

The images install these first, in a layer of their own that only changes with
pyproject.toml and constraints.txt, then the autokfp wheel itself with --no-deps; `pip check`
then proves the wheel's declared requirements are all met.

    python images/requirements.py pyproject.toml pipelines,keras
"""

from __future__ import annotations

import re
import sys

import tomllib


def requirements(project: dict, extras: list[str]) -> list[str]:
    name = project["name"]
    optional = project.get("optional-dependencies", {})
    found: list[str] = list(project.get("dependencies", []))
    pending, seen = list(extras), set()
    while pending:
        extra = pending.pop()
        if extra in seen:
            continue
        if extra not in optional:
            raise SystemExit(f"error: pyproject.toml has no extra '{extra}'; "
                             f"choose from {', '.join(sorted(optional))}")
        seen.add(extra)
        for requirement in optional[extra]:
            own = re.fullmatch(rf"{re.escape(name)}\[([^\]]+)\]", requirement.strip())
            if own:  # an extra made of other extras, e.g. all = ["autokfp[pipelines,keras]"]
                pending.extend(part.strip() for part in own.group(1).split(","))
            else:
                found.append(requirement)
    return list(dict.fromkeys(found))


if __name__ == "__main__":
    with open(sys.argv[1], "rb") as handle:
        project = tomllib.load(handle)["project"]
    wanted = [part.strip() for part in (sys.argv[2] if len(sys.argv) > 2 else "").split(",")]
    print("\n".join(requirements(project, [part for part in wanted if part])))
