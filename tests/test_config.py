"""The typed stack config: defaults, every validation rule, one message per problem, nothing registered on error."""

from __future__ import annotations

import ast
import copy
import re
from typing import Any

import pytest

from stacks import config as stack_config
from stacks.config import ConfigError
from stacks.problems import redact_url_credentials
from stacks.validation import load
from offline.mocks import PINNED_TARGET
from tests.conftest import run_program

SUBNET = "/subscriptions/8c1d2e3f-4a5b-4c6d-8e7f-9a0b1c2d3e4f/resourceGroups/rg-network/providers/Microsoft.Network/virtualNetworks/vnet-spoke/subnets/"
ROUTE_TABLE = "/subscriptions/8c1d2e3f-4a5b-4c6d-8e7f-9a0b1c2d3e4f/resourceGroups/rg-network/providers/Microsoft.Network/routeTables/rt-egress"

BASE: dict[str, Any] = {
    "environment": "dev",
    "location": "westeurope",
    "appResourceGroups": ["rg-dev-webapp"],
    "cluster": {"localAccounts": True, "systemPool": {"vmSize": "Standard_D4ds_v5", "count": 1}},
    "addons": {"argocd": {"repoUrl": "https://github.com/acme/platform.git", "appImage": "ghcr.io/acme/webapp:1.0.0"}},
}


def with_(path: str, value: Any, base: dict[str, Any] = BASE) -> dict[str, Any]:
    """BASE with one dotted path set (or removed when value is ...)."""
    raw = copy.deepcopy(base)
    node = raw
    parts = path.split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    if value is ...:
        node.pop(parts[-1], None)
    else:
        node[parts[-1]] = value
    return raw


def problems(raw: dict[str, Any], secret_keys: frozenset[str] = frozenset()) -> list[str]:
    with pytest.raises(ConfigError) as err:
        load(raw, secret_keys)
    return err.value.problems


def key_of(message: str) -> str:
    return message.split(": got ", 1)[0]


def test_defaults_are_documented_values():
    cfg = load(BASE)
    assert cfg.kind == "aks"
    assert cfg.cluster is not None
    c = cfg.cluster
    assert (c.sku_tier, c.upgrade_channel, c.node_os_upgrade_channel) == ("Free", "patch", "NodeImage")
    assert (c.network.dataplane, c.network.network_policy) == ("cilium", "cilium")
    assert (c.network.pod_cidr, c.network.service_cidr, c.network.dns_service_ip) == ("10.244.0.0/16", "10.0.0.0/16", "10.0.0.10")
    assert c.system_pool.name == "system" and c.system_pool.max_pods == 110 and not c.system_pool.autoscaling
    assert c.kubelogin_mode == "azurecli"
    assert (c.network.vnet_subnet_id, c.network.assign_subnet_role) == (None, True)
    assert cfg.addons.enabled() == {"cert_manager": True, "aso": True, "kro": True, "crossplane": True, "argocd": True}
    assert cfg.addons.aso.crd_pattern == stack_config.DEFAULT_ASO_CRD_PATTERN
    assert cfg.addons.argocd.path == "gitops" and cfg.addons.argocd.revision == "main"
    assert cfg.tag_map == {"environment": "dev", "managed-by": "pulumi", "project": "aks-platform"}
    assert cfg.resource_group_name == "rg-dev-platform" and cfg.cluster_name == "aks-dev"


def test_absent_sections_take_every_default():
    raw = with_("cluster", ..., with_("addons", {"argocd": {"enabled": False}}))
    raw["cluster"] = {"adminGroupObjectIds": ["3f2b7c1e-6d4a-4f0b-9b8e-2a1c5d7e9f10"]}
    cfg = load(raw)
    assert cfg.cluster.system_pool.count == 2 and cfg.cluster.system_pool.vm_size == "Standard_D4ds_v5"
    # No cluster section at all on kind aks: the defaults, and their rules (no admin group).
    assert [key_of(p) for p in problems(with_("cluster", ...))] == ["aks-platform:cluster.adminGroupObjectIds"]


