"""The stack configuration, declared once: every `aks-platform:*` key, its type, default and rules.

Each key is one pydantic field (camelCase in the stack file, snake_case in the program)
whose description is the "allowed" text of the error messages and of the reference tables
in docs/configuration.md; the JSON Schema for `Pulumi.<stack>.yaml` is generated from the
same models (stacks/reference.py). Rules about one section live on its model (`rules`);
rules that span top-level keys are the `@stack_rule` functions in stacks/stack_rules.py.

`stacks.validation.load(raw, secret_keys)` runs this declaration: a pure function of the
stack's config (already JSON-decoded) that returns the frozen models, or raises one
:class:`ConfigError` listing every problem, each naming the key, the value given (secrets
masked) and what is allowed. Nothing registers a resource, so an invalid stack registers
nothing. `stacks.validation.from_pulumi()` reads the running stack's config and secret keys
and calls `load`. (This module is below them: it declares, they run it, so imports go one way.)

Adding a key: add one field to the model of its section with `setting(default, "allowed
text")` (or `required("allowed text")`), using a type from this module (Bool, an `Int`
range, `Text(pattern)`, a Literal, a model); add a rule to the section's `rules` only
when it depends on another key. Then `make docs` (python -m stacks.reference) regenerates
the tables and the JSON Schema; tests fail until it is done.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit
from typing import Annotated, Any, ClassVar, Iterator, Literal, Mapping, Optional, Union

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, PrivateAttr, SecretStr, Strict, StringConstraints, model_validator
from pydantic.alias_generators import to_camel
from pydantic_core import PydanticCustomError, PydanticUndefined

from components.cluster import ROUTE_TABLE_ID_PATTERN, SUBNET_ID_PATTERN, version_conflict, virtual_network_of
from components.roles import BUILTIN_ROLES
from components.versions import CHARTS
from stacks.problems import CREDENTIAL_PARAM, PROJECT, ConfigError, Problem

__all__ = ["ConfigError", "StackConfig", "decode"]


# --- declaring a key ------------------------------------------------------------------------


def setting(default: Any = None, allowed: str = "", *, default_text: Optional[str] = None, **constraints: Any) -> Any:
    """An optional key: its default and what is allowed (the error text and the docs' text)."""
    extra = {"x-default": default_text} if default_text else None
    if isinstance(default, type) and issubclass(default, BaseModel):
        # A section: absent means all its defaults, and its rules still apply to them.
        return Field({}, description=allowed, json_schema_extra=extra, validate_default=True, **constraints)
    return Field(default, description=allowed, json_schema_extra=extra, **constraints)


def required(allowed: str, **constraints: Any) -> Any:
    return Field(PydanticUndefined, description=allowed, **constraints)


def item(allowed: str) -> Any:
    """What one element of a list (or one key or value of a mapping) allows: the text of its errors."""
    return Field(description=allowed)


def secret(allowed: str) -> Any:
    """A key whose value is a secret: accepted only as `pulumi config set --secret`."""
    return Field(None, description=allowed, json_schema_extra={"x-secret": True})


def _rule_error(problems: list[Problem]) -> PydanticCustomError:
    return PydanticCustomError("config_rules", "rules spanning several keys", {"problems": problems})


def invalid(allowed: str) -> PydanticCustomError:
    return PydanticCustomError("config", "{allowed}", {"allowed": allowed})


class Section(BaseModel):
    """A mapping in the stack config: frozen, unknown keys refused, camelCase keys."""

    model_config = ConfigDict(
        frozen=True, extra="forbid", alias_generator=to_camel, populate_by_name=True, validate_default=False
    )

    def complete(self) -> None:
        """Fill defaults that depend on other keys (before the rules run)."""

    def _set(self, name: str, value: Any) -> None:
        object.__setattr__(self, name, value)

    def rules(self) -> Iterator[Problem]:
        """Rules between this section's keys, once each key is valid on its own (paths relative)."""
        return iter(())

    @model_validator(mode="after")
    def _check_rules(self) -> "Section":
        self.complete()
        problems = list(self.rules())
        if problems:
            raise _rule_error(problems)
        return self


# --- the forms Pulumi writes ----------------------------------------------------------------
# `pulumi config set k v` stores strings; `--path` stores "true"/"false" as booleans and
# integers as numbers, everything else as strings (pulumi config set --help; "Top level
# entries are always treated as strings"). Each type accepts exactly those forms.


def _pulumi_bool(value: Any) -> Any:
    return {"true": True, "false": False}.get(value, value) if isinstance(value, str) else value


def _pulumi_int(value: Any) -> Any:
    return int(value) if isinstance(value, str) and re.fullmatch(r"-?\d{1,9}", value) else value


def _pulumi_str(value: Any) -> Any:
    # An integer stored by --path where a name is expected (a zone `1`, a tag value `42`).
    return str(value).lower() if isinstance(value, bool) else str(value) if isinstance(value, (int, float)) else value


Bool = Annotated[
    bool, BeforeValidator(_pulumi_bool, json_schema_input_type=Union[bool, Literal["true", "false"]]), Strict()
]


def Int(minimum: int, maximum: int) -> Any:  # noqa: N802 (a type factory)
    return Annotated[
        int,
        BeforeValidator(_pulumi_int, json_schema_input_type=Union[int, Annotated[str, StringConstraints(pattern=r"^-?\d+$")]]),
        Strict(),
        Field(ge=minimum, le=maximum),
    ]


def Text(pattern: Optional[str] = None, *, max_length: Optional[int] = None, number_ok: bool = False) -> Any:  # noqa: N802
    constraints = StringConstraints(pattern=pattern, max_length=max_length)
    if number_ok:
        return Annotated[
            str, BeforeValidator(_pulumi_str, json_schema_input_type=Union[str, int, float, bool]), Strict(), constraints
        ]
    return Annotated[str, Strict(), constraints]


def one_of(values: tuple[str, ...]) -> str:
    return "one of " + ", ".join(repr(v) for v in values)


# --- patterns -------------------------------------------------------------------------------

GUID = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
# The environment prefixes every Azure name; 2-16 characters keep each derived name inside
# Azure's limits (the tightest: AKS DNS prefix 54, managed identity 128, resource group 90).
ENVIRONMENT = r"^[a-z][a-z0-9-]{0,14}[a-z0-9]$"
LOCATION = r"^[a-z][a-z0-9]{2,39}$"
K8S_VERSION = r"^1\.\d{2}(\.\d{1,3})?$"
# Linux node pool names: lowercase alphanumeric, starting with a letter, at most 12 characters
# (https://learn.microsoft.com/azure/aks/create-node-pools#limitations).
POOL_NAME = r"^[a-z][a-z0-9]{0,11}$"
VM_SIZE = r"^Standard_[A-Za-z0-9_]{2,40}$"
# Resource group names: 1-90 letters, digits, underscores, hyphens, periods and parentheses,
# not ending in a period (https://learn.microsoft.com/azure/azure-resource-manager/management/resource-name-rules).
RG_NAME = r"^[-\w.()]{0,89}[-\w()]$"
TIME = r"^([01]\d|2[0-3]):[0-5]\d$"
UTC_OFFSET = r"^[+-](0\d|1[0-4]):[0-5]\d$"
REPO_URL = r"^(https://\S+|git@[^\s:]+:\S+|ssh://\S+)$"
REPO_PATH = r"^[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*$"
REVISION = r"^[A-Za-z0-9_./-]+$"
IMAGE = r"^[a-z0-9]+([._-][a-z0-9]+)*(:\d+)?(/[a-z0-9]+([._/-][a-z0-9]+)*)+(:[A-Za-z0-9_.-]{1,128}|@sha256:[0-9a-f]{64})$"
# `<group>/<Kind or *>`, the group a DNS subdomain under azure.com (what ASO's crdPattern and
# KRO's RBAC rules take; the chart joins the patterns with ';', so none may contain one).
CRD_PATTERN_ITEM = r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?\.)+azure\.com/(\*|[A-Z][A-Za-z0-9]{0,62})$"
# Tag names: no < > % & \ ? /, at most 512 characters; values at most 256
# (https://learn.microsoft.com/azure/azure-resource-manager/management/tag-resources#limitations).
TAG_NAME = r"^[^<>%&\\?/]{1,512}$"
DNS_LABEL = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"
TENANT_NAME = r"^[a-z][a-z0-9-]{0,18}[a-z0-9]$"
CONTEXT = r"^[A-Za-z0-9_.@:/-]+$"
HTTPS_URL = r"^https://\S+$"
# An external URL without a trailing slash (Argo CD builds links by appending paths).
EXTERNAL_URL = r"^https://[^\s/?#]+(/[^\s?#]*[^\s/?#])?$"

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

