"""Conformance of a program's Helm values with the chart's own values.yaml / values.schema.json.

Helm ignores a values key that no template reads, so a misspelt or outdated key installs
"successfully" and silently changes nothing. `unknown_value_paths` catches that offline,
against the upstream chart files kept in ../shared/upstream (see SOURCES.md there).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional

import yaml
from jsonschema import validators


def unknown_value_paths(
    values: Mapping[str, Any],
    chart_dir: Path,
    *,
    free_form: Iterable[str] = (),
) -> list[str]:
    """Key paths in `values` that the chart at `chart_dir` does not know; [] when all conform.

    A key path is known when it exists in the chart's values.yaml, or when it lies beneath a
    key whose upstream value is an empty map `{}` or null (the chart's open slots, such as
    `podAnnotations: {}`), beneath a list (its items are Kubernetes objects, not chart keys),
    beneath one of `free_form` (dotted paths the chart documents as free-form, e.g. a map
    copied verbatim into a ConfigMap), or, for charts with a values.schema.json, when the
    schema declares it (charts document some keys only as comments, e.g. cert-manager's
    `global.leaderElection.leaseDuration`).

    Where values.schema.json exists, `values` must also validate against it (as `helm install`
    would); a violation other than an unknown key is reported as "<path>: <schema message>".

    Returns sorted, distinct strings: dotted paths (list items as `[i]`).
    """
    upstream = yaml.safe_load((chart_dir / "values.yaml").read_text()) or {}
    schema_file = chart_dir / "values.schema.json"
    schema = json.loads(schema_file.read_text()) if schema_file.is_file() else None
    open_paths = {tuple(p.split(".")) for p in free_form}

    found: set[str] = set()
    _walk(values, upstream, (), open_paths, schema, found)
    if schema is not None:
        found.update(_schema_violations(values, schema))
    return sorted(found)


def _walk(
    values: Mapping[str, Any],
    upstream: Mapping[str, Any],
    path: tuple[str, ...],
    open_paths: set[tuple[str, ...]],
    schema: Optional[dict],
    found: set[str],
) -> None:
    for key, value in values.items():
        here = (*path, str(key))
        if here in open_paths:
            continue
        if key not in upstream:
            if schema is None or not _schema_declares(schema, here):
                found.add(_format(here))
            continue
        default = upstream[key]
        # Open slot ({} or null) or list: the chart takes whatever is put there.
        if isinstance(default, Mapping) and default and isinstance(value, Mapping):
            _walk(value, default, here, open_paths, schema, found)


def _schema_declares(schema: dict, path: tuple[str, ...]) -> bool:
    """Whether the schema names `path` as a property (following $ref)."""
    node = _deref(schema, schema)
    for part in path:
        props = node.get("properties") or {}
        if part not in props:
            return False
        node = _deref(schema, props[part])
    return True


def _deref(root: dict, node: dict) -> dict:
    seen = 0
    while isinstance(node, dict) and "$ref" in node:
        ref = node["$ref"]
        if not ref.startswith("#/"):
            raise ValueError(f"values.schema.json: only local $ref is supported, found {ref!r}")
        target: Any = root
        for part in ref[2:].split("/"):
            target = target[part.replace("~1", "/").replace("~0", "~")]
        node = target
        seen += 1
        if seen > 64:
            raise ValueError(f"values.schema.json: $ref cycle at {ref!r}")
    return node


def _schema_violations(values: Mapping[str, Any], schema: dict) -> set[str]:
    cls = validators.validator_for(schema)
    cls.check_schema(schema)
    out: set[str] = set()
    for error in cls(schema).iter_errors(values):
        path = tuple(error.absolute_path)
        if error.validator == "additionalProperties" and isinstance(error.instance, Mapping):
            # Report the unexpected keys themselves, as the values.yaml walk does.
            props = error.schema.get("properties") or {}
            patterns = error.schema.get("patternProperties") or {}
            for key in error.instance:
                if key not in props and not any(re.search(p, str(key)) for p in patterns):
                    out.add(_format((*path, key)))
        else:
            out.add(f"{_format(path) or '<root>'}: {error.message}")
    return out


def _format(path: Iterable[Any]) -> str:
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text


def upstream_provenance(chart_dir: Path, file: str = "values.yaml") -> str:
    """The SOURCES.md row recording where `<chart_dir>/<file>` came from (and which version)."""
    sources = (chart_dir.parent / "SOURCES.md").read_text()
    key = f"| {chart_dir.name}/{file} |"
    rows = [line for line in sources.splitlines() if line.startswith(key)]
    if len(rows) != 1:
        raise AssertionError(f"SOURCES.md: expected one row for {chart_dir.name}/{file}, found {len(rows)}")
    return rows[0]
