"""The typed stack config: one load-and-validate step over the `aks-platform:*` keys.

`load(raw, secret_keys)` is a pure function of the stack's config (already JSON-decoded)
and returns frozen dataclasses, or raises one :class:`ConfigError` listing every problem,
each naming the config key, the value given and what is allowed. Nothing here touches
Pulumi resources, so an invalid stack registers nothing. `from_pulumi()` reads the running
stack's config and calls `load`.
"""

from __future__ import annotations

import ipaddress
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional

from components.oidc_issuer import InvalidPublicKey, load_public_key
from components.roles import BUILTIN_ROLES
from components.versions import CHARTS

from stacks.validate import (
    ConfigError,
    Problems,
    Section,
    is_cidr,
    is_dns_label,
    is_guid,
)

PROJECT = "aks-platform"

KINDS = ("aks", "hybrid")
SKU_TIERS = ("Free", "Standard", "Premium")
UPGRADE_CHANNELS = ("none", "patch", "stable", "rapid", "node-image")
NODE_OS_UPGRADE_CHANNELS = ("None", "Unmanaged", "SecurityPatch", "NodeImage")
NETWORK_DATAPLANES = ("cilium", "azure")
NETWORK_POLICIES = ("cilium", "calico", "azure", "none")
OUTBOUND_TYPES = ("loadBalancer", "managedNATGateway", "userDefinedRouting")
KUBELOGIN_MODES = ("azurecli", "workloadidentity", "spn", "msi", "azd")
PRINCIPAL_TYPES = ("ServicePrincipal", "User", "Group")
DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
ZONES = ("1", "2", "3")

# Names: the environment prefix ends up in resource group, cluster, identity and DNS names;
# 2-16 lowercase letters/digits/hyphens keeps every derived name inside Azure's limits
# (the tightest: AKS DNS prefix 54, managed identity 128, resource group 90).
ENVIRONMENT_RE = re.compile(r"^[a-z][a-z0-9-]{0,14}[a-z0-9]$")
LOCATION_RE = re.compile(r"^[a-z][a-z0-9]{2,39}$")
K8S_VERSION_RE = re.compile(r"^1\.(\d{2})(\.\d{1,3})?$")
# Linux node pool names: lowercase alphanumeric, start with a letter, at most 12 characters.
POOL_NAME_RE = re.compile(r"^[a-z][a-z0-9]{0,11}$")
VM_SIZE_RE = re.compile(r"^Standard_[A-Za-z0-9_]{2,40}$")
RG_NAME_RE = re.compile(r"^[-\w.()]{0,89}[-\w()]$")
TIME_RE = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")
UTC_OFFSET_RE = re.compile(r"^[+-](0\d|1[0-4]):[0-5]\d$")
REPO_URL_RE = re.compile(r"^(https://[^\s]+|git@[^\s:]+:[^\s]+|ssh://[^\s]+)$")
REPO_PATH_RE = re.compile(r"^[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*$")
IMAGE_RE = re.compile(r"^[a-z0-9]+([._-][a-z0-9]+)*(:\d+)?(/[a-z0-9]+([._/-][a-z0-9]+)*)+(:[\w.-]{1,128}|@sha256:[0-9a-f]{64})$")
CRD_PATTERN_ITEM_RE = re.compile(r"^[a-z0-9.-]+\.azure\.com/(\*|[A-Z][A-Za-z0-9]+)$")
TAG_KEY_RE = re.compile(r"^[^<>%&\\?/]{1,512}$")

# What ASO must reconcile for the platform and the reference app (groups, all kinds).
DEFAULT_ASO_CRD_PATTERN = (
    "resources.azure.com/*",
    "dbforpostgresql.azure.com/*",
    "storage.azure.com/*",
    "managedidentity.azure.com/*",
    "authorization.azure.com/*",
)
DEFAULT_TAGS = {"managed-by": "pulumi", "project": PROJECT}


@dataclass(frozen=True)
class NodePool:
    name: str
    vm_size: str
    count: int
    min_count: Optional[int]
    max_count: Optional[int]
    zones: tuple[str, ...]
    max_pods: int
    os_disk_size_gb: Optional[int]
    labels: tuple[tuple[str, str], ...] = ()
    taints: tuple[str, ...] = ()

    @property
    def autoscaling(self) -> bool:
        return self.min_count is not None


@dataclass(frozen=True)
class Network:
    dataplane: str = "cilium"
    network_policy: str = "cilium"
    pod_cidr: str = "10.244.0.0/16"
    service_cidr: str = "10.0.0.0/16"
    dns_service_ip: str = "10.0.0.10"
    outbound_type: str = "loadBalancer"


@dataclass(frozen=True)
class MaintenanceWindow:
    day_of_week: str
    start_time: str
    duration_hours: int
    utc_offset: str
    interval_weeks: int