# What ASO must reconcile for the platform and the reference app (groups, all kinds).
DEFAULT_ASO_CRD_PATTERN = (
    "resources.azure.com/*",
    "dbforpostgresql.azure.com/*",
    "storage.azure.com/*",
    "managedidentity.azure.com/*",
    "authorization.azure.com/*",
)
DEFAULT_TAGS = {"managed-by": "pulumi", "project": PROJECT}
# Tags the platform adds to every resource (plus `environment`); a stack cannot override them.
ADDED_TAG_NAMES = ("environment", *DEFAULT_TAGS)

# Namespaces the GitOps layer (gitops/) deploys the reference app into: a tenant there would
# get its aso-credential and the TenantGuard in the platform's own app namespaces.
GITOPS_NAMESPACES = frozenset({"webapp-aso", "webapp-crossplane"})
# Namespaces the platform owns: no tenant may claim them.
PLATFORM_NAMESPACES = frozenset(
    {"default", "kube-system", "kube-public", "kube-node-lease", "gatekeeper-system", "calico-system", "tigera-operator"}
    | {pin.namespace for pin in CHARTS.values()}
    | GITOPS_NAMESPACES
)


# --- Kubernetes and Azure value rules used by several sections --------------------------------

# Label keys and values (https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/#syntax-and-character-set):
# an optional DNS-subdomain prefix (<= 253) and '/', a name of <= 63 alphanumerics with - _ .
# inside; a value of <= 63 of the same, or empty.
_LABEL_NAME = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
# AKS reserves these label prefixes for itself and Kubernetes (https://learn.microsoft.com/azure/aks/use-labels).
RESERVED_LABEL_PREFIXES = ("kubernetes.azure.com", "kubernetes.io", "k8s.io")


def label_key_problem(key: str) -> Optional[str]:
    prefix, _, name = key.rpartition("/")
    if not _LABEL_NAME.fullmatch(name) or (prefix and (len(prefix) > 253 or not _DNS_SUBDOMAIN.fullmatch(prefix))):
        return (
            "a Kubernetes label key: an optional DNS subdomain prefix and '/', then at most 63 letters, digits, "
            "'-', '_' or '.', starting and ending with a letter or digit (the API server rejects anything else)"
        )
    if prefix and any(prefix == p or prefix.endswith("." + p) for p in RESERVED_LABEL_PREFIXES):
        return f"a label key outside the prefixes AKS and Kubernetes reserve ({', '.join(RESERVED_LABEL_PREFIXES)}): AKS refuses the node pool"
    return None


def label_value_problem(value: str) -> Optional[str]:
    if value == "" or _LABEL_NAME.fullmatch(value):
        return None
    return "a Kubernetes label value: empty, or at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit"


def _label_key(value: str) -> str:
    problem = label_key_problem(value)
    if problem:
        raise invalid(problem)
    return value


def _label_value(value: str) -> str:
    problem = label_value_problem(value)
    if problem:
        raise invalid(problem)
    return value


TAINT_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")


def _taint(value: str) -> str:
    match = re.fullmatch(r"([^=:]+)(?:=([^:]*))?:([A-Za-z]+)", value)
    if not match or match.group(3) not in TAINT_EFFECTS:
        raise invalid("a taint 'key=value:Effect' or 'key:Effect', Effect one of " + ", ".join(TAINT_EFFECTS))
    problem = label_key_problem(match.group(1)) or label_value_problem(match.group(2) or "")
    if problem:
        raise invalid("a taint whose key and value follow the label rules: " + problem)
    return value


def _cidr(value: str) -> str:
    try:
        if "/" not in value:
            raise ValueError(value)
        net = ipaddress.ip_network(value, strict=True)
    except ValueError:
        raise invalid("an IPv4 CIDR with no host bits set, such as '10.0.0.0/16'") from None
    if not isinstance(net, ipaddress.IPv4Network):
        raise invalid("an IPv4 CIDR (this platform configures single-stack IPv4)")
    return value


def _ipv4(value: str) -> str:
    try:
        ipaddress.IPv4Address(value)
    except ValueError:
        raise invalid("an IPv4 address such as '10.0.0.10'") from None
    return value


def _git_url(value: str) -> str:
    """Refuse credentials in a Git URL: they would be stored in plain text (Argo CD, state)."""
    match = re.match(r"^(https|ssh)://([^@/]*)@", value)
    scp = re.match(r"^[^/@:]+:[^/@]*@", value)
    query = urlsplit(value).query if "://" in value else ""
    in_query = [n for n, _ in parse_qsl(query, keep_blank_values=True) if CREDENTIAL_PARAM.match(n)]
    if (match and (match.group(1) == "https" or ":" in match.group(2))) or scp or in_query:
        raise invalid(
            "a Git URL without credentials (no user:password@ or token@, no token or password in the query): they "
            "would sit in plain text in Pulumi state and Argo CD's Application; give Argo CD a repository Secret instead"
        )
    return value


def _zone(value: Any) -> Any:
    # `pulumi config set --path 'cluster.systemPool.zones[0]' 1` stores the number 1.
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


Cidr = Annotated[str, Strict(), AfterValidator(_cidr)]
IPv4 = Annotated[str, Strict(), AfterValidator(_ipv4)]
GitUrl = Annotated[str, Strict(), StringConstraints(pattern=REPO_URL), AfterValidator(_git_url)]
Guid = Text(GUID)
Zone = Annotated[
    Literal["1", "2", "3"], BeforeValidator(_zone, json_schema_input_type=Union[Literal["1", "2", "3"], Literal[1, 2, 3]])
]
LabelKey = Annotated[str, Strict(), AfterValidator(_label_key)]
LabelValue = Annotated[Text(number_ok=True), AfterValidator(_label_value)]
Taint = Annotated[str, Strict(), AfterValidator(_taint)]


def _secret_text(value: Any) -> Any:
    # A kubeconfig set from a JSON file arrives decoded; the provider takes the text.
    return json.dumps(value) if isinstance(value, Mapping) else value


