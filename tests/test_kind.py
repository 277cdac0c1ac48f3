"""A kind cluster with workload identity and no secret: `make kind` + the published issuer.

The key pair is generated here as `make kind` generates it (scripts/kind_cluster.py, into a
temporary copy of the project's stack file), then the real program runs on the shipped
Pulumi.kind.yaml pointed at those files. What is checked is what Entra ID and the API
server would do with the result: a token signed with the private key, carrying the `kid`
kube-apiserver computes, verifies against the JWKS the program uploads (PyJWT); the issuer
is one string in the kind config, the discovery document and every federation; another
key gets another kid, JWKS and issuer; and the only anonymously readable storage is the two
discovery documents. `make kind` itself runs against kind and kubectl stand-ins on PATH
(the `machine` fixture): creating, re-creating, and refusing a running cluster whose
served keys or issuer are not the local pair's.
"""

from __future__ import annotations

import base64
import copy
import json
import shutil
import stat
import subprocess
import time
from pathlib import Path
from typing import Any

import jwt
import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from components import oidc_issuer
from components.gitops_bridge import ANN_OIDC_ISSUER_URL, CLUSTER_SECRET_NAME
from components.identity import AUDIENCE
from offline.evaluate import Evaluation, stack_config
from policy import rules
from scripts import kind_cluster
from stacks.config import ConfigError
from tests.conftest import ROOT, run_program

FIC = "azure-native:managedidentity:FederatedIdentityCredential"
ACCOUNT = "azure-native:storage:StorageAccount"
CONTAINER = "azure-native:storage:BlobContainer"
BLOB = "azure-native:storage:Blob"
K8S_SECRET = "kubernetes:core/v1:Secret"
MODES = [pytest.param(False, id="update"), pytest.param(True, id="preview")]


@pytest.fixture
def project(tmp_path) -> Path:
    """A project directory with the shipped kind stack file, as `make kind` sees it."""
    shutil.copy(ROOT / "Pulumi.kind.yaml", tmp_path / "Pulumi.kind.yaml")
    return tmp_path


@pytest.fixture
def made(project) -> kind_cluster.KindStack:
    """`make kind STACK=kind --config-only` run in `project`: key pair and kind config."""
    assert kind_cluster.main(["kind", "--config-only"], root=project) == 0
    return kind_cluster.read_stack("kind", project)


def kind_stack_config(made: kind_cluster.KindStack) -> tuple[dict[str, Any], list[str]]:
    """The shipped kind stack's config with the key `make kind` wrote (and the offline kubeconfig)."""
    config, secret = stack_config("kind")
    config = copy.deepcopy(config)
    config["aks-platform:hybrid"]["serviceAccountPublicKeyPath"] = str(made.public_key)
    return config, secret


def run_kind(made: kind_cluster.KindStack, preview: bool = False) -> Evaluation:
    config, secret = kind_stack_config(made)
    return run_program(config, secret, preview=preview, stack="kind")


def blob_text(ev: Evaluation, path: str) -> str:
    (blob,) = [b for b in ev.by_type(BLOB) if b.plain("blobName") == path]
    return blob.plain("source")["text"]


def apiserver_flags(made: kind_cluster.KindStack) -> dict[str, str]:
    config = yaml.safe_load(made.config_file.read_text())
    (node,) = config["nodes"]
    (patch,) = node["kubeadmConfigPatches"]
    return yaml.safe_load(patch)["apiServer"]["extraArgs"]


def kube_token(private_key: rsa.RSAPrivateKey, issuer: str, subject: str, kid: str) -> str:
    """A projected service-account token as kube-apiserver issues it (RS256, kid header)."""
    now = int(time.time())
    claims = {"iss": issuer, "sub": subject, "aud": [AUDIENCE], "iat": now, "nbf": now, "exp": now + 3600}
    return jwt.encode(claims, private_key, algorithm="RS256", headers={"kid": kid})


def kubernetes_key_id(public_key: rsa.RSAPublicKey) -> str:
    """kubernetes/kubernetes pkg/serviceaccount/jwt.go keyIDFromPublicKey, restated."""
    import hashlib

    der = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.urlsafe_b64encode(hashlib.sha256(der).digest()).rstrip(b"=").decode()


# --- make kind ------------------------------------------------------------------------------


