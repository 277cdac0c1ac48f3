"""Azure built-in roles the platform grants, and deterministic role-assignment names.

Built-in role definition IDs are the same GUIDs in every Azure tenant (see Azure's
"Azure built-in roles" reference), so they are constants rather than a lookup at run time.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Mapping, Optional, Sequence

import pulumi

BUILTIN_ROLES: dict[str, str] = {
    "Owner": "8e3af657-a8ff-443c-a75c-2fe8c4bcb635",
    "Contributor": "b24988ac-6180-42a0-ab88-20f7382dd24c",
    "Reader": "acdd72a7-3385-48ef-bd42-f606fba81ae7",
    "User Access Administrator": "18d7d88d-d35e-4fb5-a5c3-7773c20a72d9",
    # Can create role assignments but, unlike User Access Administrator, cannot assign
    # Owner/UAA/RBAC Admin when used with a condition; the narrowest built-in for ASO's
    # RoleAssignment kind.
    "Role Based Access Control Administrator": "f58310d9-a9f6-439a-9e8d-f62e7b41a168",
    "Storage Blob Data Contributor": "ba92f5b4-2d11-453d-a403-e96b0029c9fe",
    "Storage Account Contributor": "17d1049b-9a84-46fb-8f53-869881c3d3ab",
    "Managed Identity Contributor": "e40ec5ca-96e0-45a2-b4ff-59039f2c2b59",
    "Managed Identity Operator": "f1a07417-d97a-45cb-824c-7a7467783830",
    "Azure Kubernetes Service RBAC Cluster Admin": "b1ff04bb-8a4e-4dc4-8eb5-8693973ce19b",
    "Azure Kubernetes Service RBAC Admin": "3498e952-d568-435e-9b2c-8d77e338d7f7",
    "Azure Kubernetes Service Cluster User Role": "4abbcc35-e782-43d8-92c5-2d3f1bd2253f",
    # What an AKS cluster's identity needs on a subnet it does not own (bring-your-own network).
    "Network Contributor": "4d97b98b-1d4f-4787-a291-c67834d212e7",
}

# Roles that may grant further access: a subscription-wide grant of one of these is an
# escalation path and needs an explicit opt-in (policy and config both check it).
PRIVILEGED_ROLES = frozenset(
    {"Owner", "Contributor", "User Access Administrator", "Role Based Access Control Administrator"}
)


@dataclass(frozen=True)
class RoleGrant:
    """`role` is a built-in role name or a role definition GUID; `key` names the Pulumi resource.

    `condition`: an Azure ABAC condition (syntax version 2.0) on the assignment, or None.
    """

    key: str
    role: str
    scope: pulumi.Input[str]
    condition: Optional[str] = None


_PRIVILEGED_GUIDS = frozenset(BUILTIN_ROLES[r] for r in PRIVILEGED_ROLES)


def role_guid(role: str) -> str:
    """A built-in role's GUID, or the GUID itself for a custom role."""
    if role in BUILTIN_ROLES:
        return BUILTIN_ROLES[role]
    try:
        return str(uuid.UUID(role))
    except ValueError:
        raise ValueError(
            f"role {role!r}: allowed: a built-in role name ({', '.join(sorted(BUILTIN_ROLES))}) or a role definition GUID"
        ) from None


def subscription_of(scope: str) -> str:
    """The subscription ID in an ARM scope '/subscriptions/<id>/...'."""
    parts = scope.split("/")
    if len(parts) < 3 or parts[1].lower() != "subscriptions":
        raise ValueError(f"scope {scope!r} is not an ARM ID under /subscriptions/<id>")
    return parts[2]


def role_definition_id(scope: pulumi.Input[str], role: str) -> pulumi.Output[str]:
    """The subscription-qualified role definition ID, as ARM returns it (so no diff churn)."""
    guid = role_guid(role)
    return pulumi.Output.from_input(scope).apply(
        lambda s: f"/subscriptions/{subscription_of(s)}/providers/Microsoft.Authorization/roleDefinitions/{guid}"
    )


