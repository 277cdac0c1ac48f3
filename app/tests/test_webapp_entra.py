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

from webapp.azure_auth import POSTGRES_SCOPE, EntraTokenProvider


class FakeClock:
    def __init__(self, now: float = 1_800_000_000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


class FakeCredential:
    """Hands out the scripted tokens in order and records each request."""

    def __init__(self, tokens: list[AccessToken | Exception], delay: float = 0.0):
        self._tokens = list(tokens)
        self.scopes: list[tuple[str, ...]] = []
        self._delay = delay

    def get_token(self, *scopes, **kwargs) -> AccessToken:
        self.scopes.append(scopes)
        time.sleep(self._delay)
        item = self._tokens.pop(0)
        if isinstance(item, Exception):
            raise item
        return item


def test_token_is_cached_until_the_refresh_margin():
    clock = FakeClock()
    cred = FakeCredential([AccessToken("t1", int(clock.now) + 3600), AccessToken("t2", int(clock.now) + 7200)])
    provider = EntraTokenProvider(cred, clock=clock, refresh_margin=300)

    assert provider.token() == "t1"
    clock.now += 3600 - 301  # one second before the margin
    assert provider.token() == "t1"
    assert len(cred.scopes) == 1
    clock.now += 1  # inside the margin: the token still works, but gets replaced now
    assert provider.token() == "t2"
    assert provider.connection_kwargs() == {"password": "t2"}
    assert cred.scopes == [(POSTGRES_SCOPE,), (POSTGRES_SCOPE,)]
    assert POSTGRES_SCOPE == "https://ossrdbms-aad.database.windows.net/.default"


def test_expired_token_is_never_returned():
    clock = FakeClock()
    cred = FakeCredential([AccessToken("old", int(clock.now) + 60), AccessToken("new", int(clock.now) + 3600)])
    provider = EntraTokenProvider(cred, clock=clock, refresh_margin=300)
    # A token that is already inside the margin when issued is used once, then replaced.
    assert provider.token() == "old"
    assert provider.token() == "new"


def test_a_failed_refresh_raises_and_the_next_call_retries():
    clock = FakeClock()
    cred = FakeCredential(
        [AccessToken("t1", int(clock.now) + 600), RuntimeError("token endpoint down"), AccessToken("t2", 10**10)]
    )
    provider = EntraTokenProvider(cred, clock=clock, refresh_margin=300)
    assert provider.token() == "t1"
    clock.now += 400
    with pytest.raises(RuntimeError, match="token endpoint down"):
        provider.token()
    assert provider.token() == "t2"


def test_concurrent_callers_share_one_refresh():
    clock = FakeClock()
    cred = FakeCredential([AccessToken("only", int(clock.now) + 3600)], delay=0.05)
    provider = EntraTokenProvider(cred, clock=clock)
    results: list[str] = []
    threads = [threading.Thread(target=lambda: results.append(provider.token())) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == ["only"] * 8
    assert len(cred.scopes) == 1


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

        # The token nears expiry and the identity's password (the token) changes with it.
        clock.now += 3600 - 60
        postgres.set_password(role, second)
        assert client.get("/api/files").get_json()["total"] == 1
        assert len(cred.scopes) == 2
        assert client.get("/readyz").status_code == 200
    finally:
        app.extensions["webapp"].close()
