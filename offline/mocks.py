"""Pulumi mocks that answer as Azure and Kubernetes would, for offline evaluation.

In update mode a resource comes back with the computed properties Azure fills in (IDs,
the OIDC issuer URL, identity client and principal IDs); in preview mode it comes back
with its inputs only, so every computed property is unknown, as in a real first preview.
Every value is derived from names (uuid5), so two runs give the same bytes.

What Azure refuses, the mocks refuse too (the evaluation raises): a role assignment whose
`principalType` does not match the directory's object (UnmatchedPrincipalType), an AKS
version older than the one running (AKS never downgrades), a cluster with
`outboundType: userDefinedRouting` outside a subnet of the caller's own virtual network.

An :class:`AzureCloud` keeps what Azure holds between two `pulumi up`s: pass the same one to
two evaluations, let AKS upgrade itself in between (:meth:`AzureCloud.auto_upgrade`), and
the second evaluation meets the cluster as Azure would report it. It also keeps the role
assignments and a clock, so :meth:`AzureCloud.authorize` answers whether an admin group's
member is cluster admin yet (Azure RBAC grants take effect minutes after they are created).
Not modelled: long-running operations, concurrent-operation conflicts (409s; tests check the
graph's ordering instead), versions leaving support.
"""

from __future__ import annotations

import base64
import uuid
from dataclasses import dataclass
from typing import Any, Optional

import pulumi
import yaml

MOCK_NAMESPACE = uuid.UUID("6f1c1c1e-8d3e-4a8e-9a41-5b0c1f0e7a11")


def mock_guid(*parts: str) -> str:
    return str(uuid.uuid5(MOCK_NAMESPACE, "/".join(parts)))


# The platform's subscription and Entra tenant (mock values, derived, not real): the shipped
# stacks pin these as their example azure-native:subscriptionId / tenantId, and CI's
# ARM_SUBSCRIPTION_ID / ARM_TENANT_ID name them too.
TENANT_ID = mock_guid("tenant")
SUBSCRIPTION_ID = mock_guid("subscription")
DEPLOYER_OBJECT_ID = mock_guid("deployer-object")
DEPLOYER_CLIENT_ID = mock_guid("deployer-client")
# A person running `pulumi up` after `az login`: the client is the Azure CLI's public app, and
# their `az` default subscription and home tenant are not the platform's.
PERSON_OBJECT_ID = mock_guid("person-object")
PERSON_SUBSCRIPTION_ID = mock_guid("person-subscription")
PERSON_TENANT_ID = mock_guid("person-tenant")
AZURE_CLI_CLIENT_ID = "04b07795-8ddb-461a-bbee-02f9e1bf7b46"


# The azure-native keys every stack pins (stacks/config.py PROVIDER_KEYS), with the platform's.
PINNED_TARGET = {"azure-native:subscriptionId": SUBSCRIPTION_ID, "azure-native:tenantId": TENANT_ID}


@dataclass(frozen=True)
class Caller:
    """Who runs `pulumi up`, as azure-native sees them when the stack pins nothing."""

    client_id: str
    object_id: str
    directory_type: str
    default_subscription: str
    default_tenant: str


CALLERS = {
    "ci": Caller(DEPLOYER_CLIENT_ID, DEPLOYER_OBJECT_ID, "ServicePrincipal", SUBSCRIPTION_ID, TENANT_ID),
    "person": Caller(AZURE_CLI_CLIENT_ID, PERSON_OBJECT_ID, "User", PERSON_SUBSCRIPTION_ID, PERSON_TENANT_ID),
}

# The AKS versions on offer when an AzureCloud starts (minor -> patches, oldest first), and
# the default minor at creation. Time passing (AzureCloud.auto_upgrade) releases newer ones.
AKS_VERSIONS = {"1.32": ("1.32.7", "1.32.9"), "1.33": ("1.33.3", "1.33.5"), "1.34": ("1.34.1", "1.34.2"), "1.35": ("1.35.0",)}
AKS_DEFAULT_MINOR = "1.33"


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in version.split("."))