def assignment_name(scope: str, principal_id: str, role: str) -> str:
    """Role assignment names must be GUIDs; uuid5 makes them stable across runs."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"{scope.lower()}|{principal_id.lower()}|{role_guid(role)}"))


def constrain_roles_condition(roles: Sequence[str], principal_types: Sequence[str] = ("ServicePrincipal",)) -> str:
    """Azure's "Constrain roles and principal types" condition: role assignments may be written
    or deleted only for `roles`, and only for principals of `principal_types`.

    The expression is the documented template (Azure ABAC, "Examples to delegate Azure role
    assignment management with conditions", Example: Constrain roles and principal types):
    the write action is checked on the request's role definition and principal type, the
    delete action on the existing assignment's. ARM reports managed identities and app
    registrations alike as `ServicePrincipal`, so the default lets a controller grant the
    app's workload identity its data role and never a user or a group. GUIDs and types are
    sorted so the same sets always yield the same string (no diff churn).
    """
    guids = sorted({role_guid(r) for r in roles})
    if not guids:
        raise ValueError("constrain_roles_condition: allowed: at least one role")
    privileged = sorted(r for r in roles if role_guid(r) in _PRIVILEGED_GUIDS)
    if privileged:
        raise ValueError(
            f"constrain_roles_condition: {privileged} would let the delegate grant further access; "
            f"allowed: roles other than {', '.join(sorted(PRIVILEGED_ROLES))}"
        )
    types = sorted(set(principal_types))
    unknown = [t for t in types if t not in PRINCIPAL_TYPES]
    if not types or unknown:
        raise ValueError(f"constrain_roles_condition: principal types {unknown or []}: allowed: one or more of {', '.join(PRINCIPAL_TYPES)}")
    allowed = "{" + ", ".join(guids) + "}"
    allowed_types = "{" + ", ".join(f"'{t}'" for t in types) + "}"

    def clause(action: str, source: str) -> str:
        return (
            f"((!(ActionMatches{{'Microsoft.Authorization/roleAssignments/{action}'}})) OR "
            f"(@{source}[Microsoft.Authorization/roleAssignments:RoleDefinitionId] ForAnyOfAnyValues:GuidEquals {allowed}"
            f" AND @{source}[Microsoft.Authorization/roleAssignments:PrincipalType] ForAnyOfAnyValues:StringEqualsIgnoreCase {allowed_types}))"
        )

    return clause("write", "Request") + " AND " + clause("delete", "Resource")


# The principal types a role assignment names (Role Assignments - Create, PrincipalType).
PRINCIPAL_TYPES = ("ServicePrincipal", "User", "Group", "ForeignGroup", "Device")


# The only condition syntax version Azure accepts (Role Assignments - Create, 2022-04-01).
CONDITION_VERSION = "2.0"


def assign_role(
    resource_name: str,
    *,
    principal_id: pulumi.Input[str],
    role: str,
    scope: pulumi.Input[str],
    principal_type: str = "ServicePrincipal",
    description: str | None = None,
    condition: Optional[str] = None,
    opts: pulumi.ResourceOptions,
):
    """One role assignment with a deterministic GUID name.

    `principal_type` is set explicitly: for a just-created managed identity Azure's
    directory replication lags, and without it the assignment fails with PrincipalNotFound.
    `condition` (Azure ABAC, e.g. `constrain_roles_condition`) narrows what the role allows.
    """
    from pulumi_azure_native import authorization

    name = pulumi.Output.all(pulumi.Output.from_input(scope), pulumi.Output.from_input(principal_id)).apply(
        lambda args: assignment_name(args[0], args[1], role)
    )
    return authorization.RoleAssignment(
        resource_name,
        role_assignment_name=name,
        principal_id=principal_id,
        principal_type=principal_type,
        role_definition_id=role_definition_id(scope, role),
        scope=scope,
        description=description,
        condition=condition,
        condition_version=CONDITION_VERSION if condition else None,
        opts=opts,
    )


# What a controller's identity may do in each resource group it manages: create the app's
# Azure resources (Contributor), and grant the app's own identity data-plane roles on them.
RBAC_ADMIN_ROLE = "Role Based Access Control Administrator"


def app_scope_role_grants(
    scopes: Mapping[str, pulumi.Input[str]],
    assignable_roles: Sequence[str] = ("Storage Blob Data Contributor",),
) -> list[RoleGrant]:
    """Per scope key: Contributor, and RBAC Administrator limited to assigning `assignable_roles`.

    For any principal that creates the app's Azure resources (ASO's and Crossplane's
    identities, a hybrid stack's service principal). The limit is Azure's "Constrain roles"
    ABAC condition on the RBAC Administrator assignment, so the controller's RoleAssignment
    kind can hand out only those roles (never Owner, User Access Administrator or RBAC
    Administrator itself) and delete only those.
    """
    if not scopes:
        raise ValueError("app_scope_role_grants: allowed: at least one scope")
    condition = constrain_roles_condition(assignable_roles)
    grants: list[RoleGrant] = []
    for key, scope in scopes.items():
        grants.append(RoleGrant(key=f"{key}-contributor", role="Contributor", scope=scope))
        grants.append(RoleGrant(key=f"{key}-rbac-admin", role=RBAC_ADMIN_ROLE, scope=scope, condition=condition))
    return grants
