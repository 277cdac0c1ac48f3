"""No secret value appears in any configuration error, whatever key it was set under.

What is secret is decided by the value's secrecy first: Pulumi tells the program which
top-level keys were set with `--secret` (PULUMI_CONFIG_SECRET_KEYS; the mocks get the same
list), so everything under such a key is masked, in the value shown and in the rule texts
that quote sibling values. Values under the declared secret names or credential-like names
(kubeconfig, ...Secret, ...Token, ...), and text that reads as a credential, are masked too,
for a secret set without --secret under a misspelled or unknown key.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from stacks.config import ConfigError
from stacks.validation import load
from tests.test_config import BASE
from tests.test_config_hybrid import CLIENT_SECRET, HYBRID, KUBECONFIG, SECRETS, TOKEN

PASSWORD = "P4ssw0rd-very-secret"


def put(base: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    raw = copy.deepcopy(base)
    node = raw
    parts = path.split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value
    return raw


# (id, raw, secret keys, the key the message names, the secret texts that must not appear)
CASES: list[tuple[str, dict[str, Any], frozenset[str], str, tuple[str, ...]]] = [
    # Known secret keys.
    ("plain-kubeconfig", HYBRID, SECRETS - {"kubeconfig"}, "kubeconfig", (TOKEN, "client-key-data")),
    ("plain-client-secret", HYBRID, SECRETS - {"servicePrincipalClientSecret"}, "servicePrincipalClientSecret", (CLIENT_SECRET,)),
    # Without `kind` the stack most likely forgot `kind: hybrid` (the message is on kind); with `kind: aks` on the key.
    ("kubeconfig-without-kind", put(BASE, "kubeconfig", KUBECONFIG), frozenset({"kubeconfig"}), "kind", (TOKEN,)),
    ("client-secret-without-kind", put(BASE, "servicePrincipalClientSecret", CLIENT_SECRET), frozenset({"servicePrincipalClientSecret"}), "kind", (CLIENT_SECRET,)),
    ("kubeconfig-on-aks", put(put(BASE, "kind", "aks"), "kubeconfig", KUBECONFIG), frozenset({"kubeconfig"}), "kubeconfig", (TOKEN,)),
    ("client-secret-on-aks", put(put(BASE, "kind", "aks"), "servicePrincipalClientSecret", CLIENT_SECRET), frozenset({"servicePrincipalClientSecret"}), "servicePrincipalClientSecret", (CLIENT_SECRET,)),
    ("client-secret-not-a-string", put(HYBRID, "servicePrincipalClientSecret", {"password": CLIENT_SECRET}), SECRETS, "servicePrincipalClientSecret", (CLIENT_SECRET,)),
    # Misspelled top-level keys, with and without --secret.
    ("kubeConfig-secret", put(BASE, "kubeConfig", KUBECONFIG), frozenset({"kubeConfig"}), "kubeConfig", (TOKEN,)),
    ("kubeConfig-plain", put(BASE, "kubeConfig", KUBECONFIG), frozenset(), "kubeConfig", (TOKEN,)),
    ("servicePrincipalSecret-secret", put(BASE, "servicePrincipalSecret", CLIENT_SECRET), frozenset({"servicePrincipalSecret"}), "servicePrincipalSecret", (CLIENT_SECRET,)),
    ("servicePrincipalSecret-plain", put(BASE, "servicePrincipalSecret", CLIENT_SECRET), frozenset(), "servicePrincipalSecret", (CLIENT_SECRET,)),
    ("clientsecret-plain", put(BASE, "clientsecret", CLIENT_SECRET), frozenset(), "clientsecret", (CLIENT_SECRET,)),
    # Unknown keys set with --secret.
    ("unknown-secret", put(BASE, "dbAdmin", PASSWORD), frozenset({"dbAdmin"}), "dbAdmin", (PASSWORD,)),
    ("unknown-secret-mapping", put(BASE, "extra", {"user": "u", "pw": PASSWORD}), frozenset({"extra"}), "extra", (PASSWORD,)),
    ("unknown-plain-password-key", put(BASE, "adminPassword", PASSWORD), frozenset(), "adminPassword", (PASSWORD,)),
    # Known, non-secret keys set with --secret and given a wrong value.
    ("environment-secret", put(BASE, "environment", PASSWORD), frozenset({"environment"}), "environment", (PASSWORD,)),
    ("tags-secret-bad-name", put(BASE, "tags", {"a/b": PASSWORD}), frozenset({"tags"}), "tags.a/b", (PASSWORD, "a/b: got 'a/b")),
    ("tags-secret-long-value", put(BASE, "tags", {"owner": PASSWORD * 20}), frozenset({"tags"}), "tags.owner", (PASSWORD,)),
    ("tags-secret-case-duplicate", put(BASE, "tags", {"Owner": PASSWORD, "owner": "x"}), frozenset({"tags"}), "tags.owner", (PASSWORD,)),
    ("addons-secret-repo-url", put(BASE, "addons.argocd.repoUrl", f"https://x:{PASSWORD}@github.com/a/b.git"), frozenset({"addons"}), "addons.argocd.repoUrl", (PASSWORD,)),
    # Nested keys: under a key set with --secret --path, or named like a secret.
    ("nested-under-secret-cluster", put(BASE, "cluster.systemPool.labels", {"team": PASSWORD + " !"}), frozenset({"cluster"}), "cluster.systemPool.labels.team", (PASSWORD,)),
    ("nested-unknown-under-secret", put(BASE, "cluster.adminPw", PASSWORD), frozenset({"cluster"}), "cluster.adminPw", (PASSWORD,)),
    ("nested-kubeconfig-in-hybrid", put(HYBRID, "hybrid.kubeconfig", KUBECONFIG), SECRETS, "hybrid.kubeconfig", (TOKEN,)),
    ("nested-token-plain", put(BASE, "addons.argocd.token", PASSWORD), frozenset(), "addons.argocd.token", (PASSWORD,)),
    ("nested-secret-plain", put(BASE, "cluster.network.clientSecret", CLIENT_SECRET), frozenset(), "cluster.network.clientSecret", (CLIENT_SECRET,)),
    # `pulumi config set --path --secret tenants[0].subscriptionId ...`: Pulumi lists the top-level key
    # (`tenants`) as secret (config.Map.SecureKeys: a value is secure when any leaf is), so every
    # leaf under it is masked, here the subscription quoted by the scope rule.
    ("path-secret-leaf-quoted-by-a-rule", put(BASE, "tenants", [{"name": "pay", "subscriptionId": "8c1d2e3f-4a5b-4c6d-8e7f-9a0b1c2d3e4f", "namespaces": ["pay"], "sourceRepos": ["https://github.com/a/b.git"], "roles": [{"role": "Reader", "scope": "/subscriptions/x"}]}]),
     frozenset({"tenants"}), "tenants[0].roles[0].scope", ("8c1d2e3f-4a5b-4c6d-8e7f-9a0b1c2d3e4f", "8C1D2E3F")),
    # A rule's text quoting a sibling value of a secret key.
    ("sibling-value-in-rule", put(BASE, "cluster.network", {"podCidr": "10.123.0.0/16", "serviceCidr": "10.123.128.0/17"}), frozenset({"cluster"}), "cluster.network.serviceCidr", ("10.123.0.0/16", "10.123.128.0/17")),
    ("context-of-secret-hybrid", put(HYBRID, "hybrid.context", "secret-ctx-name"), SECRETS | {"hybrid"}, "hybrid.context", ("secret-ctx-name",)),
    # A credential document pasted under an ordinary key, not as a secret.
    ("kubeconfig-pasted-as-context", put(HYBRID, "hybrid.context", KUBECONFIG), SECRETS, "hybrid.context", (TOKEN,)),
    ("kubeconfig-pasted-as-tag", put(BASE, "tags", {"note": KUBECONFIG}), frozenset(), "tags.note", (TOKEN,)),
    # Pasted az output in the secret: refused without quoting it.
    ("az-json-secret", put(HYBRID, "servicePrincipalClientSecret", '{"appId": "a", "password": "%s"}' % CLIENT_SECRET), SECRETS, "servicePrincipalClientSecret", (CLIENT_SECRET,)),
    ("kubeconfig-not-yaml", put(HYBRID, "kubeconfig", f"users: [{{token: {TOKEN}}}\nclusters: ["), SECRETS, "kubeconfig", (TOKEN,)),
    # A rule compares Azure names ignoring case and quotes them lowercased: still masked.
    ("existing-group-quoted-lowercased", put(put(BASE, "existingResourceGroup", "rg-" + PASSWORD), "appResourceGroups", ["RG-" + PASSWORD.upper()]),
     frozenset({"existingResourceGroup"}), "appResourceGroups[0]", (PASSWORD, PASSWORD.lower(), PASSWORD.upper())),
    # A plain value that contains a secret one (the platform group derived from a secret environment).
    ("derived-from-secret-environment", put(put(BASE, "environment", "hush42"), "appResourceGroups", ["rg-hush42-platform"]),
     frozenset({"environment"}), "appResourceGroups[0]", ("hush42",)),
    # Credentials in a Git URL are refused, and the refusal quotes the URL without them.
    ("repo-url-user-password", put(BASE, "addons.argocd.repoUrl", f"https://oauth2:{PASSWORD}@gitlab.com/a/b.git"), frozenset(), "addons.argocd.repoUrl", (PASSWORD, "oauth2:")),
    ("repo-url-token-user", put(BASE, "addons.argocd.repoUrl", f"https://{PASSWORD}@github.com/a/b"), frozenset(), "addons.argocd.repoUrl", (PASSWORD,)),
    ("repo-url-ssh-password", put(BASE, "addons.argocd.repoUrl", f"ssh://git:{PASSWORD}@github.com/a/b.git"), frozenset(), "addons.argocd.repoUrl", (PASSWORD,)),
    ("repo-url-scp-password", put(BASE, "addons.argocd.repoUrl", f"git:{PASSWORD}@github.com:a/b.git"), frozenset(), "addons.argocd.repoUrl", (PASSWORD,)),
    ("repo-url-query-access-token", put(BASE, "addons.argocd.repoUrl", f"https://github.com/a/b.git?access_token={PASSWORD}"), frozenset(), "addons.argocd.repoUrl", (PASSWORD,)),
    ("repo-url-query-private-token", put(BASE, "addons.argocd.repoUrl", f"https://gitlab.com/a/b.git?ref=main&private_token={PASSWORD}"), frozenset(), "addons.argocd.repoUrl", (PASSWORD,)),
    ("tenant-source-repo-user-password", put(BASE, "tenants", [{"name": "pay", "subscriptionId": "8c1d2e3f-4a5b-4c6d-8e7f-9a0b1c2d3e4f", "namespaces": ["pay"], "sourceRepos": [f"https://u:{PASSWORD}@github.com/a/b.git"]}]),
     frozenset(), "tenants[0].sourceRepos[0]", (PASSWORD,)),
    ("tenant-source-repo-query-token", put(BASE, "tenants", [{"name": "pay", "subscriptionId": "8c1d2e3f-4a5b-4c6d-8e7f-9a0b1c2d3e4f", "namespaces": ["pay"], "sourceRepos": [f"https://github.com/a/b.git?token={PASSWORD}"]}]),
     frozenset(), "tenants[0].sourceRepos[0]", (PASSWORD,)),
]


@pytest.mark.parametrize("raw, secret_keys, key, hidden", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_no_secret_in_any_message(raw, secret_keys, key, hidden):
    with pytest.raises(ConfigError) as err:
        load(raw, secret_keys)
    text = str(err.value)
    assert any(p.startswith(f"aks-platform:{key}: got ") for p in err.value.problems), err.value.problems
    for secret in hidden:
        assert secret not in text, text


# (raw, secret keys, text the message must keep): masking hides the secret's leaf values as
# whole tokens, never the schema's key names nor words that merely contain a secret.
READABLE: list[tuple[str, dict[str, Any], frozenset[str], str]] = [
    ("known-keys-of-a-secret-section", put(BASE, "cluster.systemPool.foo", "x"), frozenset({"cluster"}), "known: name, vmSize, count, minCount"),
    ("a-word-containing-a-secret-value", put(put(BASE, "tenants", [{"name": "nam", "subscriptionId": "8c1d2e3f-4a5b-4c6d-8e7f-9a0b1c2d3e4f", "namespaces": ["nam"], "sourceRepos": ["https://github.com/a/b.git"], "roles": [{"role": "Reader", "scope": "/subscriptions/x"}]}]), "environment", "dev"),
     frozenset({"tenants"}), "a resource group ID names the group: .../resourceGroups/<name>"),
    ("a-secret-context-keeps-the-word-context", put(HYBRID, "hybrid.context", "ctx-" + PASSWORD), SECRETS | {"hybrid"}, "a context the kubeconfig has"),
    ("ssh-user-is-no-credential", put(BASE, "tenants", [{"name": "pay", "subscriptionId": "8c1d2e3f-4a5b-4c6d-8e7f-9a0b1c2d3e4f", "namespaces": ["pay"], "sourceRepos": ["ssh://git@github.com/a/*.git"]}]), frozenset(), "got 'ssh://git@github.com/a/*.git'"),
]


@pytest.mark.parametrize("raw, secret_keys, kept", [c[1:] for c in READABLE], ids=[c[0] for c in READABLE])
def test_masking_keeps_the_message_readable(raw, secret_keys, kept):
    with pytest.raises(ConfigError) as err:
        load(raw, secret_keys)
    [msg] = err.value.problems
    assert kept in msg, msg
    assert "[secret]s" not in msg and "<[secret]>" not in msg, msg


def test_a_masked_value_says_so():
    with pytest.raises(ConfigError) as err:
        load(put(BASE, "environment", PASSWORD), frozenset({"environment"}))
    [msg] = err.value.problems
    assert msg.startswith("aks-platform:environment: got [secret, not shown]; allowed: 2-16 characters")


def test_non_secret_values_are_still_shown():
    """Masking is not blanket: without secrecy the message quotes the value, so the user can find it."""
    with pytest.raises(ConfigError) as err:
        load(put(BASE, "environment", "Dev_1"))
    assert "got 'Dev_1'" in str(err.value)