def test_config_objects_are_immutable():
    cfg = load(BASE)
    with pytest.raises(Exception):
        cfg.environment = "prod"  # type: ignore[misc]
    with pytest.raises(Exception):
        cfg.cluster.system_pool.count = 5  # type: ignore[misc]


# --- the forms Pulumi writes ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "path, value, read, expected",
    [
        ("protect", "true", lambda c: c.protect, True),
        ("protect", "false", lambda c: c.protect, False),
        ("cluster.systemPool.count", "3", lambda c: c.cluster.system_pool.count, 3),
        ("cluster.systemPool.maxPods", "60", lambda c: c.cluster.system_pool.max_pods, 60),
        ("cluster.systemPool.zones", [1, 2, 3], lambda c: c.cluster.system_pool.zones, ("1", "2", "3")),
        ("cluster.systemPool.zones", ["1", 2], lambda c: c.cluster.system_pool.zones, ("1", "2")),
        ("cluster.localAccounts", "true", lambda c: c.cluster.local_accounts, True),
        ("addons.kro", {"enabled": "false"}, lambda c: c.addons.kro.enabled, False),
        ("tags", {"cost-center": 1234}, lambda c: c.tag_map["cost-center"], "1234"),
        ("tags", {"flag": True}, lambda c: c.tag_map["flag"], "true"),
        ("cluster.systemPool.labels", {"tier": 3}, lambda c: c.cluster.system_pool.labels, {"tier": "3"}),
        ("cluster.maintenanceWindow", {"durationHours": "6"}, lambda c: c.cluster.maintenance_window.duration_hours, 6),
    ],
)
def test_pulumi_forms_are_accepted(path, value, read, expected):
    assert read(load(with_(path, value))) == expected


@pytest.mark.parametrize(
    "pool, expected",
    [
        ({"minCount": 3, "maxCount": 5}, 3),  # autoscaling without count starts at minCount
        ({"minCount": "2", "maxCount": "4"}, 2),
        ({"count": 4, "minCount": 3, "maxCount": 5}, 4),
        ({}, 2),  # the system pool's default
    ],
)
def test_autoscaling_pool_without_count_starts_at_min_count(pool, expected):
    cfg = load(with_("cluster.systemPool", pool))
    assert cfg.cluster.system_pool.count == expected


def test_user_pool_count_defaults():
    pools = [
        {"name": "apps", "vmSize": "Standard_D8ds_v5"},
        {"name": "batch", "vmSize": "Standard_D8ds_v5", "minCount": 0, "maxCount": 3},
    ]
    cfg = load(with_("cluster.userPools", pools))
    assert [p.count for p in cfg.cluster.user_pools] == [1, 0]
    assert cfg.cluster.user_pools[1].autoscaling


# --- one rule per row: key, allowed text, and the value quoted -------------------------------------


