"""Time budgets and slots for the calls a unit of work makes to PostgreSQL and Blob storage.

A unit of work (a request, a reaper run, a start-up attempt, a readiness check) gets one
``Scope``. Its budget starts at its first call to either dependency and is shared by all of
them, retries included: each attempt's timeouts are capped by what is left, and once nothing
is left the call fails (the request answers 503). Because every wait is bounded, a hung
dependency holds a thread for at most the budget, never minutes.

A request's scope also takes one of its process's *dependency slots* at that first call,
without waiting. There is one slot less than gunicorn has threads, so however long the
dependencies take, one thread per worker is never waiting on them: a request that finds no
free slot is refused at once (``Busy``, 503) instead of queueing behind the ones that are
stuck, and requests that need no slot (static files, ``/readyz``, whose checks run on
threads of their own) still run.

Slots say nothing about slow *clients*: gunicorn's gthread worker reads request bodies and
writes responses on the same threads, so clients trickling uploads can hold every one of
them. That is why liveness is not answered here but by gunicorn's master on a port of its
own (``gunicorn.conf.py``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar


class Busy(Exception):
    """Every dependency slot of this process is taken: answer 503 now rather than queue."""


class BudgetSpent(Exception):
    """The unit of work has no time left for another call to a dependency."""


class Slots:
    """A process's dependency slots: taken without waiting, and counted for /readyz."""

    def __init__(self, total: int):
        self.total = total
        self._lock = threading.Lock()
        self._in_use = 0

    @property
    def in_use(self) -> int:
        return self._in_use

    def acquire(self, blocking: bool = False) -> bool:
        assert not blocking, "slots are never waited for"
        with self._lock:
            if self._in_use >= self.total:
                return False
            self._in_use += 1
            return True

    def release(self) -> None:
        with self._lock:
            if self._in_use <= 0:
                raise ValueError("released more dependency slots than were taken")
            self._in_use -= 1


class Scope:
    """One unit of work's time budget (and, for requests, its dependency slot)."""

    def __init__(self, seconds: float, slots: Slots | None = None, *, clock=time.monotonic):
        self.seconds = seconds
        self._slots = slots
        self._clock = clock
        self._deadline: float | None = None
        self._holds_slot = False

    def start(self) -> None:
        """Called before each call to a dependency; the first one starts the clock."""
        if self._deadline is not None:
            return
        if self._slots is not None:
            if not self._slots.acquire(blocking=False):
                raise Busy("every dependency slot of this process is taken")
            self._holds_slot = True
        self._deadline = self._clock() + self.seconds

    def remaining(self) -> float:
        self.start()
        return max(0.0, self._deadline - self._clock())

    def cap(self, timeout: float) -> float:
        """``timeout`` shortened to what is left of the budget; BudgetSpent if nothing is."""
        left = self.remaining()
        if left <= 0:
            raise BudgetSpent(f"the {self.seconds:g}s budget for the database and storage is spent")
        return min(timeout, left)

    def release(self) -> None:
        if self._holds_slot:
            self._holds_slot = False
            self._slots.release()


_current: ContextVar[Scope | None] = ContextVar("webapp_dependency_scope", default=None)


def current(default_seconds: float) -> Scope:
    """The active scope, or a fresh one for a call made outside any unit of work."""
    scope = _current.get()
    return scope if scope is not None else Scope(default_seconds)


@contextmanager
def scope(seconds: float, slots: Slots | None = None) -> Iterator[Scope]:
    """Run a unit of work under its own budget."""
    s = Scope(seconds, slots)
    token = _current.set(s)
    try:
        yield s
    finally:
        _current.reset(token)
        s.release()


def activate(s: Scope) -> object:
    """For frameworks whose start and end hooks are separate calls (Flask's request hooks)."""
    return _current.set(s)


def deactivate(token: object) -> None:
    s = _current.get()
    _current.reset(token)
    if s is not None:
        s.release()
