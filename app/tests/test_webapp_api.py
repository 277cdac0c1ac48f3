"""The JSON API and the page, against real PostgreSQL and Azurite."""

from __future__ import annotations

import io
import re
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from webapp_testkit import TEST_MAX_UPLOAD_BYTES, blob_names


def upload(client, data: bytes, name: str, content_type: str | None = None, url: str = "/api/files"):
    file = (io.BytesIO(data), name, content_type) if content_type else (io.BytesIO(data), name)
    return client.post(url, data={"file": file}, content_type="multipart/form-data")


def test_health_and_readiness(client):
    assert client.get("/healthz").get_json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.get_json() == {
        "status": "ready",
        "checks": {"database": "ok", "storage": "ok", "schema": "ok"},
        "slots": {"in_use": 0, "total": 7},  # GUNICORN_THREADS' default (8), less one
    }


def test_upload_list_download_delete(client, blobs, sql):
    before = datetime.now(UTC)
    r = upload(client, b"hello, blob\n", "hello.txt", "text/plain")
    assert r.status_code == 201, r.get_data(as_text=True)
    meta = r.get_json()
    assert meta["name"] == "hello.txt"
    assert meta["size"] == 12
    assert meta["content_type"] == "text/plain"
    assert meta["uploaded_at"].endswith("+00:00")  # UTC, whatever the server's time zone
    uploaded_at = datetime.fromisoformat(meta["uploaded_at"])
    assert before - timedelta(seconds=5) <= uploaded_at <= datetime.now(UTC) + timedelta(seconds=5)
    file_id = meta["id"]
    assert r.headers["Location"] == f"/api/files/{file_id}"
    assert meta["download_url"] == f"/api/files/{file_id}/content"

    # The bytes are in Blob storage under a generated key, the metadata in PostgreSQL.
    (key,) = blob_names(blobs)
    assert key == uuid.UUID(file_id).hex
    assert blobs.download_blob(key).readall() == b"hello, blob\n"
    assert sql("SELECT name, size, blob_key FROM files") == [("hello.txt", 12, key)]
    assert sql("SELECT count(*) FROM pending_blobs") == [(0,)]

    listing = client.get("/api/files").get_json()
    assert listing["total"] == 1
    assert listing["files"] == [meta]
    assert client.get(f"/api/files/{file_id}").get_json() == meta

    download = client.get(meta["download_url"])
    assert download.status_code == 200
    assert download.data == b"hello, blob\n"
    assert download.headers["Content-Type"].startswith("text/plain")
    assert download.headers["Content-Length"] == "12"
    assert download.headers["Content-Disposition"] == 'attachment; filename="hello.txt"'
    assert download.headers["Content-Security-Policy"] == "sandbox"

    assert client.delete(f"/api/files/{file_id}").status_code == 204
    assert client.get(f"/api/files/{file_id}").status_code == 404
    assert client.get(meta["download_url"]).status_code == 404
    assert client.delete(f"/api/files/{file_id}").status_code == 404
    assert client.get("/api/files").get_json()["files"] == []
    assert blob_names(blobs) == []
    assert sql("SELECT count(*) FROM files") == [(0,)]
    assert sql("SELECT count(*) FROM pending_blobs") == [(0,)]


def test_binary_content_round_trips_byte_for_byte(client):
    data = bytes(range(256)) * 16  # every byte value, exactly the test's size limit
    assert len(data) == TEST_MAX_UPLOAD_BYTES
    meta = upload(client, data, "all-bytes.bin").get_json()
    assert meta["content_type"] == "application/octet-stream"
    assert client.get(meta["download_url"]).data == data


def test_list_is_newest_first_and_paginates(client):
    ids = [upload(client, f"file {i}".encode(), f"f{i}.txt").get_json()["id"] for i in range(3)]
    listing = client.get("/api/files").get_json()
    assert [f["id"] for f in listing["files"]] == ids[::-1]
    page = client.get("/api/files?limit=2&offset=1").get_json()
    assert [f["id"] for f in page["files"]] == [ids[1], ids[0]]
    assert (page["total"], page["limit"], page["offset"]) == (3, 2, 1)
    # "²" and "١٢" pass str.isdigit(); int() refuses "²" and reads "١٢" as 12.
    for bad in (
        "limit=0",
        "limit=1001",
        "limit=x",
        "offset=-1",
        "limit=²",
        "limit=١٢",
        "offset=²",
        "limit=" + "9" * 5000,
    ):
        r = client.get(f"/api/files?{bad}")
        assert r.status_code == 400, bad
        assert r.get_json()["error"].startswith(bad.split("=")[0] + " must be a whole number"), bad
    assert client.get("/?page=²").status_code == 400