INVALID = [
    ("environment", "Dev_1", "environment", "lowercase"),
    ("environment", "a-very-long-environment-name", "environment", "2-16"),
    ("environment", ..., "environment", "required"),
    ("environment", 12, "environment", "2-16"),
    ("location", "West Europe", "location", "Azure region"),
    ("location", ..., "location", "required"),
    ("kind", "eks", "kind", "'aks', 'hybrid'"),
    ("protect", "yes", "protect", "true or false"),
    ("protect", 1, "protect", "true or false"),
    ("existingResourceGroup", "rg.", "existingResourceGroup", "resource group"),
    ("cluster", "small", "cluster", "a mapping"),
    ("cluster.kubernetesVersion", "latest", "cluster.kubernetesVersion", "not 'latest'"),
    ("cluster.kubernetesVersion", "1.34.x", "cluster.kubernetesVersion", "MAJOR.MINOR"),
    ("cluster.kubernetesVersion", 1.34, "cluster.kubernetesVersion", "MAJOR.MINOR"),
    ("cluster.skuTier", "Gold", "cluster.skuTier", "'Free', 'Standard', 'Premium'"),
    ("cluster.skuTier", "free", "cluster.skuTier", "'Free'"),
    ("cluster.upgradeChannel", "weekly", "cluster.upgradeChannel", "'patch'"),
    ("cluster.nodeOsUpgradeChannel", "nodeimage", "cluster.nodeOsUpgradeChannel", "'NodeImage'"),
    ("cluster.localAccounts", "yes", "cluster.localAccounts", "true or false"),
    ("cluster.localAccounts", "True", "cluster.localAccounts", "true or false"),
    ("cluster.adminGroupObjectIds", ["not-a-guid"], "cluster.adminGroupObjectIds[0]", "GUID"),
    ("cluster.adminGroupObjectIds", "3f2b7c1e-6d4a-4f0b-9b8e-2a1c5d7e9f10", "cluster.adminGroupObjectIds", "a list"),
    ("cluster.apiServerAuthorizedIpRanges", ["10.0.0.1/8"], "cluster.apiServerAuthorizedIpRanges[0]", "CIDR"),
    ("cluster.apiServerAuthorizedIpRanges", ["300.1.1.0/24"], "cluster.apiServerAuthorizedIpRanges[0]", "CIDR"),
    ("cluster.apiServerAuthorizedIpRanges", ["2001:db8::/32"], "cluster.apiServerAuthorizedIpRanges[0]", "IPv4"),
    ("cluster.systemPool", ["system"], "cluster.systemPool", "a mapping"),
    ("cluster.systemPool.vmSize", "D4ds_v5", "cluster.systemPool.vmSize", "VM size"),
    ("cluster.systemPool.count", 0, "cluster.systemPool.count", "from 1 to 1000"),
    ("cluster.systemPool.count", 1001, "cluster.systemPool.count", "from 1 to 1000"),
    ("cluster.systemPool.count", 2.5, "cluster.systemPool.count", "from 1 to 1000"),
    ("cluster.systemPool.count", True, "cluster.systemPool.count", "from 1 to 1000"),
    ("cluster.systemPool.count", "three", "cluster.systemPool.count", "from 1 to 1000"),
    ("cluster.systemPool.maxPods", 500, "cluster.systemPool.maxPods", "from 30 to 250"),
    ("cluster.systemPool.maxPods", 20, "cluster.systemPool.maxPods", "from 30 to 250"),
    ("cluster.systemPool.osDiskSizeGb", 10, "cluster.systemPool.osDiskSizeGb", "from 30 to 2048"),
    ("cluster.systemPool.zones", ["4"], "cluster.systemPool.zones[0]", "'1', '2', '3'"),
    ("cluster.systemPool.zones", [0], "cluster.systemPool.zones[0]", "'1', '2', '3'"),
    ("cluster.systemPool.zones", ["1", "1"], "cluster.systemPool.zones[1]", "distinct zones"),
    ("cluster.systemPool.name", "System-Pool", "cluster.systemPool.name", "1-12 lowercase"),
    ("cluster.systemPool.name", "averyverylongname", "cluster.systemPool.name", "1-12 lowercase"),
    ("cluster.systemPool.taints", ["a=b:NoSchedule"], "cluster.systemPool.taints", "none on the system pool"),
    ("cluster.systemPool.labels", {"-bad": "x"}, "cluster.systemPool.labels.-bad", "label key"),
    ("cluster.systemPool.labels", {"a/b/c": "x"}, "cluster.systemPool.labels.a/b/c", "label key"),
    ("cluster.systemPool.labels", {"Example.com/x": "y"}, "cluster.systemPool.labels.Example.com/x", "label key"),
    ("cluster.systemPool.labels", {"x" * 64: "y"}, "cluster.systemPool.labels." + "x" * 64, "at most 63"),
    ("cluster.systemPool.labels", {"kubernetes.azure.com/mode": "x"}, "cluster.systemPool.labels.kubernetes.azure.com/mode", "reserve"),
    ("cluster.systemPool.labels", {"node.kubernetes.io/role": "x"}, "cluster.systemPool.labels.node.kubernetes.io/role", "reserve"),
    ("cluster.systemPool.labels", {"tier": "a b"}, "cluster.systemPool.labels.tier", "label value"),
    ("cluster.systemPool.labels", {"tier": "x" * 64}, "cluster.systemPool.labels.tier", "label value"),
    ("cluster.systemPool.labels", {"tier": "-x"}, "cluster.systemPool.labels.tier", "label value"),
    ("cluster.systemPool", {"count": 6, "minCount": 1, "maxCount": 5}, "cluster.systemPool", "minCount <= count <= maxCount"),
    ("cluster.systemPool", {"count": 1, "minCount": 2, "maxCount": 5}, "cluster.systemPool", "minCount <= count <= maxCount"),
    ("cluster.systemPool", {"count": 2, "minCount": 1}, "cluster.systemPool.maxCount", "both minCount and maxCount"),
    ("cluster.systemPool", {"maxCount": 3}, "cluster.systemPool.minCount", "both minCount and maxCount"),
    ("cluster.systemPool", {"minCount": 5, "maxCount": 3}, "cluster.systemPool.maxCount", "at least minCount"),
    ("cluster.systemPool", {"minCount": 0, "maxCount": 3}, "cluster.systemPool.minCount", "from 1 to 1000"),
    ("cluster.userPools", [{"name": "apps"}], "cluster.userPools[0].vmSize", "required"),
    ("cluster.userPools", [{"vmSize": "Standard_D8ds_v5"}], "cluster.userPools[0].name", "required"),
    ("cluster.userPools", [{"name": "system", "vmSize": "Standard_D8ds_v5"}], "cluster.userPools[0].name", "distinct"),
    ("cluster.userPools", [{"name": "a", "vmSize": "Standard_D8ds_v5"}, {"name": "a", "vmSize": "Standard_D8ds_v5"}], "cluster.userPools[1].name", "distinct"),
    ("cluster.userPools", [{"name": "a", "vmSize": "Standard_D8ds_v5", "taints": ["dedicated"]}], "cluster.userPools[0].taints[0]", "Effect"),
    ("cluster.userPools", [{"name": "a", "vmSize": "Standard_D8ds_v5", "taints": ["k=v:Sometimes"]}], "cluster.userPools[0].taints[0]", "NoSchedule"),
    ("cluster.userPools", [{"name": "a", "vmSize": "Standard_D8ds_v5", "taints": ["-k=v:NoSchedule"]}], "cluster.userPools[0].taints[0]", "label"),
    ("cluster.userPools", {"name": "a"}, "cluster.userPools", "a list"),
    ("cluster.kubeloginMode", "devicecode", "cluster.kubeloginMode", "'azurecli'"),
    # Who runs `up` is not config: cluster admin comes from adminGroupObjectIds.
    ("cluster.deployerPrincipalType", "ServicePrincipal", "cluster.deployerPrincipalType", "no such setting"),
    # A version the upgrade channel would move is later sent back as a downgrade.
    ("cluster", {"localAccounts": True, "kubernetesVersion": "1.34", "upgradeChannel": "stable"}, "cluster.kubernetesVersion", "moves the minor version on its own"),
    ("cluster", {"localAccounts": True, "kubernetesVersion": "1.34", "upgradeChannel": "rapid"}, "cluster.kubernetesVersion", "leave the version unset"),
    ("cluster", {"localAccounts": True, "kubernetesVersion": "1.34.2"}, "cluster.kubernetesVersion", "pin 'MAJOR.MINOR' ('1.34')"),
    # Bring-your-own network.
    ("cluster.network.outboundType", "userDefinedRouting", "cluster.network.vnetSubnetId", "required with outboundType 'userDefinedRouting'"),
    ("cluster.network", {"outboundType": "userDefinedRouting", "vnetSubnetId": SUBNET + "nodes"}, "cluster.network.routeTableId", "required with outboundType 'userDefinedRouting'"),
    ("cluster.network", {"vnetSubnetId": SUBNET + "nodes", "routeTableId": ROUTE_TABLE}, "cluster.network.routeTableId", "only with outboundType 'userDefinedRouting'"),
    ("cluster.network.routeTableId", SUBNET + "nodes", "cluster.network.routeTableId", "the ARM ID of the route table"),
    ("cluster.network.vnetSubnetId", "/subscriptions/x/subnets/y", "cluster.network.vnetSubnetId", "ARM ID of an existing subnet"),
    ("cluster", {"localAccounts": True, "systemPool": {"vnetSubnetId": SUBNET + "nodes"}, "userPools": [{"name": "apps", "vmSize": "Standard_D8ds_v5"}]}, "cluster.userPools[0].vnetSubnetId", "a subnet for every pool"),
    ("cluster", {"localAccounts": True, "network": {"vnetSubnetId": SUBNET + "nodes"}, "userPools": [{"name": "apps", "vmSize": "Standard_D8ds_v5", "vnetSubnetId": SUBNET.replace("vnet-spoke", "vnet-other") + "apps"}]}, "cluster.userPools[0].vnetSubnetId", "same virtual network"),
    ("cluster.network.dataplane", "calico", "cluster.network.dataplane", "'cilium', 'azure'"),
    ("cluster.network.podCidr", "10.244.0.1/16", "cluster.network.podCidr", "no host bits"),
    ("cluster.network.podCidr", "10.244.0.0", "cluster.network.podCidr", "CIDR"),
    ("cluster.network.serviceCidr", "10.244.128.0/17", "cluster.network.serviceCidr", "does not overlap"),
    ("cluster.network.dnsServiceIp", "10.1.0.10", "cluster.network.dnsServiceIp", "inside serviceCidr"),
    ("cluster.network.dnsServiceIp", "10.0.0.1", "cluster.network.dnsServiceIp", "other than its first"),
    ("cluster.network.dnsServiceIp", "10.0.255.255", "cluster.network.dnsServiceIp", "other than its first"),
    ("cluster.network.dnsServiceIp", "10.0.0.300", "cluster.network.dnsServiceIp", "IPv4 address"),
    ("cluster.network.networkPolicy", "calico", "cluster.network.networkPolicy", "'cilium' when dataplane"),
    ("cluster.network", {"dataplane": "azure", "networkPolicy": "cilium"}, "cluster.network.networkPolicy", "only with dataplane"),
    ("cluster.network.outboundType", "nat", "cluster.network.outboundType", "'loadBalancer'"),
    ("cluster.maintenanceWindow", {"startTime": "25:00"}, "cluster.maintenanceWindow.startTime", "HH:MM"),
    ("cluster.maintenanceWindow", {"startTime": "2:00"}, "cluster.maintenanceWindow.startTime", "HH:MM"),
    ("cluster.maintenanceWindow", {"durationHours": 2}, "cluster.maintenanceWindow.durationHours", "from 4 to 24"),
    ("cluster.maintenanceWindow", {"dayOfWeek": "Sun"}, "cluster.maintenanceWindow.dayOfWeek", "'Sunday'"),
    ("cluster.maintenanceWindow", {"utcOffset": "+15:00"}, "cluster.maintenanceWindow.utcOffset", "+HH:MM"),
    ("cluster.maintenanceWindow", {"intervalWeeks": 5}, "cluster.maintenanceWindow.intervalWeeks", "from 1 to 4"),
    ("cluster.maintenanceWindow", "sunday", "cluster.maintenanceWindow", "a mapping"),
    ("tags", {"a/b": "x"}, "tags.a/b", "tag name"),
    ("tags", {"a<b": "x"}, "tags.a<b", "tag name"),
    ("tags", {"owner": "x" * 300}, "tags.owner", "256"),
    ("tags", {"owner": ["a"]}, "tags.owner", "256"),
    ("tags", ["owner"], "tags", "a mapping"),
    ("appResourceGroups", ["rg-a", "rg-a"], "appResourceGroups[1]", "distinct"),
    ("appResourceGroups", ["bad name!"], "appResourceGroups[0]", "resource group"),
    ("appResourceGroups", ["x" * 91], "appResourceGroups[0]", "1-90"),
    ("appResourceGroups", "rg-a", "appResourceGroups", "a list"),
    ("addons", "all", "addons", "a mapping"),
    ("addons.aso.crdPattern", ["storage/*"], "addons.aso.crdPattern[0]", "azure.com"),
    ("addons.aso.crdPattern", ["storage..azure.com/*"], "addons.aso.crdPattern[0]", "azure.com"),
    ("addons.aso.crdPattern", ["storage.azure.com/*;compute.azure.com/*"], "addons.aso.crdPattern[0]", "azure.com"),
    ("addons.aso.crdPattern", ["storage.azure.com/storageAccount"], "addons.aso.crdPattern[0]", "<Kind>"),
    ("addons.aso.crdPattern", ["storage.azure.com/*", "storage.azure.com/*"], "addons.aso.crdPattern[1]", "each pattern once"),
    ("addons.aso.crdPattern", [], "addons.aso.crdPattern", "at least one"),
    ("addons.aso.crdPattern", "storage.azure.com/*", "addons.aso.crdPattern", "a list"),
    ("addons.aso.enabled", "on", "addons.aso.enabled", "true or false"),
    ("addons.certManager", {"enabled": False}, "addons.certManager.enabled", "ASO"),
    ("addons.argocd.repoUrl", ..., "addons.argocd.repoUrl", "required"),
    ("addons.argocd.repoUrl", "ftp://x/y", "addons.argocd.repoUrl", "Git URL"),
    ("addons.argocd.repoUrl", "https://user:ghp_abc@github.com/acme/p.git", "addons.argocd.repoUrl", "without credentials"),
    ("addons.argocd.repoUrl", "https://ghp_abc@github.com/acme/p.git", "addons.argocd.repoUrl", "without credentials"),
    ("addons.argocd.repoUrl", "ssh://git:pw@github.com/acme/p.git", "addons.argocd.repoUrl", "without credentials"),
    ("addons.argocd.path", "/abs/path", "addons.argocd.path", "relative path"),
    ("addons.argocd.path", "a//b", "addons.argocd.path", "relative path"),
    ("addons.argocd.revision", "main branch", "addons.argocd.revision", "branch, tag or commit"),
    ("addons.argocd.appImage", "webapp", "addons.argocd.appImage", "tag or digest"),
    ("addons.argocd.appImage", "ghcr.io/acme/webapp", "addons.argocd.appImage", "tag or digest"),
    ("addons.argocd.appImage", ..., "addons.argocd.appImage", "required"),
]


