"""Outages of PostgreSQL and Blob storage: 503, and nothing half-written.

The outages are real: the app talks to both servers through TCP proxies that the tests
cut, at chosen points of the protocol exchange (for instance while the blob PUT is in
flight). The assertions read both servers directly.
"""

from __future__ import annotations

import io
import time
import uuid

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
    # The input is refused before the database is needed (not a 500), and the page's form
    # gets its redirect; the page it leads to then says the database is down.
    r = upload(client, b"", "empty.txt", url="/upload")
    assert (r.status_code, r.headers["Location"]) == (303, "/?error=empty")
    page = client.get(r.headers["Location"])
    assert page.status_code == 503
    assert "database is unavailable" in page.get_data(as_text=True)
    # A form post that needs the database redirects to the page with the reason.
    r = upload(client, b"data", "a.txt", url="/upload")
    assert (r.status_code, r.headers["Location"]) == (303, "/?error=database")


def test_readiness_reports_each_dependency(client, db_proxy, blob_proxy):
    db_proxy.cut()
    r = client.get("/readyz")
    assert r.status_code == 503
    assert r.get_json()["checks"] == {"database": "unavailable", "storage": "ok", "schema": "ok"}
    db_proxy.restore()

    blob_proxy.cut()
    r = client.get("/readyz")
    assert r.status_code == 503
    assert r.get_json()["checks"] == {"database": "ok", "storage": "unavailable", "schema": "ok"}
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


def test_background_reaper_runs_on_its_interval_and_respects_its_grace(make_app, blobs, sql):
    """REAP_INTERVAL and REAP_GRACE are settings: with short ones the cleanup is seen working."""
    make_app()  # schema and container, and no reaper yet
    blobs.upload_blob("abandoned", b"left by a crashed pod")
    sql("INSERT INTO pending_blobs (blob_key, created_at) VALUES ('abandoned', now() - interval '1 hour')")

    # As a restarted pod would: the first run comes at once.
    make_app(REAP_INTERVAL="0.1", REAP_GRACE="1", DEPENDENCY_BUDGET="0.5")
    deadline = time.monotonic() + 10
    while sql("SELECT count(*) FROM pending_blobs") != [(0,)] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert sql("SELECT count(*) FROM pending_blobs") == [(0,)]
    assert blob_names(blobs) == []  # the blob goes first, then its mark

    # A fresh mark (an upload in flight) survives the runs inside its grace, then goes.
    blobs.upload_blob("inflight", b"an upload still being written")
    sql("INSERT INTO pending_blobs (blob_key) VALUES ('inflight')")
    marked = time.monotonic()
    time.sleep(0.4)  # several runs
    assert blob_names(blobs) == ["inflight"]
    while sql("SELECT count(*) FROM pending_blobs") != [(0,)] and time.monotonic() < marked + 10:
        time.sleep(0.05)
    assert 1.0 <= time.monotonic() - marked < 10
    assert blob_names(blobs) == []


def test_a_process_starts_whatever_state_its_dependencies_are_in(make_app, postgres, db_proxy, blob_proxy, caplog):
    """Start-up work waits in the background: the process answers at once, says why it is not
    ready, and gets ready by itself when the dependency is back (no restart)."""
    db_proxy.cut()
    started = time.monotonic()
    app = make_app(wait=False)
    assert time.monotonic() - started < 1
    client = app.test_client()
    assert client.get("/healthz").status_code == 200
    ready = client.get("/readyz")
    assert ready.status_code == 503
    assert ready.get_json()["checks"] == {"database": "unavailable", "storage": "ok", "schema": "pending"}
    starting = client.get("/api/files")
    assert starting.status_code == 503 and "starting" in starting.get_json()["error"]
    db_proxy.restore()
    assert app.extensions["webapp"].wait_prepared(10)
    assert client.get("/readyz").status_code == 200

    # A wrong password: the server's own message in the log (never the password), and retries.
    wrong = make_app(wait=False, DATABASE_URL=make_app_url_with_password(postgres, db_proxy, "wr0ng-pw"))
    deadline = time.monotonic() + 10
    while "password authentication failed" not in caplog.text and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "password authentication failed" in caplog.text
    assert "wr0ng-pw" not in caplog.text
    assert wrong.test_client().get("/readyz").get_json()["checks"]["schema"] == "pending"

    # Storage down at start: the schema is ready, readiness reports storage, and the first
    # upload once it is back creates the container.
    blob_proxy.cut()
    app = make_app()
    assert client.get("/healthz").status_code == 200
    assert app.test_client().get("/readyz").get_json()["checks"]["storage"] == "unavailable"
    blob_proxy.restore()
    assert upload(app.test_client(), b"late", "late.txt").status_code == 201