def test_unknown_and_malformed_ids_are_404(client):
    unknown = uuid.uuid4()
    for path in (f"/api/files/{unknown}", f"/api/files/{unknown}/content", "/api/files/not-a-uuid"):
        r = client.get(path)
        assert r.status_code == 404, path
        assert r.get_json()["error"]
    assert client.delete(f"/api/files/{unknown}").status_code == 404
    assert client.get(f"/files/{unknown}/delete").status_code == 404
    assert client.get(f"/files/{unknown}/download").status_code == 404
    # The page's delete form answers with a redirect to the page, which says what happened.
    r = client.post(f"/files/{unknown}/delete")
    assert (r.status_code, r.headers["Location"]) == (303, "/?error=not-found")
    assert "does not exist" in client.get(r.headers["Location"]).get_data(as_text=True)


def test_size_limit(client, blobs, sql):
    assert upload(client, b"x" * TEST_MAX_UPLOAD_BYTES, "exact.bin").status_code == 201
    over = upload(client, b"x" * (TEST_MAX_UPLOAD_BYTES + 1), "over.bin")
    assert over.status_code == 413
    assert over.get_json()["error"] == "the file is 4.0 KiB (4097 bytes); the limit is 4.0 KiB (4096 bytes)"
    # Far over: refused from Content-Length, before the body is parsed.
    huge = upload(client, b"x" * (TEST_MAX_UPLOAD_BYTES * 100), "huge.bin")
    assert huge.status_code == 413
    assert "error" in huge.get_json()
    assert sql("SELECT name FROM files") == [("exact.bin",)]
    assert len(blob_names(blobs)) == 1


def test_size_limit_is_configurable(make_app):
    client = make_app(MAX_UPLOAD_BYTES="10").test_client()
    assert upload(client, b"0123456789", "ten.txt").status_code == 201
    assert upload(client, b"0123456789!", "eleven.txt").status_code == 413


def test_empty_or_missing_file_is_400(client, blobs, sql):
    empty = upload(client, b"", "empty.txt")
    assert empty.status_code == 400
    assert "empty" in empty.get_json()["error"]
    missing = client.post("/api/files", data={"other": "field"}, content_type="multipart/form-data")
    assert missing.status_code == 400
    assert "file" in missing.get_json()["error"]
    not_multipart = client.post("/api/files", data=b"raw bytes", content_type="application/octet-stream")
    assert not_multipart.status_code == 400
    assert sql("SELECT count(*) FROM files") == [(0,)]
    assert sql("SELECT count(*) FROM pending_blobs") == [(0,)]
    assert blob_names(blobs) == []


@pytest.mark.parametrize(
    "raw, stored",
    [
        ("../../etc/passwd", "passwd"),
        # On the wire a backslash must be escaped in the quoted filename; unescaped ones are
        # dropped by the multipart parser, which leaves no separator either.
        ("..\\\\..\\\\Windows\\\\win.ini", "win.ini"),
        ("C:\\\\Users\\\\me\\\\report.pdf", "report.pdf"),
        ("..\\..\\Windows\\win.ini", "....Windowswin.ini"),
        ("/absolute/path/notes.md", "notes.md"),
        ("bell\x07\x1b[31mred\x7f.txt", "bell[31mred.txt"),
        ("tab\there.txt", "tabhere.txt"),
        ("invoice\u202etxt.exe", "invoicetxt.exe"),  # right-to-left override hides the real extension
        ("  spaced name.txt  ", "spaced name.txt"),
        ("résumé 履歴書.txt", "résumé 履歴書.txt"),
        ("a" * 300 + ".txt", "a" * 251 + ".txt"),
    ],
)
def test_names_are_sanitized_and_keys_generated(client, blobs, raw, stored):
    r = upload(client, b"content", raw)
    assert r.status_code == 201, r.get_data(as_text=True)
    meta = r.get_json()
    assert meta["name"] == stored
    # Whatever the name, the blob key is the generated ID: nothing of the name reaches storage.
    assert blob_names(blobs) == [uuid.UUID(meta["id"]).hex]


