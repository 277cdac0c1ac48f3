"""`make kind STACK=<stack>`: a kind cluster whose service-account issuer the platform publishes.

Reads what it needs from ``Pulumi.<stack>.yaml`` (no Pulumi CLI, no Azure call):

* ``aks-platform:hybrid.serviceAccountPublicKeyPath``: where the public key goes; the
  private key is written beside it (same name, ``.key``), mode 0600. Both stay out of Git
  (``.kind/`` is in .gitignore). An existing pair is reused, so a re-created cluster keeps
  its issuer and the Azure federations stay valid; what ran on the old cluster does not
  (``make destroy`` first, or ``make forget-cluster`` after: docs/hybrid.md). A pair is
  never generated while the cluster exists: the running cluster's keys (from its API
  server) must match the local pair, or the script refuses and says what to do;
* ``aks-platform:hybrid.kubeconfigPath``: where kind writes the cluster's kubeconfig;
* ``aks-platform:hybrid.context``: ``kind-<name>``, the cluster's name.

From the public key it derives the issuer URL (``components.oidc_issuer.issuer_url``, the
same function `pulumi up` publishes with), writes a kind config whose kube-apiserver signs
tokens with the key and names that issuer, and runs ``kind create cluster`` (``kind``,
and ``kubectl`` when a cluster exists, from PATH). The steps
follow the Azure Workload Identity guide for kind
(https://azure.github.io/azure-workload-identity/docs/topics/self-managed-clusters/examples/kind.html).

    python scripts/kind_cluster.py STACK [--config-only]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from components.oidc_issuer import InvalidPublicKey, issuer_url, jwks_document, load_public_key  # noqa: E402

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
            f"key pair (a new issuer URL: make destroy STACK={ks.stack} and kind delete cluster --name "
            f"{ks.cluster_name} first)"
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

    No ``networking.apiServerPort``: kind binds a free host port, so another cluster has
    another API server URL, which is the stack's Kubernetes provider identity
    (stacks/hybrid.py): Pulumi sees a new cluster as a new cluster, never the old one's
    objects where there are none.
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


def _run(argv: Sequence[str], capture: bool = True) -> subprocess.CompletedProcess:
    """capture=False streams the tool's progress (kind create) to the terminal."""
    return subprocess.run(list(argv), check=False, capture_output=capture, text=True)


def _recreate_steps(ks: KindStack) -> str:
    """How to replace the cluster: the stack first, while the cluster still answers."""
    return (
        f"make destroy STACK={ks.stack} (if you ran `make up` against it: the GitOps layer and the "
        f"federations go in order while the cluster still answers), then kind delete cluster --name "
        f"{ks.cluster_name}, then make kind STACK={ks.stack}"
    )


def _node(ks: KindStack) -> str:
    return f"{ks.cluster_name}-control-plane"  # kind's name for the control-plane node container


def existing_clusters() -> set[str]:
    """The kind clusters on this machine (`kind get clusters`), or KindSetupError."""
    listed = _run(["kind", "get", "clusters"])
    if listed.returncode != 0:
        raise KindSetupError(f"`kind get clusters` failed: {listed.stderr.strip()}")
    return set(listed.stdout.split())


def cluster_signing(ks: KindStack) -> tuple[str, list[dict[str, Any]]]:
    """What the running cluster's API server serves: its issuer and the keys of its JWKS.

    From the API server itself (`/.well-known/openid-configuration`, `/openid/v1/jwks`), not
    from the key files on the node: the server loaded its keys when it started, and the
    files may have changed since (they are mounted from `.kind/`). The kubeconfig comes from
    `kind get kubeconfig`, so this works even when `.kind/<stack>/` is gone.
    """
    if shutil.which("kubectl") is None:
        raise KindSetupError(
            f"kubectl is missing: it is needed to compare the signing key of the running cluster "
            f"{ks.cluster_name} with {ks.public_key} (https://kubernetes.io/docs/tasks/tools/)"
        )
    exported = _run(["kind", "get", "kubeconfig", "--name", ks.cluster_name])
    if exported.returncode != 0:
        raise KindSetupError(f"`kind get kubeconfig --name {ks.cluster_name}` failed: {exported.stderr.strip()}")
    with tempfile.TemporaryDirectory() as tmp:
        kubeconfig = Path(tmp) / "kubeconfig"
        fd = os.open(kubeconfig, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)  # it holds a client key
        with os.fdopen(fd, "w") as f:
            f.write(exported.stdout)
        documents = {}
        for path in ("/.well-known/openid-configuration", "/openid/v1/jwks"):
            got = _run(["kubectl", "--kubeconfig", str(kubeconfig), "get", "--raw", path])
            if got.returncode != 0:
                raise KindSetupError(
                    f"could not read {path} from kind cluster {ks.cluster_name} ({got.stderr.strip()}): is it "
                    "running? (`docker ps`; after a restart its API server needs a minute) Then run make kind again"
                )
            try:
                documents[path] = json.loads(got.stdout)
            except json.JSONDecodeError:
                raise KindSetupError(f"kind cluster {ks.cluster_name} answered {path} with something that is not JSON") from None
    return documents["/.well-known/openid-configuration"].get("issuer", ""), documents["/openid/v1/jwks"].get("keys", [])