def test_make_kind_generates_a_private_key_only_the_user_can_read(made):
    private = serialization.load_pem_private_key(made.private_key.read_bytes(), password=None)
    assert isinstance(private, rsa.RSAPrivateKey) and private.key_size >= 2048
    assert stat.S_IMODE(made.private_key.stat().st_mode) == 0o600
    public = serialization.load_pem_public_key(made.public_key.read_bytes())
    assert public.public_numbers() == private.public_key().public_numbers()
    # Kept out of Git: the directory is ignored.
    assert made.public_key.relative_to(made.public_key.parents[1]).parts[0] == "kind"
    ignored = subprocess.run(["git", "check-ignore", "-q", ".kind/kind/sa.key"], cwd=ROOT)
    assert ignored.returncode == 0, ".kind/ must be in .gitignore"


def test_kind_config_makes_the_api_server_sign_with_the_key_and_name_the_published_issuer(made):
    config = yaml.safe_load(made.config_file.read_text())
    assert (config["kind"], config["apiVersion"]) == ("Cluster", "kind.x-k8s.io/v1alpha4")
    (node,) = config["nodes"]
    mounts = {m["containerPath"]: Path(m["hostPath"]) for m in node["extraMounts"]}
    flags = apiserver_flags(made)
    assert mounts[flags["service-account-signing-key-file"]] == made.private_key.resolve()
    assert mounts[flags["service-account-key-file"]] == made.public_key.resolve()
    assert all(p.is_absolute() for p in mounts.values())  # kind requires absolute host paths
    assert flags["service-account-issuer"] == oidc_issuer.issuer_url(made.public_key.read_text())
    (patch,) = node["kubeadmConfigPatches"]
    assert "apiVersion" not in yaml.safe_load(patch)  # unversioned: kind converts it per kubeadm API


def test_make_kind_again_keeps_the_key_and_so_the_issuer(project, made):
    before = (made.private_key.read_bytes(), apiserver_flags(made))
    assert kind_cluster.main(["kind", "--config-only"], root=project) == 0
    assert (made.private_key.read_bytes(), apiserver_flags(made)) == before


def test_a_half_or_mismatched_key_pair_is_refused(project, made, capsys):
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    made.public_key.write_bytes(
        other.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    assert kind_cluster.main(["kind", "--config-only"], root=project) == 1
    assert "are not one key pair" in capsys.readouterr().err
    made.public_key.unlink()
    assert kind_cluster.main(["kind", "--config-only"], root=project) == 1
    assert f"{made.private_key} exists but {made.public_key} does not" in capsys.readouterr().err


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda h: h.update(context="platform"), "aks-platform:hybrid.context is 'platform'; allowed: kind-<name>"),
        (lambda h: h.pop("serviceAccountPublicKeyPath"), "aks-platform:hybrid.serviceAccountPublicKeyPath is None"),
        (lambda h: h.pop("kubeconfigPath"), "aks-platform:hybrid.kubeconfigPath is None"),
    ],
)
def test_the_script_names_the_stack_key_it_cannot_use(project, change, message, capsys):
    path = project / "Pulumi.kind.yaml"
    doc = yaml.safe_load(path.read_text())
    change(doc["config"]["aks-platform:hybrid"])
    path.write_text(yaml.safe_dump(doc))
    assert kind_cluster.main(["kind", "--config-only"], root=project) == 1
    assert message in capsys.readouterr().err
    assert not (project / ".kind").exists()  # nothing half-created


# Stand-ins for kind and kubectl on PATH, with a state directory as their "machine": which
# clusters exist, what the cluster's API server serves. They do what the real tools do with
# the arguments the script passes (kind create writes the kubeconfig with a fresh host port).
KIND_STUB = r"""#!{python}
import json, os, sys
from pathlib import Path
state = Path(os.environ["KIND_STUB_STATE"])
with open(state / "calls", "a") as log:
    log.write(json.dumps(["kind", *sys.argv[1:]]) + "\n")
clusters = state / "clusters"
names = clusters.read_text().split() if clusters.exists() else []
args = sys.argv[1:]
if args[:2] == ["get", "clusters"]:
    print("\n".join(names)) if names else print("No kind clusters found.", file=sys.stderr)
elif args[:2] == ["get", "kubeconfig"]:
    print((state / "exported-kubeconfig").read_text())
elif args[:2] == ["create", "cluster"]:
    name, kubeconfig = args[args.index("--name") + 1], Path(args[args.index("--kubeconfig") + 1])
    port = state / "port"
    number = int(port.read_text()) + 1 if port.exists() else 40001
    port.write_text(str(number))
    context = "kind-" + name
    kubeconfig.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": context,
        "clusters": [{"name": context, "cluster": {"server": f"https://127.0.0.1:{number}"}}],
        "contexts": [{"name": context, "context": {"cluster": context, "user": context}}],
        "users": [{"name": context, "user": {"token": "t"}}],
    }))
    clusters.write_text("\n".join([*names, name]))
"""