@pytest.mark.parametrize("path, value, key, allowed", INVALID, ids=[f"{r[0]}={r[1]!r}"[:60] for r in INVALID])
def test_each_invalid_value_is_one_message_naming_key_value_and_allowed(path, value, key, allowed):
    found = problems(with_(path, value))
    # One problem, one message: no follow-on message about another key.
    assert [key_of(p) for p in found] == [f"aks-platform:{key}"], found
    [msg] = found
    assert allowed in msg.split("; allowed: ", 1)[1], msg
    given = msg.split(": got ", 1)[1].split("; allowed: ", 1)[0]
    if value is ...:
        assert given in ("nothing", "None")
    elif key == path:
        # Quoted as given, but for the credentials of a URL.
        shown = redact_url_credentials(value) if isinstance(value, str) else value
        assert given.endswith("(truncated)") or ast.literal_eval(given) == shown
    elif re.fullmatch(re.escape(path) + r"\[\d+\]", key) and isinstance(value, list):
        # The offending item, not the whole list.
        item = value[int(key.rsplit("[", 1)[1][:-1])]
        assert given in (repr(item), repr(str(item)))


@pytest.mark.parametrize(
    "raw_path, typo",
    [
        ("", "skuTeir"),
        ("cluster", "skuTeir"),
        ("cluster.systemPool", "maxPod"),
        ("cluster.network", "podCIDR"),
        ("cluster.maintenanceWindow", "day"),
        ("addons", "argo"),
        ("addons.certManager", "enable"),
        ("addons.aso", "crdPatterns"),
        ("addons.kro", "enable"),
        ("addons.crossplane", "version"),
        ("addons.argocd", "repoURL"),
    ],
)
def test_unknown_keys_are_errors_in_every_section(raw_path, typo):
    raw = copy.deepcopy(BASE)
    node = raw
    for part in filter(None, raw_path.split(".")):
        node = node.setdefault(part, {})
    node[typo] = "x"
    found = problems(raw)
    key = f"aks-platform:{raw_path + '.' if raw_path else ''}{typo}"
    assert [key_of(p) for p in found] == [key], found
    assert "no such setting" in found[0]


