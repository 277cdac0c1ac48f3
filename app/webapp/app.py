"""Flask app factory: the upload page, the JSON API and the health endpoints."""

from __future__ import annotations

import logging
import math
import threading
import unicodedata
import uuid
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import wait as wait_for_futures
from dataclasses import dataclass, field
from urllib.parse import quote

from flask import (
    Blueprint,
    Flask,
    Response,
    current_app,
    g,
    jsonify,
    redirect,
    render_template,
    request,
    url_for,
)
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from . import budget
from .budget import Busy
from .db import Database, DatabaseUnavailable, FileRecord
from .files import FileService, InvalidInput, human_size, parse_idempotency_key
from .settings import Settings
from .storage import BlobNotFound, BlobStore, StorageUnavailable

log = logging.getLogger(__name__)

PAGE_SIZE = 100
API_MAX_LIMIT = 1000
# Multipart framing (boundaries, part headers) on top of the file itself.
MULTIPART_OVERHEAD = 64 * 1024
# Start-up retries while the database is unreachable: 0.5 s, 1 s, 2 s ... at most 30 s apart.
PREPARE_FIRST_PAUSE = 0.5
PREPARE_MAX_PAUSE = 30.0


class Starting(Exception):
    """The database schema is not ready yet (the database was unreachable since start)."""


@dataclass
class Runtime:
    """Per-process state: the services, the background threads and their stop signal."""

    settings: Settings
    files: FileService
    # One per request that is using PostgreSQL or Blob storage (see budget.py).
    slots: budget.Slots
    stop: threading.Event = field(default_factory=threading.Event)
    # Set by requests that arrive before the start-up work is done: try again now, rather
    # than after the back-off (this worker's neighbour may be serving already).
    wake: threading.Event = field(default_factory=threading.Event)
    prepared: threading.Event = field(default_factory=threading.Event)
    # Set when the start-up work is over, done or failed.
    settled: threading.Event = field(default_factory=threading.Event)
    failure: BaseException | None = None
    threads: list[threading.Thread] = field(default_factory=list)
    checks: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(max_workers=4, thread_name_prefix="readyz")
    )

    def start(self, name: str, target) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self.threads.append(thread)

    def wait_prepared(self, timeout: float) -> bool:
        """For tests and tools: wait for the start-up work; re-raise a bug it hit."""
        self.settled.wait(timeout)
        if self.failure is not None:
            raise self.failure
        return self.prepared.is_set()

    def prepare(self) -> None:
        """Migrate the schema and make sure the container exists, retrying while the
        database is unreachable. Runs in the background, so a worker boots (and answers
        /healthz) whatever state its dependencies are in; /readyz says 'starting' until done.
        """
        pause = PREPARE_FIRST_PAUSE
        while not self.stop.is_set():
            try:
                with budget.scope(self.settings.dependency_budget):
                    applied = self.files.db.migrate()
                break
            except DatabaseUnavailable as exc:
                log.warning("database not ready, schema migration retries in %.1fs: %s", pause, exc)
            except BaseException as exc:  # a bug in a migration: retrying would not help
                log.exception("schema migration failed; this process stays unready")
                self.failure = exc
                self.settled.set()
                return
            # At least PREPARE_FIRST_PAUSE between attempts, at most ``pause`` unless woken.
            if self.stop.wait(PREPARE_FIRST_PAUSE):
                return
            self.wake.wait(pause - PREPARE_FIRST_PAUSE)
            self.wake.clear()
            pause = min(PREPARE_MAX_PAUSE, pause * 2)
        else:
            return
        if applied:
            log.info("schema migrated to version %s", applied[-1])
        try:
            with budget.scope(self.settings.dependency_budget):
                self.files.store.ensure_container()
        except StorageUnavailable as exc:
            # Not fatal: an upload recreates a missing container, and /readyz reports storage.
            log.warning("could not make sure the blob container exists: %s", exc)
        self.prepared.set()
        self.settled.set()

    def reap_forever(self) -> None:
        """The orphan cleanup: once the schema is ready, then every REAP_INTERVAL seconds."""
        while not self.prepared.is_set():
            if self.stop.wait(0.2) or self.failure is not None:
                return
        while True:
            try:
                with budget.scope(self.settings.dependency_budget):
                    self.files.reap()
            except (DatabaseUnavailable, StorageUnavailable) as exc:
                log.warning("reaper skipped a run: %s", exc)
            except Exception:  # a bug in one run must not kill the thread for the process's life
                log.exception("reaper run failed")
            if self.stop.wait(self.settings.reap_interval):
                return

    def check_dependencies(self) -> dict[str, str]:
        """Ping both dependencies at once; each answers within READY_TIMEOUT or counts as slow."""
        timeout = self.settings.ready_timeout

        def ping(fn) -> None:
            with budget.scope(timeout):
                fn()

        futures = {
            "database": self.checks.submit(ping, self.files.db.ping),
            "storage": self.checks.submit(ping, self.files.store.ping),
        }
        wait_for_futures(futures.values(), timeout=timeout)
        checks = {}
        for name, future in futures.items():
            if not future.done():
                log.warning("readiness: %s did not answer within %.1fs", name, timeout)
                checks[name] = "timeout"
            elif future.exception() is not None:
                log.warning("readiness: %s unavailable: %s", name, future.exception())
                checks[name] = "unavailable"
            else:
                checks[name] = "ok"
        return checks

    def close(self) -> None:
        self.stop.set()
        self.wake.set()
        for thread in self.threads:
            thread.join(timeout=10)
        self.checks.shutdown(wait=False, cancel_futures=True)
        self.files.db.close()
        self.files.store.close()