KUBECTL_STUB = r"""#!{python}
import os, sys
from pathlib import Path
state = Path(os.environ["KIND_STUB_STATE"])
args = sys.argv[1:]
assert args[0] == "--kubeconfig" and Path(args[1]).is_file() and args[2:4] == ["get", "--raw"], args
served = state / ("served-jwks" if args[4] == "/openid/v1/jwks" else "served-discovery")
if (state / "unreachable").exists() or not served.exists():
    print("The connection to the server 127.0.0.1:40001 was refused", file=sys.stderr)
    sys.exit(1)
print(served.read_text())
"""


class Machine:
    """The stubs' state: clusters, what the API server serves, the calls made."""

    def __init__(self, root: Path):
        self.root = root

    def clusters(self, *names: str) -> None:
        (self.root / "clusters").write_text("\n".join(names))

    def delete_cluster(self, name: str) -> None:
        """`kind delete cluster --name <name>` (the stack's kubeconfig file stays)."""
        self.clusters(*[n for n in (self.root / "clusters").read_text().split() if n != name])

    def serves(self, public_key: rsa.RSAPublicKey, issuer: str) -> None:
        """What kube-apiserver serves for a cluster signing with `public_key` under `issuer`:
        built with PyJWT's JWK encoder and Kubernetes' key id, not the project's own code."""
        jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(public_key))
        jwk.update(use="sig", alg="RS256", kid=kubernetes_key_id(public_key))
        (self.root / "served-jwks").write_text(json.dumps({"keys": [jwk]}))
        (self.root / "served-discovery").write_text(json.dumps({"issuer": issuer, "jwks_uri": f"{issuer}/openid/v1/jwks"}))
        (self.root / "exported-kubeconfig").write_text("apiVersion: v1\nkind: Config\n")

    def calls(self) -> list[list[str]]:
        log = self.root / "calls"
        return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


@pytest.fixture(autouse=True)
def machine(tmp_path_factory, monkeypatch) -> Machine:
    """kind and kubectl stubs first on PATH for every test here: no real cluster is ever asked."""
    import os
    import sys

    state = tmp_path_factory.mktemp("machine")
    bin_dir = state / "bin"
    bin_dir.mkdir()
    for name, text in (("kind", KIND_STUB), ("kubectl", KUBECTL_STUB)):
        (bin_dir / name).write_text(text.replace("{python}", sys.executable))
        (bin_dir / name).chmod(0o755)
    monkeypatch.setenv("KIND_STUB_STATE", str(state))
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    return Machine(state)


def test_make_kind_creates_the_cluster_with_the_config_and_the_stack_kubeconfig(project, machine, capsys):
    machine.clusters("other")
    assert kind_cluster.main(["kind"], root=project) == 0
    ks = kind_cluster.read_stack("kind", project)
    assert machine.calls()[-1] == [
        "kind", "create", "cluster", "--name", "platform-wi", "--config", str(ks.config_file),
        "--kubeconfig", str(ks.kubeconfig),
    ]
    out = capsys.readouterr().out
    assert "next: make up STACK=kind" in out and "re-created" not in out
    # The stack's context is the one kind names after the cluster.
    config, _ = stack_config("kind")
    assert config["aks-platform:hybrid"]["context"] == "kind-platform-wi"


