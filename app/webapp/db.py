"""PostgreSQL access: bounded connections and the queries of the file service.

Every use of the database is bounded in time (see ``budget``): waiting for one of the
process's connections, connecting, and then the statements run on the connection. Hitting
any bound raises ``DatabaseUnavailable`` (503), never a wait of minutes.
"""

from __future__ import annotations

import logging
import math
import os
import random
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime

import psycopg
import psycopg.errors
from psycopg.conninfo import make_conninfo
from psycopg.rows import class_row

from . import budget
from .budget import BudgetSpent
from .migrations import migrate
from .settings import Settings

log = logging.getLogger(__name__)

# psycopg (like libpq) treats a connect_timeout under 2 s as 2 s and takes whole seconds. The
# app enforces its own, shorter limit around the connect; this is only the backstop that ends
# an attempt the app has already given up on.
_PSYCOPG_MIN_CONNECT_TIMEOUT = 2


class DatabaseUnavailable(Exception):
    """The database could not be reached, did not answer in time, or failed mid-operation.

    ``sent`` is False when nothing reached the server (no connection was made), so nothing
    was changed; True when statements may have been sent. ``outcome_unknown`` is set by the
    writes a client sees (recording an upload, deleting a file) when they fail after
    sending: the change may have been committed.
    """

    def __init__(self, message: str, *, sent: bool):
        super().__init__(message)
        self.sent = sent
        self.outcome_unknown = False


class DuplicateIdempotencyKey(Exception):
    """Another upload already recorded a file under this idempotency key."""


@dataclass(frozen=True)
class FileRecord:
    id: uuid.UUID
    name: str
    size: int
    content_type: str
    blob_key: str
    uploaded_at: datetime

    def __post_init__(self):
        # timestamptz arrives in the session's time zone, which is the server's setting:
        # always show and serialise UTC.
        object.__setattr__(self, "uploaded_at", self.uploaded_at.astimezone(UTC))


_FILE_COLUMNS = "id, name, size, content_type, blob_key, uploaded_at"


class _ConnectFailed(Exception):
    def __init__(self, message: str, *, retry: bool):
        super().__init__(message)
        self.retry = retry


