"""Shared fixtures: fresh mocks per test, the stack files, and the upstream data."""

from __future__ import annotations

import copy
import sys
from pathlib import Path
from typing import Any, Callable

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from offline.evaluate import Evaluation, evaluate, stack_config  # noqa: E402
from stacks import build  # noqa: E402
from stacks.validation import from_pulumi  # noqa: E402

UPSTREAM = ROOT.parent / "shared" / "upstream"


def pytest_collection_finish(session):
    # Pulumi's SDK allocates many short-lived objects per evaluation; freezing the long-lived
    # ones (modules, collected tests) keeps the cyclic collector from rescanning them, and a
    # larger young generation (10^4 instead of 700 allocations) lets an evaluation's objects
    # die before a collection visits them: ~15% less CPU on evaluation-heavy files.
    import gc

    gc.collect()
    gc.freeze()
    gc.set_threshold(10_000, 10, 10)


def pytest_xdist_make_scheduler(config, log):
    """Under xdist's default `--dist load`, the tests of one file of tests/ run on one worker, so
    what a file caches for its tests (test_plan.py's plans, the `shipped` evaluations it reads,
    parsed upstream CRDs) is built once rather than once per worker; anything else (app/tests)
    is still spread test by test. (`--dist loadgroup` would do it by marks, but xdist 3.8 sets
    the group on a node attribute pytest 9 no longer reads.) Another `--dist` is left alone."""
    if config.getvalue("dist") != "load":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class TestsByFile(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return nodeid.split("::", 1)[0] if nodeid.startswith("tests/") else nodeid

    return TestsByFile(config, log)


def run_program(config: dict[str, Any], secret_keys=(), preview: bool = False, stack: str = "test") -> Evaluation:
    """Evaluate the real program (config -> validated StackConfig -> build) under fresh mocks."""
    return evaluate(lambda: build(from_pulumi()), config=config, secret_keys=secret_keys, preview=preview, stack=stack)


@pytest.fixture
def stack_file() -> Callable[[str], tuple[dict[str, Any], list[str]]]:
    """A deep copy of a shipped stack's config, to evaluate as is or to modify."""

    def load(stack: str) -> tuple[dict[str, Any], list[str]]:
        config, secret = stack_config(stack)
        return copy.deepcopy(config), list(secret)

    return load


@pytest.fixture
def upstream() -> Path:
    if not UPSTREAM.is_dir():
        pytest.skip("../shared/upstream is not present (a user's clone): upstream conformance is checked in CI")
    return UPSTREAM


_SHIPPED_CACHE: dict[tuple[str, bool], Evaluation] = {}


@pytest.fixture
def shipped():
    """Evaluate a shipped stack once per session and mode, for tests that only read the result.

    Each evaluation itself runs under fresh mocks; tests that change config call run_program.
    """

    def get(stack: str, preview: bool = False) -> Evaluation:
        key = (stack, preview)
        if key not in _SHIPPED_CACHE:
            config, secret = stack_config(stack)
            _SHIPPED_CACHE[key] = run_program(copy.deepcopy(config), list(secret), preview=preview, stack=stack)
        return _SHIPPED_CACHE[key]

    return get