def test_a_missing_kind_is_named(project, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PATH", str(tmp_path / "nothing-here"))
    assert kind_cluster.main(["kind"], root=project) == 1
    assert "kind is missing" in capsys.readouterr().err


def test_kind_config_leaves_the_api_server_port_to_kind(made):
    """A new cluster gets a new API server URL, so the stack's provider identity changes with
    it (stacks/hybrid.py): Pulumi never takes a new cluster for the old one."""
    config = yaml.safe_load(made.config_file.read_text())
    assert "apiServerPort" not in (config.get("networking") or {})
    assert "networking" not in config


def _server(kubeconfig: Path) -> str:
    from stacks.hybrid import api_server

    return api_server(kubeconfig.read_text(), "kind-platform-wi")


def test_re_creating_the_cluster_says_to_forget_the_old_one_first(project, machine, capsys):
    assert kind_cluster.main(["kind"], root=project) == 0
    ks = kind_cluster.read_stack("kind", project)
    first = _server(ks.kubeconfig)
    capsys.readouterr()
    machine.delete_cluster("platform-wi")
    assert kind_cluster.main(["kind"], root=project) == 0
    second = _server(ks.kubeconfig)
    assert first != second  # kind bound another host port: the provider identity changed
    out = capsys.readouterr().out
    assert f"was re-created (API server {first} before, {second} now)" in out
    # The way through, in order: drop the lost cluster's objects, then up.
    assert out.index("make forget-cluster STACK=kind") < out.index("next: make up STACK=kind")
    # The same key, so the same issuer in the new cluster's config.
    assert apiserver_flags(ks)["service-account-issuer"] == oidc_issuer.issuer_url(ks.public_key.read_text())


@pytest.mark.skipif(shutil.which("make") is None, reason="GNU make is not installed")
def test_forget_cluster_refreshes_with_unreachable_objects_dropped():
    """pulumi-kubernetes drops an unreachable cluster's objects from the state only with
    PULUMI_K8S_DELETE_UNREACHABLE (pulumi/pulumi-kubernetes#2037, #2489), and deletes a Helm
    Release on one never (#2675): so a refresh with it, never an up or destroy with it."""
    dry = subprocess.run(["make", "-n", "--no-print-directory", "-C", str(ROOT), "forget-cluster", "STACK=kind",
                          "PY=python", "PYTHON=python"], capture_output=True, text=True, timeout=30)
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.splitlines()[-1] == "PULUMI_K8S_DELETE_UNREACHABLE=true pulumi refresh --stack kind"


def test_an_existing_cluster_that_signs_with_the_key_is_left_alone(project, made, machine, capsys):
    public = serialization.load_pem_public_key(made.public_key.read_bytes())
    machine.clusters("platform-wi")
    machine.serves(public, oidc_issuer.issuer_url(made.public_key.read_text()))
    capsys.readouterr()
    (machine.root / "calls").unlink()
    assert kind_cluster.main(["kind"], root=project) == 0
    assert [c[1:3] for c in machine.calls()] == [["get", "clusters"], ["get", "kubeconfig"]]  # nothing created
    out = capsys.readouterr().out
    assert "exists already and signs with this key" in out
    # Re-creating it: the stack first, while the cluster still answers.
    assert out.index("make destroy STACK=kind") < out.index("kind delete cluster --name platform-wi")


@pytest.mark.parametrize("config_only", [False, True], ids=["make-kind", "config-only"])
def test_a_running_cluster_without_its_key_pair_is_refused_and_no_pair_is_generated(project, machine, capsys, config_only):
    machine.clusters("platform-wi")
    assert kind_cluster.main(["kind", *(["--config-only"] if config_only else [])], root=project) == 1
    err = capsys.readouterr().err
    assert "kind cluster platform-wi exists but its key pair is not in" in err
    # What to do: put the pair back from the node, or re-create in order.
    assert "docker exec platform-wi-control-plane cat /etc/kubernetes/pki/sa.key" in err
    assert err.index("make destroy STACK=kind") < err.index("kind delete cluster --name platform-wi")
    assert not (project / ".kind" / "kind" / "sa.pub").exists() and not (project / ".kind" / "kind" / "sa.key").exists()
    assert not any(c[1] == "create" for c in machine.calls())


def test_a_running_cluster_that_signs_with_another_key_is_refused(project, made, machine, capsys):
    """`.kind/kind/` deleted and re-made while the cluster runs: make up would publish an
    issuer the running API server does not sign for."""
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
    machine.clusters("platform-wi")
    machine.serves(other, oidc_issuer.issuer_url(
        other.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)))
    before = made.config_file.read_text()
    capsys.readouterr()
    assert kind_cluster.main(["kind"], root=project) == 1
    err = capsys.readouterr().err
    assert f"signs with another key (key id {kubernetes_key_id(other)})" in err
    assert "AADSTS700211" in err and "docker exec platform-wi-control-plane cat /etc/kubernetes/pki/sa.key" in err
    assert made.config_file.read_text() == before


