"""Guardrails: policy/rules.py over every shipped stack, each rule on a violating graph, and the pack.

The offline checks run the same rule functions the policy pack runs; the pack itself is
driven through pulumi-policy's analyzer servicer (no gRPC server, no engine).
"""

from __future__ import annotations

import copy
import json
import os
import runpy
import subprocess
import sys

import pulumi
import pulumi_kubernetes as k8s
import pytest
from google.protobuf import json_format, struct_pb2
from pulumi.runtime.proto import analyzer_pb2
from pulumi_azure_native import authorization, containerservice, managedidentity, resources

from offline.evaluate import PROJECT, REPO_ROOT, evaluate, stack_config
from offline.mocks import SUBSCRIPTION_ID
from offline.plan import available_stacks
from offline.policy_check import check_evaluation, check_plan, check_stack
from policy import rules
from tests.conftest import run_program

STACKS = available_stacks()
SECRET_SIG = {"4dabf18193072939515e22adb298388d": "1b47061264138c4ac30d75fd1eb44270"}


def names(violations, rule=None):
    return sorted({v.resource.rsplit("::", 1)[-1] for v in violations if rule is None or v.rule == rule})


def rules_hit(violations):
    return sorted({v.rule for v in violations})


# --- every shipped stack passes --------------------------------------------------------------


@pytest.mark.parametrize("stack", STACKS)
@pytest.mark.parametrize("mode", ["update", "preview"])
def test_every_shipped_stack_passes(shipped, stack, mode):
    """check_stack's verdict (the CLI below runs check_stack itself) on the session's evaluation."""
    config, _ = stack_config(stack)
    env = config.get(f"{PROJECT}:environment")
    violations = check_evaluation(shipped(stack, preview=mode == "preview"), stack, env if isinstance(env, str) else None)
    assert not violations, "\n".join(f"{v.rule} {v.resource}: {v.message}" for v in violations)


# --- small programs under the mocks ------------------------------------------------------------


def cluster(name="c", *, workload_identity=True, oidc=True, protect=False, tags=None):
    return containerservice.ManagedCluster(
        name,
        resource_name_=f"aks-{name}",
        resource_group_name="rg",
        location="westeurope",
        dns_prefix=f"aks-{name}",
        identity=containerservice.ManagedClusterIdentityArgs(type="SystemAssigned"),
        agent_pool_profiles=[containerservice.ManagedClusterAgentPoolProfileArgs(name="system", mode="System", count=1, vm_size="Standard_D4ds_v5")],
        oidc_issuer_profile=containerservice.ManagedClusterOIDCIssuerProfileArgs(enabled=oidc) if oidc is not None else None,
        security_profile=containerservice.ManagedClusterSecurityProfileArgs(
            workload_identity=containerservice.ManagedClusterSecurityProfileWorkloadIdentityArgs(enabled=workload_identity)
        )
        if workload_identity is not None
        else None,
        tags=tags,
        opts=pulumi.ResourceOptions(protect=protect),
    )


def role_assignment(name, scope):
    return authorization.RoleAssignment(
        name,
        role_assignment_name="00000000-0000-0000-0000-000000000001",
        principal_id="00000000-0000-0000-0000-000000000002",
        principal_type="ServicePrincipal",
        role_definition_id=f"/subscriptions/{SUBSCRIPTION_ID}/providers/Microsoft.Authorization/roleDefinitions/b24988ac-6180-42a0-ab88-20f7382dd24c",
        scope=scope,
    )


def release(name, version, chart="cert-manager"):
    return k8s.helm.v3.Release(name, chart=chart, version=version, namespace="ns", values={})


def check(program, stack="test", environment=None, config=None, preview=False):
    return check_evaluation(evaluate(program, stack=stack, preview=preview), stack, environment, config)


# Rule 1 --------------------------------------------------------------------------------------


