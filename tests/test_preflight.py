"""`make up` stops before touching anything when a tool or the Azure login is missing."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

sys.path.insert(0, str(ROOT / "scripts"))
import preflight  # noqa: E402


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


def test_each_missing_prerequisite_is_named(tmp_path):
    result = _run("prod", tmp_path)
    assert result.returncode == 1
    assert "Pulumi CLI is missing" in result.stderr
    assert "Azure CLI is missing" in result.stderr
    assert "kubelogin" in result.stderr


def test_logged_out_azure_cli_is_reported(tmp_path):
    _fake_tool(tmp_path, "pulumi")
    _fake_tool(tmp_path, "az", exit_code=1)
    result = _run("dev", tmp_path)
    assert result.returncode == 1 and "az login" in result.stderr
    assert "Pulumi CLI" not in result.stderr


def test_all_present_passes(tmp_path):
    for tool in ("pulumi", "az", "kubelogin"):
        _fake_tool(tmp_path, tool)
    assert _run("prod", tmp_path).returncode == 0
    assert _run("dev", tmp_path).returncode == 0


def test_unknown_stack_lists_the_shipped_ones(tmp_path):
    result = _run("staging", tmp_path)
    assert result.returncode == 1 and "dev, hybrid, kind, prod, tenants" in result.stderr
