"""PostgreSQL access: a connection pool and the queries of the file service."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime

import psycopg
import psycopg_pool
from psycopg.conninfo import make_conninfo
from psycopg.rows import class_row

from .migrations import migrate
from .settings import Settings

log = logging.getLogger(__name__)

# Errors that mean "the database is not usable right now" rather than a bug in a query.
UNAVAILABLE_ERRORS: tuple[type[BaseException], ...] = (psycopg.OperationalError, psycopg_pool.PoolTimeout)


class DatabaseUnavailable(Exception):
    """The database could not be reached or failed mid-operation."""


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


class Database:
    """A bounded connection pool plus the handful of statements the app needs.

    ``password_provider``, when given, is called for every new connection (the Entra token
    in Azure), so connections opened after a token refresh use the new token.
    """

    def __init__(
        self,
        conninfo: str,
        *,
        password_provider: Callable[[], dict[str, str]] | None = None,
        pool_timeout: float = 5.0,
        max_size: int = 10,
        connect_timeout: int = 5,
    ):
        self._pool_timeout = pool_timeout
        self._conninfo = make_conninfo(conninfo, connect_timeout=connect_timeout, application_name="webapp")
        self._password_provider = password_provider
        # A pool that keeps no idle connections: each request opens its own, at most
        # max_size at a time per process. An outage then fails a request at once with the
        # server's own error, and the first request after the outage succeeds, where an
        # idle-keeping pool hands out dead connections and reconnects on a back-off timer.
        # Each new connection also asks password_provider again (the Entra token).
        self.pool = psycopg_pool.NullConnectionPool(
            self._conninfo,
            kwargs=password_provider,
            max_size=max_size,
            timeout=pool_timeout,
            open=False,
            name="webapp",
        )

    @classmethod
    def from_settings(cls, settings: Settings, password_provider=None) -> Database:
        db = settings.database
        if db.entra:
            if password_provider is None:
                from .azure_auth import EntraTokenProvider, azure_credential

                password_provider = EntraTokenProvider(azure_credential()).connection_kwargs
            conninfo = make_conninfo(host=db.host, port=db.port, dbname=db.dbname, user=db.user, sslmode=db.sslmode)
        else:
            conninfo = db.url
        return cls(
            conninfo,
            password_provider=password_provider,
            pool_timeout=settings.db_pool_timeout,
            max_size=settings.db_pool_max_size,
        )

    def open(self) -> None:
        self.pool.open(wait=False)

    def close(self) -> None:
        self.pool.close()

    @contextmanager
    def connection(self, timeout: float | None = None) -> Iterator[psycopg.Connection]:
        """A pooled connection; connectivity failures become DatabaseUnavailable."""
        try:
            with self.pool.connection(timeout=timeout) as conn:
                yield conn
        except UNAVAILABLE_ERRORS as exc:
            raise DatabaseUnavailable(str(exc)) from exc

    def connect(self) -> psycopg.Connection:
        """A connection outside the pool, for start-up: a failure carries the server's own
        message (bad password, unknown database) instead of the pool's generic timeout."""
        kwargs = self._password_provider() if self._password_provider else {}
        try:
            return psycopg.connect(self._conninfo, autocommit=True, **kwargs)
        except psycopg.OperationalError as exc:
            raise DatabaseUnavailable(str(exc).strip()) from exc

    def migrate(self) -> list[int]:
        with self.connect() as conn:
            try:
                return migrate(conn)
            except UNAVAILABLE_ERRORS as exc:
                raise DatabaseUnavailable(str(exc).strip()) from exc

    def ping(self, timeout: float) -> None:
        with self.connection(timeout=min(timeout, self._pool_timeout)) as conn:
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

    def add_pending_blob(self, blob_key: str) -> None:
        with self.connection() as conn:
            conn.execute("INSERT INTO pending_blobs (blob_key) VALUES (%s)", (blob_key,))

    def remove_pending_blob(self, blob_key: str) -> None:
        with self.connection() as conn:
            conn.execute("DELETE FROM pending_blobs WHERE blob_key = %s", (blob_key,))

    def insert_file(self, file_id: uuid.UUID, name: str, size: int, content_type: str, blob_key: str) -> FileRecord:
        """Record an uploaded file and, in the same transaction, clear its pending mark."""
        with self.connection() as conn, conn.transaction():
            cur = conn.cursor(row_factory=class_row(FileRecord))
            record = cur.execute(
                f"""INSERT INTO files (id, name, size, content_type, blob_key) VALUES (%s, %s, %s, %s, %s)
                    RETURNING {_FILE_COLUMNS}""",
                (file_id, name, size, content_type, blob_key),
            ).fetchone()
            conn.execute("DELETE FROM pending_blobs WHERE blob_key = %s", (blob_key,))
        return record

    def delete_file(self, file_id: uuid.UUID) -> FileRecord | None:
        """Delete the row and mark its blob pending in one transaction; None if unknown."""
        with self.connection() as conn, conn.transaction():
            cur = conn.cursor(row_factory=class_row(FileRecord))
            record = cur.execute(f"DELETE FROM files WHERE id = %s RETURNING {_FILE_COLUMNS}", (file_id,)).fetchone()
            if record is not None:
                conn.execute(
                    "INSERT INTO pending_blobs (blob_key) VALUES (%s) ON CONFLICT DO NOTHING", (record.blob_key,)
                )
        return record

    def reap_pending_blobs(
        self, delete_blob: Callable[[str], bool], older_than_seconds: float, limit: int = 100
    ) -> int:
        """Delete abandoned blobs recorded in pending_blobs; return how many were reaped.

        Only marks older than ``older_than_seconds`` are touched, so an upload still in
        flight keeps its blob. Marks of blobs that a file row references are dropped without
        deleting anything. ``delete_blob`` returns False when storage fails; that mark stays
        for the next run. SKIP LOCKED lets several processes reap at the same time.
        """
        with self.connection() as conn, conn.transaction():
            conn.execute(
                """DELETE FROM pending_blobs p USING files f
                   WHERE p.blob_key = f.blob_key AND p.created_at < now() - make_interval(secs => %s)""",
                (older_than_seconds,),
            )
            keys = [
                row[0]
                for row in conn.execute(
                    """SELECT blob_key FROM pending_blobs
                       WHERE created_at < now() - make_interval(secs => %s)
                       ORDER BY created_at LIMIT %s FOR UPDATE SKIP LOCKED""",
                    (older_than_seconds, limit),
                )
            ]
            reaped = 0
            for key in keys:
                if not delete_blob(key):
                    break  # storage is failing: keep the rest for the next run
                conn.execute("DELETE FROM pending_blobs WHERE blob_key = %s", (key,))
                reaped += 1
        return reaped