def test_cluster_without_workload_identity_or_oidc_issuer_is_caught():
    def program():
        cluster("wi-off", workload_identity=False)
        cluster("no-oidc", oidc=None)
        cluster("ok")

    found = check(program)
    assert rules_hit(found) == ["aks-workload-identity"]
    assert names(found) == ["no-oidc", "wi-off"]
    by_name = {n: [v.message for v in found if v.resource.endswith("::" + n)] for n in names(found)}
    assert "workload identity" in by_name["wi-off"][0] and "oidcIssuerProfile" in by_name["no-oidc"][0]


def test_shipped_cluster_with_workload_identity_switched_off_is_caught(stack_file):
    stack = next(s for s in STACKS if s != "hybrid")
    config, secret = stack_file(stack)
    ev = run_program(config, secret, stack=stack)
    managed = next(r for r in ev.resources if r.type == rules.MANAGED_CLUSTER)
    managed.inputs = copy.deepcopy(managed.inputs)
    managed.inputs["securityProfile"]["workloadIdentity"]["enabled"] = False
    found = check_evaluation(ev, stack, config.get(f"{PROJECT}:environment"))
    assert [(v.rule, v.resource) for v in found] == [("aks-workload-identity", managed.urn)]


# Rule 2 --------------------------------------------------------------------------------------


def _role_program():
    role_assignment("sub-wide", f"/subscriptions/{SUBSCRIPTION_ID}")
    role_assignment("sub-wide-slash", f"/subscriptions/{SUBSCRIPTION_ID}/")
    role_assignment("mgmt-group", "/providers/Microsoft.Management/managementGroups/root")
    role_assignment("rg-scope", f"/subscriptions/{SUBSCRIPTION_ID}/resourceGroups/rg-app")
    role_assignment("resource-scope", f"/subscriptions/{SUBSCRIPTION_ID}/resourceGroups/rg-app/providers/Microsoft.Storage/storageAccounts/st")


def test_subscription_wide_role_assignment_is_caught():
    found = check(_role_program)
    assert rules_hit(found) == ["no-subscription-scope-role-assignment"]
    assert names(found) == ["mgmt-group", "sub-wide", "sub-wide-slash"]


def test_subscription_wide_role_assignment_allowed_by_policy_config():
    found = check(_role_program, config={"allowSubscriptionScopeRoleAssignments": True})
    # The opt-in is for a subscription; a management group is still wider than allowed.
    assert names(found) == ["mgmt-group"]


def test_shipped_program_with_subscription_scope_opt_in_needs_the_policy_opt_in_too(stack_file):
    """addons.aso.subscriptionScope grants the controllers Contributor on the subscription; the
    policy still stops it unless its own config allows it (two keys, two owners)."""
    config, secret = stack_file("dev")
    config[f"{PROJECT}:addons"] = {**config.get(f"{PROJECT}:addons", {}), "aso": {"subscriptionScope": True}}
    ev = run_program(config, secret, stack="dev")
    found = check_evaluation(ev, "dev", "dev")
    assert found and rules_hit(found) == ["no-subscription-scope-role-assignment"]
    subscription_wide = sorted(
        r.urn for r in ev.resources if r.type == rules.ROLE_ASSIGNMENT and r.plain("scope") == f"/subscriptions/{SUBSCRIPTION_ID}"
    )
    assert sorted(v.resource for v in found) == subscription_wide
    assert not check_evaluation(ev, "dev", "dev", {"allowSubscriptionScopeRoleAssignments": True})


def test_role_assignment_without_scope_is_caught():
    res = rules.Resource(rules.ROLE_ASSIGNMENT, "no-scope", {"principalId": "x"})
    assert rules.no_subscription_scope_role_assignment(res, rules.Context())
    res_empty = rules.Resource(rules.ROLE_ASSIGNMENT, "empty", {"scope": ""})
    assert rules.no_subscription_scope_role_assignment(res_empty, rules.Context())
    unknown = rules.Resource(rules.ROLE_ASSIGNMENT, "later", {"scope": rules.UNKNOWN_MARK})
    assert not rules.no_subscription_scope_role_assignment(unknown, rules.Context())


