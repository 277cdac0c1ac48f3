"""Static checks of kro ResourceGraphDefinitions that kro itself only does in a cluster.

* :func:`expressions` finds every ``${...}`` (balanced braces, CEL string literals skipped).
* :func:`references` lists the field paths an expression reads: ``schema.spec.x``,
  ``<resource id>.status.y``, iterator variables; CEL functions, macros and their bound
  variables are told apart so that only data references are returned.
* :func:`fill_expressions` replaces expressions by values of the type the target schema
  expects, so a resource template can be validated against its CRD like a manifest.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Iterator

# Namespaces of kro's CEL libraries (hash.sha256(...), random.seededString(...), ...).
CEL_NAMESPACES = {"hash", "json", "random", "lists", "strings", "base64", "math", "sets", "optional", "runtime", "ip", "cidr", "url", "quantity", "semver"}
CEL_KEYWORDS = {"true", "false", "null", "in"}
# Macros whose first argument binds a variable: list.exists(c, c.type == "Ready").
MACROS = {"all", "exists", "exists_one", "existsOne", "map", "filter", "transformList", "transformMap", "transformMapEntry", "sortBy"}


def expressions(value: str) -> list[str]:
    """CEL bodies of every ``${...}`` in a string."""
    out: list[str] = []
    i = 0
    while True:
        start = value.find("${", i)
        if start < 0:
            return out
        depth, j, quote = 1, start + 2, None
        while j < len(value) and depth:
            ch = value[j]
            if quote:
                if ch == "\\":
                    j += 1
                elif ch == quote:
                    quote = None
            elif ch in "\"'":
                quote = ch
            elif ch == "{":
                depth += 1
            elif ch == "}":
                depth -= 1
            j += 1
        if depth:
            raise ValueError(f"unterminated expression in {value!r}")
        out.append(value[start + 2 : j - 1])
        i = j


def is_standalone(value: str) -> bool:
    """True when the whole string is one expression (its result keeps its CEL type)."""
    exprs = expressions(value)
    return len(exprs) == 1 and value.strip() == "${" + exprs[0] + "}"


def _strip_strings(expr: str) -> str:
    return re.sub(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'', '""', expr)


@dataclass(frozen=True)
class Reference:
    root: str
    path: tuple[str, ...]

    def __str__(self) -> str:
        return ".".join((self.root, *self.path))


_CHAIN = re.compile(r"(?<![\w.\"])([A-Za-z_]\w*)((?:\s*\.\s*\??[A-Za-z_]\w*)*)(\s*\()?")


def references(expr: str) -> list[Reference]:
    """Data references in one CEL expression (roots other than functions and macro vars)."""
    code = _strip_strings(expr)
    bound = set(re.findall(r"\.\s*(?:" + "|".join(MACROS) + r")\s*\(\s*([A-Za-z_]\w*)\s*,", code))
    # two-variable macros bind a second name
    bound |= set(re.findall(r"\.\s*(?:all|exists|existsOne|transformList|transformMap|transformMapEntry)\s*\(\s*\w+\s*,\s*([A-Za-z_]\w*)\s*,", code))
    refs: list[Reference] = []
    for m in _CHAIN.finditer(code):
        root = m.group(1)
        parts = [p.strip().lstrip("?") for p in m.group(2).split(".") if p.strip()] if m.group(2) else []
        called = bool(m.group(3))
        if root in CEL_KEYWORDS or root in bound:
            continue
        if called:
            if not parts or root in CEL_NAMESPACES:
                continue  # a function: string(x), hash.sha256(x)
            parts = parts[:-1]  # a method: x.y.substring(...) reads x.y
        if root in CEL_NAMESPACES:
            continue
        refs.append(Reference(root, tuple(parts)))
    return refs


def walk_strings(obj: Any, path: tuple = ()) -> Iterator[tuple[tuple, str]]:
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from walk_strings(v, path + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from walk_strings(v, path + (i,))
    elif isinstance(obj, str):
        yield path, obj


def schema_at(schema: dict[str, Any] | None, path: tuple[str, ...]) -> dict[str, Any] | None:
    """Sub-schema at a field path, or None when the path is not declared.

    Paths may go through arrays only by macro/collection functions, which callers strip;
    a schema that preserves unknown fields (or is a map) accepts any deeper path.
    """
    s = schema
    for part in path:
        if s is None:
            return None
        if s.get("x-kubernetes-preserve-unknown-fields") and part not in s.get("properties", {}):
            return {"x-kubernetes-preserve-unknown-fields": True}
        props = s.get("properties")
        if props and part in props:
            s = props[part]
        elif isinstance(s.get("additionalProperties"), dict):
            s = s["additionalProperties"]
        else:
            return None
    return s


def sample_for(schema: dict[str, Any] | None) -> Any:
    """A value valid for a scalar schema (used in place of an expression)."""
    if not schema:
        return "x"
    if "enum" in schema:
        return schema["enum"][0]
    t = schema.get("type")
    if schema.get("x-kubernetes-int-or-string"):
        return 1
    if t == "integer":
        return int(max(schema.get("minimum", 1), 1))
    if t == "number":
        return float(max(schema.get("minimum", 1), 1))
    if t == "boolean":
        return True
    if t == "array":
        return []
    if t == "object":
        return {}
    return "x" * max(int(schema.get("minLength", 1)), 1)


def fill_expressions(obj: Any, schema: dict[str, Any] | None, resolve=lambda expr: None) -> Any:
    """Copy of ``obj`` with each expression replaced by a value its field's schema accepts.

    ``resolve(expr)`` may return the expression's value (e.g. a ``schema.spec`` field of a
    sample instance); otherwise a standalone expression becomes a sample of the field's
    type and an embedded one becomes "x", so literal parts (``/subscriptions/`` in front
    of an ARM-ID pattern) are still checked.
    """
    if isinstance(obj, dict):
        props = (schema or {}).get("properties", {})
        addl = (schema or {}).get("additionalProperties")
        return {
            k: fill_expressions(v, props.get(k) if k in props else (addl if isinstance(addl, dict) else None), resolve)
            for k, v in obj.items()
        }
    if isinstance(obj, list):
        items = (schema or {}).get("items")
        return [fill_expressions(v, items, resolve) for v in obj]
    if isinstance(obj, str) and "${" in obj:
        if is_standalone(obj):
            value = resolve(expressions(obj)[0])
            return sample_for(schema) if value is None else value
        out = obj
        for e in expressions(obj):
            value = resolve(e)
            out = out.replace("${" + e + "}", "x" if value is None else str(value), 1)
        return out
    return obj


def apply_defaults(schema: dict[str, Any], obj: Any) -> Any:
    """Structural defaulting as the API server does it (defaults, recursively)."""
    if not isinstance(obj, dict) or schema.get("type") != "object":
        return obj
    out = dict(obj)
    for name, sub in schema.get("properties", {}).items():
        if name not in out and "default" in sub:
            out[name] = sub["default"]
        if name in out:
            out[name] = apply_defaults(sub, out[name])
    return out


def lookup(scope: dict[str, Any], expr: str) -> Any:
    """Value of a plain reference like ``schema.spec.x`` or ``item.name`` in ``scope``
    (root name -> object), else None."""
    m = re.fullmatch(r"\s*([A-Za-z_]\w*)((?:\.[A-Za-z_]\w*)+)\s*", expr)
    if not m or m.group(1) not in scope:
        return None
    cur: Any = scope[m.group(1)]
    for part in m.group(2)[1:].split("."):
        if not isinstance(cur, dict) or part not in cur:
            return None
        cur = cur[part]
    return cur
