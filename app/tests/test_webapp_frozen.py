"""Hung dependencies: the real Azurite and PostgreSQL processes frozen with SIGSTOP.

A stopped server is worse than a dead one: connections are accepted and data acknowledged
by its kernel, and nothing ever answers. These tests run the server as the image does
(gunicorn with gunicorn.conf.py) with short time limits set by the settings, fire concurrent
requests at it, and check that every answer comes within its bound, that the health
endpoints keep answering, that the server survives, and that afterwards the listing and the
blob store agree.
"""

from __future__ import annotations

import json
import threading
import time
import uuid

import pytest

from webapp_testkit import Gunicorn, blob_names, frozen, http, multipart

# Short limits, so a frozen dependency costs a test about a second.
FAST = {
    "DEPENDENCY_BUDGET": "1",
    "DEPENDENCY_RETRIES": "1",
    "STORAGE_CONNECT_TIMEOUT": "0.3",
    "STORAGE_READ_TIMEOUT": "0.3",
    "DB_CONNECT_TIMEOUT": "0.3",
    "DB_QUERY_TIMEOUT": "0.3",
    "DB_POOL_TIMEOUT": "0.3",
    "READY_TIMEOUT": "0.3",
    "REAP_INTERVAL": "0",
    "REAP_GRACE": "2",
    "LOG_LEVEL": "WARNING",
}
BUDGET = float(FAST["DEPENDENCY_BUDGET"])
READY_TIMEOUT = float(FAST["READY_TIMEOUT"])
# Scheduling on a busy 2-core machine, on top of the limits themselves.
SLACK = 1.0


class Probe(threading.Thread):
    """Polls an endpoint every 50 ms while a test runs; records the slowest answer."""

    def __init__(self, url: str):
        super().__init__(daemon=True)
        self.url = url
        self.results: list[tuple[int, float]] = []
        self._done = threading.Event()

    def run(self) -> None:
        while not self._done.is_set():
            status, _, seconds = http("GET", self.url, timeout=30)
            self.results.append((status, seconds))
            self._done.wait(0.05)

    def finish(self) -> list[tuple[int, float]]:
        self._done.set()
        self.join(30)
        return self.results


