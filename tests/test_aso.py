"""AzureServiceOperator: pinned chart, workload-identity values, cert-manager ordering, role grants."""

from __future__ import annotations

import re
from pathlib import Path

import pulumi
import pulumi_kubernetes as k8s
import pytest
import yaml

from tests.chart_asserts import assert_pinned_release
from pulumi_azure_native import resources

from components.aso import SERVICE_ACCOUNT, AsoArgs, AzureServiceOperator, aso_role_grants
from components.cert_manager import CertManager, CertManagerArgs
from components.identity import WorkloadIdentity, WorkloadIdentityArgs
from components.roles import BUILTIN_ROLES, constrain_roles_condition
from components.versions import ASO
from offline.evaluate import UNKNOWN, Evaluation, evaluate
from offline.mocks import SUBSCRIPTION_ID, TENANT_ID, mock_guid
from stacks.config import DEFAULT_ASO_CRD_PATTERN
from tests.upstream_values import unknown_value_paths, upstream_provenance

RELEASE = "kubernetes:helm.sh/v3:Release"
ROLE_ASSIGNMENT = "azure-native:authorization:RoleAssignment"
KUBECONFIG = "apiVersion: v1\nkind: Config\nclusters: []\ncontexts: []\nusers: []\n"
IDENTITY_NAME = "id-test-aso"
ISSUER = "https://westeurope.oic.prod-aks.azure.com/tenant/issuer/"
APP_RG = "rg-test-app"


def platform(*, wait_for_cert_manager: bool = True) -> None:
    """What stacks/platform.py does for ASO: app RG, identity federated to ASO's SA, ASO itself."""
    provider = k8s.Provider("k", kubeconfig=KUBECONFIG)
    k8s_opts = pulumi.ResourceOptions(providers={"kubernetes": provider})
    app_rg = resources.ResourceGroup("app-rg", resource_group_name=APP_RG, location="westeurope")
    identity = WorkloadIdentity(
        "aso",
        WorkloadIdentityArgs(
            identity_name=IDENTITY_NAME,
            resource_group_name="rg-test-platform",
            location="westeurope",
            oidc_issuer_url=ISSUER,
            service_accounts=[SERVICE_ACCOUNT],
            role_grants=aso_role_grants({"app": app_rg.id}),
        ),
    )
    cert_manager = CertManager("cert-manager", CertManagerArgs(), k8s_opts)
    deps = [cert_manager] if wait_for_cert_manager else []
    AzureServiceOperator(
        "aso",
        AsoArgs(
            client_id=identity.client_id,
            tenant_id=identity.tenant_id,
            subscription_id=SUBSCRIPTION_ID,
            crd_pattern=DEFAULT_ASO_CRD_PATTERN,
        ),
        pulumi.ResourceOptions(providers={"kubernetes": provider}, depends_on=deps),
    )


@pytest.fixture(params=[False, True], ids=["update", "preview"])
def preview(request) -> bool:
    return request.param


@pytest.fixture
def ev(preview: bool) -> Evaluation:
    return evaluate(platform, preview=preview)


def aso_release(ev: Evaluation):
    return ev.one(RELEASE, "aso-release")


def test_service_account_is_what_the_chart_renders():
    # Chart 2.20.0 _helpers.tpl: serviceAccount.create and no name -> azureserviceoperator-default.
    assert SERVICE_ACCOUNT.namespace == ASO.namespace == "azureserviceoperator-system"
    assert SERVICE_ACCOUNT.subject == "system:serviceaccount:azureserviceoperator-system:azureserviceoperator-default"


def test_release_is_the_pinned_chart_in_its_own_namespace(ev: Evaluation):
    component = ev.one("aks-platform:aso:AzureServiceOperator")
    release = aso_release(ev)
    namespace = ev.one("kubernetes:core/v1:Namespace", "aso-ns")
    assert_pinned_release(ev, component, namespace, release, ASO)


