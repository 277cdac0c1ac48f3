"""The plain-text-secret guardrail (policy rule 4) catches every key ending it claims, and only those."""

from __future__ import annotations

import pytest

from policy.rules import (
    SECRET,
    SECRET_KEY_ENDINGS,
    SECRET_KEY_PREFIX_EXCEPTIONS,
    UNKNOWN_MARK,
    Context,
    Resource,
    is_secret_key,
    no_plaintext_secret_inputs,
    plaintext_secret_paths,
)

# One real-world key per ending the rule claims, in the spellings charts and SDKs use.
CAUGHT = {
    "kubeconfig": ["kubeconfig", "adminKubeconfig", "kube_config"],
    "password": ["password", "adminPassword", "DB_PASSWORD", "argocdServerAdminPassword"],
    "passwd": ["passwd", "rootPasswd"],
    "secret": ["secret", "webhookSecret", "client-secret-value.secret"],
    "clientsecret": ["clientSecret", "azureClientSecret", "client_secret", "AZURE_CLIENT_SECRET"],
    "token": ["token", "bearerToken", "github-token", "refresh_token"],
    "connectionstring": ["connectionString", "storage_connection_string", "AzureWebJobsStorage.ConnectionString"],
    "privatekey": ["privateKey", "ssh-private-key", "tls_private_key"],
    "accesskey": ["accessKey", "storageAccessKey", "AWS_SECRET_ACCESS_KEY"],
    "apikey": ["apiKey", "api-key", "X_API_KEY"],
    "sastoken": ["sasToken", "sas_token"],
    "clientkeydata": ["client-key-data", "clientKeyData"],
}
# References to a secret (its name, where it lives), flags and other keys: not secrets.
NOT_CAUGHT = [
    "existingSecret", "existing-secret", "existing_client_secret", "existingToken",
    "secretName", "tokenSecretName", "secretRef", "passwordFile", "tokenPath",
    "kubeconfigPath", "clientId", "privateKeySecretRef", "keyVaultName", "name", "secrets",
]


def test_every_claimed_ending_is_exercised():
    assert set(CAUGHT) == set(SECRET_KEY_ENDINGS)


@pytest.mark.parametrize("prefix", SECRET_KEY_PREFIX_EXCEPTIONS)
@pytest.mark.parametrize("ending", sorted(SECRET_KEY_ENDINGS))
def test_an_exception_prefix_spares_exactly_the_keys_it_starts(prefix, ending):
    """A chart's `existingSecret` names a Secret, it is none: spared however it is spelled, and only at the start."""
    named = f"{prefix}_{ending}"
    for key in (named, named.upper(), f"{prefix.capitalize()}-{ending}"):
        assert not is_secret_key(key), key
        assert no_plaintext_secret_inputs(Resource("t", "r", {"values": {key: "my-secret"}}), Context()) == []
    # The same ending without the prefix, or with it in the middle, is still a secret.
    for key in (ending, f"use_{prefix}_{ending}", f"{prefix[:-1]}_{ending}"):
        assert is_secret_key(key), key
        [msg] = no_plaintext_secret_inputs(Resource("t", "r", {"values": {key: "hunter2"}}), Context())
        assert f"values.{key}" in msg


@pytest.mark.parametrize("key", [k for keys in CAUGHT.values() for k in keys])
def test_secret_keys_are_caught_in_plain_text(key):
    assert is_secret_key(key)
    res = Resource("kubernetes:helm.sh/v3:Release", "r", {"values": {"a": [{key: "hunter2"}]}})
    [msg] = no_plaintext_secret_inputs(res, Context())
    assert "values.a[0]." + key in msg
    # ...and pass once marked secret, while unknown (a preview), or empty.
    for fine in (SECRET, UNKNOWN_MARK, "", "   "):
        assert no_plaintext_secret_inputs(Resource("t", "r", {key: fine}), Context()) == []


@pytest.mark.parametrize("key", NOT_CAUGHT)
def test_references_and_other_keys_are_not_secrets(key):
    assert not is_secret_key(key)
    assert list(plaintext_secret_paths({key: "some-value"})) == []


def test_non_string_values_under_secret_keys_are_not_reported_but_their_keys_are_searched():
    assert list(plaintext_secret_paths({"createSecret": True, "secret": {"token": "t"}})) == [("secret", "token")]
    assert list(plaintext_secret_paths({"password": 1234})) == []
