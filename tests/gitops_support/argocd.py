"""Enough of Argo CD v3.4's ApplicationSet templating and of kustomize to render gitops/ offline.

Home-made: Argo CD's goTemplate rendering (Go text/template with Sprig) and kustomize are
Go, with no Python port. Modelled, and anything outside it raises, so a test that renders
through these helpers cannot silently diverge from what Argo CD would do:

* goTemplate with ``missingkey=error``: ``{{.a.b.c}}`` lookups only (no pipelines,
  functions, conditionals or ranges);
* cluster generator parameters: name, nameNormalized, server, metadata.labels/annotations
  of the cluster Secret, with its label selector (matchLabels and matchExpressions);
* kustomize: ``resources`` (plain files) plus the Application's ``kustomize.patches`` as
  JSON 6902 patches (add/replace/remove/test) with group/version/kind/name targets;
* the resources finalizer the ApplicationSet controller adds to a generated Application
  (applicationset/utils/utils.go RenderTemplateParams), and the two deletion decisions
  that read ``argocd.argoproj.io/sync-options``: whether a sync prunes a live object
  (``Prune=false``, gitops-engine) and whether deleting an Application with that finalizer
  deletes it (controller/appcontroller.go shouldBeDeleted: ``Delete=false`` on the object
  or in the Application's syncOptions, ``helm.sh/resource-policy: keep``, never a CRD).

Not modelled: other generators and their merge/matrix combinations, the
ApplicationSet's ``templatePatch`` and progressive syncs, strategic-merge patches, kustomize components, generators, name prefixes/suffixes, images
and common labels, Helm sources, and anything Argo CD does at sync time (waves, hooks,
health, pruning): the tests check those settings by reading the manifests.
"""

from __future__ import annotations

import copy
import re
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

_TEMPLATE = re.compile(r"{{(.*?)}}")
_LOOKUP = re.compile(r"\s*\.([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*)\s*")


class TemplateError(ValueError):
    pass


def template_fields(obj: Any) -> list[str]:
    """Every ``{{...}}`` action in any string of ``obj``."""
    found: list[str] = []

    def walk(o: Any) -> None:
        if isinstance(o, dict):
            for k, v in o.items():
                walk(k)
                walk(v)
        elif isinstance(o, list):
            for v in o:
                walk(v)
        elif isinstance(o, str):
            found.extend(_TEMPLATE.findall(o))

    walk(obj)
    return found


def lookup_path(action: str) -> tuple[str, ...]:
    m = _LOOKUP.fullmatch(action)
    if not m:
        raise TemplateError(f"unsupported template action {{{{{action}}}}}: only {{{{.a.b}}}} lookups are used")
    return tuple(m.group(1).split("."))


def render(obj: Any, params: dict[str, Any]) -> Any:
    """Render a goTemplate'd object; a missing key raises like ``missingkey=error``."""

    def value(action: str) -> str:
        cur: Any = params
        for part in lookup_path(action):
            if not isinstance(cur, dict) or part not in cur:
                raise TemplateError(f"map has no entry for key {part!r} in {{{{{action}}}}}")
            cur = cur[part]
        if not isinstance(cur, str):
            raise TemplateError(f"{{{{{action}}}}} is not a string")
        return cur

    if isinstance(obj, dict):
        return {render(k, params): render(v, params) for k, v in obj.items()}
    if isinstance(obj, list):
        return [render(v, params) for v in obj]
    if isinstance(obj, str):
        return _TEMPLATE.sub(lambda m: value(m.group(1)), obj)
    return obj


def cluster_params(secret: dict[str, Any]) -> dict[str, Any]:
    """goTemplate parameters the cluster generator derives from a cluster Secret."""
    name = secret["stringData"]["name"]
    return {
        "name": name,
        "nameNormalized": re.sub(r"[^a-z0-9-.]", "-", name.lower()),
        "server": secret["stringData"]["server"],
        "metadata": {
            "labels": dict(secret["metadata"].get("labels", {})),
            "annotations": dict(secret["metadata"].get("annotations", {})),
        },
    }