def test_unknown_key_in_a_user_pool_is_an_error():
    pools = [{"name": "apps", "vmSize": "Standard_D8ds_v5"}, {"name": "batch", "vmSize": "Standard_D8ds_v5", "maxPod": 30}]
    [msg] = problems(with_("cluster.userPools", pools))
    assert msg.startswith("aks-platform:cluster.userPools[1].maxPod: got 30; allowed: no such setting (did you mean 'maxPods'?")


def test_an_unknown_key_suggests_the_known_one():
    [msg] = problems(with_("cluster.systemPool.MaxPods", 30))
    assert "did you mean 'maxPods'?" in msg


def test_all_problems_are_reported_together():
    raw = with_("environment", "X", with_("location", "?", with_("cluster.skuTier", "Gold", with_("tags", {"a/b": "1"}))))
    found = problems(raw)
    assert {key_of(p) for p in found} == {
        "aks-platform:environment", "aks-platform:location", "aks-platform:cluster.skuTier", "aks-platform:tags.a/b"
    }


@pytest.mark.parametrize(
    "raw, expected",
    [
        # A malformed GUID is one message; the "at least one admin group" rule does not follow it.
        (with_("cluster", {"adminGroupObjectIds": ["not-a-guid"]}), ["cluster.adminGroupObjectIds[0]"]),
        # A misspelled kind is one message: no "cluster"/"hybrid"/secret messages follow.
        (with_("kind", "hybird"), ["kind"]),
        (with_("kind", "hybird", with_("hybrid", {"context": "x"})), ["kind"]),
        # A bad pod CIDR does not also fail the overlap or capacity rules.
        (with_("cluster.network", {"podCidr": "10.0.0.0/33"}), ["cluster.network.podCidr"]),
        # A bad crdPattern item is not also "fewer than one pattern".
        (with_("addons.aso.crdPattern", ["x"]), ["addons.aso.crdPattern[0]"]),
        # Invalid appResourceGroups: not also "ASO needs a resource group".
        (with_("appResourceGroups", ["bad name!"]), ["appResourceGroups[0]"]),
    ],
)
def test_one_problem_one_message(raw, expected):
    assert [key_of(p) for p in problems(raw)] == [f"aks-platform:{k}" for k in expected]


