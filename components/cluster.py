"""AksCluster: the AKS cluster with the OIDC issuer and workload identity, and its provider."""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass, field
from typing import Mapping, Optional, Sequence

import pulumi
import pulumi_kubernetes as k8s
import yaml
from pulumi_azure_native import containerservice, resources

from components.cluster_access import ClusterAdminReady, ClusterAdminReadyArgs, DEFAULT_TIMEOUT_SECONDS
from components.roles import assign_role

# AKS's Entra server application: the audience kubelogin asks tokens for (same in every tenant).
AKS_AAD_SERVER_APP_ID = "6dae42f8-4368-4678-94ff-3960e28e3630"
# What the cluster's own identity needs on a subnet it does not own (AKS docs, "Azure CNI
# overview": at least Network Contributor on the subnet when you bring your own network).
SUBNET_ROLE = "Network Contributor"
# Cluster admin under Azure RBAC for Kubernetes authorization (AKS built-in roles).
CLUSTER_ADMIN_ROLE = "Azure Kubernetes Service RBAC Cluster Admin"

# Auto-upgrade channels that move the Kubernetes version on their own: stable and rapid move
# the minor, patch moves the patch (AKS docs, "Automatically upgrade an AKS cluster").
MINOR_MOVING_CHANNELS = frozenset({"stable", "rapid"})
PATCH_MOVING_CHANNELS = frozenset({"patch"})
# The ARM ID of a subnet (the casing ARM and the CLIs print, either way for the fixed parts).
SUBNET_ID_PATTERN = (
    r"^/subscriptions/[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
    r"/[Rr]esource[Gg]roups/[-A-Za-z0-9_.()]+/providers/[Mm]icrosoft\.[Nn]etwork"
    r"/[Vv]irtual[Nn]etworks/[-A-Za-z0-9_.]+/[Ss]ubnets/[-A-Za-z0-9_.]+$"
)
_SUBNET_ID = re.compile(SUBNET_ID_PATTERN)
# The ARM ID of a route table.
ROUTE_TABLE_ID_PATTERN = (
    r"^/subscriptions/[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
    r"/[Rr]esource[Gg]roups/[-A-Za-z0-9_.()]+/providers/[Mm]icrosoft\.[Nn]etwork/[Rr]oute[Tt]ables/[-A-Za-z0-9_.]+$"
)
# What the cluster's identity needs on the route table of its subnet with userDefinedRouting:
# Microsoft.Network/routeTables/read, /write and routes/read, /write, /delete ("AKS cluster
# identity permissions" and "Additional cluster identity permissions", AKS docs
# concepts-identity); Network Contributor is the built-in role that holds them.
ROUTE_TABLE_ROLE = "Network Contributor"


def version_conflict(version: Optional[str], channel: str) -> Optional[str]:
    """Why `version` cannot be held under the auto-upgrade `channel`, or None when it can.

    AKS reports the version it moved to, and azure-native sends every update as a full PUT:
    a pinned version the channel has moved past would go back as a downgrade (refused), so
    the two must agree by construction. Re-sending 'MAJOR.MINOR' after a patch upgrade is
    fine: "Updating the cluster with the same <major.minor> once it has been created (e.g.
    1.14.x -> 1.14) will not trigger an upgrade" (ManagedClusterProperties.kubernetesVersion).
    """
    if version is None:
        return None
    if channel in MINOR_MOVING_CHANNELS:
        return (
            f"upgradeChannel {channel!r} moves the minor version on its own, so a pinned {version!r} would later be "
            "sent back as a downgrade; leave the version unset (AKS picks and upgrades it), or pin 'MAJOR.MINOR' with "
            "upgradeChannel 'patch' (minor upgrades by changing the pin)"
        )
    if channel in PATCH_MOVING_CHANNELS and version.count(".") != 1:
        return (
            f"upgradeChannel 'patch' moves the patch version on its own, so the pinned patch {version!r} would later be "
            f"sent back as a downgrade; pin 'MAJOR.MINOR' ({'.'.join(version.split('.')[:2])!r}), or use upgradeChannel "
            "'none' to own every patch"
        )
    return None


