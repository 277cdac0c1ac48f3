"""What kro v0.9.3 does to a ResourceGraphDefinition before CEL sees it, done offline.

Home-made because no Python library implements these parts of kro; the CEL itself is
parsed, checked and evaluated by a real engine (tests/gitops_support/cel.py).

* :func:`expressions` finds every ``${...}`` in a string (kro's ``pkg/graph/parser``:
  balanced braces, braces inside CEL string literals skipped) and :func:`is_standalone`
  tells a whole-value expression (its result keeps its CEL type) from one embedded in a
  string (kro concatenates the string forms).
* :func:`fill_expressions` replaces expressions by values (computed by CEL where the test
  can, else a sample of the type the target schema expects), so a resource template can be
  validated against its CRD like a manifest.
* :func:`apply_defaults` applies OpenAPI ``default`` values the way the API server's
  structural defaulting does.

Not modelled: kro's static type check of each expression against the generated CRD
schema (the tests evaluate on samples instead, see cel.py), its ``omit()`` and
``runtime`` libraries, external references, custom status conditions, the graph
revision machinery and everything that happens in a cluster (apply sets, pruning,
readiness polling): the readiness and dependency rules the tests rely on are quoted
from kro's source in the tests that use them.
"""

from __future__ import annotations

from typing import Any, Iterator

# Namespaces of kro's CEL libraries (hash.sha256(...), random.seededString(...), ...).
CEL_NAMESPACES = {"hash", "json", "random", "lists", "strings", "base64", "math", "sets", "optional", "runtime", "ip", "cidr", "url", "quantity", "semver"}


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
