"""AksCluster: the AKS settings of each stack, the node-pool split, credentials and the provider."""

from __future__ import annotations

import yaml
import pytest

from components.cluster import AKS_AAD_SERVER_APP_ID, kubelogin_kubeconfig
from components.roles import BUILTIN_ROLES
from offline.evaluate import UNKNOWN, Secret
from offline.mocks import DEPLOYER_OBJECT_ID, SUBSCRIPTION_ID, TENANT_ID, exec_kubeconfig
from tests.conftest import run_program

MC = "azure-native:containerservice:ManagedCluster"
POOL = "azure-native:containerservice:AgentPool"
RA = "azure-native:authorization:RoleAssignment"
K8S_PROVIDER = "pulumi:providers:kubernetes"


def test_dev_cluster_is_small_and_cheap(shipped):
    ev = shipped("dev")
    mc = ev.one(MC)
    assert mc.plain("resourceName") == "aks-dev"
    assert mc.plain("sku") == {"name": "Base", "tier": "Free"}
    assert mc.plain("disableLocalAccounts") is False
    [system] = mc.plain("agentPoolProfiles")
    assert (system["mode"], system["count"], system["enableAutoScaling"]) == ("System", 1, False)
    assert ev.by_type(POOL) == []
    # Local accounts on: no deployer grant is needed, the admin kubeconfig is used.
    assert not [r for r in ev.by_type(RA) if "deployer" in r.name]
    kubeconfig = yaml.safe_load(ev.outputs["kubeconfig"].value)
    assert "client-certificate-data" in kubeconfig["users"][0]["user"]


def test_prod_cluster_settings(shipped):
    ev = shipped("prod")
    mc = ev.one(MC)
    assert mc.plain("sku") == {"name": "Base", "tier": "Standard"}
    assert mc.plain("disableLocalAccounts") is True
    assert mc.plain("oidcIssuerProfile") == {"enabled": True}
    assert mc.plain("securityProfile") == {"workloadIdentity": {"enabled": True}}
    assert mc.plain("aadProfile") == {
        "managed": True,
        "enableAzureRBAC": True,
        "adminGroupObjectIDs": ["3f2b7c1e-6d4a-4f0b-9b8e-2a1c5d7e9f10"],
        "tenantID": TENANT_ID,
    }
    assert mc.plain("autoUpgradeProfile") == {"upgradeChannel": "stable", "nodeOSUpgradeChannel": "NodeImage"}
    assert mc.plain("networkProfile") == {
        "networkPlugin": "azure",
        "networkPluginMode": "overlay",
        "networkDataplane": "cilium",
        "networkPolicy": "cilium",
        "podCidr": "10.244.0.0/16",
        "serviceCidr": "10.0.0.0/16",
        "dnsServiceIP": "10.0.0.10",
        "outboundType": "loadBalancer",
        "loadBalancerSku": "standard",
    }
    assert mc.plain("apiServerAccessProfile") == {"authorizedIPRanges": ["203.0.113.0/24"]}
    assert mc.plain("kubernetesVersion") == "1.34"
    assert mc.protect
    # The autoscaler owns the system pool's node count.
    assert mc.ignore_changes == ["agentPoolProfiles[0].count"]


def test_prod_node_pool_split(stack_file):
    """Only the system pool is inline; each user pool is a separate AgentPool resource."""
    config, secret = stack_file("prod")
    ev = run_program(config, secret, stack="prod")
    mc = ev.one(MC)
    [system] = mc.plain("agentPoolProfiles")
    assert system["name"] == "system" and system["mode"] == "System"
    assert (system["count"], system["minCount"], system["maxCount"]) == (3, 3, 5)
    assert system["enableAutoScaling"] is True and system["availabilityZones"] == ["1", "2", "3"]
    pool = ev.one(POOL)
    assert pool.plain("agentPoolName") == "apps" and pool.plain("mode") == "User"
    assert pool.plain("resourceName") == "aks-prod"
    assert (pool.plain("count"), pool.plain("minCount"), pool.plain("maxCount")) == (3, 3, 10)
    assert pool.plain("enableAutoScaling") is True
    assert pool.plain("vmSize") == "Standard_D8ds_v5" and pool.plain("maxPods") == 110
    assert pool.plain("nodeLabels") == {"workload": "apps"}
    assert pool.plain("orchestratorVersion") == "1.34"
    assert pool.ignore_changes == ["count"]
    assert ev.depends_on(pool, mc)


