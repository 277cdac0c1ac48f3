"""Entra ID sign-in: workload identity or the app's own service principal, and a cached PostgreSQL token."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Mapping

from azure.core.credentials import AccessToken, TokenCredential

log = logging.getLogger(__name__)

# Audience of Azure Database for PostgreSQL (flexible server) for Entra sign-in.
POSTGRES_SCOPE = "https://ossrdbms-aad.database.windows.net/.default"
# Fetch a new token this long before the old one expires, so a connection opened just before
# expiry never presents a token that dies during the handshake.
DEFAULT_REFRESH_MARGIN = 5 * 60.0


def azure_credential(environ: Mapping[str, str] | None = None) -> TokenCredential:
    """The app's one credential in Azure, chosen explicitly, never a chain.

    Deliberately not DefaultAzureCredential: its chain would silently fall back to other
    identities (managed identity of the node, a developer's CLI login). Exactly one of:

    * ``AZURE_CLIENT_SECRET`` set (a cluster without workload identity: the platform puts the
      app's own service principal's secret in a Secret the Deployment reads): a
      ClientSecretCredential for ``AZURE_TENANT_ID`` / ``AZURE_CLIENT_ID``; a wrong secret
      fails, it does not fall back;
    * otherwise workload identity: the federated token file the pod projects
      (``AZURE_FEDERATED_TOKEN_FILE``), for ``AZURE_CLIENT_ID`` in ``AZURE_TENANT_ID``.
    """
    env = os.environ if environ is None else environ
    secret = env.get("AZURE_CLIENT_SECRET") or None
    if secret is not None:
        from azure.identity import ClientSecretCredential

        log.info("Azure credential: the app's service principal %s (client secret)", env.get("AZURE_CLIENT_ID"))
        return ClientSecretCredential(
            tenant_id=env["AZURE_TENANT_ID"], client_id=env["AZURE_CLIENT_ID"], client_secret=secret
        )
    from azure.identity import WorkloadIdentityCredential

    log.info("Azure credential: workload identity %s", env.get("AZURE_CLIENT_ID"))
    return WorkloadIdentityCredential(
        tenant_id=env.get("AZURE_TENANT_ID"),
        client_id=env.get("AZURE_CLIENT_ID"),
        token_file_path=env.get("AZURE_FEDERATED_TOKEN_FILE"),
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
