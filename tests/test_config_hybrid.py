"""Hybrid config is checked for content: the kubeconfig (secret or file) and the service-principal secret.

Every case is refused by the config step with one message naming its key, never quoting
the document or the secret, and the real program registers nothing for it.
"""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import Any, Callable

import pytest
import yaml

from offline.evaluate import OFFLINE_KIND_PUBLIC_KEY
from offline.mocks import admin_kubeconfig
from stacks.config import ConfigError
from stacks.validation import load
from tests.test_config import BASE

CLIENT_ID = "5b9c3f0e-2d7a-4e1b-8c6f-0a9d8e7f6c5b"
OBJECT_ID = "9e8d7c6b-5a4f-4e3d-8c2b-1a0f9e8d7c6b"
CLIENT_SECRET = "Zx8Q~c1i3ntS3cr3tV4lue.abc"
ISSUER = "https://oidc.example.com/clusters/kind-platform/"
KUBECONFIG = admin_kubeconfig("kind-platform", "local", "kind-platform")
TOKEN = yaml.safe_load(KUBECONFIG)["users"][0]["user"]["token"]
SECRETS = frozenset({"kubeconfig", "servicePrincipalClientSecret"})

HYBRID: dict[str, Any] = {
    "kind": "hybrid",
    "environment": "hybrid",
    "location": "westeurope",
    "appResourceGroups": ["rg-hybrid-webapp"],
    "hybrid": {"context": "kind-platform", "servicePrincipalClientId": CLIENT_ID, "servicePrincipalObjectId": OBJECT_ID},
    "kubeconfig": KUBECONFIG,
    "servicePrincipalClientSecret": CLIENT_SECRET,
    "addons": BASE["addons"],
}


def published(**changes: Any) -> dict[str, Any]:
    """A hybrid stack whose issuer the platform publishes (`make kind`): it creates a storage account."""
    changes = {"hybrid_serviceAccountPublicKeyPath": str(OFFLINE_KIND_PUBLIC_KEY), **changes}
    return hybrid(servicePrincipalClientSecret=..., hybrid_servicePrincipalClientId=..., hybrid_servicePrincipalObjectId=..., **changes)


def many_tags(n: int) -> dict[str, str]:
    return {f"t{i:02d}": "x" for i in range(n)}


def hybrid(**changes: Any) -> dict[str, Any]:
    """HYBRID with top-level keys replaced (... removes) and `hybrid_<key>` for keys of the hybrid section."""
    raw = copy.deepcopy(HYBRID)
    for key, value in changes.items():
        node, name = (raw["hybrid"], key[len("hybrid_"):]) if key.startswith("hybrid_") else (raw, key)
        if value is ...:
            node.pop(name, None)
        else:
            node[name] = value
    return raw


def kubeconfig_without_current_context() -> str:
    doc = yaml.safe_load(KUBECONFIG)
    del doc["current-context"]
    return yaml.safe_dump(doc)


def kubeconfig_with(change: Callable[[dict[str, Any]], Any]) -> str:
    doc = yaml.safe_load(KUBECONFIG)
    change(doc)
    return yaml.safe_dump(doc)