def test_workload_identity_values_carry_the_identity(ev: Evaluation, preview: bool):
    values = aso_release(ev).plain("values")
    assert values["useWorkloadIdentityAuth"] is True
    assert values["azureSubscriptionID"] == SUBSCRIPTION_ID
    if preview:
        # A new identity's IDs are unknown until Azure creates it.
        assert values["azureClientID"] == UNKNOWN and values["azureTenantID"] == UNKNOWN
    else:
        assert values["azureClientID"] == mock_guid("client", SUBSCRIPTION_ID, IDENTITY_NAME)
        assert values["azureTenantID"] == TENANT_ID
    assert values["serviceAccount"] == {"create": True, "name": SERVICE_ACCOUNT.name}
    # The values (hence the release) wait for the identity they name.
    assert ev.depends_on(aso_release(ev), ev.one("azure-native:managedidentity:UserAssignedIdentity"))


def test_identity_is_federated_to_exactly_the_chart_service_account(ev: Evaluation):
    fics = ev.by_type("azure-native:managedidentity:FederatedIdentityCredential")
    assert [f.plain("subject") for f in fics] == [SERVICE_ACCOUNT.subject]
    assert fics[0].plain("issuer") == ISSUER
    assert fics[0].plain("audiences") == ["api://AzureADTokenExchange"]


def test_crd_pattern_is_semicolon_joined(ev: Evaluation):
    assert aso_release(ev).plain("values.crdPattern") == (
        "resources.azure.com/*;dbforpostgresql.azure.com/*;storage.azure.com/*;"
        "managedidentity.azure.com/*;authorization.azure.com/*"
    )


def test_release_waits_for_cert_manager(ev: Evaluation):
    cert_manager_release = ev.one(RELEASE, "cert-manager-release")
    assert ev.depends_on(aso_release(ev), cert_manager_release)


def test_without_depends_on_nothing_orders_them():
    # The check above is not vacuous: the ordering comes only from opts.depends_on.
    ev = evaluate(lambda: platform(wait_for_cert_manager=False))
    assert not ev.depends_on(aso_release(ev), ev.one(RELEASE, "cert-manager-release"))


def test_args_reject_an_empty_or_malformed_crd_pattern():
    with pytest.raises(AssertionError, match="at least one"):
        AsoArgs("c", "t", "s", crd_pattern=[])
    with pytest.raises(AssertionError, match="azure.com/<Kind>"):
        AsoArgs("c", "t", "s", crd_pattern=["storage.azure.com/*;compute.azure.com/*"])
    with pytest.raises(AssertionError, match="duplicate"):
        AsoArgs("c", "t", "s", crd_pattern=["storage.azure.com/*", "storage.azure.com/*"])


# --- role grants: Contributor + RBAC Administrator constrained by an ABAC condition ---

BLOB_CONTRIBUTOR = "ba92f5b4-2d11-453d-a403-e96b0029c9fe"
GUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"


def condition_guids(condition: str) -> list[set[str]]:
    """The GUID set after each `ForAnyOfAnyValues:GuidEquals`, in order (write, then delete)."""
    return [set(re.findall(GUID, m)) for m in re.findall(r"ForAnyOfAnyValues:GuidEquals \{([^}]*)\}", condition)]


def test_role_assignments_per_scope(ev: Evaluation, preview: bool):
    assignments = {r.name: r for r in ev.by_type(ROLE_ASSIGNMENT)}
    assert set(assignments) == {"aso-ra-app-contributor", "aso-ra-app-rbac-admin"}
    contributor, admin = assignments["aso-ra-app-contributor"], assignments["aso-ra-app-rbac-admin"]
    assert "condition" not in contributor.plain() and "conditionVersion" not in contributor.plain()
    assert admin.plain("conditionVersion") == "2.0"
    if preview:
        # The new resource group's ID, hence scope and role definition IDs, are unknown.
        assert contributor.plain("scope") == admin.plain("scope") == UNKNOWN
        return
    # Both grants sit on the app resource group, not wider.
    rg_id = f"/subscriptions/{SUBSCRIPTION_ID}/resourceGroups/{APP_RG}"
    assert contributor.plain("scope") == admin.plain("scope") == rg_id
    assert contributor.plain("roleDefinitionId") == (
        f"/subscriptions/{SUBSCRIPTION_ID}/providers/Microsoft.Authorization/roleDefinitions/{BUILTIN_ROLES['Contributor']}"
    )
    assert admin.plain("roleDefinitionId").endswith("/" + BUILTIN_ROLES["Role Based Access Control Administrator"])


