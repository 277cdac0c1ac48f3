"""Assertions on the role assignments a controller's principal holds."""

from __future__ import annotations

from components.roles import RBAC_ADMIN_ROLE
from components.roles import BUILTIN_ROLES


def app_group_roles(grants) -> dict[str, dict[str, str]]:
    """{app resource group: {role GUID: condition}} of a principal's role assignments."""
    held: dict[str, dict[str, str]] = {}
    for grant in grants:
        group = grant.plain("scope").rsplit("/resourceGroups/", 1)[1]
        role = grant.plain("roleDefinitionId").rsplit("/", 1)[1]
        assert role not in held.setdefault(group, {}), (group, role)
        held[group][role] = grant.get("condition")
    return held


def assert_exactly_the_controller_roles(held: dict[str, str]) -> None:
    """Contributor and RBAC Administrator constrained to assigning Storage Blob Data
    Contributor, nothing else: no storage data-plane role (blob or queue data), which the
    providers' storage calls do not need (components/crossplane.py says why)."""
    contributor, rbac_admin = BUILTIN_ROLES["Contributor"], BUILTIN_ROLES[RBAC_ADMIN_ROLE]
    assert set(held) == {contributor, rbac_admin}, held
    assert held[contributor] is None
    assert BUILTIN_ROLES["Storage Blob Data Contributor"] in held[rbac_admin]
