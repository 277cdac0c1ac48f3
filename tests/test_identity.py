"""WorkloadIdentity: identity, serialized federated credentials, deterministic role assignments."""

from __future__ import annotations

import uuid

import pulumi
import pytest

from components.identity import (
    AUDIENCE,
    MAX_FEDERATED_CREDENTIALS,
    RoleGrant,
    ServiceAccountRef,
    WorkloadIdentity,
    WorkloadIdentityArgs,
)
from components.roles import BUILTIN_ROLES, assignment_name
from offline.evaluate import UNKNOWN, evaluate
from offline.mocks import SUBSCRIPTION_ID, mock_guid

ISSUER = "https://westeurope.oic.prod-aks.azure.com/tenant/issuer/"
RG_SCOPE = f"/subscriptions/{SUBSCRIPTION_ID}/resourceGroups/rg-app"
SAS = [
    ServiceAccountRef("azureserviceoperator-system", "azureserviceoperator-default"),
    ServiceAccountRef("crossplane-system", "provider-azure"),
    ServiceAccountRef("team-a", "webapp"),
]


def program(service_accounts=SAS, grants=None):
    def run():
        identity = WorkloadIdentity(
            "wi",
            WorkloadIdentityArgs(
                identity_name="id-dev-aso",
                resource_group_name="rg-dev-platform",
                location="westeurope",
                oidc_issuer_url=ISSUER,
                service_accounts=service_accounts,
                role_grants=grants
                if grants is not None
                else [RoleGrant("app-contributor", "Contributor", RG_SCOPE), RoleGrant("app-blob", "Storage Blob Data Contributor", RG_SCOPE)],
                tags={"environment": "dev"},
            ),
        )
        return {"client_id": identity.client_id, "principal_id": identity.principal_id, "id": identity.resource_id}

    return run


def test_identity_and_outputs():
    ev = evaluate(program())
    identity = ev.one("azure-native:managedidentity:UserAssignedIdentity")
    assert identity.plain("resourceName") == "id-dev-aso"
    assert identity.plain("resourceGroupName") == "rg-dev-platform"
    assert identity.parent.endswith("aks-platform:identity:WorkloadIdentity::wi")
    assert ev.outputs["client_id"].value == mock_guid("client", SUBSCRIPTION_ID, "id-dev-aso")
    assert ev.outputs["principal_id"].value == mock_guid("principal", SUBSCRIPTION_ID, "id-dev-aso")
    assert ev.outputs["id"].value.endswith("/userAssignedIdentities/id-dev-aso")


@pytest.mark.parametrize("preview", [False, True])
def test_federated_credentials_are_written_one_after_another(preview):
    ev = evaluate(program(), preview=preview)
    creds = ev.by_type("azure-native:managedidentity:FederatedIdentityCredential")
    by_subject = {c.plain("subject"): c for c in creds}
    assert len(creds) == len(by_subject) == 3
    ordered = [by_subject[sa.subject] for sa in SAS]
    for sa, cred in zip(SAS, ordered):
        assert cred.plain("subject") == f"system:serviceaccount:{sa.namespace}:{sa.name}"
        assert cred.plain("issuer") == ISSUER
        assert cred.plain("audiences") == [AUDIENCE] == ["api://AzureADTokenExchange"]
    # A chain: each waits for the one before, and the first for none of them.
    assert not any(c.urn in ordered[0].dependencies for c in ordered)
    for before, after in zip(ordered, ordered[1:]):
        assert before.urn in after.dependencies
        assert ev.depends_on(after, before)
    identity = ev.one("azure-native:managedidentity:UserAssignedIdentity")
    assert all(ev.depends_on(c, identity) for c in ordered)
    if preview:
        assert all(c.plain("resourceName") == UNKNOWN for c in ordered)


def test_role_assignments_have_guid_names_principal_type_and_subscription_role_ids():
    ev = evaluate(program())
    principal = ev.outputs["principal_id"].value
    assignments = {r.name: r for r in ev.by_type("azure-native:authorization:RoleAssignment")}
    assert set(assignments) == {"wi-ra-app-contributor", "wi-ra-app-blob"}
    for resource_name, role in (("wi-ra-app-contributor", "Contributor"), ("wi-ra-app-blob", "Storage Blob Data Contributor")):
        ra = assignments[resource_name]
        assert ra.plain("principalType") == "ServicePrincipal"
        assert ra.plain("principalId") == principal
        assert ra.plain("scope") == RG_SCOPE
        assert ra.plain("roleDefinitionId") == (
            f"/subscriptions/{SUBSCRIPTION_ID}/providers/Microsoft.Authorization/roleDefinitions/{BUILTIN_ROLES[role]}"
        )
        name = ra.plain("roleAssignmentName")
        assert str(uuid.UUID(name)) == name
        # The name does not depend on how the scope is spelled (ARM IDs are case-insensitive).
        assert name == assignment_name(RG_SCOPE.upper(), principal, role)


def test_role_assignment_names_are_deterministic_and_distinct():
    first = {r.name: r.plain("roleAssignmentName") for r in evaluate(program()).by_type("azure-native:authorization:RoleAssignment")}
    second = {r.name: r.plain("roleAssignmentName") for r in evaluate(program()).by_type("azure-native:authorization:RoleAssignment")}
    assert first == second
    assert len(set(first.values())) == 2
    # Any change of scope, principal or role gives another name.
    base = assignment_name(RG_SCOPE, "p", "Contributor")
    assert base != assignment_name(RG_SCOPE + "2", "p", "Contributor")
    assert base != assignment_name(RG_SCOPE, "q", "Contributor")
    assert base != assignment_name(RG_SCOPE, "p", "Reader")


def test_role_assignment_name_unknown_in_preview():
    ev = evaluate(program(), preview=True)
    for ra in ev.by_type("azure-native:authorization:RoleAssignment"):
        assert ra.plain("roleAssignmentName") == UNKNOWN
        assert ra.plain("principalId") == UNKNOWN


def test_at_most_twenty_credentials_checked_before_registering():
    too_many = [ServiceAccountRef("ns", f"sa-{i}") for i in range(MAX_FEDERATED_CREDENTIALS + 1)]
    with pytest.raises(ValueError, match="21 federated credentials requested; allowed: at most 20"):
        evaluate(program(service_accounts=too_many))
    from pulumi.runtime.settings import SETTINGS

    assert SETTINGS.monitor.registrations == []
    # Exactly twenty is fine.
    ev = evaluate(program(service_accounts=too_many[:MAX_FEDERATED_CREDENTIALS], grants=[]))
    assert len(ev.by_type("azure-native:managedidentity:FederatedIdentityCredential")) == 20


def test_unknown_role_and_duplicate_subjects_are_rejected():
    with pytest.raises(ValueError, match="role 'Superuser'"):
        evaluate(program(grants=[RoleGrant("x", "Superuser", RG_SCOPE)]))
    with pytest.raises(ValueError, match="duplicate service accounts"):
        evaluate(program(service_accounts=[SAS[0], SAS[0]]))


def test_protect_is_inherited_by_children():
    def run():
        WorkloadIdentity(
            "wi",
            WorkloadIdentityArgs("id-x", "rg", "westeurope", ISSUER, SAS[:1], [RoleGrant("c", "Contributor", RG_SCOPE)]),
            opts=pulumi.ResourceOptions(protect=True),
        )

    ev = evaluate(run)
    assert ev.resources and all(r.protect for r in ev.resources)
