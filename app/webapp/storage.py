"""Blob storage access: one container, blobs addressed by generated keys.

Every call is bounded in time by what is left of the unit of work's budget, whatever
happens inside the SDK: each attempt runs on a helper thread and the caller stops waiting
for it when the budget runs out. Socket timeouts (STORAGE_CONNECT_TIMEOUT and
STORAGE_READ_TIMEOUT, capped by the budget) cannot do that on their own: they bound each
connect and each wait for data, so a connect plus a read, a server trickling bytes, or the
body-read retries that ``download_blob`` makes by itself (three attempts, 1 s apart, in
azure-storage-blob's _download.py) could each take longer. They still end an attempt that
the caller gave up on. The SDK's request retries are off (``retry_total=0``): its defaults
wait and retry for minutes, and only here do retries know the budget.
"""

from __future__ import annotations

import contextvars
import logging
import random
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import BinaryIO, TypeVar

from azure.core.exceptions import (
    AzureError,
    HttpResponseError,
    ResourceExistsError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.storage.blob import BlobServiceClient, ContainerClient, ContentSettings, StorageErrorCode

from . import budget
from .budget import BudgetSpent
from .settings import Settings

log = logging.getLogger(__name__)

T = TypeVar("T")

# Statuses worth another attempt: timeouts, throttling and server errors. 4xx are answers.
_RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})


class StorageUnavailable(Exception):
    """Blob storage could not be reached, refused us, did not answer in time, or failed."""


class BlobNotFound(Exception):
    """No blob under that key."""