SecretText = Annotated[SecretStr, BeforeValidator(_secret_text, json_schema_input_type=str)]


# --- cluster ----------------------------------------------------------------------------------

# AKS reserves these ranges for itself; a pod or service CIDR overlapping one is refused by
# AKS (https://learn.microsoft.com/azure/aks/azure-cni-overlay#ip-address-planning: "the pod
# CIDR ... 169.254.0.0/16, 172.30.0.0/16, 172.31.0.0/16, and 192.0.2.0/24" are reserved;
# https://learn.microsoft.com/azure/aks/configure-azure-cni#deployment-parameters for the service CIDR).
AKS_RESERVED_RANGES = tuple(
    ipaddress.IPv4Network(n) for n in ("169.254.0.0/16", "172.30.0.0/16", "172.31.0.0/16", "192.0.2.0/24")
)
# kube-apiserver refuses a --service-cluster-ip-range wider than /12 for IPv4 (at most 20
# host bits; kubernetes cmd/kube-apiserver/app/options/validation.go).
WIDEST_SERVICE_PREFIX = 12
# Azure CNI overlay gives every node a /24 of the pod CIDR
# (https://learn.microsoft.com/azure/aks/azure-cni-overlay#pods).
OVERLAY_NODE_PREFIX = 24


class Network(Section):
    dataplane: Literal["cilium", "azure"] = setting(
        "cilium", one_of(NETWORK_DATAPLANES) + " (Azure CNI overlay either way)"
    )
    network_policy: Optional[Literal["cilium", "calico", "azure", "none"]] = setting(
        None,
        one_of(NETWORK_POLICIES) + "; 'cilium' exactly when the dataplane is 'cilium' (AKS requires it)",
        default_text="`cilium` with the cilium dataplane, else `none`",
    )
    pod_cidr: Cidr = setting(
        "10.244.0.0/16",
        "an IPv4 CIDR such as '10.244.0.0/16', overlapping neither serviceCidr nor AKS's reserved 169.254.0.0/16, "
        "172.30.0.0/16, 172.31.0.0/16, 192.0.2.0/24; under CNI overlay each node takes a /24 of it, so it must hold "
        "every node the pools may reach (counts and maxCounts)",
    )
    service_cidr: Cidr = setting(
        "10.0.0.0/16",
        "an IPv4 CIDR such as '10.0.0.0/16', at most a /12 (kube-apiserver's limit), overlapping neither podCidr "
        "nor AKS's reserved 169.254.0.0/16, 172.30.0.0/16, 172.31.0.0/16, 192.0.2.0/24",
    )
    dns_service_ip: Optional[IPv4] = setting(
        None,
        "an IPv4 address inside serviceCidr other than its first, second and last",
        default_text="the 10th address of `serviceCidr` (`10.0.0.10`), as AKS chooses",
    )
    outbound_type: Literal["loadBalancer", "managedNATGateway", "userDefinedRouting"] = setting(
        "loadBalancer",
        one_of(OUTBOUND_TYPES) + "; 'userDefinedRouting' needs vnetSubnetId (a subnet whose route table sends egress to "
        "your firewall) and routeTableId; with any type other than 'loadBalancer', apiServerAuthorizedIpRanges does not "
        "include the cluster's egress address on its own: add it (e.g. the firewall's public IP), or the nodes cannot reach "
        "the API server",
    )
    vnet_subnet_id: Optional[Text(SUBNET_ID_PATTERN)] = setting(
        None,
        "the ARM ID of an existing subnet for every node pool (/subscriptions/<id>/resourceGroups/<group>/providers/"
        "Microsoft.Network/virtualNetworks/<vnet>/subnets/<subnet>); required with outboundType 'userDefinedRouting'",
        default_text="none: AKS creates and owns the virtual network",
    )
    route_table_id: Optional[Text(ROUTE_TABLE_ID_PATTERN)] = setting(
        None,
        "the ARM ID of the route table associated with the node subnet(s) (/subscriptions/<id>/resourceGroups/<group>/"
        "providers/Microsoft.Network/routeTables/<name>), whose routes send egress to your firewall; required with "
        "outboundType 'userDefinedRouting' (the cluster's identity reads and writes it)",
        default_text="none",
    )
    assign_subnet_role: Bool = setting(
        True,
        "true or false; true: the cluster's identity gets Network Contributor on each node subnet and on routeTableId "
        "(the deployer needs roleAssignments/write there); false: your network team grants it",
    )

    def complete(self) -> None:
        if self.network_policy is None:
            self._set("network_policy", "cilium" if self.dataplane == "cilium" else "none")
        if self.dns_service_ip is None:
            net = ipaddress.IPv4Network(self.service_cidr)
            if net.num_addresses > 16:
                self._set("dns_service_ip", str(net.network_address + 10))

    def rules(self) -> Iterator[Problem]:
        if self.dataplane == "cilium" and self.network_policy != "cilium":
            yield Problem(("networkPolicy",), self.network_policy, "'cilium' when dataplane is 'cilium' (AKS requires it)")
        if self.dataplane != "cilium" and self.network_policy == "cilium":
            yield Problem(("networkPolicy",), self.network_policy, "'cilium' only with dataplane 'cilium' (AKS refuses it otherwise)")
        pod, svc = ipaddress.IPv4Network(self.pod_cidr), ipaddress.IPv4Network(self.service_cidr)
        if svc.prefixlen < WIDEST_SERVICE_PREFIX:
            yield Problem(("serviceCidr",), self.service_cidr, "a range of at most /12: kube-apiserver refuses a wider service range and the cluster would not start")
        elif pod.overlaps(svc):
            yield Problem(("serviceCidr",), self.service_cidr, f"a range that does not overlap podCidr {self.pod_cidr}")
        elif any(svc.overlaps(r) for r in AKS_RESERVED_RANGES):
            reserved = ", ".join(str(r) for r in AKS_RESERVED_RANGES if svc.overlaps(r))
            yield Problem(("serviceCidr",), self.service_cidr, f"a range outside AKS's reserved {reserved}: AKS refuses the cluster")
        if any(pod.overlaps(r) for r in AKS_RESERVED_RANGES):
            reserved = ", ".join(str(r) for r in AKS_RESERVED_RANGES if pod.overlaps(r))
            yield Problem(("podCidr",), self.pod_cidr, f"a range outside AKS's reserved {reserved}: AKS refuses the cluster")
        if self.dns_service_ip is None:
            yield Problem(("dnsServiceIp",), None, "required when serviceCidr is smaller than a /27: an address inside it")
            return
        dns = ipaddress.IPv4Address(self.dns_service_ip)
        if dns not in svc or dns in (svc.network_address, svc.network_address + 1, svc.broadcast_address):
            yield Problem(
                ("dnsServiceIp",), self.dns_service_ip,
                f"an address inside serviceCidr {self.service_cidr} other than its first, second and last",
            )


class MaintenanceWindow(Section):
    day_of_week: Literal["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"] = setting(
        "Sunday", one_of(DAYS)
    )
    start_time: Text(TIME) = setting("02:00", "'HH:MM' in 24-hour time")
    # AKS planned maintenance windows last 4 to 24 hours.
    duration_hours: Int(4, 24) = setting(4, "a whole number from 4 to 24 (AKS's window length)")
    utc_offset: Text(UTC_OFFSET) = setting("+00:00", "'+HH:MM' or '-HH:MM'")
    interval_weeks: Int(1, 4) = setting(1, "a whole number from 1 to 4")