# Malformed kubeconfig content: each refused with a reason, never a traceback or the document.
MALFORMED_KUBECONFIGS: list[tuple[str, Callable[[dict[str, Any]], Any], str]] = [
    ("context-is-a-string", lambda d: d["contexts"][0].__setitem__("context", "foo"), "contexts[0] has a str as its `context`"),
    ("context-name-is-a-list", lambda d: d["contexts"][0].__setitem__("name", ["a"]), "contexts[0] has no name"),
    ("context-entry-is-a-string", lambda d: d["contexts"].append("x"), "contexts[1] is a str, not a mapping"),
    ("cluster-name-is-a-list", lambda d: d["clusters"][0].__setitem__("name", ["a"]), "clusters[0] has no name"),
    ("cluster-body-is-a-list", lambda d: d["clusters"][0].__setitem__("cluster", [1]), "clusters[0] has a list as its `cluster`"),
    ("user-name-is-a-mapping", lambda d: d["users"][0].__setitem__("name", {"a": 1}), "users[0] has no name"),
    ("users-is-a-mapping", lambda d: d.__setitem__("users", {"a": 1}), "`users` is a dict, not a list"),
    ("contexts-null", lambda d: d.__setitem__("contexts", None), "found a mapping with 6 keys"),
    ("no-users", lambda d: d.pop("users"), "names one of its users"),
    ("user-missing", lambda d: d["contexts"][0]["context"].__setitem__("user", "ghost"), "names one of its users (client-go refuses it otherwise); it names an undefined one"),
    ("user-not-text", lambda d: d["contexts"][0]["context"].__setitem__("user", ["ghost"]), "it names a list"),
    ("cluster-not-text", lambda d: d["contexts"][0]["context"].__setitem__("cluster", {"a": 1}), "names one of its clusters; it names a dict"),
    ("cluster-without-server", lambda d: d["clusters"][0]["cluster"].pop("server"), "has a server URL; it has none"),
]


def kubeconfig_with_dangling_context() -> str:
    doc = yaml.safe_load(KUBECONFIG)
    doc["contexts"][0]["context"]["cluster"] = "gone"
    return yaml.safe_dump(doc)


AZ_SP_JSON = json.dumps({"appId": CLIENT_ID, "displayName": "platform", "password": CLIENT_SECRET, "tenant": "t"})
AZ_SDK_AUTH_JSON = json.dumps({"clientId": CLIENT_ID, "clientSecret": CLIENT_SECRET, "subscriptionId": "s", "tenantId": "t"})


def file_with(content: bytes) -> Callable[[Path], str]:
    def make(tmp: Path) -> str:
        path = tmp / "kubeconfig"
        path.write_bytes(content)
        return str(path)

    return make


# (id, raw or a function of a temp dir giving raw, expected key, text in "allowed")
Case = tuple[str, Any, str, str]
WITH_PATH = {"kubeconfig": ...}