def test_a_running_cluster_that_names_another_issuer_is_refused(project, made, machine, capsys):
    """Same key, other issuer: a cluster of this name made by hand (plain `kind create cluster`
    with these files, or an old config)."""
    public = serialization.load_pem_public_key(made.public_key.read_bytes())
    machine.clusters("platform-wi")
    machine.serves(public, "https://kubernetes.default.svc.cluster.local")
    assert kind_cluster.main(["kind"], root=project) == 1
    assert "names the issuer 'https://kubernetes.default.svc.cluster.local'" in capsys.readouterr().err


def test_a_running_cluster_that_cannot_be_asked_is_refused(project, made, machine, tmp_path, monkeypatch, capsys):
    machine.clusters("platform-wi")
    (machine.root / "unreachable").write_text("")
    (machine.root / "exported-kubeconfig").write_text("apiVersion: v1\nkind: Config\n")
    assert kind_cluster.main(["kind"], root=project) == 1
    assert "could not read /.well-known/openid-configuration from kind cluster platform-wi" in capsys.readouterr().err
    # Without kubectl the comparison is impossible: named, not skipped.
    (machine.root / "bin" / "kubectl").unlink()
    monkeypatch.setenv("PATH", str(machine.root / "bin"))
    assert kind_cluster.main(["kind"], root=project) == 1
    assert "kubectl is missing" in capsys.readouterr().err


# --- the published issuer -------------------------------------------------------------------


def test_key_id_is_the_one_kubernetes_computes_for_upstream_s_example_key():
    """The JWKS example in the Azure Workload Identity docs (self-managed clusters > JWKS)
    was produced by `azwi jwks` with the Kubernetes key ID: same n/e -> same kid here."""
    n = (
        "ywg7HeKIFX3vleVKZHeYoNpuLHIDisnczYXrUdIGCNilCJFA1ymjG2UAADnt_FpYUsCVyKYJTqcxNbK4boNg_P3uK39OAqXabwYrilEZ"
        "vsVJQKhzn8dXLeqAnM98L8eBpySU208KTsfMkS3Q6lqwurUP7c_a3g_1XRJukz_EmQxg9jLD_fQd5VwPTEo8HJQIFqIxFWzjTkkK5hbc"
        "L9Cclkf6RpeRyjh7Vem57Fu-jAlxDUiYiqyieM4OBNm4CQjiqDE8_xOC8viNpHNw542MYVDKSRnYui31lCOj32wBDphczR8BbnrZgbqN"
        "3K_zzB3gIjcGbWbbGA5xKJYqSu5uRwN89_CWrT3vGw5RN3XQPSbhGC4smgZkOCw3N9i1b-x-rrd-mRse6F95ONaoslCJUbJvxvDdb5X0"
        "P4_CVZRwJvUyP3OJ44ZvwzshA-zilG-QC9E1j2R9DTSMqOJzUuOxS0JIvoboteI1FAByV9KyU948zQRM7r7MMZYBKWIsu6h7"
    )
    modulus = int.from_bytes(base64.urlsafe_b64decode(n + "=" * (-len(n) % 4)), "big")
    key = rsa.RSAPublicNumbers(65537, modulus).public_key()
    assert oidc_issuer.key_id(key) == "Me5VC6i4_4mymFj7T5rcUftFjYX70YoCfSnZB6-nBY4"
    pem = key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    (jwk,) = json.loads(oidc_issuer.jwks_document(pem))["keys"]
    assert (jwk["n"], jwk["e"], jwk["kid"]) == (n, "AQAB", "Me5VC6i4_4mymFj7T5rcUftFjYX70YoCfSnZB6-nBY4")