def create_app(settings: Settings | None = None, *, password_provider=None) -> Flask:
    """Build the app. Settings are validated here; the dependencies are prepared in the
    background (see Runtime.prepare), so this returns at once."""
    settings = settings or Settings.from_env()
    db = Database.from_settings(settings, password_provider)
    store = BlobStore.from_settings(settings)
    files = FileService(db, store, settings.max_upload_bytes, settings.reap_grace)
    runtime = Runtime(settings, files, budget.Slots(settings.dependency_slots))
    runtime.start("prepare", runtime.prepare)
    if settings.reap_interval > 0:
        runtime.start("reaper", runtime.reap_forever)

    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = settings.max_upload_bytes + MULTIPART_OVERHEAD
    app.extensions["webapp"] = runtime
    app.register_blueprint(bp)
    app.before_request(_begin_request)
    app.teardown_request(_end_request)
    app.after_request(_security_headers)
    app.register_error_handler(DatabaseUnavailable, _unavailable)
    app.register_error_handler(StorageUnavailable, _unavailable)
    app.register_error_handler(Busy, _busy)
    app.register_error_handler(Starting, _starting)
    app.register_error_handler(InvalidInput, _bad_input)
    app.register_error_handler(HTTPException, _http_error)
    app.jinja_env.filters["human_size"] = human_size
    return app


bp = Blueprint("webapp", __name__)

# The probes' endpoints work before the schema is ready; static files need nothing.
_ALWAYS_SERVED = frozenset({"webapp.healthz", "webapp.readyz", "static"})
# Form posts answer with a redirect, errors included (post/redirect/get): reloading the page
# that follows never sends the form again.
_FORM_ENDPOINTS = frozenset({"webapp.upload_form", "webapp.delete_form"})


def _runtime() -> Runtime:
    return current_app.extensions["webapp"]


def _files() -> FileService:
    return _runtime().files


def _wants_json() -> bool:
    return request.path.startswith("/api/")


def _begin_request():
    rt = _runtime()
    # The request's budget and slot are taken at its first call to a dependency, if any.
    g.scope_token = budget.activate(budget.Scope(rt.settings.dependency_budget, rt.slots))
    # No sessions or cookies here, but a page on another site could still make a visitor's
    # browser post or delete files. Browsers say where a request comes from in
    # Sec-Fetch-Site; scripts and curl send nothing and are not affected.
    if request.method not in ("GET", "HEAD", "OPTIONS"):
        if request.headers.get("Sec-Fetch-Site", "same-origin") not in ("same-origin", "none"):
            return _error(403, "cross-site requests may not change files")
    if not rt.prepared.is_set():
        rt.wake.set()
        if request.endpoint not in _ALWAYS_SERVED:
            raise Starting()
    return None


def _end_request(exc):
    token = g.pop("scope_token", None)
    if token is not None:
        budget.deactivate(token)


# --- health ----------------------------------------------------------------------------------


@bp.get("/healthz")
def healthz():
    # Liveness: touches no dependency and takes no slot, so it is answered even while every
    # other request is waiting on a hung database or storage.
    return jsonify(status="ok")


