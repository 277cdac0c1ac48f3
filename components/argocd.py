"""ArgoCd: Argo CD from argo-helm, and the GitOps Bridge bootstrap that hands the cluster to Git.

Pulumi installs Argo CD and three objects, then stops: the in-cluster cluster Secret that
carries the platform's facts as labels and annotations (components.gitops_bridge), the
AppProject `platform`, and the root Application that syncs the top level of the GitOps
path. Everything below that path belongs to Argo CD.

Teardown: the root Application carries Argo CD's resources finalizer, so deleting it
deletes the whole GitOps layer first (see :class:`ArgoCd`); it depends on everything that
layer runs on, so `pulumi destroy` deletes it, and waits for it to be gone, before any of
that. It is never replaced, so `pulumi up` never cascades.

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
from typing import Any, Mapping, Optional, Sequence

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

# Argo CD's cascading-delete finalizer (foreground propagation: the controller deletes the
# Application's resources in reverse sync-wave order, waits for each wave to be gone, and
# only then lets the Application go; argo-cd user-guide/app_deletion.md, controller/
# appcontroller.go finalizeApplicationDeletion, controller/sort_delete.go).
RESOURCES_FINALIZER = "resources-finalizer.argocd.argoproj.io"
# How long `pulumi destroy` waits for the root Application, i.e. for the whole GitOps layer
# and the Azure resources it created (a PostgreSQL flexible server alone takes minutes to
# delete). pulumi-kubernetes waits for a deleted object with finalizers to disappear, for
# 10 minutes unless customTimeouts.delete says otherwise (provider/pkg/await/await.go Deletion).
ROOT_APPLICATION_DELETE_TIMEOUT = "60m"
# The in-cluster connection: Argo CD's own service account, verified TLS.
IN_CLUSTER_CONFIG = json.dumps({"tlsClientConfig": {"insecure": False}}, separators=(",", ":"))

# Pulumi's customTimeouts syntax (Go durations in h, m, s).
_DURATION_RE = re.compile(r"^(?=\d)(\d+h)?(\d+m)?(\d+s)?$")


def is_timeout(value: str) -> bool:
    """Whether `value` is a customTimeouts duration such as '60m' or '1h30m'."""
    return bool(_DURATION_RE.fullmatch(value))

# Label values: at most 63 characters, alphanumerics and -_. inside (Kubernetes' rule).
_URL_RE = re.compile(r"^https?://[^\s/]+(/[^\s]*[^\s/])?$")
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

# Health of kro objects. Argo CD v3.4 has no kro.run check of its own: a proposal for one
# (argoproj/argo-cd#28743) was merged with only its AWS ACK part (#29016), and
# resource_customizations/ at v3.4.4 (and later) has no kro.run entry; without this an
# instance would be Healthy the moment it exists. What kro v0.9.3 writes:
# * instances: status.state IN_PROGRESS / ACTIVE / DELETING / ERROR / FAILED
#   (api/v1alpha1/instance_state.go) and a Ready condition;
# * the ResourceGraphDefinition: state Active only while GraphAccepted, KindReady and
#   ControllerReady are all True, Inactive otherwise, which includes the minutes while a
#   graph revision compiles (those conditions Unknown), so Inactive alone is not a failure
#   (pkg/controller/resourcegraphdefinition/controller_status.go).
# Conditions carry observedGeneration: a Ready condition older than metadata.generation
# describes a previous spec. An object being deleted is Progressing until it is gone.
KRO_HEALTH_LUA = """\
local hs = {status = "Progressing", message = "Waiting for kro"}
if obj.metadata ~= nil and obj.metadata.deletionTimestamp ~= nil then
  hs.message = "Being deleted"
  return hs
end
if obj.status == nil then
  return hs
end
local generation = nil
if obj.metadata ~= nil then
  generation = obj.metadata.generation
