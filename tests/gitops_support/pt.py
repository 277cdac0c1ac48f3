"""Offline rendering of function-patch-and-transform v0.10.8 input (pt.fn.crossplane.io/v1beta1).

Home-made: the function is Go and has no Python port. Modelled, with the function's
semantics: patch types FromCompositeFieldPath, CombineFromComposite (string strategy),
ToCompositeFieldPath and PatchSet; transforms string (Format with ``%s``, Convert ToSha1/256/512,
ToUpper/ToLower/ToBase64, Regexp with optional group), map and convert;
field paths with ``[index]`` and ``[key.with.dots]``; fromFieldPath Optional by default (a
missing source skips the patch). Anything else raises ``Unsupported``, so a test cannot
pass on a feature this model ignores.

Not modelled: readiness checks (``readinessChecks``, MatchCondition, the default
"Ready=True" rule), connection details, policy ``Required``/``toFieldPath`` merge options,
Environment/Context patches, the order in which Crossplane applies desired state, server-
side apply merging of composed resources, and everything that needs observed state beyond
what the test puts on the XR's status. Regexp uses Python's ``re`` where the function uses
Go's RE2; the Composition's one pattern (``^.{16}``) means the same in both.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import re
from typing import Any

_SEGMENT = re.compile(r"([^.\[\]]+)|\[([^\]]+)\]")


class Unsupported(ValueError):
    pass


def parse_path(path: str) -> list[str | int]:
    """'a.b[0].c' -> ['a','b',0,'c']; 'metadata.labels[app.kubernetes.io/name]' keeps the key."""
    out: list[str | int] = []
    pos = 0
    for m in _SEGMENT.finditer(path):
        if m.start() != pos and path[pos:m.start()] != ".":
            raise ValueError(f"bad field path {path!r}")
        if m.group(1) is not None:
            out.append(m.group(1))
        else:
            key = m.group(2)
            out.append(int(key) if key.isdigit() else key)
        pos = m.end()
    if pos != len(path):
        raise ValueError(f"bad field path {path!r}")
    return out


_MISSING = object()


def get_path(obj: Any, path: str) -> Any:
    cur = obj
    for seg in parse_path(path):
        if isinstance(seg, int):
            if not isinstance(cur, list) or seg >= len(cur):
                return _MISSING
            cur = cur[seg]
        else:
            if not isinstance(cur, dict) or seg not in cur:
                return _MISSING
            cur = cur[seg]
    return cur


def set_path(obj: dict[str, Any], path: str, value: Any) -> None:
    segs = parse_path(path)
    cur: Any = obj
    for seg, nxt in zip(segs, segs[1:]):
        if isinstance(seg, int):
            if not isinstance(cur, list):
                raise ValueError(f"{path}: not a list at {seg}")
            while len(cur) <= seg:
                cur.append({} if not isinstance(nxt, int) else [])
            cur = cur[seg]
        else:
            if seg not in cur or cur[seg] is None:
                cur[seg] = [] if isinstance(nxt, int) else {}
            cur = cur[seg]
    last = segs[-1]
    if isinstance(last, int):
        while len(cur) <= last:
            cur.append(None)
    cur[last] = copy.deepcopy(value)


def _string_transform(t: dict[str, Any], value: Any) -> Any:
    kind = t["type"]
    if kind == "Format":
        if t["fmt"].count("%s") != 1 or t["fmt"].count("%") != 1:
            _unsupported(t)
        return t["fmt"].replace("%s", value if isinstance(value, str) else json.dumps(value))
    if kind == "Convert":
        conv = t["convert"]
        s = value if isinstance(value, str) else json.dumps(value)
        table = {
            "ToUpper": lambda: s.upper(),
            "ToLower": lambda: s.lower(),
            "ToBase64": lambda: base64.b64encode(s.encode()).decode(),
            "ToSha1": lambda: hashlib.sha1(s.encode()).hexdigest(),
            "ToSha256": lambda: hashlib.sha256(s.encode()).hexdigest(),
            "ToSha512": lambda: hashlib.sha512(s.encode()).hexdigest(),
        }
        if conv not in table:
            _unsupported(t)
        return table[conv]()
    if kind == "Regexp":
        m = re.search(t["regexp"]["match"], value)
        if not m:
            raise ValueError(f"regexp {t['regexp']['match']!r} does not match {value!r}")
        return m.group(t["regexp"].get("group", 0))
    if kind == "TrimPrefix":
        return value[len(t["trim"]):] if value.startswith(t["trim"]) else value
    if kind == "TrimSuffix":
        return value[: -len(t["trim"])] if t["trim"] and value.endswith(t["trim"]) else value
    return _unsupported(t)


def _unsupported(what: Any) -> Any:
    raise Unsupported(f"not modelled: {what}")


def transform(transforms: list[dict[str, Any]], value: Any) -> Any:
    for t in transforms or []:
        kind = t["type"]
        if kind == "map":
            key = value if isinstance(value, str) else json.dumps(value)
            if key not in t["map"]:
                raise ValueError(f"map transform has no key {key!r}")
            value = t["map"][key]
        elif kind == "string":
            value = _string_transform(t["string"], value)
        elif kind == "convert":
            to = t["convert"]["toType"]
            if to == "string":
                value = value if isinstance(value, str) else json.dumps(value)
            elif to == "int64":
                value = int(value)
            elif to == "bool":
                value = str(value).lower() == "true" if isinstance(value, str) else bool(value)
            else:
                _unsupported(t)
        else:
            _unsupported(t)
    return value


def expand_patches(patches: list[dict[str, Any]], patch_sets: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    out = []
    for p in patches or []:
        if p.get("type") == "PatchSet":
            out.extend(patch_sets[p["patchSetName"]])
        else:
            out.append(p)
    return out


def render(pt_input: dict[str, Any], xr: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Desired composed resources (by P&T resource name) for an XR; to-composite patches skipped."""
    if pt_input.get("environment"):
        _unsupported("environment patches")
    patch_sets = {ps["name"]: ps["patches"] for ps in pt_input.get("patchSets", [])}
    desired: dict[str, dict[str, Any]] = {}
    for res in pt_input["resources"]:
        obj = copy.deepcopy(res["base"])
        for p in expand_patches(res.get("patches"), patch_sets):
            kind = p.get("type", "FromCompositeFieldPath")
            policy = (p.get("policy") or {}).get("fromFieldPath", "Optional")
            if kind == "FromCompositeFieldPath":
                v = get_path(xr, p["fromFieldPath"])
                if v is _MISSING:
                    if policy == "Required":
                        raise ValueError(f"{res['name']}: required {p['fromFieldPath']} missing")
                    continue
                set_path(obj, p.get("toFieldPath", p["fromFieldPath"]), transform(p.get("transforms"), v))
            elif kind == "CombineFromComposite":
                comb = p["combine"]
                if comb["strategy"] != "string":
                    _unsupported(comb)
                vals = [get_path(xr, v["fromFieldPath"]) for v in comb["variables"]]
                if any(v is _MISSING for v in vals):
                    continue
                fmt = comb["string"]["fmt"]
                if fmt.count("%s") != len(vals) or fmt.count("%") != len(vals):
                    _unsupported(fmt)
                s = fmt.replace("%s", "{}").format(*vals)
                set_path(obj, p["toFieldPath"], transform(p.get("transforms"), s))
            elif kind == "ToCompositeFieldPath":
                continue  # reads the observed composed resource; checked statically
            else:
                _unsupported(kind)
        desired[res["name"]] = obj
    return desired


def composite_paths(pt_input: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(resource, direction, XR field path) for every patch touching the XR."""
    patch_sets = {ps["name"]: ps["patches"] for ps in pt_input.get("patchSets", [])}
    out = []
    for res in pt_input["resources"]:
        for p in expand_patches(res.get("patches"), patch_sets):
            kind = p.get("type", "FromCompositeFieldPath")
            if kind == "FromCompositeFieldPath":
                out.append((res["name"], "from", p["fromFieldPath"]))
            elif kind == "CombineFromComposite":
                out.extend((res["name"], "from", v["fromFieldPath"]) for v in p["combine"]["variables"])
            elif kind == "ToCompositeFieldPath":
                out.append((res["name"], "to", p["toFieldPath"]))
    return out
