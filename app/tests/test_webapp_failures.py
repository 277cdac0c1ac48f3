"""Outages of PostgreSQL and Blob storage: 503, and nothing half-written.

The outages are real: the app talks to both servers through TCP proxies that the tests
cut, at chosen points of the protocol exchange (for instance while the blob PUT is in
flight). The assertions read both servers directly.
"""

from __future__ import annotations

import io
import time
import uuid

import pytest

from webapp_testkit import blob_names


def upload(client, data: bytes, name: str, url: str = "/api/files"):
    return client.post(url, data={"file": (io.BytesIO(data), name)}, content_type="multipart/form-data")


class RequestLog:
    """Records the request lines the app sends to Azurite, and can act on one of them."""

    def __init__(self, proxy):
        self.lines: list[str] = []
        self.actions: list[tuple[str, object]] = []
        proxy.on_request = self

    def when(self, prefix: str, action) -> None:
        self.actions.append((prefix, action))

    def __call__(self, data: bytes) -> None:
        if data[:8].split(b" ")[0] not in (b"GET", b"PUT", b"DELETE", b"HEAD", b"POST"):
            return  # a body chunk, not the start of a request
        line = data.split(b"\r\n", 1)[0].decode("latin-1")
        self.lines.append(line)
        for prefix, action in list(self.actions):
            if line.startswith(prefix):
                self.actions.remove((prefix, action))
                action()

    def blob_requests(self, method: str, container: str) -> list[str]:
        return [
            line.split(" ")[1]
            for line in self.lines
            if line.startswith(f"{method} ") and f"/{container}/" in line and "restype=container" not in line
        ]


def key_of(path: str) -> str:
    return path.split("?")[0].rsplit("/", 1)[-1]


def test_database_outage_mid_upload_leaves_no_orphan_blob(app, client, env, blobs, sql, db_proxy, blob_proxy):
    log = RequestLog(blob_proxy)
    # The database goes away while the blob is being written: after the upload's first
    # database write, before its last.
    log.when("PUT ", db_proxy.cut)

    r = upload(client, b"bytes that must not be orphaned", "doomed.txt")

    assert r.status_code == 503
    assert r.headers["Retry-After"] == "5"
    assert "database" in r.get_json()["error"]
    assert db_proxy.is_cut
    # The blob really was written, and then deleted again by the failed request itself.
    (put,) = log.blob_requests("PUT", env.container)
    assert [key_of(d) for d in log.blob_requests("DELETE", env.container)] == [key_of(put)]
    assert blob_names(blobs) == []
    assert sql("SELECT count(*) FROM files") == [(0,)]
    # The database was down, so the upload's pending mark could not be cleared; it points
    # at no blob and is dropped by the next reaper run.
    assert sql("SELECT blob_key FROM pending_blobs") == [(key_of(put),)]

    db_proxy.restore()
    assert app.extensions["webapp"].files.reap(older_than_seconds=0) == 1
    assert sql("SELECT count(*) FROM pending_blobs") == [(0,)]
    # The pool recovers by itself once the database is back.
    ok = upload(client, b"after the outage", "fine.txt")
    assert ok.status_code == 201, ok.get_data(as_text=True)
    assert blob_names(blobs) == [uuid.UUID(ok.get_json()["id"]).hex]


def test_database_down_before_upload_writes_nothing(client, env, blobs, sql, db_proxy, blob_proxy):
    log = RequestLog(blob_proxy)
    db_proxy.cut()
    r = upload(client, b"payload", "a.txt")
    assert r.status_code == 503
    assert log.blob_requests("PUT", env.container) == []
    assert blob_names(blobs) == []
    db_proxy.restore()
    assert sql("SELECT count(*) FROM files") == [(0,)]
    assert sql("SELECT count(*) FROM pending_blobs") == [(0,)]


def test_storage_outage_mid_upload_writes_no_row(app, client, env, blobs, sql, blob_proxy):
    log = RequestLog(blob_proxy)
    log.when("PUT ", blob_proxy.cut)  # storage dies as the blob PUT starts (and its retries)

    r = upload(client, b"payload", "a.txt")

    assert r.status_code == 503
    assert "storage" in r.get_json()["error"]
    assert sql("SELECT count(*) FROM files") == [(0,)]
    # Storage was down, so the request could not check for a partial blob: the mark stays
    # until the reaper has made sure.
    ((key,),) = sql("SELECT blob_key FROM pending_blobs")
    blob_proxy.restore()
    assert app.extensions["webapp"].files.reap(older_than_seconds=0) == 1
    assert sql("SELECT count(*) FROM pending_blobs") == [(0,)]
    assert key not in blob_names(blobs)
    assert upload(client, b"payload", "b.txt").status_code == 201