def subnet_id_problem(subnet_id: str) -> Optional[str]:
    if _SUBNET_ID.fullmatch(subnet_id):
        return None
    return (
        "the ARM ID of an existing subnet: /subscriptions/<id>/resourceGroups/<group>/providers/"
        "Microsoft.Network/virtualNetworks/<vnet>/subnets/<subnet>"
    )


def virtual_network_of(subnet_id: str) -> str:
    return subnet_id.rsplit("/subnets/", 1)[0].lower()


@dataclass(frozen=True)
class NodePoolArgs:
    """One node pool. Autoscaling is on when `min_count` and `max_count` are set."""

    name: str
    vm_size: str
    count: int
    min_count: Optional[int] = None
    max_count: Optional[int] = None
    zones: Sequence[str] = ()
    max_pods: int = 110
    os_disk_size_gb: Optional[int] = None
    labels: Mapping[str, str] = field(default_factory=dict)
    taints: Sequence[str] = ()
    # The ARM ID of an existing subnet for the nodes; None: AKS creates and owns the network.
    vnet_subnet_id: Optional[str] = None

    @property
    def autoscaling(self) -> bool:
        return self.min_count is not None


@dataclass(frozen=True)
class NetworkArgs:
    """Azure CNI overlay: pods get addresses from `pod_cidr`, not from the nodes' subnet."""

    dataplane: str = "cilium"
    network_policy: str = "cilium"
    pod_cidr: str = "10.244.0.0/16"
    service_cidr: str = "10.0.0.0/16"
    dns_service_ip: str = "10.0.0.10"
    outbound_type: str = "loadBalancer"
    # The ARM ID of the route table on the nodes' subnet(s); required with userDefinedRouting.
    route_table_id: Optional[str] = None


@dataclass(frozen=True)
class MaintenanceWindowArgs:
    day_of_week: str
    start_time: str
    duration_hours: int
    utc_offset: str
    interval_weeks: int = 1


