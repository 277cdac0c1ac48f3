"""Entra ID sign-in: workload identity or the app's own service principal, and cached tokens.

Asking Entra for a token is a network call that can hang like any other. It never runs on a
request's own time: each token is fetched by one background thread at a time (single
flight) and cached; it is fetched again ahead of its expiry while the old one is still
served, and a request that has no usable token waits for the fetch in flight at most for
what is left of its own budget (``budget.py``), then fails (503).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from azure.core.credentials import AccessToken, TokenCredential
from azure.core.exceptions import ClientAuthenticationError

from . import budget

log = logging.getLogger(__name__)

# Audience of Azure Database for PostgreSQL (flexible server) for Entra sign-in.
POSTGRES_SCOPE = "https://ossrdbms-aad.database.windows.net/.default"
# Fetch a new token this long before the old one expires (or at half its lifetime, if that is
# shorter), in the background, while the old one is still handed out.
DEFAULT_REFRESH_MARGIN = 5 * 60.0
# A token this close to its expiry (or a tenth of its lifetime, if shorter) is no longer
# handed out: a connection opened with it could outlive it during the handshake.
EXPIRY_SLACK = 30.0
# A background refresh that failed is tried again after this pause (the old token still
# works meanwhile); a caller without a usable token always starts a new fetch at once.
REFRESH_RETRY_PAUSE = 5.0


class TokenUnavailable(ClientAuthenticationError):
    """No usable Entra token within the caller's time (the fetch failed, or is still running)."""


def azure_credential(settings, environ: Mapping[str, str] | None = None) -> TokenCredential:
    """The app's one credential in Azure, chosen explicitly, never a chain.

    Deliberately not DefaultAzureCredential: its chain would silently fall back to other
    identities (managed identity of the node, a developer's CLI login). Exactly one of:

    * ``AZURE_CLIENT_SECRET`` set (a cluster without workload identity: the platform puts the
      app's own service principal's secret in a Secret the Deployment reads): a
      ClientSecretCredential for ``AZURE_TENANT_ID`` / ``AZURE_CLIENT_ID``; a wrong secret
      fails, it does not fall back;
    * otherwise workload identity: the federated token file the pod projects
      (``AZURE_FEDERATED_TOKEN_FILE``), for ``AZURE_CLIENT_ID`` in ``AZURE_TENANT_ID``.

    Each HTTP attempt gets the storage timeouts and DEPENDENCY_RETRIES retries instead of
    azure-identity's defaults (300 s per read, several retries). That bounds the background
    fetch; what bounds a request is ``TokenCache`` (azure-core's RetryPolicy ``timeout``
    would only cap the connect, not the read, so it is not relied on).
    """
    env = os.environ if environ is None else environ
    secret = env.get("AZURE_CLIENT_SECRET") or None
    if secret is not None:
        from azure.identity import ClientSecretCredential

        log.info("Azure credential: the app's service principal %s (client secret)", env.get("AZURE_CLIENT_ID"))
        return ClientSecretCredential(
            tenant_id=env["AZURE_TENANT_ID"],
            client_id=env["AZURE_CLIENT_ID"],
            client_secret=secret,
            **_limits(settings),
        )
    from azure.identity import WorkloadIdentityCredential

    log.info("Azure credential: workload identity %s", env.get("AZURE_CLIENT_ID"))
    return WorkloadIdentityCredential(
        tenant_id=env.get("AZURE_TENANT_ID"),
        client_id=env.get("AZURE_CLIENT_ID"),
        token_file_path=env.get("AZURE_FEDERATED_TOKEN_FILE"),
        **_limits(settings),
    )


def _limits(settings) -> dict:
    """Per-attempt limits of every token request (azure-core transport and retry options)."""
    return {
        "connection_timeout": settings.storage_connect_timeout,
        "read_timeout": settings.storage_read_timeout,
        "retry_total": settings.dependency_retries,
    }


class _Fetch:
    """One background call to the credential; callers wait on ``done``."""

    def __init__(self):
        self.started = time.monotonic()
        self.done = threading.Event()
        self.token: AccessToken | None = None
        self.error: BaseException | None = None


