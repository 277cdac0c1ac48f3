"""AksCluster: the AKS settings of each stack, the node-pool split, credentials and the provider."""

from __future__ import annotations

import copy
import json
import uuid

import pulumi
import pytest
import yaml

from components.cluster import (
    AKS_AAD_SERVER_APP_ID,
    AksCluster,
    AksClusterArgs,
    NetworkArgs,
    NodePoolArgs,
    kubelogin_kubeconfig,
)
from components.cluster_access import ClusterAdminTimeout, wait_for_cluster_admin
from components.cluster_access import _Provider as _ReadyProvider
from components.roles import BUILTIN_ROLES, assign_role
from offline.evaluate import UNKNOWN, Secret, evaluate
from offline.mocks import (
    DEPLOYER_OBJECT_ID,
    PERSON_OBJECT_ID,
    PERSON_SUBSCRIPTION_ID,
    PERSON_TENANT_ID,
    RBAC_PROPAGATION_SECONDS,
    SUBSCRIPTION_ID,
    TENANT_ID,
    AzureCloud,
    AzureMocks,
    exec_kubeconfig,
    mock_guid,
)
from stacks import build
from stacks.config import ConfigError
from stacks.validation import from_pulumi
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
    assert mc.plain("autoUpgradeProfile") == {"upgradeChannel": "patch", "nodeOSUpgradeChannel": "NodeImage"}
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


ADMIN_GROUP = "3f2b7c1e-6d4a-4f0b-9b8e-2a1c5d7e9f10"
READY = "pulumi-python:dynamic:Resource"


def test_entra_only_cluster_grants_the_admin_groups_and_uses_kubelogin(shipped):
    """With Azure RBAC for Kubernetes authorization, each group in cluster.adminGroupObjectIds
    gets "Azure Kubernetes Service RBAC Cluster Admin" on the cluster (nothing names whoever
    runs `up`), and the Kubernetes provider waits until the grant has taken effect."""
    ev = shipped("prod")
    mc = ev.one(MC)
    assert mc.plain("aadProfile.enableAzureRBAC") is True
    [grant] = [r for r in ev.by_type(RA) if r.plain("scope") == mc_id("prod")]
    assert (grant.plain("principalId"), grant.plain("principalType")) == (ADMIN_GROUP, "Group")
    assert grant.plain("roleDefinitionId").endswith(f"/roleDefinitions/{BUILTIN_ROLES['Azure Kubernetes Service RBAC Cluster Admin']}")
    assert not [r for r in ev.by_type(RA) if r.plain("principalId") in (DEPLOYER_OBJECT_ID, PERSON_OBJECT_ID)]
    provider, ready = ev.one(K8S_PROVIDER), ev.one(READY)
    assert ev.depends_on(provider, ready) and ev.depends_on(ready, grant) and ev.depends_on(provider, mc)
    assert ready.plain("groups") == [ADMIN_GROUP] and isinstance(ready.input("kubeconfig"), Secret)
    # Not on the user pools: add-ons fit on the system pool and the pools take minutes each.
    assert not ev.depends_on(provider, ev.one(POOL))
    kubeconfig = provider.input("kubeconfig")
    assert isinstance(kubeconfig, Secret)
    user = yaml.safe_load(kubeconfig.value)["users"][0]["user"]["exec"]
    assert user["command"] == "kubelogin"
    assert user["args"][:3] == ["get-token", "--login", "azurecli"]
    assert user["args"][user["args"].index("--server-id") + 1] == AKS_AAD_SERVER_APP_ID
    assert "devicecode" not in user["args"]


def test_local_accounts_need_no_grant_and_no_wait(shipped):
    ev = shipped("dev")
    assert not [r for r in ev.by_type(RA) if "/managedClusters/" in r.plain("scope")]
    assert ev.by_type(READY) == []