@bp.get("/readyz")
def readyz():
    """Ready when the schema is migrated and both dependencies answer in time.

    Takes no dependency slot (the checks run on threads of their own, each within
    READY_TIMEOUT), and all slots being in use is not a reason to be unready: that is
    ordinary load (slow uploads, say), and taking the pod out of the Service would only push
    it onto the others. The body says how many are in use.
    """
    rt = _runtime()
    checks = rt.check_dependencies()
    checks["schema"] = "ok" if rt.prepared.is_set() else ("failed" if rt.failure else "pending")
    ready = all(v == "ok" for v in checks.values())
    slots = {"in_use": rt.slots.in_use, "total": rt.slots.total}
    body = jsonify(status="ready" if ready else "unavailable", checks=checks, slots=slots)
    return body, 200 if ready else 503


# --- page ------------------------------------------------------------------------------------


@bp.get("/")
def index():
    page = _int_arg("page", 1, 1, 10**6)
    files, total = _files().db.list_files(PAGE_SIZE, (page - 1) * PAGE_SIZE)
    pages = max(1, math.ceil(total / PAGE_SIZE))
    if page > pages:
        # Past the end (files were deleted, or a stale link): the last page, not an empty one.
        return redirect(url_for("webapp.index", page=pages) if pages > 1 else url_for("webapp.index"))
    code = request.args.get("error")
    return render_template(
        "index.html",
        files=files,
        total=total,
        page=page,
        pages=pages,
        first=(page - 1) * PAGE_SIZE + 1,
        error=_page_error(code) if code else None,
        max_upload_bytes=_files().max_upload_bytes,
    )


@bp.post("/upload")
def upload_form():
    upload = request.files.get("file")
    _files().upload(upload.stream if upload else None, upload.filename if upload else None, _mimetype(upload))
    # Post/redirect/get: a reload of the page must not upload the file again.
    return redirect(url_for("webapp.index"), code=303)


@bp.get("/files/<uuid:file_id>/download")
def download_page(file_id: uuid.UUID):
    """The page's download link: the bytes, or an error page a person can read."""
    return _download(file_id)


@bp.get("/files/<uuid:file_id>/delete")
def confirm_delete(file_id: uuid.UUID):
    record = _files().db.get_file(file_id)
    if record is None:
        return _error(404, "that file does not exist (any more)")
    return render_template("confirm_delete.html", file=record)


@bp.post("/files/<uuid:file_id>/delete")
def delete_form(file_id: uuid.UUID):
    if not _files().delete(file_id):
        return _error(404, "that file does not exist (any more)")
    return redirect(url_for("webapp.index"), code=303)


# --- JSON API --------------------------------------------------------------------------------


@bp.get("/api/files")
def api_list():
    limit = _int_arg("limit", PAGE_SIZE, 1, API_MAX_LIMIT)
    offset = _int_arg("offset", 0, 0, 2**31 - 1)
    files, total = _files().db.list_files(limit, offset)
    return jsonify(files=[_file_json(f) for f in files], total=total, limit=limit, offset=offset)


@bp.post("/api/files")
def api_upload():
    key = parse_idempotency_key(request.headers.get("Idempotency-Key"))
    upload = request.files.get("file")
    record, created = _files().upload(
        upload.stream if upload else None, upload.filename if upload else None, _mimetype(upload), key
    )
    response = jsonify(_file_json(record))
    # A retry with the key of an upload that was stored gets that file, not a second copy.
    response.status_code = 201 if created else 200
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
    return _download(file_id)


@bp.delete("/api/files/<uuid:file_id>")
def api_delete(file_id: uuid.UUID):
    if not _files().delete(file_id):
        return _error(404, "no such file")
    return "", 204


# --- helpers ---------------------------------------------------------------------------------


def _download(file_id: uuid.UUID):
    files = _files()
    record = files.db.get_file(file_id)
    if record is None:
        return _error(404, "no such file")
    try:
        size, chunks = files.store.open(record.blob_key)
    except BlobNotFound:
        if files.db.get_file(file_id) is None:
            return _error(404, "no such file")  # deleted between the lookup and the download
        log.error("file %s is listed but its blob %s is missing from storage", file_id, record.blob_key)
        return _error(404, f"the content of {record.name!r} is missing from storage")
    response = Response(chunks, mimetype=record.content_type)
    response.content_length = size
    response.headers["Content-Disposition"] = content_disposition(record.name)
    # Stored bytes are the client's: never let a browser run them as a page of this site.
    response.headers["Content-Security-Policy"] = "sandbox"
    return response