# Rule 3 --------------------------------------------------------------------------------------


@pytest.mark.parametrize("version", ["", "latest", "^1.2.0", "~1.2", ">=1.0.0", "1.x", "1.2.*", "1.2", "*", "1.2.3 || 1.3.0"])
def test_unpinned_helm_release_is_caught(version):
    found = check(lambda: release("unpinned", version) and None)
    assert [(v.rule, names([v])) for v in found] == [("helm-release-pinned", ["unpinned"])]


def test_helm_release_without_version_is_caught():
    found = check(lambda: k8s.helm.v3.Release("no-version", chart="argo-cd", namespace="argocd") and None)
    assert names(found, "helm-release-pinned") == ["no-version"]


@pytest.mark.parametrize("version", ["v1.21.1", "2.20.0", "0.9.3", "1.0.0-rc.1", "1.2.3+build.5"])
def test_exact_helm_versions_pass(version):
    assert not check(lambda: release("pinned", version, chart="oci://registry.k8s.io/kro/charts/kro") and None)


# Rule 4 --------------------------------------------------------------------------------------

KUBECONFIG = "apiVersion: v1\nkind: Config\nusers:\n- name: admin\n  user:\n    token: abc\n"


def test_plain_kubeconfig_input_is_caught_and_secret_one_passes():
    def program():
        k8s.Provider("plain", kubeconfig=KUBECONFIG)
        k8s.Provider("wrapped", kubeconfig=pulumi.Output.secret(KUBECONFIG))

    found = check(program)
    assert [(v.rule, names([v])) for v in found] == [("no-plaintext-secret-inputs", ["plain"])]
    assert "kubeconfig" in found[0].message


def test_plain_secret_in_nested_chart_values_is_caught():
    def program():
        k8s.helm.v3.Release(
            "argo",
            chart="argo-cd",
            version="10.1.1",
            namespace="argocd",
            values={
                "configs": {"secret": {"createSecret": True, "argocdServerAdminPassword": "hunter2"}},
                "controller": {"existingSecret": "argocd-secret", "tokenSecretName": "x"},
                "aso": {"azureClientSecret": pulumi.Output.secret("s3cr3t"), "azureClientID": "id"},
            },
        )

    found = check(program)
    assert [v.rule for v in found] == ["no-plaintext-secret-inputs"]
    assert "values.configs.secret.argocdServerAdminPassword" in found[0].message


def test_plain_secret_stack_output_is_caught():
    found = check(lambda: {"kubeconfig": KUBECONFIG, "clusterName": "aks", "adminToken": pulumi.Output.secret("t")})
    assert [(v.rule, v.resource) for v in found] == [("no-plaintext-secret-outputs", "stack outputs")]
    assert "kubeconfig" in found[0].message


def test_kubernetes_secret_data_is_secret_by_the_sdk():
    """pulumi-kubernetes wraps Secret data/stringData in Output.secret itself: nothing to report."""

    def program():
        k8s.core.v1.Secret("s", string_data={"password": "p", "token": "t"})

    assert not check(program)


# Rule 5 --------------------------------------------------------------------------------------

PROTECTED = {rules.MANAGED_CLUSTER, rules.AGENT_POOL, rules.USER_ASSIGNED_IDENTITY, rules.RESOURCE_GROUP}


@pytest.mark.parametrize("stack", [s for s in STACKS if s.startswith("prod")])
def test_unprotected_prod_stack_is_caught(stack_file, stack):
    config, secret = stack_file(stack)
    config[f"{PROJECT}:protect"] = False
    ev = run_program(config, secret, stack=stack)
    found = check_evaluation(ev, stack, config.get(f"{PROJECT}:environment"))
    expected = sorted(r.urn for r in ev.resources if r.custom and r.type in PROTECTED)
    assert expected and sorted(v.resource for v in found) == expected
    assert rules_hit(found) == ["prod-resources-protected"]


