"""Tenant: one team's slice of the platform, in its own Azure subscription.

Where the tenant's identity lives: in the tenant's subscription, in a resource group of
its own there. A user-assigned identity belongs to its subscription's Entra tenant, so this
is the only place that also works when the tenant's subscription sits in another Entra
tenant; it keeps the identity inside the tenant's RBAC and billing boundary, and removing
the tenant removes it. Its federated credentials trust the platform cluster's OIDC issuer
(issuers are global URLs, not subscription-bound).

How the controllers act for the tenant: ASO and the Crossplane providers each exchange
their own service account token, so the tenant identity is federated to exactly those
service accounts (ASO's controller, the providers' shared account). ASO picks the
identity up from the per-namespace Secret `aso-credential`; Crossplane from a namespaced
`ProviderConfig` in each tenant namespace. Because any namespace could name any client ID
in those objects (the escalation discussed in Azure/azure-service-operator#4810), tenants
get an Argo CD AppProject that cannot create Secrets, ProviderConfigs, RBAC, the
platform's own WebApp kinds or any cluster-scoped kind, and the TenantGuard admission
policy stops their managed resources from using the platform's ClusterProviderConfig.

Removing a tenant (or destroying the stack) deletes in this order, each step awaited:
1. the AppProject `tenant-<name>`, which carries Argo CD's project finalizer: Argo CD lets
   it go only once no Application uses the project, so Pulumi waits (up to
   `teardown_timeout`) for the tenant's Applications, and with them, through their
   resources finalizer, their ASO and Crossplane resources, to be deleted while the
   credentials below still exist;
2. the Crossplane ProviderConfigs (Crossplane holds each with its `in-use` finalizer while
   a managed resource still uses it) and the `aso-credential` Secrets;
3. the namespaces (Kubernetes deletes what is left in them; the controllers still run);
4. the federated credentials and role assignments, then the identity, then its resource
   group, and the tenant's provider last.
What Pulumi cannot see, and docs/tenants.md leaves to people: the tenant's Applications
(they must be deleted for step 1 to finish) and objects created in the namespaces outside
Argo CD.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Optional, Sequence

import pulumi
import pulumi_azure_native as azure_native
import pulumi_kubernetes as k8s
from pulumi_azure_native import resources

from components.argocd import is_timeout
from components.gitops_bridge import IN_CLUSTER_SERVER
from components.identity import RoleGrant, ServiceAccountRef, WorkloadIdentity, WorkloadIdentityArgs
from components.roles import role_guid
from components.versions import ARGO_CD

TENANT_LABEL = "aks-platform.io/tenant"
ASO_CREDENTIAL_SECRET = "aso-credential"
# Namespaced ProviderConfig name: namespaced managed resources reference {kind: ProviderConfig, name: default}.
CROSSPLANE_NAMESPACED_PROVIDER_CONFIG = "default"
# Argo CD's AppProject finalizer: the project is deleted only once no Application references
# it (argo-cd operator-manual/declarative-setup.md, "Projects"; controller/appcontroller.go
# finalizeProjectDeletion).
PROJECT_FINALIZER = "resources-finalizer.argocd.argoproj.io"
# How long removing a tenant waits for its Applications to be gone (step 1 above).
TENANT_TEARDOWN_TIMEOUT = "30m"

# The platform's reference-app APIs (gitops/platform/): the kro WebApp (RGD schema, default
# group kro.run) and the Crossplane WebApp (XRD group crossplane.aks-platform.internal).
# Both are platform-namespace APIs, not tenant ones. The Composition pins every composed
# managed resource to the platform's ClusterProviderConfig, which TenantGuard denies in
# tenant namespaces, so a tenant's Crossplane WebApp would never become Ready. The kro one
# takes the platform's facts as inputs (subscription, resource group, issuer) and has kro's
# own controller create what its graph holds (ServiceAccount, Deployment, ASO resources),
# past the AppProject's limits. tests/test_tenant.py derives both from the manifests.
PLATFORM_APP_KINDS: tuple[tuple[str, str], ...] = (
    ("kro.run", "WebApp"),
    ("crossplane.aks-platform.internal", "WebApp"),
)

# What a tenant's Argo CD project may never create in its namespaces: credentials
# (Secrets, Crossplane ProviderConfigs), RBAC, and the platform's own app APIs (above).
# Cluster-scoped kinds are all denied by an empty cluster whitelist.
TENANT_DENIED_NAMESPACED_KINDS: tuple[tuple[str, str], ...] = (
    ("", "Secret"),
    ("azure.m.upbound.io", "ProviderConfig"),
    ("azure.m.upbound.io", "ProviderConfigUsage"),
    ("rbac.authorization.k8s.io", "Role"),
    ("rbac.authorization.k8s.io", "RoleBinding"),
    ("argoproj.io", "AppProject"),
    *PLATFORM_APP_KINDS,
)


@dataclass(frozen=True)
class TenantRoleGrant:
    role: str
    # "resourceGroup" (the tenant's own group), "subscription", or an ARM ID in the subscription.
    scope: str


@dataclass
class TenantArgs:
    tenant_name: str
    subscription_id: str
    # The Entra tenant of the subscription (the deployer's when the config gives none).
    tenant_id: pulumi.Input[str]
    location: str
    resource_group_name: str
    identity_name: str
    oidc_issuer_url: pulumi.Input[str]
    namespaces: Sequence[str]
    roles: Sequence[TenantRoleGrant]
    source_repos: Sequence[str]
    # The controllers that act for the tenant: their service accounts get federated credentials.
    aso_service_account: Optional[ServiceAccountRef] = None
    crossplane_service_account: Optional[ServiceAccountRef] = None
    # Create the Argo CD AppProject (Argo CD is on).
    argocd: bool = False
    # What the namespaced ProviderConfigs must wait for (their CRD comes with the providers).
    crossplane_ready: Sequence[pulumi.Resource] = ()
    argocd_ready: Sequence[pulumi.Resource] = ()
    # The controllers that act in the tenant's namespaces (ASO, Crossplane, kro): the
    # namespaces wait for them, so destroy deletes the tenant's objects while they still run.
    controllers: Sequence[pulumi.Resource] = ()
    # customTimeouts.delete of the AppProject: how long removal waits for the tenant's Applications.
    teardown_timeout: str = TENANT_TEARDOWN_TIMEOUT
    tags: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.namespaces:
            raise ValueError(f"tenant {self.tenant_name!r}: allowed: at least one namespace")
        if not is_timeout(self.teardown_timeout):
            raise ValueError(
                f"tenant {self.tenant_name!r}: teardown_timeout {self.teardown_timeout!r}: allowed: a duration such as '30m'"
            )
        for grant in self.roles:
            role_guid(grant.role)
            if grant.scope not in ("resourceGroup", "subscription") and not grant.scope.lower().startswith(
                f"/subscriptions/{self.subscription_id}/".lower()
            ):
                raise ValueError(
                    f"tenant {self.tenant_name!r}: scope {grant.scope!r}: allowed: 'resourceGroup', 'subscription' "
                    f"or an ARM ID under /subscriptions/{self.subscription_id}/"
                )

    @property
    def federated_service_accounts(self) -> list[ServiceAccountRef]:
        return [sa for sa in (self.aso_service_account, self.crossplane_service_account) if sa is not None]


class Tenant(pulumi.ComponentResource):
    azure_provider: azure_native.Provider
    client_id: pulumi.Output[str]
    principal_id: pulumi.Output[str]
    resource_group_id: pulumi.Output[str]
    namespaces: list[k8s.core.v1.Namespace]

    def __init__(self, name: str, args: TenantArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("aks-platform:tenant:Tenant", name, None, opts)

        # Every Azure resource of the tenant lives in its subscription: an explicit provider,
        # never the default one (which points at the platform's subscription).
        self.azure_provider = azure_native.Provider(
            f"{name}-azure",
            subscription_id=args.subscription_id,
            tenant_id=args.tenant_id,
            location=args.location,
            opts=pulumi.ResourceOptions(parent=self),
        )
        in_subscription = pulumi.ResourceOptions(parent=self, provider=self.azure_provider)
        group = resources.ResourceGroup(
            f"{name}-rg",
            resource_group_name=args.resource_group_name,
            location=args.location,
            tags=dict(args.tags),
            opts=in_subscription,
        )

        def scope_of(grant: TenantRoleGrant) -> pulumi.Input[str]:
            if grant.scope == "resourceGroup":
                return group.id
            if grant.scope == "subscription":
                return f"/subscriptions/{args.subscription_id}"
            return grant.scope

        identity = WorkloadIdentity(
            f"{name}-identity",
            WorkloadIdentityArgs(
                identity_name=args.identity_name,
                resource_group_name=group.name,
                location=args.location,
                oidc_issuer_url=args.oidc_issuer_url,
                service_accounts=args.federated_service_accounts,
                role_grants=[
                    RoleGrant(key=f"{_slug(g.role)}-{i}", role=g.role, scope=scope_of(g)) for i, g in enumerate(args.roles)
                ],
                tags=args.tags,
            ),
            opts=pulumi.ResourceOptions(parent=self, providers={"azure-native": self.azure_provider}),
        )
        self.identity = identity

        k8s_child = pulumi.ResourceOptions(parent=self)
        # The namespaces outlive nothing they need: the identity's federated credentials and
        # role assignments (what ASO and the providers act with in them) and the controllers.
        namespace_opts = pulumi.ResourceOptions(parent=self, depends_on=[identity, *args.controllers])
        self.namespaces = []
        self.aso_credentials: list[k8s.core.v1.Secret] = []
        self.provider_configs: list[k8s.apiextensions.CustomResource] = []
        for ns in args.namespaces:
            namespace = k8s.core.v1.Namespace(
                f"{name}-ns-{ns}",
                metadata=k8s.meta.v1.ObjectMetaArgs(name=ns, labels={TENANT_LABEL: args.tenant_name}),
                opts=namespace_opts,
            )
            self.namespaces.append(namespace)
            if args.aso_service_account is not None:
                # ASO's per-namespace credential, workload identity form: no secret in it,
                # only which identity (and subscription) ASO acts as in this namespace.
                self.aso_credentials.append(
                    k8s.core.v1.Secret(
                        f"{name}-aso-credential-{ns}",
                        metadata=k8s.meta.v1.ObjectMetaArgs(name=ASO_CREDENTIAL_SECRET, namespace=namespace.metadata.name),
                        string_data={
                            "AZURE_SUBSCRIPTION_ID": args.subscription_id,
                            "AZURE_TENANT_ID": args.tenant_id,
                            "AZURE_CLIENT_ID": identity.client_id,
                        },
                        type="Opaque",
                        opts=k8s_child,
                    )
                )
            if args.crossplane_service_account is not None:
                self.provider_configs.append(
                    k8s.apiextensions.CustomResource(
                        f"{name}-provider-config-{ns}",
                        api_version="azure.m.upbound.io/v1beta1",
                        kind="ProviderConfig",
                        metadata=k8s.meta.v1.ObjectMetaArgs(
                            name=CROSSPLANE_NAMESPACED_PROVIDER_CONFIG, namespace=namespace.metadata.name
                        ),
                        spec={
                            "credentials": {"source": "OIDCTokenFile"},
                            "clientID": identity.client_id,
                            "tenantID": args.tenant_id,
                            "subscriptionID": args.subscription_id,
                            "storageUseAzureAD": True,
                        },
                        opts=pulumi.ResourceOptions(parent=self, depends_on=list(args.crossplane_ready)),
                    )
                )

        self.project = None
        if args.argocd:
            self.project = k8s.apiextensions.CustomResource(
                f"{name}-project",
                api_version="argoproj.io/v1alpha1",
                kind="AppProject",
                metadata=k8s.meta.v1.ObjectMetaArgs(
                    name=f"tenant-{args.tenant_name}",
                    namespace=ARGO_CD.namespace,
                    labels={TENANT_LABEL: args.tenant_name},
                    finalizers=[PROJECT_FINALIZER],
                ),
                spec=tenant_project_spec(args.tenant_name, args.namespaces, args.source_repos),
                # Deleted first, and awaited: everything the tenant's Applications use outlives it.
                opts=pulumi.ResourceOptions(
                    parent=self,
                    depends_on=[
                        *args.argocd_ready,
                        *self.namespaces,
                        *self.aso_credentials,
                        *self.provider_configs,
                        identity,
                    ],
                    custom_timeouts=pulumi.CustomTimeouts(delete=args.teardown_timeout),
                ),
            )

        self.client_id = identity.client_id
        self.principal_id = identity.principal_id
        self.resource_group_id = group.id
        self.register_outputs({"client_id": self.client_id, "resource_group_id": self.resource_group_id})


def tenant_project_spec(tenant: str, namespaces: Sequence[str], source_repos: Sequence[str]) -> dict:
    return {
        "description": f"Tenant {tenant}: its namespaces and repositories only",
        "sourceRepos": list(source_repos),
        "destinations": [{"server": IN_CLUSTER_SERVER, "namespace": ns} for ns in namespaces],
        # Empty: no cluster-scoped kind at all (no CRDs, ClusterRoles, ClusterProviderConfigs, namespaces).
        "clusterResourceWhitelist": [],
        "namespaceResourceBlacklist": [{"group": g, "kind": k} for g, k in TENANT_DENIED_NAMESPACED_KINDS],
        # Tenants' Applications live in argocd; their sources may not point elsewhere.
        "sourceNamespaces": [],
    }


def _slug(role: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in role.lower()).strip("-")


# TenantGuard's CEL. oldObject is null on CREATE, so it is tested before it is read.
TENANT_GUARD_VARIABLES = {
    # The object (as admitted, after defaulting) references a cluster-wide provider config.
    "usesClusterConfig": (
        "has(object.spec) && has(object.spec.providerConfigRef) && "
        "object.spec.providerConfigRef.kind == 'ClusterProviderConfig'"
    ),
    # The stored object already referenced that same one (UPDATE only).
    "alreadyUsedIt": (
        "oldObject != null && has(oldObject.spec) && has(oldObject.spec.providerConfigRef) && "
        "has(object.spec) && has(object.spec.providerConfigRef) && "
        "oldObject.spec.providerConfigRef == object.spec.providerConfigRef"
    ),
}
TENANT_GUARD_VALIDATION = "!variables.usesClusterConfig || variables.alreadyUsedIt"


class TenantGuard(pulumi.ComponentResource):
    """One admission policy for all tenants: their managed resources use their own credentials.

    Crossplane's namespaced managed resources default `providerConfigRef` to the platform's
    ClusterProviderConfig, which acts as the platform's Crossplane identity. In a tenant
    namespace (label aks-platform.io/tenant) that would let a tenant borrow the platform's
    Azure access, so a ValidatingAdmissionPolicy (admissionregistration.k8s.io/v1,
    Kubernetes 1.30+) denies it: tenants reference `{kind: ProviderConfig, name: default}`.

    What it denies, exactly: a CREATE whose object references a ClusterProviderConfig, and
    an UPDATE that introduces one the old object did not already reference. An UPDATE of an
    object that already had that reference passes, so an object created before the
    namespace got its label (or before the policy existed) can still be reconciled and,
    above all, deleted: Crossplane removes its finalizer with an UPDATE, and denying that
    with `failurePolicy: Fail` would leave it stuck in deletion forever. Such an object
    keeps the access it was created with until it is deleted, which the policy cannot take
    away without blocking that deletion; it can never gain it. DELETE is not matched.
    """

    def __init__(self, name: str, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("aks-platform:tenant:TenantGuard", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        policy_name = "aks-platform-tenant-provider-config"
        self.policy = k8s.admissionregistration.v1.ValidatingAdmissionPolicy(
            f"{name}-policy",
            metadata=k8s.meta.v1.ObjectMetaArgs(name=policy_name),
            spec=k8s.admissionregistration.v1.ValidatingAdmissionPolicySpecArgs(
                failure_policy="Fail",
                match_constraints=k8s.admissionregistration.v1.MatchResourcesArgs(
                    resource_rules=[
                        k8s.admissionregistration.v1.NamedRuleWithOperationsArgs(
                            api_groups=["*"], api_versions=["*"], resources=["*"], operations=["CREATE", "UPDATE"]
                        )
                    ]
                ),
                match_conditions=[
                    k8s.admissionregistration.v1.MatchConditionArgs(
                        name="crossplane-azure-managed-resource",
                        # The family's own group serves managed kinds too (ResourceGroup,
                        # ResourceProviderRegistration, Subscription), not only its services'.
                        expression=(
                            "request.resource.group == 'azure.m.upbound.io' || "
                            "request.resource.group.endsWith('.azure.m.upbound.io')"
                        ),
                    )
                ],
                variables=[
                    k8s.admissionregistration.v1.VariableArgs(name=name, expression=expression)
                    for name, expression in TENANT_GUARD_VARIABLES.items()
                ],
                validations=[
                    k8s.admissionregistration.v1.ValidationArgs(
                        expression=TENANT_GUARD_VALIDATION,
                        message="tenant managed resources must use the namespace's ProviderConfig "
                        "(providerConfigRef: {kind: ProviderConfig, name: default}), not a ClusterProviderConfig",
                    )
                ],
            ),
            opts=child,
        )
        self.binding = k8s.admissionregistration.v1.ValidatingAdmissionPolicyBinding(
            f"{name}-binding",
            metadata=k8s.meta.v1.ObjectMetaArgs(name=policy_name),
            spec=k8s.admissionregistration.v1.ValidatingAdmissionPolicyBindingSpecArgs(
                policy_name=self.policy.metadata.name,
                validation_actions=["Deny"],
                match_resources=k8s.admissionregistration.v1.MatchResourcesArgs(
                    namespace_selector=k8s.meta.v1.LabelSelectorArgs(
                        match_expressions=[k8s.meta.v1.LabelSelectorRequirementArgs(key=TENANT_LABEL, operator="Exists")]
                    )
                ),
            ),
            opts=child,
        )
        self.register_outputs({"policy": self.policy.metadata.name})