@dataclass(frozen=True)
class ClusterConfig:
    kubernetes_version: Optional[str]
    sku_tier: str
    upgrade_channel: str
    node_os_upgrade_channel: str
    local_accounts: bool
    admin_group_object_ids: tuple[str, ...]
    api_server_authorized_ip_ranges: tuple[str, ...]
    system_pool: NodePool
    user_pools: tuple[NodePool, ...]
    network: Network
    maintenance_window: Optional[MaintenanceWindow]
    kubelogin_mode: str
    deployer_principal_type: str


@dataclass(frozen=True)
class AsoConfig:
    enabled: bool
    crd_pattern: tuple[str, ...] = DEFAULT_ASO_CRD_PATTERN
    # Opt-in only: Contributor on the whole subscription instead of the app resource groups.
    subscription_scope: bool = False


@dataclass(frozen=True)
class ArgoCdConfig:
    enabled: bool
    repo_url: Optional[str] = None
    revision: str = "main"
    path: str = "gitops"
    app_image: Optional[str] = None


@dataclass(frozen=True)
class AddonsConfig:
    cert_manager: bool
    aso: AsoConfig
    kro: bool
    crossplane: bool
    argocd: ArgoCdConfig

    def enabled(self) -> dict[str, bool]:
        """Toggle per add-on, keyed like gitops_bridge.ADDON_LABELS."""
        return {
            "cert_manager": self.cert_manager,
            "aso": self.aso.enabled,
            "kro": self.kro,
            "crossplane": self.crossplane,
            "argocd": self.argocd.enabled,
        }


class SecretStr:
    """A --secret config value: kept out of repr/str so it never lands in a log or an error."""

    __slots__ = ("value",)

    def __init__(self, value: str):
        self.value = value

    def __repr__(self) -> str:
        return "SecretStr('[secret]')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SecretStr) and other.value == self.value

    def __hash__(self) -> int:
        return hash(self.value)


@dataclass(frozen=True)
class TenantRole:
    role: str
    # "resourceGroup" (the tenant's own group), "subscription", or an ARM ID inside the subscription.
    scope: str


@dataclass(frozen=True)
class TenantConfig:
    name: str
    subscription_id: str
    # None: the deployer's Entra tenant (getClientConfig).
    tenant_id: Optional[str]
    namespaces: tuple[str, ...]
    roles: tuple[TenantRole, ...]
    source_repos: tuple[str, ...]
    location: Optional[str] = None


@dataclass(frozen=True)
class HybridConfig:
    kubeconfig: Optional[SecretStr]
    kubeconfig_path: Optional[str]
    context: Optional[str]
    # Set when the cluster publishes a public OIDC issuer: controllers use workload identity.
    oidc_issuer_url: Optional[str]
    # Otherwise a service principal (client ID in config, secret as a --secret key).
    service_principal_client_id: Optional[str]
    # The service principal's object ID: when given, the platform grants it the same roles
    # on the app resource groups as the workload identities get on AKS.
    service_principal_object_id: Optional[str]
    service_principal_client_secret: Optional[SecretStr]
    # A cluster you create (`make kind`): the public key its API server signs tokens with.
    # The platform publishes the issuer for it (components/oidc_issuer.py): workload identity.
    service_account_public_key_path: Optional[str] = None
    service_account_public_key_pem: Optional[str] = None
    # The reference app's own service principal (service-principal mode only): the app reads
    # its secret from a Kubernetes Secret the platform creates in the app namespaces.
    app_principal_client_id: Optional[str] = None
    app_principal_object_id: Optional[str] = None
    app_principal_client_secret: Optional[SecretStr] = None

    @property
    def workload_identity(self) -> bool:
        return self.oidc_issuer_url is not None or self.service_account_public_key_pem is not None


@dataclass(frozen=True)
class StackConfig:
    kind: str
    environment: str
    location: str
    tags: tuple[tuple[str, str], ...]
    protect: bool
    existing_resource_group: Optional[str]
    cluster: Optional[ClusterConfig]
    app_resource_groups: tuple[str, ...]
    addons: AddonsConfig
    tenants: tuple[TenantConfig, ...] = ()
    hybrid: Optional[HybridConfig] = None
    secret_keys: frozenset[str] = field(default=frozenset())

    def tenant_resource_group(self, tenant: TenantConfig) -> str:
        return f"rg-{self.environment}-tenant-{tenant.name}"

    def tenant_identity_name(self, tenant: TenantConfig) -> str:
        return f"id-{self.environment}-tenant-{tenant.name}"

    @property
    def tag_map(self) -> dict[str, str]:
        return dict(self.tags)

    @property
    def resource_group_name(self) -> str:
        return self.existing_resource_group or f"rg-{self.environment}-platform"

    @property
    def cluster_name(self) -> str:
        return f"aks-{self.environment}"


# Top-level keys of the project namespace, and the loader that reads each.
TOP_LEVEL_KEYS = (
    "kind",
    "environment",
    "location",
    "tags",
    "protect",
    "existingResourceGroup",
    "cluster",
    "appResourceGroups",
    "addons",
    "tenants",
    "hybrid",
    # Secrets: top-level keys so `pulumi config set --secret` can set them (hybrid only).
    "kubeconfig",
    "servicePrincipalClientSecret",
    "appServicePrincipalClientSecret",
)
SECRET_KEYS = ("kubeconfig", "servicePrincipalClientSecret", "appServicePrincipalClientSecret")


