"""Azure's and Kubernetes' own rules, refused by the config step before Azure refuses them mid-deployment."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from stacks.config import ConfigError
from stacks.validation import load
from tests.test_config import BASE, with_
from tests.test_config_tenants import SUB_A, tenant, with_tenants

GROUP = "3f2b7c1e-6d4a-4f0b-9b8e-2a1c5d7e9f10"


def tags(n: int) -> dict[str, str]:
    return {f"tag{i:02d}": "x" for i in range(n)}


def pools(*max_counts: int) -> list[dict[str, Any]]:
    return [{"name": f"p{i}", "vmSize": "Standard_D8ds_v5", "minCount": 1, "maxCount": m} for i, m in enumerate(max_counts)]


def upgrade(channel: str, node_os: str, window: bool = True) -> dict[str, Any]:
    raw = with_("cluster.upgradeChannel", channel, with_("cluster.nodeOsUpgradeChannel", node_os))
    if window:
        raw["cluster"]["maintenanceWindow"] = {"dayOfWeek": "Sunday"}
    return raw


def scope(value: str, **role: Any) -> dict[str, Any]:
    return with_tenants(tenant(roles=[{"role": "Contributor", "scope": value, **role}]))


SUB_UPPER = SUB_A.upper()

# (id, raw, key, text in "allowed")
REFUSED: list[tuple[str, dict[str, Any], str, str]] = [
    # Tag names are case-insensitive; the added tags cannot be overridden; at most 50 in all.
    ("tag-Environment", with_("tags", {"Environment": "prod"}), "tags.Environment", "silently replace"),
    ("tag-environment", with_("tags", {"environment": "prod"}), "tags.environment", "platform's own"),
    ("tag-MANAGED-BY", with_("tags", {"MANAGED-BY": "me"}), "tags.MANAGED-BY", "platform's own"),
    ("tag-project", with_("tags", {"Project": "x"}), "tags.Project", "platform's own"),
    ("tags-differing-in-case", with_("tags", {"Owner": "a", "owner": "b"}), "tags.owner", "ignoring case"),
    ("48-tags", with_("tags", tags(48)), "tags", "at most 47"),
    ("100-tags", with_("tags", tags(100)), "tags", "Azure allows 50"),
    # Resource group names are case-insensitive; app groups are not the platform's.
    ("app-rgs-differing-in-case", with_("appResourceGroups", ["rg-App", "rg-app"]), "appResourceGroups[1]", "ignoring case"),
    ("app-rg-is-platform-rg", with_("appResourceGroups", ["rg-dev-platform"]), "appResourceGroups[0]", "the platform's own group"),
    ("app-rg-is-platform-rg-in-caps", with_("appResourceGroups", ["RG-Dev-Platform"]), "appResourceGroups[0]", "the platform's own group"),
    (
        "app-rg-is-existing-rg",
        with_("existingResourceGroup", "rg-shared", with_("appResourceGroups", ["rg-webapp", "RG-SHARED"])),
        "appResourceGroups[1]", "existingResourceGroup",
    ),
    # Service CIDR: not AKS's reserved ranges, at most /12.
    ("svc-cidr-172.30", with_("cluster.network", {"serviceCidr": "172.30.0.0/16", "dnsServiceIp": "172.30.0.10"}), "cluster.network.serviceCidr", "172.30.0.0/16"),
    ("svc-cidr-172.31", with_("cluster.network", {"serviceCidr": "172.31.128.0/20"}), "cluster.network.serviceCidr", "AKS's reserved"),
    ("svc-cidr-169.254", with_("cluster.network", {"serviceCidr": "169.254.0.0/20"}), "cluster.network.serviceCidr", "169.254.0.0/16"),
    ("svc-cidr-192.0.2", with_("cluster.network", {"serviceCidr": "192.0.2.0/24"}), "cluster.network.serviceCidr", "192.0.2.0/24"),
    ("svc-cidr-wraps-reserved", with_("cluster.network", {"serviceCidr": "172.16.0.0/12"}), "cluster.network.serviceCidr", "172.30.0.0/16"),
    ("svc-cidr-/8", with_("cluster.network", {"serviceCidr": "10.0.0.0/8"}), "cluster.network.serviceCidr", "at most /12"),
    ("svc-cidr-/11", with_("cluster.network", {"serviceCidr": "100.64.0.0/11"}), "cluster.network.serviceCidr", "kube-apiserver"),
    ("svc-cidr-tiny-no-dns", with_("cluster.network", {"serviceCidr": "10.0.0.0/28"}), "cluster.network.dnsServiceIp", "required"),
    # Pod CIDR: not AKS's reserved ranges either.
    ("pod-cidr-169.254", with_("cluster.network.podCidr", "169.254.0.0/16"), "cluster.network.podCidr", "AKS's reserved 169.254.0.0/16"),
    ("pod-cidr-172.30", with_("cluster.network.podCidr", "172.30.0.0/16"), "cluster.network.podCidr", "172.30.0.0/16"),
    ("pod-cidr-inside-172.31", with_("cluster.network.podCidr", "172.31.64.0/18"), "cluster.network.podCidr", "172.31.0.0/16"),
    ("pod-cidr-192.0.2", with_("cluster.network.podCidr", "192.0.2.0/24", with_("cluster.systemPool.count", 1)), "cluster.network.podCidr", "192.0.2.0/24"),
    ("pod-cidr-wraps-two-reserved", with_("cluster.network.podCidr", "172.16.0.0/12"), "cluster.network.podCidr", "172.30.0.0/16, 172.31.0.0/16"),
    ("pod-cidr-wraps-192.0.2", with_("cluster.network.podCidr", "192.0.0.0/16"), "cluster.network.podCidr", "192.0.2.0/24: AKS refuses"),
    # Pod CIDR under overlay: a /24 per node, for the largest node count of all pools.
    ("pod-/24-two-nodes", with_("cluster.network.podCidr", "10.244.0.0/24", with_("cluster.systemPool.count", 2)), "cluster.network.podCidr", "2 nodes"),
    ("pod-/23-autoscaler", with_("cluster.network.podCidr", "10.244.0.0/23", with_("cluster.systemPool", {"minCount": 1, "maxCount": 3})), "cluster.network.podCidr", "holds 2"),
    ("pod-/16-300-nodes", with_("cluster.userPools", pools(300)), "cluster.network.podCidr", "301 nodes"),
    ("pod-/16-pools-sum", with_("cluster.userPools", pools(100, 100, 100)), "cluster.network.podCidr", "holds 256"),
    ("pod-/25", with_("cluster.network.podCidr", "10.244.0.0/25"), "cluster.network.podCidr", "holds 0"),
    # Upgrade channels.
    ("node-image-forces-NodeImage", upgrade("node-image", "SecurityPatch", window=False), "cluster.nodeOsUpgradeChannel", "AKS forces NodeImage"),
    ("node-image-vs-None", upgrade("node-image", "None", window=False), "cluster.nodeOsUpgradeChannel", "'NodeImage'"),
    ("window-both-channels-off", upgrade("none", "None"), "cluster.maintenanceWindow", "schedule nothing"),
    ("window-both-off-unmanaged", upgrade("none", "Unmanaged"), "cluster.maintenanceWindow", "schedule nothing"),
    # Kubernetes names.
    ("tenant-kube-namespace", with_tenants(tenant(namespaces=["kube-payments"])), "tenants[0].namespaces[0]", "'kube-'"),
    ("tenant-long-namespace", with_tenants(tenant(namespaces=["a" * 64])), "tenants[0].namespaces[0]", "RFC 1123"),
    # Git URLs: no credentials; tenant wildcards only with the opt-in.
    ("tenant-repo-credentials", with_tenants(tenant(sourceRepos=["https://x:y@github.com/acme/p.git"])), "tenants[0].sourceRepos[0]", "without credentials"),
    ("tenant-repo-token", with_tenants(tenant(sourceRepos=["https://ghp_x@github.com/acme/p.git"])), "tenants[0].sourceRepos[0]", "without credentials"),
    ("tenant-repo-star", with_tenants(tenant(sourceRepos=["*"])), "tenants[0].sourceRepos[0]", "allowSourceRepoWildcards"),
    ("tenant-repo-org-glob", with_tenants(tenant(sourceRepos=["https://github.com/acme/*"])), "tenants[0].sourceRepos[0]", "globs"),
    ("tenant-repo-question", with_tenants(tenant(sourceRepos=["https://github.com/acme/p?.git"])), "tenants[0].sourceRepos[0]", "globs"),
    # Argo CD's glob syntax (gobwas/glob) in full: alternatives and classes are patterns too.
    ("tenant-repo-brace", with_tenants(tenant(sourceRepos=["https://github.com/{acme,evil}/p.git"])), "tenants[0].sourceRepos[0]", "allowSourceRepoWildcards"),
    ("tenant-repo-class", with_tenants(tenant(sourceRepos=["https://github.com/acm[a-z]/p.git"])), "tenants[0].sourceRepos[0]", "allowSourceRepoWildcards"),
    ("tenant-repo-double-star", with_tenants(tenant(sourceRepos=["https://github.com/**"])), "tenants[0].sourceRepos[0]", "allowSourceRepoWildcards"),
    ("tenant-repo-negation", with_tenants(tenant(sourceRepos=["!https://github.com/acme/p.git"])), "tenants[0].sourceRepos[0]", "Git URLs"),
    # ARM scopes: complete, in the tenant's subscription, the subscription itself only with the opt-in.
    ("scope-trailing-slash", scope(f"/subscriptions/{SUB_A}/"), "tenants[0].roles[0].scope", "no empty segment"),
    ("scope-double-slash", scope(f"/subscriptions/{SUB_A}//resourceGroups/rg"), "tenants[0].roles[0].scope", "no empty segment"),
    ("scope-leading-double-slash", scope(f"//subscriptions/{SUB_A}"), "tenants[0].roles[0].scope", "ARM ID under"),
    ("scope-upper-case-subscription", scope(f"/SUBSCRIPTIONS/{SUB_UPPER}"), "tenants[0].roles[0].scope", "allowSubscriptionScope: true"),
    ("scope-mixed-case-subscription", scope(f"/Subscriptions/{SUB_A}"), "tenants[0].roles[0].scope", "allowSubscriptionScope: true"),
    ("scope-group-without-name", scope(f"/subscriptions/{SUB_A}/resourceGroups"), "tenants[0].roles[0].scope", "names the group"),
    ("scope-group-typo", scope(f"/subscriptions/{SUB_A}/resourcegroup/rg"), "tenants[0].roles[0].scope", "names the group"),
    ("scope-provider-incomplete", scope(f"/subscriptions/{SUB_A}/resourceGroups/rg/providers/Microsoft.Storage"), "tenants[0].roles[0].scope", "ARM ID"),
    ("scope-resource-without-name", scope(f"/subscriptions/{SUB_A}/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts"), "tenants[0].roles[0].scope", "ARM ID"),
]


@pytest.mark.parametrize("raw, key, allowed", [r[1:] for r in REFUSED], ids=[r[0] for r in REFUSED])
def test_azure_and_kubernetes_rules(raw, key, allowed):
    with pytest.raises(ConfigError) as err:
        load(raw)
    [msg] = err.value.problems
    assert msg.startswith(f"aks-platform:{key}: got "), msg
    assert allowed in msg.split("; allowed: ", 1)[1], msg


ACCEPTED: list[tuple[str, dict[str, Any], Any]] = [
    ("47-tags", with_("tags", tags(47)), lambda c: len(c.tag_map) == 50),
    ("tag-case-kept", with_("tags", {"CostCenter": "1"}), lambda c: c.tag_map["CostCenter"] == "1"),
    ("svc-cidr-/12", with_("cluster.network", {"serviceCidr": "10.0.0.0/12"}), lambda c: c.cluster.network.dns_service_ip == "10.0.0.10"),
    ("svc-cidr-moved-dns-follows", with_("cluster.network", {"serviceCidr": "10.96.0.0/16"}), lambda c: c.cluster.network.dns_service_ip == "10.96.0.10"),
    ("pod-/24-one-node", with_("cluster.network.podCidr", "10.244.0.0/24"), lambda c: c.cluster.system_pool.count == 1),
    ("pod-/16-256-nodes", with_("cluster.userPools", pools(255)), lambda c: c.cluster.user_pools[0].max_count == 255),
    ("node-image-NodeImage", upgrade("node-image", "NodeImage"), lambda c: c.cluster.maintenance_window is not None),
    ("window-node-os-only", upgrade("none", "SecurityPatch"), lambda c: c.cluster.maintenance_window is not None),
    ("window-upgrade-only", upgrade("patch", "None"), lambda c: c.cluster.maintenance_window is not None),
    ("labels-prefixed", with_("cluster.systemPool.labels", {"example.com/team": "a_b-c.d", "empty": ""}), lambda c: len(c.cluster.system_pool.labels) == 2),
    ("taint-without-value", with_("cluster.userPools", [{"name": "a", "vmSize": "Standard_D8ds_v5", "taints": ["dedicated:NoSchedule"]}]), lambda c: c.cluster.user_pools[0].taints == ("dedicated:NoSchedule",)),
    ("ssh-git-user", with_("addons.argocd.repoUrl", "ssh://git@github.com/acme/p.git"), lambda c: c.addons.argocd.repo_url.startswith("ssh://git@")),
    ("scp-git-url", with_("addons.argocd.repoUrl", "git@github.com:acme/p.git"), lambda c: c.addons.argocd.repo_url.startswith("git@")),
    ("tenant-brace-opted-in", with_tenants(tenant(sourceRepos=["https://github.com/acme/{a,b}.git"], allowSourceRepoWildcards=True)), lambda c: c.tenants[0].allow_source_repo_wildcards),
    ("tenant-wildcards-opted-in", with_tenants(tenant(sourceRepos=["https://github.com/acme/*"], allowSourceRepoWildcards=True)), lambda c: c.tenants[0].source_repos == ("https://github.com/acme/*",)),
    ("scope-subscription-id-opted-in", scope(f"/SUBSCRIPTIONS/{SUB_UPPER}", allowSubscriptionScope=True), lambda c: c.tenants[0].roles[0].scope == "subscription"),
    ("scope-resource", scope(f"/subscriptions/{SUB_A}/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/sa"), lambda c: c.tenants[0].roles[0].scope.endswith("/sa")),
    ("scope-group-any-case", scope(f"/subscriptions/{SUB_UPPER}/resourcegroups/rg"), lambda c: c.tenants[0].roles[0].scope.endswith("/rg")),
    ("crd-kind", with_("addons.aso.crdPattern", ["storage.azure.com/StorageAccount", "resources.azure.com/*"]), lambda c: c.addons.aso.api_groups == ("resources.azure.com", "storage.azure.com")),
]


@pytest.mark.parametrize("raw, check", [r[1:] for r in ACCEPTED], ids=[r[0] for r in ACCEPTED])
def test_what_azure_accepts_loads(raw, check):
    assert check(load(raw))


def test_every_accepted_crd_pattern_satisfies_the_components():
    """Config makes the components' invariants unreachable: AsoArgs and KroArgs take what it accepts."""
    from components.aso import AsoArgs
    from components.kro import KroArgs

    for patterns in (
        ["storage.azure.com/*"],
        ["storage.azure.com/StorageAccount", "storage.azure.com/BlobService", "resources.azure.com/*"],
        ["dbforpostgresql.azure.com/*", "a-b.c-d.azure.com/*"],
    ):
        aso = load(with_("addons.aso.crdPattern", patterns)).addons.aso
        AsoArgs("c", "t", "s", crd_pattern=aso.crd_pattern)
        KroArgs(managed_api_groups=aso.api_groups, instance_resources=("webapps",))