def test_the_admin_grant_names_are_stable_and_one_per_group(stack_file):
    """Same config, same GUID names (so a second `up` replaces nothing); another group, another name."""
    config, secret = stack_file("prod")
    first, again = (run_program(copy.deepcopy(config), secret, stack="prod") for _ in range(2))
    other = "0d9e8f7a-6b5c-4d3e-8f2a-1b0c9d8e7f6a"
    config["aks-platform:cluster"]["adminGroupObjectIds"] = [ADMIN_GROUP, other]
    two = run_program(config, secret, stack="prod")

    def names(ev):
        return {r.plain("principalId"): r.plain("roleAssignmentName") for r in ev.by_type(RA) if r.plain("scope") == mc_id("prod")}

    assert names(first) == names(again)
    assert names(two)[ADMIN_GROUP] == names(first)[ADMIN_GROUP] and names(two)[other] != names(two)[ADMIN_GROUP]
    assert all(str(uuid.UUID(n)) == n for n in names(two).values())
    assert sorted(two.one(READY).plain("groups")) == sorted([ADMIN_GROUP, other])


def _cloud_after_prod_up(stack_file) -> tuple[AzureCloud, str]:
    config, secret = stack_file("prod")
    cloud = AzureCloud()
    evaluate(lambda: build(from_pulumi()), config=config, secret_keys=secret, stack="prod", mocks=AzureMocks(cloud=cloud))
    return cloud, mc_id("prod")


def test_an_admin_group_member_is_cluster_admin_once_the_grant_has_propagated(stack_file):
    """Azure as documented: with Azure RBAC the admin-groups field grants nothing, a role
    assignment does, minutes after it is created; the wait returns once it has."""
    cloud, cluster = _cloud_after_prod_up(stack_file)
    assert not cloud.authorize(cluster, {ADMIN_GROUP})  # just created: not yet
    waited = wait_for_cluster_admin(
        lambda *_: cloud.authorize(cluster, {ADMIN_GROUP}),
        groups=[ADMIN_GROUP], timeout=600, interval=10, sleep=cloud.advance, clock=lambda: cloud.now,
    )
    assert RBAC_PROPAGATION_SECONDS <= waited < RBAC_PROPAGATION_SECONDS + 10
    assert cloud.authorize(cluster, {ADMIN_GROUP})


def test_the_wait_is_bounded_with_a_message_that_says_what_to_check(stack_file):
    cloud, cluster = _cloud_after_prod_up(stack_file)
    stranger = {"0d9e8f7a-6b5c-4d3e-8f2a-1b0c9d8e7f6a"}
    with pytest.raises(ClusterAdminTimeout) as err:
        wait_for_cluster_admin(
            lambda *_: cloud.authorize(cluster, stranger),
            groups=[ADMIN_GROUP], timeout=600, interval=7, sleep=cloud.advance, clock=lambda: cloud.now,
        )
    assert cloud.now == 600
    message = str(err.value)
    assert "after 600 seconds" in message and ADMIN_GROUP in message and "cluster.adminGroupObjectIds" in message
    assert "create namespaces" in message and "member" in message


def test_mocks_grant_nothing_for_the_admin_groups_field_under_azure_rbac():
    """What the tests above rely on: AKS's admin-group binding counts only without Azure RBAC."""
    cloud = AzureCloud()
    cloud.clusters["c"] = {"azure_rbac": False, "admin_groups": [ADMIN_GROUP]}
    assert cloud.authorize("c", {ADMIN_GROUP})
    cloud.clusters["c"] = {"azure_rbac": True, "admin_groups": [ADMIN_GROUP]}
    assert not cloud.authorize("c", {ADMIN_GROUP})
    cloud.role_assignments.append(("/subscriptions/s", ADMIN_GROUP, BUILTIN_ROLES["Azure Kubernetes Service RBAC Cluster Admin"], 0))
    cloud.clusters["/subscriptions/s/resourceGroups/rg/providers/Microsoft.ContainerService/managedClusters/c"] = cloud.clusters["c"]
    cloud.advance(RBAC_PROPAGATION_SECONDS - 1)
    assert not cloud.authorize("/subscriptions/s/resourceGroups/rg/providers/Microsoft.ContainerService/managedClusters/c", {ADMIN_GROUP})
    cloud.advance(1)
    assert cloud.authorize("/subscriptions/s/resourceGroups/rg/providers/Microsoft.ContainerService/managedClusters/c", {ADMIN_GROUP})


def test_the_wait_runs_again_only_when_the_grants_change():
    provider = _ReadyProvider()
    olds = {"groups": [ADMIN_GROUP], "grants": ["g1"], "kubeconfig": "a"}
    assert not provider.diff("id", olds, {**olds, "kubeconfig": "rotated"}).changes
    assert provider.diff("id", olds, {**olds, "grants": ["g1", "g2"]}).changes