def load(raw: Mapping[str, Any], secret_keys: frozenset[str] = frozenset()) -> StackConfig:
    """Validate the stack's `aks-platform:*` settings (keys without the namespace)."""
    problems = Problems()
    root = _RootSection(raw, problems)

    kind = root.string("kind", "aks", choices=KINDS)
    environment = root.string(
        "environment",
        required=True,
        pattern=ENVIRONMENT_RE,
        allowed_text="2-16 characters: lowercase letters, digits and hyphens, starting with a letter "
        "(it prefixes every Azure name)",
    )
    location = root.string(
        "location", required=True, pattern=LOCATION_RE, allowed_text="an Azure region name such as 'westeurope'"
    )
    tags = root.string_map(
        "tags",
        check_key=lambda k: bool(TAG_KEY_RE.fullmatch(k)),
        allowed_text="a mapping of tag name (no < > % & \\ ? /) to a string of at most 256 characters",
    )
    for key, value in tags.items():
        if len(value) > 256:
            problems.add(root.key(f"tags.{key}"), value, "a tag value of at most 256 characters")
    protect = root.boolean("protect", False)
    existing_rg = root.string(
        "existingResourceGroup", pattern=RG_NAME_RE, allowed_text="an Azure resource group name (1-90 characters)"
    )
    app_rgs = root.string_list(
        "appResourceGroups",
        check=lambda v: bool(RG_NAME_RE.fullmatch(v)),
        allowed_text="Azure resource group names (1-90 characters: letters, digits, - _ . ( ))",
    )
    if len(set(app_rgs)) != len(app_rgs):
        problems.add(root.key("appResourceGroups"), list(app_rgs), "distinct resource group names")

    cluster_section = root.section("cluster")
    cluster: Optional[ClusterConfig] = None
    if kind == "aks":
        cluster = _cluster(cluster_section, problems)
    elif cluster_section.data:
        problems.add(cluster_section.path, dict(cluster_section.data), "nothing: kind 'hybrid' uses an existing cluster")

    addons = _addons(root.section("addons"), problems, app_rgs)

    for key in SECRET_KEYS:
        if root.has(key) and key not in secret_keys:
            problems.add(root.key(key), "[not shown]", f"a secret: set it with `pulumi config set --secret {PROJECT}:{key}`")
    hybrid_section = root.section("hybrid")
    hybrid: Optional[HybridConfig] = None
    if kind == "hybrid":
        hybrid = _hybrid(hybrid_section, root, problems)
    else:
        if hybrid_section.data:
            problems.add(hybrid_section.path, dict(hybrid_section.data), "nothing unless kind is 'hybrid'")
        for key in SECRET_KEYS:
            if root.has(key):
                root.raw(key)
                problems.add(root.key(key), "[not shown]", "nothing unless kind is 'hybrid'")

    tenants = _tenants(root, problems, workload_identity=kind == "aks" or (hybrid is not None and hybrid.workload_identity))

    root.finish()
    problems.raise_if_any()
    assert environment is not None and location is not None and kind is not None
    all_tags = {**DEFAULT_TAGS, "environment": environment, **tags}
    return StackConfig(
        kind=kind,
        environment=environment,
        location=location,
        tags=tuple(sorted(all_tags.items())),
        protect=protect,
        existing_resource_group=existing_rg,
        cluster=cluster,
        app_resource_groups=app_rgs,
        addons=addons,
        tenants=tenants,
        hybrid=hybrid,
        secret_keys=frozenset(secret_keys),
    )


class _RootSection(Section):
    """The project namespace itself: keys are printed as `aks-platform:<key>`."""

    def __init__(self, raw: Mapping[str, Any], problems: Problems):
        super().__init__(PROJECT, raw, problems)

    def key(self, name: str) -> str:
        return f"{PROJECT}:{name}"

    def finish(self) -> None:
        for unknown in sorted(set(self.data) - set(TOP_LEVEL_KEYS)):
            self.problems.add(self.key(unknown), self.data[unknown], "no such setting; known: " + ", ".join(TOP_LEVEL_KEYS))


