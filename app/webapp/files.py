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

from .db import Database, DatabaseUnavailable, FileRecord
from .storage import BlobStore, StorageUnavailable

log = logging.getLogger(__name__)

MAX_NAME_LENGTH = 255
_CONTENT_TYPE_RE = re.compile(r"^[a-z0-9][a-z0-9!#$&^_.+-]{0,126}/[a-z0-9][a-z0-9!#$&^_.+-]{0,126}$")
# Upload marks younger than this belong to uploads that may still be in flight.
REAP_GRACE_SECONDS = 15 * 60.0


class InvalidInput(Exception):
    """The client sent something we refuse (4xx); ``status`` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


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
        raise InvalidInput(400, "the file name is empty once path and control characters are removed")
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
    def __init__(self, db: Database, store: BlobStore, max_upload_bytes: int):
        self.db = db
        self.store = store
        self.max_upload_bytes = max_upload_bytes

    def upload(self, stream: BinaryIO | None, raw_name: str | None, declared_type: str | None) -> FileRecord:
        if stream is None:
            raise InvalidInput(400, "no file: send it as the multipart form field 'file'")
        name = sanitize_name(raw_name)
        size = measure(stream)
        if size == 0:
            raise InvalidInput(400, "the file is empty")
        if size > self.max_upload_bytes:
            raise InvalidInput(413, f"the file is {size} bytes; the limit is {self.max_upload_bytes} bytes")
        content_type = clean_content_type(declared_type, name)

        file_id = uuid.uuid4()
        key = file_id.hex  # generated: nothing the client sends reaches the storage path
        self.db.add_pending_blob(key)  # if the database is down we fail here, before any write
        # Whatever fails from here on (an outage or a bug), undo the blob before answering.
        try:
            self.store.put(key, stream, size, content_type)
            record = self.db.insert_file(file_id, name, size, content_type, key)
        except Exception:
            self._compensate(key)
            raise
        log.info("stored file %s (%d bytes)", file_id, size)
        return record

    def _compensate(self, key: str) -> None:
        """Undo a failed upload's blob; whatever can't be undone now stays marked for the reaper."""
        try:
            self.store.delete(key)
        except StorageUnavailable as exc:
            log.warning("could not delete blob %s after a failed upload (%s); the reaper will", key, exc)
            return
        try:
            self.db.remove_pending_blob(key)
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
            self.db.remove_pending_blob(record.blob_key)
        except (StorageUnavailable, DatabaseUnavailable) as exc:
            log.warning("file %s deleted; blob cleanup deferred to the reaper (%s)", file_id, exc)
        return True

    def reap(self, older_than_seconds: float = REAP_GRACE_SECONDS) -> int:
        """Delete blobs left behind by failed uploads and deletes."""

        def delete_blob(key: str) -> bool:
            try:
                self.store.delete(key)
                return True
            except StorageUnavailable as exc:
                log.warning("reaper could not delete blob %s: %s", key, exc)
                return False

        reaped = self.db.reap_pending_blobs(delete_blob, older_than_seconds)
        if reaped:
            log.info("reaped %d abandoned blob(s)", reaped)
        return reaped