def mc_id(environment: str) -> str:
    return (
        f"/subscriptions/{SUBSCRIPTION_ID}/resourceGroups/rg-{environment}-platform"
        f"/providers/Microsoft.ContainerService/managedClusters/aks-{environment}"
    )


def _registered(ev) -> list[tuple[str, str]]:
    return sorted((r.urn, json.dumps(r.plain(), sort_keys=True, default=str)) for r in ev.resources)


@pytest.mark.parametrize("stack", ["prod", "tenants", "dev", "hybrid"])
def test_who_runs_up_changes_nothing_the_program_registers(stack_file, stack):
    """CI's service principal and a person (`az login`, whose default subscription and home
    tenant are not the platform's) register the same resources with the same inputs: the stack
    pins azure-native:subscriptionId and tenantId, and the mocks answer getClientConfig and
    place every resource as azure-native does for each caller (and refuse a role assignment
    whose principalType does not match the directory, as Azure does)."""
    config, secret = stack_file(stack)
    runs = {
        caller: evaluate(lambda: build(from_pulumi()), config=copy.deepcopy(config), secret_keys=secret, stack=stack, mocks=AzureMocks(caller=caller))
        for caller in ("ci", "person")
    }
    assert _registered(runs["ci"]) == _registered(runs["person"])
    text = json.dumps(_registered(runs["person"]))
    assert PERSON_OBJECT_ID not in text and PERSON_SUBSCRIPTION_ID not in text and PERSON_TENANT_ID not in text


def test_the_mocks_place_an_unpinned_stack_in_the_callers_subscription():
    """What the test above relies on: without the pin, azure-native (and so the mocks) uses
    the caller's own default subscription and tenant."""
    for caller, subscription, tenant in (("ci", SUBSCRIPTION_ID, TENANT_ID), ("person", PERSON_SUBSCRIPTION_ID, PERSON_TENANT_ID)):
        ev = evaluate(resources_group_and_client, mocks=AzureMocks(caller=caller))
        assert ev.outputs["id"].value == f"/subscriptions/{subscription}/resourceGroups/rg"
        assert (ev.outputs["subscription"].value, ev.outputs["tenant"].value) == (subscription, tenant)


def resources_group_and_client():
    from pulumi_azure_native import authorization, resources

    group = resources.ResourceGroup("rg", resource_group_name="rg", location="westeurope")
    client = authorization.get_client_config_output()
    return {"id": group.id, "subscription": client.subscription_id, "tenant": client.tenant_id}


@pytest.mark.parametrize("key", ["subscriptionId", "tenantId"])
@pytest.mark.parametrize("stack", ["prod", "hybrid"])
def test_a_stack_that_does_not_pin_its_subscription_and_tenant_is_refused(stack_file, stack, key):
    config, secret = stack_file(stack)
    del config[f"azure-native:{key}"]
    with pytest.raises(ConfigError, match=f"azure-native:{key}: got nothing; allowed: required: the "):
        run_program(config, secret, stack=stack)
    config[f"azure-native:{key}"] = "my-subscription"
    with pytest.raises(ConfigError, match=f"azure-native:{key}: got 'my-subscription'; allowed: the "):
        run_program(config, secret, stack=stack)


def test_mocks_refuse_a_mismatched_principal_type():
    """What the test above relies on: a person's object ID named as a ServicePrincipal fails."""

    def program():
        assign_role(
            "grant",
            principal_id=PERSON_OBJECT_ID,
            principal_type="ServicePrincipal",
            role="Reader",
            scope=f"/subscriptions/{SUBSCRIPTION_ID}/resourceGroups/rg",
            opts=pulumi.ResourceOptions(),
        )

    with pytest.raises(Exception, match="UnmatchedPrincipalType"):
        evaluate(program, mocks=AzureMocks(caller="person"))


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


# --- the second `up`, after AKS upgraded itself -------------------------------------------