@pytest.mark.parametrize("preview", MODES)
def test_a_token_signed_with_the_private_key_verifies_against_the_published_jwks(made, preview):
    ev = run_kind(made, preview)
    published = jwt.PyJWKSet.from_json(blob_text(ev, oidc_issuer.JWKS_PATH))
    discovery = json.loads(blob_text(ev, oidc_issuer.DISCOVERY_PATH))
    issuer = discovery["issuer"]
    assert discovery["jwks_uri"] == f"{issuer}/{oidc_issuer.JWKS_PATH}"
    private = serialization.load_pem_private_key(made.private_key.read_bytes(), password=None)
    subject = "system:serviceaccount:webapp-aso:uploads"
    token = kube_token(private, issuer, subject, kubernetes_key_id(private.public_key()))

    # What Entra ID does: pick the key by the token's kid, verify signature, issuer, audience.
    kid = jwt.get_unverified_header(token)["kid"]
    (key,) = [k for k in published.keys if k.key_id == kid]
    claims = jwt.decode(token, key.key, algorithms=discovery["id_token_signing_alg_values_supported"],
                        audience=AUDIENCE, issuer=issuer)
    assert claims["sub"] == subject

    # Another cluster (another key pair): the project publishes another JWKS and issuer for
    # it, and its tokens (kid as kube-apiserver computes it) find no key in this stack's JWKS,
    # so Entra has nothing to verify them with; nor does any federation name its issuer.
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    stranger_pem = stranger.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    (theirs,) = json.loads(oidc_issuer.jwks_document(stranger_pem))["keys"]
    (ours,) = json.loads(blob_text(ev, oidc_issuer.JWKS_PATH))["keys"]
    assert theirs["kid"] == kubernetes_key_id(stranger.public_key()) != ours["kid"] == kid
    assert (theirs["n"], theirs["e"]) != (ours["n"], ours["e"])
    forged = kube_token(stranger, issuer, subject, kubernetes_key_id(stranger.public_key()))
    assert [k for k in published.keys if k.key_id == jwt.get_unverified_header(forged)["kid"]] == []
    federated = {f.plain("issuer") for f in ev.by_type(FIC)}
    assert federated == {issuer} and oidc_issuer.issuer_url(stranger_pem) not in federated


@pytest.mark.parametrize("preview", MODES)
def test_the_issuer_url_is_one_string_everywhere(made, preview):
    ev = run_kind(made, preview)
    kind_issuer = apiserver_flags(made)["service-account-issuer"]
    discovery = json.loads(blob_text(ev, oidc_issuer.DISCOVERY_PATH))
    fics = ev.by_type(FIC)
    # Both controllers (ASO, Crossplane providers) are federated, and only to that issuer.
    assert {f.plain("subject").split(":")[2] for f in fics} == {"azureserviceoperator-system", "crossplane-system"}
    assert {f.plain("issuer") for f in fics} == {kind_issuer}
    assert discovery["issuer"] == kind_issuer
    # The app's identity (created by kro/Crossplane) is federated from this annotation.
    (secret,) = [s for s in ev.by_type(K8S_SECRET) if s.get("metadata.name") == CLUSTER_SECRET_NAME]
    assert secret.plain("metadata.annotations")[ANN_OIDC_ISSUER_URL] == kind_issuer
    assert ev.outputs["oidcIssuerUrl"].value == kind_issuer
    # The account's blob endpoint serves the issuer path: https://<account>.blob.core.windows.net/<container>.
    account = ev.one(ACCOUNT).plain("accountName")
    assert kind_issuer == f"https://{account}.blob.core.windows.net/{oidc_issuer.CONTAINER}"


def anonymously_readable(ev: Evaluation) -> set[str]:
    """Blob URLs anyone can read: public blobs in public containers of public accounts."""
    public_accounts = {a.plain("accountName") for a in ev.by_type(ACCOUNT) if a.get("allowBlobPublicAccess") is True}
    public_containers = {
        (c.plain("accountName"), c.plain("containerName"))
        for c in ev.by_type(CONTAINER)
        if c.plain("accountName") in public_accounts and c.get("publicAccess") not in (None, "None")
    }
    return {
        f"https://{b.plain('accountName')}.blob.core.windows.net/{b.plain('containerName')}/{b.plain('blobName')}"
        for b in ev.by_type(BLOB)
        if (b.plain("accountName"), b.plain("containerName")) in public_containers
    }