def test_prod_maintenance_windows(shipped):
    ev = shipped("prod")
    windows = {r.plain("configName"): r for r in ev.by_type("azure-native:containerservice:MaintenanceConfiguration")}
    assert set(windows) == {"aksManagedAutoUpgradeSchedule", "aksManagedNodeOSUpgradeSchedule"}
    for window in windows.values():
        assert window.plain("maintenanceWindow") == {
            "durationHours": 4,
            "startTime": "02:00",
            "utcOffset": "+00:00",
            "schedule": {"weekly": {"dayOfWeek": "Sunday", "intervalWeeks": 1}},
        }


def test_entra_only_cluster_grants_deployer_and_uses_kubelogin(shipped):
    ev = shipped("prod")
    mc = ev.one(MC)
    [grant] = [r for r in ev.by_type(RA) if "deployer" in r.name]
    assert grant.plain("principalId") == DEPLOYER_OBJECT_ID
    assert grant.plain("principalType") == "ServicePrincipal"
    assert grant.plain("scope") == (
        f"/subscriptions/{SUBSCRIPTION_ID}/resourceGroups/rg-prod-platform"
        "/providers/Microsoft.ContainerService/managedClusters/aks-prod"
    )
    assert grant.plain("roleDefinitionId").endswith(BUILTIN_ROLES["Azure Kubernetes Service RBAC Cluster Admin"])
    provider = ev.one(K8S_PROVIDER)
    # The provider waits for the grant, so add-ons install with access in place; not for
    # the user pools: add-ons fit on the system pool and the pools take minutes each.
    assert ev.depends_on(provider, grant)
    assert ev.depends_on(provider, mc)
    assert not ev.depends_on(provider, ev.one(POOL))
    kubeconfig = provider.input("kubeconfig")
    assert isinstance(kubeconfig, Secret)
    user = yaml.safe_load(kubeconfig.value)["users"][0]["user"]["exec"]
    assert user["command"] == "kubelogin"
    assert user["args"][:3] == ["get-token", "--login", "azurecli"]
    assert user["args"][user["args"].index("--server-id") + 1] == AKS_AAD_SERVER_APP_ID
    assert "devicecode" not in user["args"]


@pytest.mark.parametrize("mode", ["azurecli", "workloadidentity", "spn", "msi"])
def test_kubelogin_conversion_keeps_server_tenant_and_environment(mode):
    converted = yaml.safe_load(kubelogin_kubeconfig(exec_kubeconfig("aks-x", "westeurope"), mode))
    args = converted["users"][0]["user"]["exec"]["args"]
    assert args[:3] == ["get-token", "--login", mode]
    pairs = dict(zip(args[3::2], args[4::2]))
    assert pairs == {"--environment": "AzurePublicCloud", "--server-id": AKS_AAD_SERVER_APP_ID, "--tenant-id": TENANT_ID}
    # The cluster and context are untouched.
    original = yaml.safe_load(exec_kubeconfig("aks-x", "westeurope"))
    assert converted["clusters"] == original["clusters"] and converted["contexts"] == original["contexts"]


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_preview_has_unknowns_and_no_credentials_call(shipped, stack):
    ev = shipped(stack, True)
    assert not ev.outputs["oidcIssuerUrl"].known
    assert not ev.outputs["kubeconfig"].known and ev.outputs["kubeconfig"].secret
    provider = ev.one(K8S_PROVIDER)
    # Unknown until the cluster exists: Pulumi does not configure the provider in preview.
    assert provider.plain("kubeconfig") == UNKNOWN


def test_existing_resource_group_is_used_not_created(stack_file):
    config, secret = stack_file("dev")
    config["aks-platform:existingResourceGroup"] = "rg-shared"
    ev = run_program(config, secret)
    groups = [r.plain("resourceGroupName") for r in ev.by_type("azure-native:resources:ResourceGroup")]
    assert "rg-shared" not in groups and "rg-dev-platform" not in groups
    assert ev.one(MC).plain("resourceGroupName") == "rg-shared"


def test_oidc_issuer_url_flows_from_the_cluster(stack_file):
    config, secret = stack_file("dev")
    ev = run_program(config, secret)
    url = ev.outputs["oidcIssuerUrl"].value
    assert url.startswith("https://westeurope.oic.prod-aks.azure.com/") and url.endswith("/")
    assert SUBSCRIPTION_ID not in url
