"""The file service: input checks, and upload/delete that never leave half-written state.

Invariants, whatever fails and when:
- a row in ``files`` always has its blob (the blob is written first, the row last);
- a blob without a row is always recorded in ``pending_blobs`` (the mark is committed
  before the blob is written, and in the same transaction as a row's deletion), so the
  reaper can delete it even if the compensation in the request itself failed.
"""

from __future__ import annotations

import logging
import mimetypes
import os
import re
import unicodedata
import uuid
from typing import BinaryIO

from .db import Database, DatabaseUnavailable, DuplicateIdempotencyKey, FileRecord
from .storage import BlobStore, StorageUnavailable

log = logging.getLogger(__name__)

MAX_NAME_LENGTH = 255
_CONTENT_TYPE_RE = re.compile(r"^[a-z0-9][a-z0-9!#$&^_.+-]{0,126}/[a-z0-9][a-z0-9!#$&^_.+-]{0,126}$")
# Idempotency keys: printable ASCII without quotes or backslashes (a UUID is the usual choice).
_IDEMPOTENCY_KEY_RE = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]{1,255}")


class InvalidInput(Exception):
    """The client sent something we refuse (4xx).

    ``status`` is the HTTP status, ``code`` a stable name the page's redirect carries.
    """

    def __init__(self, status: int, message: str, code: str):
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code


def human_size(n: int) -> str:
    """Sizes as the page shows them: bytes below 1 KiB, else KiB/MiB/GiB with one decimal."""
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{int(size)} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


def parse_idempotency_key(raw: str | None) -> str | None:
    """The Idempotency-Key header's value (draft-ietf-httpapi-idempotency-key-header: a
    structured-field string, so quoted; a bare token is accepted too)."""
    if raw is None:
        return None
    value = raw.strip()
    if len(value) >= 2 and value[0] == value[-1] == '"':
        value = value[1:-1]
    if not _IDEMPOTENCY_KEY_RE.fullmatch(value):
        raise InvalidInput(
            400,
            "Idempotency-Key must be 1-255 printable ASCII characters without quotes or backslashes",
            "bad-idempotency-key",
        )
    return value


def sanitize_name(raw: str | None) -> str:
    """A safe display name: the last path component, without control characters.

    The name is only metadata (the blob key is generated), but it ends up in HTML, in a
    Content-Disposition header and on users' disks, so it must not carry a path, control
    or invisible formatting characters (bidi overrides can disguise an extension).
    """
    name = unicodedata.normalize("NFC", raw or "")
    # Browsers on Windows send C:\path\file.txt; treat both separators as separators.
    name = name.replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(ch for ch in name if unicodedata.category(ch) not in ("Cc", "Cf", "Cs", "Zl", "Zp"))
    name = name.strip()
    if name in ("", ".", ".."):
        raise InvalidInput(400, "the file name is empty once path and control characters are removed", "bad-name")
    if len(name) > MAX_NAME_LENGTH:
        stem, ext = os.path.splitext(name)
        ext = ext if len(ext) <= 16 else ""
        name = stem[: MAX_NAME_LENGTH - len(ext)].rstrip() + ext
    return name


def clean_content_type(declared: str | None, name: str) -> str:
    """The declared type if well-formed, else a guess from the name, else octet-stream."""
    value = (declared or "").split(";", 1)[0].strip().lower()
    if _CONTENT_TYPE_RE.match(value):
        return value
    guessed, _ = mimetypes.guess_type(name, strict=False)
    return guessed or "application/octet-stream"


def measure(stream: BinaryIO) -> int:
    """Size of a seekable upload stream, leaving it rewound."""
    stream.seek(0, os.SEEK_END)
    size = stream.tell()
    stream.seek(0)
    return size