def check_cluster_signs_with(ks: KindStack, public_pem: str) -> None:
    """Refuse when the running cluster signs with another key, or names another issuer, than
    the local pair: `make up` publishes the local key's issuer, which Entra would then match
    against tokens the cluster signed with a key it does not publish (AADSTS700211)."""
    served_issuer, served_keys = cluster_signing(ks)
    (local,) = json.loads(jwks_document(public_pem))["keys"]
    signs_with_local = any((k.get("kty"), k.get("n"), k.get("e")) == ("RSA", local["n"], local["e"]) for k in served_keys)
    expected_issuer = issuer_url(public_pem)
    if signs_with_local and served_issuer == expected_issuer:
        return
    served_kids = ", ".join(sorted(str(k.get("kid")) for k in served_keys)) or "none"
    problem = (
        f"signs with another key (key id {served_kids}) than {ks.public_key} (key id {local['kid']})"
        if not signs_with_local
        else f"names the issuer {served_issuer!r}, not {expected_issuer!r} (the one this key publishes)"
    )
    raise KindSetupError(
        f"kind cluster {ks.cluster_name} {problem}: `make up` would publish an issuer the cluster does not sign "
        f"for, and every token exchange would fail (Entra ID AADSTS700211). Put back the key pair the cluster was "
        f"created with (the node still has it: docker exec {_node(ks)} cat {NODE_PRIVATE_KEY} > {ks.private_key}; "
        f"the same for {NODE_PUBLIC_KEY} > {ks.public_key}), or re-create the cluster: {_recreate_steps(ks)}"
    )


def _api_server(kubeconfig: Path, context: str) -> Optional[str]:
    """The server of `context` in a kubeconfig file, or None (no file, no such context)."""
    try:
        doc = yaml.safe_load(kubeconfig.read_text()) or {}
        cluster = next(c["context"]["cluster"] for c in doc.get("contexts") or [] if c.get("name") == context)
        return next(c["cluster"]["server"] for c in doc.get("clusters") or [] if c.get("name") == cluster)
    except (OSError, yaml.YAMLError, StopIteration, KeyError, TypeError):
        return None


def _write_config(ks: KindStack, public_pem: str) -> str:
    issuer = issuer_url(public_pem)
    ks.config_file.parent.mkdir(parents=True, exist_ok=True)
    ks.config_file.write_text(
        "# Written by `make kind STACK=" + ks.stack + "` (scripts/kind_cluster.py); regenerated on every run.\n"
        + yaml.safe_dump(kind_config(ks, issuer), sort_keys=False)
    )
    print(f"issuer: {issuer}")
    print(f"kind config: {ks.config_file}")
    return issuer


def main(argv: Optional[Sequence[str]] = None, *, root: Path = ROOT) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("stack")
    parser.add_argument(
        "--config-only", action="store_true",
        help="write the key pair and the kind config; do not create the cluster (an existing one is still checked "
        "when kind is installed)",
    )
    args = parser.parse_args(argv)
    try:
        ks = read_stack(args.stack, root)
        if shutil.which("kind") is None:
            if not args.config_only:
                raise KindSetupError("kind is missing: install it (https://kind.sigs.k8s.io/docs/user/quick-start/#installation)")
            exists = False  # no kind, no kind cluster to compare with
        else:
            exists = ks.cluster_name in existing_clusters()
        if exists:
            # Never a new pair under a running cluster: it would name an issuer the cluster
            # does not sign for. The pair must be the cluster's, or the cluster must go first.
            if not ks.public_key.is_file() and not ks.private_key.is_file():
                raise KindSetupError(
                    f"kind cluster {ks.cluster_name} exists but its key pair is not in {ks.public_key.parent} "
                    f"(a new pair would be another issuer than the one the cluster signs for). Put it back from the "
                    f"node: mkdir -p {ks.public_key.parent} && docker exec {_node(ks)} cat {NODE_PUBLIC_KEY} > "
                    f"{ks.public_key} && (umask 077; docker exec {_node(ks)} cat {NODE_PRIVATE_KEY} > {ks.private_key}), "
                    f"then make kind STACK={ks.stack} again; or re-create the cluster: {_recreate_steps(ks)}"
                )
            public_pem = ensure_key_pair(ks)
            check_cluster_signs_with(ks, public_pem)
        else:
            public_pem = ensure_key_pair(ks)
    except KindSetupError as err:
        print(f"make kind: {err}", file=sys.stderr)
        return 1
    _write_config(ks, public_pem)
    if exists:
        print(
            f"kind cluster {ks.cluster_name} exists already and signs with this key. To re-create it: "
            f"{_recreate_steps(ks)}"
        )
    elif args.config_only:
        return 0
    else:
        context = f"kind-{ks.cluster_name}"
        # The stack's kubeconfig file outlives `kind delete cluster` (which at most removes
        # its entries, and only with --kubeconfig): an earlier cluster of this name ran here.
        # Its server, if still listed, is the provider identity Pulumi's state knows.
        recreated = ks.kubeconfig.exists()
        earlier = _api_server(ks.kubeconfig, context) or "unknown"
        ks.kubeconfig.parent.mkdir(parents=True, exist_ok=True)
        created = _run(["kind", "create", "cluster", "--name", ks.cluster_name, "--config", str(ks.config_file),
                        "--kubeconfig", str(ks.kubeconfig)], capture=False)
        if created.returncode != 0:
            print("make kind: `kind create cluster` failed (its output is above)", file=sys.stderr)
            return 1
        if recreated:
            now = _api_server(ks.kubeconfig, context)
            print(
                f"kind cluster {ks.cluster_name} was re-created (API server {earlier} before, {now} now). If "
                f"`make up STACK={ks.stack}` ran against the old cluster, the stack still records its objects on a "
                f"cluster that is gone, and `make up` or `make destroy` would fail deleting them. First:\n"
                f"  make forget-cluster STACK={ks.stack}   (drops the old cluster's objects from the state; "
                f"confirm the deletes it previews)\n"
                f"next: make up STACK={ks.stack}   (installs everything on the new cluster; the issuer and the "
                f"federations stay as they are: same key)"
            )
            return 0
    print(f"next: make up STACK={ks.stack}   (publishes the issuer, then installs the platform)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