def test_prod_environment_under_another_stack_name_is_caught():
    def program():
        cluster("c")
        resources.ResourceGroup("rg", resource_group_name="rg")
        managedidentity.UserAssignedIdentity("id", resource_name_="id", resource_group_name="rg")
        containerservice.AgentPool("pool", agent_pool_name="apps", resource_group_name="rg", resource_name_="aks-c")

    assert not check(program, stack="staging", environment="staging")
    found = check(program, stack="staging", environment="prod")
    assert names(found, "prod-resources-protected") == ["c", "id", "pool", "rg"]
    # Policy config decides which environments count as production.
    assert not check(program, stack="staging", environment="prod", config={"prodEnvironments": ["production"]})


def test_prod_environment_tag_alone_marks_a_resource_as_production():
    def program():
        cluster("tagged", tags={"environment": "prod"})
        cluster("untagged")

    found = check(program, stack="sandbox")
    assert names(found) == ["tagged"]


def test_protected_prod_resources_pass():
    assert not check(lambda: cluster("c", protect=True) and None, stack="prod", environment="prod")


# --- the plan document carries the same verdicts ---------------------------------------------------


def test_check_plan_reads_the_plan_json(tmp_path):
    from offline.plan import plan_document, render_json

    def program():
        cluster("c", workload_identity=False)
        k8s.Provider("p", kubeconfig=KUBECONFIG)
        return {"kubeconfig": pulumi.Output.secret(KUBECONFIG)}

    ev = evaluate(program, stack="test")
    doc = json.loads(render_json(plan_document(ev, "test", "update")))
    assert [v.as_dict() for v in check_plan(doc)] == doc["policy"]["violations"]
    assert rules_hit(check_plan(doc)) == ["aks-workload-identity", "no-plaintext-secret-inputs"]
    assert KUBECONFIG not in json.dumps(doc["outputs"])


@pytest.mark.filterwarnings("ignore:'offline.policy_check' found in sys.modules:RuntimeWarning")
def test_policy_check_cli_exits_nonzero_only_on_violations(monkeypatch, capsys):
    """`python -m offline.policy_check <every stack>`, run as a module in this process (runpy, as `-m`
    does; no second interpreter re-importing Pulumi): check_stack on each, one line each, exit 0."""
    monkeypatch.setattr(sys, "argv", ["offline.policy_check", *STACKS])
    with pytest.raises(SystemExit) as exited:
        runpy.run_module("offline.policy_check", run_name="__main__", alter_sys=True)
    out, err = capsys.readouterr()
    assert exited.value.code == 0, out + err
    assert [line.split(":")[0] for line in out.splitlines()] == STACKS


# --- the policy pack ----------------------------------------------------------------------------


