"""Fixtures: one real PostgreSQL and one Azurite per session; a fresh schema and container per test.

The app reaches both through FaultProxy instances, so a test can cut either one; the
assertions read the servers directly, never through the proxies.
"""

from __future__ import annotations

import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

_TESTS_DIR = Path(__file__).resolve().parent
# The app package (app/webapp) and the test helpers, importable whatever pytest's import
# mode and wherever it was started from (the repo root runs `pytest tests app/tests`).
for _p in (_TESTS_DIR.parent, _TESTS_DIR):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

from webapp_testkit import TEST_MAX_UPLOAD_BYTES, AzuriteServer, FaultProxy, PostgresServer  # noqa: E402


@pytest.fixture(scope="session")
def _servers():
    # Azurite boots (node) while initdb runs: the two starts overlap instead of adding up.
    azurite = AzuriteServer()
    postgres = None
    try:
        postgres = PostgresServer()  # may skip (or fail in CI): clean up Azurite's temp dir then too
        azurite.launch()
        postgres.start()
        azurite.wait()
    except BaseException:
        azurite.stop()
        if postgres is not None:
            postgres.stop()
        raise
    yield postgres, azurite
    from webapp_testkit import Gunicorn

    Gunicorn.reap()  # servers whose tests are over, still exiting
    azurite.stop()
    postgres.stop()


@pytest.fixture(scope="session")
def postgres(_servers):
    return _servers[0]


@pytest.fixture(scope="session")
def azurite(_servers):
    return _servers[1]


@pytest.fixture(scope="session")
def db_proxy(postgres):
    proxy = FaultProxy(postgres.port)
    yield proxy
    proxy.close()


@pytest.fixture(scope="session")
def blob_proxy(azurite):
    proxy = FaultProxy(azurite.port)
    yield proxy
    proxy.close()


@dataclass
class AppEnv:
    vars: dict[str, str]
    schema: str
    container: str


@pytest.fixture
def env(postgres, azurite, db_proxy, blob_proxy):
    """Environment variables for an app with its own schema and container."""
    suffix = uuid.uuid4().hex[:12]
    schema, container = f"t_{suffix}", f"t-{suffix}"
    postgres.create_schema(postgres.APP_DB, schema)
    yield AppEnv(
        vars={
            "DATABASE_URL": postgres.url(postgres.APP_DB, port=db_proxy.port, schema=schema),
            "AZURE_STORAGE_CONNECTION_STRING": azurite.connection_string(port=blob_proxy.port),
            "AZURE_STORAGE_CONTAINER": container,
            "MAX_UPLOAD_BYTES": str(TEST_MAX_UPLOAD_BYTES),
            # Short, so an outage turns into a 503 quickly.
            "DB_POOL_TIMEOUT": "0.5",
            # No background reaper unless a test asks for one (REAP_INTERVAL).
            "REAP_INTERVAL": "0",
        },
        schema=schema,
        container=container,
    )
    for proxy in (db_proxy, blob_proxy):
        proxy.on_request = None
        proxy.restore()


@pytest.fixture
def make_app(env):
    """Build apps from ``env``; all are closed at the end of the test."""
    from webapp import create_app
    from webapp.settings import Settings

    apps = []

    def make(wait: bool = True, **overrides):
        app = create_app(Settings.from_env({**env.vars, **overrides}))
        app.testing = True
        apps.append(app)
        # The schema and container are prepared in the background; most tests need them.
        if wait:
            assert app.extensions["webapp"].wait_prepared(15), "the app did not get ready"
        return app

    yield make
    for app in apps:
        app.extensions["webapp"].close()


@pytest.fixture
def app(make_app):
    return make_app()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def blobs(azurite, env):
    """The test's container, read straight from Azurite (not through the proxy)."""
    from azure.storage.blob import ContainerClient

    client = ContainerClient.from_connection_string(azurite.connection_string(), env.container)
    yield client
    client.close()


@pytest.fixture
def sql(postgres, env):
    """Run a query in the test's schema straight on the server (not through the proxy)."""

    def run(query: str, params=()):
        with postgres.admin(postgres.APP_DB, schema=env.schema) as conn:
            cur = conn.execute(query, params)
            return cur.fetchall() if cur.description else None

    return run


@pytest.fixture
def entra(tmp_path):
    """A stand-in for Entra's token endpoint (TLS on loopback), answering until frozen."""
    import secrets

    from webapp_testkit import FakeEntra

    directory = tmp_path / "entra"
    directory.mkdir()
    fake = FakeEntra(directory, token=secrets.token_urlsafe(32))
    yield fake
    fake.close()


@pytest.fixture
def workload_identity_env(tmp_path, entra) -> dict[str, str]:
    """What the Deployment sets for workload identity, with Entra being the stand-in."""
    token_file = tmp_path / "azure-identity-token"
    token_file.write_text("projected-service-account-token")
    return {
        "AZURE_CLIENT_ID": "00000000-0000-0000-0000-00000000c11d",
        "AZURE_TENANT_ID": "00000000-0000-0000-0000-00000000ten4",
        "AZURE_FEDERATED_TOKEN_FILE": str(token_file),
        "AZURE_AUTHORITY_HOST": entra.authority,
        # azure-core's requests transport trusts this bundle: the stand-in's certificate.
        "REQUESTS_CA_BUNDLE": entra.ca_file,
    }


@pytest.fixture
def gunicorn(tmp_path):
    """Start gunicorn as the image runs it (``start(env, ...)``); all are stopped at the end."""
    from webapp_testkit import Gunicorn

    servers = []

    def start(env_vars: dict[str, str], *, workers: int = 1, wait_ready: bool = True, args=()) -> Gunicorn:
        g = Gunicorn(env_vars, tmp_path / f"gunicorn-{len(servers)}.log", workers=workers, args=args)
        servers.append(g)
        g.start(wait_ready=wait_ready)
        return g

    yield start
    for g in servers:
        g.stop(wait=False)