def test_local_accounts_off_needs_an_admin_group():
    found = problems(with_("cluster.localAccounts", False))
    assert [key_of(p) for p in found] == ["aks-platform:cluster.adminGroupObjectIds"]


def test_aso_needs_cert_manager_and_a_scope():
    found = problems(with_("appResourceGroups", ...))
    assert [key_of(p) for p in found] == ["aks-platform:appResourceGroups"] and "subscriptionScope" in found[0]
    cfg = load(with_("addons.aso", {"subscriptionScope": True}, with_("appResourceGroups", ...)))
    assert cfg.addons.aso.subscription_scope


def test_app_image_is_required_only_while_argocd_can_deploy_the_app():
    raw = with_("addons.argocd.appImage", ..., with_("addons.crossplane", {"enabled": False}, with_("addons.kro", {"enabled": False})))
    assert load(raw).addons.argocd.app_image is None


def test_hybrid_kind_takes_no_cluster_section():
    found = problems(with_("kind", "hybrid"))
    assert any(p.startswith("aks-platform:cluster:") and "hybrid" in p for p in found)


def test_invalid_config_registers_nothing():
    """The error is raised by the real program before any resource is registered."""
    config = {f"aks-platform:{k}": v for k, v in with_("cluster.skuTier", "Gold").items()}
    with pytest.raises(ConfigError, match="cluster.skuTier"):
        run_program(config)
    from pulumi.runtime.settings import SETTINGS

    assert SETTINGS.monitor.registrations == []


