"""ArgoCd: Argo CD from argo-helm, and the GitOps Bridge bootstrap that hands the cluster to Git.

Pulumi installs Argo CD and three objects, then stops: the in-cluster cluster Secret that
carries the platform's facts as labels and annotations (components.gitops_bridge), the
AppProject `platform`, and the root Application that syncs the top level of the GitOps
path. Everything below that path belongs to Argo CD.

The admin password is not read into Pulumi. Argo CD generates it at first start into the
Secret `argocd-initial-admin-secret` (namespace argocd), and its docs recommend deleting
that Secret once the password is changed: a `Secret.get` here would make every later
`pulumi up` fail after that recommended step, and would copy a cluster-admin credential
into the stack's state and outputs, one more place to protect and rotate. Read it with
ADMIN_PASSWORD_COMMAND when needed.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional

import pulumi
import pulumi_kubernetes as k8s
import yaml

from components.gitops_bridge import (
    ANN_PATH,
    ANN_REPO_URL,
    ANN_REVISION,
    CLUSTER_ANNOTATIONS,
    CLUSTER_LABELS,
    CLUSTER_SECRET_NAME,
    IN_CLUSTER_SERVER,
    PLATFORM_PROJECT,
    ROOT_APPLICATION,
)
from components.helm import caller_depends_on, install_chart
from components.versions import ARGO_CD

ADMIN_PASSWORD_COMMAND = (
    f"kubectl -n {ARGO_CD.namespace} get secret argocd-initial-admin-secret -o jsonpath='{{.data.password}}' | base64 -d"
)

SECRET_TYPE_LABEL = "argocd.argoproj.io/secret-type"
# The in-cluster connection: Argo CD's own service account, verified TLS.
IN_CLUSTER_CONFIG = json.dumps({"tlsClientConfig": {"insecure": False}}, separators=(",", ":"))

# Label values: at most 63 characters, alphanumerics and -_. inside (Kubernetes' rule).
_LABEL_VALUE_RE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9])?$")

# What project `platform` may deploy, exactly: the root Application applies the top level
# of the GitOps path (ApplicationSets), and the one ApplicationSet there that uses this
# project applies the other layers' AppProjects (gitops/projects). Both live in Argo CD's
# namespace; nothing cluster-scoped. The layers below have projects of their own.
PLATFORM_NAMESPACED_RESOURCES: tuple[tuple[str, str], ...] = (
    ("argoproj.io", "ApplicationSet"),
    ("argoproj.io", "AppProject"),
)
PLATFORM_CLUSTER_RESOURCES: tuple[tuple[str, str], ...] = ()

# Health of Azure Service Operator resources (every *.azure.com kind) from their Ready
# condition. ASO's severities: Info = working on it, Warning = a problem it keeps retrying,
# Error = it gave up until the spec changes (azure.github.io/azure-service-operator/guide/conditions).
ASO_HEALTH_LUA = """\
local hs = {status = "Progressing", message = "Waiting for the Ready condition"}
if obj.status == nil or obj.status.conditions == nil then
  return hs
end
for _, c in ipairs(obj.status.conditions) do
  if c.type == "Ready" then
    hs.message = c.message or c.reason or ""
    local generation = obj.metadata.generation
    if c.observedGeneration ~= nil and generation ~= nil and c.observedGeneration < generation then
      -- The condition describes an older spec.
      hs.status = "Progressing"
    elseif c.status == "True" then
      hs.status = "Healthy"
    elseif c.severity == "Error" then
      hs.status = "Degraded"
    else
      -- Info (Reconciling, WaitingForOwner, Deleting, ...) or Warning: ASO keeps retrying.
      hs.status = "Progressing"
    end
    return hs
  end
end
return hs
"""

# Health of kro objects: instances of ResourceGraphDefinition-generated kinds report
# status.state IN_PROGRESS / ACTIVE / DELETING / ERROR (FAILED in older releases); the
# ResourceGraphDefinition itself reports Active / Inactive.
KRO_HEALTH_LUA = """\
local hs = {status = "Progressing", message = "Waiting for kro"}
if obj.status == nil then
  return hs
end
local message = nil
if obj.status.conditions ~= nil then
  for _, c in ipairs(obj.status.conditions) do
    if c.type == "Ready" then
      message = c.message or c.reason
    end
  end
end
local state = obj.status.state
if state == "ACTIVE" or state == "Active" then
  hs.status = "Healthy"
elseif state == "ERROR" or state == "FAILED" or state == "Inactive" then
  hs.status = "Degraded"
end
if state ~= nil then
  hs.message = message or state
elseif message ~= nil then
  hs.message = message
end
return hs
"""

# Health of the platform's own Crossplane composite resources (the WebApp XR of
# gitops/platform/crossplane, group crossplane.aks-platform.internal). Argo CD's built-in
# Crossplane checks match only *.crossplane.io and *.upbound.io groups; without this an XR
# counts as healthy the moment it exists. Synced=False: Crossplane cannot compose it.
XR_HEALTH_LUA = """\
local hs = {status = "Progressing", message = "Waiting for Crossplane"}
if obj.status == nil or obj.status.conditions == nil then
  return hs