class BlobStore:
    def __init__(
        self,
        service: BlobServiceClient,
        container: str,
        *,
        connect_timeout: float = 3.0,
        read_timeout: float = 10.0,
        retries: int = 2,
        default_budget: float = 15.0,
        max_calls: int = 32,
    ):
        self._service = service
        self.container: ContainerClient = service.get_container_client(container)
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout
        self._retries = retries
        self._default_budget = default_budget
        # Calls run here so the caller can stop waiting at its deadline. Counted, calls given
        # up on included (they end by their socket timeouts): when all are taken a call fails
        # at once instead of queueing.
        self._max_calls = max_calls
        self._calls = threading.BoundedSemaphore(max_calls)
        self._runner = ThreadPoolExecutor(max_workers=max_calls, thread_name_prefix="storage-call")

    @classmethod
    def from_settings(cls, settings: Settings) -> BlobStore:
        st = settings.storage
        # retry_total=0: one HTTP attempt per SDK call; _call retries within the budget.
        options = dict(
            retry_total=0,
            connection_timeout=settings.storage_connect_timeout,
            read_timeout=settings.storage_read_timeout,
        )
        if st.entra:
            from .azure_auth import BoundedCredential, azure_credential

            credential = BoundedCredential(
                azure_credential(settings), settings.dependency_budget, stale_after=settings.dependency_budget
            )
            service = BlobServiceClient(st.account_url, credential=credential, **options)
        else:
            service = BlobServiceClient.from_connection_string(st.connection_string, **options)
        return cls(
            service,
            st.container,
            connect_timeout=settings.storage_connect_timeout,
            read_timeout=settings.storage_read_timeout,
            retries=settings.dependency_retries,
            default_budget=settings.dependency_budget,
            # Each request makes one call at a time; room for as many given up on.
            max_calls=4 * settings.dependency_slots + 8,
        )

    def close(self) -> None:
        self._runner.shutdown(wait=False, cancel_futures=True)
        self._service.close()

    def _bounded(self, what: str, scope: budget.Scope, operation: Callable[..., T], timeouts: dict) -> T:
        """``operation(**timeouts)`` on a helper thread; waits at most what is left of the budget."""
        if not self._calls.acquire(blocking=False):
            raise StorageUnavailable(f"{what}: all {self._max_calls} storage calls of this process are still running")
        try:
            # The same context: the credential waits for a token within this scope's budget.
            context = contextvars.copy_context()
            future = self._runner.submit(context.run, operation, **timeouts)
        except BaseException:
            self._calls.release()
            raise
        future.add_done_callback(self._finished)
        try:
            return future.result(timeout=scope.remaining())
        except FutureTimeout:
            raise StorageUnavailable(f"{what}: no answer within the {scope.seconds:g}s budget") from None

    def _finished(self, future: Future) -> None:
        self._calls.release()

    def _call(self, what: str, operation: Callable[..., T], *, before_retry: Callable[[], None] | None = None) -> T:
        """Run ``operation(**timeouts)`` with retries of transient failures inside the budget.

        Answers from storage (not found, conflict, forbidden ...) are raised as they are;
        failures to get one become StorageUnavailable.
        """
        scope = budget.current(self._default_budget)
        attempt = 0
        while True:
            try:
                # Backstops for the helper thread; the wait below is what bounds the caller.
                timeouts = dict(
                    connection_timeout=scope.cap(self._connect_timeout), read_timeout=scope.cap(self._read_timeout)
                )
            except BudgetSpent as exc:
                raise StorageUnavailable(f"{what}: {exc}") from None
            try:
                return self._bounded(what, scope, operation, timeouts)
            except (ResourceNotFoundError, ResourceExistsError):
                raise
            except HttpResponseError as exc:
                if exc.status_code not in _RETRY_STATUSES:
                    raise StorageUnavailable(f"{what}: {_describe(exc)}") from exc
                failure = exc
            except (ServiceRequestError, ServiceResponseError) as exc:
                failure = exc
            except AzureError as exc:
                raise StorageUnavailable(f"{what}: {_describe(exc)}") from exc
            pause = min(2.0, 0.1 * 2**attempt) * random.uniform(0.75, 1.25)
            if attempt >= self._retries or pause >= scope.remaining():
                raise StorageUnavailable(f"{what}: {_describe(failure)}") from failure
            log.info("storage %s failed (%s); retrying in %.2fs", what, _describe(failure), pause)
            time.sleep(pause)
            attempt += 1
            if before_retry is not None:
                before_retry()

    def ensure_container(self) -> bool:
        """Create the container if missing; False if we may not (403).

        In Azure the platform normally provisions it; when our identity may not create
        containers that is logged and left to the readiness probe to judge.
        """
        try:
            self._call("create container", self.container.create_container)
            log.info("created blob container %s", self.container.container_name)
        except ResourceExistsError:
            pass
        except StorageUnavailable as exc:
            cause = exc.__cause__
            if isinstance(cause, HttpResponseError) and cause.status_code == 403:
                log.warning("not allowed to create container %s; expecting it to exist", self.container.container_name)
                return False
            raise
        return True

    def ping(self) -> None:
        """Cheap authenticated round trip: fails if storage, credentials or container are wrong.

        A missing container is created again (Azurite in memory loses it on restart).
        """
        try:
            self._call("check container", self.container.get_container_properties)
        except ResourceNotFoundError:
            if not self.ensure_container():
                raise StorageUnavailable(f"container {self.container.container_name} does not exist") from None

    def check(self, key: str) -> None:
        """Raise StorageUnavailable unless storage answers for this key (present or not)."""
        try:
            self._call("check blob", self.container.get_blob_client(key).get_blob_properties)
        except ResourceNotFoundError:
            pass

    def put(self, key: str, data: BinaryIO, length: int, content_type: str) -> None:
        """Write a new blob. Recreates a container that has gone missing, once."""
        try:
            self._put(key, data, length, content_type)
        except ResourceNotFoundError as exc:
            if exc.error_code != StorageErrorCode.CONTAINER_NOT_FOUND:
                raise StorageUnavailable(f"write blob: {_describe(exc)}") from exc
            log.warning("container %s is missing; creating it again", self.container.container_name)
            self.ensure_container()
            data.seek(0)
            self._put(key, data, length, content_type)

    def _put(self, key: str, data: BinaryIO, length: int, content_type: str) -> None:
        # The first attempt refuses to overwrite (keys are generated, so an existing blob
        # means a bug). A retry may find the blob its timed-out predecessor wrote after all;
        # the key is this upload's own, so it writes the same bytes over it.
        overwrite = False

        def write(**timeouts) -> None:
            self.container.upload_blob(
                key,
                data,
                length=length,
                overwrite=overwrite,
                content_settings=ContentSettings(content_type=content_type),
                **timeouts,
            )

        def rewind() -> None:
            nonlocal overwrite
            overwrite = True
            data.seek(0)

        try:
            self._call("write blob", write, before_retry=rewind)
        except ResourceExistsError as exc:
            raise StorageUnavailable(f"write blob: {_describe(exc)}") from exc

    def open(self, key: str) -> tuple[int, Iterator[bytes]]:
        """Start a download: (size, chunks). Errors before the first byte raise here, not
        mid-response, while a 503 can still be sent.

        A blob up to the SDK's single-get size (32 MiB, far above MAX_UPLOAD_BYTES' default)
        is read whole here, within the budget; beyond it, the further chunks are fetched while
        the response streams, bounded by the socket timeouts only."""
        try:
            downloader = self._call("read blob", lambda **t: self.container.download_blob(key, **t))
        except ResourceNotFoundError as exc:  # the blob, or its whole container, is gone
            raise BlobNotFound(key) from exc
        return downloader.size, downloader.chunks()

    def delete(self, key: str) -> None:
        """Delete a blob; a blob that is already gone counts as deleted."""
        try:
            self._call("delete blob", lambda **t: self.container.delete_blob(key, **t))
        except ResourceNotFoundError:
            pass


def _describe(exc: BaseException) -> str:
    # The first line only: SDK messages go on with request details we don't need in logs.
    text = str(exc)
    return f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}"