def _cluster(s: Section, problems: Problems) -> ClusterConfig:
    version = s.raw("kubernetesVersion", None)
    if version is not None and (not isinstance(version, str) or not K8S_VERSION_RE.fullmatch(version)):
        problems.add(
            s.key("kubernetesVersion"),
            version,
            "an explicit AKS version 'MAJOR.MINOR' or 'MAJOR.MINOR.PATCH' such as '1.34' (not 'latest'; "
            "`az aks get-versions -l <location>` lists them), or unset for the AKS default",
        )
        version = None

    local_accounts = s.boolean("localAccounts", False)
    system = _pool(s.section("systemPool"), problems, system=True)
    user_pools = tuple(_pool(p, problems, system=False) for p in s.items("userPools"))
    names = [system.name] + [p.name for p in user_pools]
    for dup in sorted({n for n in names if names.count(n) > 1}):
        problems.add(s.key("userPools"), dup, "node pool names distinct from each other and from the system pool")

    admin_groups = s.string_list(
        "adminGroupObjectIds", check=is_guid, allowed_text="Entra ID group object IDs (GUIDs)"
    )
    if not local_accounts and not admin_groups:
        problems.add(
            s.key("adminGroupObjectIds"),
            [],
            "at least one Entra group object ID when localAccounts is false (else no human can administer the cluster)",
        )
    window_section = s.section("maintenanceWindow")
    window = _maintenance_window(window_section) if window_section.data else None
    window_section.finish()

    cluster = ClusterConfig(
        kubernetes_version=version,
        sku_tier=s.string("skuTier", "Free", choices=SKU_TIERS) or "Free",
        upgrade_channel=s.string("upgradeChannel", "patch", choices=UPGRADE_CHANNELS) or "patch",
        node_os_upgrade_channel=s.string("nodeOsUpgradeChannel", "NodeImage", choices=NODE_OS_UPGRADE_CHANNELS)
        or "NodeImage",
        local_accounts=local_accounts,
        admin_group_object_ids=admin_groups,
        api_server_authorized_ip_ranges=s.string_list(
            "apiServerAuthorizedIpRanges", check=is_cidr, allowed_text="IPv4 CIDRs such as '203.0.113.0/24'"
        ),
        system_pool=system,
        user_pools=user_pools,
        network=_network(s.section("network"), problems),
        maintenance_window=window,
        kubelogin_mode=s.string("kubeloginMode", "azurecli", choices=KUBELOGIN_MODES) or "azurecli",
        deployer_principal_type=s.string("deployerPrincipalType", "ServicePrincipal", choices=PRINCIPAL_TYPES)
        or "ServicePrincipal",
    )
    s.finish()
    return cluster


def _pool(s: Section, problems: Problems, *, system: bool) -> NodePool:
    name = s.string(
        "name",
        "system" if system else None,
        required=not system,
        pattern=POOL_NAME_RE,
        allowed_text="1-12 lowercase letters and digits, starting with a letter",
    )
    vm_size = s.string(
        "vmSize",
        "Standard_D4ds_v5" if system else None,
        required=not system,
        pattern=VM_SIZE_RE,
        allowed_text="an Azure VM size such as 'Standard_D4ds_v5'",
    )
    # AKS keeps at least one node in a system pool; user pools may scale to zero.
    floor = 1 if system else 0
    count = s.integer("count", 2 if system else 1, minimum=floor, maximum=1000)
    min_count = s.integer("minCount", None, minimum=floor, maximum=1000)
    max_count = s.integer("maxCount", None, minimum=1, maximum=1000)
    if (min_count is None) != (max_count is None):
        problems.add(s.key("minCount"), {"minCount": min_count, "maxCount": max_count}, "both minCount and maxCount (autoscaling) or neither")
        min_count = max_count = None
    if min_count is not None and max_count is not None and count is not None and not min_count <= count <= max_count:
        problems.add(
            s.path,
            {"minCount": min_count, "count": count, "maxCount": max_count},
            "minCount <= count <= maxCount",
        )
    zones = s.string_list("zones", check=lambda z: z in ZONES, allowed_text="availability zones '1', '2', '3'")
    if len(set(zones)) != len(zones):
        problems.add(s.key("zones"), list(zones), "distinct zones")
    labels = s.string_map("labels", check_key=lambda k: bool(re.fullmatch(r"[A-Za-z0-9./_-]{1,253}", k)), allowed_text="Kubernetes node labels")
    taints = s.string_list(
        "taints",
        check=lambda t: bool(re.fullmatch(r"[A-Za-z0-9./_-]+=[A-Za-z0-9._-]*:(NoSchedule|PreferNoSchedule|NoExecute)", t)),
        allowed_text="taints 'key=value:NoSchedule|PreferNoSchedule|NoExecute'",
    )
    if system and taints:
        problems.add(s.key("taints"), list(taints), "none on the system pool (use CriticalAddonsOnly via AKS, or a user pool)")
    pool = NodePool(
        name=name or "invalid",
        vm_size=vm_size or "invalid",
        count=count if count is not None else floor,
        min_count=min_count,
        max_count=max_count,
        # Azure CNI overlay supports up to 250 pods per node; 30 is the AKS floor for system pools.
        zones=zones,
        max_pods=s.integer("maxPods", 110, minimum=30 if system else 10, maximum=250) or 110,
        os_disk_size_gb=s.integer("osDiskSizeGb", None, minimum=30, maximum=2048),
        labels=tuple(labels.items()),
        taints=taints,
    )
    s.finish()
    return pool