end
local ready = nil
for _, c in ipairs(obj.status.conditions) do
  if c.type == "Synced" and c.status == "False" then
    hs.status = "Degraded"
    hs.message = c.message or c.reason or "Synced is False"
    return hs
  end
  if c.type == "Ready" then
    ready = c
  end
end
if ready ~= nil then
  hs.message = ready.message or ready.reason or ""
  if ready.status == "True" then
    hs.status = "Healthy"
  end
end
return hs
"""
PLATFORM_XR_GROUPS = "*.aks-platform.internal/*"

# Argo CD accepts wildcards only in the single `resource.customizations` key (health.md).
# Crossplane kinds (*.upbound.io, *.crossplane.io) have built-in checks in Argo CD.
HEALTH_CHECKS = {
    "*.azure.com/*": ASO_HEALTH_LUA,
    "kro.run/*": KRO_HEALTH_LUA,
    # RGDs may place their kinds in a group of their own under kro.run.
    "*.kro.run/*": KRO_HEALTH_LUA,
    PLATFORM_XR_GROUPS: XR_HEALTH_LUA,
}

# AKS's admissions enforcer adds a namespaceSelector to every webhook configuration (to keep
# webhooks off kube-system), and cert-manager's CA injector fills in caBundle; neither is in
# Git, so without this a webhook Argo CD manages is forever OutOfSync and self-heal fights them.
WEBHOOK_IGNORE_DIFFERENCES = {
    "jqPathExpressions": [
        '.webhooks[]?.namespaceSelector.matchExpressions[]? | select(.key == "control-plane" or .key == "kubernetes.azure.com/managedby")',
        ".webhooks[]?.clientConfig.caBundle",
    ],
    "managedFieldsManagers": ["admissionsenforcer"],
}
WEBHOOK_KINDS = ("MutatingWebhookConfiguration", "ValidatingWebhookConfiguration")


class _BlockDumper(yaml.SafeDumper):
    """Multi-line strings as `|` blocks, so the Lua stays readable in argocd-cm."""


_BlockDumper.add_representer(
    str,
    lambda dumper, value: dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|" if "\n" in value else None),
)


def _yaml(data: Any) -> str:
    return yaml.dump(data, Dumper=_BlockDumper, sort_keys=False, width=1000)


def argocd_values() -> dict[str, Any]:
    cm: dict[str, str] = {
        "resource.customizations": _yaml({key: {"health.lua": lua} for key, lua in HEALTH_CHECKS.items()}),
    }
    for kind in WEBHOOK_KINDS:
        cm[f"resource.customizations.ignoreDifferences.admissionregistration.k8s.io_{kind}"] = _yaml(
            WEBHOOK_IGNORE_DIFFERENCES
        )
    return {
        # No SSO is configured; Dex would run idle.
        "dex": {"enabled": False},
        # Merged by Helm with the chart's defaults under configs.cm (kept).
        "configs": {"cm": cm},
    }


@dataclass
class ArgoCdArgs:
    repo_url: str
    revision: str
    path: str
    # Keys: gitops_bridge.CLUSTER_LABELS / CLUSTER_ANNOTATIONS; the ApplicationSets read them.
    cluster_labels: Mapping[str, pulumi.Input[str]] = field(default_factory=dict)
    cluster_annotations: Mapping[str, pulumi.Input[str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # Checked here, before the component registers anything.
        problems = []
        unknown = sorted(set(self.cluster_labels) - CLUSTER_LABELS)
        if unknown:
            problems.append(f"cluster labels {unknown}: allowed: {sorted(CLUSTER_LABELS)}")
        unknown = sorted(set(self.cluster_annotations) - CLUSTER_ANNOTATIONS)
        if unknown:
            problems.append(f"cluster annotations {unknown}: allowed: {sorted(CLUSTER_ANNOTATIONS)}")
        for key, value in self.cluster_labels.items():
            # Values known now are checked now; Outputs are the caller's to keep valid.
            if isinstance(value, str) and not _LABEL_VALUE_RE.fullmatch(value):
                problems.append(
                    f"cluster label {key}={value!r}: allowed: at most 63 letters, digits, '-', '_', '.', "
                    "beginning and ending with a letter or digit (put other values in an annotation)"
                )
        for key, value in self.source_annotations().items():
            given = self.cluster_annotations.get(key, value)
            if given != value:
                problems.append(f"cluster annotation {key}={given!r}: allowed: {value!r}, what the root Application syncs")
        if not self.repo_url:
            problems.append("repo_url: allowed: the Git URL of the GitOps repository")
        if not self.revision:
            problems.append("revision: allowed: a branch, tag or commit")
        if not self.path or self.path.startswith("/"):
            problems.append(f"path {self.path!r}: allowed: a relative path inside the repository")
        if problems:
            raise ValueError("ArgoCd: " + "; ".join(problems))

    def source_annotations(self) -> dict[str, str]:
        """Where the ApplicationSets read the repository from: always the root Application's source."""
        return {ANN_REPO_URL: self.repo_url, ANN_REVISION: self.revision, ANN_PATH: self.path}


