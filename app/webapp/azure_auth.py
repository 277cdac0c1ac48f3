"""Entra ID sign-in: workload identity only, and a cached access token for PostgreSQL."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from azure.core.credentials import AccessToken, TokenCredential

log = logging.getLogger(__name__)

# Audience of Azure Database for PostgreSQL (flexible server) for Entra sign-in.
POSTGRES_SCOPE = "https://ossrdbms-aad.database.windows.net/.default"
# Fetch a new token this long before the old one expires, so a connection opened just before
# expiry never presents a token that dies during the handshake.
DEFAULT_REFRESH_MARGIN = 5 * 60.0


def workload_identity_credential(settings) -> TokenCredential:
    """The only credential used in Azure: the federated token the AKS webhook mounts.

    Deliberately not DefaultAzureCredential: its chain would silently fall back to other
    identities (environment secrets, managed identity of the node, a developer's CLI login).
    The client ID, tenant and token file are read from the variables the webhook injects.

    Asking Entra for a token is a network call too: it gets the storage timeouts, and all its
    attempts together at most DEPENDENCY_BUDGET (azure-core's RetryPolicy ``timeout``),
    instead of azure-identity's defaults of 300 s per read and several retries.
    """
    from azure.identity import WorkloadIdentityCredential

    return WorkloadIdentityCredential(
        connection_timeout=settings.storage_connect_timeout,
        read_timeout=settings.storage_read_timeout,
        retry_total=settings.dependency_retries,
        timeout=settings.dependency_budget,
    )


class EntraTokenProvider:
    """Returns a valid access token for ``scope``, fetching a new one shortly before expiry.

    Thread-safe: gunicorn threads and the connection pool's workers share one provider, and
    only one of them refreshes at a time.
    """

    def __init__(
        self,
        credential: TokenCredential,
        scope: str = POSTGRES_SCOPE,
        *,
        refresh_margin: float = DEFAULT_REFRESH_MARGIN,
        clock: Callable[[], float] = time.time,
    ):
        self._credential = credential
        self._scope = scope
        self._margin = refresh_margin
        self._clock = clock
        self._lock = threading.Lock()
        self._token: AccessToken | None = None

    def token(self) -> str:
        with self._lock:
            if self._token is None or self._token.expires_on - self._clock() <= self._margin:
                self._token = self._credential.get_token(self._scope)
                # Log the expiry, never the token.
                log.info("fetched a new Entra token for %s, expires at %s", self._scope, self._token.expires_on)
            return self._token.token

    def connection_kwargs(self) -> dict[str, str]:
        """psycopg_pool calls this for every new connection: the token is the password."""
        return {"password": self.token()}