def test_pack_module_imports_without_an_engine():
    """policy/__main__.py defines the pack but only serves when run as __main__."""
    code = (
        "import importlib, json; m = importlib.import_module('policy.__main__'); "
        "print(json.dumps([[p.name, p.enforcement_level.value] for p in m.POLICIES]))"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    policies = dict(json.loads(proc.stdout))
    assert list(policies) == [r.name for r in rules.RESOURCE_RULES]
    assert policies.pop("no-plaintext-secret-inputs") == "remediate"
    assert set(policies.values()) == {"mandatory"}


def test_pack_files():
    import yaml

    meta = yaml.safe_load((REPO_ROOT / "policy" / "PulumiPolicy.yaml").read_text())
    assert meta["runtime"]["name"] == "python"
    reqs = (REPO_ROOT / "policy" / "requirements.txt").read_text().split()
    assert "pulumi-policy==1.21.0" in reqs and "pulumi==3.272.0" in reqs


@pytest.fixture
def analyzer():
    from pulumi_policy import EnforcementLevel
    from pulumi_policy.policy import _PolicyAnalyzerServicer

    from policy.pack import PACK_NAME, POLICIES

    return _PolicyAnalyzerServicer(PACK_NAME, "0.1.0", POLICIES, EnforcementLevel.MANDATORY)


def _request(type_, name, props, *, protect=False, stack="dev"):
    struct = struct_pb2.Struct()
    json_format.ParseDict(props, struct)
    return analyzer_pb2.AnalyzeRequest(
        type=type_,
        name=name,
        urn=f"urn:pulumi:{stack}::{PROJECT}::{type_}::{name}",
        properties=struct,
        options=analyzer_pb2.AnalyzerResourceOptions(protect=protect),
    )


def _violations(response):
    return sorted((d.policyName, d.enforcementLevel) for d in response.diagnostics)


MANDATORY = analyzer_pb2.EnforcementLevel.MANDATORY


def test_pack_reports_cluster_without_workload_identity(analyzer):
    bad = {"oidcIssuerProfile": {"enabled": True}, "securityProfile": {"workloadIdentity": {"enabled": False}}}
    good = {"oidcIssuerProfile": {"enabled": True}, "securityProfile": {"workloadIdentity": {"enabled": True}}}
    assert _violations(analyzer.Analyze(_request(rules.MANAGED_CLUSTER, "c", bad), None)) == [("aks-workload-identity", MANDATORY)]
    assert _violations(analyzer.Analyze(_request(rules.MANAGED_CLUSTER, "c", good), None)) == []


def test_pack_reads_protect_and_the_stack_from_the_engine(analyzer):
    props = {"resourceGroupName": "rg", "tags": {"environment": "x"}}
    assert _violations(analyzer.Analyze(_request(rules.RESOURCE_GROUP, "rg", props, stack="prod"), None)) == [
        ("prod-resources-protected", MANDATORY)
    ]
    assert _violations(analyzer.Analyze(_request(rules.RESOURCE_GROUP, "rg", props, stack="prod", protect=True), None)) == []
    assert _violations(analyzer.Analyze(_request(rules.RESOURCE_GROUP, "rg", props, stack="dev"), None)) == []


def test_pack_subscription_scope_and_its_config(analyzer):
    from pulumi.runtime.proto import analyzer_pb2 as pb

    req = _request(rules.ROLE_ASSIGNMENT, "ra", {"scope": f"/subscriptions/{SUBSCRIPTION_ID}"})
    assert _violations(analyzer.Analyze(req, None)) == [("no-subscription-scope-role-assignment", MANDATORY)]
    allow = struct_pb2.Struct()
    allow.update({"allowSubscriptionScopeRoleAssignments": True})
    analyzer.Configure(
        pb.ConfigureAnalyzerRequest(
            policyConfig={"no-subscription-scope-role-assignment": pb.PolicyConfig(enforcementLevel=MANDATORY, properties=allow)}
        ),
        None,
    )
    assert _violations(analyzer.Analyze(req, None)) == []


def test_pack_unpinned_release_and_unknown_version(analyzer):
    assert _violations(analyzer.Analyze(_request(rules.HELM_RELEASE, "r", {"chart": "kro", "version": "^0.9"}), None)) == [
        ("helm-release-pinned", MANDATORY)
    ]
    unknown = next(iter(rules.ENGINE_UNKNOWNS))
    # A version unknown during preview is not judged (and does not raise in the SDK's proxy).
    assert _violations(analyzer.Analyze(_request(rules.HELM_RELEASE, "r", {"chart": "kro", "version": unknown}), None)) == []


def test_pack_validations_cannot_see_secretness():
    """Why rule 4 is a remediation in the pack: Analyze hands validations secrets in plain text."""
    from pulumi_policy import EnforcementLevel, ResourceValidationPolicy
    from pulumi_policy.policy import _PolicyAnalyzerServicer

    seen = {}

    def spy(args, report):
        seen["kubeconfig"] = args.props["kubeconfig"]

    servicer = _PolicyAnalyzerServicer("spy", "0.0.1", [ResourceValidationPolicy("spy", "d", spy)], EnforcementLevel.MANDATORY)
    servicer.Analyze(_request("pulumi:providers:kubernetes", "p", {"kubeconfig": {**SECRET_SIG, "value": KUBECONFIG}}), None)
    assert seen["kubeconfig"] == KUBECONFIG


def test_pack_remediation_marks_plaintext_secrets_and_keeps_existing_ones(analyzer):
    props = {
        "kubeconfig": KUBECONFIG,
        "values": {"adminPassword": "hunter2", "clientSecret": {**SECRET_SIG, "value": "already"}, "replicas": 2},
        "name": "x",
    }
    response = analyzer.Remediate(_request("pulumi:providers:kubernetes", "p", props), None)
    assert [r.policyName for r in response.remediations] == ["no-plaintext-secret-inputs"]
    fixed = json_format.MessageToDict(response.remediations[0].properties)
    assert fixed["kubeconfig"] == {**SECRET_SIG, "value": KUBECONFIG}
    assert fixed["values"]["adminPassword"] == {**SECRET_SIG, "value": "hunter2"}
    assert fixed["values"]["clientSecret"] == {**SECRET_SIG, "value": "already"}
    assert fixed["values"]["replicas"] == 2 and fixed["name"] == "x"

    clean = {"kubeconfig": {**SECRET_SIG, "value": KUBECONFIG}, "name": "x"}
    assert not analyzer.Remediate(_request("pulumi:providers:kubernetes", "p", clean), None).remediations


def test_pack_publishes_policy_config_schemas(analyzer):
    info = analyzer.GetAnalyzerInfo(None, None)
    schemas = {p.name: json_format.MessageToDict(p.configSchema) for p in info.policies}
    assert schemas["no-subscription-scope-role-assignment"]["properties"]["allowSubscriptionScopeRoleAssignments"]["type"] == "boolean"
    assert schemas["prod-resources-protected"]["properties"]["prodEnvironments"]["type"] == "array"


def test_pack_serves_when_run_as_the_cli_runs_it(tmp_path):
    """`python policy/` from another directory (as the language host's RunPlugin does): the pack
    imports its siblings without the repository on sys.path, prints its port and answers
    GetAnalyzerInfo and Analyze over gRPC on 127.0.0.1. The process is ended at the end."""
    import grpc
    from google.protobuf import empty_pb2
    from pulumi.runtime.proto import analyzer_pb2_grpc

    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.Popen(
        [sys.executable, "-u", str(REPO_ROOT / "policy")],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        port = proc.stdout.readline().strip()
        assert port.isdigit(), proc.stderr.read() if proc.poll() is not None else port
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = analyzer_pb2_grpc.AnalyzerStub(channel)
            info = stub.GetAnalyzerInfo(empty_pb2.Empty(), timeout=30)
            assert info.name == "aks-platform-guardrails"
            assert [p.name for p in info.policies] == [r.name for r in rules.RESOURCE_RULES]
            bad = {"oidcIssuerProfile": {"enabled": False}, "securityProfile": {"workloadIdentity": {"enabled": True}}}
            response = stub.Analyze(_request(rules.MANAGED_CLUSTER, "c", bad), timeout=30)
            assert _violations(response) == [("aks-workload-identity", MANDATORY)]
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        proc.stdout.close()
        proc.stderr.close()


def test_policy_pack_pins_match_the_program():
    """The pack's own virtualenv must run the same SDK versions as the program (one set of pins)."""
    from tests.conftest import ROOT

    def pins(path):
        return {
            line.split("==")[0].strip().lower(): line.split("==")[1].strip()
            for line in (ROOT / path).read_text().splitlines()
            if "==" in line and not line.lstrip().startswith("#")
        }

    pack, program = pins("policy/requirements.txt"), pins("requirements.txt")
    assert pack and all(program.get(name) == version for name, version in pack.items()), (pack, program)