def test_abac_condition_names_exactly_the_assignable_roles(ev: Evaluation):
    condition = ev.one(ROLE_ASSIGNMENT, "aso-ra-app-rbac-admin").plain("condition")
    # Write is checked on the request, delete on the existing assignment; same role set each.
    assert "@Request[Microsoft.Authorization/roleAssignments:RoleDefinitionId]" in condition
    assert "@Resource[Microsoft.Authorization/roleAssignments:RoleDefinitionId]" in condition
    assert "!(ActionMatches{'Microsoft.Authorization/roleAssignments/write'})" in condition
    assert "!(ActionMatches{'Microsoft.Authorization/roleAssignments/delete'})" in condition
    assert condition_guids(condition) == [{BLOB_CONTRIBUTOR}, {BLOB_CONTRIBUTOR}]


def test_condition_is_the_documented_constrain_roles_and_principal_types_template():
    # Azure docs, "Examples to delegate Azure role assignment management with conditions",
    # Example: Constrain roles and principal types (the one-line form), for two roles.
    reader = BUILTIN_ROLES["Reader"]
    roles = f"{{{reader}, {BLOB_CONTRIBUTOR}}}"
    assert constrain_roles_condition(["Storage Blob Data Contributor", "Reader"]) == (
        "((!(ActionMatches{'Microsoft.Authorization/roleAssignments/write'})) OR "
        f"(@Request[Microsoft.Authorization/roleAssignments:RoleDefinitionId] ForAnyOfAnyValues:GuidEquals {roles}"
        " AND @Request[Microsoft.Authorization/roleAssignments:PrincipalType] ForAnyOfAnyValues:StringEqualsIgnoreCase {'ServicePrincipal'}))"
        " AND "
        "((!(ActionMatches{'Microsoft.Authorization/roleAssignments/delete'})) OR "
        f"(@Resource[Microsoft.Authorization/roleAssignments:RoleDefinitionId] ForAnyOfAnyValues:GuidEquals {roles}"
        " AND @Resource[Microsoft.Authorization/roleAssignments:PrincipalType] ForAnyOfAnyValues:StringEqualsIgnoreCase {'ServicePrincipal'}))"
    )


def evaluate_condition(condition: str, action: str, request: dict[str, str], resource: dict[str, str]) -> bool:
    """Evaluate an Azure ABAC role-assignment condition for one request.

    Models only what constrain_roles_condition emits: ActionMatches, `@Request`/`@Resource`
    attributes compared with ForAnyOfAnyValues:GuidEquals or :StringEqualsIgnoreCase (one
    value per attribute, so any-of-any is set membership; a missing attribute matches
    nothing), NOT (`!`), AND, OR and parentheses. Not modelled: other operators, multi-valued
    attributes, principal or environment attributes. No maintained evaluator exists outside
    Azure; this translates the expression to Python and evaluates it.
    """
    values = {"Request": request, "Resource": resource}

    def attribute(match: re.Match) -> str:
        source, name, operator, items = match.groups()
        wanted = {v.strip().strip("'").lower() for v in items.split(",")}
        got = values[source].get(name)
        assert operator in ("GuidEquals", "StringEqualsIgnoreCase"), operator
        return repr(got is not None and got.lower() in wanted)

    expr = re.sub(
        r"@(Request|Resource)\[Microsoft\.Authorization/roleAssignments:(\w+)\] ForAnyOfAnyValues:(\w+) \{([^}]*)\}",
        attribute,
        condition,
    )
    expr = re.sub(r"ActionMatches\{'([^']*)'\}", lambda m: repr(m.group(1) == action), expr)
    expr = expr.replace("!", " not ").replace(" AND ", " and ").replace(" OR ", " or ")
    assert re.fullmatch(r"[()\s]*((True|False|not|and|or)[()\s]*)+", expr), expr
    return bool(eval(expr))  # noqa: S307 (only True/False/not/and/or/parentheses remain)


WRITE = "Microsoft.Authorization/roleAssignments/write"
DELETE = "Microsoft.Authorization/roleAssignments/delete"