def test_rfc5987_encoded_name_with_traversal(client):
    # filename* is decoded by the parser before we see it, so the traversal must still go.
    boundary = "b0undary"
    body = (
        f"--{boundary}\r\n"
        "Content-Disposition: form-data; name=\"file\"; filename*=UTF-8''..%2F..%2Fetc%2Fsh%C3%A4dow\r\n"
        "Content-Type: text/plain\r\n\r\nroot:x\r\n"
        f"--{boundary}--\r\n"
    ).encode()
    r = client.post("/api/files", data=body, content_type=f"multipart/form-data; boundary={boundary}")
    assert r.status_code == 201, r.get_data(as_text=True)
    assert r.get_json()["name"] == "shädow"


@pytest.mark.parametrize("raw", ["..", "../", "dir/..", "\x00\x01\x02", " / ", "\u202e"])
def test_names_empty_after_sanitizing_are_400(client, blobs, sql, raw):
    r = upload(client, b"content", raw)
    assert r.status_code == 400
    assert "name" in r.get_json()["error"]
    assert blob_names(blobs) == []
    assert sql("SELECT count(*) FROM pending_blobs") == [(0,)]


def test_non_ascii_name_download_header(client):
    meta = upload(client, "zażółć".encode(), "gęś; x.txt").get_json()
    assert meta["name"] == "gęś; x.txt"
    disposition = client.get(meta["download_url"]).headers["Content-Disposition"]
    assert disposition == "attachment; filename=\"ges; x.txt\"; filename*=UTF-8''g%C4%99%C5%9B%3B%20x.txt"


def test_content_disposition_never_breaks_out_of_the_quotes():
    from webapp.app import content_disposition

    assert content_disposition('a "b" \\c.txt') == (
        "attachment; filename=\"a b c.txt\"; filename*=UTF-8''a%20%22b%22%20%5Cc.txt"
    )
    assert content_disposition("日本.txt") == "attachment; filename=\".txt\"; filename*=UTF-8''%E6%97%A5%E6%9C%AC.txt"
    assert content_disposition("日本") == "attachment; filename=\"download\"; filename*=UTF-8''%E6%97%A5%E6%9C%AC"


def test_content_type_declared_guessed_or_default(client):
    assert upload(client, b"{}", "data.json", "application/json").get_json()["content_type"] == "application/json"
    # A malformed declared type is not stored; the name decides.
    assert upload(client, b"a,b", "t.csv", "not a type").get_json()["content_type"] == "text/csv"
    assert upload(client, b"?", "noext", "bad/<script>").get_json()["content_type"] == "application/octet-stream"


def test_page_lists_uploads_and_form_upload_redirects(client, sql):
    page = client.get("/")
    assert page.status_code == 200
    assert "No files yet." in page.get_data(as_text=True)

    r = upload(client, b"<b>not html</b>", "<img src=x onerror=alert(1)>.html", url="/upload")
    assert r.status_code == 303
    assert r.headers["Location"] == "/"
    html = client.get("/").get_data(as_text=True)
    # Names are escaped, never markup.
    assert "&lt;img src=x onerror=alert(1)&gt;.html" in html
    assert "<img" not in html
    (file_id,) = (str(row[0]) for row in sql("SELECT id FROM files"))
    row = re.search(rf'<tr data-file-id="{file_id}">(.*?)</tr>', html, re.S).group(1)
    assert "15 B" in row and "text/html" in row
    # The page's own download link: its errors are pages a person can read (not JSON).
    assert f'href="/files/{file_id}/download"' in row
    assert client.get(f"/files/{file_id}/download").data == b"<b>not html</b>"

    # Delete asks first: the link shows what would be deleted, and only the form deletes.
    assert f'href="/files/{file_id}/delete"' in row
    confirm = client.get(f"/files/{file_id}/delete").get_data(as_text=True)
    assert "Delete this file?" in confirm and "&lt;img src=x onerror=alert(1)&gt;.html" in confirm
    assert f'<form action="/files/{file_id}/delete" method="post"' in confirm
    assert sql("SELECT count(*) FROM files") == [(1,)]
    deleted = client.post(f"/files/{file_id}/delete")
    assert (deleted.status_code, deleted.headers["Location"]) == (303, "/")
    assert sql("SELECT count(*) FROM files") == [(0,)]