def test_a_hundred_tags_is_one_message_not_a_hundred():
    raw = copy.deepcopy(BASE)
    raw["tags"] = {**tags(60), "Environment": "x"}
    with pytest.raises(ConfigError) as err:
        load(raw)
    assert sorted(p.split(": got ")[0] for p in err.value.problems) == ["aks-platform:tags", "aks-platform:tags.Environment"]


# Independent problems are each reported (one message per problem): a problem in one element
# does not hide a rule between the others. (id, raw, the keys of every message)
INDEPENDENT = [
    ("invalid-tenant-and-duplicate-name", with_tenants(tenant(sourceRepos=[]), tenant(namespaces=["other"])),
     ["tenants[0].sourceRepos", "tenants[1].name"]),
    ("invalid-tenant-and-shared-namespace", with_tenants(tenant(subscriptionId="x"), tenant(name="other")),
     ["tenants[0].subscriptionId", "tenants[1].namespaces[0]"]),
    ("invalid-names-and-shared-namespace", with_tenants(tenant(name="P"), tenant(name="Q")),
     ["tenants[0].name", "tenants[1].name", "tenants[1].namespaces[0]"]),
    ("invalid-namespace-is-not-also-shared", with_tenants(tenant(namespaces=["Pay"]), tenant(name="other", namespaces=["Pay"])),
     ["tenants[0].namespaces[0]", "tenants[1].namespaces[0]"]),
    ("bad-tag-name-and-case-duplicate", with_("tags", {"a/b": "x", "Owner": "1", "owner": "2"}), ["tags.a/b", "tags.owner"]),
    ("bad-tag-name-and-added-tag", with_("tags", {"a/b": "x", "Environment": "x"}), ["tags.a/b", "tags.Environment"]),
    ("bad-tag-value-and-case-duplicate", with_("tags", {"note": "x" * 300, "Owner": "1", "owner": "2"}), ["tags.note", "tags.owner"]),
    ("bad-group-name-and-case-duplicate", with_("appResourceGroups", ["rg-x.", "rg-app", "RG-APP"]), ["appResourceGroups[0]", "appResourceGroups[2]"]),
    ("bad-group-name-and-platform-group", with_("appResourceGroups", ["rg x", "rg-dev-platform"]), ["appResourceGroups[0]", "appResourceGroups[1]"]),
]


@pytest.mark.parametrize("raw, keys", [c[1:] for c in INDEPENDENT], ids=[c[0] for c in INDEPENDENT])
def test_independent_problems_are_each_reported(raw, keys):
    with pytest.raises(ConfigError) as err:
        load(raw)
    assert sorted(p.split(": got ")[0] for p in err.value.problems) == sorted(f"aks-platform:{k}" for k in keys), err.value.problems