def test_shipped_stacks_are_valid(stack_file):
    for stack in ("dev", "prod"):
        raw_config, secret = stack_file(stack)
        raw = {k.split(":", 1)[1]: v for k, v in raw_config.items() if k.startswith("aks-platform:")}
        cfg = load(raw, frozenset(s.split(":", 1)[1] for s in secret))
        assert cfg.environment == stack


def test_pools_in_your_own_network_with_user_defined_routing():
    raw = with_(
        "cluster",
        {
            "localAccounts": True,
            "network": {"outboundType": "userDefinedRouting", "vnetSubnetId": SUBNET + "nodes", "routeTableId": ROUTE_TABLE},
            "userPools": [
                {"name": "apps", "vmSize": "Standard_D8ds_v5"},
                {"name": "batch", "vmSize": "Standard_D8ds_v5", "vnetSubnetId": SUBNET + "batch"},
            ],
        },
    )
    c = load(raw).cluster
    assert [c.subnet_of(p) for p in c.pools] == [SUBNET + "nodes", SUBNET + "nodes", SUBNET + "batch"]
    ev = run_program({**PINNED_TARGET, **{f"aks-platform:{k}": v for k, v in raw.items()}})
    mc = ev.one("azure-native:containerservice:ManagedCluster")
    assert mc.plain("agentPoolProfiles")[0]["vnetSubnetID"] == SUBNET + "nodes"
    pools = {p.plain("agentPoolName"): p.plain("vnetSubnetID") for p in ev.by_type("azure-native:containerservice:AgentPool")}
    assert pools == {"apps": SUBNET + "nodes", "batch": SUBNET + "batch"}
    grants = sorted(r.plain("scope") for r in ev.by_type("azure-native:authorization:RoleAssignment") if r.plain("scope").startswith(SUBNET))
    assert grants == [SUBNET + "batch", SUBNET + "nodes"]
    # The route table too: with userDefinedRouting the cluster's identity reads and writes it.
    [route] = [r for r in ev.by_type("azure-native:authorization:RoleAssignment") if r.plain("scope") == ROUTE_TABLE]
    assert route.plain("roleDefinitionId").endswith("/4d97b98b-1d4f-4787-a291-c67834d212e7")  # Network Contributor
    for pool in ev.by_type("azure-native:containerservice:AgentPool"):
        assert ev.depends_on(pool, route)