class NodePool(Section):
    """A user node pool (each its own AgentPool resource)."""

    DEFAULT_COUNT: ClassVar[int] = 1

    name: Text(POOL_NAME) = required("1-12 lowercase letters and digits, starting with a letter; distinct across pools")
    vm_size: Text(VM_SIZE) = required("an Azure VM size such as 'Standard_D8ds_v5'")
    count: Optional[Int(0, 1000)] = setting(
        None,
        "nodes to start with: a whole number from 0 to 1000 (user pools may scale to zero); with autoscaling "
        "minCount <= count <= maxCount",
        default_text="`1`; `minCount` when autoscaling",
    )
    min_count: Optional[Int(0, 1000)] = setting(None, "with maxCount (autoscaling): a whole number from 0 to 1000")
    max_count: Optional[Int(1, 1000)] = setting(None, "with minCount (autoscaling): a whole number from 1 to 1000, at least minCount")
    zones: tuple[Annotated[Zone, item("an availability zone: one of '1', '2', '3' (or the number)")], ...] = setting((), "distinct availability zones '1', '2', '3' (numbers, as `--path` stores them, too)")
    max_pods: Int(10, 250) = setting(110, "a whole number from 10 to 250 (Azure CNI overlay's maximum per node)")
    os_disk_size_gb: Optional[Int(30, 2048)] = setting(None, "a whole number from 30 to 2048 (GB)", default_text="the VM size's default")
    labels: dict[LabelKey, LabelValue] = setting(
        {}, "Kubernetes node labels (key rules of Kubernetes; no kubernetes.azure.com/, kubernetes.io/ or k8s.io/ prefix)"
    )
    taints: tuple[Taint, ...] = setting((), "taints 'key=value:Effect', Effect one of NoSchedule, PreferNoSchedule, NoExecute")
    vnet_subnet_id: Optional[Text(SUBNET_ID_PATTERN)] = setting(
        None,
        "the ARM ID of a subnet for this pool's nodes, in the same virtual network as network.vnetSubnetId",
        default_text="`network.vnetSubnetId`",
    )

    @property
    def autoscaling(self) -> bool:
        return self.min_count is not None

    @property
    def most_nodes(self) -> int:
        """The largest node count this pool may reach."""
        return max(self.count or 0, self.max_count or 0)

    def complete(self) -> None:
        if self.count is None:
            both = self.min_count is not None and self.max_count is not None
            self._set("count", self.min_count if both else self.DEFAULT_COUNT)

    def rules(self) -> Iterator[Problem]:
        if (self.min_count is None) != (self.max_count is None):
            missing = "maxCount" if self.max_count is None else "minCount"
            yield Problem((missing,), None, "both minCount and maxCount (autoscaling) or neither")
        elif self.min_count is not None and self.max_count is not None:
            if self.min_count > self.max_count:
                yield Problem(("maxCount",), self.max_count, f"at least minCount ({self.min_count})")
            elif not self.min_count <= (self.count or 0) <= self.max_count:
                yield Problem((), {"minCount": self.min_count, "count": self.count, "maxCount": self.max_count}, "minCount <= count <= maxCount")
        seen: set[str] = set()
        for i, zone in enumerate(self.zones):
            if zone in seen:
                yield Problem(("zones", i), zone, "distinct zones")
            seen.add(zone)


class SystemPool(NodePool):
    """The system pool (inline in the cluster): AKS keeps at least one node in it."""

    DEFAULT_COUNT: ClassVar[int] = 2

    name: Text(POOL_NAME) = setting("system", "1-12 lowercase letters and digits, starting with a letter")
    vm_size: Text(VM_SIZE) = setting("Standard_D4ds_v5", "an Azure VM size such as 'Standard_D4ds_v5'")
    count: Optional[Int(1, 1000)] = setting(
        None,
        "nodes to start with: a whole number from 1 to 1000; with autoscaling minCount <= count <= maxCount",
        default_text="`2`; `minCount` when autoscaling",
    )
    min_count: Optional[Int(1, 1000)] = setting(None, "with maxCount (autoscaling): a whole number from 1 to 1000")
    # 30 is AKS's floor for system pools.
    max_pods: Int(30, 250) = setting(110, "a whole number from 30 to 250 (AKS's floor for system pools; overlay's maximum)")
    taints: tuple[Taint, ...] = setting((), "none on the system pool (use a user pool, or AKS's CriticalAddonsOnly)")

    def rules(self) -> Iterator[Problem]:
        yield from super().rules()
        if self.taints:
            yield Problem(("taints",), list(self.taints), "none on the system pool (use a user pool, or AKS's CriticalAddonsOnly)")