def _versions_sent(ev) -> list[tuple[str, object]]:
    mc = ev.one(MC)
    sent = [("kubernetesVersion", mc.get("kubernetesVersion"))]
    sent += [(f"agentPoolProfiles[{p['name']}]", p.get("orchestratorVersion")) for p in mc.plain("agentPoolProfiles")]
    sent += [(f"AgentPool {p.name}", p.get("orchestratorVersion")) for p in ev.by_type(POOL)]
    return sent


def _not_older(sent: object, running: str) -> bool:
    """Whether AKS accepts `sent` while `running` runs: absent, the same minor, or newer."""
    if sent is None:
        return True
    parts = [int(p) for p in str(sent).split(".")]
    run = [int(p) for p in running.split(".")]
    return parts == run[: len(parts)] or parts > run[: len(parts)]


def _second_up(config: dict, secret: list, stack: str):
    cloud = AzureCloud()
    first = evaluate(lambda: build(from_pulumi()), config=copy.deepcopy(config), secret_keys=secret, stack=stack, mocks=AzureMocks(cloud=cloud))
    cluster_id = mc_id(config["aks-platform:environment"])
    before = cloud.read(cluster_id)["currentKubernetesVersion"]
    cloud.auto_upgrade()
    after = cloud.read(cluster_id)
    second = evaluate(lambda: build(from_pulumi()), config=copy.deepcopy(config), secret_keys=secret, stack=stack, mocks=AzureMocks(cloud=cloud))
    return first, second, before, after


@pytest.mark.parametrize(
    "stack,changes",
    [
        pytest.param("prod", {}, id="prod-as-shipped"),
        pytest.param("prod", {"upgradeChannel": "stable", "kubernetesVersion": None}, id="stable-channel-unpinned"),
        pytest.param("dev", {}, id="dev-as-shipped"),
        pytest.param("tenants", {"upgradeChannel": "rapid", "kubernetesVersion": None}, id="rapid-channel-unpinned"),
    ],
)
def test_the_next_update_after_an_automatic_upgrade_sends_no_older_version(stack_file, stack, changes):
    config, secret = stack_file(stack)
    for key, value in changes.items():
        if value is None:
            config["aks-platform:cluster"].pop(key, None)
        else:
            config["aks-platform:cluster"][key] = value
    first, second, before, after = _second_up(config, secret, stack)
    # The read after the upgrade reports the newer version, on the cluster and its pools.
    running = after["currentKubernetesVersion"]
    assert [int(p) for p in running.split(".")] > [int(p) for p in before.split(".")]
    assert {v["currentOrchestratorVersion"] for v in after["agentPools"].values()} == {running}
    # The second update (it ran: the mocks refuse a downgrade as AKS does) sent nothing older.
    assert [(where, sent) for where, sent in _versions_sent(second) if not _not_older(sent, running)] == []
    # Same config, same inputs: the program does not chase the version AKS moved to.
    assert _versions_sent(first) == _versions_sent(second)


def test_after_aks_moved_an_unsupported_minor_the_pin_is_bumped_and_nothing_older_is_sent(stack_file):
    """AKS upgrades a cluster that falls out of support whatever its channel: the old pin is
    then a downgrade AKS refuses (the second `up` fails, naming the versions), and the
    documented fix, setting kubernetesVersion to the running minor, sends nothing older."""
    config, secret = stack_file("prod")
    config["aks-platform:cluster"]["kubernetesVersion"] = "1.32"
    cloud = AzureCloud()

    def up(cfg):
        return evaluate(lambda: build(from_pulumi()), config=copy.deepcopy(cfg), secret_keys=secret, stack="prod", mocks=AzureMocks(cloud=cloud))

    up(config)
    assert cloud.read(mc_id("prod"))["currentKubernetesVersion"].startswith("1.32.")
    cloud.release_minor()  # 1.36: 1.32 would fall to n-4
    cloud.platform_upgrade()
    running = cloud.read(mc_id("prod"))["currentKubernetesVersion"]
    assert running.startswith("1.34.")
    with pytest.raises(Exception, match=f"downgrading Kubernetes version {running} to 1.32 is not allowed"):
        up(config)
    config["aks-platform:cluster"]["kubernetesVersion"] = "1.34"
    second = up(config)
    assert [(where, sent) for where, sent in _versions_sent(second) if not _not_older(sent, running)] == []
    assert cloud.read(mc_id("prod"))["currentKubernetesVersion"] == running