# A refused element of a list (or key or value of a mapping) is described as one element,
# not as the whole list ("at least one ...", "each once", "distinct ...").
ELEMENTS = [
    ("addons.aso.crdPattern", ["storage..azure.com/*"], "addons.aso.crdPattern[0]", "an ASO CRD pattern '<group>.azure.com/*'"),
    ("addons.aso.crdPattern", ["storage.azure.com/*", "Storage.azure.com/*"], "addons.aso.crdPattern[1]", "the group a DNS subdomain under azure.com (lowercase"),
    ("addons.aso.crdPattern", [3], "addons.aso.crdPattern[0]", "an ASO CRD pattern"),
    ("cluster.adminGroupObjectIds", ["x"], "cluster.adminGroupObjectIds[0]", "an Entra ID group object ID (GUID)"),
    ("cluster.systemPool.zones", ["4"], "cluster.systemPool.zones[0]", "an availability zone"),
    ("appResourceGroups", ["rg-x."], "appResourceGroups[0]", "an Azure resource group name"),
    ("tags", {"a/b": "x"}, "tags.a/b", "a tag name: 1-512 characters"),
    ("tags", {"owner": "x" * 257}, "tags.owner", "a tag value: a string of at most 256 characters"),
]


@pytest.mark.parametrize("path, value, key, allowed", ELEMENTS, ids=[e[2] for e in ELEMENTS])
def test_an_element_refusal_describes_the_element(path, value, key, allowed):
    [msg] = problems(with_(path, value))
    assert msg.startswith(f"aks-platform:{key}: got "), msg
    text = msg.split("; allowed: ", 1)[1]
    assert allowed in text, msg
    for whole_list in ("at least one", "each once", "distinct", "a mapping of tag name"):
        assert whole_list not in text, msg