CASES: list[Case] = [
    ("empty-kubeconfig", hybrid(kubeconfig=""), "kubeconfig", "empty"),
    ("blank-kubeconfig", hybrid(kubeconfig="  \n"), "kubeconfig", "fall back to the machine's default kubeconfig"),
    ("not-yaml", hybrid(kubeconfig=f"users: [{{token: {TOKEN}}}\nclusters: ["), "kubeconfig", "not YAML"),
    ("a-plain-string", hybrid(kubeconfig=f"just-a-token-{TOKEN}"), "kubeconfig", "found a str"),
    ("not-a-kubeconfig", hybrid(kubeconfig=AZ_SP_JSON), "kubeconfig", "found a mapping with 4 keys, none of them a kubeconfig's"),
    ("keys-not-quoted", hybrid(kubeconfig=f"{TOKEN}: 1\n"), "kubeconfig", "found a mapping with 1 keys"),
    ("no-such-context", hybrid(hybrid_context="kind-other"), "hybrid.context", "kubeconfig has (kind-platform)"),
    ("no-current-context", hybrid(kubeconfig=kubeconfig_without_current_context(), hybrid_context=...), "hybrid.context", "no current-context"),
    ("dangling-context", hybrid(kubeconfig=kubeconfig_with_dangling_context()), "kubeconfig", "names one of its clusters"),
    ("both", lambda tmp: hybrid(hybrid_kubeconfigPath=file_with(KUBECONFIG.encode())(tmp)), "hybrid.kubeconfigPath", "exactly one"),
    ("neither", hybrid(kubeconfig=...), "hybrid.kubeconfigPath", "exactly one"),
    ("path-nul", hybrid(kubeconfig=..., hybrid_kubeconfigPath="/tmp/a\x00b"), "hybrid.kubeconfigPath", "without a NUL character"),
    *(
        (f"public-key-{name}", (lambda tmp, path=path: published(hybrid_serviceAccountPublicKeyPath=path(tmp))), "hybrid.serviceAccountPublicKeyPath", allowed)
        for name, path, allowed in (
            ("nul", lambda tmp: "/tmp/a\x00b", "a path to a public key file without a NUL character"),
            ("no-such-user", lambda tmp: "~nosuchuser-xyz/k.pub", "a path whose ~user can be expanded"),
            ("too-long", lambda tmp: "/tmp/" + "a" * 5000, "a readable public key file (file name too long)"),
            ("directory", lambda tmp: str(tmp), "a public key file, not a directory"),
            ("missing", lambda tmp: str(tmp / "absent.pub"), "none exists at this path"),
            ("not-text", lambda tmp: file_with(b"\xff\xfe\x00bin")(tmp), "not UTF-8 text"),
            ("not-a-key", lambda tmp: file_with(KUBECONFIG.encode())(tmp), "an RSA public key in PEM"),
        )
    ),
    ("path-no-such-user", hybrid(kubeconfig=..., hybrid_kubeconfigPath="~nosuchuser-xyz/.kube/config"), "hybrid.kubeconfigPath", "~user"),
    ("path-too-long", hybrid(kubeconfig=..., hybrid_kubeconfigPath="/tmp/" + "a" * 5000), "hybrid.kubeconfigPath", "too long"),
    ("path-is-a-directory", lambda tmp: hybrid(kubeconfig=..., hybrid_kubeconfigPath=str(tmp)), "hybrid.kubeconfigPath", "not a directory"),
    ("path-missing", lambda tmp: hybrid(kubeconfig=..., hybrid_kubeconfigPath=str(tmp / "absent")), "hybrid.kubeconfigPath", "a readable kubeconfig file"),
    ("path-not-text", lambda tmp: hybrid(kubeconfig=..., hybrid_kubeconfigPath=file_with(b"\xff\xfe\x00bin")(tmp)), "hybrid.kubeconfigPath", "not UTF-8"),
    ("path-empty-file", lambda tmp: hybrid(kubeconfig=..., hybrid_kubeconfigPath=file_with(b"")(tmp)), "hybrid.kubeconfigPath", "empty"),
    ("path-wrong-context", lambda tmp: hybrid(kubeconfig=..., hybrid_context="kind-x", hybrid_kubeconfigPath=file_with(KUBECONFIG.encode())(tmp)), "hybrid.context", "it has no 'kind-x'"),
    ("empty-client-secret", hybrid(servicePrincipalClientSecret=""), "servicePrincipalClientSecret", "non-empty"),
    ("blank-client-secret", hybrid(servicePrincipalClientSecret="   "), "servicePrincipalClientSecret", "non-empty"),
    ("padded-client-secret", hybrid(servicePrincipalClientSecret=f" {CLIENT_SECRET}\n"), "servicePrincipalClientSecret", "whitespace"),
    ("az-create-for-rbac-json", hybrid(servicePrincipalClientSecret=AZ_SP_JSON), "servicePrincipalClientSecret", "`password` field"),
    ("az-sdk-auth-json", hybrid(servicePrincipalClientSecret=AZ_SDK_AUTH_JSON), "servicePrincipalClientSecret", "`clientSecret` field"),
    ("other-json", hybrid(servicePrincipalClientSecret='{"value": "x"}'), "servicePrincipalClientSecret", "not a JSON document"),
    ("client-id-without-secret", hybrid(servicePrincipalClientSecret=...), "servicePrincipalClientSecret", "its client secret"),
    ("neither-issuer-nor-sp", hybrid(servicePrincipalClientSecret=..., hybrid_servicePrincipalClientId=..., hybrid_servicePrincipalObjectId=...), "hybrid.servicePrincipalClientId", "oidcIssuerUrl"),
    ("issuer-and-stray-secret", hybrid(hybrid_oidcIssuerUrl=ISSUER, hybrid_servicePrincipalClientId=..., hybrid_servicePrincipalObjectId=...), "servicePrincipalClientSecret", "nothing with hybrid.oidcIssuerUrl"),
    ("issuer-and-client-id", hybrid(hybrid_oidcIssuerUrl=ISSUER), "hybrid.oidcIssuerUrl", "not both"),
    ("object-id-alone", hybrid(servicePrincipalClientSecret=..., hybrid_oidcIssuerUrl=ISSUER, hybrid_servicePrincipalClientId=...), "hybrid.servicePrincipalObjectId", "only together"),
    ("issuer-with-query", hybrid(servicePrincipalClientSecret=..., hybrid_servicePrincipalClientId=..., hybrid_servicePrincipalObjectId=..., hybrid_oidcIssuerUrl=ISSUER + "?x=1"), "hybrid.oidcIssuerUrl", "no query or fragment"),
    ("issuer-with-fragment", hybrid(servicePrincipalClientSecret=..., hybrid_servicePrincipalClientId=..., hybrid_servicePrincipalObjectId=..., hybrid_oidcIssuerUrl=ISSUER + "#k"), "hybrid.oidcIssuerUrl", "no query or fragment"),
    ("issuer-http", hybrid(servicePrincipalClientSecret=..., hybrid_servicePrincipalClientId=..., hybrid_servicePrincipalObjectId=..., hybrid_oidcIssuerUrl="http://issuer.example.com"), "hybrid.oidcIssuerUrl", "https://"),
    ("bad-client-id", hybrid(hybrid_servicePrincipalClientId="platform-sp"), "hybrid.servicePrincipalClientId", "GUID"),
    ("bad-context", hybrid(hybrid_context="kind platform"), "hybrid.context", "context name"),
    ("unknown-hybrid-key", hybrid(hybrid_oidcIssuer=ISSUER), "hybrid.oidcIssuer", "did you mean 'oidcIssuerUrl'?"),
    ("hybrid-not-a-mapping", hybrid(hybrid=None) | {"hybrid": "kind-platform"}, "hybrid", "a mapping"),
    ("cluster-on-hybrid", hybrid(cluster={"skuTier": "Free"}), "cluster", "existing cluster"),
    # The published issuer's storage account: its added purpose tag, Azure's 128-character names there.
    ("issuer-purpose-tag", published(tags={"AKS-Platform-Purpose": "mine"}), "tags.AKS-Platform-Purpose", "on the OIDC issuer's storage account"),
    ("issuer-47-tags", published(tags=many_tags(47)), "tags", "at most 46 tags"),
    ("issuer-tag-name-129", published(tags={"n" * 129: "x"}), "tags." + "n" * 129, "at most 128 characters"),
    # A hybrid stack that forgot `kind: hybrid`: one message on kind, none on the AKS defaults.
    ("forgot-kind", hybrid(kind=...), "kind", "set `kind: hybrid`"),
    ("forgot-kind-workload-identity", hybrid(kind=..., servicePrincipalClientSecret=..., hybrid_servicePrincipalClientId=..., hybrid_servicePrincipalObjectId=..., hybrid_oidcIssuerUrl=ISSUER), "kind", "a stack with hybrid, kubeconfig (keys"),
    ("forgot-kind-secrets-only", hybrid(kind=..., hybrid=...), "kind", "a stack with kubeconfig, servicePrincipalClientSecret"),
    ("forgot-kind-file", lambda tmp: hybrid(kind=..., kubeconfig=..., hybrid_kubeconfigPath=file_with(KUBECONFIG.encode())(tmp)), "kind", "creates an AKS cluster"),
    ("current-context-a-list", hybrid(kubeconfig=kubeconfig_with(lambda d: d.__setitem__("current-context", ["x"])), hybrid_context=...),
     "kubeconfig", "it has no a list as current-context"),
    *(
        (f"kubeconfig-{name}", hybrid(kubeconfig=kubeconfig_with(change)), "kubeconfig", allowed)
        for name, change, allowed in MALFORMED_KUBECONFIGS
    ),
    *(
        (f"kubeconfig-path-{name}",
         lambda tmp, change=change: hybrid(kubeconfig=..., hybrid_kubeconfigPath=file_with(kubeconfig_with(change).encode())(tmp)),
         "hybrid.kubeconfigPath", allowed)
        for name, change, allowed in MALFORMED_KUBECONFIGS
    ),
]


