"""Blob storage access: one container, blobs addressed by generated keys."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import BinaryIO

from azure.core.exceptions import AzureError, HttpResponseError, ResourceExistsError, ResourceNotFoundError
from azure.storage.blob import BlobServiceClient, ContainerClient, ContentSettings, LinearRetry

from .settings import Settings

log = logging.getLogger(__name__)

# The SDK's default storage retry waits 15 s and more between attempts; a web request (and a
# readiness probe) must give up long before that. Two quick retries absorb a blip.
_RETRY = dict(backoff=0.5, random_jitter_range=0.25, retry_total=2)
_CONNECTION_TIMEOUT = 5
_READ_TIMEOUT = 60


class StorageUnavailable(Exception):
    """Blob storage could not be reached, refused us, or failed mid-operation."""


class BlobNotFound(Exception):
    """No blob under that key."""


class BlobStore:
    def __init__(self, service: BlobServiceClient, container: str):
        self._service = service
        self.container: ContainerClient = service.get_container_client(container)

    @classmethod
    def from_settings(cls, settings: Settings) -> BlobStore:
        st = settings.storage
        options = dict(
            retry_policy=LinearRetry(**_RETRY),
            connection_timeout=_CONNECTION_TIMEOUT,
            read_timeout=_READ_TIMEOUT,
        )
        if st.entra:
            from .azure_auth import azure_credential

            service = BlobServiceClient(st.account_url, credential=azure_credential(), **options)
        else:
            service = BlobServiceClient.from_connection_string(st.connection_string, **options)
        return cls(service, st.container)

    def close(self) -> None:
        self._service.close()

    def ensure_container(self) -> None:
        """Create the container if missing.

        In Azure the platform normally provisions it; when our identity may not create
        containers (403) that is logged and left to the readiness probe to judge.
        """
        try:
            self.container.create_container()
            log.info("created blob container %s", self.container.container_name)
        except ResourceExistsError:
            pass
        except HttpResponseError as exc:
            if exc.status_code == 403:
                log.warning("not allowed to create container %s; expecting it to exist", self.container.container_name)
                return
            raise StorageUnavailable(_describe(exc)) from exc
        except AzureError as exc:
            raise StorageUnavailable(_describe(exc)) from exc

    def ping(self, timeout: float) -> None:
        """Cheap authenticated round trip: fails if storage, credentials or container are wrong."""
        t = max(1, round(timeout))
        try:
            self.container.get_container_properties(retry_total=0, connection_timeout=t, read_timeout=t)
        except AzureError as exc:
            raise StorageUnavailable(_describe(exc)) from exc

    def check(self, key: str) -> None:
        """Raise StorageUnavailable unless storage answers for this key (present or not)."""
        try:
            self.container.get_blob_client(key).get_blob_properties()
        except ResourceNotFoundError:
            pass
        except AzureError as exc:
            raise StorageUnavailable(_describe(exc)) from exc

    def put(self, key: str, data: BinaryIO, length: int, content_type: str) -> None:
        try:
            # overwrite=False: keys are generated, so an existing blob means a bug, never a
            # reason to replace someone else's bytes.
            self.container.upload_blob(
                key,
                data,
                length=length,
                overwrite=False,
                content_settings=ContentSettings(content_type=content_type),
            )
        except AzureError as exc:
            raise StorageUnavailable(_describe(exc)) from exc

    def open(self, key: str) -> tuple[int, Iterator[bytes]]:
        """Start a download: (size, chunks). Errors before the first byte raise here, not
        mid-response, while a 503 can still be sent."""
        try:
            downloader = self.container.download_blob(key)
        except ResourceNotFoundError as exc:
            raise BlobNotFound(key) from exc
        except AzureError as exc:
            raise StorageUnavailable(_describe(exc)) from exc
        return downloader.size, downloader.chunks()

    def delete(self, key: str) -> None:
        """Delete a blob; a blob that is already gone counts as deleted."""
        try:
            self.container.delete_blob(key)
        except ResourceNotFoundError:
            pass
        except AzureError as exc:
            raise StorageUnavailable(_describe(exc)) from exc


def _describe(exc: AzureError) -> str:
    # The first line only: SDK messages go on with request details we don't need in logs.
    return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
