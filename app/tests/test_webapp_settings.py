"""Settings validation: each error names the variable, its value (unless secret) and what is allowed."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from webapp.settings import DEFAULT_MAX_UPLOAD_BYTES, Settings, SettingsError

LOCAL = {
    "DATABASE_URL": "postgresql://app:s3cret-pw@127.0.0.1:5432/app",
    "AZURE_STORAGE_CONNECTION_STRING": "DefaultEndpointsProtocol=http;AccountName=dev;AccountKey=S3CRETKEY==;"
    "BlobEndpoint=http://127.0.0.1:10000/dev;",
}


@pytest.fixture
def azure_env(tmp_path) -> dict[str, str]:
    token = tmp_path / "azure-identity-token"
    token.write_text("projected-service-account-token")
    return {
        "AZURE_POSTGRES_ENTRA": "true",
        "PGHOST": "psql-platform-dev.postgres.database.azure.com",
        "PGDATABASE": "webapp",
        "PGUSER": "id-webapp-dev",
        "AZURE_STORAGE_ACCOUNT_URL": "https://stwebappdev.blob.core.windows.net",
        "AZURE_CLIENT_ID": "00000000-0000-0000-0000-00000000c11d",
        "AZURE_TENANT_ID": "00000000-0000-0000-0000-0000000ten4",
        "AZURE_FEDERATED_TOKEN_FILE": str(token),
        "AZURE_AUTHORITY_HOST": "https://login.microsoftonline.com/",
    }


def error(env: dict[str, str]) -> SettingsError:
    with pytest.raises(SettingsError) as info:
        Settings.from_env(env)
    return info.value


def test_local_defaults():
    s = Settings.from_env(LOCAL)
    assert not s.database.entra and s.database.url == LOCAL["DATABASE_URL"]
    assert not s.storage.entra and s.storage.container == "uploads"
    assert s.max_upload_bytes == DEFAULT_MAX_UPLOAD_BYTES == 10 * 1024 * 1024
    assert (s.db_pool_timeout, s.db_pool_max_size, s.log_level) == (5.0, 10, "INFO")
    assert not s.uses_workload_identity
    # Time limits: seconds, not minutes.
    assert (s.dependency_budget, s.dependency_retries) == (15.0, 2)
    assert (s.db_connect_timeout, s.db_query_timeout) == (3.0, 5.0)
    assert (s.storage_connect_timeout, s.storage_read_timeout, s.ready_timeout) == (3.0, 10.0, 2.0)
    assert (s.reap_interval, s.reap_grace) == (300.0, 900.0)
    # One thread per worker stays free of dependency waits (gunicorn.conf.py: 8 threads).
    assert s.dependency_slots == 7
    assert Settings.from_env({**LOCAL, "GUNICORN_THREADS": "3"}).dependency_slots == 2
    assert Settings.from_env({**LOCAL, "GUNICORN_THREADS": "1"}).dependency_slots == 1
    assert Settings.from_env({**LOCAL, "DEPENDENCY_SLOTS": "5"}).dependency_slots == 5
    assert Settings.from_env({**LOCAL, "GUNICORN_THREADS": "1", "DEPENDENCY_SLOTS": "1"}).dependency_slots == 1


def test_time_settings():
    s = Settings.from_env(
        {
            **LOCAL,
            "DEPENDENCY_BUDGET": "2.5",
            "DEPENDENCY_RETRIES": "0",
            "DB_CONNECT_TIMEOUT": ".5",
            "DB_QUERY_TIMEOUT": "1",
            "STORAGE_CONNECT_TIMEOUT": "0.25",
            "STORAGE_READ_TIMEOUT": "0.75",
            "READY_TIMEOUT": "1",
            "REAP_INTERVAL": "0",
            "REAP_GRACE": "3",
        }
    )
    assert (s.dependency_budget, s.dependency_retries, s.db_connect_timeout, s.db_query_timeout) == (2.5, 0, 0.5, 1.0)
    assert (s.storage_connect_timeout, s.storage_read_timeout, s.ready_timeout) == (0.25, 0.75, 1.0)
    assert (s.reap_interval, s.reap_grace) == (0.0, 3.0)


def test_azure_settings(azure_env):
    s = Settings.from_env({**azure_env, "MAX_UPLOAD_BYTES": "1048576", "LOG_LEVEL": "debug"})
    assert s.database.entra and s.storage.entra and s.uses_workload_identity
    assert (s.database.host, s.database.port, s.database.dbname, s.database.user, s.database.sslmode) == (
        "psql-platform-dev.postgres.database.azure.com",
        5432,
        "webapp",
        "id-webapp-dev",
        "require",
    )
    assert s.storage.account_url == "https://stwebappdev.blob.core.windows.net"
    assert (s.max_upload_bytes, s.log_level) == (1048576, "DEBUG")
    # The form ASO and Crossplane report (status.primaryEndpoints.blob) ends with a slash.
    slash = Settings.from_env({**azure_env, "AZURE_STORAGE_ACCOUNT_URL": "https://stwebappdev.blob.core.windows.net/"})
    assert slash.storage.account_url == "https://stwebappdev.blob.core.windows.net/"


def test_secrets_never_appear_in_repr_or_errors():
    s = Settings.from_env(LOCAL)
    assert "s3cret-pw" not in repr(s)
    assert "S3CRETKEY" not in repr(s)
    bad_scheme = error({**LOCAL, "DATABASE_URL": "mysql://app:s3cret-pw@db/app"})
    assert bad_scheme.variable == "DATABASE_URL"
    assert "s3cret-pw" not in str(bad_scheme)
    assert str(bad_scheme) == "DATABASE_URL='mysql://<redacted>' is invalid: expected a postgresql:// URL"
    both = error({**LOCAL, "AZURE_STORAGE_ACCOUNT_URL": "https://a.blob.core.windows.net"})
    assert both.variable == "AZURE_STORAGE_CONNECTION_STRING"
    assert "S3CRETKEY" not in str(both)


@pytest.mark.parametrize(
    "changes, variable, message",
    [
        ({"DATABASE_URL": None}, "DATABASE_URL", "DATABASE_URL=<unset> is invalid: set a postgresql:// URL"),
        ({"DATABASE_URL": ""}, "DATABASE_URL", "DATABASE_URL=<unset> is invalid"),
        ({"AZURE_STORAGE_CONNECTION_STRING": None}, "AZURE_STORAGE_ACCOUNT_URL", "set https://<account>"),
        ({"AZURE_STORAGE_CONNECTION_STRING": "nonsense"}, "AZURE_STORAGE_CONNECTION_STRING", "key=value pairs"),
        (
            {"MAX_UPLOAD_BYTES": "0"},
            "MAX_UPLOAD_BYTES",
            "MAX_UPLOAD_BYTES='0' is invalid: expected a whole number >= 1",
        ),
        ({"MAX_UPLOAD_BYTES": "10MB"}, "MAX_UPLOAD_BYTES", "MAX_UPLOAD_BYTES='10MB' is invalid"),
        ({"MAX_UPLOAD_BYTES": "-5"}, "MAX_UPLOAD_BYTES", "expected a whole number >= 1"),
        ({"DB_POOL_TIMEOUT": "0"}, "DB_POOL_TIMEOUT", "DB_POOL_TIMEOUT='0' is invalid: expected a number of seconds"),
        ({"DB_POOL_TIMEOUT": "nan"}, "DB_POOL_TIMEOUT", "expected a number of seconds >= 0.1"),
        ({"DB_POOL_TIMEOUT": "inf"}, "DB_POOL_TIMEOUT", "expected a number of seconds >= 0.1"),
        ({"DB_POOL_MAX_SIZE": "0"}, "DB_POOL_MAX_SIZE", "expected a whole number >= 1"),
        # Digits of other scripts pass str.isdigit() and int() would even read "١٢" as 12.
        ({"MAX_UPLOAD_BYTES": "١٢"}, "MAX_UPLOAD_BYTES", "MAX_UPLOAD_BYTES='١٢' is invalid: expected a whole number"),
        ({"MAX_UPLOAD_BYTES": "²"}, "MAX_UPLOAD_BYTES", "expected a whole number >= 1"),
        ({"MAX_UPLOAD_BYTES": "1_000"}, "MAX_UPLOAD_BYTES", "expected a whole number >= 1"),
        ({"DEPENDENCY_BUDGET": "٣"}, "DEPENDENCY_BUDGET", "expected a number of seconds >= 0.1"),
        ({"DEPENDENCY_BUDGET": "1e3"}, "DEPENDENCY_BUDGET", "expected a number of seconds >= 0.1"),
        ({"DEPENDENCY_RETRIES": "-1"}, "DEPENDENCY_RETRIES", "expected a whole number >= 0"),
        ({"DB_CONNECT_TIMEOUT": "0"}, "DB_CONNECT_TIMEOUT", "expected a number of seconds >= 0.1"),
        ({"STORAGE_READ_TIMEOUT": "forever"}, "STORAGE_READ_TIMEOUT", "expected a number of seconds >= 0.1"),
        ({"READY_TIMEOUT": "0.01"}, "READY_TIMEOUT", "expected a number of seconds >= 0.1"),
        ({"REAP_INTERVAL": "-1"}, "REAP_INTERVAL", "expected a number of seconds >= 0"),
        ({"GUNICORN_THREADS": "0"}, "GUNICORN_THREADS", "expected a whole number >= 1"),
        ({"DEPENDENCY_SLOTS": "0"}, "DEPENDENCY_SLOTS", "expected a whole number >= 1"),
        # As many slots as threads: no thread left to refuse the requests beyond them.
        (
            {"GUNICORN_THREADS": "4", "DEPENDENCY_SLOTS": "4"},
            "DEPENDENCY_SLOTS",
            "DEPENDENCY_SLOTS='4' is invalid: expected at most 3: one less than gunicorn's threads (4)",
        ),
        # The grace must outlast any upload still writing its blob (at most the budget).
        (
            {"REAP_GRACE": "10"},
            "REAP_GRACE",
            "REAP_GRACE='10' is invalid: expected more seconds than DEPENDENCY_BUDGET (15)",
        ),
        ({"DEPENDENCY_BUDGET": "1000"}, "REAP_GRACE", "REAP_GRACE='900.0' is invalid: expected more seconds than"),
        ({"LOG_LEVEL": "LOUD"}, "LOG_LEVEL", "expected one of DEBUG, INFO, WARNING, ERROR"),
        ({"AZURE_STORAGE_CONTAINER": "Uploads"}, "AZURE_STORAGE_CONTAINER", "lowercase letters"),
        ({"AZURE_STORAGE_CONTAINER": "up"}, "AZURE_STORAGE_CONTAINER", "3-63"),
        ({"AZURE_STORAGE_CONTAINER": "up--loads"}, "AZURE_STORAGE_CONTAINER", "single hyphens"),
        ({"AZURE_STORAGE_CONTAINER": "-uploads"}, "AZURE_STORAGE_CONTAINER", "starting and ending"),
        ({"AZURE_POSTGRES_ENTRA": "maybe"}, "AZURE_POSTGRES_ENTRA", "expected true or false"),
        ({"AZURE_POSTGRES_ENTRA": "true"}, "DATABASE_URL", "must be unset when AZURE_POSTGRES_ENTRA=true"),
    ],
)
def test_local_errors(changes, variable, message):
    env = {k: v for k, v in {**LOCAL, **changes}.items() if v is not None}
    exc = error(env)
    assert exc.variable == variable
    assert message in str(exc)
    assert str(exc).startswith(f"{variable}=")


@pytest.mark.parametrize(
    "changes, variable, message",
    [
        ({"PGHOST": None}, "PGHOST", "PGHOST=<unset> is invalid: the PostgreSQL server's host name is required"),
        ({"PGDATABASE": None}, "PGDATABASE", "database name is required"),
        ({"PGUSER": None}, "PGUSER", "PostgreSQL role of the managed identity"),
        ({"PGPORT": "70000"}, "PGPORT", "expected a TCP port"),
        ({"PGSSLMODE": "disable"}, "PGSSLMODE", "expected one of require, verify-ca, verify-full"),
        ({"AZURE_STORAGE_ACCOUNT_URL": "http://st.blob.core.windows.net"}, "AZURE_STORAGE_ACCOUNT_URL", "https://"),
        ({"AZURE_STORAGE_ACCOUNT_URL": "https://st.blob.core.windows.net/container"}, "AZURE_STORAGE_ACCOUNT_URL", ""),
        ({"AZURE_CLIENT_ID": None}, "AZURE_CLIENT_ID", "azure.workload.identity/use=true"),
        ({"AZURE_TENANT_ID": None}, "AZURE_TENANT_ID", "workload identity webhook"),
        ({"AZURE_FEDERATED_TOKEN_FILE": None}, "AZURE_FEDERATED_TOKEN_FILE", "azure.workload.identity/client-id"),
        ({"AZURE_FEDERATED_TOKEN_FILE": "/no/such/token"}, "AZURE_FEDERATED_TOKEN_FILE", "projected service account"),
    ],
)
def test_azure_errors(azure_env, changes, variable, message):
    env = {k: v for k, v in {**azure_env, **changes}.items() if v is not None}
    exc = error(env)
    assert exc.variable == variable
    assert message in str(exc)


def test_workload_identity_is_required_for_either_service(azure_env):
    """Azure storage with a local database still needs the webhook's variables, and vice versa."""
    storage_only = {
        **LOCAL,
        "AZURE_STORAGE_CONNECTION_STRING": "",
        "AZURE_STORAGE_ACCOUNT_URL": azure_env["AZURE_STORAGE_ACCOUNT_URL"],
    }
    assert error(storage_only).variable == "AZURE_CLIENT_ID"
    db_only = {k: v for k, v in azure_env.items() if not k.startswith("AZURE_STORAGE")} | {
        "AZURE_STORAGE_CONNECTION_STRING": LOCAL["AZURE_STORAGE_CONNECTION_STRING"]
    }
    assert Settings.from_env(db_only).database.entra
    assert error({k: v for k, v in db_only.items() if k != "AZURE_TENANT_ID"}).variable == "AZURE_TENANT_ID"


