"""The typed stack config: defaults, every validation rule, and nothing registered on error."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from stacks import config as stack_config
from stacks.config import ConfigError, load
from tests.conftest import run_program

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


def problems(raw: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as err:
        load(raw)
    return err.value.problems


def test_defaults_are_documented_values():
    cfg = load(BASE)
    assert cfg.kind == "aks"
    assert cfg.cluster is not None
    c = cfg.cluster
    assert (c.sku_tier, c.upgrade_channel, c.node_os_upgrade_channel) == ("Free", "patch", "NodeImage")
    assert (c.network.dataplane, c.network.network_policy) == ("cilium", "cilium")
    assert (c.network.pod_cidr, c.network.service_cidr, c.network.dns_service_ip) == ("10.244.0.0/16", "10.0.0.0/16", "10.0.0.10")
    assert c.system_pool.name == "system" and c.system_pool.max_pods == 110 and not c.system_pool.autoscaling
    assert c.kubelogin_mode == "azurecli" and c.deployer_principal_type == "ServicePrincipal"
    assert cfg.addons.enabled() == {"cert_manager": True, "aso": True, "kro": True, "crossplane": True, "argocd": True}
    assert cfg.addons.aso.crd_pattern == stack_config.DEFAULT_ASO_CRD_PATTERN
    assert cfg.addons.argocd.path == "gitops" and cfg.addons.argocd.revision == "main"
    assert cfg.tag_map == {"environment": "dev", "managed-by": "pulumi", "project": "aks-platform"}
    assert cfg.resource_group_name == "rg-dev-platform" and cfg.cluster_name == "aks-dev"


def test_config_objects_are_immutable():
    cfg = load(BASE)
    with pytest.raises(Exception):
        cfg.environment = "prod"  # type: ignore[misc]


def test_pulumi_strings_are_accepted_for_booleans_and_numbers():
    raw = with_("protect", "true")
    raw = with_("cluster.systemPool.count", "3", raw)
    cfg = load(raw)
    assert cfg.protect is True and cfg.cluster.system_pool.count == 3


@pytest.mark.parametrize(
    "path, value, key, allowed",
    [
        ("environment", "Dev_1", "aks-platform:environment", "lowercase"),
        ("environment", "a-very-long-environment-name", "aks-platform:environment", "2-16"),
        ("environment", ..., "aks-platform:environment", "required"),
        ("location", "West Europe", "aks-platform:location", "Azure region"),
        ("kind", "eks", "aks-platform:kind", "'aks', 'hybrid'"),
        ("cluster.kubernetesVersion", "latest", "aks-platform:cluster.kubernetesVersion", "not 'latest'"),
        ("cluster.kubernetesVersion", "1.34.x", "aks-platform:cluster.kubernetesVersion", "MAJOR.MINOR"),
        ("cluster.kubernetesVersion", 1.34, "aks-platform:cluster.kubernetesVersion", "MAJOR.MINOR"),
        ("cluster.skuTier", "Gold", "aks-platform:cluster.skuTier", "'Free', 'Standard', 'Premium'"),
        ("cluster.upgradeChannel", "weekly", "aks-platform:cluster.upgradeChannel", "'patch'"),
        ("cluster.nodeOsUpgradeChannel", "nodeimage", "aks-platform:cluster.nodeOsUpgradeChannel", "'NodeImage'"),
        ("cluster.localAccounts", "yes", "aks-platform:cluster.localAccounts", "true or false"),
        ("cluster.adminGroupObjectIds", ["not-a-guid"], "aks-platform:cluster.adminGroupObjectIds[0]", "GUID"),
        ("cluster.apiServerAuthorizedIpRanges", ["10.0.0.1/8"], "aks-platform:cluster.apiServerAuthorizedIpRanges[0]", "CIDR"),
        ("cluster.apiServerAuthorizedIpRanges", ["300.1.1.0/24"], "aks-platform:cluster.apiServerAuthorizedIpRanges[0]", "CIDR"),
        ("cluster.systemPool.vmSize", "D4ds_v5", "aks-platform:cluster.systemPool.vmSize", "VM size"),
        ("cluster.systemPool.count", 0, "aks-platform:cluster.systemPool.count", "from 1 to 1000"),
        ("cluster.systemPool.maxPods", 500, "aks-platform:cluster.systemPool.maxPods", "from 30 to 250"),
        ("cluster.systemPool.zones", ["4"], "aks-platform:cluster.systemPool.zones[0]", "'1', '2', '3'"),
        ("cluster.systemPool.name", "System-Pool", "aks-platform:cluster.systemPool.name", "1-12 lowercase"),
        ("cluster.kubeloginMode", "devicecode", "aks-platform:cluster.kubeloginMode", "'azurecli'"),
        ("cluster.network.dataplane", "calico", "aks-platform:cluster.network.dataplane", "'cilium', 'azure'"),
        ("cluster.network.podCidr", "10.244.0.1/16", "aks-platform:cluster.network.podCidr", "no host bits"),
        ("cluster.network.serviceCidr", "10.244.128.0/17", "aks-platform:cluster.network.serviceCidr", "does not overlap"),
        ("cluster.network.dnsServiceIp", "10.1.0.10", "aks-platform:cluster.network.dnsServiceIp", "inside serviceCidr"),
        ("cluster.network.dnsServiceIp", "10.0.0.1", "aks-platform:cluster.network.dnsServiceIp", "other than its first"),
        ("cluster.network.networkPolicy", "calico", "aks-platform:cluster.network.networkPolicy", "'cilium' when dataplane"),
        ("cluster.maintenanceWindow", {"startTime": "25:00"}, "aks-platform:cluster.maintenanceWindow.startTime", "HH:MM"),
        ("cluster.maintenanceWindow", {"durationHours": 2}, "aks-platform:cluster.maintenanceWindow.durationHours", "from 4 to 24"),
        ("cluster.maintenanceWindow", {"dayOfWeek": "Sun"}, "aks-platform:cluster.maintenanceWindow.dayOfWeek", "'Sunday'"),
        ("tags", {"a/b": "x"}, "aks-platform:tags.a/b", "tag name"),
        ("tags", {"owner": "x" * 300}, "aks-platform:tags.owner", "256"),
        ("appResourceGroups", ["rg-a", "rg-a"], "aks-platform:appResourceGroups", "distinct"),
        ("appResourceGroups", ["bad name!"], "aks-platform:appResourceGroups[0]", "resource group"),
        ("addons.aso.crdPattern", ["storage/*"], "aks-platform:addons.aso.crdPattern[0]", "azure.com"),
        ("addons.argocd.repoUrl", ..., "aks-platform:addons.argocd.repoUrl", "required"),
        ("addons.argocd.repoUrl", "ftp://x/y", "aks-platform:addons.argocd.repoUrl", "Git URL"),
        ("addons.argocd.path", "/abs/path", "aks-platform:addons.argocd.path", "relative path"),
        ("addons.argocd.appImage", "webapp", "aks-platform:addons.argocd.appImage", "tag or digest"),
    ],
)
def test_each_invalid_value_names_key_value_and_allowed(path, value, key, allowed):
    found = problems(with_(path, value))
    matching = [p for p in found if p.startswith(key + ":")]
    assert matching, f"no problem for {key} in {found}"
    assert allowed in matching[0]
    if value is not ...:
        # The message quotes the offending value (the item, for a list or a one-key mapping).
        shown = value[0] if isinstance(value, list) and key.endswith("]") else value
        shown = next(iter(shown.values())) if isinstance(shown, dict) else shown
        assert repr(shown)[:20] in matching[0]


def test_min_count_le_count_le_max_count():
    raw = with_("cluster.systemPool", {"count": 6, "minCount": 1, "maxCount": 5})
    [msg] = [p for p in problems(raw) if "systemPool" in p]
    assert msg.startswith("aks-platform:cluster.systemPool:") and "minCount <= count <= maxCount" in msg
    raw = with_("cluster.systemPool", {"count": 1, "minCount": 2, "maxCount": 5})
    assert any("minCount <= count <= maxCount" in p for p in problems(raw))
    raw = with_("cluster.systemPool", {"count": 2, "minCount": 1})
    assert any("both minCount and maxCount" in p for p in problems(raw))
    cfg = load(with_("cluster.systemPool", {"count": 2, "minCount": 1, "maxCount": 5}))
    assert cfg.cluster.system_pool.autoscaling


def test_user_pools_need_names_sizes_and_distinct_names():
    raw = with_("cluster.userPools", [{"vmSize": "Standard_D8ds_v5"}, {"name": "system", "vmSize": "Standard_D8ds_v5"}])
    found = problems(raw)
    assert any(p.startswith("aks-platform:cluster.userPools[0].name:") and "required" in p for p in found)
    assert any(p.startswith("aks-platform:cluster.userPools:") and "'system'" in p for p in found)
    cfg = load(with_("cluster.userPools", [{"name": "apps", "vmSize": "Standard_D8ds_v5", "count": 0, "minCount": 0, "maxCount": 3}]))
    assert cfg.cluster.user_pools[0].count == 0  # user pools may scale to zero


def test_unknown_keys_are_errors_at_every_level():
    found = problems(with_("skuTeir", "Free", with_("cluster.skuTeir", "Standard", with_("addons.kro.enable", True))))
    assert any(p.startswith("aks-platform:skuTeir:") and "no such setting" in p for p in found)
    assert any(p.startswith("aks-platform:cluster.skuTeir:") and "skuTier" in p for p in found)
    assert any(p.startswith("aks-platform:addons.kro.enable:") and "enabled" in p for p in found)


def test_all_problems_are_reported_together():
    raw = with_("environment", "X", with_("location", "?", with_("cluster.skuTier", "Gold")))
    found = problems(raw)
    assert {p.split(":")[1] for p in found} >= {"environment", "location", "cluster.skuTier"}


def test_local_accounts_off_needs_an_admin_group():
    found = problems(with_("cluster.localAccounts", False))
    assert any(p.startswith("aks-platform:cluster.adminGroupObjectIds:") for p in found)


def test_aso_needs_cert_manager_and_a_scope():
    found = problems(with_("addons.certManager", {"enabled": False}))
    assert any(p.startswith("aks-platform:addons.certManager.enabled:") and "ASO" in p for p in found)
    found = problems(with_("appResourceGroups", ...))
    assert any(p.startswith("aks-platform:appResourceGroups:") and "subscriptionScope" in p for p in found)
    cfg = load(with_("addons.aso", {"subscriptionScope": True}, with_("appResourceGroups", ...)))
    assert cfg.addons.aso.subscription_scope


def test_app_image_is_required_while_argocd_can_deploy_the_app():
    found = problems(with_("addons.argocd.appImage", ...))
    assert any(p.startswith("aks-platform:addons.argocd.appImage:") and "required" in p for p in found)
    # Without any app variant there is nothing to deploy, so no image is needed.
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

    monitor = SETTINGS.monitor
    assert monitor.registrations == []


def test_shipped_stacks_are_valid(stack_file):
    for stack in ("dev", "prod"):
        raw_config, secret = stack_file(stack)
        raw = {k.split(":", 1)[1]: v for k, v in raw_config.items() if k.startswith("aks-platform:")}
        cfg = load(raw, frozenset(secret))
        assert cfg.environment == stack