def concurrently(calls) -> list[tuple[int, bytes, float]]:
    results: list = [None] * len(calls)
    barrier = threading.Barrier(len(calls))

    def run(i, call):
        barrier.wait(10)
        results[i] = call()

    threads = [threading.Thread(target=run, args=(i, c)) for i, c in enumerate(calls)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return results


def upload(base: str, data: bytes, name: str):
    body, headers = multipart(data, name)
    return http("POST", base + "/api/files", body=body, headers=headers)


def settle(blobs, timeout: float = 5.0) -> None:
    """Wait until a thawed Azurite has worked off what it received while frozen."""
    deadline, last, stable = time.monotonic() + timeout, None, 0
    while time.monotonic() < deadline and stable < 3:
        names = blob_names(blobs)
        stable = stable + 1 if names == last else 0
        last = names
        time.sleep(0.15)


def assert_listing_matches_blobs(base: str, blobs, sql) -> list[dict]:
    listed = json.loads(http("GET", base + "/api/files?limit=1000")[1])["files"]
    rows = sorted(r[0] for r in sql("SELECT blob_key FROM files"))
    assert sorted(uuid.UUID(f["id"]).hex for f in listed) == rows
    assert blob_names(blobs) == rows  # no row without its blob, no blob without its row
    assert sql("SELECT count(*) FROM pending_blobs") == [(0,)]
    return listed


@pytest.fixture
def server(env, gunicorn):
    def start(workers: int = 1, wait_ready: bool = True, **overrides) -> Gunicorn:
        return gunicorn({**env.vars, **FAST, **overrides}, workers=workers, wait_ready=wait_ready)

    return start


def reap_now(make_app) -> int:
    """One run of the orphan cleanup, with no grace (the test knows nothing is in flight)."""
    return make_app().extensions["webapp"].files.reap(older_than_seconds=0)


def test_frozen_storage_costs_each_request_its_budget_and_never_the_probes(server, azurite, blobs, sql, make_app):
    # One worker with 4 threads: 3 dependency slots, one thread always free for the probes.
    g = server(workers=1, GUNICORN_THREADS="4")
    status, body, _ = upload(g.base, b"stored before the freeze", "kept.txt")
    assert status == 201
    kept = json.loads(body)

    health = Probe(g.health)
    with frozen(azurite.proc.pid):
        health.start()
        time.sleep(0.1)
        started = time.monotonic()
        results = concurrently(
            [lambda i=i: upload(g.base, f"upload {i}".encode(), f"u{i}.txt") for i in range(10)]
            + [lambda: http("GET", g.base + kept["download_url"])]
            + [lambda: http("GET", g.base + "/readyz")]
        )
        elapsed = time.monotonic() - started
        healthz = health.finish()

    uploads, (download, ready) = results[:10], results[10:]
    # Ten uploads and a download, three slots: whoever gets one waits out its budget (a
    # write attempt, a retry, no time left for the cleanup), the others are turned away at
    # once. All are 503s.
    assert [r[0] for r in uploads] == [503] * 10, [r[1] for r in uploads]
    assert max(r[2] for r in uploads) < BUDGET + SLACK, [r[2] for r in uploads]
    assert elapsed < BUDGET + 2 * SLACK  # not minutes: nothing queues behind a stuck request
    assert sum(b"busy" in r[1] for r in uploads) >= 6
    assert download[0] == 503 and download[2] < BUDGET + SLACK
    # Readiness says so in time (storage too slow), the probe never times out.
    assert ready[0] == 503 and ready[2] < READY_TIMEOUT + SLACK, ready
    # Liveness never waited on the frozen storage.
    assert healthz and all(s == 200 for s, _ in healthz)
    assert max(t for _, t in healthz) < 0.5, sorted(t for _, t in healthz)[-5:]
    assert g.alive()

    # Thawed: the same server serves again, without a restart.
    settle(blobs)
    g.wait_ready(10)
    status, body, _ = upload(g.base, b"after the freeze", "after.txt")
    assert status == 201, body
    # The failed uploads left marks (their cleanup had no time left); a blob Azurite wrote
    # after the client had given up is one of them. The orphan cleanup settles it.
    waited = sum(b"busy" not in r[1] for r in uploads)  # the uploads that got a slot
    assert 1 <= waited <= 3
    assert sql("SELECT count(*) FROM pending_blobs") == [(waited,)]
    reap_now(make_app)
    listed = assert_listing_matches_blobs(g.base, blobs, sql)
    assert sorted(f["name"] for f in listed) == ["after.txt", "kept.txt"]
    assert http("GET", g.base + kept["download_url"])[1] == b"stored before the freeze"
    assert "Traceback" not in g.output()


def test_worker_boots_with_the_database_frozen_and_requests_stay_bounded(server, postgres, env, blobs, sql, make_app):
    # The database hangs while the workers boot: they must come up anyway (the master used
    # to exit with "Worker failed to boot"), answer /healthz and say why they are not ready.
    with frozen(postgres.pid):
        g = server(workers=2, wait_ready=False)
        booted = time.monotonic() + 15  # importing the app takes a moment on a busy machine
        while http("GET", g.base + "/healthz", timeout=15)[0] != 200 and time.monotonic() < booted:
            time.sleep(0.05)
        for _ in range(4):  # both workers, whichever gets the connection
            status, _, seconds = http("GET", g.base + "/healthz")
            assert (status, seconds < 0.5) == (200, True)
        status, body, seconds = http("GET", g.base + "/readyz")
        assert status == 503 and seconds < READY_TIMEOUT + SLACK
        assert json.loads(body)["checks"]["schema"] == "pending"
        assert json.loads(body)["checks"]["database"] in ("timeout", "unavailable")
        assert g.alive()
    # No restart: each worker finishes its start-up by itself once the database is back.
    # Both serve: several requests in a row succeed, whichever worker takes them.
    deadline, served = time.monotonic() + 15, 0
    while served < 8 and time.monotonic() < deadline:
        if http("GET", g.base + "/api/files")[0] == 200:
            served += 1
        else:
            served = 0
            time.sleep(0.05)
    assert served == 8, g.output()[-3000:]

    status, body, _ = upload(g.base, b"before", "before.txt")
    assert status == 201
    # Now frozen while serving: six concurrent requests each need a connection. They must
    # fail side by side within their budget, not one connect timeout after the other.
    health = Probe(g.health)
    with frozen(postgres.pid):
        health.start()
        results = concurrently(
            [lambda: http("GET", g.base + "/api/files") for _ in range(6)]
            + [lambda: upload(g.base, b"during", "during.txt")]
            + [lambda: http("GET", g.base + "/readyz")]
        )
        healthz = health.finish()
    lists, (during, ready) = results[:6], results[6:]
    times = sorted(r[2] for r in lists)
    assert [r[0] for r in lists] == [503] * 6
    assert times[-1] < BUDGET + SLACK, times
    assert during[0] == 503 and during[2] < BUDGET + SLACK
    assert ready[0] == 503 and ready[2] < READY_TIMEOUT + SLACK
    assert healthz and all(s == 200 for s, _ in healthz)
    assert max(t for _, t in healthz) < 0.5
    assert g.alive()

    g.wait_ready(10)
    listed = assert_listing_matches_blobs(g.base, blobs, sql)
    assert [f["name"] for f in listed] == ["before.txt"]
    assert "Traceback" not in g.output()


def test_database_frozen_mid_upload_and_mid_query(make_app, postgres, env, blobs, sql, blob_proxy):
    from test_webapp_failures import RequestLog
    from test_webapp_failures import upload as upload_to

    from webapp import budget
    from webapp.db import DatabaseUnavailable

    app = make_app(**FAST)
    client = app.test_client()
    db = app.extensions["webapp"].files.db

    # A statement on an open connection, then the server stops: the watchdog ends the wait.
    with budget.scope(BUDGET):
        started = time.monotonic()
        with pytest.raises(DatabaseUnavailable, match=r"no answer within 0\.3s") as info:
            with db.connection() as conn:
                with frozen(postgres.pid):
                    conn.execute("SELECT 1")
        assert info.value.sent
        assert time.monotonic() - started < 0.3 + SLACK

    # The database stops while the blob is being written: the insert can't even connect, so
    # the request knows nothing was committed and deletes the blob before answering.
    log = RequestLog(blob_proxy)
    freeze = frozen(postgres.pid)
    log.when("PUT ", freeze.__enter__)
    try:
        started = time.monotonic()
        r = upload_to(client, b"bytes that must not be orphaned", "doomed.txt")
        seconds = time.monotonic() - started
    finally:
        freeze.__exit__(None, None, None)
    assert r.status_code == 503 and "database" in r.get_json()["error"]
    assert seconds < BUDGET + SLACK
    (put,) = log.blob_requests("PUT", env.container)
    assert blob_names(blobs) == []  # compensated by the request itself
    # Its mark could not be cleared (the database was frozen): the cleanup drops it.
    assert sql("SELECT count(*) FROM pending_blobs") == [(1,)]
    assert app.extensions["webapp"].files.reap(older_than_seconds=0) == 1
    assert sql("SELECT count(*) FROM files") == [(0,)]
    assert sql("SELECT count(*) FROM pending_blobs") == [(0,)]


def _trickle(conn) -> None:
    """Response headers one byte every 0.2 s: each wait for data is short, the answer never ends in time."""
    for byte in b"HTTP/1.1 200 OK\r\nx-ms-meta-slow: " + b"a" * 40:
        conn.sendall(bytes([byte]))
        time.sleep(0.2)


def _half_body(conn) -> None:
    """A blob download that stops half-way: azure-storage-blob retries the body by itself."""
    conn.sendall(
        b"HTTP/1.1 206 Partial Content\r\nContent-Length: 100\r\nContent-Range: bytes 0-99/100\r\n"
        b"Content-Type: application/octet-stream\r\nx-ms-blob-type: BlockBlob\r\n\r\n" + b"x" * 10
    )
    raise OSError("connection dropped")


@pytest.mark.parametrize("respond", [_trickle, _half_body], ids=["trickled-headers", "download-body-cut"])
def test_one_storage_attempt_never_outlasts_the_budget(respond):
    """Socket timeouts bound each wait for data, not an attempt: a server trickling bytes, or
    download_blob's own retries of a cut body (three, 1 s apart), would run past the budget."""
    from webapp import budget
    from webapp.storage import BlobStore, StorageUnavailable
    from webapp_testkit import SlowHTTPServer

    from azure.storage.blob import BlobServiceClient

    server = SlowHTTPServer(respond)
    service = BlobServiceClient.from_connection_string(
        f"DefaultEndpointsProtocol=http;AccountName=slow;AccountKey={'a' * 44};"
        f"BlobEndpoint=http://127.0.0.1:{server.port}/slow;",
        retry_total=0,
    )
    store = BlobStore(service, "slow", connect_timeout=0.5, read_timeout=0.5, retries=1, default_budget=1.0)
    try:
        started = time.monotonic()
        with budget.scope(1.0), pytest.raises(StorageUnavailable):
            if respond is _half_body:
                store.open("blob")
            else:
                store.ping()
        assert time.monotonic() - started < 1.0 + 0.5
    finally:
        store.close()
        server.close()
