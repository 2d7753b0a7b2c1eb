"""Size figures of the engine: the largest modules and the longest functions.

    python scripts/measure_code_size.py [PACKAGE_DIR ...]   (default: autokfp)

Lines are physical lines of the file; a function's length runs from its ``def`` (decorators
excluded) to its last line, nested functions counted within their parent and on their own.
docs/architecture.md records these figures before and after each reorganisation.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

MODULE_LIMIT = 600
FUNCTION_LIMIT = 80
STEP_LIMIT = 60  # a step (autokfp/steps/) is plumbing around one call: shorter still


def measure(roots: list[Path]) -> tuple[list[tuple[int, str]], list[tuple[int, str]]]:
    modules: list[tuple[int, str]] = []
    functions: list[tuple[int, str]] = []
    for root in roots:
        for path in sorted(root.rglob("*.py")):
            text = path.read_text(encoding="utf-8")
            modules.append((len(text.splitlines()), str(path)))
            for node in ast.walk(ast.parse(text)):
                if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                    length = (node.end_lineno or node.lineno) - node.lineno + 1
                    functions.append((length, f"{path}:{node.lineno} {node.name}"))
    return sorted(modules, reverse=True), sorted(functions, reverse=True)


def main(argv: list[str]) -> int:
    roots = [Path(arg) for arg in argv] or [Path("autokfp")]
    modules, functions = measure(roots)
    big_modules = [m for m in modules if m[0] > MODULE_LIMIT]
    long_functions = [f for f in functions if f[0] > FUNCTION_LIMIT]
    print(f"modules: {len(modules)}, functions: {len(functions)}")
    print(f"largest module:   {modules[0][0]:5d} lines  {modules[0][1]}")
    print(f"longest function: {functions[0][0]:5d} lines  {functions[0][1]}")
    print(f"modules over {MODULE_LIMIT} lines: {len(big_modules)}")
    for lines, name in big_modules:
        print(f"  {lines:5d}  {name}")
    print(f"functions over {FUNCTION_LIMIT} lines: {len(long_functions)}")
    for lines, name in long_functions:
        print(f"  {lines:5d}  {name}")
    long_steps = [f for f in functions if f[0] > STEP_LIMIT and "/steps/" in f[1]]
    print(f"step functions over {STEP_LIMIT} lines: {len(long_steps)}")
    for lines, name in long_steps:
        print(f"  {lines:5d}  {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
