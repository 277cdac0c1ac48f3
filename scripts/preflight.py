"""Before `make up` touches anything: are the tools and the Azure login there?

Stdlib only (it runs before the venv exists). Exits non-zero with what to install or run.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main(stack: str) -> int:
    problems: list[str] = []
    stack_file = ROOT / f"Pulumi.{stack}.yaml"
    if not stack_file.is_file():
        problems.append(f"no stack file {stack_file.name}: choose STACK= one of "
                        + ", ".join(sorted(p.name[7:-5] for p in ROOT.glob("Pulumi.*.yaml"))))
    if sys.version_info < (3, 11):
        problems.append(f"Python 3.11+ is required (found {sys.version.split()[0]})")
    if shutil.which("pulumi") is None:
        problems.append("the Pulumi CLI is missing: install it (https://www.pulumi.com/docs/iac/download-install/)")
    if shutil.which("az") is None:
        problems.append("the Azure CLI is missing: install it (https://learn.microsoft.com/cli/azure/install-azure-cli)")
    elif subprocess.run(["az", "account", "show", "--output", "none"], capture_output=True).returncode != 0:
        problems.append("the Azure CLI is not logged in: run `az login` (and `az account set --subscription <id>`)")
    if stack_file.is_file() and needs_kubelogin(stack_file.read_text()) and shutil.which("kubelogin") is None:
        problems.append(
            f"stack {stack} disables local accounts, so the Kubernetes provider authenticates through kubelogin: "
            "install it (`az aks install-cli` or https://azure.github.io/kubelogin/install.html)"
        )
    for problem in problems:
        print(f"make up: {problem}", file=sys.stderr)
    return 1 if problems else 0


def needs_kubelogin(stack_yaml: str) -> bool:
    """Local accounts are off unless the stack turns them on (the config default is false)."""
    if re.search(r"^\s*aks-platform:kind:\s*hybrid\s*$", stack_yaml, re.M):
        return False
    return not re.search(r"^\s*localAccounts:\s*true\s*$", stack_yaml, re.M)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "dev"))
