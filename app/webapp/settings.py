"""Settings from environment variables, validated once at start.

Every problem is reported as a ``SettingsError`` that names the variable, shows the value
(redacted when it can hold a secret) and says what is allowed, so a misconfigured pod fails
its start with one readable line instead of a stack trace from deep inside a client library.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

# Azure Blob container names: 3-63 chars, lowercase letters, digits and single hyphens.
_CONTAINER_RE = re.compile(r"^(?=.{3,63}$)[a-z0-9]+(-[a-z0-9]+)*$")
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}
_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
# Only TLS modes: Azure Database for PostgreSQL refuses clear-text connections anyway, and an
# access token must never cross the network unencrypted.
_ENTRA_SSLMODES = ("require", "verify-ca", "verify-full")

DEFAULT_CONTAINER = "uploads"
DEFAULT_MAX_UPLOAD_BYTES = 10 * 1024 * 1024
DEFAULT_DB_POOL_TIMEOUT = 5.0
DEFAULT_DB_POOL_MAX_SIZE = 10
# Time limits for PostgreSQL and Blob storage (seconds). A request gives up on both together
# after DEPENDENCY_BUDGET, retries included, and answers 503: seconds, not minutes, so a hung
# dependency cannot hold the server's threads. See README "Time limits".
DEFAULT_DEPENDENCY_BUDGET = 15.0
DEFAULT_DEPENDENCY_RETRIES = 2
DEFAULT_DB_CONNECT_TIMEOUT = 3.0
DEFAULT_DB_QUERY_TIMEOUT = 5.0
DEFAULT_STORAGE_CONNECT_TIMEOUT = 3.0
DEFAULT_STORAGE_READ_TIMEOUT = 10.0
# /readyz answers within this; the readiness probe's timeoutSeconds must be larger.
DEFAULT_READY_TIMEOUT = 2.0
# Orphan cleanup: how often each process looks for abandoned blobs, and how old their marks
# must be (younger ones may belong to uploads still in flight; must exceed the budget).
DEFAULT_REAP_INTERVAL = 300.0
DEFAULT_REAP_GRACE = 900.0
DEFAULT_GUNICORN_THREADS = 8

# Workload identity: set by the WebApp's Deployment, which projects the token itself (the AKS
# webhook injects the same for a pod labelled azure.workload.identity/use=true).
WORKLOAD_IDENTITY_VARS = ("AZURE_CLIENT_ID", "AZURE_TENANT_ID", "AZURE_FEDERATED_TOKEN_FILE")
# The app's own service principal instead (a cluster without workload identity): the secret
# comes from the Kubernetes Secret the platform creates in the app's namespace.
CLIENT_SECRET_VAR = "AZURE_CLIENT_SECRET"
SERVICE_PRINCIPAL_VARS = ("AZURE_CLIENT_ID", "AZURE_TENANT_ID", CLIENT_SECRET_VAR)


class SettingsError(ValueError):
    """A setting is missing or invalid; the message names the variable."""

    def __init__(self, variable: str, value: str | None, allowed: str):
        self.variable = variable
        shown = "<unset>" if value is None else repr(value)
        super().__init__(f"{variable}={shown} is invalid: {allowed}")


@dataclass(frozen=True)
class DatabaseSettings:
    """Either a plain URL (local, tests) or host/db/user with an Entra token as password."""

    url: str | None
    host: str | None = None
    port: int = 5432
    dbname: str | None = None
    user: str | None = None
    sslmode: str = "require"

    @property
    def entra(self) -> bool:
        return self.url is None

    def __repr__(self) -> str:  # the URL can carry a password: never let it reach a log
        target = f"{self.host}:{self.port}/{self.dbname}" if self.entra else "<DATABASE_URL>"
        return f"DatabaseSettings(entra={self.entra}, target={target!r})"


@dataclass(frozen=True)
class StorageSettings:
    """Either a connection string (Azurite) or an account URL used with workload identity."""

    connection_string: str | None
    account_url: str | None
    container: str

    @property
    def entra(self) -> bool:
        return self.connection_string is None

    def __repr__(self) -> str:  # the connection string holds the account key
        target = self.account_url if self.entra else "<AZURE_STORAGE_CONNECTION_STRING>"
        return f"StorageSettings(entra={self.entra}, target={target!r}, container={self.container!r})"


@dataclass(frozen=True)
class Settings:
    database: DatabaseSettings
    storage: StorageSettings
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES
    db_pool_timeout: float = DEFAULT_DB_POOL_TIMEOUT
    db_pool_max_size: int = DEFAULT_DB_POOL_MAX_SIZE
    log_level: str = "INFO"
    dependency_budget: float = DEFAULT_DEPENDENCY_BUDGET
    dependency_retries: int = DEFAULT_DEPENDENCY_RETRIES
    dependency_slots: int = DEFAULT_GUNICORN_THREADS - 1
    db_connect_timeout: float = DEFAULT_DB_CONNECT_TIMEOUT
    db_query_timeout: float = DEFAULT_DB_QUERY_TIMEOUT
    storage_connect_timeout: float = DEFAULT_STORAGE_CONNECT_TIMEOUT
    storage_read_timeout: float = DEFAULT_STORAGE_READ_TIMEOUT
    ready_timeout: float = DEFAULT_READY_TIMEOUT
    reap_interval: float = DEFAULT_REAP_INTERVAL
    reap_grace: float = DEFAULT_REAP_GRACE

    @property
    def uses_workload_identity(self) -> bool:
        return self.database.entra or self.storage.entra

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        settings = cls(
            database=_database(env),
            storage=_storage(env),
            max_upload_bytes=_int(env, "MAX_UPLOAD_BYTES", DEFAULT_MAX_UPLOAD_BYTES, minimum=1),
            db_pool_timeout=_float(env, "DB_POOL_TIMEOUT", DEFAULT_DB_POOL_TIMEOUT, minimum=0.1),
            db_pool_max_size=_int(env, "DB_POOL_MAX_SIZE", DEFAULT_DB_POOL_MAX_SIZE, minimum=1),
            log_level=_choice(env, "LOG_LEVEL", "INFO", _LOG_LEVELS, upper=True),
            dependency_budget=_float(env, "DEPENDENCY_BUDGET", DEFAULT_DEPENDENCY_BUDGET, minimum=0.1),
            dependency_retries=_int(env, "DEPENDENCY_RETRIES", DEFAULT_DEPENDENCY_RETRIES, minimum=0),
            dependency_slots=_dependency_slots(env),
            db_connect_timeout=_float(env, "DB_CONNECT_TIMEOUT", DEFAULT_DB_CONNECT_TIMEOUT, minimum=0.1),
            db_query_timeout=_float(env, "DB_QUERY_TIMEOUT", DEFAULT_DB_QUERY_TIMEOUT, minimum=0.1),
            storage_connect_timeout=_float(
                env, "STORAGE_CONNECT_TIMEOUT", DEFAULT_STORAGE_CONNECT_TIMEOUT, minimum=0.1
            ),
            storage_read_timeout=_float(env, "STORAGE_READ_TIMEOUT", DEFAULT_STORAGE_READ_TIMEOUT, minimum=0.1),
            ready_timeout=_float(env, "READY_TIMEOUT", DEFAULT_READY_TIMEOUT, minimum=0.1),
            reap_interval=_float(env, "REAP_INTERVAL", DEFAULT_REAP_INTERVAL, minimum=0),
            reap_grace=_float(env, "REAP_GRACE", DEFAULT_REAP_GRACE, minimum=0),
        )
        if settings.reap_grace <= settings.dependency_budget:
            # An upload may still be writing its blob until its budget is spent: a shorter
            # grace would let the reaper delete the blob of an upload that then succeeds.
            raise SettingsError(
                "REAP_GRACE",
                _get(env, "REAP_GRACE") or str(DEFAULT_REAP_GRACE),
                f"expected more seconds than DEPENDENCY_BUDGET ({settings.dependency_budget:g})",
            )
        if settings.uses_workload_identity:
            _require_workload_identity(env)
        return settings


def _get(env: Mapping[str, str], name: str) -> str | None:
    """Value of a variable; an empty string counts as unset (a common Helm/kustomize artefact)."""
    value = env.get(name)
    return value if value not in (None, "") else None


def _require(env: Mapping[str, str], name: str, allowed: str) -> str:
    value = _get(env, name)
    if value is None:
        raise SettingsError(name, None, allowed)
    return value


def _bool(env: Mapping[str, str], name: str) -> bool:
    raw = env.get(name, "")
    if raw.strip().lower() in _TRUE:
        return True
    if raw.strip().lower() in _FALSE:
        return False
    raise SettingsError(name, raw, "expected true or false")


# ASCII digits only: Python's int() and float() also take other scripts' digits ("١٢"),
# underscores ("1_000"), "nan" and "inf", none of which an operator means.
_WHOLE_RE = re.compile(r"[0-9]+")
_DECIMAL_RE = re.compile(r"[0-9]+(\.[0-9]*)?|\.[0-9]+")


def _number(env: Mapping[str, str], name: str, default, pattern: re.Pattern, parse, minimum, allowed: str):
    raw = _get(env, name)
    if raw is None:
        return default
    if not pattern.fullmatch(raw.strip()):
        raise SettingsError(name, raw, allowed)
    value = parse(raw.strip())
    if value < minimum:
        raise SettingsError(name, raw, allowed)
    return value


def _int(env: Mapping[str, str], name: str, default: int, *, minimum: int) -> int:
    return _number(env, name, default, _WHOLE_RE, int, minimum, f"expected a whole number >= {minimum}")


def _float(env: Mapping[str, str], name: str, default: float, *, minimum: float) -> float:
    return _number(env, name, default, _DECIMAL_RE, float, minimum, f"expected a number of seconds >= {minimum:g}")


def _dependency_slots(env: Mapping[str, str]) -> int:
    """Default and most: one less than gunicorn's threads, so one thread per worker is never
    waiting on a dependency and refuses the requests beyond the slots at once.

    GUNICORN_THREADS is what gunicorn really runs: gunicorn.conf.py sets it from the final
    configuration (``--threads`` included) before the workers start.
    """
    threads = _int(env, "GUNICORN_THREADS", DEFAULT_GUNICORN_THREADS, minimum=1)
    most = max(1, threads - 1)
    slots = _int(env, "DEPENDENCY_SLOTS", most, minimum=1)
    if slots > most:
        raise SettingsError(
            "DEPENDENCY_SLOTS",
            _get(env, "DEPENDENCY_SLOTS"),
            f"expected at most {most}: one less than gunicorn's threads ({threads}), so one thread stays "
            "free of dependency waits",
        )
    return slots


def _choice(env: Mapping[str, str], name: str, default: str, allowed: tuple[str, ...], *, upper: bool = False) -> str:
    raw = _get(env, name)
    if raw is None:
        return default
    value = raw.strip().upper() if upper else raw.strip()
    if value not in allowed:
        raise SettingsError(name, raw, "expected one of " + ", ".join(allowed))
    return value


def _database(env: Mapping[str, str]) -> DatabaseSettings:
    url = _get(env, "DATABASE_URL")
    if not _bool(env, "AZURE_POSTGRES_ENTRA"):
        if url is None:
            raise SettingsError(
                "DATABASE_URL",
                None,
                "set a postgresql:// URL, or set AZURE_POSTGRES_ENTRA=true with PGHOST, "
                "PGDATABASE and PGUSER to sign in with an Entra token",
            )
        scheme = urlsplit(url).scheme
        if scheme not in ("postgresql", "postgres"):
            # Show only the scheme: the rest of the URL may hold a password.
            raise SettingsError("DATABASE_URL", f"{scheme}://<redacted>", "expected a postgresql:// URL")
        return DatabaseSettings(url=url)
    if url is not None:
        raise SettingsError(
            "DATABASE_URL", "<redacted>", "must be unset when AZURE_POSTGRES_ENTRA=true (pick one way to sign in)"
        )
    host = _require(env, "PGHOST", "the PostgreSQL server's host name is required when AZURE_POSTGRES_ENTRA=true")
    dbname = _require(env, "PGDATABASE", "the database name is required when AZURE_POSTGRES_ENTRA=true")
    user = _require(
        env,
        "PGUSER",
        "the PostgreSQL role of the managed identity (its Entra name) is required when AZURE_POSTGRES_ENTRA=true",
    )
    port = _int(env, "PGPORT", 5432, minimum=1)
    if port > 65535:
        raise SettingsError("PGPORT", env["PGPORT"], "expected a TCP port, 1-65535")
    sslmode = _choice(env, "PGSSLMODE", "require", _ENTRA_SSLMODES)
    return DatabaseSettings(url=None, host=host, port=port, dbname=dbname, user=user, sslmode=sslmode)


def _storage(env: Mapping[str, str]) -> StorageSettings:
    conn = _get(env, "AZURE_STORAGE_CONNECTION_STRING")
    account_url = _get(env, "AZURE_STORAGE_ACCOUNT_URL")
    if conn and account_url:
        raise SettingsError(
            "AZURE_STORAGE_CONNECTION_STRING",
            "<redacted>",
            "must be unset when AZURE_STORAGE_ACCOUNT_URL is set (pick one way to reach Blob storage)",
        )
    if conn is None and account_url is None:
        raise SettingsError(
            "AZURE_STORAGE_ACCOUNT_URL",
            None,
            "set https://<account>.blob.core.windows.net (workload identity), "
            "or AZURE_STORAGE_CONNECTION_STRING for the Azurite emulator",
        )
    if conn is not None and "=" not in conn:
        raise SettingsError(
            "AZURE_STORAGE_CONNECTION_STRING", "<redacted>", "expected key=value pairs separated by ';'"
        )
    if account_url is not None:
        parts = urlsplit(account_url)
        if parts.scheme != "https" or not parts.hostname or parts.path not in ("", "/"):
            raise SettingsError(
                "AZURE_STORAGE_ACCOUNT_URL", account_url, "expected https://<account>.blob.core.windows.net"
            )
    container = _get(env, "AZURE_STORAGE_CONTAINER") or DEFAULT_CONTAINER
    if not _CONTAINER_RE.match(container):
        raise SettingsError(
            "AZURE_STORAGE_CONTAINER",
            container,
            "expected 3-63 lowercase letters, digits or single hyphens, starting and ending with a letter or digit",
        )
    return StorageSettings(connection_string=conn, account_url=account_url, container=container)


def _require_workload_identity(env: Mapping[str, str]) -> None:
    if _get(env, CLIENT_SECRET_VAR) is not None:
        for name in SERVICE_PRINCIPAL_VARS:
            _require(env, name, "the app's own service principal: its client ID, tenant and client secret")
        return
    for name in WORKLOAD_IDENTITY_VARS:
        _require(
            env,
            name,
            "set in the pod spec (the WebApp's Deployment does), or injected by the AKS workload identity webhook "
            "for a pod labelled azure.workload.identity/use=true whose service account is annotated "
            "azure.workload.identity/client-id",
        )
    token_file = env["AZURE_FEDERATED_TOKEN_FILE"]
    if not os.path.isfile(token_file):
        raise SettingsError(
            "AZURE_FEDERATED_TOKEN_FILE", token_file, "expected the path of the projected service account token"
        )