def test_the_server_refuses_to_start_with_a_clear_message():
    """What an operator sees: the wsgi entry point with a bad variable fails at import."""
    app_dir = Path(__file__).resolve().parents[1]
    env = {
        "PATH": os.environ.get("PATH", ""),
        **LOCAL,
        "MAX_UPLOAD_BYTES": "lots",
    }
    proc = subprocess.run(
        [sys.executable, "-c", "import webapp.wsgi"], cwd=app_dir, env=env, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode != 0
    assert (
        "CRITICAL webapp: configuration error: MAX_UPLOAD_BYTES='lots' is invalid: expected a whole number >= 1"
        in proc.stderr
    )
    assert "s3cret-pw" not in proc.stderr and "S3CRETKEY" not in proc.stderr


# --- the app's own service principal (a cluster without workload identity) ------------------------

SP_SECRET = "app-sp-secret-value-never-echoed"


def test_with_a_client_secret_no_token_file_is_needed_and_the_secret_is_never_echoed(azure_env):
    env = {k: v for k, v in azure_env.items() if k != "AZURE_FEDERATED_TOKEN_FILE"} | {"AZURE_CLIENT_SECRET": SP_SECRET}
    assert Settings.from_env(env).uses_workload_identity  # Azure services are in use either way
    for missing in ("AZURE_CLIENT_ID", "AZURE_TENANT_ID"):
        exc = error({k: v for k, v in env.items() if k != missing})
        assert exc.variable == missing and "service principal" in str(exc) and SP_SECRET not in str(exc)
    # An empty secret counts as unset: back to workload identity, which needs the token file.
    assert error(env | {"AZURE_CLIENT_SECRET": ""}).variable == "AZURE_FEDERATED_TOKEN_FILE"


@pytest.mark.parametrize("secret", [SP_SECRET, "", None], ids=["client-secret", "empty-secret", "workload-identity"])
def test_the_credential_is_the_client_secret_one_exactly_when_the_secret_is_set(azure_env, secret):
    from azure.identity import ClientSecretCredential, WorkloadIdentityCredential

    from webapp.azure_auth import azure_credential

    env = azure_env if secret is None else azure_env | {"AZURE_CLIENT_SECRET": secret}
    credential = azure_credential(Settings.from_env(env), env)
    assert type(credential) is (ClientSecretCredential if secret else WorkloadIdentityCredential)


def test_the_credential_gives_up_on_a_hung_token_endpoint_within_its_limits(
    azure_env, entra, workload_identity_env, monkeypatch
):
    """Facing a token endpoint that accepts the request and never answers, the credential
    gives up after its attempts' read timeouts (azure-identity's defaults: minutes).

    Workload identity only: the client-secret credential (MSAL) first asks
    login.microsoftonline.com to validate any other authority host, which this offline
    machine can't reach; with the real authority host it uses the same pipeline options."""
    from azure.core.exceptions import AzureError

    from webapp.azure_auth import azure_credential

    for name, value in workload_identity_env.items():
        monkeypatch.setenv(name, value)  # azure-identity and requests read these from here
    env = azure_env | workload_identity_env
    settings = Settings.from_env(
        env | {"STORAGE_CONNECT_TIMEOUT": "0.5", "STORAGE_READ_TIMEOUT": "0.4", "DEPENDENCY_RETRIES": "1"}
    )
    credential = azure_credential(settings, env)
    assert credential.get_token("https://storage.azure.com/.default").token == entra.token
    entra.freeze()
    started = time.monotonic()
    with pytest.raises(AzureError):
        credential.get_token("https://ossrdbms-aad.database.windows.net/.default")
    elapsed = time.monotonic() - started
    # Two attempts (DEPENDENCY_RETRIES=1), each ended by the 0.4 s read timeout.
    assert 0.8 - 0.05 <= elapsed < 0.8 + 0.7, elapsed


def test_the_credential_choice_is_logged_without_the_secret(azure_env, caplog):
    import logging

    from webapp.azure_auth import azure_credential

    with caplog.at_level(logging.INFO, logger="webapp.azure_auth"):
        azure_credential(Settings.from_env(azure_env), azure_env | {"AZURE_CLIENT_SECRET": SP_SECRET})
    assert "service principal" in caplog.text and SP_SECRET not in caplog.text