def _minor(version: str) -> str:
    return ".".join(version.split(".")[:2])


# "New role assignments can take up to five minutes to propagate and be updated by the
# authorization server" (AKS docs, "Use Azure RBAC for Kubernetes Authorization").
RBAC_PROPAGATION_SECONDS = 300
AKS_RBAC_CLUSTER_ADMIN = "b1ff04bb-8a4e-4dc4-8eb5-8693973ce19b"  # Azure Kubernetes Service RBAC Cluster Admin


class AzureCloud:
    """What Azure holds between evaluations: each AKS cluster's and agent pool's running
    version, its Entra settings, the role assignments, and time (seconds since the start)."""

    def __init__(self) -> None:
        # cluster resource ID -> {"version", "channel", "pools": {pool name: version}, "azure_rbac", "admin_groups"}
        self.clusters: dict[str, dict[str, Any]] = {}
        self.versions: dict[str, list[str]] = {minor: list(patches) for minor, patches in AKS_VERSIONS.items()}
        # (scope, principal ID, role definition GUID, created at)
        self.role_assignments: list[tuple[str, str, str, float]] = []
        self.now = 0.0

    def advance(self, seconds: float) -> None:
        self.now += seconds

    def authorize(self, cluster_id: str, member_of: set[str]) -> bool:
        """Whether a member of the Entra groups `member_of` is cluster admin right now.

        Kubernetes RBAC only: AKS binds adminGroupObjectIDs to cluster-admin. With Azure RBAC
        for Kubernetes authorization, only an "Azure Kubernetes Service RBAC Cluster Admin"
        assignment on the cluster (or a scope above it) to one of the groups counts, once it
        has propagated; adminGroupObjectIDs are not documented to count there, so they do not.
        Not modelled: the other AKS roles, namespace scopes, deny assignments.
        """
        cluster = self.clusters[cluster_id]
        if not cluster.get("azure_rbac"):
            return bool(member_of & set(cluster.get("admin_groups") or ()))
        return any(
            role == AKS_RBAC_CLUSTER_ADMIN
            and principal in member_of
            and (cluster_id.lower() + "/").startswith(scope.lower().rstrip("/") + "/")
            and self.now - at >= RBAC_PROPAGATION_SECONDS
            for scope, principal, role, at in self.role_assignments
        )

    def latest_patch(self, minor: str) -> str:
        return self.versions[minor][-1]

    def resolve_version(self, requested: Optional[str], running: Optional[str], what: str) -> str:
        """The version AKS runs after a PUT that asks for `requested` (None: the field is absent).

        As the ManagedCluster/AgentPool API documents it: 'MAJOR.MINOR' picks the latest patch
        of that minor, and re-sending the running minor (1.34.x -> 1.34) changes nothing. An
        absent version keeps the running one (AKS's default minor on create). Anything older
        than what runs is refused: AKS does not downgrade.
        """
        if requested is None:
            return running or self.latest_patch(AKS_DEFAULT_MINOR)
        is_minor = requested.count(".") == 1
        target = self.latest_patch(requested) if is_minor and requested in self.versions else requested
        if running is None:
            return target
        if is_minor and requested == _minor(running):
            return running
        if _version_key(target) < _version_key(running):
            raise Exception(f"OperationNotAllowed: {what}: downgrading Kubernetes version {running} to {requested} is not allowed")
        return target

    def auto_upgrade(self) -> None:
        """Let each cluster's upgrade channel act, as AKS does in its maintenance window.

        patch: the latest patch of the running minor; stable and rapid: the next minor
        (its latest patch); none and node-image leave the Kubernetes version alone. The
        node pools follow the control plane.
        """
        for cluster in self.clusters.values():
            running, channel = cluster["version"], cluster["channel"]
            target = running
            if channel == "patch":
                # A newer patch of the running minor is released, and the channel takes it.
                major, minor, patch = running.split(".")
                target = f"{major}.{minor}.{int(patch) + 1}"
                self.versions[_minor(running)].append(target)
            elif channel in ("stable", "rapid"):
                minors = sorted(self.versions, key=_version_key)
                target = self.latest_patch(minors[minors.index(_minor(running)) + 1])
            cluster["version"] = target
            cluster["pools"] = {name: target for name in cluster["pools"]}

    def release_minor(self) -> str:
        """Kubernetes ships a new minor and AKS offers it (its first patch); the new minor."""
        newest = sorted(self.versions, key=_version_key)[-1]
        major, minor = newest.split(".")
        released = f"{major}.{int(minor) + 1}"
        self.versions[released] = [f"{released}.0"]
        return released

    def platform_upgrade(self) -> None:
        """AKS-initiated upgrades, whatever the channel: a cluster on n-3 that is about to fall
        to n-4 (n: the newest minor) is moved to n-2, its pools with it ("AKS also initiates
        auto-upgrades for unsupported clusters", AKS docs, "Automatically upgrade an AKS
        cluster"). Modelled as: any cluster older than n-2 goes to n-2's latest patch."""
        minors = sorted(self.versions, key=_version_key)
        target_minor = minors[-3]
        for cluster in self.clusters.values():
            if _version_key(_minor(cluster["version"])) < _version_key(target_minor):
                cluster["version"] = self.latest_patch(target_minor)
                cluster["pools"] = {name: cluster["version"] for name in cluster["pools"]}

    def read(self, cluster_id: str) -> dict[str, Any]:
        """The cluster as a GET (or `pulumi refresh`) reports it."""
        cluster = self.clusters[cluster_id]
        return {
            "kubernetesVersion": cluster["version"],
            "currentKubernetesVersion": cluster["version"],
            "agentPools": {name: {"orchestratorVersion": v, "currentOrchestratorVersion": v} for name, v in cluster["pools"].items()},
        }