def test_mocks_refuse_a_downgrade_after_an_upgrade():
    """What the test above relies on: the cloud remembers the version and AKS's rules."""
    cloud = AzureCloud()
    assert cloud.resolve_version("1.34", None, "v") == "1.34.2"
    assert cloud.resolve_version("1.34", "1.34.7", "v") == "1.34.7"  # same minor: no change
    assert cloud.resolve_version(None, "1.35.0", "v") == "1.35.0"
    with pytest.raises(Exception, match="downgrading Kubernetes version 1.35.0 to 1.34"):
        cloud.resolve_version("1.34", "1.35.0", "v")
    with pytest.raises(Exception, match="downgrading"):
        cloud.resolve_version("1.34.1", "1.34.2", "v")


@pytest.mark.parametrize(
    "channel,version",
    [("stable", "1.34"), ("rapid", "1.34.2"), ("patch", "1.34.1")],
)
def test_cluster_args_refuse_a_version_the_channel_would_move(channel, version):
    with pytest.raises(ValueError, match="kubernetes_version.*would later be sent back as a downgrade"):
        _args(kubernetes_version=version, upgrade_channel=channel)


# --- user pools, one at a time --------------------------------------------------------------


def test_user_pools_are_created_and_changed_one_at_a_time(stack_file):
    """AKS refuses concurrent agent-pool operations on one cluster (409 OperationNotAllowed)."""
    config, secret = stack_file("prod")
    apps = config["aks-platform:cluster"]["userPools"][0]
    config["aks-platform:cluster"]["userPools"] = [dict(apps, name=n, labels={"workload": n}) for n in ("apps", "batch", "gpu")]
    ev = run_program(config, secret, stack="prod")
    pools = {p.plain("agentPoolName"): p for p in ev.by_type(POOL)}
    assert list(pools) == ["apps", "batch", "gpu"]  # registered in config order
    assert ev.depends_on(pools["batch"], pools["apps"]) and ev.depends_on(pools["gpu"], pools["batch"])
    assert not ev.depends_on(pools["apps"], pools["batch"])


# --- bring-your-own network ----------------------------------------------------------------

SPOKE = f"/subscriptions/{SUBSCRIPTION_ID}/resourceGroups/rg-network/providers/Microsoft.Network/virtualNetworks/vnet-spoke"
ROUTE_TABLE = f"/subscriptions/{SUBSCRIPTION_ID}/resourceGroups/rg-network/providers/Microsoft.Network/routeTables/rt-egress"


def _pool(name: str, subnet: str | None = None, mode_system: bool = False) -> NodePoolArgs:
    return NodePoolArgs(name=name, vm_size="Standard_D4ds_v5", count=2, vnet_subnet_id=subnet)


def _args(**overrides) -> AksClusterArgs:
    base = dict(
        cluster_name="aks-byo",
        location="westeurope",
        tenant_id=TENANT_ID,
        resource_group_name="rg-byo",
        system_pool=_pool("system"),
        admin_group_object_ids=["3f2b7c1e-6d4a-4f0b-9b8e-2a1c5d7e9f10"],
    )
    base.update(overrides)
    return AksClusterArgs(**base)


