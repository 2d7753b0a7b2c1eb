"""conftest's layout of the collection for ``make test`` (``-n 2 --dist worksteal``): each
worker's share starts with its part of the slow modules, and the modules that need a package
trained once per run (``built_once``) start the first worker's share and end the others', so
that no worker waits idle on the lock while another trains it."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from tests.conftest import SLOW_MODULE_SECONDS, pytest_collection_modifyitems


class _Item:
    def __init__(self, module: str, slow: bool, fixtures: tuple[str, ...] = (),
                 scopes: dict[str, str] | None = None):
        self.nodeid = f"{module}::test_{id(self)}"
        self.module = module
        self.slow = slow
        self.fixturenames = ["tmp_path", *fixtures]
        # what pytest's item holds: each fixture's definitions (their scope)
        scopes = {"tmp_path": "function", **(scopes or {})}
        self._fixtureinfo = SimpleNamespace(name2fixturedefs={
            name: [SimpleNamespace(scope=scope)] for name, scope in scopes.items()})

    def get_closest_marker(self, name: str):
        return object() if name == "slow" and self.slow else None


def _layout(items: list[_Item], monkeypatch, workers: int = 2, dist: str = "worksteal"):
    monkeypatch.setenv("PYTEST_XDIST_WORKER_COUNT", str(workers))
    config = SimpleNamespace(workerinput={"autokfp_dist": dist})
    pytest_collection_modifyitems(config, items)
    return items


def _slow_modules(share: list[_Item]) -> list[str]:
    found: list[str] = []
    for item in share:
        if item.slow and item.module not in found:
            found.append(item.module)
    return found


def test_the_first_worker_builds_the_shared_packages_and_the_second_comes_to_them_last(
        monkeypatch) -> None:
    uses_package = ("tests/serving/test_deployment.py",
                    "tests/engine/training/test_refit_for_serving.py",
                    "tests/faults/test_killed_deploy.py")
    own_runs = ("tests/pipelines/test_monitoring_pipeline.py",
                "tests/pipelines/test_local_training_pipeline.py",
                "tests/faults/test_killed_train.py",
                "tests/cli/test_registry_snippet.py")
    items = [_Item(m, True, ("trained_package",)) for m in uses_package]
    items += [_Item(m, True) for m in own_runs]
    items += [_Item(f"tests/engine/test_quick_{i}.py", False) for i in range(40)]
    items += [_Item("tests/engine/test_selection.py", True, ("keras_package",))]
    laid = _layout(list(items), monkeypatch)
    assert sorted(map(id, laid)) == sorted(map(id, items))  # nothing dropped or added
    half = len(laid) // 2
    first, second = _slow_modules(laid[:half]), _slow_modules(laid[half:])
    assert set(first) | set(second) == set(uses_package) | set(own_runs) | {
        "tests/engine/test_selection.py"}
    # each share starts with its slow modules, then quick tests
    for share in (laid[:half], laid[half:]):
        slow = [item.slow for item in share]
        assert slow == sorted(slow, reverse=True)

    def uses(module: str) -> bool:
        return module in uses_package or module == "tests/engine/test_selection.py"

    # the first worker: the package users first; the second: its own runs first
    assert [uses(m) for m in first] == sorted((uses(m) for m in first), reverse=True)
    assert [uses(m) for m in second] == sorted(uses(m) for m in second)
    assert not uses(second[0]) and any(uses(m) for m in second)

    # the seconds of the two slow parts differ by at most the largest module's
    def seconds(modules: list[str]) -> float:
        return sum(SLOW_MODULE_SECONDS.get(m, 60.0) for m in modules)

    assert abs(seconds(first) - seconds(second)) <= max(map(seconds, ([m] for m in first + second)))


@pytest.mark.parametrize("workers, dist", [(0, "worksteal"), (2, "load")])
def test_nothing_is_reordered_outside_worksteal(monkeypatch, workers, dist) -> None:
    items = [_Item("tests/a.py", False), _Item("tests/b.py", True, ("trained_package",)),
             _Item("tests/c.py", True)]
    before = list(items)
    assert _layout(items, monkeypatch, workers, dist) == before


def test_a_modules_shared_fixtures_are_set_up_once_and_the_shares_end_on_plain_tests(
        monkeypatch) -> None:
    """A slow module's quick tests follow its slow ones; a module of quick tests sharing a
    module (class, package) fixture stays whole, before the quick tests that share none;
    each share ends on those, the ones worksteal's steals take (a module split there sets
    nothing up twice). In CI (session 20) the serving modules came last and were split:
    the hostile requests' module predictor started three times."""
    server = {"server": "module"}
    items = [_Item("tests/a_plain.py", False) for _ in range(30)]
    items += [_Item("tests/b_mixed.py", False, ("compiled",), {"compiled": "module"})
              for _ in range(3)]
    items += [_Item("tests/b_mixed.py", True, ("compiled",), {"compiled": "module"})]
    items += [_Item("tests/c_slow.py", True) for _ in range(2)]
    items += [_Item("tests/d_plain.py", False) for _ in range(30)]
    items += [_Item("tests/serving/e_server.py", False, ("server",), server) for _ in range(12)]
    items += [_Item("tests/serving/f_class.py", False, ("app",), {"app": "class"})
              for _ in range(8)]
    items += [_Item("tests/z_plain.py", False, (), {"faker": "session"}) for _ in range(30)]
    laid = _layout(list(items), monkeypatch)
    assert sorted(map(id, laid)) == sorted(map(id, items))  # nothing dropped or added

    # every module with a shared fixture is one block, on one worker
    half = len(laid) // 2
    for module in ("tests/b_mixed.py", "tests/serving/e_server.py", "tests/serving/f_class.py"):
        where = [i for i, item in enumerate(laid) if item.module == module]
        assert where == list(range(where[0], where[0] + len(where))), module
        assert (where[0] < half) == (where[-1] < half), module
    # the mixed module: its slow test first, its quick tests right after
    mixed = [item.slow for item in laid if item.module == "tests/b_mixed.py"]
    assert mixed == [True, False, False, False]
    # each share: its slow modules, then the grouped quick modules, then plain tests only
    grouped = {"tests/b_mixed.py", "tests/serving/e_server.py", "tests/serving/f_class.py"}
    for share in (laid[:half], laid[half:]):
        kinds = [0 if item.slow or item.module == "tests/b_mixed.py" else
                 1 if item.module in grouped else 2 for item in share]
        assert kinds == sorted(kinds), kinds
        assert kinds[-1] == 2
