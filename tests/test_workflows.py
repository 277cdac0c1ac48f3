"""The GitHub Actions workflows: who runs what, where, as whom, with which rights.

The workflows are parsed with PyYAML and checked for the properties docs/ci.md promises.
The stack resolution (`.github/workflows/stacks.yml`, the Python script of its `resolve` step)
is run for real, with the repository variables as its environment and the shipped stack
files. Not modelled: GitHub's evaluation of `if:` and `${{ }}` expressions (the tests check
which outputs and variables those expressions read, not what GitHub computes from them);
scripts/lint-workflows.sh validates the files against GitHub's schemas and with zizmor.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml

from tests.conftest import ROOT

WORKFLOWS_DIR = ROOT / ".github" / "workflows"
ACTIONS_DIR = ROOT / ".github" / "actions"
STACKS = sorted(p.name[len("Pulumi.") : -len(".yaml")] for p in ROOT.glob("Pulumi.*.yaml"))
HOSTED = "ubuntu-24.04"


def load(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text()) or {}


def workflow(name: str) -> dict[str, Any]:
    return load(WORKFLOWS_DIR / name)


def all_workflows() -> dict[str, dict[str, Any]]:
    return {p.name: load(p) for p in sorted(WORKFLOWS_DIR.glob("*.y*ml"))}


def calls(job: dict[str, Any], target: str) -> bool:
    """Whether a job calls the reusable workflow `target` of this repository."""
    return str(job.get("uses", "")).endswith(f"/.github/workflows/{target}")


def steps_using(job: dict[str, Any], action: str) -> list[dict[str, Any]]:
    return [s for s in job.get("steps") or [] if str(s.get("uses", "")).split("@")[0].endswith(action)]


def logs_in_to_azure(job: dict[str, Any]) -> bool:
    return bool(steps_using(job, "/.github/actions/setup-pulumi")) or calls(job, "pulumi-up.yml")


def run_scripts() -> Iterator[tuple[str, str]]:
    """Every `run:` script of the workflows and of the local composite actions."""
    for name, wf in all_workflows().items():
        for job_id, job in (wf.get("jobs") or {}).items():
            for step in job.get("steps") or []:
                if "run" in step:
                    yield f"{name}:{job_id}:{step.get('name')}", step["run"]
    for path in sorted(ACTIONS_DIR.glob("*/action.y*ml")):
        for step in (load(path).get("runs") or {}).get("steps") or []:
            if "run" in step:
                yield f"{path.relative_to(ROOT)}:{step.get('name')}", step["run"]


def resolve_step() -> dict[str, Any]:
    wf = workflow("stacks.yml")
    [step] = [s for s in wf["jobs"]["resolve"]["steps"] if s.get("id") == "resolve"]
    return step


def resolve(purpose: str, tmp_path: Path, **variables: str) -> tuple[int, dict[str, Any], str]:
    """Run stacks.yml's resolver as GitHub would: repository variables in its env, the repo as cwd."""
    step = resolve_step()
    assert step.get("shell") == "python"
    output = tmp_path / f"github-output-{purpose}-{len(list(tmp_path.iterdir()))}"
    output.write_text("")
    env = {k: v for k, v in os.environ.items() if k not in ("DEPLOY_STACKS", "PREVIEW_STACKS", "PULUMI_RUNNERS", "PULUMI_PREVIEW_RUNNERS")}
    env.update(PURPOSE=purpose, GITHUB_OUTPUT=str(output), **variables)
    done = subprocess.run(
        [sys.executable, "-c", step["run"]], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    outputs = {}
    for line in output.read_text().splitlines():
        key, _, value = line.partition("=")
        outputs[key] = json.loads(value)
    return done.returncode, outputs, done.stdout + done.stderr


def program_config(stack: str):
    """The program's own reading of a shipped stack (stacks/config.py)."""
    from offline.evaluate import stack_config
    from stacks.config import PROJECT
    from stacks.validation import load as load_config

    config, secret = stack_config(stack)
    prefix = f"{PROJECT}:"
    raw = {k[len(prefix) :]: v for k, v in config.items() if k.startswith(prefix)}
    return load_config(raw, frozenset(k[len(prefix) :] for k in secret if k.startswith(prefix)))


# --- where CI runs from ---------------------------------------------------------------------


def test_every_pulumi_job_takes_its_runner_from_the_resolved_stack():
    up = workflow("pulumi-up.yml")["jobs"]["up"]
    assert up["runs-on"] == "${{ fromJSON(inputs.runs-on) }}"

    deploy = workflow("deploy.yml")["jobs"]
    for job_id, job in deploy.items():
        if not calls(job, "pulumi-up.yml"):
            continue
        runs_on = job["with"]["runs-on"]
        stack = job["with"]["stack"]
        if stack == "${{ matrix.stack }}":
            assert runs_on == "${{ matrix.runs-on }}", job_id
            assert "needs.stacks.outputs." in job["strategy"]["matrix"]["include"], job_id
        else:
            assert runs_on == f"${{{{ fromJSON(needs.stacks.outputs.runners).{stack} }}}}", job_id

    preview = workflow("preview.yml")["jobs"]["preview"]
    assert preview["runs-on"] == "${{ fromJSON(matrix.runs-on) }}"
    assert preview["strategy"]["matrix"]["include"] == "${{ fromJSON(needs.stacks.outputs.matrix) }}"

    for name, purpose in (("deploy.yml", "deploy"), ("preview.yml", "preview")):
        stacks_job = workflow(name)["jobs"]["stacks"]
        assert calls(stacks_job, "stacks.yml") and stacks_job["with"] == {"purpose": purpose}, name


def test_resolver_reads_the_repository_variables():
    env = resolve_step()["env"]
    for variable in ("DEPLOY_STACKS", "PREVIEW_STACKS", "PULUMI_RUNNERS", "PULUMI_PREVIEW_RUNNERS"):
        assert env[variable] == f"${{{{ vars.{variable} }}}}"


def test_runner_comes_from_the_variable_of_each_stack(tmp_path):
    prod_runner = ["self-hosted", "linux", "aks-prod-egress"]
    code, out, log = resolve(
        "deploy", tmp_path, DEPLOY_STACKS="dev prod tenants", PULUMI_RUNNERS=json.dumps({"prod": prod_runner})
    )
    assert code == 0, log
    runners = {stack: json.loads(value) for stack, value in out["runners"].items()}
    assert runners == {"dev": HOSTED, "prod": prod_runner, "tenants": HOSTED}
    assert [(m["stack"], json.loads(m["runs-on"])) for m in out["matrix"]] == list(runners.items())

    # Previews read their own variable: the deploy runners are not reused for PR code.
    code, out, log = resolve(
        "preview",
        tmp_path,
        PREVIEW_STACKS="prod",
        PULUMI_RUNNERS=json.dumps({"prod": prod_runner}),
        PULUMI_PREVIEW_RUNNERS=json.dumps({"prod": "aks-prod-preview"}),
    )
    assert code == 0, log
    assert json.loads(out["runners"]["prod"]) == "aks-prod-preview"


@pytest.mark.parametrize("stack", STACKS)
@pytest.mark.parametrize("purpose, list_var, runners_var", [
    ("deploy", "DEPLOY_STACKS", "PULUMI_RUNNERS"),
    ("preview", "PREVIEW_STACKS", "PULUMI_PREVIEW_RUNNERS"),
])
def test_a_stack_with_authorized_ranges_needs_a_runner_inside_them(stack, purpose, list_var, runners_var, tmp_path):
    cfg = program_config(stack)
    ranges = cfg.cluster.api_server_authorized_ip_ranges if cfg.cluster else ()
    if purpose == "preview" and (cfg.kind == "hybrid" or (cfg.cluster and cfg.cluster.local_accounts)):
        pytest.skip("not previewable in Azure (test_preview_refuses_...)")

    code, out, log = resolve(purpose, tmp_path, **{list_var: stack})
    if ranges:
        assert code != 0
        assert f"{runners_var}: '{stack}' has no runner" in log
        assert "cluster.apiServerAuthorizedIpRanges" in log and ranges[0] in log
        code, _, log = resolve(purpose, tmp_path, **{list_var: stack, runners_var: json.dumps({stack: "ubuntu-latest"})})
        assert code != 0 and "GitHub-hosted" in log
    else:
        assert code == 0, log
        assert json.loads(out["runners"][stack]) == HOSTED


def test_the_shipped_prod_stack_cannot_deploy_from_github_hosted_runners(tmp_path):
    assert program_config("prod").cluster.api_server_authorized_ip_ranges
    code, _, log = resolve("deploy", tmp_path, DEPLOY_STACKS="dev prod")
    assert code != 0 and "PULUMI_RUNNERS: 'prod' has no runner" in log


def test_ci_never_patches_the_authorized_ranges():
    for where, script in run_scripts():
        assert "api-server-authorized-ip-ranges" not in script and "az aks update" not in script, where


# --- who previews, who deploys --------------------------------------------------------------


def test_preview_jobs_use_the_preview_identity_and_never_the_deploy_one():
    text = (WORKFLOWS_DIR / "preview.yml").read_text()
    assert not re.search(r"vars\.AZURE_CLIENT_ID\b", text)
    jobs = workflow("preview.yml")["jobs"]
    azure_jobs = [job for job in jobs.values() if logs_in_to_azure(job)]
    assert azure_jobs
    for job in azure_jobs:
        assert "environment" not in job  # subject repo:<owner>/<repo>:pull_request
        assert job["env"]["ARM_CLIENT_ID"] == "${{ vars.AZURE_PREVIEW_CLIENT_ID }}"
        [setup] = steps_using(job, "/.github/actions/setup-pulumi")
        assert setup["with"]["azure-client-id"] == "${{ vars.AZURE_PREVIEW_CLIENT_ID }}"


def test_the_deploy_identity_is_used_only_inside_the_stacks_environment():
    for name, wf in all_workflows().items():
        for job_id, job in (wf.get("jobs") or {}).items():
            text = yaml.safe_dump(job)
            if re.search(r"vars\.AZURE_CLIENT_ID\b", text):
                assert job.get("environment", {}).get("name") == "${{ inputs.stack }}", f"{name}:{job_id}"
            if name != "preview.yml":
                assert "AZURE_PREVIEW_CLIENT_ID" not in text, f"{name}:{job_id}"


def test_deploy_jobs_use_environment_scoped_credentials():
    up = workflow("pulumi-up.yml")["jobs"]["up"]
    assert up["environment"]["name"] == "${{ inputs.stack }}"
    assert up["env"]["ARM_CLIENT_ID"] == "${{ vars.AZURE_CLIENT_ID }}"
    [setup] = steps_using(up, "/.github/actions/setup-pulumi")
    assert setup["with"]["azure-client-id"] == "${{ vars.AZURE_CLIENT_ID }}"
    [pulumi] = steps_using(up, "pulumi/actions")
    assert pulumi["with"]["stack-name"] == "${{ inputs.stack }}"
    for job in workflow("deploy.yml")["jobs"].values():
        assert job.get("secrets") != "inherit"


@pytest.mark.parametrize("stack", STACKS)
def test_preview_refuses_stacks_a_read_only_identity_cannot_preview(stack, tmp_path):
    cfg = program_config(stack)
    needs_write = cfg.kind == "hybrid" or bool(cfg.cluster and cfg.cluster.local_accounts)
    runner = {stack: ["self-hosted", "egress"]}
    code, _, log = resolve("preview", tmp_path, PREVIEW_STACKS=stack, PULUMI_PREVIEW_RUNNERS=json.dumps(runner))
    if needs_write:
        assert code != 0 and f"PREVIEW_STACKS: '{stack}'" in log
    else:
        assert code == 0, log
    # Deploys are not affected by what a preview may not do.
    code, _, log = resolve("deploy", tmp_path, DEPLOY_STACKS=stack, PULUMI_RUNNERS=json.dumps(runner))
    assert code == 0, log


# --- what CI deploys ------------------------------------------------------------------------


def test_deploy_matrix_comes_from_the_enabling_variable(tmp_path):
    jobs = workflow("deploy.yml")["jobs"]
    deploying = {job_id: job for job_id, job in jobs.items() if calls(job, "pulumi-up.yml")}
    assert deploying
    for job_id, job in deploying.items():
        assert "stacks" in job["needs"] and "test" in job["needs"], job_id
        condition = str(job.get("if", ""))
        stack = job["with"]["stack"]
        if stack == "${{ matrix.stack }}":
            assert job["strategy"]["matrix"]["include"] == "${{ fromJSON(needs.stacks.outputs.others) }}"
            assert "needs.stacks.outputs.others != '[]'" in condition, job_id
        else:
            assert f"contains(fromJSON(needs.stacks.outputs.stacks), '{stack}')" in condition, job_id
    fixed = {job["with"]["stack"] for job in deploying.values()} - {"${{ matrix.stack }}"}
    assert fixed == {"dev", "prod"}

    # Unset: nothing is deployed (a fork does not deploy the shipped examples).
    code, out, log = resolve("deploy", tmp_path)
    assert code == 0 and out["stacks"] == [] and out["others"] == [], log
    assert "DEPLOY_STACKS is empty" in log
    code, out, log = resolve("deploy", tmp_path, DEPLOY_STACKS="dev,tenants  dev")
    assert code == 0, log
    assert out["stacks"] == ["dev", "tenants"]
    assert [m["stack"] for m in out["others"]] == ["tenants"]
    assert out["offline"] == [s for s in STACKS if s not in ("dev", "tenants")]


def test_resolver_names_each_bad_setting(tmp_path):
    code, _, log = resolve("deploy", tmp_path, DEPLOY_STACKS="dev staging")
    assert code != 0 and "DEPLOY_STACKS: 'staging' has no Pulumi.staging.yaml" in log
    code, _, log = resolve("deploy", tmp_path, DEPLOY_STACKS="dev", PULUMI_RUNNERS="prod=self-hosted")
    assert code != 0 and "PULUMI_RUNNERS: not JSON" in log
    code, _, log = resolve("deploy", tmp_path, DEPLOY_STACKS="dev", PULUMI_RUNNERS='{"prdo": "x", "dev": []}')
    assert code != 0
    assert "PULUMI_RUNNERS: 'prdo' names no stack" in log
    assert "PULUMI_RUNNERS: 'dev' must map to a runner label or a non-empty list of labels, got []" in log


def test_prod_deploys_after_dev_and_through_its_environment():
    prod = workflow("deploy.yml")["jobs"]["prod"]
    assert "dev" in prod["needs"]
    condition = " ".join(str(prod["if"]).split())
    assert "needs.dev.result == 'success' || needs.dev.result == 'skipped'" in condition
    assert "needs.test.result == 'success'" in condition
    assert "always()" not in condition
    assert prod["with"]["stack"] == "prod"


# --- hygiene --------------------------------------------------------------------------------

ALLOWED_PERMISSIONS = {"contents": "read", "id-token": "write", "pull-requests": "write"}


def test_permissions_are_least_privilege():
    for name, wf in all_workflows().items():
        assert wf.get("permissions") == {}, f"{name}: top-level permissions must be {{}}"
        for job_id, job in wf["jobs"].items():
            where = f"{name}:{job_id}"
            perms = job.get("permissions")
            assert isinstance(perms, dict), f"{where}: explicit permissions"
            for scope, level in perms.items():
                assert ALLOWED_PERMISSIONS.get(scope) == level, f"{where}: {scope}: {level}"
            if "id-token" in perms:
                assert logs_in_to_azure(job), f"{where}: id-token without an Azure login"
            if "pull-requests" in perms:
                assert any(s["with"].get("comment-on-pr") for s in steps_using(job, "pulumi/actions")), where
            if "uses" in job:  # a reusable workflow gets no more than its jobs ask for
                called = load(ROOT / job["uses"].removeprefix("$/"))
                asked: dict[str, str] = {}
                for called_job in called["jobs"].values():
                    asked.update(called_job.get("permissions") or {})
                assert perms == asked, where


def test_every_action_is_pinned_to_a_commit():
    files = sorted(WORKFLOWS_DIR.glob("*.y*ml")) + sorted(ACTIONS_DIR.glob("*/action.y*ml"))
    seen = 0
    for path in files:
        for number, line in enumerate(path.read_text().splitlines(), 1):
            match = re.match(r"^\s*(?:-\s+)?uses:\s*(\S+)(.*)$", line)
            if not match:
                continue
            seen += 1
            ref, rest = match.groups()
            where = f"{path.relative_to(ROOT)}:{number}"
            if ref.startswith("$/"):
                target = ROOT / ref[2:]
                assert target.is_file() or (target / "action.yml").is_file(), f"{where}: {ref} does not exist"
            else:
                assert re.fullmatch(r"[\w.-]+/[\w.-]+(/[\w./-]+)?@[0-9a-f]{40}", ref), f"{where}: {ref} not pinned to a SHA"
                assert re.match(r"\s*#\s*v\d", rest), f"{where}: the pinned version's tag as a comment"
    assert seen


UNTRUSTED = re.compile(r"\$\{\{[^}]*(github\.event\.|github\.head_ref|inputs\.|matrix\.|vars\.|needs\.)")


def test_no_expression_is_interpolated_into_a_run_script():
    scripts = list(run_scripts())
    assert scripts
    for where, script in scripts:
        # Values reach scripts through env:, never by template expansion into the script text.
        assert not UNTRUSTED.search(script), where
        assert "${{" not in script, where