class Database:
    """At most ``max_connections`` connections per process, each opened for one unit of work.

    No idle connections are kept: an outage fails a request at once with the server's own
    error, the first request after it succeeds, and every connection asks
    ``password_provider(timeout=seconds)`` again (the Entra token in Azure; it may wait that
    long for a token fetch in flight), so connections opened after a token refresh use the
    new token.

    This is not psycopg_pool: its NullConnectionPool (3.3) opens a connection while holding
    the pool's lock, so with the server hanging every waiting request adds a whole connect
    timeout to the next one's wait. Here a semaphore counts connections and each connect
    runs on its own, outside any lock.
    """

    def __init__(
        self,
        conninfo: str,
        *,
        password_provider: Callable[..., dict[str, str]] | None = None,
        max_connections: int = 10,
        slot_timeout: float = 5.0,
        connect_timeout: float = 3.0,
        query_timeout: float = 5.0,
        retries: int = 2,
        default_budget: float = 15.0,
    ):
        self._conninfo = make_conninfo(conninfo, application_name="webapp")
        self._password_provider = password_provider
        self._max_connections = max_connections
        self._limit = threading.BoundedSemaphore(max_connections)
        self._slot_timeout = slot_timeout
        self._connect_timeout = connect_timeout
        self._query_timeout = query_timeout
        self._retries = retries
        self._default_budget = default_budget
        # Connects run here, so a request can stop waiting for one at its deadline; a connect
        # it gave up on finishes (within psycopg's own timeout) and is closed. At most one per
        # connection slot, so none ever queues.
        self._connector = ThreadPoolExecutor(max_workers=max_connections, thread_name_prefix="pg-connect")

    @classmethod
    def from_settings(cls, settings: Settings, password_provider=None) -> Database:
        db = settings.database
        if db.entra:
            if password_provider is None:
                from .azure_auth import EntraTokenProvider, azure_credential

                password_provider = EntraTokenProvider(
                    azure_credential(settings), stale_after=settings.dependency_budget
                ).connection_kwargs
            conninfo = make_conninfo(host=db.host, port=db.port, dbname=db.dbname, user=db.user, sslmode=db.sslmode)
        else:
            conninfo = db.url
        return cls(
            conninfo,
            password_provider=password_provider,
            max_connections=settings.db_pool_max_size,
            slot_timeout=settings.db_pool_timeout,
            connect_timeout=settings.db_connect_timeout,
            query_timeout=settings.db_query_timeout,
            retries=settings.dependency_retries,
            default_budget=settings.dependency_budget,
        )

    def close(self) -> None:
        self._connector.shutdown(wait=False, cancel_futures=True)

    # --- connections -----------------------------------------------------------------------

    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection]:
        """A new autocommit connection for one unit of work, closed afterwards.

        Its use is bounded by DB_QUERY_TIMEOUT and the budget: a watchdog shuts the socket
        down when that runs out, which ends any wait on the server with an error. (The server
        can't be asked to cancel: a hung server does not read the request, and TCP keepalives
        do not help because a stopped process's kernel still acknowledges them.)
        """
        scope = budget.current(self._default_budget)
        conn = self._open(scope)
        try:
            try:
                limit = scope.cap(self._query_timeout)
            except BudgetSpent as exc:
                raise DatabaseUnavailable(str(exc), sent=False) from None
            watchdog = _Watchdog(conn.fileno(), limit)
            try:
                yield conn
            except psycopg.Error as exc:
                if watchdog.fired:
                    raise DatabaseUnavailable(f"no answer within {limit:.1f}s", sent=True) from exc
                if isinstance(exc, psycopg.OperationalError):
                    raise DatabaseUnavailable(_first_line(exc), sent=True) from exc
                raise
            finally:
                watchdog.disarm()
        finally:
            conn.close()
            self._limit.release()

    def _open(self, scope: budget.Scope) -> psycopg.Connection:
        """Connect, retrying connection failures within the budget; the result holds a slot."""
        attempt = 0
        while True:
            try:
                return self._attempt(scope)
            except BudgetSpent as exc:
                raise DatabaseUnavailable(str(exc), sent=False) from None
            except _ConnectFailed as exc:
                pause = _backoff(attempt)
                if not exc.retry or attempt >= self._retries or pause >= scope.remaining():
                    raise DatabaseUnavailable(str(exc), sent=False) from None
                log.info("database connect failed (%s); retrying in %.2fs", exc, pause)
                time.sleep(pause)
                attempt += 1

    def _attempt(self, scope: budget.Scope) -> psycopg.Connection:
        # The password (in Azure, the Entra token) first, on this thread: a token fetch in
        # flight is waited for at most what is left of the budget, never on a connector
        # thread with a budget of its own.
        kwargs = self._credentials(scope)
        wait = scope.cap(self._slot_timeout)
        if not self._limit.acquire(timeout=wait):
            raise _ConnectFailed(
                f"all {self._max_connections} database connections of this process stayed busy for {wait:.1f}s",
                retry=False,
            )
        try:
            wait = scope.cap(self._connect_timeout)
            future = self._connector.submit(self._connect, wait, kwargs)
        except BaseException:
            self._limit.release()
            raise
        try:
            return future.result(timeout=wait)
        except FutureTimeout:
            # The connect goes on in its thread: it keeps the slot until it ends, then closes.
            future.add_done_callback(self._discard)
            raise _ConnectFailed(f"no connection within {wait:.1f}s", retry=True) from None
        except psycopg.OperationalError as exc:
            self._limit.release()
            raise _ConnectFailed(_first_line(exc), retry=_worth_retrying(exc)) from None
        except BaseException:
            self._limit.release()
            raise

    def _credentials(self, scope: budget.Scope) -> dict[str, str]:
        if self._password_provider is None:
            return {}
        left = scope.cap(self._default_budget)
        try:
            return self._password_provider(timeout=left)
        except Exception as exc:
            from azure.core.exceptions import AzureError

            if isinstance(exc, AzureError):  # the Entra token could not be had in time
                raise _ConnectFailed(f"no Entra token: {_first_line(exc)}", retry=False) from None
            raise

    def _connect(self, timeout: float, kwargs: dict[str, str]) -> psycopg.Connection:
        backstop = max(_PSYCOPG_MIN_CONNECT_TIMEOUT, math.ceil(timeout))
        return psycopg.connect(self._conninfo, autocommit=True, connect_timeout=backstop, **kwargs)

    def _discard(self, future: Future) -> None:
        try:
            if future.exception() is None:
                future.result().close()
        finally:
            self._limit.release()

    def migrate(self) -> list[int]:
        with self.connection() as conn:
            return migrate(conn)

    def ping(self) -> None:
        with self.connection() as conn:
            conn.execute("SELECT 1")

    # --- files -----------------------------------------------------------------------------

    def list_files(self, limit: int, offset: int) -> tuple[list[FileRecord], int]:
        with self.connection() as conn, conn.transaction():
            # One snapshot for the page and the total, so they agree.
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            cur = conn.cursor(row_factory=class_row(FileRecord))
            files = cur.execute(
                f"SELECT {_FILE_COLUMNS} FROM files ORDER BY uploaded_at DESC, id LIMIT %s OFFSET %s",
                (limit, offset),
            ).fetchall()
            (total,) = conn.execute("SELECT count(*) FROM files").fetchone()
        return files, total

    def get_file(self, file_id: uuid.UUID) -> FileRecord | None:
        with self.connection() as conn:
            cur = conn.cursor(row_factory=class_row(FileRecord))
            return cur.execute(f"SELECT {_FILE_COLUMNS} FROM files WHERE id = %s", (file_id,)).fetchone()

    def get_file_by_idempotency_key(self, key: str) -> FileRecord | None:
        with self.connection() as conn:
            cur = conn.cursor(row_factory=class_row(FileRecord))
            return cur.execute(f"SELECT {_FILE_COLUMNS} FROM files WHERE idempotency_key = %s", (key,)).fetchone()

    def add_pending_blob(self, blob_key: str) -> None:
        with self.connection() as conn:
            conn.execute("INSERT INTO pending_blobs (blob_key) VALUES (%s)", (blob_key,))

    def remove_pending_blobs(self, blob_keys: list[str]) -> None:
        with self.connection() as conn:
            conn.execute("DELETE FROM pending_blobs WHERE blob_key = ANY(%s)", (blob_keys,))

    def insert_file(
        self,
        file_id: uuid.UUID,
        name: str,
        size: int,
        content_type: str,
        blob_key: str,
        idempotency_key: str | None = None,
    ) -> FileRecord:
        """Record an uploaded file and, in the same transaction, clear its pending mark."""
        try:
            with self.connection() as conn, conn.transaction():
                cur = conn.cursor(row_factory=class_row(FileRecord))
                record = cur.execute(
                    f"""INSERT INTO files (id, name, size, content_type, blob_key, idempotency_key)
                        VALUES (%s, %s, %s, %s, %s, %s) RETURNING {_FILE_COLUMNS}""",
                    (file_id, name, size, content_type, blob_key, idempotency_key),
                ).fetchone()
                conn.execute("DELETE FROM pending_blobs WHERE blob_key = %s", (blob_key,))
        except psycopg.errors.UniqueViolation as exc:
            if exc.diag.constraint_name == "files_idempotency_key_key":
                raise DuplicateIdempotencyKey(idempotency_key) from None
            raise
        except DatabaseUnavailable as exc:
            exc.outcome_unknown = exc.sent
            raise
        return record

    def delete_file(self, file_id: uuid.UUID) -> FileRecord | None:
        """Delete the row and mark its blob pending in one transaction; None if unknown."""
        try:
            with self.connection() as conn, conn.transaction():
                cur = conn.cursor(row_factory=class_row(FileRecord))
                record = cur.execute(
                    f"DELETE FROM files WHERE id = %s RETURNING {_FILE_COLUMNS}", (file_id,)
                ).fetchone()
                if record is not None:
                    conn.execute(
                        "INSERT INTO pending_blobs (blob_key) VALUES (%s) ON CONFLICT DO NOTHING", (record.blob_key,)
                    )
        except DatabaseUnavailable as exc:
            exc.outcome_unknown = exc.sent
            raise
        return record

    def abandoned_blobs(self, older_than_seconds: float, limit: int = 100) -> list[str]:
        """Keys of blobs marked pending for longer than ``older_than_seconds`` and in no file.

        Marks of blobs that a file row references are dropped here (nothing to delete).
        Younger marks are left alone: they may belong to uploads still in flight, which
        end within their time budget, and the grace is longer than that.
        """
        with self.connection() as conn, conn.transaction():
            conn.execute(
                """DELETE FROM pending_blobs p USING files f
                   WHERE p.blob_key = f.blob_key AND p.created_at < now() - make_interval(secs => %s)""",
                (older_than_seconds,),
            )
            rows = conn.execute(
                """SELECT blob_key FROM pending_blobs
                   WHERE created_at < now() - make_interval(secs => %s)
                   ORDER BY created_at LIMIT %s""",
                (older_than_seconds, limit),
            ).fetchall()
        return [row[0] for row in rows]