def make_app_url_with_password(postgres, db_proxy, password: str) -> str:
    return postgres.url(postgres.APP_DB, port=db_proxy.port, password=password)


def test_readiness_stays_ready_while_slow_uploads_hold_every_slot(make_app, blob_proxy):
    """Every dependency slot taken by healthy but slow uploads is load, not a fault: the pod
    stays in the Service (the body says how busy it is), and the uploads finish."""
    import threading

    app = make_app(DEPENDENCY_SLOTS="2")
    release, writing = threading.Event(), threading.Semaphore(0)

    def hold_blob_writes(data: bytes) -> None:
        if data.startswith(b"PUT ") and b"restype=container" not in data.split(b"\r\n", 1)[0]:
            writing.release()
            release.wait(10)  # storage is slow to take the bytes, not failing

    blob_proxy.on_request = hold_blob_writes
    results: list = []
    uploads = [
        threading.Thread(target=lambda i=i: results.append(upload(app.test_client(), b"slow", f"s{i}.txt").status_code))
        for i in range(2)
    ]
    for t in uploads:
        t.start()
    try:
        assert writing.acquire(timeout=5) and writing.acquire(timeout=5)  # both slots are in use
        client = app.test_client()
        assert upload(client, b"one more", "c.txt").status_code == 503  # refused at once: busy
        ready = client.get("/readyz")
        assert ready.status_code == 200, ready.get_json()
        assert ready.get_json() == {
            "status": "ready",
            "checks": {"database": "ok", "storage": "ok", "schema": "ok"},
            "slots": {"in_use": 2, "total": 2},
        }
    finally:
        release.set()
        for t in uploads:
            t.join(10)
    assert results == [201, 201]


def test_a_write_whose_outcome_is_unknown_says_so(make_app, postgres, env, sql):
    """A write that reached the database, which then gave no answer, may have committed: the
    page and the API say "may have been", never "nothing was changed"."""
    import re

    app = make_app(DB_QUERY_TIMEOUT="0.3")
    client = app.test_client()
    kept = upload(client, b"keep", "keep.txt").get_json()
    with postgres.admin(postgres.APP_DB, schema=env.schema) as conn, conn.transaction():
        conn.execute("LOCK TABLE files IN SHARE MODE")  # reads go on, writes wait: no answer in time
        form_upload = upload(client, b"data", "a.txt", url="/upload")
        api_upload = upload(client, b"data", "b.txt")
        form_delete = client.post(f"/files/{kept['id']}/delete")
        api_delete = client.delete(f"/api/files/{kept['id']}")

    def page_error(location: str) -> str:
        html = client.get(location).get_data(as_text=True)
        return re.search(r'<p id="error"[^>]*>([^<]*)</p>', html).group(1)

    assert (form_upload.status_code, form_upload.headers["Location"]) == (303, "/?error=upload-unknown")
    assert "it may have been stored" in page_error(form_upload.headers["Location"])
    assert api_upload.status_code == 503 and "may have been stored" in api_upload.get_json()["error"]
    assert (form_delete.status_code, form_delete.headers["Location"]) == (303, "/?error=delete-unknown")
    assert "it may have been deleted" in page_error(form_delete.headers["Location"])
    assert api_delete.status_code == 503 and "may have been deleted" in api_delete.get_json()["error"]
    for r in (api_upload, api_delete):
        assert "nothing was changed" not in r.get_json()["error"]
    # Here the lock kept every write out; the file is still listed, the uploads were not.
    assert sql("SELECT name FROM files") == [("keep.txt",)]