def selector_matches(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    if set(selector) - {"matchLabels", "matchExpressions"}:
        raise TemplateError(f"unsupported selector {selector}")
    ok = all(labels.get(k) == v for k, v in selector.get("matchLabels", {}).items())
    for e in selector.get("matchExpressions", []):
        v = labels.get(e["key"])
        op = e["operator"]
        if op == "In":
            ok &= v in e["values"]
        elif op == "NotIn":
            ok &= v not in e["values"]
        elif op == "Exists":
            ok &= v is not None
        elif op == "DoesNotExist":
            ok &= v is None
        else:
            raise TemplateError(f"unsupported operator {op}")
    return ok


def generate(appset: dict[str, Any], cluster_secret: dict[str, Any]) -> list[dict[str, Any]]:
    """Applications an ApplicationSet (cluster generators only) makes for one cluster."""
    spec = appset["spec"]
    if not spec.get("goTemplate") or "missingkey=error" not in spec.get("goTemplateOptions", []):
        raise TemplateError(f"{appset['metadata']['name']}: goTemplate with missingkey=error expected")
    apps = []
    for gen in spec["generators"]:
        if set(gen) != {"clusters"}:
            raise TemplateError(f"unsupported generator {list(gen)}")
        sel = gen["clusters"].get("selector", {})
        if not selector_matches(sel, cluster_secret["metadata"].get("labels", {})):
            continue
        app = render(copy.deepcopy(spec["template"]), cluster_params(cluster_secret))
        app = {"apiVersion": "argoproj.io/v1alpha1", "kind": "Application", **app}
        app["metadata"].setdefault("namespace", appset["metadata"]["namespace"])
        # Argo CD v3.4 adds it when the template sets no finalizer and the ApplicationSet
        # does not ask to preserve resources on deletion.
        if not app["metadata"].get("finalizers") and not spec.get("syncPolicy", {}).get("preserveResourcesOnDeletion"):
            app["metadata"]["finalizers"] = [RESOURCES_FINALIZER]
        apps.append(app)
    return apps


# --- deletion: pruning and the cascade ----------------------------------------------------

RESOURCES_FINALIZER = "resources-finalizer.argocd.argoproj.io"
SYNC_OPTIONS = "argocd.argoproj.io/sync-options"


def _options(value: str | None) -> dict[str, str]:
    """`A=b,C=d` (the annotation's comma-separated form) as a dict."""
    out = {}
    for item in (value or "").split(","):
        if "=" in item:
            key, val = item.split("=", 1)
            out[key.strip()] = val.strip()
    return out


def sync_option(obj: dict[str, Any], key: str) -> str | None:
    return _options(obj.get("metadata", {}).get("annotations", {}).get(SYNC_OPTIONS)).get(key)


def pruned_by_sync(live: dict[str, Any]) -> bool:
    """Whether a sync with pruning deletes this live object once it left the Application's
    source (gitops-engine reads Prune=false from the live object's annotation)."""
    return sync_option(live, "Prune") != "false"


def deleted_with(app: dict[str, Any], obj: dict[str, Any]) -> bool:
    """Whether deleting `app` deletes `obj`: only with the resources finalizer, and then
    unless shouldBeDeleted (Argo CD v3.4) keeps it."""
    if RESOURCES_FINALIZER not in app["metadata"].get("finalizers", []):
        return False
    if obj.get("kind") == "CustomResourceDefinition":
        return False
    delete = sync_option(obj, "Delete")
    if delete is None:
        delete = _options(",".join(app["spec"].get("syncPolicy", {}).get("syncOptions", []))).get("Delete")
    keep = obj.get("metadata", {}).get("annotations", {}).get("helm.sh/resource-policy") == "keep"
    return delete != "false" and not keep


# --- kustomize subset -------------------------------------------------------------------

_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@lru_cache(maxsize=None)
def _parsed(path: Path, mtime_ns: int) -> tuple[Any, ...]:
    with path.open() as f:
        return tuple(d for d in yaml.load_all(f, Loader=_LOADER) if d is not None)


def load_docs(path: Path) -> list[dict[str, Any]]:
    """YAML documents of a file (parsed once; callers get their own copies)."""
    path = Path(path).resolve()
    return copy.deepcopy(list(_parsed(path, path.stat().st_mtime_ns)))


def _pointer(path: str) -> list[str]:
    if not path.startswith("/"):
        raise ValueError(f"bad JSON pointer {path!r}")
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def json_patch(doc: Any, ops: list[dict[str, Any]]) -> Any:
    """RFC 6902 add/replace/remove/test (what kustomize applies for a JSON patch)."""
    doc = copy.deepcopy(doc)
    for op in ops:
        parts = _pointer(op["path"])
        parent = doc
        for p in parts[:-1]:
            parent = parent[int(p)] if isinstance(parent, list) else parent[p]
        last = parts[-1]
        kind = op["op"]
        if kind in ("add", "replace"):
            if isinstance(parent, list):
                idx = len(parent) if last == "-" else int(last)
                if kind == "add":
                    parent.insert(idx, copy.deepcopy(op["value"]))
                else:
                    parent[idx] = copy.deepcopy(op["value"])
            else:
                if kind == "replace" and last not in parent:
                    raise KeyError(f"replace of missing {op['path']}")
                parent[last] = copy.deepcopy(op["value"])
        elif kind == "remove":
            del parent[int(last) if isinstance(parent, list) else last]
        elif kind == "test":
            got = parent[int(last)] if isinstance(parent, list) else parent[last]
            if got != op["value"]:
                raise ValueError(f"test failed at {op['path']}")
        else:
            raise ValueError(f"unsupported op {kind}")
    return doc


def _target_matches(target: dict[str, Any], doc: dict[str, Any]) -> bool:
    if set(target) - {"group", "version", "kind", "name", "namespace"}:
        raise ValueError(f"unsupported patch target fields {sorted(target)}")
    group, _, version = doc["apiVersion"].rpartition("/")
    have = {
        "group": group,
        "version": version,
        "kind": doc["kind"],
        "name": doc["metadata"]["name"],
        "namespace": doc["metadata"].get("namespace", ""),
    }
    return all(have[k] == v for k, v in target.items())


def kustomize_build(directory: Path, patches: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """``kustomize build`` of a directory using only ``resources``, plus Argo CD's patches.

    Every patch must match at least one resource (kustomize fails the same way).
    """
    kfile = directory / "kustomization.yaml"
    k = yaml.safe_load(kfile.read_text())
    allowed = {"apiVersion", "kind", "resources"}
    if set(k) - allowed:
        raise ValueError(f"{kfile}: only {sorted(allowed)} are modelled here, found {sorted(k)}")
    docs: list[dict[str, Any]] = []
    for res in k["resources"]:
        docs.extend(load_docs(directory / res))
    for patch in patches or []:
        if set(patch) - {"target", "patch"}:
            raise ValueError(f"unsupported kustomize patch fields {sorted(patch)}")
        ops = yaml.safe_load(patch["patch"])
        if not isinstance(ops, list):
            raise ValueError("only JSON 6902 patches (a list of operations) are used")
        hit = False
        for i, d in enumerate(docs):
            if _target_matches(patch.get("target", {}), d):
                docs[i] = json_patch(d, ops)
                hit = True
        if not hit:
            raise ValueError(f"patch target {patch.get('target')} matches no resource in {directory}")
    return docs

