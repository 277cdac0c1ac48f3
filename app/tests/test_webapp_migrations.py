"""The schema migration: runs at every start, idempotent, safe when many processes start at once."""

from __future__ import annotations

import io
import threading

import pytest


def test_restart_is_idempotent_and_keeps_data(make_app, sql):
    first = make_app().test_client()
    meta = first.post(
        "/api/files", data={"file": (io.BytesIO(b"persisted"), "p.txt")}, content_type="multipart/form-data"
    ).get_json()
    tables_before = sql("SELECT tablename FROM pg_tables WHERE schemaname = current_schema() ORDER BY 1")
    assert tables_before == [("files",), ("pending_blobs",), ("schema_migrations",)]

    # Two more starts against the same database and container, as after pod restarts.
    second = make_app().test_client()
    third = make_app()

    assert third.extensions["webapp"].files.db.migrate() == []  # nothing left to apply
    assert sql("SELECT version, description FROM schema_migrations ORDER BY 1") == [
        (1, "files and pending blobs"),
        (2, "idempotency keys of uploads"),
    ]
    assert sql("SELECT tablename FROM pg_tables WHERE schemaname = current_schema() ORDER BY 1") == tables_before
    assert second.get("/api/files").get_json()["files"] == [meta]
    assert third.test_client().get(meta["download_url"]).data == b"persisted"


def test_concurrent_starts_apply_each_migration_once(env, make_app, sql):
    from webapp.db import Database
    from webapp.settings import Settings

    settings = Settings.from_env(env.vars)
    dbs = [Database.from_settings(settings) for _ in range(6)]
    barrier = threading.Barrier(len(dbs))
    results: list[list[int]] = []
    errors: list[BaseException] = []

    def start(db: Database) -> None:
        try:
            barrier.wait(5)
            results.append(db.migrate())
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=start, args=(db,)) for db in dbs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    for db in dbs:
        db.close()

    assert errors == []
    # Without the advisory lock, several would race on CREATE TABLE and fail.
    assert sorted(results) == [[], [], [], [], [], [1, 2]]
    assert sql("SELECT version FROM schema_migrations ORDER BY 1") == [(1,), (2,)]
    assert make_app().test_client().get("/readyz").status_code == 200


def test_a_failing_migration_applies_nothing(env, make_app, sql, monkeypatch):
    import psycopg.errors

    from webapp import migrations

    make_app()
    broken = (len(migrations.MIGRATIONS) + 1, "broken on purpose", "CREATE TABLE half_done (x int); SELECT 1 / 0;")
    monkeypatch.setattr(migrations, "MIGRATIONS", [*migrations.MIGRATIONS, broken])
    # A broken migration is a bug, not an outage: the start-up work stops with its own error
    # (no retries), and the process stays unready.
    broken_app = make_app(wait=False)
    with pytest.raises(psycopg.errors.DivisionByZero):
        broken_app.extensions["webapp"].wait_prepared(15)
    ready = broken_app.test_client().get("/readyz")
    assert ready.status_code == 503 and ready.get_json()["checks"]["schema"] == "failed"
    assert sql("SELECT version FROM schema_migrations ORDER BY 1") == [(1,), (2,)]
    assert sql("SELECT to_regclass('half_done')") == [(None,)]
    monkeypatch.undo()
    assert make_app().test_client().get("/readyz").status_code == 200