end
local ready = nil
local failed = nil
if obj.status.conditions ~= nil then
  for _, c in ipairs(obj.status.conditions) do
    local current = c.observedGeneration == nil or generation == nil or c.observedGeneration >= generation
    if c.type == "Ready" then
      ready = c
      if not current then
        hs.message = "Waiting for kro to observe generation " .. generation
        return hs
      end
    elseif current and c.status == "False" and (c.type == "GraphAccepted" or c.type == "KindReady" or c.type == "ControllerReady") then
      failed = c
    end
  end
end
local state = obj.status.state
if ready ~= nil then
  hs.message = ready.message or ready.reason or state or ""
elseif state ~= nil then
  hs.message = state
end
if state == "ACTIVE" or state == "Active" then
  if ready == nil or ready.status == "True" then
    hs.status = "Healthy"
  end
elseif state == "ERROR" or state == "FAILED" then
  hs.status = "Degraded"
elseif state == "Inactive" and failed ~= nil then
  hs.status = "Degraded"
  hs.message = failed.message or failed.reason or (failed.type .. " is False")
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
# Crossplane kinds (*.upbound.io, *.crossplane.io) have built-in checks in Argo CD, which
# these keys do not shadow; *.azure.com, kro.run and the platform's XR group have none at
# v3.4 (resource_customizations/), so each check here is the only one for its kinds.
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
# ASO's webhook configurations get the same selector (its chart renders none and offers no
# value for one). Nothing fights over them: Argo CD does not manage them (Pulumi's Helm
# release does), and Helm's three-way merge on upgrade patches only what the chart changed
# between releases, leaving fields another manager added alone. The enforcer's selector only
# keeps kube-system and AKS-managed namespaces away from ASO's webhooks, where no ASO
# resource lives; ASO's own namespaces and the app namespaces are still admitted.
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


def argocd_values(url: Optional[str] = None) -> dict[str, Any]:
    """Chart values. `url`: where people reach Argo CD, for links in the UI, SSO callbacks and
    notifications. Without it the chart still renders `url: https://argocd.example.com` into
    argocd-cm: it presets `url` from `global.domain` and merges `configs.cm` over the preset
    with mergeOverwrite, which skips empty values (argo-helm charts/argo-cd
    templates/_helpers.tpl, argo-cd.config.cm), so it cannot be left out. Nothing here reads
    it then: no SSO is configured (Dex off) and no notification template is set."""
    cm: dict[str, str] = {
        "resource.customizations": _yaml({key: {"health.lua": lua} for key, lua in HEALTH_CHECKS.items()}),
    }
    if url:
        cm["url"] = url
    for kind in WEBHOOK_KINDS:
        cm[f"resource.customizations.ignoreDifferences.admissionregistration.k8s.io_{kind}"] = _yaml(
            WEBHOOK_IGNORE_DIFFERENCES
        )
    values: dict[str, Any] = {
        # No SSO is configured; Dex would run idle.
        "dex": {"enabled": False},
        # Merged by Helm with the chart's defaults under configs.cm (kept).
        "configs": {"cm": cm},
    }
    if url:
        # The notifications controller's {{.context.argocdUrl}} (otherwise https://<global.domain>).
        values["notifications"] = {"argocdUrl": url}
    return values