def resolve(raw: Any, tmp: Path) -> dict[str, Any]:
    return raw(tmp) if callable(raw) else raw


@pytest.mark.parametrize("raw, key, allowed", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_each_hybrid_refusal_is_one_message_without_the_secret(raw, key, allowed, tmp_path):
    raw = resolve(raw, tmp_path)
    with pytest.raises(ConfigError) as err:
        load(raw, SECRETS)
    [msg] = err.value.problems
    assert msg.startswith(f"aks-platform:{key}: got "), msg
    assert allowed in msg, msg
    for secret in (TOKEN, CLIENT_SECRET, "client-key-data"):
        assert secret not in str(err.value)


def test_the_storage_account_rules_apply_only_where_the_issuer_is_published():
    tags = {**many_tags(45), "AKS-Platform-Purpose": "mine", "n" * 300: "x"}
    assert len(load(hybrid(tags=tags), SECRETS).tag_map) == 50
    tags = {**many_tags(45), "n" * 128: "x"}
    assert len(load(published(tags=tags), SECRETS).tag_map) == 49


def test_a_forgotten_kind_does_not_hide_independent_problems():
    """Only what follows from the defaulted kind is suppressed: a bad hybrid key or environment still shows."""
    with pytest.raises(ConfigError) as err:
        load(hybrid(kind=..., environment="Hybrid!", hybrid_servicePrincipalClientId="not-a-guid"), SECRETS)
    assert [p.split(": got ")[0] for p in err.value.problems] == [
        "aks-platform:kind", "aks-platform:environment", "aks-platform:hybrid.servicePrincipalClientId",
    ], err.value.problems
    # An explicit `kind: aks` is a choice: each hybrid key is refused on its own.
    with pytest.raises(ConfigError) as err:
        load(hybrid(kind="aks"), SECRETS)
    assert "aks-platform:kind" not in str(err.value)


def test_the_shipped_form_and_its_variants_load(tmp_path):
    cfg = load(HYBRID, SECRETS)
    assert cfg.hybrid.context == "kind-platform" and cfg.service_principal_client_secret.get_secret_value() == CLIENT_SECRET
    # A kubeconfig file instead of the secret; its current context when hybrid.context is unset.
    path = file_with(KUBECONFIG.encode())(tmp_path)
    assert load(hybrid(kubeconfig=..., hybrid_kubeconfigPath=path, hybrid_context=...), SECRETS).hybrid.kubeconfig_path == path
    # A JSON kubeconfig arrives decoded (Pulumi hands structured config as JSON).
    assert load(hybrid(kubeconfig=yaml.safe_load(KUBECONFIG)), SECRETS).kubeconfig is not None
    # Workload identity: the issuer, no service principal.
    cfg = load(hybrid(servicePrincipalClientSecret=..., hybrid_servicePrincipalClientId=..., hybrid_servicePrincipalObjectId=..., hybrid_oidcIssuerUrl=ISSUER), SECRETS)
    assert cfg.hybrid.workload_identity


def test_a_path_relative_to_home_is_expanded(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / ".kube").mkdir()
    (tmp_path / ".kube" / "config").write_text(KUBECONFIG)
    assert os.path.expanduser("~") == str(tmp_path)
    assert load(hybrid(kubeconfig=..., hybrid_kubeconfigPath="~/.kube/config"), SECRETS).hybrid.kubeconfig_path == "~/.kube/config"
