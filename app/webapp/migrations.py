"""Schema migrations, applied at start, idempotently and safely from many processes at once.

Each migration runs once, recorded in ``schema_migrations``. All of them run in one
transaction under a transaction-scoped advisory lock, so gunicorn workers (and replicas)
starting together queue up instead of racing on CREATE TABLE; the later ones find every
version applied and do nothing.
"""

from __future__ import annotations

import logging

import psycopg

log = logging.getLogger(__name__)

# Any constant shared by every instance of this app: the key of the advisory lock.
_LOCK_KEY = 0x7765626170700001

# (version, description, SQL). Append only: never edit a migration that has shipped.
MIGRATIONS: list[tuple[int, str, str]] = [
    (
        1,
        "files and pending blobs",
        """
        CREATE TABLE files (
            id           uuid PRIMARY KEY,
            name         text NOT NULL CHECK (char_length(name) BETWEEN 1 AND 255),
            size         bigint NOT NULL CHECK (size > 0),
            content_type text NOT NULL,
            blob_key     text NOT NULL UNIQUE,
            uploaded_at  timestamptz NOT NULL DEFAULT now()
        );
        CREATE INDEX files_uploaded_at_idx ON files (uploaded_at DESC, id);

        -- Blobs that may exist without a files row: written before an upload's blob is
        -- stored and removed in the same transaction as the files insert; written in the
        -- same transaction as a files delete and removed once the blob is gone. Whatever
        -- is left after a crash or an outage is deleted by the reaper.
        CREATE TABLE pending_blobs (
            blob_key   text PRIMARY KEY,
            created_at timestamptz NOT NULL DEFAULT now()
        );
        """,
    ),
    (
        2,
        "idempotency keys of uploads",
        """
        -- The client's Idempotency-Key of the upload that created the file, if it sent one:
        -- a retry with the same key finds the file instead of storing a second copy.
        ALTER TABLE files ADD COLUMN idempotency_key text UNIQUE
            CHECK (char_length(idempotency_key) BETWEEN 1 AND 255);
        """,
    ),
]


def migrate(conn: psycopg.Connection) -> list[int]:
    """Apply every migration not yet recorded; return the versions applied by this call."""
    applied_now: list[int] = []
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
        conn.execute(
            """
            CREATE TABLE IF NOT EXISTS schema_migrations (
                version     integer PRIMARY KEY,
                description text NOT NULL,
                applied_at  timestamptz NOT NULL DEFAULT now()
            )
            """
        )
        done = {row[0] for row in conn.execute("SELECT version FROM schema_migrations")}
        for version, description, sql in MIGRATIONS:
            if version in done:
                continue
            log.info("applying migration %s: %s", version, description)
            conn.execute(sql)
            conn.execute("INSERT INTO schema_migrations (version, description) VALUES (%s, %s)", (version, description))
            applied_now.append(version)
    return applied_now