class TokenCache:
    """A valid access token for one scope, fetched off the callers' threads.

    ``token(timeout)`` returns at once while the cached token is fresh or only due for
    refresh (which starts in the background); without a usable token it waits for the one
    fetch in flight at most ``timeout`` seconds and raises ``TokenUnavailable``. A fetch still
    running after ``stale_after`` seconds is given up on (it ends by its own timeouts) and a
    new one may start, so one hung connection to Entra cannot block every later caller.
    """

    def __init__(
        self,
        credential: TokenCredential,
        scope: str = POSTGRES_SCOPE,
        *,
        refresh_margin: float = DEFAULT_REFRESH_MARGIN,
        stale_after: float = 60.0,
        clock: Callable[[], float] = time.time,
        options: Mapping[str, Any] | None = None,
    ):
        self._credential = credential
        self._scope = scope
        self._options = dict(options or {})
        self._margin = refresh_margin
        self._stale_after = stale_after
        self._clock = clock
        self._lock = threading.Lock()
        self._token: AccessToken | None = None
        self._lifetime = 0.0
        self._fetch: _Fetch | None = None
        self._last_failure = -float("inf")  # monotonic time of the last failed fetch

    def token(self, timeout: float) -> AccessToken:
        with self._lock:
            now = self._clock()
            current = self._token
            if current is not None and now < current.expires_on - min(EXPIRY_SLACK, self._lifetime / 10):
                if now >= current.expires_on - min(self._margin, self._lifetime / 2):
                    # Due for refresh but still good: serve it, refresh in the background.
                    if time.monotonic() - self._last_failure >= REFRESH_RETRY_PAUSE:
                        self._fetch_locked()
                return current
            fetch = self._fetch_locked()
        if not fetch.done.wait(max(0.0, timeout)):
            raise TokenUnavailable(f"no Entra token for {self._scope} within {timeout:.1f}s (Entra is slow to answer)")
        if fetch.error is not None:
            raise TokenUnavailable(f"no Entra token for {self._scope}: {_first_line(fetch.error)}") from fetch.error
        return fetch.token

    def _fetch_locked(self) -> _Fetch:
        fetch = self._fetch
        if fetch is not None and not fetch.done.is_set() and time.monotonic() - fetch.started < self._stale_after:
            return fetch  # single flight: join the fetch in progress
        if fetch is not None and not fetch.done.is_set():
            log.warning("an Entra token fetch for %s ran over %.1fs; starting another", self._scope, self._stale_after)
        fetch = self._fetch = _Fetch()
        threading.Thread(target=self._run, args=(fetch,), name="entra-token", daemon=True).start()
        return fetch

    def _run(self, fetch: _Fetch) -> None:
        try:
            token = self._credential.get_token(self._scope, **self._options)
        except BaseException as exc:  # handed to the waiting callers
            log.warning("could not fetch an Entra token for %s: %s", self._scope, _first_line(exc))
            with self._lock:
                self._last_failure = time.monotonic()
            fetch.error = exc
        else:
            with self._lock:
                if self._token is None or token.expires_on >= self._token.expires_on:
                    self._token = token
                    self._lifetime = max(0.0, token.expires_on - self._clock())
            # Log the expiry, never the token.
            log.info("fetched a new Entra token for %s, expires at %s", self._scope, token.expires_on)
            fetch.token = token
        finally:
            fetch.done.set()


class EntraTokenProvider(TokenCache):
    """The PostgreSQL token as the connection's password (see ``Database``)."""

    def connection_kwargs(self, timeout: float) -> dict[str, str]:
        return {"password": self.token(timeout).token}


class BoundedCredential(TokenCredential):
    """A credential for SDK clients (Blob storage) whose ``get_token`` waits at most for what
    is left of the calling unit of work's budget, with tokens cached and refreshed ahead."""

    def __init__(self, credential: TokenCredential, default_budget: float, **cache_options):
        self._credential = credential
        self._default_budget = default_budget
        self._cache_options = cache_options
        self._caches: dict[tuple, TokenCache] = {}
        self._lock = threading.Lock()

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        key = (scopes, tuple(sorted((k, repr(v)) for k, v in kwargs.items())))
        with self._lock:
            cache = self._caches.get(key)
            if cache is None:
                (scope,) = scopes  # the SDKs ask for one scope at a time
                cache = self._caches[key] = TokenCache(self._credential, scope, options=kwargs, **self._cache_options)
        return cache.token(budget.current(self._default_budget).remaining())

    def close(self) -> None:
        close = getattr(self._credential, "close", None)
        if close is not None:
            close()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
