"""Flask app factory: the upload page, the JSON API and the health endpoints."""

from __future__ import annotations

import logging
import threading
import unicodedata
import uuid
from dataclasses import dataclass
from urllib.parse import quote

from flask import Blueprint, Flask, Response, current_app, jsonify, redirect, render_template, request, url_for
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from .db import Database, DatabaseUnavailable, FileRecord
from .files import FileService, InvalidInput
from .settings import Settings
from .storage import BlobNotFound, BlobStore, StorageUnavailable

log = logging.getLogger(__name__)

READY_TIMEOUT = 2.0  # upper bound per dependency, so a probe answers before its own timeout
REAP_INTERVAL = 300.0
PAGE_LIMIT = 100
API_MAX_LIMIT = 1000
# Multipart framing (boundaries, part headers) on top of the file itself.
MULTIPART_OVERHEAD = 64 * 1024


class StartupError(RuntimeError):
    """The database or storage could not be prepared at start."""


@dataclass
class Runtime:
    settings: Settings
    files: FileService
    stop: threading.Event
    reaper: threading.Thread | None

    def close(self) -> None:
        self.stop.set()
        if self.reaper is not None:
            self.reaper.join(timeout=10)
        self.files.db.close()
        self.files.store.close()


def create_app(
    settings: Settings | None = None,
    *,
    password_provider=None,
    reap_interval: float | None = REAP_INTERVAL,
) -> Flask:
    """Build the app: validate settings, migrate the schema, make sure the container exists.

    ``reap_interval`` None disables the background reaper (one per process otherwise).
    """
    settings = settings or Settings.from_env()
    db = Database.from_settings(settings, password_provider)
    store = BlobStore.from_settings(settings)
    try:
        db.open()
        applied = db.migrate()
        store.ensure_container()
    except BaseException as exc:
        db.close()
        store.close()
        if isinstance(exc, (DatabaseUnavailable, StorageUnavailable)):
            what = "database" if isinstance(exc, DatabaseUnavailable) else "blob storage"
            raise StartupError(f"cannot start: {what} unavailable: {exc}") from exc
        raise
    if applied:
        log.info("schema migrated to version %s", applied[-1])
    files = FileService(db, store, settings.max_upload_bytes)

    stop = threading.Event()
    reaper = None
    if reap_interval is not None:
        reaper = threading.Thread(target=_reap_forever, args=(files, stop, reap_interval), name="reaper", daemon=True)
        reaper.start()

    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = settings.max_upload_bytes + MULTIPART_OVERHEAD
    app.extensions["webapp"] = Runtime(settings, files, stop, reaper)
    app.register_blueprint(bp)
    app.after_request(_security_headers)
    app.register_error_handler(DatabaseUnavailable, _unavailable)
    app.register_error_handler(StorageUnavailable, _unavailable)
    app.register_error_handler(InvalidInput, _bad_upload)
    app.register_error_handler(HTTPException, _http_error)
    app.jinja_env.filters["human_size"] = human_size
    return app


def _reap_forever(files: FileService, stop: threading.Event, interval: float) -> None:
    while True:
        try:
            files.reap()
        except DatabaseUnavailable as exc:
            log.warning("reaper skipped a run: database unavailable: %s", exc)
        except Exception:  # a bug in one run must not kill the thread for the process's life
            log.exception("reaper run failed")
        if stop.wait(interval):
            return


bp = Blueprint("webapp", __name__)


def _files() -> FileService:
    return current_app.extensions["webapp"].files


def _wants_json() -> bool:
    return request.path.startswith("/api/")


@bp.before_request
def _refuse_cross_site_writes():
    # No sessions or cookies here, but a page on another site could still make a visitor's
    # browser post or delete files. Browsers say where a request comes from in
    # Sec-Fetch-Site; scripts and curl send nothing and are not affected.
    if request.method not in ("GET", "HEAD", "OPTIONS"):
        if request.headers.get("Sec-Fetch-Site", "same-origin") not in ("same-origin", "none"):
            return _error(403, "cross-site requests may not change files")
    return None


# --- health ----------------------------------------------------------------------------------


@bp.get("/healthz")
def healthz():
    return jsonify(status="ok")


@bp.get("/readyz")
def readyz():
    files = _files()
    checks = {}
    for name, ping in (("database", files.db.ping), ("storage", files.store.ping)):
        try:
            ping(READY_TIMEOUT)
            checks[name] = "ok"
        except (DatabaseUnavailable, StorageUnavailable) as exc:
            log.warning("readiness: %s unavailable: %s", name, exc)
            checks[name] = "unavailable"
    ready = all(v == "ok" for v in checks.values())
    return jsonify(status="ready" if ready else "unavailable", checks=checks), 200 if ready else 503


# --- page ------------------------------------------------------------------------------------


@bp.get("/")
def index():
    return _render_index()


def _render_index(error: str | None = None, status: int = 200):
    files, total = _files().db.list_files(PAGE_LIMIT, 0)
    return (
        render_template(
            "index.html",
            files=files,
            total=total,
            error=error,
            max_upload_bytes=_files().max_upload_bytes,
        ),
        status,
    )