class FileService:
    def __init__(self, db: Database, store: BlobStore, max_upload_bytes: int, reap_grace: float):
        self.db = db
        self.store = store
        self.max_upload_bytes = max_upload_bytes
        self.reap_grace = reap_grace

    def upload(
        self,
        stream: BinaryIO | None,
        raw_name: str | None,
        declared_type: str | None,
        idempotency_key: str | None = None,
    ) -> tuple[FileRecord, bool]:
        """Store a file; returns (record, created). With an idempotency key already used for
        the same file, returns that file and False, and stores nothing."""
        if stream is None:
            raise InvalidInput(400, "no file: send it as the multipart form field 'file'", "no-file")
        name = sanitize_name(raw_name)
        size = measure(stream)
        if size == 0:
            raise InvalidInput(400, "the file is empty", "empty")
        if size > self.max_upload_bytes:
            raise InvalidInput(413, self.too_large_message(size), "too-large")
        content_type = clean_content_type(declared_type, name)

        if idempotency_key is not None:
            earlier = self.db.get_file_by_idempotency_key(idempotency_key)
            if earlier is not None:
                return self._replay(earlier, name, size), False

        file_id = uuid.uuid4()
        key = file_id.hex  # generated: nothing the client sends reaches the storage path
        self.db.add_pending_blob(key)  # if the database is down we fail here, before any write
        # Whatever fails from here on (an outage or a bug), undo the blob before answering.
        try:
            self.store.put(key, stream, size, content_type)
            record = self.db.insert_file(file_id, name, size, content_type, key, idempotency_key)
        except DuplicateIdempotencyKey:
            # A concurrent request with the same key got there first: keep its file, not ours.
            self._compensate(key)
            earlier = self.db.get_file_by_idempotency_key(idempotency_key)
            if earlier is None:  # deleted in between: the client may simply try again
                raise
            return self._replay(earlier, name, size), False
        except DatabaseUnavailable as exc:
            if exc.sent:
                # The row may have been committed before the connection failed: deleting the
                # blob could leave a row without bytes. Its pending mark settles it: if the
                # insert committed, the mark went with it; if not, the reaper deletes the blob.
                log.warning("upload %s: outcome of the insert unknown (%s); the reaper will settle it", key, exc)
            else:
                self._compensate(key)
            raise
        except Exception:
            self._compensate(key)
            raise
        log.info("stored file %s (%d bytes)", file_id, size)
        return record, True

    def too_large_message(self, size: int | None = None) -> str:
        limit = f"the limit is {human_size(self.max_upload_bytes)} ({self.max_upload_bytes} bytes)"
        if size is None:
            return f"the file is larger than the limit; {limit}"
        return f"the file is {human_size(size)} ({size} bytes); {limit}"

    @staticmethod
    def _replay(earlier: FileRecord, name: str, size: int) -> FileRecord:
        if (earlier.name, earlier.size) != (name, size):
            raise InvalidInput(
                422,
                f"this Idempotency-Key was already used for another file ({earlier.name!r}, {earlier.size} bytes)",
                "idempotency-key-reused",
            )
        return earlier

    def _compensate(self, key: str) -> None:
        """Undo a failed upload's blob; whatever can't be undone now stays marked for the reaper."""
        try:
            self.store.delete(key)
        except StorageUnavailable as exc:
            log.warning("could not delete blob %s after a failed upload (%s); the reaper will", key, exc)
            return
        try:
            self.db.remove_pending_blobs([key])
        except DatabaseUnavailable:
            # Harmless: a mark without a blob costs the reaper one no-op delete.
            log.info("blob %s deleted; its pending mark stays for the reaper", key)

    def delete(self, file_id: uuid.UUID) -> bool:
        """Delete a file; False if unknown.

        Storage is checked first so that an outage answers 503 with nothing changed. If it
        fails after the row is gone, the file is still deleted for every reader (the row's
        deletion was committed together with a pending mark) and the reaper removes the bytes.
        """
        record = self.db.get_file(file_id)
        if record is None:
            return False
        self.store.check(record.blob_key)
        record = self.db.delete_file(file_id)
        if record is None:
            return False  # deleted by a concurrent request in between
        try:
            self.store.delete(record.blob_key)
            self.db.remove_pending_blobs([record.blob_key])
        except (StorageUnavailable, DatabaseUnavailable) as exc:
            log.warning("file %s deleted; blob cleanup deferred to the reaper (%s)", file_id, exc)
        return True

    def reap(self, older_than_seconds: float | None = None) -> int:
        """Delete blobs left behind by failed uploads and deletes; return how many.

        Only marks older than the grace (REAP_GRACE by default) are touched. Each blob is
        deleted before its mark, so a crash in between only repeats a delete next time.
        Several processes may reap at once: deleting a blob twice is harmless.
        """
        grace = self.reap_grace if older_than_seconds is None else older_than_seconds
        done: list[str] = []
        for key in self.db.abandoned_blobs(grace):
            try:
                self.store.delete(key)
            except StorageUnavailable as exc:
                log.warning("reaper could not delete blob %s: %s", key, exc)
                break  # storage is failing: keep the rest for the next run
            done.append(key)
        if done:
            self.db.remove_pending_blobs(done)
            log.info("reaped %d abandoned blob(s)", len(done))
        return len(done)