class ClusterConfig(Section):
    kubernetes_version: Optional[Text(K8S_VERSION)] = setting(
        None,
        "an explicit AKS version 'MAJOR.MINOR' or 'MAJOR.MINOR.PATCH' such as '1.34' (not 'latest'; "
        "`az aks get-versions -l <location>` lists them), or unset for the AKS default; what the upgrade channel "
        "moves stays unpinned: unset with 'stable' or 'rapid', 'MAJOR.MINOR' with 'patch'",
        default_text="AKS default",
    )
    sku_tier: Literal["Free", "Standard", "Premium"] = setting("Free", one_of(SKU_TIERS))
    upgrade_channel: Literal["none", "patch", "stable", "rapid", "node-image"] = setting("patch", one_of(UPGRADE_CHANNELS))
    node_os_upgrade_channel: Literal["None", "Unmanaged", "SecurityPatch", "NodeImage"] = setting(
        "NodeImage", one_of(NODE_OS_UPGRADE_CHANNELS) + "; 'NodeImage' when upgradeChannel is 'node-image' (AKS forces it)"
    )
    local_accounts: Bool = setting(
        False, "true or false; false: Entra only (needs adminGroupObjectIds, kubelogin); true: the provider uses the admin credentials"
    )
    admin_group_object_ids: tuple[Annotated[Guid, item("an Entra ID group object ID (GUID)")], ...] = setting(
        (), "Entra ID group object IDs (GUIDs); at least one when localAccounts is false: each gets 'Azure Kubernetes "
        "Service RBAC Cluster Admin' on the cluster, so its members are cluster admins, and whoever runs `pulumi up` "
        "(the CI identity, a person) must be one"
    )
    api_server_authorized_ip_ranges: tuple[Cidr, ...] = setting((), "IPv4 CIDRs such as '203.0.113.0/24'")
    system_pool: SystemPool = setting(SystemPool, "the system node pool")
    user_pools: tuple[NodePool, ...] = setting((), "user node pools, each its own AgentPool resource; names distinct")
    network: Network = setting(Network, "the cluster network (Azure CNI overlay)")
    maintenance_window: Optional[MaintenanceWindow] = setting(
        None, "AKS planned maintenance for the upgrade channels that are on (not both off)"
    )
    kubelogin_mode: Literal["azurecli", "workloadidentity", "spn", "msi", "azd"] = setting(
        "azurecli", one_of(KUBELOGIN_MODES) + " (how kubelogin gets a token non-interactively)"
    )

    @property
    def pools(self) -> tuple[NodePool, ...]:
        return (self.system_pool, *self.user_pools)

    def subnet_of(self, pool: NodePool) -> Optional[str]:
        """Where a pool's nodes go: its own vnetSubnetId, else network.vnetSubnetId, else AKS's network."""
        return pool.vnet_subnet_id or self.network.vnet_subnet_id

    def rules(self) -> Iterator[Problem]:
        if not self.local_accounts and not self.admin_group_object_ids:
            yield Problem(
                ("adminGroupObjectIds",), [],
                "at least one Entra group object ID when localAccounts is false: its members (people and the CI "
                "identity that runs `pulumi up`) are the cluster's administrators",
            )
        conflict = version_conflict(self.kubernetes_version, self.upgrade_channel)
        if conflict:
            yield Problem(("kubernetesVersion",), self.kubernetes_version, conflict)
        yield from self._subnet_rules()
        seen = {self.system_pool.name}
        for i, pool in enumerate(self.user_pools):
            if pool.name in seen:
                yield Problem(("userPools", i, "name"), pool.name, "a name distinct from the other node pools' (AKS pool names are unique per cluster)")
            seen.add(pool.name)
        # With upgradeChannel node-image AKS sets the node OS channel to NodeImage and refuses
        # another (https://learn.microsoft.com/azure/aks/auto-upgrade-node-os-image).
        if self.upgrade_channel == "node-image" and self.node_os_upgrade_channel != "NodeImage":
            yield Problem(
                ("nodeOsUpgradeChannel",), self.node_os_upgrade_channel,
                "'NodeImage' while upgradeChannel is 'node-image' (AKS forces NodeImage and refuses any other)",
            )
        if self.maintenance_window is not None and self.upgrade_channel == "none" and self.node_os_upgrade_channel in ("None", "Unmanaged"):
            yield Problem(
                ("maintenanceWindow",), self.maintenance_window.model_dump(by_alias=True),
                "no window while upgradeChannel is 'none' and nodeOsUpgradeChannel is 'None' or 'Unmanaged': AKS "
                "would schedule nothing in it (turn a channel on, or remove the window)",
            )
        pod = ipaddress.IPv4Network(self.network.pod_cidr)
        nodes = sum(p.most_nodes for p in self.pools)
        capacity = 2 ** (OVERLAY_NODE_PREFIX - pod.prefixlen) if pod.prefixlen <= OVERLAY_NODE_PREFIX else 0
        if nodes > capacity:
            yield Problem(
                ("network", "podCidr"), self.network.pod_cidr,
                f"a range with a /24 for each of the {nodes} nodes the pools may reach (counts and maxCounts): under CNI "
                f"overlay every node takes a /24, this one holds {capacity}, and AKS would fail to add the rest",
            )


    def _subnet_rules(self) -> Iterator[Problem]:
        paths = [("systemPool",)] + [("userPools", i) for i in range(len(self.user_pools))]
        subnets = [self.subnet_of(p) for p in self.pools]
        if self.network.outbound_type == "userDefinedRouting" and not self.network.vnet_subnet_id and not all(subnets):
            yield Problem(
                ("network", "vnetSubnetId"), None,
                "required with outboundType 'userDefinedRouting': the ARM ID of your subnet whose route table sends "
                "egress to your firewall (AKS creates no egress path of its own)",
            )
            return
        if self.network.outbound_type == "userDefinedRouting" and not self.network.route_table_id:
            yield Problem(
                ("network", "routeTableId"), None,
                "required with outboundType 'userDefinedRouting': the ARM ID of the route table on your node subnet "
                "(/subscriptions/<id>/resourceGroups/<group>/providers/Microsoft.Network/routeTables/<name>); the "
                "cluster's identity needs to read and write it",
            )
        if self.network.route_table_id and self.network.outbound_type != "userDefinedRouting":
            yield Problem(
                ("network", "routeTableId"), self.network.route_table_id,
                "only with outboundType 'userDefinedRouting' (the program grants the cluster's identity on it only then)",
            )
        if any(subnets) and not all(subnets):
            path = next(p for p, s in zip(paths, subnets) if not s)
            yield Problem(
                (*path, "vnetSubnetId"), None,
                "a subnet for every pool once one has its own (or network.vnetSubnetId for all): AKS cannot mix its "
                "own network with yours",
            )
            return
        vnets = {virtual_network_of(s) for s in subnets if s}
        if len(vnets) > 1:
            path, subnet = next((p, s) for p, s in zip(paths, subnets) if s and virtual_network_of(s) != virtual_network_of(subnets[0] or ""))
            yield Problem(
                (*path, "vnetSubnetId"), subnet,
                f"a subnet of the same virtual network as the system pool's ({subnets[0]}): AKS keeps all pools in one",
            )

# --- add-ons ------------------------------------------------------------------------------------


class CertManagerConfig(Section):
    enabled: Bool = setting(True, "true or false; must be true while ASO is on (its webhooks use cert-manager certificates)")


class AsoConfig(Section):
    enabled: Bool = setting(True, "true or false")
    crd_pattern: tuple[
        Annotated[
            Text(CRD_PATTERN_ITEM),
            item(
                "an ASO CRD pattern '<group>.azure.com/*' or '<group>.azure.com/<Kind>': the group a DNS subdomain under "
                "azure.com (lowercase, no empty label), the Kind a capitalised name, nothing else (no ';' or spaces)"
            ),
        ],
        ...,
    ] = setting(
        DEFAULT_ASO_CRD_PATTERN,
        "at least one ASO CRD pattern '<group>.azure.com/*' or '<group>.azure.com/<Kind>', each once (an empty list "
        "makes the operator exit)",
        default_text="resources, dbforpostgresql, storage, managedidentity, authorization (`<group>.azure.com/*`)",
        min_length=1,
    )
    # Opt-in only: Contributor on the whole subscription instead of the app resource groups.
    subscription_scope: Bool = setting(False, "true or false; true grants ASO Contributor on the whole subscription (explicit opt-in)")

    @property
    def api_groups(self) -> tuple[str, ...]:
        """The API groups of crd_pattern, sorted and distinct (what KRO's RBAC rules take)."""
        return tuple(sorted({p.split("/")[0] for p in self.crd_pattern}))

    def rules(self) -> Iterator[Problem]:
        seen: set[str] = set()
        for i, pattern in enumerate(self.crd_pattern):
            if pattern in seen:
                yield Problem(("crdPattern", i), pattern, "each pattern once")
            seen.add(pattern)


class KroConfig(Section):
    enabled: Bool = setting(True, "true or false")


class CrossplaneConfig(Section):
    enabled: Bool = setting(True, "true or false")


class ArgoCdConfig(Section):
    enabled: Bool = setting(True, "true or false")
    repo_url: Optional[GitUrl] = setting(
        None,
        "the Git URL Argo CD syncs (https://…, ssh://… or git@host:path), without credentials",
        default_text="required with Argo CD",
    )
    revision: Text(REVISION, max_length=255) = setting("main", "a branch, tag or commit")
    path: Text(REPO_PATH) = setting("gitops", "a relative path inside the repository")
    app_image: Optional[Text(IMAGE)] = setting(
        None,
        "a full container image reference with a tag or digest, e.g. 'ghcr.io/org/webapp:1.0.0'",
        default_text="required while Argo CD and an app variant (ASO + KRO, or Crossplane) are on",
    )
    url: Optional[Text(EXTERNAL_URL)] = setting(
        None,
        "Argo CD's external URL, e.g. 'https://argocd.example.org' (https, no trailing slash, no query): "
        "links in the UI and notifications; unset while Argo CD is reached only by port-forward",
        default_text="unset",
    )

    def rules(self) -> Iterator[Problem]:
        if self.enabled and self.repo_url is None:
            yield Problem(("repoUrl",), None, "required while addons.argocd.enabled is true: the Git URL Argo CD syncs (https://…, ssh://… or git@host:path)")