class ArgoCd(pulumi.ComponentResource):
    """Argo CD and the GitOps Bridge bootstrap (cluster Secret, AppProject, root Application).

    The AppProject and Application kinds are chart templates, so both objects wait for the
    release. The root Application also waits for the cluster Secret and the project, so
    its first sync already sees the labels the ApplicationSets select on. It has no
    resources finalizer: deleting or replacing it orphans what it created instead of
    cascading through the platform layer (and, via ASO and Crossplane, into Azure).
    """

    namespace: pulumi.Output[str]
    release: k8s.helm.v3.Release
    cluster_secret: k8s.core.v1.Secret
    project: k8s.apiextensions.CustomResource
    root_application: k8s.apiextensions.CustomResource
    admin_password_command: str

    def __init__(self, name: str, args: ArgoCdArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("aks-platform:argocd:ArgoCd", name, None, opts)
        # A component's depends_on does not reach its children: the release waits as asked.
        namespace, self.release = install_chart(
            name, ARGO_CD, values=argocd_values(), parent=self, depends_on=caller_depends_on(opts)
        )
        self.namespace = namespace.metadata.name

        self.cluster_secret = k8s.core.v1.Secret(
            f"{name}-cluster-secret",
            metadata=k8s.meta.v1.ObjectMetaArgs(
                name=CLUSTER_SECRET_NAME,
                namespace=self.namespace,
                labels={**args.cluster_labels, SECRET_TYPE_LABEL: "cluster"},
                annotations={**args.cluster_annotations, **args.source_annotations()},
            ),
            # Replaces Argo CD's implicit local cluster under the same name, with labels.
            string_data={"name": CLUSTER_SECRET_NAME, "server": IN_CLUSTER_SERVER, "config": IN_CLUSTER_CONFIG},
            type="Opaque",
            opts=pulumi.ResourceOptions(parent=self),
        )

        self.project = k8s.apiextensions.CustomResource(
            f"{name}-project",
            api_version="argoproj.io/v1alpha1",
            kind="AppProject",
            metadata=k8s.meta.v1.ObjectMetaArgs(name=PLATFORM_PROJECT, namespace=self.namespace),
            spec=_project_spec(args.repo_url),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.release]),
        )

        self.root_application = k8s.apiextensions.CustomResource(
            f"{name}-root-app",
            api_version="argoproj.io/v1alpha1",
            kind="Application",
            metadata=k8s.meta.v1.ObjectMetaArgs(name=ROOT_APPLICATION, namespace=self.namespace),
            spec=_root_application_spec(args.repo_url, args.revision, args.path),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.release, self.project, self.cluster_secret]),
        )

        self.admin_password_command = ADMIN_PASSWORD_COMMAND
        self.register_outputs(
            {
                "namespace": self.namespace,
                "release": self.release.name,
                "project": PLATFORM_PROJECT,
                "root_application": ROOT_APPLICATION,
            }
        )


def _project_spec(repo_url: str) -> dict[str, Any]:
    return {
        "description": "The platform layer: the root Application and what it applies",
        "sourceRepos": [repo_url],
        "destinations": [{"server": IN_CLUSTER_SERVER, "namespace": ARGO_CD.namespace}],
        # An empty list allows no cluster-scoped kind; a missing namespaced list would allow all.
        "clusterResourceWhitelist": [{"group": g, "kind": k} for g, k in PLATFORM_CLUSTER_RESOURCES],
        "namespaceResourceWhitelist": [{"group": g, "kind": k} for g, k in PLATFORM_NAMESPACED_RESOURCES],
    }


def _root_application_spec(repo_url: str, revision: str, path: str) -> dict[str, Any]:
    return {
        "project": PLATFORM_PROJECT,
        "source": {
            "repoURL": repo_url,
            "targetRevision": revision,
            "path": path,
            # Only the top level: the ApplicationSets there own the subdirectories.
            "directory": {"recurse": False},
        },
        # The top-level objects (ApplicationSets, AppProjects) live in Argo CD's namespace.
        "destination": {"server": IN_CLUSTER_SERVER, "namespace": ARGO_CD.namespace},
        "syncPolicy": {
            "automated": {"prune": True, "selfHeal": True},
            # A fresh cluster's first syncs can fail while CRDs arrive; retry, backing off.
            "retry": {"limit": 10, "backoff": {"duration": "10s", "factor": 2, "maxDuration": "5m"}},
            # Delete what left Git only after everything else synced.
            "syncOptions": ["PruneLast=true"],
        },
    }
