"""Turn CRDs' structural schemas into strict JSON Schema validators (jsonschema, Draft 7).

The API server prunes or rejects fields a CRD does not declare; jsonschema by default
accepts them. So every object schema that lists ``properties`` (and does not opt out with
``x-kubernetes-preserve-unknown-fields``) is closed with ``additionalProperties: false``,
which makes a typo in a manifest fail here rather than be silently pruned in the cluster.
The validation itself is jsonschema's; the translation of Kubernetes' structural-schema
extensions (int-or-string, nullable, embedded resources, ObjectMeta) is home-made, after
the apiextensions-apiserver rules of Kubernetes 1.30+.

Not modelled: ``x-kubernetes-validations`` (CEL rules in CRDs are dropped, not run),
``x-kubernetes-list-type``/``list-map-keys`` uniqueness, defaulting, the API server's
format checks beyond jsonschema's, and conversion between versions (each manifest is
checked against the version it names).
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import tempfile
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterator

import jsonschema
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]


def upstream_dir(repo_root: Path = REPO_ROOT) -> Path:
    """``<repo>/../shared/upstream``: the pinned CRDs and chart values (may be absent)."""
    return repo_root.parent / "shared" / "upstream"


# Kubernetes-only schema keywords that JSON Schema does not know; dropped after use.
_K8S_KEYWORDS = (
    "x-kubernetes-preserve-unknown-fields",
    "x-kubernetes-int-or-string",
    "x-kubernetes-embedded-resource",
    "x-kubernetes-list-type",
    "x-kubernetes-list-map-keys",
    "x-kubernetes-map-type",
    "x-kubernetes-validations",
)

# ObjectMeta as the API server accepts it in a manifest (the CRD only says "type: object").
OBJECT_META_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "name": {"type": "string", "maxLength": 253},
        "generateName": {"type": "string"},
        "namespace": {"type": "string", "maxLength": 63},
        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
        "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
        "finalizers": {"type": "array", "items": {"type": "string"}},
    },
}


def structural_to_jsonschema(schema: dict[str, Any]) -> dict[str, Any]:
    """Convert one openAPIV3Schema node (recursively) into a closed JSON Schema.

    Returns new dicts for every schema node; leaf values (enum and required lists,
    defaults) are shared with `schema`, which is never modified.
    """
    s = dict(schema)
    preserve = s.get("x-kubernetes-preserve-unknown-fields") is True
    embedded = s.get("x-kubernetes-embedded-resource") is True

    if s.get("x-kubernetes-int-or-string"):
        # int-or-string carries no "type"; anyOf keeps any other constraints working.
        s.pop("type", None)
        s["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if s.get("nullable"):
        t = s.get("type")
        if isinstance(t, str):
            s["type"] = [t, "null"]
        if "enum" in s:
            s["enum"] = list(s["enum"]) + [None]
    s.pop("nullable", None)
    # A Kubernetes "format" (int32, date-time, byte, ...) is advisory here, as it is for
    # jsonschema without a format checker.
    for key in _K8S_KEYWORDS:
        s.pop(key, None)

    props = s.get("properties")
    if isinstance(props, dict):
        s["properties"] = {k: structural_to_jsonschema(v) for k, v in props.items()}
        if embedded and "metadata" in s["properties"] and not s["properties"]["metadata"].get("properties"):
            s["properties"]["metadata"] = copy.deepcopy(OBJECT_META_SCHEMA)
        if not preserve and "additionalProperties" not in s:
            s["additionalProperties"] = False
    ap = s.get("additionalProperties")
    if isinstance(ap, dict):
        s["additionalProperties"] = structural_to_jsonschema(ap)
    if isinstance(s.get("items"), dict):
        s["items"] = structural_to_jsonschema(s["items"])
    for key in ("allOf", "anyOf", "oneOf"):
        if key in schema:  # (the anyOf added for int-or-string above needs no conversion)
            s[key] = [structural_to_jsonschema(x) for x in schema[key]]
    if isinstance(s.get("not"), dict):
        s["not"] = structural_to_jsonschema(s["not"])
    return s


def version_schema(crd: dict[str, Any], version: str) -> dict[str, Any]:
    """The openAPIV3Schema a CRD serves for ``version`` (KeyError when it does not serve it)."""
    for v in crd["spec"]["versions"]:
        if v["name"] == version and v.get("served", False):
            if "schema" in v:
                return v["schema"]["openAPIV3Schema"]
            return crd["spec"]["validation"]["openAPIV3Schema"]
    raise KeyError(f"{crd['metadata']['name']} does not serve {version}")


def object_jsonschema(openapi: dict[str, Any]) -> dict[str, Any]:
    """Full JSON Schema for a custom object: its CRD schema plus a closed ObjectMeta."""
    s = structural_to_jsonschema(openapi)
    s.setdefault("properties", {})
    s["properties"]["metadata"] = copy.deepcopy(OBJECT_META_SCHEMA)
    s["properties"].setdefault("apiVersion", {"type": "string"})
    s["properties"].setdefault("kind", {"type": "string"})
    s["additionalProperties"] = False
    s["required"] = sorted(set(s.get("required", [])) | {"apiVersion", "kind", "metadata"})
    return s


def make_validator(schema: dict[str, Any]) -> jsonschema.protocols.Validator:
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft7Validator)
    cls.check_schema(schema)
    return cls(schema)


def crd_validator(crd_path: Path | str, version: str) -> jsonschema.protocols.Validator:
    """Strict validator for objects of the (single) CRD in ``crd_path`` at ``version``."""
    path = Path(crd_path).resolve()
    stat = path.stat()
    return _crd_validator(str(path), stat.st_size, stat.st_mtime_ns, version)


@lru_cache(maxsize=None)
def _crd_validator(crd_path: str, size: int, mtime_ns: int, version: str) -> jsonschema.protocols.Validator:
    crds = [d for d in _yaml_docs(Path(crd_path)) if d.get("kind") == "CustomResourceDefinition"]
    if len(crds) != 1:
        raise ValueError(f"{crd_path}: expected one CustomResourceDefinition, found {len(crds)}")
    return make_validator(object_jsonschema(version_schema(crds[0], version)))


# libyaml parses the multi-megabyte CRDs about ten times faster than the pure-Python loader.
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
# Parsed upstream files as JSON, by the sha256 of their bytes: reading JSON is some twenty
# times faster than building the same objects from YAML, and the megabytes of pinned CRDs
# would otherwise be parsed again by every test process. Content-addressed, so an edited
# file is simply a new entry; written atomically, so parallel workers never read half a file.
CACHE_DIR = REPO_ROOT / ".pytest_cache" / "upstream-json"


def _yaml_docs(path: Path) -> Iterator[dict[str, Any]]:
    """The mapping documents of a YAML file (shared, cached objects: do not modify them)."""
    stat = path.stat()
    yield from _parsed(str(path.resolve()), stat.st_size, stat.st_mtime_ns)


@lru_cache(maxsize=None)
def _parsed(path: str, size: int, mtime_ns: int) -> tuple[dict[str, Any], ...]:
    data = Path(path).read_bytes()
    cached = CACHE_DIR / f"{hashlib.sha256(data).hexdigest()}.json"
    try:
        return tuple(json.loads(cached.read_bytes()))
    except (OSError, ValueError):
        pass
    docs = [d for d in yaml.load_all(data, Loader=_LOADER) if isinstance(d, dict)]
    try:
        text = json.dumps(docs)
    except (TypeError, ValueError):
        return tuple(docs)  # not plain JSON data (dates, ...): parse it each time
    # Only what JSON carries exactly (no integer keys, no tuples) goes into the cache.
    if json.loads(text) == docs:
        CACHE_DIR.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=CACHE_DIR, suffix=".tmp")
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, cached)
    return tuple(docs)


def upstream_schemas(root: Path | None = None) -> dict[tuple[str, str, str], dict[str, Any]]:
    """Every CRD under shared/upstream: (group, kind, served version) -> openAPIV3Schema."""
    return _upstream_schemas(Path(root).resolve() if root else upstream_dir().resolve())


@lru_cache(maxsize=4)
def _upstream_schemas(root: Path) -> dict[tuple[str, str, str], dict[str, Any]]:
    out: dict[tuple[str, str, str], dict[str, Any]] = {}
    for path in sorted(root.rglob("*.yaml")):
        try:
            docs = list(_yaml_docs(path))
        except yaml.YAMLError:
            continue
        for doc in docs:
            if doc.get("kind") != "CustomResourceDefinition" or not str(doc.get("apiVersion", "")).startswith(
                "apiextensions.k8s.io/"
            ):
                continue
            spec = doc["spec"]
            for v in spec["versions"]:
                if v.get("served", False):
                    out[(spec["group"], spec["names"]["kind"], v["name"])] = version_schema(doc, v["name"])
    return out


class _LazyValidators(Mapping):
    """(group, kind, version) -> strict validator, built on first use.

    Converting is lazy because some CRDs (ASO, Argo CD) are megabytes each.
    """

    def __init__(self, schemas: dict[tuple[str, str, str], dict[str, Any]]):
        self._schemas = schemas
        self._built: dict[tuple[str, str, str], jsonschema.protocols.Validator] = {}

    def __getitem__(self, key: tuple[str, str, str]) -> jsonschema.protocols.Validator:
        if key not in self._built:
            self._built[key] = make_validator(object_jsonschema(self._schemas[key]))
        return self._built[key]

    def __iter__(self) -> Iterator[tuple[str, str, str]]:
        return iter(self._schemas)

    def __len__(self) -> int:
        return len(self._schemas)


def load_upstream_crds(root: Path | None = None) -> Mapping[tuple[str, str, str], jsonschema.protocols.Validator]:
    """Strict validators for every CRD under shared/upstream, keyed by (group, kind, version)."""
    return _load_upstream_crds(Path(root).resolve() if root else upstream_dir().resolve())


@lru_cache(maxsize=4)
def _load_upstream_crds(root: Path) -> Mapping[tuple[str, str, str], jsonschema.protocols.Validator]:
    return _LazyValidators(upstream_schemas(root))


def validator_for(group: str, kind: str, version: str) -> jsonschema.protocols.Validator | None:
    """Strict validator for group/kind/version from shared/upstream, or None if no CRD there."""
    return load_upstream_crds().get((group, kind, version))


def split_api_version(api_version: str) -> tuple[str, str]:
    """'apps/v1' -> ('apps', 'v1'); 'v1' -> ('', 'v1')."""
    group, _, version = api_version.rpartition("/")
    return group, version


def errors(validator: jsonschema.protocols.Validator, obj: Any) -> list[str]:
    """Readable, sorted validation errors (empty when valid)."""
    return sorted(
        f"{'/'.join(str(p) for p in e.absolute_path) or '<root>'}: {e.message[:300]}"
        for e in validator.iter_errors(obj)
    )