@dataclass
class AksClusterArgs:
    cluster_name: str
    location: str
    # The Entra tenant that authenticates the cluster's users: the stack's own, explicit, so
    # that who runs `up` changes nothing (Azure RBAC for Kubernetes needs it to be the tenant
    # of the cluster's subscription: AKS docs, "Use Azure RBAC for Kubernetes Authorization").
    tenant_id: str
    # The component creates this group unless `create_resource_group` is False (then it exists).
    resource_group_name: str
    system_pool: NodePoolArgs
    user_pools: Sequence[NodePoolArgs] = ()
    # "MAJOR.MINOR" or "MAJOR.MINOR.PATCH"; None: AKS's default at creation.
    kubernetes_version: Optional[str] = None
    sku_tier: str = "Free"
    upgrade_channel: str = "patch"
    node_os_upgrade_channel: str = "NodeImage"
    local_accounts: bool = False
    admin_group_object_ids: Sequence[str] = ()
    api_server_authorized_ip_ranges: Sequence[str] = ()
    network: NetworkArgs = field(default_factory=NetworkArgs)
    maintenance_window: Optional[MaintenanceWindowArgs] = None
    # kubelogin's non-interactive login mode for the provider's kubeconfig (Entra-only clusters).
    kubelogin_mode: str = "azurecli"
    # How long the Kubernetes provider waits for the admin groups' grant to take effect.
    admin_ready_timeout_seconds: int = DEFAULT_TIMEOUT_SECONDS
    # With the nodes in your own subnets: grant the cluster's identity Network Contributor on
    # each, and on the route table (False when the network team grants it, or the deployer may not).
    assign_subnet_role: bool = True
    create_resource_group: bool = True
    tags: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # Checked here, before the component registers anything (config checks the same,
        # with the stack's key names).
        conflict = version_conflict(self.kubernetes_version, self.upgrade_channel)
        if conflict:
            raise ValueError(f"AksClusterArgs.kubernetes_version: {conflict}")
        if not self.local_accounts and not self.admin_group_object_ids:
            raise ValueError(
                "AksClusterArgs.admin_group_object_ids: at least one Entra group when local accounts are off "
                "(its members, people and the CI identity, administer the cluster)"
            )
        pools = [self.system_pool, *self.user_pools]
        for pool in pools:
            if pool.vnet_subnet_id is not None and subnet_id_problem(pool.vnet_subnet_id):
                raise ValueError(f"NodePoolArgs({pool.name}).vnet_subnet_id: {pool.vnet_subnet_id!r}: {subnet_id_problem(pool.vnet_subnet_id)}")
        with_subnet = [p for p in pools if p.vnet_subnet_id]
        if with_subnet and len(with_subnet) != len(pools):
            raise ValueError(
                f"NodePoolArgs.vnet_subnet_id: set on {[p.name for p in with_subnet]} but not on "
                f"{[p.name for p in pools if not p.vnet_subnet_id]}: all pools or none"
            )
        if len({virtual_network_of(p.vnet_subnet_id) for p in with_subnet}) > 1:  # type: ignore[arg-type]
            raise ValueError("NodePoolArgs.vnet_subnet_id: every pool's subnet must be in one virtual network (AKS requires it)")
        if self.network.outbound_type == "userDefinedRouting" and not with_subnet:
            raise ValueError(
                "NetworkArgs.outbound_type 'userDefinedRouting': needs the pools in your own subnet (vnet_subnet_id) "
                "whose route table sends egress to a firewall"
            )
        route_table = self.network.route_table_id
        if route_table is not None and not re.fullmatch(ROUTE_TABLE_ID_PATTERN, route_table):
            raise ValueError(f"NetworkArgs.route_table_id: {route_table!r}: the ARM ID of a route table (/subscriptions/<id>/resourceGroups/<group>/providers/Microsoft.Network/routeTables/<name>)")
        if self.network.outbound_type == "userDefinedRouting" and route_table is None:
            raise ValueError(
                "NetworkArgs.route_table_id: required with outbound_type 'userDefinedRouting': the route table on the "
                "nodes' subnet, which the cluster's identity must read and write"
            )