class AddonsConfig(Section):
    cert_manager: CertManagerConfig = setting(CertManagerConfig, "cert-manager")
    aso: AsoConfig = setting(AsoConfig, "Azure Service Operator v2")
    kro: KroConfig = setting(KroConfig, "kro")
    crossplane: CrossplaneConfig = setting(CrossplaneConfig, "Crossplane with the Azure providers")
    argocd: ArgoCdConfig = setting(ArgoCdConfig, "Argo CD, bootstrapped to Git")

    def enabled(self) -> dict[str, bool]:
        """Toggle per add-on, keyed like gitops_bridge.ADDON_LABELS."""
        return {
            "cert_manager": self.cert_manager.enabled,
            "aso": self.aso.enabled,
            "kro": self.kro.enabled,
            "crossplane": self.crossplane.enabled,
            "argocd": self.argocd.enabled,
        }

    def rules(self) -> Iterator[Problem]:
        if self.aso.enabled and not self.cert_manager.enabled:
            yield Problem(("certManager", "enabled"), False, "true while addons.aso.enabled is true (ASO's webhooks need cert-manager certificates)")
        # The GitOps layer deploys the reference app wherever one of its variants can run, and
        # takes the image from the cluster Secret: without it those ApplicationSets stop.
        app_variant_possible = (self.aso.enabled and self.kro.enabled) or self.crossplane.enabled
        if self.argocd.enabled and app_variant_possible and self.argocd.app_image is None:
            yield Problem(
                ("argocd", "appImage"), None,
                "required while Argo CD and an app variant (ASO + KRO, or Crossplane) are on: the reference app's image "
                "with a tag or digest, e.g. 'ghcr.io/org/webapp:1.0.0' (build it from app/Dockerfile)",
            )


# --- tenants ------------------------------------------------------------------------------------


def _role(value: str) -> str:
    if value not in BUILTIN_ROLES and not re.fullmatch(GUID, value):
        raise invalid("a built-in role (" + ", ".join(sorted(BUILTIN_ROLES)) + ") or a role definition GUID")
    return value


def _namespace(value: str) -> str:
    if value in PLATFORM_NAMESPACES:
        raise invalid("a namespace the platform does not own (not " + ", ".join(sorted(PLATFORM_NAMESPACES)) + ")")
    if value.startswith("kube-"):
        raise invalid("a namespace not starting with 'kube-' (Kubernetes reserves that prefix for its system namespaces)")
    return value


# Argo CD matches an AppProject's sourceRepos with github.com/gobwas/glob (util/glob): `*`, `**`,
# `?`, `[...]` classes and `{a,b}` alternatives are patterns; a leading `!` negates.
SOURCE_REPO_GLOB = re.compile(r"[*?\[\]{}]")


def _source_repo(value: str) -> str:
    if value != "*" and not re.fullmatch(REPO_URL, value):
        raise invalid("Git URLs the tenant's Argo CD project may sync from (https://…, ssh://…, git@host:path)")
    return _git_url(value)


class TenantRole(Section):
    role: Annotated[Text(), AfterValidator(_role)] = required("a built-in role name (components/roles.py) or a role definition GUID")
    scope: Text() = setting(
        "resourceGroup",
        "'resourceGroup' (the tenant's rg-<env>-tenant-<name>), 'subscription' (only with allowSubscriptionScope), "
        "or a complete ARM ID under /subscriptions/<subscriptionId>/ (the subscription's own ID counts as 'subscription')",
    )
    allow_subscription_scope: Bool = setting(False, "true or false; the explicit opt-in for a subscription scope")


_ARM_ID = re.compile(r"^/subscriptions/([^/]+)(/.*)?$", re.IGNORECASE)


def arm_scope_problem(scope: str, subscription: str) -> Optional[str]:
    """Why `scope` is not a complete ARM ID inside `subscription` (None: it is)."""
    allowed = (
        f"'resourceGroup', 'subscription' (with allowSubscriptionScope) or a complete ARM ID under "
        f"/subscriptions/{subscription}/ (a resource group ID names the group: .../resourceGroups/<name>)"
    )
    match = _ARM_ID.match(scope)
    if not match or match.group(1).lower() != subscription.lower():
        return allowed
    rest = (match.group(2) or "").split("/")[1:]
    if any(part == "" for part in rest):
        return allowed + "; no empty segment (a doubled or trailing '/')"
    if not rest:
        return None
    if rest[0].lower() != "resourcegroups" or len(rest) < 2:
        return allowed
    rest = rest[2:]
    if not rest:
        return None
    # .../providers/<Namespace>/<type>/<name>[/<type>/<name>...]
    if rest[0].lower() != "providers" or len(rest) < 4 or len(rest[2:]) % 2:
        return allowed
    return None


def is_subscription_id(scope: str, subscription: str) -> bool:
    match = _ARM_ID.match(scope)
    return bool(match) and match.group(1).lower() == subscription.lower() and not match.group(2)


class TenantConfig(Section):
    name: Text(TENANT_NAME) = required("2-20 lowercase letters, digits and hyphens, starting with a letter (DNS-safe); unique")
    subscription_id: Guid = required("an Azure subscription ID (GUID)")
    # None: the stack's own Entra tenant (azure-native:tenantId), never the deployer's default.
    tenant_id: Optional[Guid] = setting(None, "an Entra tenant ID (GUID)", default_text="the stack's `azure-native:tenantId`")
    location: Optional[Text(LOCATION)] = setting(None, "an Azure region name", default_text="`location`")
    namespaces: tuple[
        Annotated[Text(DNS_LABEL), AfterValidator(_namespace), item("a Kubernetes namespace name: at most 63 lowercase letters, digits and '-', starting and ending with a letter or digit (RFC 1123 label)")],
        ...,
    ] = required(
        "at least one namespace: Kubernetes namespace names (RFC 1123 labels), unique across tenants, none the "
        "platform's own nor starting with 'kube-'",
        min_length=1,
    )
    roles: tuple[TenantRole, ...] = setting(
        (TenantRole(role="Contributor", scope="resourceGroup"),),
        "at least one {role, scope} (omit roles for Contributor on the tenant's resource group)",
        default_text="`[{role: Contributor, scope: resourceGroup}]`",
        min_length=1,
    )
    source_repos: tuple[Annotated[Text(), AfterValidator(_source_repo)], ...] = required(
        "at least one Git URL (https://…, ssh://…, git@host:path) the tenant's Argo CD project may sync from; "
        "patterns (* ? [...] {a,b}, Argo CD's glob syntax) only with allowSourceRepoWildcards",
        min_length=1,
    )
    allow_source_repo_wildcards: Bool = setting(
        False, "true or false; the explicit opt-in for sourceRepos patterns (Argo CD matches them as globs)"
    )

    def complete(self) -> None:
        # The subscription's own ARM ID, however spelled, is the subscription scope.
        roles = tuple(
            r.model_copy(update={"scope": "subscription"}) if is_subscription_id(r.scope, self.subscription_id) else r
            for r in self.roles
        )
        self._set("roles", roles)

    def rules(self) -> Iterator[Problem]:
        seen: set[str] = set()
        for i, ns in enumerate(self.namespaces):
            if ns in seen:
                yield Problem(("namespaces", i), ns, "a namespace no other tenant has (this tenant lists it twice)")
            seen.add(ns)
        for i, role in enumerate(self.roles):
            if role.scope == "subscription" and not role.allow_subscription_scope:
                yield Problem(("roles", i, "scope"), role.scope, "'subscription' only with allowSubscriptionScope: true (an explicit opt-in)")
            elif role.scope not in ("resourceGroup", "subscription"):
                problem = arm_scope_problem(role.scope, self.subscription_id)
                if problem:
                    yield Problem(("roles", i, "scope"), role.scope, problem)
        if not self.allow_source_repo_wildcards:
            for i, repo in enumerate(self.source_repos):
                if SOURCE_REPO_GLOB.search(repo) or repo.startswith("!"):
                    yield Problem(
                        ("sourceRepos", i), repo,
                        "an exact Git URL: Argo CD matches sourceRepos as globs, so a pattern lets the tenant sync any "
                        "repository it matches; set allowSourceRepoWildcards: true to mean it",
                    )


