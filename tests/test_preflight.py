"""`make up` stops before touching anything when a tool, the login, a stack value or Azure says no.

The Azure checks run against a fake `az` on PATH (written by `fake_az`), answering JSON in the
shapes Azure documents: `az account show` / `get-access-token` (Azure CLI reference), `az provider
show` (Providers - Get), Role Assignments - List For Subscription with `assignedTo()` (REST
2022-04-01, via `az rest`), `az vm list-skus` (Resource Skus - List), `az vm list-usage`
(Usage - List), `az postgres flexible-server list-skus` (PostgreSQL flexible server
Capabilities - List By Location) and `az ad group member check` (`{"value": true|false}`, from
Microsoft Graph's checkMemberGroups; a Graph 403 is the CLI's `ERROR: Insufficient privileges to
complete the operation.` with exit code 1).
"""

from __future__ import annotations

import base64
import ipaddress
import json
import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT

sys.path.insert(0, str(ROOT / "scripts"))
import preflight  # noqa: E402
from stacks.config import IMAGE  # noqa: E402

IMAGE_RE = re.compile(IMAGE)

SHIPPED = ("dev", "hybrid", "prod", "tenants")
SUB = "0b1c2d3e-4f5a-4b6c-8d7e-9f0a1b2c3d4e"
TENANT = "6c5d4e3f-2a1b-4c0d-9e8f-7a6b5c4d3e2f"
TENANT_SUB = "8c1d2e3f-4a5b-4c6d-8e7f-9a0b1c2d3e4f"
OID = "4a3b2c1d-0e9f-4a8b-9c7d-6e5f4a3b2c1d"
APP_ID = "2d3e4f5a-6b7c-4d8e-9f0a-1b2c3d4e5f6a"
GROUP_OID = "7e6d5c4b-3a2f-4e1d-8c0b-9a8f7e6d5c4b"
ADMINS = "1b2c3d4e-5f6a-4b7c-8d9e-0f1a2b3c4d5e"
OTHER_ADMINS = "9f8e7d6c-5b4a-4392-8180-7f6e5d4c3b2a"
ROLE = {
    "Owner": "8e3af657-a8ff-443c-a75c-2fe8c4bcb635",
    "Contributor": "b24988ac-6180-42a0-ab88-20f7382dd24c",
    "Reader": "acdd72a7-3385-48ef-bd42-f606fba81ae7",
    "User Access Administrator": "18d7d88d-d35e-4fb5-a5c3-7773c20a72d9",
    "Role Based Access Control Administrator": "f58310d9-a9f6-439a-9e8d-f62e7b41a168",
}


# --- The fake az -------------------------------------------------------------------------------

FAKE_AZ = """#!{python} -S
import json, os, sys
here = os.path.dirname(os.path.abspath(__file__))
args = sys.argv[1:]
with open(os.path.join(here, "calls.jsonl"), "a") as log:
    log.write(json.dumps(args) + "\\n")
with open(os.path.join(here, "answers.json")) as f:
    answers = json.load(f)
for rule in answers:
    if all(any(t[1:] in a for a in args) if t.startswith("~") else t in args for t in rule["match"]):
        if rule.get("stderr"):
            sys.stderr.write(rule["stderr"] + "\\n")
        if "json" in rule:
            sys.stdout.write(json.dumps(rule["json"]))
        sys.exit(rule.get("rc", 0))
sys.stderr.write("ERROR: fake az has no answer for " + " ".join(args) + "\\n")
sys.exit(2)
"""


class FakeAz:
    def __init__(self, directory: Path):
        self.dir = directory
        self.rules: list[dict] = []
        script = directory / "az"
        script.write_text(FAKE_AZ.format(python=sys.executable))
        script.chmod(script.stat().st_mode | stat.S_IEXEC)
        self._write()

    def answer(self, *match: str, json_=None, rc: int = 0, stderr: str = "") -> "FakeAz":
        """Answer commands holding every token in `match` (`~text`: an argument containing it); later rules win."""
        rule: dict = {"match": list(match), "rc": rc, "stderr": stderr}
        if json_ is not None:
            rule["json"] = json_
        self.rules.insert(0, rule)
        self._write()
        return self

    def _write(self) -> None:
        (self.dir / "answers.json").write_text(json.dumps(self.rules))

    @property
    def calls(self) -> list[list[str]]:
        log = self.dir / "calls.jsonl"
        return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


@pytest.fixture
def fake_az(tmp_path, monkeypatch) -> FakeAz:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    monkeypatch.setenv("PATH", str(bin_dir))
    monkeypatch.delenv("ARM_SUBSCRIPTION_ID", raising=False)
    monkeypatch.delenv("PREFLIGHT_SKIP", raising=False)
    monkeypatch.delenv("PULUMI_BACKEND_URL", raising=False)
    return FakeAz(bin_dir)


def account(user_type: str = "user", name: str = "ada@contoso.com") -> dict:
    return {
        "environmentName": "AzureCloud",
        "homeTenantId": TENANT,
        "id": SUB,
        "isDefault": True,
        "managedByTenants": [],
        "name": "Platform",
        "state": "Enabled",
        "tenantId": TENANT,
        "user": {"name": name, "type": user_type},
    }