@bp.post("/upload")
def upload_form():
    upload = request.files.get("file")
    _files().upload(upload.stream if upload else None, upload.filename if upload else None, _mimetype(upload))
    # Post/redirect/get: a reload of the page must not upload the file again.
    return redirect(url_for("webapp.index"), code=303)


@bp.post("/files/<uuid:file_id>/delete")
def delete_form(file_id: uuid.UUID):
    if not _files().delete(file_id):
        return _error(404, "no such file")
    return redirect(url_for("webapp.index"), code=303)


# --- JSON API --------------------------------------------------------------------------------


@bp.get("/api/files")
def api_list():
    limit = _int_arg("limit", PAGE_LIMIT, 1, API_MAX_LIMIT)
    offset = _int_arg("offset", 0, 0, 2**31 - 1)
    files, total = _files().db.list_files(limit, offset)
    return jsonify(files=[_file_json(f) for f in files], total=total, limit=limit, offset=offset)


@bp.post("/api/files")
def api_upload():
    upload = request.files.get("file")
    record = _files().upload(upload.stream if upload else None, upload.filename if upload else None, _mimetype(upload))
    response = jsonify(_file_json(record))
    response.status_code = 201
    response.headers["Location"] = url_for("webapp.api_get", file_id=record.id)
    return response


@bp.get("/api/files/<uuid:file_id>")
def api_get(file_id: uuid.UUID):
    record = _files().db.get_file(file_id)
    if record is None:
        return _error(404, "no such file")
    return jsonify(_file_json(record))


@bp.get("/api/files/<uuid:file_id>/content")
def api_download(file_id: uuid.UUID):
    files = _files()
    record = files.db.get_file(file_id)
    if record is None:
        return _error(404, "no such file")
    try:
        size, chunks = files.store.open(record.blob_key)
    except BlobNotFound:
        return _error(404, "no such file")  # deleted between the lookup and the download
    response = Response(chunks, mimetype=record.content_type)
    response.content_length = size
    response.headers["Content-Disposition"] = content_disposition(record.name)
    # Stored bytes are the client's: never let a browser run them as a page of this site.
    response.headers["Content-Security-Policy"] = "sandbox"
    return response


@bp.delete("/api/files/<uuid:file_id>")
def api_delete(file_id: uuid.UUID):
    if not _files().delete(file_id):
        return _error(404, "no such file")
    return "", 204


# --- helpers ---------------------------------------------------------------------------------


def _mimetype(upload) -> str | None:
    return upload.mimetype if upload else None


def _int_arg(name: str, default: int, lo: int, hi: int) -> int:
    raw = request.args.get(name)
    if raw is None:
        return default
    if not raw.isdigit() or not lo <= int(raw) <= hi:
        raise InvalidInput(400, f"{name} must be a whole number from {lo} to {hi}")
    return int(raw)


def _file_json(f: FileRecord) -> dict:
    return {
        "id": str(f.id),
        "name": f.name,
        "size": f.size,
        "content_type": f.content_type,
        "uploaded_at": f.uploaded_at.isoformat(),
        "download_url": url_for("webapp.api_download", file_id=f.id),
    }


def content_disposition(name: str) -> str:
    """attachment; filename=... with an RFC 6266 filename* for names beyond ASCII."""
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode("ascii")
    ascii_name = "".join(ch for ch in ascii_name if ch not in '"\\') or "download"
    value = f'attachment; filename="{ascii_name}"'
    if ascii_name != name:
        value += f"; filename*=UTF-8''{quote(name, safe='')}"
    return value


def human_size(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{int(size)} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


def _error(status: int, message: str) -> Response:
    """An error as JSON for the API, as the page (with the message) for the page's forms."""
    if _wants_json():
        body = (jsonify(error=message), status)
    elif request.endpoint in ("webapp.upload_form", "webapp.delete_form") and status != 503:
        try:
            body = _render_index(error=message, status=status)
        except DatabaseUnavailable:  # the page can't list files now: the bare error page
            body = (render_template("error.html", status=status, message=message), status)
    else:
        body = (render_template("error.html", status=status, message=message), status)
    return current_app.make_response(body)


def _unavailable(exc: Exception) -> Response:
    log.warning("%s %s: dependency unavailable: %s", request.method, request.path, exc)
    what = "database" if isinstance(exc, DatabaseUnavailable) else "storage"
    response = _error(503, f"the {what} is unavailable; nothing was changed, try again shortly")
    response.headers["Retry-After"] = "5"
    return response


def _bad_upload(exc: InvalidInput):
    return _error(exc.status, exc.message)


def _http_error(exc: HTTPException):
    if isinstance(exc, RequestEntityTooLarge):
        limit = _files().max_upload_bytes
        return _error(413, f"the upload is larger than the limit of {limit} bytes")
    return _error(exc.code or 500, exc.description or exc.name)


def _security_headers(response: Response) -> Response:
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    response.headers.setdefault(
        "Content-Security-Policy",
        "default-src 'none'; style-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    )
    return response