def issuer_url(location: str, cluster: str) -> str:
    """The shape of a real AKS OIDC issuer URL."""
    return f"https://{location}.oic.prod-aks.azure.com/{TENANT_ID}/{mock_guid('issuer', cluster)}/"


def _rg_id(sub: str, rg: str) -> str:
    return f"/subscriptions/{sub}/resourceGroups/{rg}"


def _kubeconfig(cluster: str, location: str, context: str, user_name: str, user: dict[str, Any]) -> str:
    server = f"https://{cluster}-{mock_guid('dns', cluster)[:8]}.hcp.{location}.azmk8s.io:443"
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": cluster, "cluster": {"certificate-authority-data": base64.b64encode(b"mock-ca").decode(), "server": server}}],
        "contexts": [{"name": context, "context": {"cluster": cluster, "user": user_name}}],
        "current-context": context,
        "users": [{"name": user_name, "user": user}],
    }
    return yaml.safe_dump(doc, sort_keys=False)


def exec_kubeconfig(cluster: str, location: str) -> str:
    """What listManagedClusterUserCredentials(format=exec) returns for an Entra cluster."""
    return _kubeconfig(
        cluster,
        location,
        cluster,
        f"clusterUser_{cluster}",
        {
            "exec": {
                "apiVersion": "client.authentication.k8s.io/v1beta1",
                "command": "kubelogin",
                "args": [
                    "get-token", "--login", "devicecode", "--server-id", "6dae42f8-4368-4678-94ff-3960e28e3630",
                    "--client-id", "80faf920-1908-4b52-b5ef-a8e7bedfc67a", "--tenant-id", TENANT_ID,
                    "--environment", "AzurePublicCloud",
                ],
                "interactiveMode": "IfAvailable",
                "provideClusterInfo": False,
            }
        },
    )


def admin_kubeconfig(cluster: str, location: str, context: str | None = None) -> str:
    """What listManagedClusterAdminCredentials returns: a local client certificate.

    `context` names the context (AKS names it `<cluster>-admin`; kind names it `kind-<name>`).
    """
    return _kubeconfig(
        cluster,
        location,
        context or f"{cluster}-admin",
        f"clusterAdmin_{cluster}",
        {
            "client-certificate-data": base64.b64encode(b"mock-cert").decode(),
            "client-key-data": base64.b64encode(b"mock-key").decode(),
            "token": mock_guid("admin-token", cluster),
        },
    )