def access_token(oid: str = OID) -> dict:
    def part(obj: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

    jwt = ".".join([part({"typ": "JWT", "alg": "RS256"}), part({"aud": "https://management.core.windows.net/", "oid": oid, "tid": TENANT}), "c2ln"])
    return {"accessToken": jwt, "expiresOn": "2030-01-01 10:00:00.000000", "expires_on": 1893492000,
            "subscription": SUB, "tenant": TENANT, "tokenType": "Bearer"}


def provider(namespace: str, state: str = "Registered", sub: str = SUB) -> dict:
    return {"id": f"/subscriptions/{sub}/providers/{namespace}", "namespace": namespace,
            "registrationPolicy": "RegistrationRequired", "registrationState": state, "resourceTypes": []}


def assignment(role: str, scope: str = f"/subscriptions/{SUB}", principal: str = OID, principal_type: str = "User",
               condition: str | None = None) -> dict:
    name = "5f4e3d2c-1b0a-4f9e-8d7c-6b5a4f3e2d1c"
    role_id = ROLE.get(role, role)
    return {
        "id": f"{scope}/providers/Microsoft.Authorization/roleAssignments/{name}",
        "name": name,
        "type": "Microsoft.Authorization/roleAssignments",
        "properties": {
            "roleDefinitionId": f"/subscriptions/{SUB}/providers/Microsoft.Authorization/roleDefinitions/{role_id}",
            "principalId": principal,
            "principalType": principal_type,
            "scope": scope,
            "condition": condition,
            "conditionVersion": "2.0" if condition else None,
            "createdOn": "2025-01-01T10:00:00.0000000Z",
        },
    }


def vm_sku(name: str, family: str, vcpus: int, restrictions: list | None = None) -> dict:
    return {
        "apiVersions": None,
        "capabilities": [{"name": "vCPUs", "value": str(vcpus)}, {"name": "MemoryGB", "value": str(vcpus * 4)},
                         {"name": "vCPUsAvailable", "value": str(vcpus)}],
        "capacity": None,
        "costs": None,
        "family": family,
        "kind": None,
        "locationInfo": [{"location": "westeurope", "zoneDetails": [], "zones": ["1", "2", "3"]}],
        "locations": ["westeurope"],
        "name": name,
        "resourceType": "virtualMachines",
        "restrictions": restrictions or [],
        "size": name.removeprefix("Standard_"),
        "tier": "Standard",
    }


def usage(value: str, label: str, current: int, limit: int) -> dict:
    return {"currentValue": current, "limit": limit, "localName": label,
            "name": {"localizedValue": label, "value": value}, "unit": "Count"}


def pg_capability(version: str = "16", sku: str = "Standard_B1ms", reason=None, restricted: str = "Disabled") -> dict:
    editions = [] if reason else [
        {"name": "Burstable", "defaultSkuName": "Standard_B1ms", "status": "Available",
         "supportedServerSkus": [{"name": sku, "vCores": 1, "supportedMemoryPerVcoreMb": 2048, "supportedZones": ["1", "2", "3"],
                                  "supportedHaMode": ["SameZone", "ZoneRedundant"], "status": "Available"}]},
        {"name": "GeneralPurpose", "defaultSkuName": "Standard_D2ds_v5", "status": "Available",
         "supportedServerSkus": [{"name": "Standard_D2ds_v5", "vCores": 2, "status": "Available"}]},
    ]
    return {
        "name": "FlexibleServerCapabilities",
        "reason": reason,
        "status": "Available",
        "supportedFeatures": [{"name": "OfferRestricted", "status": restricted}],
        "supportedServerEditions": editions,
        "supportedServerVersions": [] if reason else [{"name": version, "status": "Available", "supportedVersionsToUpgrade": []}],
    }


def healthy(fake: FakeAz, user_type: str = "user") -> FakeAz:
    """Every Azure answer a well-prepared subscription gives for the dev stack."""
    fake.answer("account", "show", json_=account(user_type, "ada@contoso.com" if user_type == "user" else APP_ID))
    fake.answer("account", "get-access-token", json_=access_token())
    fake.answer("provider", "show", json_=provider("Microsoft.ContainerService"))
    fake.answer("rest", json_={"value": [assignment("Owner", principal_type="User" if user_type == "user" else "ServicePrincipal")]})
    fake.answer("vm", "list-skus", "Standard_D4ds_v5", json_=[vm_sku("Standard_D4ds_v5", "standardDDSv5Family", 4)])
    fake.answer("vm", "list-skus", "Standard_D8ds_v5", json_=[vm_sku("Standard_D8ds_v5", "standardDDSv5Family", 8)])
    fake.answer("vm", "list-usage", json_=[usage("cores", "Total Regional vCPUs", 0, 100),
                                           usage("standardDDSv5Family", "Standard DDSv5 Family vCPUs", 0, 100)])
    fake.answer("postgres", "flexible-server", "list-skus", json_=[pg_capability()])
    return fake


def login(user_type: str = "user") -> preflight.Login:
    return preflight.Login(subscription=SUB, user_type=user_type, user_name="ada@contoso.com" if user_type == "user" else APP_ID)


def needs(**overrides) -> preflight.Needs:
    base = dict(
        stack="prod",
        location="westeurope",
        providers={preflight.PLATFORM: frozenset({"Microsoft.ContainerService", "Microsoft.Storage"})},
        resource_subscriptions=frozenset({preflight.PLATFORM}),
        role_assignment_subscriptions=frozenset({preflight.PLATFORM}),
        pools=(preflight.Pool("cluster.systemPool", "system", "Standard_D4ds_v5", 5, ("1", "2", "3")),
               preflight.Pool("cluster.userPools[0]", "apps", "Standard_D8ds_v5", 10, ("1", "2", "3"))),
        postgres=True,
    )
    base.update(overrides)
    return preflight.Needs(**base)


# --- 1. Tools ----------------------------------------------------------------------------------


@pytest.mark.parametrize("stack, needed", [("dev", False), ("prod", True), ("hybrid", False), ("tenants", True)])
def test_kubelogin_is_needed_exactly_where_local_accounts_are_off(stack, needed):
    assert preflight.needs_kubelogin((ROOT / f"Pulumi.{stack}.yaml").read_text()) is needed


def _fake_tool(directory: Path, name: str, exit_code: int = 0) -> None:
    path = directory / name
    path.write_text(f"#!/bin/sh\nexit {exit_code}\n")
    path.chmod(path.stat().st_mode | stat.S_IEXEC)


def _run(stack: str, path_dir: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": str(path_dir)}
    return subprocess.run([sys.executable, str(ROOT / "scripts" / "preflight.py"), stack], env=env, capture_output=True, text=True)


def test_each_missing_prerequisite_is_named_and_the_azure_checks_are_listed_as_not_made(tmp_path):
    result = _run("prod", tmp_path)
    assert result.returncode == 1
    assert "Pulumi CLI is missing" in result.stderr
    assert "Azure CLI is missing" in result.stderr
    assert "kubelogin" in result.stderr
    assert "could not check the Azure checks (providers, rbac, quota, postgres, admins, team): no Azure CLI" in result.stderr


def test_logged_out_azure_cli_is_reported(tmp_path):
    _fake_tool(tmp_path, "pulumi")
    _fake_tool(tmp_path, "az", exit_code=1)
    result = _run("dev", tmp_path)
    assert result.returncode == 1 and "az login" in result.stderr
    assert "Pulumi CLI" not in result.stderr
    assert "could not check the Azure checks (providers, rbac, quota, postgres, admins, team): not logged in" in result.stderr


def test_unknown_stack_lists_the_shipped_ones(tmp_path):
    result = _run("staging", tmp_path)
    assert result.returncode == 1 and "dev, hybrid, kind, prod, tenants" in result.stderr


# --- 2. Shipped example values -----------------------------------------------------------------


def _doc(stack: str) -> dict:
    return yaml.safe_load((ROOT / f"Pulumi.{stack}.yaml").read_text())


def _leaves(stack: str) -> list[tuple[str, object]]:
    return list(preflight.config_leaves(preflight.project_config(_doc(stack))))


def test_every_example_value_is_in_a_shipped_stack_at_its_key():
    """No entry of the table is dead: each value sits at that key in some shipped stack."""
    shipped = {(preflight.example_key(path), value) for stack in SHIPPED for path, value in _leaves(stack)}
    for key, example in preflight.EXAMPLES.items():
        for value in example.values:
            assert (key, value) in shipped, f"{key}={value!r} is in EXAMPLES but no shipped stack has it"


def _looks_like_an_example(path: str, value: object) -> bool:
    """Identifiers, URLs, images, public ranges and secrets: what a newcomer must replace."""
    if path.endswith(".secure"):
        return True
    if not isinstance(value, str):
        return False
    if re.fullmatch(r"[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}", value):
        return True
    if re.match(r"(https?|ssh)://|git@", value) or IMAGE_RE.fullmatch(value):
        return True
    if re.fullmatch(r"\d+\.\d+\.\d+\.\d+/\d+", value):
        net = ipaddress.ip_network(value)
        return not any(net.subnet_of(ipaddress.ip_network(p)) for p in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"))
    return False


@pytest.mark.parametrize("stack", SHIPPED)
def test_every_example_like_value_in_a_shipped_stack_is_flagged(stack):
    """A new example key, or a changed example value, fails here until EXAMPLES has it."""
    problems = "\n".join(preflight.check_examples(_doc(stack), stack))
    for path, value in _leaves(stack):
        key = preflight.example_key(path)
        if key in preflight.EXAMPLES or _looks_like_an_example(path, value):
            assert key in preflight.EXAMPLES, f"{stack}: {path}={value!r} looks like an example but EXAMPLES has no {key}"
            assert value in preflight.EXAMPLES[key].values, f"{stack}: {path}={value!r} is not in EXAMPLES[{key!r}]"
            shown = path.removesuffix(".secure")
            assert f"aks-platform:{shown} still holds the shipped" in problems


@pytest.mark.parametrize("stack", SHIPPED)
def test_every_stack_pins_its_subscription_and_tenant_as_flagged_examples(stack):
    """Each shipped stack sets azure-native:subscriptionId and tenantId (the program refuses a
    stack without them), and preflight flags the shipped values until they are replaced."""
    config = _doc(stack)["config"]
    problems = preflight.check_examples(_doc(stack), stack)
    for key, example in preflight.PROVIDER_EXAMPLES.items():
        assert config[key] in example.values
        assert f"{key} still holds the shipped example {config[key]!r}" in "\n".join(problems)
        assert f"`pulumi config set --stack {stack} {key} <value>`" in "\n".join(problems)


def test_example_messages_name_the_key_the_value_and_the_command():
    problems = preflight.check_examples(_doc("tenants"), "tenants")
    sub = next(p for p in problems if "tenants[1].subscriptionId" in p)
    assert "'1f2e3d4c-5b6a-4978-8a9b-0c1d2e3f4a5b'" in sub
    assert "`pulumi config set --path --stack tenants 'aks-platform:tenants[1].subscriptionId' <value>`" in sub
    secret = preflight.check_examples(_doc("hybrid"), "hybrid")
    marker = next(p for p in secret if p.startswith("aks-platform:kubeconfig "))
    assert "`pulumi config set --secret --stack hybrid aks-platform:kubeconfig < ~/.kube/config`" in marker
    assert "set-with-pulumi" not in marker  # the marker itself is not echoed as if it were a value


OWN_VALUES = {
    "guid": "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d",
    "url": "https://github.com/contoso/aks-platform.git",
    "image": "ghcr.io/contoso/webapp:1.0.0",
    "cidr": "20.50.60.0/24",
    "secure": "v1:AAABBBCCC",
}


def _replace_examples(doc: dict) -> dict:
    """The shipped stack with every example value replaced by one of 'your' values."""
    def walk(node):
        if isinstance(node, dict):
            return {k: walk(v) for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v) for v in node]
        # The pinned subscription and tenant become the ones the fake `az` is signed in to.
        if node in preflight.PROVIDER_EXAMPLES["azure-native:subscriptionId"].values:
            return SUB
        if node in preflight.PROVIDER_EXAMPLES["azure-native:tenantId"].values:
            return TENANT
        for example in preflight.EXAMPLES.values():
            if node in example.values:
                if example.secret:
                    return OWN_VALUES["secure"]
                if "/" in node and node[0].isdigit():
                    return OWN_VALUES["cidr"]
                if node.startswith("https://"):
                    return OWN_VALUES["url"]
                if IMAGE_RE.fullmatch(node):
                    return OWN_VALUES["image"]
                return OWN_VALUES["guid"]
        return node
    return walk(doc)


@pytest.mark.parametrize("stack", SHIPPED)
def test_a_stack_with_its_own_values_passes_the_example_check(stack):
    assert preflight.check_examples(_doc(stack), stack)
    assert preflight.check_examples(_replace_examples(_doc(stack)), stack) == []


# --- 3. What each stack needs ------------------------------------------------------------------


_NEEDS_BY_TEXT: dict[str, preflight.Needs] = {}
_real_stack_needs = preflight.stack_needs


def _needs(stack: str, root: Path = ROOT) -> preflight.Needs:
    """stack_needs, evaluated once per stack content (the offline evaluation is the slow part).

    Example values change nothing the Azure checks ask about but the admin groups and the
    pinned subscription (which Needs carries), so a stack and its copy with 'your' values share
    one evaluation when those agree.
    """
    doc = yaml.safe_load((root / f"Pulumi.{stack}.yaml").read_text())
    groups = ((doc.get("config") or {}).get("aks-platform:cluster") or {}).get("adminGroupObjectIds")
    pinned = (doc.get("config") or {}).get("azure-native:subscriptionId")
    key = stack + yaml.safe_dump(_replace_examples(doc)) + json.dumps([groups, pinned])
    if key not in _NEEDS_BY_TEXT:
        _NEEDS_BY_TEXT[key] = _real_stack_needs(stack, root)
    return _NEEDS_BY_TEXT[key]


def test_dev_needs_the_aks_identity_and_app_providers_and_one_small_pool():
    n = _needs("dev")
    assert n.providers == {preflight.PLATFORM: frozenset(
        {"Microsoft.ContainerService", "Microsoft.ManagedIdentity", "Microsoft.DBforPostgreSQL", "Microsoft.Storage"})}
    assert n.pools == (preflight.Pool("cluster.systemPool", "system", "Standard_D4ds_v5", 1, ()),)
    assert n.postgres and n.role_assignment_subscriptions == {preflight.PLATFORM}
    assert n.unmapped == ()


def test_autoscaled_pools_count_at_their_maximum():
    n = _needs("prod")
    assert [(p.key, p.vm_size, p.nodes) for p in n.pools] == [
        ("cluster.systemPool", "Standard_D4ds_v5", 5), ("cluster.userPools[0]", "Standard_D8ds_v5", 10)]


def test_tenant_subscriptions_need_identities_and_role_assignments_there():
    n = _needs("tenants")
    tenant_subs = {t["subscriptionId"] for t in _doc("tenants")["config"]["aks-platform:tenants"]}
    assert tenant_subs <= n.role_assignment_subscriptions and tenant_subs <= n.resource_subscriptions
    for sub in tenant_subs:
        assert n.providers[sub] == {"Microsoft.ManagedIdentity"}
    assert n.unmapped == ()


def test_hybrid_needs_no_cluster_provider_and_no_quota():
    n = _needs("hybrid")
    assert "Microsoft.ContainerService" not in n.providers[preflight.PLATFORM]
    assert n.providers[preflight.PLATFORM] >= {"Microsoft.DBforPostgreSQL", "Microsoft.Storage"}
    assert n.pools == () and n.unmapped == ()


def test_without_an_app_variant_postgres_and_storage_are_not_needed(tmp_path):
    doc = _replace_examples(_doc("dev"))
    doc["config"]["aks-platform:addons"].update({"crossplane": {"enabled": False}, "kro": {"enabled": False}})
    (tmp_path / "Pulumi.dev.yaml").write_text(yaml.safe_dump(doc))
    n = preflight.stack_needs("dev", tmp_path)
    assert n.providers[preflight.PLATFORM] == {"Microsoft.ContainerService", "Microsoft.ManagedIdentity"}
    assert not n.postgres


def test_the_app_postgres_the_check_looks_for_is_the_one_gitops_creates():
    rgd = (ROOT / "gitops/platform/kro/webapp-rgd.yaml").read_text()
    composition = (ROOT / "gitops/platform/crossplane/webapp-composition.yaml").read_text()
    assert f'version: "{preflight.APP_POSTGRES_VERSION}"' in rgd and f'version: "{preflight.APP_POSTGRES_VERSION}"' in composition
    assert f'"{preflight.APP_POSTGRES_SKU}"' in rgd and f'"{preflight.APP_POSTGRES_EDITION}"' in rgd
    assert f"small: B_{preflight.APP_POSTGRES_SKU}" in composition
    for app in ("webapp-aso", "webapp-crossplane"):
        assert yaml.safe_load((ROOT / f"gitops/apps/{app}/webapp.yaml").read_text())["spec"]["database"]["size"] == "small"


# --- Resource providers ------------------------------------------------------------------------


def test_registered_providers_pass(fake_az):
    fake_az.answer("provider", "show", json_=provider("Microsoft.Storage"))
    assert preflight.check_providers(needs(), login()) == preflight.Findings()


def test_an_unregistered_provider_is_named_with_the_command_that_registers_it(fake_az):
    fake_az.answer("provider", "show", json_=provider("Microsoft.ContainerService"))
    fake_az.answer("provider", "show", "Microsoft.Storage", json_=provider("Microsoft.Storage", "NotRegistered"))
    found = preflight.check_providers(needs(), login())
    assert found.problems == [
        f"resource provider Microsoft.Storage is NotRegistered in subscription {SUB} (the platform's), which the stack "
        f"needs: `az provider register --namespace Microsoft.Storage --subscription {SUB} --wait`"]


def test_a_tenant_subscription_is_asked_about_its_own_providers(fake_az):
    fake_az.answer("provider", "show", json_=provider("Microsoft.ManagedIdentity", "Registering", TENANT_SUB))
    found = preflight.check_providers(needs(providers={TENANT_SUB: frozenset({"Microsoft.ManagedIdentity"})}), login())
    assert len(found.problems) == 1 and "still registering" in found.problems[0] and TENANT_SUB in found.problems[0]
    call = fake_az.calls[0]
    assert call[call.index("--subscription") + 1] == TENANT_SUB


def test_a_failing_provider_query_is_could_not_check(fake_az):
    fake_az.answer("provider", "show", rc=1, stderr="ERROR: (AuthorizationFailed) The client does not have authorization")
    found = preflight.check_providers(needs(), login())
    assert found.problems == [] and len(found.unchecked) == 2
    assert "AuthorizationFailed" in found.unchecked[0]


# --- The deployer's roles ----------------------------------------------------------------------


def _rbac(fake_az, items, user_type="user", **need):
    fake_az.answer("account", "get-access-token", json_=access_token())
    fake_az.answer("rest", json_={"value": items})
    return preflight.check_rbac(needs(**need), login(user_type))


def test_a_contributor_only_person_is_refused_with_the_grant_to_ask_for(fake_az):
    found = _rbac(fake_az, [assignment("Contributor"), assignment("Reader")])
    assert len(found.problems) == 1
    problem = found.problems[0]
    assert "you (user ada@contoso.com, object ID " + OID in problem and "create role assignments" in problem
    assert "(found only Contributor, Reader)" in problem
    assert (f'`az role assignment create --assignee-object-id {OID} --assignee-principal-type User '
            f'--role "Role Based Access Control Administrator" --scope /subscriptions/{SUB}`') in problem
    rest = next(c for c in fake_az.calls if c[0] == "rest")
    assert f"assignedTo('{OID}')" in rest[rest.index("--url") + 1]  # the token's oid, no Graph lookup


def test_a_service_principal_with_contributor_and_rbac_admin_through_a_group_passes(fake_az):
    found = _rbac(fake_az, [assignment("Contributor", principal_type="ServicePrincipal"),
                            assignment("Role Based Access Control Administrator", principal=GROUP_OID, principal_type="Group")],
                  user_type="servicePrincipal")
    assert found == preflight.Findings()


def test_owner_inherited_from_a_management_group_passes(fake_az):
    found = _rbac(fake_az, [assignment("Owner", scope="/providers/Microsoft.Management/managementGroups/platform")])
    assert found == preflight.Findings()


def test_a_resource_group_grant_does_not_count_for_the_subscription(fake_az):
    found = _rbac(fake_az, [assignment("Owner", scope=f"/subscriptions/{SUB}/resourceGroups/rg-other")])
    assert len(found.problems) == 1 and "create resources (Owner or Contributor)" in found.problems[0]
    assert '--role "Contributor"' in found.problems[0]


def test_a_service_principal_without_rights_is_refused_as_a_service_principal(fake_az):
    found = _rbac(fake_az, [], user_type="servicePrincipal")
    assert found.problems and found.problems[0].startswith(f"the service principal (application ID {APP_ID}, object ID {OID})")
    assert "--assignee-principal-type ServicePrincipal" in found.problems[0]


def test_contributor_suffices_where_the_stack_assigns_no_roles(fake_az):
    assert _rbac(fake_az, [assignment("Contributor")], role_assignment_subscriptions=frozenset()) == preflight.Findings()


def test_custom_roles_and_conditions_are_could_not_check(fake_az):
    custom = _rbac(fake_az, [assignment("Contributor"), assignment("11111111-2222-4333-8444-555555555555")])
    assert custom.problems == [] and "custom role(s) 11111111-2222-4333-8444-555555555555" in custom.unchecked[0]
    conditioned = _rbac(fake_az, [assignment("Contributor"), assignment(
        "Role Based Access Control Administrator", condition="@Request[Microsoft.Authorization/roleAssignments:RoleDefinitionId] ...")])
    assert conditioned.problems == [] and "under a condition" in conditioned.unchecked[0]


def test_each_tenant_subscription_is_checked_with_its_own_token(fake_az):
    fake_az.answer("account", "get-access-token", json_=access_token())
    fake_az.answer("rest", json_={"value": [assignment("Contributor")]})
    fake_az.answer("rest", "~/subscriptions/" + TENANT_SUB, json_={"value": [assignment("Owner", scope=f"/subscriptions/{TENANT_SUB}")]})
    subs = frozenset({preflight.PLATFORM, TENANT_SUB})
    found = preflight.check_rbac(needs(resource_subscriptions=subs, role_assignment_subscriptions=subs), login())
    assert len(found.problems) == 1 and f"subscription {SUB} (the platform's)" in found.problems[0]
    token_subs = {c[c.index("--subscription") + 1] for c in fake_az.calls if c[:2] == ["account", "get-access-token"]}
    urls = {c[c.index("--url") + 1].split("/providers/")[0] for c in fake_az.calls if c[0] == "rest"}
    assert token_subs == {SUB, TENANT_SUB} and urls == {f"/subscriptions/{SUB}", f"/subscriptions/{TENANT_SUB}"}


def test_an_unreadable_login_is_could_not_check(fake_az):
    fake_az.answer("account", "get-access-token", rc=1, stderr="ERROR: Please run 'az login' to setup account.")
    found = preflight.check_rbac(needs(), login())
    assert found.problems == [] and "az login" in found.unchecked[0]


# --- vCPU quota --------------------------------------------------------------------------------


def test_enough_quota_passes(fake_az):
    healthy(fake_az)
    assert preflight.check_quota(needs(), login()) == preflight.Findings()


def test_a_short_family_quota_names_the_pools_the_need_and_the_command(fake_az):
    healthy(fake_az)
    fake_az.answer("vm", "list-usage", json_=[usage("cores", "Total Regional vCPUs", 4, 350),
                                              usage("standardDDSv5Family", "Standard DDSv5 Family vCPUs", 4, 50)])
    found = preflight.check_quota(needs(), login())
    assert found.problems == [
        "Standard DDSv5 Family vCPUs in westeurope: the pools need up to 100 (aks-platform:cluster.systemPool 5 x "
        "Standard_D4ds_v5 (4 vCPUs); aks-platform:cluster.userPools[0] 10 x Standard_D8ds_v5 (8 vCPUs)), 4 of the limit 50 "
        f"are in use: raise it to at least 104 (`az quota update --resource-name standardDDSv5Family --scope /subscriptions/{SUB}"
        "/providers/Microsoft.Compute/locations/westeurope --limit-object value=104 --resource-type dedicated`, or the "
        "portal's Quotas page), or shrink the pools"]


def test_the_total_regional_quota_counts_too(fake_az):
    healthy(fake_az)
    fake_az.answer("vm", "list-usage", json_=[usage("cores", "Total Regional vCPUs", 0, 10),
                                              usage("standardDDSv5Family", "Standard DDSv5 Family vCPUs", 0, 350)])
    found = preflight.check_quota(needs(), login())
    assert len(found.problems) == 1 and found.problems[0].startswith("Total Regional vCPUs in westeurope: the pools need up to 100")


def test_a_size_not_offered_or_restricted_is_named(fake_az):
    healthy(fake_az)
    fake_az.answer("vm", "list-skus", "Standard_D8ds_v5", json_=[])
    fake_az.answer("vm", "list-skus", "Standard_D4ds_v5", json_=[vm_sku("Standard_D4ds_v5", "standardDDSv5Family", 4, [
        {"reasonCode": "NotAvailableForSubscription", "restrictionInfo": {"locations": ["westeurope"], "zones": ["2", "3"]},
         "type": "Zone", "values": ["westeurope"]}])])
    found = preflight.check_quota(needs(), login())
    assert any("Standard_D8ds_v5 (aks-platform:cluster.userPools[0]) is not offered in westeurope" in p for p in found.problems)
    assert any("zone(s) 2, 3 of westeurope (NotAvailableForSubscription), which aks-platform:cluster.systemPool.zones" in p
               for p in found.problems)


def test_a_location_restriction_is_a_problem(fake_az):
    healthy(fake_az)
    fake_az.answer("vm", "list-skus", "Standard_D4ds_v5", json_=[vm_sku("Standard_D4ds_v5", "standardDDSv5Family", 4, [
        {"reasonCode": "NotAvailableForSubscription", "restrictionInfo": {"locations": ["westeurope"], "zones": None},
         "type": "Location", "values": ["westeurope"]}])])
    found = preflight.check_quota(needs(), login())
    assert any("restricted in westeurope for subscription" in p and "NotAvailableForSubscription" in p for p in found.problems)


def test_a_failing_usage_query_is_could_not_check(fake_az):
    healthy(fake_az)
    fake_az.answer("vm", "list-usage", rc=1, stderr="ERROR: (AuthorizationFailed) no access")
    found = preflight.check_quota(needs(), login())
    assert found.problems == [] and "vCPU quota in westeurope" in found.unchecked[0] and "AuthorizationFailed" in found.unchecked[0]


def test_no_pools_no_quota_question(fake_az):
    assert preflight.check_quota(needs(pools=()), login()) == preflight.Findings() and fake_az.calls == []


# --- PostgreSQL in the region ------------------------------------------------------------------


def test_postgres_offered_passes(fake_az):
    fake_az.answer("postgres", "flexible-server", "list-skus", json_=[pg_capability()])
    assert preflight.check_postgres(needs(), login()) == preflight.Findings()


def test_a_restricted_region_is_refused_with_azures_reason(fake_az):
    fake_az.answer("postgres", "flexible-server", "list-skus", json_=[pg_capability(
        reason="Provisioning is restricted in this region. Please choose a different region.", restricted="Enabled")])
    found = preflight.check_postgres(needs(), login())
    assert len(found.problems) == 1
    assert f"is not offered to subscription {SUB} in westeurope (Provisioning is restricted in this region." in found.problems[0]
    assert "aks-platform:location" in found.problems[0]


def test_a_region_without_the_version_or_sku_is_refused(fake_az):
    fake_az.answer("postgres", "flexible-server", "list-skus", json_=[pg_capability(version="17", sku="Standard_B2s")])
    found = preflight.check_postgres(needs(), login())
    assert len(found.problems) == 1 and "does not offer version 16 or Standard_B1ms" in found.problems[0]


def test_a_failing_postgres_query_is_could_not_check_and_no_app_means_no_question(fake_az):
    fake_az.answer("postgres", rc=1, stderr="ERROR: (MissingSubscriptionRegistration) not registered")
    found = preflight.check_postgres(needs(), login())
    assert found.problems == [] and "MissingSubscriptionRegistration" in found.unchecked[0]
    calls = len(fake_az.calls)
    assert preflight.check_postgres(needs(postgres=False), login()) == preflight.Findings() and len(fake_az.calls) == calls


# --- Cluster admin through the Entra groups ---------------------------------------------------


@pytest.mark.parametrize("stack", SHIPPED)
def test_admin_groups_are_asked_about_exactly_where_local_accounts_are_off(stack):
    """prod and tenants (localAccounts false) name their groups; dev (true) and hybrid (no AKS) none."""
    cluster = _doc(stack)["config"].get("aks-platform:cluster") or {}
    expected = tuple(cluster.get("adminGroupObjectIds") or ()) if cluster.get("localAccounts") is False else ()
    assert _needs(stack).admin_groups == expected
    assert bool(expected) is (stack in ("prod", "tenants"))


def _member_checks(fake_az) -> list[list[str]]:
    return [c for c in fake_az.calls if c[:4] == ["ad", "group", "member", "check"]]


def _arg(call: list[str], flag: str) -> str:
    return call[call.index(flag) + 1]


@pytest.mark.parametrize("user_type", ["user", "servicePrincipal"])
def test_a_member_of_an_admin_group_passes(fake_az, user_type):
    fake_az.answer("account", "get-access-token", json_=access_token())
    fake_az.answer("ad", "group", "member", "check", json_={"value": False})
    fake_az.answer("ad", "group", "member", "check", OTHER_ADMINS, json_={"value": True})
    found = preflight.check_cluster_admin(needs(admin_groups=(ADMINS.upper(), OTHER_ADMINS)), login(user_type))
    assert found == preflight.Findings()
    checks = _member_checks(fake_az)
    # the token's oid, each group until one answers true; sent lower-case (the CLI compares strings)
    assert [(_arg(c, "--group"), _arg(c, "--member-id")) for c in checks] == [(ADMINS, OID), (OTHER_ADMINS, OID)]


@pytest.mark.parametrize("user_type, who", [
    ("user", f"you (user ada@contoso.com, object ID {OID})"),
    ("servicePrincipal", f"the service principal (application ID {APP_ID}, object ID {OID})"),
])
def test_a_non_member_is_refused_with_the_command_that_adds_it(fake_az, user_type, who):
    fake_az.answer("account", "get-access-token", json_=access_token())
    fake_az.answer("ad", "group", "member", "check", json_={"value": False})
    found = preflight.check_cluster_admin(needs(admin_groups=(ADMINS, OTHER_ADMINS)), login(user_type))
    assert found.unchecked == [] and len(found.problems) == 1
    problem = found.problems[0]
    assert problem.startswith(f"{who} is not a member of any group in aks-platform:cluster.adminGroupObjectIds "
                              f"({ADMINS}, {OTHER_ADMINS})")
    assert f"`az ad group member add --group {ADMINS} --member-id {OID}`" in problem
    assert "`az logout && az login`" in problem and "in CI, a new job" in problem
    assert "Forbidden" in problem
    assert len(_member_checks(fake_az)) == 2  # every group was asked before refusing


@pytest.mark.parametrize("user_type", ["user", "servicePrincipal"])
def test_a_graph_403_is_could_not_check_with_what_to_verify(fake_az, user_type):
    fake_az.answer("account", "get-access-token", json_=access_token())
    fake_az.answer("ad", "group", "member", "check", rc=1, stderr="ERROR: Insufficient privileges to complete the operation.")
    found = preflight.check_cluster_admin(needs(admin_groups=(ADMINS,)), login(user_type))
    assert found.problems == [] and len(found.unchecked) == 1
    unchecked = found.unchecked[0]
    assert "Microsoft Graph refused" in unchecked and "Directory.Read.All" in unchecked
    assert f"`az ad group member check --group {ADMINS} --member-id {OID}`" in unchecked
    assert f"`az ad group member add --group {ADMINS} --member-id {OID}`" in unchecked


def test_a_refusal_on_one_group_and_false_on_another_is_could_not_check(fake_az):
    """Not a member of the readable group says nothing about the unreadable one."""
    fake_az.answer("account", "get-access-token", json_=access_token())
    fake_az.answer("ad", "group", "member", "check", json_={"value": False})
    fake_az.answer("ad", "group", "member", "check", OTHER_ADMINS, rc=1, stderr="ERROR: Insufficient privileges to complete the operation.")
    found = preflight.check_cluster_admin(needs(admin_groups=(ADMINS, OTHER_ADMINS)), login("servicePrincipal"))
    assert found.problems == [] and "Microsoft Graph refused" in found.unchecked[0]


def test_an_unreadable_token_is_could_not_check(fake_az):
    fake_az.answer("account", "get-access-token", rc=1, stderr="ERROR: Please run 'az login' to setup account.")
    found = preflight.check_cluster_admin(needs(admin_groups=(ADMINS,)), login())
    assert found.problems == [] and "az login" in found.unchecked[0] and _member_checks(fake_az) == []


@pytest.mark.parametrize("user_type", ["user", "servicePrincipal"])
def test_local_accounts_on_or_hybrid_ask_nothing_about_groups(fake_az, user_type):
    """needs() without admin_groups is what stack_needs gives dev (local accounts on) and hybrid."""
    assert preflight.check_cluster_admin(needs(admin_groups=()), login(user_type)) == preflight.Findings()
    assert fake_az.calls == []


# --- Who deploys -------------------------------------------------------------------------------


def test_a_person_is_warned_that_ci_and_laptop_must_share_a_backend(monkeypatch):
    monkeypatch.setenv("PULUMI_BACKEND_URL", "file:///home/ada/aks-platform/.pulumi-state")
    found = preflight.check_team(needs(), login("user"))
    assert found.problems == [] and found.unchecked == [] and len(found.warnings) == 1
    warning = found.warnings[0]
    assert "signed in as a person (ada@contoso.com)" in warning and "stack prod" in warning
    assert "DEPLOY_STACKS" in warning and "local file backend" in warning
    assert 'docs/operations.md, "Running it as a team"' in warning
    assert "/home/ada" not in warning
    monkeypatch.setenv("PULUMI_BACKEND_URL", "azblob://pulumi-state?storage_account=contosostate")
    shared = preflight.check_team(needs(), login("user")).warnings
    assert len(shared) == 1 and "use the one CI uses" in shared[0] and "local file backend" not in shared[0]


def test_a_service_principal_is_not_warned():
    assert preflight.check_team(needs(), login("servicePrincipal")) == preflight.Findings()


def test_the_team_section_the_warning_names_exists():
    assert re.search(r"^## Running it as a team$", (ROOT / "docs/operations.md").read_text(), re.M)


# --- The whole run -----------------------------------------------------------------------------


@pytest.fixture
def cached_needs(monkeypatch):
    monkeypatch.setattr(preflight, "stack_needs", _needs)


@pytest.fixture
def own_project(tmp_path, fake_az, cached_needs):
    """A project whose dev stack holds 'your' values, with pulumi on PATH."""
    project = tmp_path / "project"
    project.mkdir()
    (project / "Pulumi.dev.yaml").write_text(yaml.safe_dump(_replace_examples(_doc("dev"))))
    _fake_tool(fake_az.dir, "pulumi")
    return project


@pytest.mark.parametrize("user_type", ["user", "servicePrincipal"])
def test_a_prepared_subscription_passes_for_a_person_and_a_service_principal(own_project, fake_az, capsys, user_type):
    healthy(fake_az, user_type)
    assert preflight.main("dev", own_project) == 0
    err = capsys.readouterr().err
    if user_type == "user":  # a person is reminded of CI, and nothing else is said
        assert err.startswith("make up: warning: you are signed in as a person (ada@contoso.com)") and err.count("\n") == 1
    else:
        assert err == ""
    asked = {" ".join(c[:2]) for c in fake_az.calls}
    assert {"account show", "provider show", "rest --method", "vm list-skus", "vm list-usage", "postgres flexible-server"} <= asked


def test_a_pinned_subscription_the_account_cannot_see_fails_the_run(own_project, fake_az, capsys):
    """`az login` as someone else (a person whose default is another subscription, in another
    tenant): the stack's azure-native:subscriptionId is not theirs to use."""
    healthy(fake_az)
    fake_az.answer("account", "show", "--subscription", SUB, rc=1,
                   stderr=f"ERROR: Subscription '{SUB}' not found. Check the spelling and casing and try again.")
    assert preflight.main("dev", own_project) == 1
    err = capsys.readouterr().err
    assert f"the signed-in account cannot use subscription {SUB} (azure-native:subscriptionId of stack dev)" in err
    assert "not found" in err


def test_a_failing_az_command_is_listed_and_does_not_fail_the_run(own_project, fake_az, capsys):
    healthy(fake_az)
    fake_az.answer("postgres", rc=1, stderr="ERROR: The command failed with an unexpected error")
    assert preflight.main("dev", own_project) == 0
    err = capsys.readouterr().err
    assert "make up: could not check PostgreSQL flexible server 16" in err and "unexpected error" in err


def test_problems_fail_the_run_and_skipped_checks_are_listed(own_project, fake_az, capsys, monkeypatch):
    healthy(fake_az)
    fake_az.answer("rest", json_={"value": [assignment("Contributor")]})
    fake_az.answer("provider", "show", "Microsoft.DBforPostgreSQL", json_=provider("Microsoft.DBforPostgreSQL", "NotRegistered"))
    assert preflight.main("dev", own_project) == 1
    err = capsys.readouterr().err
    assert "az provider register --namespace Microsoft.DBforPostgreSQL" in err and "cannot create role assignments" in err
    monkeypatch.setenv("PREFLIGHT_SKIP", "rbac,providers")
    assert preflight.main("dev", own_project) == 0
    err = capsys.readouterr().err
    assert "could not check providers: skipped (PREFLIGHT_SKIP)" in err and "could not check rbac: skipped (PREFLIGHT_SKIP)" in err


def test_the_shipped_stack_fails_on_its_examples_even_when_azure_is_ready(fake_az, cached_needs, capsys):
    healthy(fake_az)
    _fake_tool(fake_az.dir, "pulumi")
    assert preflight.main("dev") == 1
    err = capsys.readouterr().err
    assert "aks-platform:addons.argocd.repoUrl still holds the shipped example" in err


def test_invalid_config_is_reported_before_any_azure_question(own_project, fake_az, capsys):
    healthy(fake_az)
    doc = yaml.safe_load((own_project / "Pulumi.dev.yaml").read_text())
    doc["config"]["aks-platform:cluster"]["skuTier"] = "Gold"
    (own_project / "Pulumi.dev.yaml").write_text(yaml.safe_dump(doc))
    assert preflight.main("dev", own_project) == 1
    err = capsys.readouterr().err
    assert "config is invalid" in err and "skuTier" in err
    assert {c[0] for c in fake_az.calls} == {"account"}


@pytest.fixture
def own_prod(tmp_path, fake_az, cached_needs):
    """The prod stack with 'your' values (local accounts off), with pulumi and kubelogin on PATH."""
    project = tmp_path / "project"
    project.mkdir()
    (project / "Pulumi.prod.yaml").write_text(yaml.safe_dump(_replace_examples(_doc("prod"))))
    _fake_tool(fake_az.dir, "pulumi")
    _fake_tool(fake_az.dir, "kubelogin")
    return project


def test_a_deployer_outside_the_admin_groups_fails_the_run(own_prod, fake_az, capsys):
    """The group asked about is the stack file's (a service principal: the next test)."""
    healthy(fake_az)
    fake_az.answer("ad", "group", "member", "check", json_={"value": True})
    assert preflight.main("prod", own_prod) == 0
    fake_az.answer("ad", "group", "member", "check", json_={"value": False})
    assert preflight.main("prod", own_prod) == 1
    err = capsys.readouterr().err
    assert f"az ad group member add --group {OWN_VALUES['guid']} --member-id {OID}" in err
    assert {_arg(c, "--group") for c in _member_checks(fake_az)} == {OWN_VALUES["guid"]}


def test_a_graph_refusal_does_not_fail_the_run_and_the_check_can_be_skipped(own_prod, fake_az, capsys, monkeypatch):
    healthy(fake_az, "servicePrincipal")
    fake_az.answer("ad", "group", "member", "check", rc=1, stderr="ERROR: Insufficient privileges to complete the operation.")
    assert preflight.main("prod", own_prod) == 0
    assert "make up: could not check whether the service principal" in capsys.readouterr().err
    monkeypatch.setenv("PREFLIGHT_SKIP", "admins")
    assert preflight.main("prod", own_prod) == 0
    assert "could not check admins: skipped (PREFLIGHT_SKIP)" in capsys.readouterr().err