class AksCluster(pulumi.ComponentResource):
    cluster_name: pulumi.Output[str]
    cluster_id: pulumi.Output[str]
    resource_group_name: pulumi.Output[str]
    oidc_issuer_url: pulumi.Output[str]
    kubeconfig: pulumi.Output[str]
    provider: k8s.Provider

    def __init__(self, name: str, args: AksClusterArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("aks-platform:cluster:AksCluster", name, None, opts)

        child = pulumi.ResourceOptions(parent=self)

        if args.create_resource_group:
            group = resources.ResourceGroup(
                f"{name}-rg",
                resource_group_name=args.resource_group_name,
                location=args.location,
                tags=dict(args.tags),
                opts=child,
            )
            rg_name: pulumi.Output[str] = group.name
        else:
            rg_name = pulumi.Output.from_input(args.resource_group_name)

        # With a channel that moves the minor the version is AKS's: version_conflict refuses a
        # pin there, so none is sent and an update cannot carry an older one.
        version = args.kubernetes_version
        system = _pool_profile(args.system_pool, mode="System", version=version)
        net = args.network
        managed = containerservice.ManagedCluster(
            f"{name}-aks",
            resource_name_=args.cluster_name,
            resource_group_name=rg_name,
            location=args.location,
            dns_prefix=args.cluster_name,
            kubernetes_version=version,
            sku=containerservice.ManagedClusterSKUArgs(name="Base", tier=args.sku_tier),
            identity=containerservice.ManagedClusterIdentityArgs(type="SystemAssigned"),
            # Only the system pool is inline: AKS cannot add inline pools after creation,
            # so every user pool is its own AgentPool resource below.
            agent_pool_profiles=[containerservice.ManagedClusterAgentPoolProfileArgs(name=args.system_pool.name, **system)],
            enable_rbac=True,
            aad_profile=containerservice.ManagedClusterAADProfileArgs(
                managed=True,
                enable_azure_rbac=True,
                admin_group_object_ids=list(args.admin_group_object_ids) or None,
                tenant_id=args.tenant_id,
            ),
            disable_local_accounts=not args.local_accounts,
            oidc_issuer_profile=containerservice.ManagedClusterOIDCIssuerProfileArgs(enabled=True),
            security_profile=containerservice.ManagedClusterSecurityProfileArgs(
                workload_identity=containerservice.ManagedClusterSecurityProfileWorkloadIdentityArgs(enabled=True),
            ),
            auto_upgrade_profile=containerservice.ManagedClusterAutoUpgradeProfileArgs(
                upgrade_channel=args.upgrade_channel,
                node_os_upgrade_channel=args.node_os_upgrade_channel,
            ),
            network_profile=containerservice.ContainerServiceNetworkProfileArgs(
                network_plugin="azure",
                network_plugin_mode="overlay",
                network_dataplane=net.dataplane,
                network_policy=net.network_policy,
                pod_cidr=net.pod_cidr,
                service_cidr=net.service_cidr,
                dns_service_ip=net.dns_service_ip,
                outbound_type=net.outbound_type,
                load_balancer_sku="standard",
            ),
            api_server_access_profile=containerservice.ManagedClusterAPIServerAccessProfileArgs(
                authorized_ip_ranges=list(args.api_server_authorized_ip_ranges),
            )
            if args.api_server_authorized_ip_ranges
            else None,
            tags=dict(args.tags),
            # The autoscaler owns the node count.
            opts=pulumi.ResourceOptions(
                parent=self,
                ignore_changes=["agentPoolProfiles[0].count"] if args.system_pool.autoscaling else None,
            ),
        )
        self.managed_cluster = managed

        # Bring-your-own network: the cluster's identity needs Network Contributor on each
        # subnet. A system-assigned identity exists only once the cluster does, so (as
        # `az aks create` does) the grant follows the cluster; the user pools wait for it.
        self.subnet_role_assignments: list[pulumi.Resource] = []
        if args.assign_subnet_role:
            subnets = sorted({p.vnet_subnet_id for p in [args.system_pool, *args.user_pools] if p.vnet_subnet_id})
            grants = [
                (f"subnet-{subnet.rsplit('/', 1)[-1]}", SUBNET_ROLE, subnet, "its nodes and load balancers join this subnet")
                for subnet in subnets
            ]
            route_table = args.network.route_table_id
            if route_table:
                grants.append(
                    (f"route-table-{route_table.rsplit('/', 1)[-1]}", ROUTE_TABLE_ROLE, route_table,
                     "it reads and writes the routes of its nodes' subnet")
                )
            self.subnet_role_assignments = [
                assign_role(
                    f"{name}-{key}-network",
                    principal_id=managed.identity.apply(lambda i: i.principal_id if i else None),
                    role=role,
                    scope=scope,
                    description=f"AKS {args.cluster_name}: {why}",
                    opts=child,
                )
                for key, role, scope, why in grants
            ]

        # AKS refuses a second agent-pool operation on a cluster while one runs (409
        # OperationNotAllowed), so each user pool waits for the one before it.
        self.user_pools: list[containerservice.AgentPool] = []
        previous: list[pulumi.Resource] = list(self.subnet_role_assignments)
        for pool in args.user_pools:
            agent_pool = containerservice.AgentPool(
                f"{name}-pool-{pool.name}",
                agent_pool_name=pool.name,
                resource_group_name=rg_name,
                resource_name_=managed.name,
                **_pool_profile(pool, mode="User", version=version),
                opts=pulumi.ResourceOptions(
                    parent=self, depends_on=previous or None, ignore_changes=["count"] if pool.autoscaling else None
                ),
            )
            self.user_pools.append(agent_pool)
            previous = [agent_pool]

        self.maintenance = _maintenance(name, args, rg_name, managed, self)

        # depends_on keeps the credentials invoke from running in preview against a cluster
        # that does not exist yet: it yields unknown there instead of failing.
        invoke_opts = pulumi.InvokeOutputOptions(parent=self, depends_on=[managed])
        if args.local_accounts:
            creds = containerservice.list_managed_cluster_admin_credentials_output(
                resource_group_name=rg_name, resource_name=managed.name, opts=invoke_opts
            )
            kubeconfig = creds.kubeconfigs.apply(lambda kcs: _decode(kcs[0].value))
        else:
            creds = containerservice.list_managed_cluster_user_credentials_output(
                resource_group_name=rg_name, resource_name=managed.name, format="exec", opts=invoke_opts
            )
            mode = args.kubelogin_mode
            kubeconfig = creds.kubeconfigs.apply(lambda kcs: kubelogin_kubeconfig(_decode(kcs[0].value), mode))

        # Cluster admin on an Entra-only cluster. With Azure RBAC for Kubernetes authorization,
        # AKS's own binding of adminGroupObjectIDs to cluster-admin is not documented to apply
        # ("If you want to conveniently grant users full admin rights, and are not using Azure
        # RBAC"; "The admin roles field ... is irrelevant when Azure RBAC for Kubernetes
        # Authorization is enabled": AKS docs, concepts-identity, until 2026), so each admin
        # group gets the Azure role explicitly, at the cluster's scope. Principals and types come
        # from config, never from who runs `up`.
        self.admin_role_assignments: list[pulumi.Resource] = []
        provider_deps: list[pulumi.Resource] = [managed]
        if not args.local_accounts:
            self.admin_role_assignments = [
                assign_role(
                    f"{name}-cluster-admin-{group}",
                    principal_id=group,
                    principal_type="Group",
                    role=CLUSTER_ADMIN_ROLE,
                    scope=managed.id,
                    description=f"AKS {args.cluster_name}: members of this Entra group administer the cluster",
                    opts=child,
                )
                for group in args.admin_group_object_ids
            ]
            # A new grant takes minutes to reach AKS's authorizer: the provider, and so every
            # Kubernetes object, waits until the identity running `up` is admin (bounded).
            self.admin_ready = ClusterAdminReady(
                f"{name}-cluster-admin-ready",
                ClusterAdminReadyArgs(
                    kubeconfig=kubeconfig,
                    groups=list(args.admin_group_object_ids),
                    grants=[g.id for g in self.admin_role_assignments],
                    timeout_seconds=args.admin_ready_timeout_seconds,
                ),
                opts=pulumi.ResourceOptions(parent=self, depends_on=self.admin_role_assignments),
            )
            provider_deps.append(self.admin_ready)
        # Add-ons run on the system pool: no wait for the user pools.

        self.kubeconfig = pulumi.Output.secret(kubeconfig)
        self.provider = k8s.Provider(
            f"{name}-k8s",
            kubeconfig=self.kubeconfig,
            # The provider, and with it every Kubernetes object, is replaced only when the
            # cluster is: without this, any kubeconfig change (a rotated certificate, or an
            # unknown kubeconfig in the preview of any cluster update) replaces the provider
            # and so every object, the root Application's cascade included
            # (pulumi-kubernetes provider.go DiffConfig, `clusterIdentifier`).
            cluster_identifier=managed.id,
            # Add-ons install once the cluster exists.
            opts=pulumi.ResourceOptions(parent=self, depends_on=provider_deps),
        )

        self.cluster_name = managed.name
        self.cluster_id = managed.id
        self.resource_group_name = rg_name
        self.oidc_issuer_url = managed.oidc_issuer_profile.apply(lambda p: p.issuer_url if p else None)
        self.register_outputs(
            {
                "cluster_name": self.cluster_name,
                "cluster_id": self.cluster_id,
                "oidc_issuer_url": self.oidc_issuer_url,
                "kubeconfig": self.kubeconfig,
            }
        )


def _pool_profile(pool: NodePoolArgs, *, mode: str, version: Optional[str]) -> dict:
    return dict(
        mode=mode,
        vm_size=pool.vm_size,
        count=pool.count,
        enable_auto_scaling=pool.autoscaling,
        min_count=pool.min_count,
        max_count=pool.max_count,
        availability_zones=list(pool.zones) or None,
        max_pods=pool.max_pods,
        os_disk_size_gb=pool.os_disk_size_gb,
        os_type="Linux",
        type="VirtualMachineScaleSets",
        orchestrator_version=version,
        node_labels=dict(pool.labels) or None,
        node_taints=list(pool.taints) or None,
        vnet_subnet_id=pool.vnet_subnet_id,
    )


def _maintenance(
    name: str, args: AksClusterArgs, rg_name: pulumi.Input[str], managed: containerservice.ManagedCluster, parent: pulumi.Resource
) -> list[containerservice.MaintenanceConfiguration]:
    """AKS reads planned maintenance only from these two well-known configuration names."""
    window = args.maintenance_window
    if window is None:
        return []
    schedules = []
    if args.upgrade_channel != "none":
        schedules.append(("auto-upgrade", "aksManagedAutoUpgradeSchedule"))
    if args.node_os_upgrade_channel not in ("None", "Unmanaged"):
        schedules.append(("node-os", "aksManagedNodeOSUpgradeSchedule"))
    return [
        containerservice.MaintenanceConfiguration(
            f"{name}-maintenance-{key}",
            config_name=config_name,
            resource_group_name=rg_name,
            resource_name_=managed.name,
            maintenance_window=_window_args(window),
            opts=pulumi.ResourceOptions(parent=parent),
        )
        for key, config_name in schedules
    ]


def _window_args(window: MaintenanceWindowArgs) -> containerservice.MaintenanceWindowArgs:
    return containerservice.MaintenanceWindowArgs(
        duration_hours=window.duration_hours,
        start_time=window.start_time,
        utc_offset=window.utc_offset,
        schedule=containerservice.ScheduleArgs(
            weekly=containerservice.WeeklyScheduleArgs(day_of_week=window.day_of_week, interval_weeks=window.interval_weeks)
        ),
    )


def _decode(value: str) -> str:
    return base64.b64decode(value).decode()


def kubelogin_kubeconfig(kubeconfig: str, mode: str) -> str:
    """Rewrite AKS's exec kubeconfig for a non-interactive kubelogin login mode.

    AKS returns `kubelogin get-token --login devicecode`, which blocks on a CI runner.
    This keeps the server ID, environment and tenant and switches the login mode, as
    `kubelogin convert-kubeconfig -l <mode>` does.
    """
    doc = yaml.safe_load(kubeconfig)
    for user in doc.get("users") or []:
        exec_ = (user.get("user") or {}).get("exec")
        if not exec_:
            continue
        args = list(exec_.get("args") or [])
        kept: dict[str, str] = {}
        for flag in ("--environment", "--server-id", "--tenant-id"):
            if flag in args and args.index(flag) + 1 < len(args):
                kept[flag] = args[args.index(flag) + 1]
        kept.setdefault("--server-id", AKS_AAD_SERVER_APP_ID)
        new_args = ["get-token", "--login", mode]
        for flag, value in kept.items():
            new_args += [flag, value]
        exec_["args"] = new_args
        exec_["command"] = "kubelogin"
    return yaml.safe_dump(doc, sort_keys=False)