# --- hybrid -------------------------------------------------------------------------------------


def _issuer(value: str) -> str:
    # OpenID Connect Discovery 1.0 §3: the issuer is an https URL with no query or fragment;
    # Entra ID compares it with the token's `iss` exactly.
    if "?" in value or "#" in value:
        raise invalid("the cluster's public OIDC issuer URL with no query or fragment (OpenID Connect forbids them; Entra ID would never match the tokens' iss)")
    return value


class HybridConfig(Section):
    kubeconfig_path: Optional[Text()] = setting(
        None, "a path (~ expanded) to a kubeconfig file; exactly one of this and the secret aks-platform:kubeconfig"
    )
    context: Optional[Text(CONTEXT, max_length=253)] = setting(
        None, "a context name in the kubeconfig, e.g. 'kind-platform'", default_text="the kubeconfig's current context"
    )
    # Set when the cluster publishes a public OIDC issuer: controllers use workload identity.
    oidc_issuer_url: Optional[Annotated[Text(HTTPS_URL), AfterValidator(_issuer)]] = setting(
        None, "the cluster's public OIDC issuer URL (https://…, no query or fragment), whose discovery document Entra ID can fetch"
    )
    # A cluster you create (`make kind`): the public key its API server signs tokens with. The
    # platform publishes the issuer for it (components/oidc_issuer.py): workload identity.
    service_account_public_key_path: Optional[Text()] = setting(
        None,
        "a path (~ expanded) to the PEM RSA public key (2048+ bits) your cluster signs service-account tokens with "
        "(`make kind` writes it): the platform publishes the issuer for it and the controllers use workload identity",
    )
    # Otherwise a service principal (client ID in config, secret as a --secret key).
    service_principal_client_id: Optional[Guid] = setting(
        None, "without oidcIssuerUrl or serviceAccountPublicKeyPath: the service principal's application (client) ID (GUID)"
    )
    # When given, the platform grants the service principal the controllers' roles on the app
    # resource groups, as the workload identities get on AKS.
    service_principal_object_id: Optional[Guid] = setting(
        None, "with servicePrincipalClientId: its object ID in Entra ID (GUID; `az ad sp show --id <appId> --query id`)"
    )
    # Service-principal mode: the reference app's own principal (never the controllers'); its
    # secret is the top-level secret appServicePrincipalClientSecret.
    app_service_principal_client_id: Optional[Guid] = setting(
        None,
        "with servicePrincipalClientId only: the reference app's own service principal's application (client) ID "
        "(GUID), never the controllers'",
    )
    app_service_principal_object_id: Optional[Guid] = setting(
        None, "with appServicePrincipalClientId: that principal's object ID (GUID; `az ad sp show --id <appId> --query id`)"
    )

    @property
    def workload_identity(self) -> bool:
        return self.oidc_issuer_url is not None or self.service_account_public_key_path is not None

    def rules(self) -> Iterator[Problem]:
        if self.service_principal_object_id is not None and self.service_principal_client_id is None:
            yield Problem(("servicePrincipalObjectId",), self.service_principal_object_id, "only together with hybrid.servicePrincipalClientId")
        modes = [
            (key, value)
            for key, value in (
                ("oidcIssuerUrl", self.oidc_issuer_url),
                ("serviceAccountPublicKeyPath", self.service_account_public_key_path),
                ("servicePrincipalClientId", self.service_principal_client_id),
            )
            if value is not None
        ]
        if len(modes) > 1:
            yield Problem(
                (modes[0][0],), modes[0][1],
                "exactly one of oidcIssuerUrl, serviceAccountPublicKeyPath, a service principal (servicePrincipalClientId "
                f"+ secret), not both: hybrid.{modes[1][0]} is set too",
            )
            return
        if self.service_account_public_key_path is not None:
            problem = public_key_file_problem(self.service_account_public_key_path)
            if problem:
                yield Problem(("serviceAccountPublicKeyPath",), self.service_account_public_key_path, problem)
        app_ids = [(k, v) for k, v in (("appServicePrincipalClientId", self.app_service_principal_client_id),
                                       ("appServicePrincipalObjectId", self.app_service_principal_object_id)) if v is not None]
        if app_ids and self.workload_identity:
            yield Problem(
                (app_ids[0][0],), app_ids[0][1],
                "nothing with workload identity (the app gets its own federated identity); only with the controllers' "
                "service principal (servicePrincipalClientId)",
            )
        elif len(app_ids) == 1:
            missing = "appServicePrincipalObjectId" if app_ids[0][0] == "appServicePrincipalClientId" else "appServicePrincipalClientId"
            yield Problem((app_ids[0][0],), app_ids[0][1], f"the app's service principal complete: also hybrid.{missing}")
        if (
            self.app_service_principal_client_id is not None
            and self.service_principal_client_id is not None
            and self.app_service_principal_client_id.lower() == self.service_principal_client_id.lower()
        ):
            yield Problem(
                ("appServicePrincipalClientId",), self.app_service_principal_client_id,
                "a principal of the app's own, not the controllers' (hybrid.servicePrincipalClientId), whose rights on the "
                "app resource groups are far wider",
            )


def read_text_file(path: str, what: str) -> tuple[str, Optional[str]]:
    """The text of the file at `path` (~ expanded), or why it is not a readable `what` (never an exception)."""
    if "\x00" in path:
        return "", f"a path to a {what} without a NUL character (no file name can hold one)"
    try:
        expanded = Path(path).expanduser()
    except RuntimeError:
        return "", "a path whose ~user can be expanded (no such user's home directory here)"
    try:
        if expanded.is_dir():
            return "", f"a {what}, not a directory"
        if not expanded.exists():
            return "", f"a readable {what} (none exists at this path on the machine running pulumi)"
        return expanded.read_text(encoding="utf-8"), None
    except OSError as err:
        reason = os.strerror(err.errno) if err.errno else type(err).__name__
        return "", f"a readable {what} ({reason.lower()})"
    except UnicodeDecodeError:
        return "", f"a {what} (text); this file is not UTF-8 text"