def _network(s: Section, problems: Problems) -> Network:
    d = Network()
    dataplane = s.string("dataplane", d.dataplane, choices=NETWORK_DATAPLANES) or d.dataplane
    policy = s.string("networkPolicy", d.network_policy if dataplane == "cilium" else "none", choices=NETWORK_POLICIES)
    if dataplane == "cilium" and policy != "cilium":
        problems.add(s.key("networkPolicy"), policy, "'cilium' when dataplane is 'cilium' (AKS requires it)")
    if dataplane != "cilium" and policy == "cilium":
        problems.add(s.key("networkPolicy"), policy, "'cilium' only with dataplane 'cilium'")
    pod = s.string("podCidr", d.pod_cidr, pattern=_CIDR_PATTERN, allowed_text="an IPv4 CIDR such as '10.244.0.0/16'")
    svc = s.string("serviceCidr", d.service_cidr, pattern=_CIDR_PATTERN, allowed_text="an IPv4 CIDR such as '10.0.0.0/16'")
    dns = s.string("dnsServiceIp", d.dns_service_ip, allowed_text="an IPv4 address inside serviceCidr")
    pod_net = _ipv4_net(pod)
    svc_net = _ipv4_net(svc)
    if pod is not None and pod_net is None:
        problems.add(s.key("podCidr"), pod, "an IPv4 CIDR with no host bits set, such as '10.244.0.0/16'")
    if svc is not None and svc_net is None:
        problems.add(s.key("serviceCidr"), svc, "an IPv4 CIDR with no host bits set, such as '10.0.0.0/16'")
    if pod_net and svc_net and pod_net.overlaps(svc_net):
        problems.add(s.key("serviceCidr"), svc, f"a range that does not overlap podCidr {pod}")
    try:
        dns_ip = ipaddress.IPv4Address(dns or "")
    except ValueError:
        problems.add(s.key("dnsServiceIp"), dns, "an IPv4 address inside serviceCidr")
        dns_ip = None
    if dns_ip and svc_net and (dns_ip not in svc_net or dns_ip in (svc_net.network_address, svc_net.broadcast_address, svc_net.network_address + 1)):
        problems.add(s.key("dnsServiceIp"), dns, f"an address inside serviceCidr {svc} other than its first, second and last")
    network = Network(
        dataplane=dataplane,
        network_policy=policy or d.network_policy,
        pod_cidr=pod or d.pod_cidr,
        service_cidr=svc or d.service_cidr,
        dns_service_ip=dns or d.dns_service_ip,
        outbound_type=s.string("outboundType", d.outbound_type, choices=OUTBOUND_TYPES) or d.outbound_type,
    )
    s.finish()
    return network


_CIDR_PATTERN = re.compile(r"^\d{1,3}(\.\d{1,3}){3}/\d{1,2}$")


def _ipv4_net(value: Optional[str]) -> Optional[ipaddress.IPv4Network]:
    if value is None or not is_cidr(value):
        return None
    net = ipaddress.ip_network(value)
    return net if isinstance(net, ipaddress.IPv4Network) else None


def _maintenance_window(s: Section) -> MaintenanceWindow:
    return MaintenanceWindow(
        day_of_week=s.string("dayOfWeek", "Sunday", choices=DAYS) or "Sunday",
        start_time=s.string("startTime", "02:00", pattern=TIME_RE, allowed_text="'HH:MM' in 24-hour time") or "02:00",
        # AKS planned maintenance windows last 4 to 24 hours.
        duration_hours=s.integer("durationHours", 4, minimum=4, maximum=24) or 4,
        utc_offset=s.string("utcOffset", "+00:00", pattern=UTC_OFFSET_RE, allowed_text="'+HH:MM' or '-HH:MM'") or "+00:00",
        interval_weeks=s.integer("intervalWeeks", 1, minimum=1, maximum=4) or 1,
    )