def test_pools_in_your_own_subnets_and_the_cluster_identity_may_use_them():
    args = _args(
        system_pool=_pool("system", f"{SPOKE}/subnets/nodes"),
        user_pools=[_pool("apps", f"{SPOKE}/subnets/apps"), _pool("batch", f"{SPOKE}/subnets/apps")],
        network=NetworkArgs(outbound_type="userDefinedRouting", route_table_id=ROUTE_TABLE),
    )
    ev = evaluate(lambda: AksCluster("c", args))
    mc = ev.one(MC)
    assert mc.plain("networkProfile.outboundType") == "userDefinedRouting"
    assert mc.plain("agentPoolProfiles")[0]["vnetSubnetID"] == f"{SPOKE}/subnets/nodes"
    pools = {p.plain("agentPoolName"): p for p in ev.by_type(POOL)}
    assert {n: p.plain("vnetSubnetID") for n, p in pools.items()} == {"apps": f"{SPOKE}/subnets/apps", "batch": f"{SPOKE}/subnets/apps"}
    grants = {r.plain("scope"): r for r in ev.by_type(RA) if "/subnets/" in r.plain("scope")}
    # One grant per distinct subnet, to the cluster's own (system-assigned) identity.
    assert sorted(grants) == [f"{SPOKE}/subnets/apps", f"{SPOKE}/subnets/nodes"]
    for scope, grant in grants.items():
        assert grant.plain("principalId") == mock_guid("aks-principal", "aks-byo")
        assert grant.plain("principalType") == "ServicePrincipal"
        assert grant.plain("roleDefinitionId") == (
            f"/subscriptions/{SUBSCRIPTION_ID}/providers/Microsoft.Authorization/roleDefinitions/{BUILTIN_ROLES['Network Contributor']}"
        )
        for pool in pools.values():
            assert ev.depends_on(pool, grant)
    # With userDefinedRouting the identity also reads and writes the subnet's route table.
    [route] = [r for r in ev.by_type(RA) if r.plain("scope") == ROUTE_TABLE]
    assert route.plain("principalId") == mock_guid("aks-principal", "aks-byo") and route.plain("principalType") == "ServicePrincipal"
    assert route.plain("roleDefinitionId").endswith(f"/roleDefinitions/{BUILTIN_ROLES['Network Contributor']}")
    assert all(ev.depends_on(pool, route) for pool in pools.values())


def test_no_subnet_grant_when_the_network_team_owns_it():
    args = _args(system_pool=_pool("system", f"{SPOKE}/subnets/nodes"), assign_subnet_role=False)
    ev = evaluate(lambda: AksCluster("c", args))
    assert [r.plain("scope") for r in ev.by_type(RA) if "/subnets/" in r.plain("scope")] == []
    assert ev.one(MC).plain("agentPoolProfiles")[0]["vnetSubnetID"] == f"{SPOKE}/subnets/nodes"


@pytest.mark.parametrize(
    "overrides,message",
    [
        ({"network": NetworkArgs(outbound_type="userDefinedRouting")}, "userDefinedRouting.*vnet_subnet_id"),
        (
            {"system_pool": _pool("system", f"{SPOKE}/subnets/nodes"), "network": NetworkArgs(outbound_type="userDefinedRouting")},
            "route_table_id: required with outbound_type 'userDefinedRouting'",
        ),
        ({"network": NetworkArgs(route_table_id=f"{SPOKE}/subnets/nodes")}, "the ARM ID of a route table"),
        ({"system_pool": _pool("system", "/subscriptions/x/subnets/y")}, "ARM ID of an existing subnet"),
        (
            {"system_pool": _pool("system", f"{SPOKE}/subnets/nodes"), "user_pools": [_pool("apps")]},
            "all pools or none",
        ),
        (
            {
                "system_pool": _pool("system", f"{SPOKE}/subnets/nodes"),
                "user_pools": [_pool("apps", f"{SPOKE}-2/subnets/apps")],
            },
            "one virtual network",
        ),
        ({"admin_group_object_ids": []}, "at least one Entra group"),
    ],
)
def test_cluster_args_refuse_networks_aks_cannot_build(overrides, message):
    with pytest.raises(ValueError, match=message):
        _args(**overrides)


def test_mocks_refuse_user_defined_routing_outside_your_own_subnet():
    """What AKS answers a UDR cluster without a subnet (the args above refuse it first)."""
    args = _args()
    args.network = NetworkArgs(outbound_type="userDefinedRouting")  # past the args' own check
    with pytest.raises(Exception, match="userDefinedRouting needs every agent pool in a subnet"):
        evaluate(lambda: AksCluster("c", args))


@pytest.mark.parametrize("preview", [False, True])
def test_the_provider_is_replaced_only_with_the_cluster(shipped, preview):
    """A changed kubeconfig (rotated certificate; unknown in the preview of any cluster update)
    must not replace the provider and so every object on it: the provider names the cluster."""
    ev = shipped("prod", preview=preview)
    provider, mc = ev.one(K8S_PROVIDER), ev.one(MC)
    assert ev.depends_on(provider, mc)
    if preview:
        # A first preview: the cluster's ID is not known yet, so neither is the identifier.
        assert provider.input("clusterIdentifier") == UNKNOWN
    else:
        assert provider.plain("clusterIdentifier") == mc_id("prod")