@pytest.mark.parametrize("preview", MODES)
def test_only_the_two_discovery_documents_are_anonymous_and_the_guardrail_knows_exactly_that(made, preview):
    ev = run_kind(made, preview)
    issuer = apiserver_flags(made)["service-account-issuer"]
    assert anonymously_readable(ev) == {f"{issuer}/.well-known/openid-configuration", f"{issuer}/openid/v1/jwks"}
    assert ev.one(CONTAINER).plain("publicAccess") == "Blob"  # per blob, no listing
    ctx = rules.Context(stack="kind", environment="kind")
    storage = [r for r in ev.resources if r.type in (ACCOUNT, CONTAINER, BLOB)]
    as_rule_input = [rules.Resource(r.type, r.name, r.plain(), r.protect) for r in storage]
    assert [v for r in as_rule_input for v in rules.check_resource(r, ctx) if v[0] == "storage-private"] == []

    def violations(res: rules.Resource) -> list[str]:
        return rules.storage_private(res, ctx)

    account, container = ev.one(ACCOUNT).plain(), ev.one(CONTAINER).plain()
    jwks = next(r.plain() for r in storage if r.type == BLOB)
    # A third blob in the issuer's account, a listable or differently named container, an
    # untagged or non-issuer account with public access: each is a violation.
    assert violations(rules.Resource(BLOB, "extra", {**jwks, "blobName": "notes.txt"}))
    assert violations(rules.Resource(BLOB, "elsewhere", {**jwks, "containerName": "other"}))
    assert violations(rules.Resource(CONTAINER, "c", {**container, "publicAccess": "Container"}))
    assert violations(rules.Resource(CONTAINER, "c", {**container, "containerName": "web"}))
    assert violations(rules.Resource(CONTAINER, "c", {**container, "accountName": "stapp0123456789abcdef"}))
    assert violations(rules.Resource(ACCOUNT, "a", {**account, "tags": {}}))
    assert violations(rules.Resource(ACCOUNT, "a", {**account, "accountName": "stapp0123456789abcdef"}))
    assert violations(rules.Resource(ACCOUNT, "a", {k: v for k, v in account.items() if k != "allowBlobPublicAccess"}))
    assert not violations(rules.Resource(ACCOUNT, "a", {**account, "accountName": "stapp0", "allowBlobPublicAccess": False}))


def test_the_guardrail_and_the_component_name_the_same_exception():
    assert rules.OIDC_ISSUER_ACCOUNT_RE.fullmatch(oidc_issuer.ACCOUNT_PREFIX + "0" * oidc_issuer.ACCOUNT_HASH_DIGITS)
    assert rules.OIDC_ISSUER_CONTAINER == oidc_issuer.CONTAINER
    assert rules.OIDC_ISSUER_BLOBS == set(oidc_issuer.PUBLISHED_BLOBS)
    assert rules.OIDC_ISSUER_PURPOSE_TAG == (oidc_issuer.PURPOSE_TAG, oidc_issuer.PURPOSE)


# --- config ---------------------------------------------------------------------------------


def test_the_key_path_must_exist_and_hold_an_rsa_public_key(made, tmp_path):
    config, secret = kind_stack_config(made)
    config["aks-platform:hybrid"]["serviceAccountPublicKeyPath"] = str(tmp_path / "missing.pub")
    with pytest.raises(ConfigError) as err:
        run_program(config, secret, stack="kind")
    assert "aks-platform:hybrid.serviceAccountPublicKeyPath" in str(err.value) and "make kind" in str(err.value)
    # The private key by mistake: rejected, and its content is not echoed.
    config["aks-platform:hybrid"]["serviceAccountPublicKeyPath"] = str(made.private_key)
    with pytest.raises(ConfigError) as err:
        run_program(config, secret, stack="kind")
    assert "an RSA public key" in str(err.value)
    assert "PRIVATE KEY" not in str(err.value) and made.private_key.read_text()[40:80] not in str(err.value)


def test_the_key_path_excludes_the_other_two_ways(made):
    config, secret = kind_stack_config(made)
    config["aks-platform:hybrid"]["oidcIssuerUrl"] = "https://issuer.example.com/x"
    with pytest.raises(ConfigError) as err:
        run_program(config, secret, stack="kind")
    (problem,) = err.value.problems
    assert "exactly one of oidcIssuerUrl, serviceAccountPublicKeyPath, a service principal" in problem


def test_the_issuer_lives_in_the_platform_resource_group_and_nothing_is_secret(made):
    ev = run_kind(made)
    group = ev.one("azure-native:resources:ResourceGroup", "platform-rg")
    for reg in (ev.one(ACCOUNT), ev.one(CONTAINER), *ev.by_type(BLOB)):
        assert reg.plain("resourceGroupName") == group.plain("resourceGroupName") == "rg-kind-platform"
    assert ev.one(ACCOUNT).plain("location") == "westeurope"
    # No secret at all in this stack once the kubeconfig is a file: nothing marked secret
    # except the kubeconfig the provider reads.
    assert [o for o in ev.outputs.values() if o.secret] == []