def test_page_form_errors_redirect_so_a_reload_sends_nothing(client, sql):
    """Post/redirect/get for errors too: the answer to the form is a redirect, and the page it
    leads to (which a reload fetches again) shows the error without posting anything."""
    page_label = re.search(r'<label for="file">File \(up to ([^)]*)\)', client.get("/").get_data(as_text=True))
    assert page_label.group(1) == "4.0 KiB"
    cases = [
        (upload(client, b"", "e.txt", url="/upload"), "empty", "The file is empty"),
        # Limits in the label's units, not bytes.
        (
            upload(client, b"x" * (TEST_MAX_UPLOAD_BYTES + 1), "big.bin", url="/upload"),
            "too-large",
            "larger than the limit of 4.0 KiB",
        ),
        # Far over: refused from Content-Length, unread.
        (
            upload(client, b"x" * (TEST_MAX_UPLOAD_BYTES * 100), "huge.bin", url="/upload"),
            "too-large",
            "larger than the limit of 4.0 KiB",
        ),
        (client.post("/upload", data={}, content_type="multipart/form-data"), "no-file", "Choose a file"),
    ]
    for response, code, message in cases:
        assert (response.status_code, response.headers["Location"]) == (303, f"/?error={code}")
        page = client.get(response.headers["Location"])
        assert page.status_code == 200
        assert message in re.search(r'<p id="error"[^>]*>([^<]*)</p>', page.get_data(as_text=True)).group(1)
    # Only known codes are shown: the query string can't put words on the page.
    assert 'id="error"' not in client.get("/?error=Your+account+is+locked").get_data(as_text=True)
    assert sql("SELECT count(*) FROM files") == [(0,)]


def test_page_pages_through_every_file(client, sql):
    """Past the first 100 files the older ones are one link away (not only in the API)."""
    sql(
        """INSERT INTO files (id, name, size, content_type, blob_key, uploaded_at)
           SELECT gen_random_uuid(), 'f' || i || '.txt', i, 'text/plain', 'k' || i,
                  now() - make_interval(secs => i)
           FROM generate_series(1, 205) AS i"""
    )

    def names(html: str) -> list[str]:
        return re.findall(r'<td class="name"><a [^>]*>([^<]*)</a>', html)

    first = client.get("/").get_data(as_text=True)
    assert names(first) == [f"f{i}.txt" for i in range(1, 101)]  # newest first
    assert "Files 1&ndash;100 of 205" in first and 'id="newer"' not in first
    older = re.search(r'<a id="older" rel="next" href="([^"]*)"', first).group(1)
    assert older == "/?page=2"
    second = client.get(older).get_data(as_text=True)
    assert names(second) == [f"f{i}.txt" for i in range(101, 201)]
    assert re.search(r'<a id="newer" rel="prev" href="([^"]*)"', second).group(1) == "/"
    third = client.get("/?page=3").get_data(as_text=True)
    assert names(third) == [f"f{i}.txt" for i in range(201, 206)]
    assert "Files 201&ndash;205 of 205" in third and 'id="older"' not in third
    # Past the end (a stale link, files deleted meanwhile): the last page, not "Page 9 of 3".
    past = client.get("/?page=9")
    assert (past.status_code, past.headers["Location"]) == (302, "/?page=3")
    sql("DELETE FROM files")
    assert client.get("/?page=2").headers["Location"] == "/"
    for bad in ("0", "-1", "x", "²"):
        assert client.get(f"/?page={bad}").status_code == 400, bad