@pytest.mark.parametrize(
    "action,role,principal_type,allowed",
    [
        (WRITE, BLOB_CONTRIBUTOR, "ServicePrincipal", True),
        (WRITE, BLOB_CONTRIBUTOR, "User", False),
        (WRITE, BLOB_CONTRIBUTOR, "Group", False),
        (WRITE, BUILTIN_ROLES["Owner"], "ServicePrincipal", False),
        (DELETE, BLOB_CONTRIBUTOR, "ServicePrincipal", True),
        (DELETE, BLOB_CONTRIBUTOR, "User", False),
        (DELETE, BUILTIN_ROLES["Contributor"], "ServicePrincipal", False),
        ("Microsoft.Resources/subscriptions/resourceGroups/read", BUILTIN_ROLES["Owner"], "User", True),
    ],
)
def test_the_controller_may_grant_only_blob_access_and_only_to_service_principals(ev: Evaluation, action, role, principal_type, allowed):
    """The condition on ASO's RBAC Administrator grant, as Azure would evaluate it: the app's
    workload identity may get Storage Blob Data Contributor; a user or a group may not."""
    condition = ev.one(ROLE_ASSIGNMENT, "aso-ra-app-rbac-admin").plain("condition")
    attrs = {"RoleDefinitionId": role, "PrincipalType": principal_type}
    request, resource = (attrs, {}) if action == WRITE else ({}, attrs) if action == DELETE else ({}, {})
    assert evaluate_condition(condition, action, request, resource) is allowed


def _role_assignments(node):
    """Every RoleAssignment object in a parsed manifest (ASO's, or Crossplane's under a
    Composition's base, or KRO's under a resource template): (role name, principal type)."""
    if isinstance(node, dict):
        if node.get("kind") == "RoleAssignment" and isinstance(node.get("spec"), dict):
            spec = node["spec"]
            spec = spec.get("forProvider", spec)
            role = (spec.get("roleDefinitionReference") or {}).get("wellKnownName") or spec.get("roleDefinitionName")
            yield role, spec.get("principalType")
        for value in node.values():
            yield from _role_assignments(value)
    elif isinstance(node, list):
        for value in node:
            yield from _role_assignments(value)