def _addons(s: Section, problems: Problems, app_rgs: tuple[str, ...]) -> AddonsConfig:
    cert_manager = s.section("certManager")
    cm_enabled = cert_manager.boolean("enabled", True)
    cert_manager.finish()

    aso_s = s.section("aso")
    aso_enabled = aso_s.boolean("enabled", True)
    crd_pattern = aso_s.string_list(
        "crdPattern",
        check=lambda v: bool(CRD_PATTERN_ITEM_RE.fullmatch(v)),
        allowed_text="ASO CRD patterns '<group>.azure.com/*' or '<group>.azure.com/<Kind>'",
    ) or DEFAULT_ASO_CRD_PATTERN
    aso = AsoConfig(
        enabled=aso_enabled,
        crd_pattern=crd_pattern,
        subscription_scope=aso_s.boolean("subscriptionScope", False),
    )
    aso_s.finish()
    if aso.enabled and not cm_enabled:
        problems.add(s.key("certManager.enabled"), False, "true while addons.aso.enabled is true (ASO's webhooks need cert-manager certificates)")
    if aso.enabled and not app_rgs and not aso.subscription_scope:
        problems.add(
            f"{PROJECT}:appResourceGroups",
            [],
            "at least one resource group for ASO to manage (or addons.aso.subscriptionScope: true to grant it the whole subscription)",
        )

    kro_s = s.section("kro")
    kro = kro_s.boolean("enabled", True)
    kro_s.finish()
    xp_s = s.section("crossplane")
    crossplane = xp_s.boolean("enabled", True)
    xp_s.finish()

    argo_s = s.section("argocd")
    argo_enabled = argo_s.boolean("enabled", True)
    argocd = ArgoCdConfig(
        enabled=argo_enabled,
        repo_url=argo_s.string(
            "repoUrl",
            required=argo_enabled,
            pattern=REPO_URL_RE,
            allowed_text="the Git URL Argo CD syncs (https://…, ssh://… or git@host:path)",
        ),
        revision=argo_s.string("revision", "main", pattern=re.compile(r"^[\w./-]{1,255}$"), allowed_text="a branch, tag or commit") or "main",
        path=argo_s.string("path", "gitops", pattern=REPO_PATH_RE, allowed_text="a relative path inside the repository") or "gitops",
        app_image=argo_s.string(
            "appImage",
            pattern=IMAGE_RE,
            allowed_text="a full container image reference with a tag or digest, e.g. 'ghcr.io/org/webapp:1.0.0'",
        ),
    )
    argo_s.finish()
    # The GitOps layer deploys the reference app wherever one of its variants can run, and
    # takes the image from the cluster Secret: without it those ApplicationSets stop.
    app_variant_possible = (aso.enabled and kro) or crossplane
    if argocd.enabled and app_variant_possible and not argo_s.has("appImage"):
        problems.add(
            s.key("argocd.appImage"),
            None,
            "required while Argo CD and an app variant (ASO + KRO, or Crossplane) are on: the reference app's image "
            "with a tag or digest, e.g. 'ghcr.io/org/webapp:1.0.0' (build it from app/Dockerfile)",
        )
    s.finish()
    return AddonsConfig(cert_manager=cm_enabled, aso=aso, kro=kro, crossplane=crossplane, argocd=argocd)


# Namespaces the GitOps layer (gitops/) deploys the reference app into: a tenant there would
# get its aso-credential and the TenantGuard in the platform's own app namespaces.
GITOPS_NAMESPACES = frozenset({"webapp-aso", "webapp-crossplane"})
# Namespaces the platform owns: no tenant may claim them.
PLATFORM_NAMESPACES = frozenset(
    {"default", "kube-system", "kube-public", "kube-node-lease", "gatekeeper-system", "calico-system", "tigera-operator"}
    | {pin.namespace for pin in CHARTS.values()}
    | GITOPS_NAMESPACES
)
TENANT_NAME_RE = re.compile(r"^[a-z][a-z0-9-]{0,18}[a-z0-9]$")