def _mimetype(upload) -> str | None:
    return upload.mimetype if upload else None


def _int_arg(name: str, default: int, lo: int, hi: int) -> int:
    raw = request.args.get(name)
    if raw is None:
        return default
    # ASCII digits only: str.isdigit() also accepts "²" and other scripts' digits, which
    # int() then refuses (or reads); the length check keeps int() off huge strings.
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 10) or not lo <= int(raw) <= hi:
        raise InvalidInput(400, f"{name} must be a whole number from {lo} to {hi}", "bad-argument")
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


# What the page says after a form post failed. The redirect carries only the code, never the
# text, so nobody can make the page display a message of their choosing.
_PAGE_ERRORS = {
    "no-file": "Choose a file to upload.",
    "empty": "The file is empty; nothing was uploaded.",
    "bad-name": "The file's name is empty once path and control characters are removed; rename it and try again.",
    "not-found": "That file does not exist (any more).",
    "database": "The database is unavailable; nothing was changed. Try again in a moment.",
    "upload-unknown": (
        "The database stopped answering while your upload was being recorded: it may have been stored. "
        "Check the list below before uploading it again."
    ),
    "delete-unknown": (
        "The database stopped answering while the file was being deleted: it may have been deleted. "
        "Check the list below before trying again."
    ),
    "storage": "Blob storage is unavailable; nothing was changed. Try again in a moment.",
    "busy": "The server is busy; nothing was changed. Try again in a moment.",
    "starting": "The app is starting; nothing was changed. Try again in a moment.",
}


def _page_error(code: str) -> str | None:
    if code == "too-large":
        return f"The file is larger than the limit of {human_size(_files().max_upload_bytes)}; nothing was uploaded."
    return _PAGE_ERRORS.get(code)


def _error(status: int, message: str, code: str | None = None) -> Response:
    """An error as JSON for the API; for a form post a redirect to the page that shows it;
    otherwise an error page."""
    if _wants_json():
        body = (jsonify(error=message), status)
    elif request.endpoint in _FORM_ENDPOINTS and status != 403:
        code = code or ("not-found" if status == 404 else None)
        return redirect(url_for("webapp.index", error=code) if code else url_for("webapp.index"), code=303)
    else:
        body = (render_template("error.html", status=status, message=message), status)
    return current_app.make_response(body)


_UPLOAD_ENDPOINTS = frozenset({"webapp.upload_form", "webapp.api_upload"})
_DELETE_ENDPOINTS = frozenset({"webapp.delete_form", "webapp.api_delete"})


def _unavailable(exc: DatabaseUnavailable | StorageUnavailable) -> Response:
    log.warning("%s %s: dependency unavailable: %s", request.method, request.path, exc)
    what = "database" if isinstance(exc, DatabaseUnavailable) else "storage"
    code, message = what, f"the {what} is unavailable; nothing was changed, try again shortly"
    if getattr(exc, "outcome_unknown", False):
        # The write reached the database, which stopped answering before saying whether it
        # committed: the change may or may not have been made.
        if request.endpoint in _UPLOAD_ENDPOINTS:
            code = "upload-unknown"
            message = (
                "the database stopped answering while the upload was being recorded; it may have been "
                "stored: list the files, or retry with the same Idempotency-Key"
            )
        elif request.endpoint in _DELETE_ENDPOINTS:
            code = "delete-unknown"
            message = (
                "the database stopped answering while the file was being deleted; it may have been "
                "deleted: look the file up before trying again"
            )
    response = _error(503, message, code)
    response.headers["Retry-After"] = "5"
    return response


def _busy(exc: Busy) -> Response:
    log.warning("%s %s: refused, every dependency slot is taken", request.method, request.path)
    response = _error(503, "the server is busy waiting on the database or storage; try again shortly", "busy")
    response.headers["Retry-After"] = "1"
    return response


def _starting(exc: Starting) -> Response:
    response = _error(503, "the app is starting: the database schema is not ready yet", "starting")
    response.headers["Retry-After"] = "5"
    return response


def _bad_input(exc: InvalidInput):
    return _error(exc.status, exc.message, exc.code)


def _http_error(exc: HTTPException):
    if isinstance(exc, RequestEntityTooLarge):
        return _error(413, _files().too_large_message(), "too-large")
    return _error(exc.code or 500, exc.description or exc.name)


def _security_headers(response: Response) -> Response:
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    response.headers.setdefault(
        "Content-Security-Policy",
        "default-src 'none'; style-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    )
    return response