def test_idempotency_key_makes_a_retried_upload_store_one_file(client, blobs, sql):
    """A client that lost the answer retries with the same key and gets the same file."""

    def send(data: bytes, name: str, key: str):
        return client.post(
            "/api/files",
            data={"file": (io.BytesIO(data), name)},
            content_type="multipart/form-data",
            headers={"Idempotency-Key": key},
        )

    first = send(b"invoice", "invoice.pdf", '"4a7c0a4e-3f1e-4b7e-9a55-0d2f6c9b8e11"')
    assert first.status_code == 201
    again = send(b"invoice", "invoice.pdf", '"4a7c0a4e-3f1e-4b7e-9a55-0d2f6c9b8e11"')
    assert again.status_code == 200  # not created again: the first upload's file
    assert again.get_json() == first.get_json()
    assert again.headers["Location"] == first.headers["Location"]
    # The bare form (without the structured-field quotes) is the same key.
    assert send(b"invoice", "invoice.pdf", "4a7c0a4e-3f1e-4b7e-9a55-0d2f6c9b8e11").status_code == 200
    assert sql("SELECT count(*) FROM files") == [(1,)]
    assert len(blob_names(blobs)) == 1
    # The same key for another file is a client bug: refused, nothing stored.
    other = send(b"something else", "other.txt", "4a7c0a4e-3f1e-4b7e-9a55-0d2f6c9b8e11")
    assert other.status_code == 422
    assert "already used" in other.get_json()["error"]
    assert send(b"something else", "other.txt", "a" * 256).status_code == 400
    assert send(b"something else", "other.txt", "").status_code == 400
    # Without a key every upload is a new file.
    assert upload(client, b"invoice", "invoice.pdf").status_code == 201
    assert sql("SELECT count(*) FROM files") == [(2,)]
    assert sql("SELECT count(*) FROM pending_blobs") == [(0,)]
    assert len(blob_names(blobs)) == 2


def test_concurrent_uploads_with_one_key_store_one_file(make_app, blobs, sql):
    import threading

    app = make_app(DEPENDENCY_SLOTS="4")

    barrier = threading.Barrier(4)
    statuses: list[int] = []

    def send():
        client = app.test_client()
        barrier.wait(5)
        r = client.post(
            "/api/files",
            data={"file": (io.BytesIO(b"same bytes"), "same.txt")},
            content_type="multipart/form-data",
            headers={"Idempotency-Key": "one-key"},
        )
        statuses.append(r.status_code)

    threads = [threading.Thread(target=send) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(statuses)[-1] == 201 and statuses.count(201) == 1 and statuses.count(200) == 3
    assert sql("SELECT count(*) FROM files") == [(1,)]
    # The losers' blobs were deleted again, and their marks with them.
    assert len(blob_names(blobs)) == 1
    assert sql("SELECT count(*) FROM pending_blobs") == [(0,)]


def test_a_lost_container_is_created_again_without_a_restart(client, blobs):
    """In-memory Azurite loses every container when it stops; the next upload recreates it."""
    before = upload(client, b"before", "before.txt").get_json()
    blobs.delete_container()
    assert not blobs.exists()
    # The file's bytes are gone: the page says so instead of failing silently.
    missing = client.get(f"/files/{before['id']}/download")
    assert missing.status_code == 404
    assert "is missing from storage" in missing.get_data(as_text=True)
    assert missing.headers["Content-Type"].startswith("text/html")
    assert client.get("/readyz").status_code == 200  # readiness recreates it too
    blobs.delete_container()
    after = upload(client, b"after", "after.txt")
    assert after.status_code == 201, after.get_data(as_text=True)
    assert blob_names(blobs) == [uuid.UUID(after.get_json()["id"]).hex]
    assert client.get(after.get_json()["download_url"]).data == b"after"


def test_cross_site_writes_are_refused(client, sql):
    def post(url: str, fetch_site: str):
        data = {"file": (io.BytesIO(b"x"), "x.txt")}
        return client.post(url, data=data, content_type="multipart/form-data", headers={"Sec-Fetch-Site": fetch_site})

    assert post("/api/files", "cross-site").status_code == 403
    assert post("/upload", "same-site").status_code == 403  # a sibling subdomain is another site's page
    assert post("/upload", "same-origin").status_code == 303
    assert sql("SELECT name FROM files") == [("x.txt",)]


def test_security_headers(client):
    r = client.get("/")
    assert r.headers["X-Content-Type-Options"] == "nosniff"
    assert "default-src 'none'" in r.headers["Content-Security-Policy"]
    assert client.get("/static/style.css").status_code == 200