def test_the_gitops_role_assignments_pass_the_condition(ev: Evaluation):
    """What gitops/ asks ASO and Crossplane to assign (each RoleAssignment's role and principal
    type, read from the manifests) is inside what the condition allows."""
    condition = ev.one(ROLE_ASSIGNMENT, "aso-ra-app-rbac-admin").plain("condition")
    root = Path(__file__).resolve().parent.parent / "gitops"
    found = []
    for path in sorted(root.rglob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            for role, principal_type in _role_assignments(doc):
                where = f"{path.relative_to(root)}: {role} to {principal_type}"
                assert role in BUILTIN_ROLES and principal_type, where
                request = {"RoleDefinitionId": BUILTIN_ROLES[role], "PrincipalType": principal_type}
                assert evaluate_condition(condition, WRITE, request, {}), where
                found.append(where)
    # The KRO graph (ASO) and the Crossplane composition each assign one.
    assert {w.split("/")[1] for w in found} >= {"kro", "crossplane"}, found


def test_the_manifest_reader_sees_a_role_the_condition_refuses(ev: Evaluation):
    """The check above reads the role from the manifest: a Contributor there would fail it."""
    condition = ev.one(ROLE_ASSIGNMENT, "aso-ra-app-rbac-admin").plain("condition")
    doc = {"kind": "RoleAssignment", "spec": {"principalType": "ServicePrincipal", "roleDefinitionReference": {"wellKnownName": "Contributor"}}}
    [(role, principal_type)] = list(_role_assignments(doc))
    assert not evaluate_condition(condition, WRITE, {"RoleDefinitionId": BUILTIN_ROLES[role], "PrincipalType": principal_type}, {})


def test_grants_for_several_scopes_and_roles():
    grants = aso_role_grants(
        {"a": "/subscriptions/s/resourceGroups/a", "b": "/subscriptions/s/resourceGroups/b"},
        assignable_roles=("Storage Blob Data Contributor", BUILTIN_ROLES["Reader"]),
    )
    assert [(g.key, g.role) for g in grants] == [
        ("a-contributor", "Contributor"),
        ("a-rbac-admin", "Role Based Access Control Administrator"),
        ("b-contributor", "Contributor"),
        ("b-rbac-admin", "Role Based Access Control Administrator"),
    ]
    for grant in grants:
        if grant.role == "Contributor":
            assert grant.condition is None
        else:
            assert condition_guids(grant.condition) == [{BLOB_CONTRIBUTOR, BUILTIN_ROLES["Reader"]}] * 2


@pytest.mark.parametrize("role", ["Owner", "User Access Administrator", "Role Based Access Control Administrator", "Contributor"])
def test_assignable_roles_exclude_roles_that_grant_access(role: str):
    with pytest.raises(ValueError, match="grant further access"):
        aso_role_grants({"app": "/subscriptions/s/resourceGroups/a"}, assignable_roles=(role,))
    # Also by GUID, so a custom spelling cannot slip through.
    with pytest.raises(ValueError, match="grant further access"):
        aso_role_grants({"app": "/subscriptions/s/resourceGroups/a"}, assignable_roles=(BUILTIN_ROLES[role],))


def test_role_grants_need_a_scope_and_a_role():
    with pytest.raises(ValueError, match="at least one scope"):
        aso_role_grants({})
    with pytest.raises(ValueError, match="at least one role"):
        aso_role_grants({"app": "/subscriptions/s/resourceGroups/a"}, assignable_roles=())


# --- conformance with the upstream chart (values.yaml; the chart has no schema) ---


@pytest.fixture
def chart(upstream: Path) -> Path:
    return upstream / "aso"


def test_upstream_data_is_the_pinned_version(chart: Path):
    assert f"chart {ASO.version}" in upstream_provenance(chart, "values.yaml")
    assert not (chart / "values.schema.json").exists()


def test_values_conform_to_upstream_values(chart: Path):
    values = aso_release(evaluate(platform)).plain("values")
    assert unknown_value_paths(values, chart) == []


def test_misspelt_key_is_caught(chart: Path):
    values = {"useWorkloadIdentityAuth": True, "useWorkloadIdentity": True, "serviceAccount": {"nmae": "x"}}
    assert unknown_value_paths(values, chart) == ["serviceAccount.nmae", "useWorkloadIdentity"]


def test_open_slots_and_declared_free_form_paths(chart: Path):
    # podAnnotations: {} upstream -> anything beneath; `free_form` opens a non-empty map too.
    assert unknown_value_paths({"podAnnotations": {"a.b/c": "d"}}, chart) == []
    assert unknown_value_paths({"networkPolicies": {"extra": 1}}, chart) == ["networkPolicies.extra"]
    assert unknown_value_paths({"networkPolicies": {"extra": 1}}, chart, free_form=["networkPolicies"]) == []


# --- service-principal auth (hybrid clusters without a public OIDC issuer) ---


def service_principal_program() -> None:
    provider = k8s.Provider("k", kubeconfig=KUBECONFIG)
    AzureServiceOperator(
        "aso",
        AsoArgs(
            client_id="11111111-1111-1111-1111-111111111111",
            tenant_id=TENANT_ID,
            subscription_id=SUBSCRIPTION_ID,
            crd_pattern=["resources.azure.com/*"],
            # A plain string from the caller is still stored as a secret.
            client_secret="not-a-real-secret",
        ),
        pulumi.ResourceOptions(providers={"kubernetes": provider}),
    )


@pytest.mark.parametrize("preview", [False, True], ids=["update", "preview"])
def test_service_principal_secret_stays_secret(preview: bool):
    from offline.evaluate import Secret

    release = aso_release(evaluate(service_principal_program, preview=preview))
    values = release.plain("values")
    assert values["useWorkloadIdentityAuth"] is False
    assert values["azureClientID"] == "11111111-1111-1111-1111-111111111111"
    raw = release.inputs["values"]
    assert isinstance(raw, Secret) or isinstance(raw["azureClientSecret"], Secret)
    assert values["azureClientSecret"] == "not-a-real-secret"


def test_workload_identity_values_carry_no_secret():
    from offline.evaluate import Secret

    release = aso_release(evaluate(platform))
    assert not isinstance(release.inputs["values"], Secret)
    assert "azureClientSecret" not in release.plain("values")


def test_service_principal_values_conform_to_upstream_values(chart: Path):
    values = aso_release(evaluate(service_principal_program)).plain("values")
    assert unknown_value_paths(values, chart) == []