UNKNOWN = "04da6b54-80e4-46f7-96ec-b56ff0331ba9"  # the engine's marker for a value not known in preview


def _computed_unknowns(typ: str, inputs: dict[str, Any]) -> dict[str, Any]:
    """Outputs Azure computes, as unknown: what a real preview shows for a new resource."""
    if typ == "azure-native:containerservice:ManagedCluster":
        return {"name": UNKNOWN, "fqdn": UNKNOWN, "oidcIssuerProfile": {**(inputs.get("oidcIssuerProfile") or {}), "issuerURL": UNKNOWN}}
    if typ == "azure-native:managedidentity:UserAssignedIdentity":
        return {"name": UNKNOWN, "clientId": UNKNOWN, "principalId": UNKNOWN, "tenantId": UNKNOWN}
    if typ == "azure-native:storage:StorageAccount":
        return {"name": UNKNOWN, "primaryEndpoints": UNKNOWN}
    if typ == "azure-native:storage:Blob":
        return {"name": UNKNOWN, "url": UNKNOWN}
    if typ.startswith("azure-native:"):
        return {"name": UNKNOWN}
    return {}


class AzureMocks(pulumi.runtime.Mocks):
    def __init__(self, preview: bool = False, caller: str = "ci", cloud: Optional[AzureCloud] = None):
        """`caller`: who runs `pulumi up`: "ci" (a service principal) or "person" (`az login`).
        `cloud`: Azure's state carried over from an earlier evaluation (a second `up`)."""
        self.preview = preview
        self.caller = caller
        self.cloud = cloud if cloud is not None else AzureCloud()
        # Explicit azure-native providers (one per tenant subscription): provider ID -> (subscription, Entra tenant).
        self._providers: dict[str, tuple[str, str]] = {}
        # The directory: object ID -> type, for every principal the mocks know.
        who = CALLERS[caller]
        self.directory: dict[str, str] = {who.object_id: who.directory_type}

    def _default_target(self) -> tuple[str, str]:
        """The default provider's subscription and tenant, as azure-native picks them: the
        stack's azure-native:subscriptionId / tenantId, else the caller's own defaults."""
        from pulumi.runtime.config import get_config

        who = CALLERS[self.caller]
        return (get_config("azure-native:subscriptionId") or who.default_subscription, get_config("azure-native:tenantId") or who.default_tenant)

    def _provider(self, provider_ref: str) -> tuple[str, str]:
        provider_id = provider_ref.rsplit("::", 1)[-1] if provider_ref else ""
        return self._providers.get(provider_id) or self._default_target()

    def _subscription(self, provider_ref: str) -> str:
        return self._provider(provider_ref)[0]

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict]:
        inputs = dict(args.inputs)
        if args.typ == "pulumi:providers:azure-native":
            provider_id = f"{args.name}-provider-id"
            # A subscription in another Entra tenant is reached by naming that tenant. An explicit
            # provider reads no stack config: what it does not name is the caller's default.
            who = CALLERS[self.caller]
            self._providers[provider_id] = (inputs.get("subscriptionId") or who.default_subscription, inputs.get("tenantId") or who.default_tenant)
            return provider_id, inputs
        if self.preview:
            # A resource being created has no ID and its computed outputs are unknown.
            return "", {**inputs, **_computed_unknowns(args.typ, inputs)}
        typ = args.typ
        sub = self._subscription(args.provider)
        outputs = dict(inputs)
        rid = f"{args.name}-id"
        if typ == "azure-native:resources:ResourceGroup":
            name = inputs.get("resourceGroupName", args.name)
            rid = _rg_id(sub, name)
            outputs["name"] = name
        elif typ == "azure-native:containerservice:ManagedCluster":
            name = inputs["resourceName"]
            rid = f"{_rg_id(sub, inputs['resourceGroupName'])}/providers/Microsoft.ContainerService/managedClusters/{name}"
            outputs.update(self._put_cluster(rid, inputs))
            outputs.update(
                name=name,
                fqdn=f"{name}-{mock_guid('dns', name)[:8]}.hcp.{inputs['location']}.azmk8s.io",
                nodeResourceGroup=f"MC_{inputs['resourceGroupName']}_{name}_{inputs['location']}",
                oidcIssuerProfile={"enabled": True, "issuerURL": issuer_url(inputs["location"], name)},
                identity={"type": "SystemAssigned", "principalId": mock_guid("aks-principal", name), "tenantId": self._provider(args.provider)[1]},
            )
            self.directory[mock_guid("aks-principal", name)] = "ServicePrincipal"
        elif typ == "azure-native:managedidentity:UserAssignedIdentity":
            name = inputs["resourceName"]
            rid = f"{_rg_id(sub, inputs['resourceGroupName'])}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/{name}"
            principal = mock_guid("principal", sub, name)
            self.directory[principal] = "ServicePrincipal"
            outputs.update(
                name=name,
                clientId=mock_guid("client", sub, name),
                principalId=principal,
                # The Entra tenant the subscription trusts, not the deployer's.
                tenantId=self._provider(args.provider)[1],
            )
        elif typ == "azure-native:managedidentity:FederatedIdentityCredential":
            name = inputs["federatedIdentityCredentialResourceName"]
            rid = (
                f"{_rg_id(sub, inputs['resourceGroupName'])}/providers/Microsoft.ManagedIdentity/"
                f"userAssignedIdentities/{inputs['resourceName']}/federatedIdentityCredentials/{name}"
            )
            outputs["name"] = name
        elif typ == "azure-native:authorization:RoleAssignment":
            known = self.directory.get(inputs["principalId"])
            given = inputs.get("principalType")
            if known is not None and given is not None and given != known:
                raise Exception(
                    f"UnmatchedPrincipalType: the principal {inputs['principalId']} is a {known}, "
                    f"the role assignment says {given}"
                )
            name = inputs["roleAssignmentName"]
            rid = f"{inputs['scope']}/providers/Microsoft.Authorization/roleAssignments/{name}"
            outputs["name"] = name
            if not any(a[:3] == (inputs["scope"], inputs["principalId"], inputs["roleDefinitionId"].rsplit("/", 1)[-1]) for a in self.cloud.role_assignments):
                self.cloud.role_assignments.append((inputs["scope"], inputs["principalId"], inputs["roleDefinitionId"].rsplit("/", 1)[-1], self.cloud.now))
        elif typ == "azure-native:storage:StorageAccount":
            name = inputs["accountName"]
            rid = f"{_rg_id(sub, inputs['resourceGroupName'])}/providers/Microsoft.Storage/storageAccounts/{name}"
            outputs.update(
                name=name,
                primaryEndpoints={"blob": f"https://{name}.blob.core.windows.net/"},
            )
        elif typ == "azure-native:storage:BlobContainer":
            name = inputs["containerName"]
            rid = (
                f"{_rg_id(sub, inputs['resourceGroupName'])}/providers/Microsoft.Storage/storageAccounts/"
                f"{inputs['accountName']}/blobServices/default/containers/{name}"
            )
            outputs["name"] = name
        elif typ == "azure-native:storage:Blob":
            # The provider's own resource (data plane): its ID is the blob's URL.
            name = inputs["blobName"]
            rid = f"https://{inputs['accountName']}.blob.core.windows.net/{inputs['containerName']}/{name}"
            outputs.update(name=name, url=rid)
        elif typ == "azure-native:containerservice:AgentPool":
            outputs["name"] = inputs["agentPoolName"]
            outputs.update(self._put_pool(sub, inputs))
        elif typ == "azure-native:containerservice:MaintenanceConfiguration":
            outputs["name"] = inputs["configName"]
        elif typ.startswith("kubernetes:helm.sh/v3:Release"):
            outputs["status"] = {
                "name": inputs.get("name", args.name),
                "namespace": inputs.get("namespace", "default"),
                "chart": inputs.get("chart"),
                "version": inputs.get("version"),
                "status": "deployed",
                "revision": 1,
            }
        elif typ.startswith("kubernetes:"):
            meta = dict(inputs.get("metadata") or {})
            meta.setdefault("name", args.name)
            outputs["metadata"] = meta
            rid = f"{meta.get('namespace', '')}/{meta['name']}".lstrip("/")
        return rid, outputs

    def _put_cluster(self, rid: str, inputs: dict[str, Any]) -> dict[str, Any]:
        """A PUT of a managed cluster: what AKS refuses, and the versions it then runs."""
        profiles = inputs.get("agentPoolProfiles") or []
        network = inputs.get("networkProfile") or {}
        if network.get("outboundType") == "userDefinedRouting" and not all(p.get("vnetSubnetID") for p in profiles):
            raise Exception(
                "InvalidUserDefinedRoutingWithLoadBalancerProfile: outboundType userDefinedRouting needs every "
                "agent pool in a subnet of your own virtual network (vnetSubnetID) whose route table sends egress to a firewall"
            )
        existing = self.cloud.clusters.get(rid)
        version = self.cloud.resolve_version(inputs.get("kubernetesVersion"), existing["version"] if existing else None, "kubernetesVersion")
        pools = dict(existing["pools"]) if existing else {}
        for profile in profiles:
            # A pool's version may not exceed the control plane's.
            pool_version = self.cloud.resolve_version(profile.get("orchestratorVersion"), pools.get(profile["name"]) or version, f"agentPoolProfiles[{profile['name']}].orchestratorVersion")
            pools[profile["name"]] = pool_version
        channel = (inputs.get("autoUpgradeProfile") or {}).get("upgradeChannel") or "none"
        aad = inputs.get("aadProfile") or {}
        self.cloud.clusters[rid] = {
            "version": version, "channel": channel, "pools": pools,
            "azure_rbac": bool(aad.get("enableAzureRBAC")), "admin_groups": list(aad.get("adminGroupObjectIDs") or ()),
        }
        return {
            "kubernetesVersion": inputs.get("kubernetesVersion") or version,
            "currentKubernetesVersion": version,
            "agentPoolProfiles": [
                {**p, "orchestratorVersion": p.get("orchestratorVersion") or pools[p["name"]], "currentOrchestratorVersion": pools[p["name"]]}
                for p in profiles
            ],
        }

    def _put_pool(self, sub: str, inputs: dict[str, Any]) -> dict[str, Any]:
        rid = f"{_rg_id(sub, inputs['resourceGroupName'])}/providers/Microsoft.ContainerService/managedClusters/{inputs['resourceName']}"
        cluster = self.cloud.clusters.get(rid)
        if cluster is None:
            return {}
        name = inputs["agentPoolName"]
        version = self.cloud.resolve_version(inputs.get("orchestratorVersion"), cluster["pools"].get(name) or cluster["version"], f"agentPool {name} orchestratorVersion")
        cluster["pools"][name] = version
        return {"orchestratorVersion": inputs.get("orchestratorVersion") or version, "currentOrchestratorVersion": version}

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict, list] | dict:
        token = args.token
        if token == "azure-native:authorization:getClientConfig":
            who = CALLERS[self.caller]
            subscription, tenant = self._provider(args.provider)
            return {"clientId": who.client_id, "objectId": who.object_id, "subscriptionId": subscription, "tenantId": tenant}
        if token in (
            "azure-native:containerservice:listManagedClusterUserCredentials",
            "azure-native:containerservice:listManagedClusterAdminCredentials",
        ):
            cluster = args.args["resourceName"]
            location = "westeurope"
            render = exec_kubeconfig if token.endswith("UserCredentials") else admin_kubeconfig
            name = "clusterUser" if token.endswith("UserCredentials") else "clusterAdmin"
            value = base64.b64encode(render(cluster, location).encode()).decode()
            return {"kubeconfigs": [{"name": name, "value": value}]}
        if token == "azure-native:resources:getResourceGroup":
            name = args.args["resourceGroupName"]
            return {"id": _rg_id(self._provider(args.provider)[0], name), "name": name, "location": "westeurope"}
        raise NotImplementedError(f"offline mocks have no answer for invoke {token}")