def test_reads_answer_503_while_a_dependency_is_down(client, db_proxy, blob_proxy):
    meta = upload(client, b"content", "a.txt").get_json()

    db_proxy.cut()
    assert client.get("/api/files").status_code == 503
    assert client.get(f"/api/files/{meta['id']}").status_code == 503
    page = client.get("/")
    assert page.status_code == 503
    assert "database is unavailable" in page.get_data(as_text=True)
    assert client.get("/healthz").status_code == 200  # the process itself is fine
    db_proxy.restore()

    blob_proxy.cut()
    r = client.get(meta["download_url"])
    assert r.status_code == 503
    assert "storage" in r.get_json()["error"]
    blob_proxy.restore()
    assert client.get(meta["download_url"]).data == b"content"


def test_page_form_error_while_the_database_is_down(client, db_proxy):
    db_proxy.cut()
    # The 400 is still a 400 (not a 500) even though the page can't list the files.
    r = upload(client, b"", "empty.txt", url="/upload")
    assert r.status_code == 400
    assert "empty" in r.get_data(as_text=True)


def test_readiness_reports_each_dependency(client, db_proxy, blob_proxy):
    db_proxy.cut()
    r = client.get("/readyz")
    assert r.status_code == 503
    assert r.get_json()["checks"] == {"database": "unavailable", "storage": "ok"}
    db_proxy.restore()

    blob_proxy.cut()
    r = client.get("/readyz")
    assert r.status_code == 503
    assert r.get_json()["checks"] == {"database": "ok", "storage": "unavailable"}
    blob_proxy.restore()

    assert client.get("/readyz").status_code == 200


def test_delete_with_storage_down_changes_nothing(client, blobs, sql, blob_proxy):
    meta = upload(client, b"keep me", "keep.txt").get_json()
    blob_proxy.cut()
    r = client.delete(f"/api/files/{meta['id']}")
    assert r.status_code == 503
    assert sql("SELECT count(*) FROM files") == [(1,)]
    assert sql("SELECT count(*) FROM pending_blobs") == [(0,)]
    assert blob_names(blobs) == [uuid.UUID(meta["id"]).hex]
    blob_proxy.restore()
    assert client.delete(f"/api/files/{meta['id']}").status_code == 204
    assert blob_names(blobs) == []


def test_storage_failing_after_the_row_is_deleted_leaves_the_blob_to_the_reaper(
    app, client, env, blobs, sql, blob_proxy
):
    meta = upload(client, b"bytes", "x.txt").get_json()
    log = RequestLog(blob_proxy)
    log.when("DELETE ", blob_proxy.cut)  # storage passes the check, then dies on the delete

    r = client.delete(f"/api/files/{meta['id']}")

    # The file is gone for every reader; its bytes are recorded for the reaper.
    assert r.status_code == 204
    assert sql("SELECT count(*) FROM files") == [(0,)]
    key = uuid.UUID(meta["id"]).hex
    assert sql("SELECT blob_key FROM pending_blobs") == [(key,)]
    assert blob_names(blobs) == [key]
    blob_proxy.restore()
    assert app.extensions["webapp"].files.reap(older_than_seconds=0) == 1
    assert blob_names(blobs) == []
    assert sql("SELECT count(*) FROM pending_blobs") == [(0,)]


def test_reaper_leaves_recent_marks_alone(app, blobs, sql):
    blobs.upload_blob("inflight", b"an upload still being written")
    sql("INSERT INTO pending_blobs (blob_key) VALUES ('inflight')")
    assert app.extensions["webapp"].files.reap() == 0  # default grace: 15 minutes
    assert blob_names(blobs) == ["inflight"]
    assert sql("SELECT blob_key FROM pending_blobs") == [("inflight",)]


def test_background_reaper_deletes_abandoned_blobs(make_app, blobs, sql):
    make_app()  # schema and container, and no reaper yet
    blobs.upload_blob("abandoned", b"left by a crashed pod")
    blobs.upload_blob("inflight", b"an upload still being written")
    sql("INSERT INTO pending_blobs (blob_key, created_at) VALUES ('abandoned', now() - interval '1 hour')")
    sql("INSERT INTO pending_blobs (blob_key) VALUES ('inflight')")

    make_app(reap_interval=0.1)  # as a restarted pod would

    deadline = time.monotonic() + 10
    while "abandoned" in blob_names(blobs) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert blob_names(blobs) == ["inflight"]
    assert sql("SELECT blob_key FROM pending_blobs") == [("inflight",)]


def test_start_fails_clearly_when_a_dependency_is_unreachable(env, postgres, db_proxy, blob_proxy):
    from webapp import create_app
    from webapp.app import StartupError
    from webapp.settings import Settings

    db_proxy.cut()
    with pytest.raises(StartupError, match="database unavailable"):
        create_app(Settings.from_env(env.vars), reap_interval=None)
    db_proxy.restore()

    wrong_password = env.vars["DATABASE_URL"].replace(postgres.app_password, "wrong")
    with pytest.raises(StartupError, match="password authentication failed") as info:
        create_app(Settings.from_env({**env.vars, "DATABASE_URL": wrong_password}), reap_interval=None)
    assert "wrong" not in str(info.value)  # never echo a password

    blob_proxy.cut()
    with pytest.raises(StartupError, match="blob storage unavailable"):
        create_app(Settings.from_env(env.vars), reap_interval=None)