def public_key_file_problem(path: str) -> Optional[str]:
    """Why `path` is not the service-account public key `make kind` writes, or None."""
    from components.oidc_issuer import InvalidPublicKey, load_public_key

    text, problem = read_text_file(path, "public key file")
    if problem and problem.startswith("a readable"):
        return f"{problem}: run `make kind STACK=<stack>` first, which creates the key pair and the cluster"
    if problem:
        return problem
    try:
        load_public_key(text)
    except InvalidPublicKey as err:
        return f"an RSA public key in PEM of at least 2048 bits (this file holds {err})"
    return None


# --- the stack ----------------------------------------------------------------------------------

TAG_VALUE_ALLOWED = "a string of at most 256 characters"


class StackConfig(Section):
    kind: Literal["aks", "hybrid"] = setting("aks", one_of(KINDS) + ": 'aks' creates a cluster, 'hybrid' uses an existing one")
    environment: Text(ENVIRONMENT) = required(
        "2-16 characters: lowercase letters, digits and hyphens, starting with a letter (it prefixes every Azure "
        "name: rg-<env>-platform, aks-<env>, id-<env>-…)"
    )
    location: Text(LOCATION) = required("an Azure region name such as 'westeurope'")
    tags: dict[
        Annotated[Text(TAG_NAME), item("a tag name: 1-512 characters, none of < > % & \\ ? /")],
        Annotated[Text(max_length=256, number_ok=True), item("a tag value: a string of at most 256 characters")],
    ] = setting(
        {},
        "a mapping of tag name (no < > % & \\ ? /, at most 512 characters) to a string of at most 256 characters; "
        "names are case-insensitive in Azure, so distinct ignoring case and none of the added environment, "
        "managed-by, project; at most 50 tags counting those three (47 of yours); with hybrid.serviceAccountPublicKeyPath "
        "the issuer's storage account adds aks-platform-purpose (reserved too; 46 of yours) and takes names of at most "
        "128 characters",
    )
    protect: Bool = setting(False, "true or false; true protects the cluster, node pools, identities and resource groups")
    keep_app_data: Bool = setting(
        False,
        "true or false; true leaves the app resource groups (and the app data in them) in Azure on destroy (retainOnDelete)",
    )
    existing_resource_group: Optional[Text(RG_NAME)] = setting(
        None, "an existing Azure resource group (1-90 characters) for the cluster instead of rg-<env>-platform"
    )
    cluster: Optional[ClusterConfig] = setting(None, "the AKS cluster; only with kind 'aks'", default_text="the defaults below")
    app_resource_groups: tuple[
        Annotated[Text(RG_NAME), item("an Azure resource group name: 1-90 letters, digits, - _ . ( ), not ending in '.'")], ...
    ] = setting(
        (),
        "Azure resource group names (1-90 characters: letters, digits, - _ . ( )), distinct ignoring case, none the "
        "platform's own or existingResourceGroup; the platform creates them and ASO and Crossplane may manage only these",
    )
    addons: AddonsConfig = setting(AddonsConfig, "the add-ons")
    tenants: tuple[TenantConfig, ...] = setting((), "tenants, each in its own subscription (see docs/tenants.md)")
    hybrid: Optional[HybridConfig] = setting(None, "the existing cluster; only with kind 'hybrid'")
    # Secrets: top-level keys so `pulumi config set --secret` can set them (hybrid only).
    kubeconfig: Optional[SecretText] = secret(
        "kind 'hybrid' only: the existing cluster's kubeconfig, only as a secret "
        "(`pulumi config set --secret aks-platform:kubeconfig < file`)"
    )
    service_principal_client_secret: Optional[SecretText] = secret(
        "kind 'hybrid' with a service principal only: its client secret (the `password` field of "
        "`az ad sp create-for-rbac`), only as a secret (`pulumi config set --secret aks-platform:servicePrincipalClientSecret`)"
    )
    app_service_principal_client_secret: Optional[SecretText] = secret(
        "kind 'hybrid' with hybrid.appServicePrincipalClientId only: the reference app's service principal's client "
        "secret, only as a secret (`pulumi config set --secret aks-platform:appServicePrincipalClientSecret`)"
    )

    # Where the stack deploys: its own `azure-native:subscriptionId` and `azure-native:tenantId`
    # (checked with the rest by stacks.validation.load), never the default subscription and
    # tenant of whoever runs `up` (getClientConfig answers with those when the stack sets none).
    _subscription_id: Optional[str] = PrivateAttr(None)
    _tenant_id: Optional[str] = PrivateAttr(None)

    @property
    def subscription_id(self) -> str:
        if self._subscription_id is None:
            raise ValueError("StackConfig.subscription_id: load the config with the stack's azure-native keys (stacks.validation.from_pulumi)")
        return self._subscription_id

    @property
    def tenant_id(self) -> str:
        if self._tenant_id is None:
            raise ValueError("StackConfig.tenant_id: load the config with the stack's azure-native keys (stacks.validation.from_pulumi)")
        return self._tenant_id

    def tenant_resource_group(self, tenant: TenantConfig) -> str:
        return f"rg-{self.environment}-tenant-{tenant.name}"

    def tenant_identity_name(self, tenant: TenantConfig) -> str:
        return f"id-{self.environment}-tenant-{tenant.name}"

    @property
    def tag_map(self) -> dict[str, str]:
        """Every resource's tags: the stack's, and the added ones."""
        return dict(sorted({**DEFAULT_TAGS, "environment": self.environment, **self.tags}.items()))

    @property
    def resource_group_name(self) -> str:
        return self.existing_resource_group or f"rg-{self.environment}-platform"

    @property
    def cluster_name(self) -> str:
        return f"aks-{self.environment}"


# The azure-native provider keys every stack must set (namespace `azure-native:`), so that
# what the program registers never depends on who runs `up`: a person's `az` default
# subscription and tenant, CI's ARM_SUBSCRIPTION_ID. Key -> what is allowed (a GUID each).
PROVIDER_NAMESPACE = "azure-native"
PROVIDER_KEYS: dict[str, str] = {
    "subscriptionId": (
        "the Azure subscription ID (GUID) the stack deploys into, pinned in the stack so that who runs `up` (CI's "
        "ARM_SUBSCRIPTION_ID, a person's `az account show`) changes nothing: `pulumi config set azure-native:subscriptionId <id>`"
    ),
    "tenantId": (
        "the Entra tenant ID (GUID) of that subscription (`az account show --subscription <id> --query tenantId -o tsv`): "
        "the cluster's Entra tenant and the controllers' AZURE_TENANT_ID; `pulumi config set azure-native:tenantId <id>`"
    ),
}


SECTION_MODELS: tuple[type[Section], ...] = (
    StackConfig, ClusterConfig, SystemPool, NodePool, Network, MaintenanceWindow, AddonsConfig, CertManagerConfig,
    AsoConfig, KroConfig, CrossplaneConfig, ArgoCdConfig, TenantConfig, TenantRole, HybridConfig,
)


def secret_fields() -> dict[str, str]:
    """Top-level keys declared secret: alias -> field name."""
    return {
        info.alias or name: name
        for name, info in StackConfig.model_fields.items()
        if isinstance(info.json_schema_extra, dict) and info.json_schema_extra.get("x-secret")
    }


def decode(value: Any) -> Any:
    """Pulumi hands structured config to programs as JSON text; plain strings stay strings."""
    if isinstance(value, str) and value[:1] in ("{", "["):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value
