"""`make kind STACK=<stack>`: a kind cluster whose service-account issuer the platform publishes.

Reads what it needs from ``Pulumi.<stack>.yaml`` (no Pulumi CLI, no Azure call):

* ``aks-platform:hybrid.serviceAccountPublicKeyPath``: where the public key goes; the
  private key is written beside it (same name, ``.key``), mode 0600. Both stay out of Git
  (``.kind/`` is in .gitignore). An existing pair is reused, so re-creating the cluster
  keeps its issuer and every federation stays valid;
* ``aks-platform:hybrid.kubeconfigPath``: where kind writes the cluster's kubeconfig;
* ``aks-platform:hybrid.context``: ``kind-<name>``, the cluster's name.

From the public key it derives the issuer URL (``components.oidc_issuer.issuer_url``, the
same function `pulumi up` publishes with), writes a kind config whose kube-apiserver signs
tokens with the key and names that issuer, and runs ``kind create cluster``. The steps
follow the Azure Workload Identity guide for kind
(https://azure.github.io/azure-workload-identity/docs/topics/self-managed-clusters/examples/kind.html).

    python scripts/kind_cluster.py STACK [--config-only]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from components.oidc_issuer import InvalidPublicKey, issuer_url, load_public_key  # noqa: E402

PROJECT = "aks-platform"
KEY_BITS = 2048  # what kubeadm generates for its own sa.key
# Where the node sees the key pair: kubeadm's own file names, so it uses them instead of
# generating a pair (the guide mounts them at the same paths).
NODE_PUBLIC_KEY = "/etc/kubernetes/pki/sa.pub"
NODE_PRIVATE_KEY = "/etc/kubernetes/pki/sa.key"
CONFIG_FILE = "kind-config.yaml"
CLUSTER_NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9]{0,38}[a-z0-9])?$")


class KindSetupError(Exception):
    """A problem with the stack file or the key files, stated for the user."""


@dataclass(frozen=True)
class KindStack:
    stack: str
    cluster_name: str
    public_key: Path
    private_key: Path
    kubeconfig: Path

    @property
    def config_file(self) -> Path:
        return self.public_key.parent / CONFIG_FILE


def read_stack(stack: str, root: Path = ROOT) -> KindStack:
    path = root / f"Pulumi.{stack}.yaml"
    if not path.is_file():
        raise KindSetupError(f"no stack file {path.name}: `make kind STACK=<stack>` needs Pulumi.<stack>.yaml")
    config = (yaml.safe_load(path.read_text()) or {}).get("config") or {}
    if config.get(f"{PROJECT}:kind") != "hybrid":
        raise KindSetupError(f"{path.name}: {PROJECT}:kind is {config.get(f'{PROJECT}:kind')!r}; allowed: 'hybrid'")
    hybrid = config.get(f"{PROJECT}:hybrid") or {}

    def required(key: str, allowed: str) -> str:
        value = hybrid.get(key)
        if not isinstance(value, str) or not value:
            raise KindSetupError(f"{path.name}: {PROJECT}:hybrid.{key} is {value!r}; allowed: {allowed}")
        return value

    public = required("serviceAccountPublicKeyPath", "a path for the public key, e.g. .kind/<stack>/sa.pub")
    if not public.endswith(".pub"):
        raise KindSetupError(f"{path.name}: {PROJECT}:hybrid.serviceAccountPublicKeyPath is {public!r}; allowed: a path ending in .pub")
    kubeconfig = required("kubeconfigPath", "a path for kind to write the kubeconfig to, e.g. .kind/<stack>/kubeconfig")
    context = required("context", "kind-<cluster name>")
    name = context[len("kind-"):] if context.startswith("kind-") else ""
    # kind cluster names become container names and DNS labels.
    if not CLUSTER_NAME_RE.fullmatch(name):
        raise KindSetupError(
            f"{path.name}: {PROJECT}:hybrid.context is {context!r}; allowed: kind-<name>, the name 1-40 lowercase "
            "letters, digits and hyphens (kind names the context kind-<cluster name>)"
        )

    def resolve(p: str) -> Path:
        expanded = Path(p).expanduser()
        return expanded if expanded.is_absolute() else (root / expanded)

    public_key = resolve(public)
    return KindStack(
        stack=stack,
        cluster_name=name,
        public_key=public_key,
        private_key=public_key.with_suffix(".key"),
        kubeconfig=resolve(kubeconfig),
    )


def ensure_key_pair(ks: KindStack) -> str:
    """The public key PEM: the existing pair's (checked to match), or a new pair's."""
    have_public, have_private = ks.public_key.is_file(), ks.private_key.is_file()
    if have_public != have_private:
        present, missing = (ks.public_key, ks.private_key) if have_public else (ks.private_key, ks.public_key)
        raise KindSetupError(
            f"{present} exists but {missing} does not: restore it, or delete {present} to start over with a new "
            "key pair (a new issuer URL: delete the old kind cluster too)"
        )
    if have_private:
        private = serialization.load_pem_private_key(ks.private_key.read_bytes(), password=None)
        public_pem = ks.public_key.read_text()
        try:
            public = load_public_key(public_pem)
        except InvalidPublicKey as err:
            raise KindSetupError(f"{ks.public_key}: {err}") from None
        if not isinstance(private, rsa.RSAPrivateKey) or private.public_key().public_numbers() != public.public_numbers():
            raise KindSetupError(f"{ks.private_key} and {ks.public_key} are not one key pair")
        return public_pem

    ks.public_key.parent.mkdir(parents=True, exist_ok=True)
    private = rsa.generate_private_key(public_exponent=65537, key_size=KEY_BITS)
    private_pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    # Created 0600 from the start: the signing key never exists readable by others.
    fd = os.open(ks.private_key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(private_pem)
    public_pem = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()
    ks.public_key.write_text(public_pem)
    return public_pem


def kind_config(ks: KindStack, issuer: str) -> dict[str, Any]:
    """kind's Cluster config: the key pair mounted where kubeadm looks, and the issuer flags.

    The kubeadm patch carries no apiVersion: kind applies an unversioned ClusterConfiguration
    patch to whichever kubeadm API the node version uses, converting map-style extraArgs for
    kubeadm v1beta4 (kubernetes-sigs/kind#4173).
    """
    cluster_configuration = {
        "kind": "ClusterConfiguration",
        "apiServer": {
            "extraArgs": {
                "service-account-issuer": issuer,
                "service-account-key-file": NODE_PUBLIC_KEY,
                "service-account-signing-key-file": NODE_PRIVATE_KEY,
            }
        },
        # Legacy token Secrets are signed by the controller manager: the same key.
        "controllerManager": {"extraArgs": {"service-account-private-key-file": NODE_PRIVATE_KEY}},
    }
    return {
        "kind": "Cluster",
        "apiVersion": "kind.x-k8s.io/v1alpha4",
        "name": ks.cluster_name,
        "nodes": [
            {
                "role": "control-plane",
                "extraMounts": [
                    {"hostPath": str(ks.public_key.resolve()), "containerPath": NODE_PUBLIC_KEY},
                    {"hostPath": str(ks.private_key.resolve()), "containerPath": NODE_PRIVATE_KEY},
                ],
                "kubeadmConfigPatches": [yaml.safe_dump(cluster_configuration, sort_keys=False)],
            }
        ],
    }


# run(argv, capture): capture=False streams kind's progress to the terminal.
Runner = Callable[[Sequence[str], bool], subprocess.CompletedProcess]


def _run(argv: Sequence[str], capture: bool) -> subprocess.CompletedProcess:
    return subprocess.run(list(argv), check=False, capture_output=capture, text=True)


def main(argv: Optional[Sequence[str]] = None, *, root: Path = ROOT, run: Runner = _run,
         which: Callable[[str], Optional[str]] = shutil.which) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("stack")
    parser.add_argument("--config-only", action="store_true", help="write the key pair and the kind config; do not run kind")
    args = parser.parse_args(argv)
    try:
        ks = read_stack(args.stack, root)
        public_pem = ensure_key_pair(ks)
    except KindSetupError as err:
        print(f"make kind: {err}", file=sys.stderr)
        return 1
    issuer = issuer_url(public_pem)
    ks.config_file.write_text(
        "# Written by `make kind STACK=" + ks.stack + "` (scripts/kind_cluster.py); regenerated on every run.\n"
        + yaml.safe_dump(kind_config(ks, issuer), sort_keys=False)
    )
    print(f"issuer: {issuer}")
    print(f"kind config: {ks.config_file}")
    if args.config_only:
        return 0
    if which("kind") is None:
        print("make kind: kind is missing: install it (https://kind.sigs.k8s.io/docs/user/quick-start/#installation)", file=sys.stderr)
        return 1
    clusters = run(["kind", "get", "clusters"], True)
    if clusters.returncode != 0:
        print(f"make kind: `kind get clusters` failed: {clusters.stderr.strip()}", file=sys.stderr)
        return 1
    if ks.cluster_name in clusters.stdout.split():
        print(
            f"kind cluster {ks.cluster_name} exists already; it keeps the issuer it was created with. "
            f"To re-create it: kind delete cluster --name {ks.cluster_name} && make kind STACK={ks.stack}"
        )
    else:
        ks.kubeconfig.parent.mkdir(parents=True, exist_ok=True)
        created = run(["kind", "create", "cluster", "--name", ks.cluster_name, "--config", str(ks.config_file),
                       "--kubeconfig", str(ks.kubeconfig)], False)
        if created.returncode != 0:
            print("make kind: `kind create cluster` failed (its output is above)", file=sys.stderr)
            return 1
    print(f"next: make up STACK={ks.stack}   (publishes the issuer, then installs the platform)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
