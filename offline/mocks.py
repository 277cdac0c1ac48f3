"""Pulumi mocks that answer as Azure and Kubernetes would, for offline evaluation.

In update mode a resource comes back with the computed properties Azure fills in (IDs,
the OIDC issuer URL, identity client and principal IDs); in preview mode it comes back
with its inputs only, so every computed property is unknown, as in a real first preview.
Every value is derived from names (uuid5), so two runs give the same bytes.
"""

from __future__ import annotations

import base64
import uuid
from typing import Any

import pulumi
import yaml

MOCK_NAMESPACE = uuid.UUID("6f1c1c1e-8d3e-4a8e-9a41-5b0c1f0e7a11")


def mock_guid(*parts: str) -> str:
    return str(uuid.uuid5(MOCK_NAMESPACE, "/".join(parts)))


# The deployer's context, as getClientConfig reports it (mock values, derived, not real).
TENANT_ID = mock_guid("tenant")
SUBSCRIPTION_ID = mock_guid("subscription")
DEPLOYER_OBJECT_ID = mock_guid("deployer-object")
DEPLOYER_CLIENT_ID = mock_guid("deployer-client")


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
    def __init__(self, preview: bool = False):
        self.preview = preview
        # Explicit azure-native providers (one per tenant subscription): provider ID -> subscription.
        self._provider_subscriptions: dict[str, str] = {}

    def _subscription(self, provider_ref: str) -> str:
        provider_id = provider_ref.rsplit("::", 1)[-1] if provider_ref else ""
        return self._provider_subscriptions.get(provider_id, SUBSCRIPTION_ID)

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict]:
        inputs = dict(args.inputs)
        if args.typ == "pulumi:providers:azure-native":
            provider_id = f"{args.name}-provider-id"
            self._provider_subscriptions[provider_id] = inputs.get("subscriptionId") or SUBSCRIPTION_ID
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
            outputs.update(
                name=name,
                fqdn=f"{name}-{mock_guid('dns', name)[:8]}.hcp.{inputs['location']}.azmk8s.io",
                nodeResourceGroup=f"MC_{inputs['resourceGroupName']}_{name}_{inputs['location']}",
                oidcIssuerProfile={"enabled": True, "issuerURL": issuer_url(inputs["location"], name)},
                identity={"type": "SystemAssigned", "principalId": mock_guid("aks-principal", name), "tenantId": TENANT_ID},
            )
        elif typ == "azure-native:managedidentity:UserAssignedIdentity":
            name = inputs["resourceName"]
            rid = f"{_rg_id(sub, inputs['resourceGroupName'])}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/{name}"
            outputs.update(
                name=name,
                clientId=mock_guid("client", sub, name),
                principalId=mock_guid("principal", sub, name),
                tenantId=TENANT_ID,
            )
        elif typ == "azure-native:managedidentity:FederatedIdentityCredential":
            name = inputs["federatedIdentityCredentialResourceName"]
            rid = (
                f"{_rg_id(sub, inputs['resourceGroupName'])}/providers/Microsoft.ManagedIdentity/"
                f"userAssignedIdentities/{inputs['resourceName']}/federatedIdentityCredentials/{name}"
            )
            outputs["name"] = name
        elif typ == "azure-native:authorization:RoleAssignment":
            name = inputs["roleAssignmentName"]
            rid = f"{inputs['scope']}/providers/Microsoft.Authorization/roleAssignments/{name}"
            outputs["name"] = name
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

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict, list] | dict:
        token = args.token
        if token == "azure-native:authorization:getClientConfig":
            return {
                "clientId": DEPLOYER_CLIENT_ID,
                "objectId": DEPLOYER_OBJECT_ID,
                "subscriptionId": SUBSCRIPTION_ID,
                "tenantId": TENANT_ID,
            }
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
            return {"id": _rg_id(SUBSCRIPTION_ID, name), "name": name, "location": "westeurope"}
        raise NotImplementedError(f"offline mocks have no answer for invoke {token}")
