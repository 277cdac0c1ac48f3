"""Entra sign-in to PostgreSQL: the access token is the password and is refreshed before expiry.

The refresh logic is tested with a fake credential (a stand-in for azure-identity, not for a
server). The end-to-end test then signs in to the real PostgreSQL over TLS, in the app's
Azure mode, with the fake credential's tokens set as the role's password, and rotates them.
"""

from __future__ import annotations

import io
import secrets
import threading
import time

import pytest
from azure.core.credentials import AccessToken

from webapp.azure_auth import POSTGRES_SCOPE, EntraTokenProvider, TokenUnavailable


class FakeClock:
    def __init__(self, now: float = 1_800_000_000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


class FakeCredential:
    """Hands out the scripted tokens in order and records each request. ``gate``, when given,
    holds every request until it is set: a token endpoint that does not answer."""

    def __init__(self, tokens: list[AccessToken | Exception], gate: threading.Event | None = None):
        self._tokens = list(tokens)
        self.scopes: list[tuple[str, ...]] = []
        self._gate = gate

    def get_token(self, *scopes, **kwargs) -> AccessToken:
        self.scopes.append(scopes)
        item = self._tokens.pop(0)
        if self._gate is not None:
            self._gate.wait(10)
        if isinstance(item, Exception):
            raise item
        return item


def settle(provider: EntraTokenProvider) -> None:
    """Wait for a background refresh to finish (tests only)."""
    fetch = provider._fetch
    if fetch is not None:
        assert fetch.done.wait(5)


def test_token_is_cached_and_refreshed_in_the_background_before_expiry():
    clock = FakeClock()
    cred = FakeCredential([AccessToken("t1", int(clock.now) + 3600), AccessToken("t2", int(clock.now) + 7200)])
    provider = EntraTokenProvider(cred, clock=clock, refresh_margin=300)

    assert provider.token(1).token == "t1"
    clock.now += 3600 - 301  # one second before the margin
    assert provider.token(1).token == "t1"
    assert len(cred.scopes) == 1
    clock.now += 1  # inside the margin: still handed out, and replaced in the background
    assert provider.connection_kwargs(timeout=1) == {"password": "t1"}
    settle(provider)
    assert provider.connection_kwargs(timeout=1) == {"password": "t2"}
    assert cred.scopes == [(POSTGRES_SCOPE,), (POSTGRES_SCOPE,)]
    assert POSTGRES_SCOPE == "https://ossrdbms-aad.database.windows.net/.default"


def test_a_token_due_for_refresh_is_served_at_once_while_the_endpoint_hangs():
    clock = FakeClock()
    gate = threading.Event()
    cred = FakeCredential([AccessToken("t1", int(clock.now) + 3600), AccessToken("t2", int(clock.now) + 7200)])
    provider = EntraTokenProvider(cred, clock=clock, refresh_margin=300)
    assert provider.token(1).token == "t1"
    cred._gate = gate  # Entra stops answering
    clock.now += 3400
    started = time.monotonic()
    assert [provider.token(5).token for _ in range(20)] == ["t1"] * 20
    assert time.monotonic() - started < 0.2  # nobody waited on the hung refresh
    assert len(cred.scopes) == 2  # one refresh in flight, not one per caller
    gate.set()
    settle(provider)
    assert provider.token(1).token == "t2"


def test_an_expired_token_is_never_returned_and_callers_wait_at_most_their_timeout():
    clock = FakeClock()
    gate = threading.Event()
    cred = FakeCredential([AccessToken("old", int(clock.now) + 60), AccessToken("new", int(clock.now) + 3600)])
    provider = EntraTokenProvider(cred, clock=clock, refresh_margin=300)
    assert provider.token(1).token == "old"
    cred._gate = gate
    clock.now += 59  # inside the last tenth of its life: too close to expiry to hand out
    results: list = [None] * 8

    def call(i):
        started = time.monotonic()
        try:
            provider.token(0.3)
        except TokenUnavailable as exc:
            results[i] = (str(exc), time.monotonic() - started)

    threads = [threading.Thread(target=call, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(5)
    assert all(r is not None and "within 0.3s" in r[0] for r in results), results
    assert max(r[1] for r in results) < 0.3 + 0.5
    assert len(cred.scopes) == 2  # single flight: one fetch for all eight callers
    gate.set()
    settle(provider)
    assert provider.token(1).token == "new"


def test_a_failed_fetch_raises_and_the_next_call_tries_again():
    clock = FakeClock()
    cred = FakeCredential(
        [AccessToken("t1", int(clock.now) + 600), RuntimeError("token endpoint down"), AccessToken("t2", 10**10)]
    )
    provider = EntraTokenProvider(cred, clock=clock, refresh_margin=300)
    assert provider.token(1).token == "t1"
    clock.now += 600
    with pytest.raises(TokenUnavailable, match="token endpoint down"):
        provider.token(1)
    assert provider.token(1).token == "t2"


def test_a_hung_fetch_is_given_up_after_stale_after():
    clock = FakeClock()
    gate = threading.Event()
    cred = FakeCredential([AccessToken("late", int(clock.now) + 3600), AccessToken("t2", int(clock.now) + 3600)], gate)
    provider = EntraTokenProvider(cred, clock=clock, stale_after=0.2)
    with pytest.raises(TokenUnavailable):
        provider.token(0.1)
    time.sleep(0.2)
    cred._gate = None  # the endpoint answers again; the first connection stays hung
    assert provider.token(1).token == "t2"
    gate.set()


def test_entra_mode_signs_in_with_refreshed_tokens(postgres, azurite, tmp_path):
    """The app in its Azure database mode against the real server: TLS, token as password."""
    from webapp import create_app
    from webapp.settings import Settings

    role = f"id-webapp-{secrets.token_hex(4)}"  # managed identities sign in under their name
    first, second = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    postgres.create_role(role, first)
    # The default search_path starts with "$user": the role's own schema keeps this test apart.
    postgres.create_schema(postgres.APP_DB, role, owner=role)
    token_file = tmp_path / "token"
    token_file.write_text("projected")
    settings = Settings.from_env(
        {
            "AZURE_POSTGRES_ENTRA": "true",
            "PGHOST": "127.0.0.1",
            "PGPORT": str(postgres.port),
            "PGDATABASE": postgres.APP_DB,
            "PGUSER": role,
            "AZURE_STORAGE_CONNECTION_STRING": azurite.connection_string(),
            "AZURE_STORAGE_CONTAINER": f"entra-{secrets.token_hex(4)}",
            "AZURE_CLIENT_ID": "00000000-0000-0000-0000-00000000c11d",
            "AZURE_TENANT_ID": "00000000-0000-0000-0000-0000000ten4",
            "AZURE_FEDERATED_TOKEN_FILE": str(token_file),
            "REAP_INTERVAL": "0",
        }
    )
    assert settings.database.sslmode == "require"
    clock = FakeClock(time.time())
    cred = FakeCredential([AccessToken(first, int(clock.now) + 3600), AccessToken(second, int(clock.now) + 7200)])
    provider = EntraTokenProvider(cred, clock=clock)

    app = create_app(settings, password_provider=provider.connection_kwargs)
    try:
        assert app.extensions["webapp"].wait_prepared(15)
        client = app.test_client()
        up = client.post("/api/files", data={"file": (io.BytesIO(b"x"), "a.txt")}, content_type="multipart/form-data")
        assert up.status_code == 201
        with app.extensions["webapp"].files.db.connection() as conn:
            assert conn.execute(
                "SELECT current_user, ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()"
            ).fetchone() == (
                role,
                True,
            )
        assert len(cred.scopes) == 1  # every connection so far reused the cached token

        # The token nears expiry: it is still used (in Azure both stay valid until they
        # expire) while the next one is fetched in the background.
        clock.now += 3600 - 60
        assert client.get("/api/files").get_json()["total"] == 1
        settle(provider)
        assert len(cred.scopes) == 2
        # Now only the new token works (the role's password is the token here): every
        # connection from now on presents it, without another fetch.
        postgres.set_password(role, second)
        assert client.get("/api/files").get_json()["total"] == 1
        assert client.get("/readyz").status_code == 200
        assert len(cred.scopes) == 2
    finally:
        app.extensions["webapp"].close()


# --- against a token endpoint that hangs (the stand-in in webapp_testkit) -----------------------

# Entra's read timeout per attempt is longer than the budget, so that only the budget can
# explain an answer within it.
HUNG = {"DEPENDENCY_BUDGET": "1", "DEPENDENCY_RETRIES": "1", "STORAGE_CONNECT_TIMEOUT": "0.5",
        "STORAGE_READ_TIMEOUT": "3", "DB_CONNECT_TIMEOUT": "0.5", "READY_TIMEOUT": "0.5", "REAP_INTERVAL": "0",
        "REAP_GRACE": "2", "LOG_LEVEL": "WARNING"}
SLACK = 0.6


def test_storage_calls_wait_for_a_hung_token_endpoint_at_most_their_budget(entra, workload_identity_env, monkeypatch):
    """Blob storage with workload identity: the token is fetched off the request's thread, so
    concurrent calls each fail within their own budget, not Entra's read timeouts."""
    from webapp import budget
    from webapp.settings import Settings
    from webapp.storage import BlobStore, StorageUnavailable

    for name, value in workload_identity_env.items():
        monkeypatch.setenv(name, value)  # azure-identity reads the authority from the environment
    settings = Settings.from_env(
        {
            **workload_identity_env,
            **HUNG,
            "DATABASE_URL": "postgresql://webapp@127.0.0.1:1/webapp",  # not used here
            # Never reached: without a token no request leaves.
            "AZURE_STORAGE_ACCOUNT_URL": f"https://127.0.0.1:{entra.port}",
        }
    )
    store = BlobStore.from_settings(settings)
    entra.freeze()
    results: list = [None] * 6

    def ping(i):
        started = time.monotonic()
        with budget.scope(settings.dependency_budget):
            try:
                store.ping()
            except StorageUnavailable as exc:
                results[i] = (str(exc), time.monotonic() - started)

    try:
        threads = [threading.Thread(target=ping, args=(i,)) for i in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(15)
    finally:
        store.close()
    assert all(r is not None for r in results), results
    assert max(r[1] for r in results) < settings.dependency_budget + SLACK, results
    assert all("Entra token" in r[0] or "budget" in r[0] for r in results), results


def test_a_hung_token_endpoint_costs_requests_their_budget_and_the_app_recovers(
    entra, workload_identity_env, postgres, azurite, gunicorn
):
    """gunicorn in the app's Azure database mode, Entra hanging: concurrent requests that need
    a new token each answer 503 within their budget, the liveness endpoint stays fast, and
    once Entra answers again the next request gets a token at once (the hung fetch is not
    waited out)."""
    from test_webapp_frozen import Probe, concurrently, upload
    from webapp_testkit import http

    role = f"id-webapp-{secrets.token_hex(4)}"
    postgres.create_role(role, entra.token)  # the token is the role's password here
    postgres.create_schema(postgres.APP_DB, role, owner=role)
    entra.lifetime = 1  # every token is stale a second after it was issued
    budget_seconds = float(HUNG["DEPENDENCY_BUDGET"])
    g = gunicorn(
        {
            **workload_identity_env,
            **HUNG,
            "GUNICORN_THREADS": "6",
            "AZURE_POSTGRES_ENTRA": "true",
            "PGHOST": "127.0.0.1",
            "PGPORT": str(postgres.port),
            "PGDATABASE": postgres.APP_DB,
            "PGUSER": role,
            "AZURE_STORAGE_CONNECTION_STRING": azurite.connection_string(),
            "AZURE_STORAGE_CONTAINER": f"entra-{secrets.token_hex(4)}",
        }
    )
    assert upload(g.base, b"signed in with a token", "a.txt")[0] == 201
    fetched = entra.requests

    entra.freeze()
    time.sleep(1.1)  # the last token expires
    health = Probe(g.health)
    health.start()
    results = concurrently(
        [lambda: http("GET", g.base + "/api/files") for _ in range(4)]
        + [lambda: upload(g.base, b"during", "during.txt"), lambda: http("GET", g.base + "/readyz")]
    )
    healthz = health.finish()
    assert [r[0] for r in results] == [503] * 6, [r[1] for r in results]
    assert max(r[2] for r in results[:5]) < budget_seconds + SLACK, [r[2] for r in results]
    assert results[5][2] < float(HUNG["READY_TIMEOUT"]) + SLACK
    assert "no Entra token" in g.output()  # the reason, in the log
    assert healthz and all(s == 200 for s, _ in healthz) and max(t for _, t in healthz) < 0.5

    entra.thaw()  # the connections it holds stay hung
    thawed, deadline = time.monotonic(), time.monotonic() + 10
    while http("GET", g.base + "/api/files")[0] != 200 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert time.monotonic() - thawed < budget_seconds + SLACK
    assert entra.requests > fetched
    assert g.alive() and "Traceback" not in g.output()