class _Watchdog:
    """Shuts a connection's socket down if it is still in use after ``seconds``.

    shutdown() wakes the thread waiting on the socket with end-of-file, so psycopg raises at
    once. The lock and the armed flag make sure the socket is never touched after the
    connection is done with it (its descriptor number could belong to another socket by then).
    """

    def __init__(self, fd: int, seconds: float):
        self._fd = fd
        self._lock = threading.Lock()
        self._armed = True
        self.fired = False
        self._timer = threading.Timer(seconds, self._fire)
        self._timer.daemon = True
        self._timer.start()

    def _fire(self) -> None:
        with self._lock:
            if not self._armed:
                return
            self.fired = True
            try:
                with socket.socket(fileno=os.dup(self._fd)) as sock:
                    sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def disarm(self) -> None:
        with self._lock:
            self._armed = False
        self._timer.cancel()


def _backoff(attempt: int) -> float:
    """0.1 s, 0.2 s, 0.4 s ... with jitter, so retries from many requests spread out."""
    return min(2.0, 0.1 * 2**attempt) * random.uniform(0.75, 1.25)


def _worth_retrying(exc: psycopg.OperationalError) -> bool:
    # No SQLSTATE: the server could not be reached or hung up. Class 08 is "connection
    # exception", 57P03 "the database system is starting up". Wrong password (28P01) or an
    # unknown database (3D000) will not change within a request.
    state = exc.sqlstate
    return state is None or state.startswith("08") or state == "57P03"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