@dataclass
class ArgoCdArgs:
    repo_url: str
    revision: str
    path: str
    # Keys: gitops_bridge.CLUSTER_LABELS / CLUSTER_ANNOTATIONS; the ApplicationSets read them.
    cluster_labels: Mapping[str, pulumi.Input[str]] = field(default_factory=dict)
    cluster_annotations: Mapping[str, pulumi.Input[str]] = field(default_factory=dict)
    # What the GitOps layer runs on or acts through: the operators (their releases and
    # custom resources), their identities and grants, the app resource groups, node pools.
    # The root Application depends on all of it, so `pulumi destroy` deletes the layer
    # (through the finalizer) and waits for it before any of this is deleted.
    gitops_dependencies: Sequence[pulumi.Resource] = ()
    # customTimeouts.delete of the root Application: the bound on that wait.
    teardown_timeout: str = ROOT_APPLICATION_DELETE_TIMEOUT
    # The external URL of Argo CD's UI, e.g. https://argocd.example.org (no trailing slash),
    # or None when it is not exposed: see argocd_values.
    url: Optional[str] = None

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
        if self.url is not None and not _URL_RE.fullmatch(self.url):
            problems.append(f"url {self.url!r}: allowed: an https:// or http:// URL without a trailing slash, or None")
        if not self.repo_url:
            problems.append("repo_url: allowed: the Git URL of the GitOps repository")
        if not self.revision:
            problems.append("revision: allowed: a branch, tag or commit")
        if not self.path or self.path.startswith("/"):
            problems.append(f"path {self.path!r}: allowed: a relative path inside the repository")
        if not is_timeout(self.teardown_timeout):
            problems.append(f"teardown_timeout {self.teardown_timeout!r}: allowed: a duration such as '60m' or '1h30m'")
        if problems:
            raise ValueError("ArgoCd: " + "; ".join(problems))

    def source_annotations(self) -> dict[str, str]:
        """Where the ApplicationSets read the repository from: always the root Application's source."""
        return {ANN_REPO_URL: self.repo_url, ANN_REVISION: self.revision, ANN_PATH: self.path}


class ArgoCd(pulumi.ComponentResource):
    """Argo CD and the GitOps Bridge bootstrap (cluster Secret, AppProject, root Application).

    The AppProject and Application kinds are chart templates, so both objects wait for the
    release. The root Application also waits for the cluster Secret and the project, so
    its first sync already sees the labels the ApplicationSets select on, and for
    `gitops_dependencies`.

    Deleting it cascades: with RESOURCES_FINALIZER, Argo CD deletes its ApplicationSets in
    reverse sync-wave order (apps, then APIs, then projects), foreground, so each
    ApplicationSet stays until the Applications it generated are gone; those carry the same
    finalizer (the ApplicationSet controller adds it unless preserveResourcesOnDeletion),
    so each deletes its WebApp before its Namespace, and the WebApp goes only once kro or
    Crossplane has deleted what it composed, which ASO and the providers delete in Azure.
    pulumi-kubernetes waits for the Application to disappear, up to `teardown_timeout`.

    Never replaced, so never a cascade on `pulumi up`: its type token, name and namespace
    are constants, nothing sets replaceOnChanges or deleteBeforeReplace, and repoUrl,
    revision and path live in `spec.source` only, which pulumi-kubernetes updates in place
    (server-side apply). Argo CD then syncs the new source; only what is missing from it is
    pruned, as with any Git change.
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
            name, ARGO_CD, values=argocd_values(args.url), parent=self, depends_on=caller_depends_on(opts)
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

        # Its identity (type token, Pulumi name and parent, Kubernetes name and namespace)
        # must never change: a new URN is a delete of the old object plus a create, and a
        # new name or namespace is a replacement; either deletes the object that carries the
        # finalizer, i.e. the platform layer. Rename only with an alias.
        self.root_application = k8s.apiextensions.CustomResource(
            f"{name}-root-app",
            api_version="argoproj.io/v1alpha1",
            kind="Application",
            metadata=k8s.meta.v1.ObjectMetaArgs(
                name=ROOT_APPLICATION, namespace=self.namespace, finalizers=[RESOURCES_FINALIZER]
            ),
            spec=_root_application_spec(args.repo_url, args.revision, args.path),
            opts=pulumi.ResourceOptions(
                parent=self,
                depends_on=[self.release, self.project, self.cluster_secret, *args.gitops_dependencies],
                custom_timeouts=pulumi.CustomTimeouts(delete=args.teardown_timeout),
            ),
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