def _tenants(root: Section, problems: Problems, *, workload_identity: bool) -> tuple[TenantConfig, ...]:
    tenants: list[TenantConfig] = []
    items = root.items("tenants")
    if items and not workload_identity:
        problems.add(
            root.key("tenants"),
            f"{len(items)} tenant(s)",
            "no tenants unless the controllers use workload identity (kind 'aks', or 'hybrid' with hybrid.oidcIssuerUrl): "
            "each tenant identity is federated to the controllers' service accounts",
        )
    seen_names: set[str] = set()
    seen_namespaces: dict[str, str] = {}
    for t in items:
        name = t.string(
            "name", required=True, pattern=TENANT_NAME_RE,
            allowed_text="2-20 lowercase letters, digits and hyphens, starting with a letter (DNS-safe)",
        )
        if name is not None:
            if name in seen_names:
                problems.add(t.key("name"), name, "a name no other tenant has")
            seen_names.add(name)
        subscription = t.string("subscriptionId", required=True, pattern=_GUID_PATTERN, allowed_text="an Azure subscription ID (GUID)")
        tenant_id = t.string("tenantId", pattern=_GUID_PATTERN, allowed_text="an Entra tenant ID (GUID)")
        namespaces = t.string_list("namespaces", check=is_dns_label, allowed_text="Kubernetes namespace names (RFC 1123 labels)")
        if not namespaces:
            problems.add(t.key("namespaces"), [], "at least one namespace")
        for ns in namespaces:
            if ns in PLATFORM_NAMESPACES:
                problems.add(t.key("namespaces"), ns, "a namespace the platform does not own (not " + ", ".join(sorted(PLATFORM_NAMESPACES)) + ")")
            elif ns in seen_namespaces:
                problems.add(t.key("namespaces"), ns, f"a namespace no other tenant has (tenant {seen_namespaces[ns]!r} has it)")
            seen_namespaces.setdefault(ns, name or "?")
        roles: list[TenantRole] = []
        role_items = t.items("roles") or []
        for r in role_items:
            role = r.string("role", required=True, allowed_text="a built-in role name or a role definition GUID")
            if role is not None and role not in BUILTIN_ROLES and not _GUID_PATTERN.fullmatch(role):
                problems.add(r.key("role"), role, "a built-in role (" + ", ".join(sorted(BUILTIN_ROLES)) + ") or a role definition GUID")
                role = None
            scope = r.string("scope", "resourceGroup", allowed_text="'resourceGroup', 'subscription' or an ARM ID in the tenant's subscription") or "resourceGroup"
            if scope not in ("resourceGroup", "subscription"):
                prefix = f"/subscriptions/{subscription}/".lower() if subscription else None
                if not prefix or not scope.lower().startswith(prefix) or scope.rstrip("/").lower() + "/" == prefix:
                    problems.add(
                        r.key("scope"), scope,
                        f"'resourceGroup', 'subscription' (with allowSubscriptionScope) or an ARM ID under /subscriptions/{subscription}/",
                    )
            allow_sub = r.boolean("allowSubscriptionScope", False)
            if scope == "subscription" and not allow_sub:
                problems.add(r.key("scope"), scope, "'subscription' only with allowSubscriptionScope: true (an explicit opt-in)")
            r.finish()
            if role:
                roles.append(TenantRole(role=role, scope=scope))
        if not role_items and t.data.get("roles") == []:
            # An explicit empty list must not silently become the default grant.
            problems.add(t.key("roles"), [], "at least one {role, scope} (omit roles for Contributor on the tenant's resource group)")
        elif not role_items:
            roles.append(TenantRole(role="Contributor", scope="resourceGroup"))
        repos = t.string_list("sourceRepos", check=lambda v: bool(REPO_URL_RE.fullmatch(v)), allowed_text="Git URLs the tenant's Argo CD project may sync from")
        if not repos:
            problems.add(t.key("sourceRepos"), [], "at least one Git URL (the tenant's AppProject allows only these)")
        location = t.string("location", pattern=LOCATION_RE, allowed_text="an Azure region name")
        t.finish()
        tenants.append(
            TenantConfig(
                name=name or "invalid",
                subscription_id=subscription or "invalid",
                tenant_id=tenant_id,
                namespaces=namespaces,
                roles=tuple(roles),
                source_repos=repos,
                location=location,
            )
        )
    return tuple(tenants)


_GUID_PATTERN = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


