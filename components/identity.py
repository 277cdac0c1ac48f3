"""WorkloadIdentity: a user-assigned identity federated to Kubernetes service accounts."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Optional, Sequence

import pulumi
from pulumi_azure_native import managedidentity

from components.roles import RoleGrant, assign_role, role_guid

AUDIENCE = "api://AzureADTokenExchange"
# Azure rejects a 21st federated identity credential on one user-assigned identity.
MAX_FEDERATED_CREDENTIALS = 20


@dataclass(frozen=True)
class ServiceAccountRef:
    namespace: str
    name: str

    @property
    def subject(self) -> str:
        return f"system:serviceaccount:{self.namespace}:{self.name}"


@dataclass
class WorkloadIdentityArgs:
    identity_name: str
    resource_group_name: pulumi.Input[str]
    location: pulumi.Input[str]
    oidc_issuer_url: pulumi.Input[str]
    service_accounts: Sequence[ServiceAccountRef] = ()
    role_grants: Sequence[RoleGrant] = ()
    tags: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # Checked here, before the component registers anything.
        if len(self.service_accounts) > MAX_FEDERATED_CREDENTIALS:
            raise ValueError(
                f"identity {self.identity_name!r}: {len(self.service_accounts)} federated credentials requested; "
                f"allowed: at most {MAX_FEDERATED_CREDENTIALS} per user-assigned identity (Azure's limit)"
            )
        subjects = [sa.subject for sa in self.service_accounts]
        if len(set(subjects)) != len(subjects):
            raise ValueError(f"identity {self.identity_name!r}: duplicate service accounts in {subjects}")
        keys = [g.key for g in self.role_grants]
        if len(set(keys)) != len(keys):
            raise ValueError(f"identity {self.identity_name!r}: duplicate role grant keys in {keys}")
        for grant in self.role_grants:
            role_guid(grant.role)


class WorkloadIdentity(pulumi.ComponentResource):
    client_id: pulumi.Output[str]
    principal_id: pulumi.Output[str]
    tenant_id: pulumi.Output[str]
    resource_id: pulumi.Output[str]
    identity_name: pulumi.Output[str]

    def __init__(self, name: str, args: WorkloadIdentityArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("aks-platform:identity:WorkloadIdentity", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)

        identity = managedidentity.UserAssignedIdentity(
            f"{name}-identity",
            resource_name_=args.identity_name,
            resource_group_name=args.resource_group_name,
            location=args.location,
            tags=dict(args.tags),
            opts=child,
        )

        # Azure rejects concurrent writes of federated credentials on one identity
        # ("Too many Federated Identity Credentials are written concurrently"), so each
        # credential waits for the one before it.
        self.federated_credentials: list[managedidentity.FederatedIdentityCredential] = []
        previous: Optional[pulumi.Resource] = None
        for sa in args.service_accounts:
            credential = managedidentity.FederatedIdentityCredential(
                f"{name}-fic-{sa.namespace}-{sa.name}",
                federated_identity_credential_resource_name=f"{sa.namespace}-{sa.name}"[:120],
                resource_group_name=args.resource_group_name,
                resource_name_=identity.name,
                issuer=args.oidc_issuer_url,
                subject=sa.subject,
                audiences=[AUDIENCE],
                opts=pulumi.ResourceOptions(parent=self, depends_on=[previous] if previous else None),
            )
            self.federated_credentials.append(credential)
            previous = credential

        self.role_assignments = _assign_all(name, identity.principal_id, args.role_grants, args.identity_name, child)

        self.client_id = identity.client_id
        self.principal_id = identity.principal_id
        self.tenant_id = identity.tenant_id
        self.resource_id = identity.id
        self.identity_name = identity.name
        self.register_outputs(
            {
                "client_id": self.client_id,
                "principal_id": self.principal_id,
                "resource_id": self.resource_id,
            }
        )


def _assign_all(
    name: str, principal_id: pulumi.Input[str], grants: Sequence[RoleGrant], who: str, opts: pulumi.ResourceOptions
) -> list:
    return [
        assign_role(
            f"{name}-ra-{grant.key}",
            principal_id=principal_id,
            role=grant.role,
            scope=grant.scope,
            description=f"{who}: {grant.role}",
            condition=grant.condition,
            opts=opts,
        )
        for grant in grants
    ]


@dataclass
class PrincipalRolesArgs:
    """An existing service principal (its object ID) and what it may do where."""

    principal_id: str
    role_grants: Sequence[RoleGrant]

    def __post_init__(self) -> None:
        keys = [g.key for g in self.role_grants]
        if len(set(keys)) != len(keys):
            raise ValueError(f"principal {self.principal_id}: duplicate role grant keys in {keys}")
        for grant in self.role_grants:
            role_guid(grant.role)


class PrincipalRoles(pulumi.ComponentResource):
    """Role assignments for a principal the platform did not create (a hybrid stack's service principal)."""

    def __init__(self, name: str, args: PrincipalRolesArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("aks-platform:identity:PrincipalRoles", name, None, opts)
        self.role_assignments = _assign_all(
            name, args.principal_id, args.role_grants, f"service principal {args.principal_id}", pulumi.ResourceOptions(parent=self)
        )
        self.register_outputs({})