def _hybrid(s: Section, root: Section, problems: Problems) -> HybridConfig:
    kubeconfig_raw = root.raw("kubeconfig", None)
    path = s.string("kubeconfigPath", allowed_text="a path to a kubeconfig file")
    if (kubeconfig_raw is None) == (path is None):
        problems.add(
            s.key("kubeconfigPath"), path,
            f"exactly one of hybrid.kubeconfigPath or the secret {PROJECT}:kubeconfig (`pulumi config set --secret {PROJECT}:kubeconfig < file`)",
        )
    if path is not None:
        expanded = Path(path).expanduser()
        if not expanded.is_file():
            problems.add(s.key("kubeconfigPath"), path, "a readable kubeconfig file")
    context = s.string("context", pattern=re.compile(r"^[\w.@:/-]{1,253}$"), allowed_text="a context name in the kubeconfig")
    issuer = s.string(
        "oidcIssuerUrl",
        pattern=re.compile(r"^https://[^\s]+$"),
        allowed_text="the cluster's public OIDC issuer URL (https://…), whose discovery document Entra ID can fetch",
    )
    client_id = s.string("servicePrincipalClientId", pattern=_GUID_PATTERN, allowed_text="the service principal's application (client) ID (GUID)")
    object_id = s.string(
        "servicePrincipalObjectId", pattern=_GUID_PATTERN,
        allowed_text="the service principal's object ID in Entra ID (GUID; `az ad sp show --id <appId> --query id`)",
    )
    if object_id is not None and client_id is None:
        problems.add(s.key("servicePrincipalObjectId"), object_id, "only together with hybrid.servicePrincipalClientId")
    secret_raw = root.raw("servicePrincipalClientSecret", None)
    key_path = s.string(
        "serviceAccountPublicKeyPath",
        allowed_text="a path to the PEM public key your cluster signs service-account tokens with (`make kind` writes it)",
    )
    key_pem: Optional[str] = None
    if key_path is not None:
        key_file = Path(key_path).expanduser()
        if not key_file.is_file():
            problems.add(
                s.key("serviceAccountPublicKeyPath"), key_path,
                "a readable public key file: run `make kind STACK=<stack>` first, which creates the key pair and the cluster",
            )
        else:
            try:
                load_public_key(key_file.read_text())
                key_pem = key_file.read_text()
            except (InvalidPublicKey, UnicodeDecodeError) as err:
                problems.add(s.key("serviceAccountPublicKeyPath"), key_path, f"an RSA public key in PEM of at least 2048 bits (this file is {err})")
    modes = [
        name for name, on in (
            ("oidcIssuerUrl", issuer is not None),
            ("serviceAccountPublicKeyPath", key_path is not None),
            ("servicePrincipalClientId + secret", client_id is not None or secret_raw is not None),
        ) if on
    ]
    if not modes or (modes == ["servicePrincipalClientId + secret"] and (client_id is None or secret_raw is None)):
        problems.add(
            s.key("servicePrincipalClientId"), client_id,
            "one way for the controllers to reach Azure: hybrid.oidcIssuerUrl (the cluster's public issuer), "
            "hybrid.serviceAccountPublicKeyPath (the platform publishes the issuer; `make kind`), or a service "
            f"principal: hybrid.servicePrincipalClientId and the secret {PROJECT}:servicePrincipalClientSecret",
        )
    if len(modes) > 1:
        problems.add(
            s.key(modes[0].split(" ")[0]), issuer if modes[0] == "oidcIssuerUrl" else key_path,
            f"exactly one of oidcIssuerUrl, serviceAccountPublicKeyPath, a service principal; got {' and '.join(modes)}",
        )
    app_client_id = s.string(
        "appServicePrincipalClientId", pattern=_GUID_PATTERN,
        allowed_text="the reference app's own service principal's application (client) ID (GUID), never the controllers'",
    )
    app_object_id = s.string(
        "appServicePrincipalObjectId", pattern=_GUID_PATTERN,
        allowed_text="the app's service principal's object ID (GUID; `az ad sp show --id <appId> --query id`)",
    )
    app_secret_raw = root.raw("appServicePrincipalClientSecret", None)
    app_given = [k for k, v in (("hybrid.appServicePrincipalClientId", app_client_id),
                                ("hybrid.appServicePrincipalObjectId", app_object_id),
                                ("appServicePrincipalClientSecret", app_secret_raw)) if v is not None]
    if app_given and (issuer is not None or key_path is not None):
        problems.add(
            s.key(app_given[0].removeprefix("hybrid.")) if app_given[0].startswith("hybrid.") else root.key(app_given[0]),
            "[not shown]" if app_given[0] == "appServicePrincipalClientSecret" else (app_client_id or app_object_id),
            "nothing with workload identity (the app gets its own federated identity); only with the controllers' service principal",
        )
    elif app_given and len(app_given) != 3:
        missing = [k for k in ("hybrid.appServicePrincipalClientId", "hybrid.appServicePrincipalObjectId",
                               "appServicePrincipalClientSecret") if k not in app_given]
        problems.add(
            s.key("appServicePrincipalClientId"), app_client_id,
            f"the app's service principal complete: also {', '.join(missing)} (the secret with "
            f"`pulumi config set --secret {PROJECT}:appServicePrincipalClientSecret`)",
        )
    if app_client_id is not None and app_client_id.lower() == (client_id or "").lower():
        problems.add(
            s.key("appServicePrincipalClientId"), app_client_id,
            "a principal of the app's own, not the controllers' (hybrid.servicePrincipalClientId), whose rights on the "
            "app resource groups are far wider",
        )
    if isinstance(kubeconfig_raw, dict):
        # A JSON kubeconfig arrives decoded; the provider takes the text.
        kubeconfig_raw = json.dumps(kubeconfig_raw)
    if kubeconfig_raw is not None and not isinstance(kubeconfig_raw, str):
        problems.add(root.key("kubeconfig"), "[not shown]", "a kubeconfig document (YAML text)")
        kubeconfig_raw = None
    s.finish()
    return HybridConfig(
        kubeconfig=SecretStr(kubeconfig_raw) if isinstance(kubeconfig_raw, str) else None,
        kubeconfig_path=path,
        context=context,
        oidc_issuer_url=issuer,
        service_principal_client_id=client_id,
        service_principal_object_id=object_id,
        service_principal_client_secret=SecretStr(secret_raw) if isinstance(secret_raw, str) else None,
        service_account_public_key_path=key_path,
        service_account_public_key_pem=key_pem,
        app_principal_client_id=app_client_id,
        app_principal_object_id=app_object_id,
        app_principal_client_secret=SecretStr(app_secret_raw) if isinstance(app_secret_raw, str) else None,
    )


def decode(value: Any) -> Any:
    """Pulumi hands structured config to programs as JSON text; plain strings stay strings."""
    if isinstance(value, str) and value[:1] in ("{", "["):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value


def from_pulumi() -> StackConfig:
    """Read every `aks-platform:*` key of the running stack and validate it."""
    from pulumi.runtime import config as runtime_config

    full: dict[str, Any] = {**runtime_config.get_config_env(), **runtime_config.CONFIG.get()}
    prefix = f"{PROJECT}:"
    raw = {k[len(prefix):]: decode(v) for k, v in sorted(full.items()) if k.startswith(prefix)}
    secret = frozenset(
        k[len(prefix):]
        for k in (*runtime_config.get_config_secret_keys_env(), *runtime_config._SECRET_KEYS.get())
        if k.startswith(prefix)
    )
    return load(raw, secret)


__all__ = ["ConfigError", "StackConfig", "load", "from_pulumi", "is_dns_label"]
