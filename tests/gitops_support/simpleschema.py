"""kro SimpleSchema -> OpenAPI v3, following kro v0.9.3's rules (pkg/simpleschema).

Home-made: SimpleSchema is kro's own notation, parsed only by kro's Go code. Modelled:
atomic types (string, integer, boolean, float), ``[]T``, ``map[string]T``, custom types
from ``spec.schema.types``, nested objects, and the markers kro documents (required,
default, description, minimum, maximum, enum, pattern, minLength, maxLength, minItems,
maxItems, uniqueItems, immutable, validation, listType, listMapKey). Rules kro applies
that matter for comparing APIs are reproduced: ``required=true`` lands in the parent's
``required`` list (also when set on a custom type alias), and an object with no required
fields but a defaulted child gets ``default: {}``.

Not modelled: the CRD kro generates around the schema (status conditions, printer
columns, the ``x-kubernetes-validations`` that ``validation`` and ``immutable`` become are
carried but not evaluated), ``map`` keys other than string, and error messages worded as
kro's. A marker this module does not know raises.
"""

from __future__ import annotations

import json
import re
from typing import Any

ATOMIC = {"string": "string", "integer": "integer", "boolean": "boolean", "float": "number", "number": "number"}
KNOWN_MARKERS = {
    "required", "default", "description", "minimum", "maximum", "validation", "enum", "immutable",
    "pattern", "uniqueItems", "minLength", "maxLength", "minItems", "maxItems", "listType", "listMapKey",
}


class SimpleSchemaError(ValueError):
    pass


def parse_markers(text: str) -> list[tuple[str, str]]:
    """``required=true default="a b"`` -> [("required", "true"), ("default", "a b")]."""
    out: list[tuple[str, str]] = []
    key: str | None = None
    buf: list[str] = []
    in_quotes = escaped = False
    depth = 0

    def flush() -> None:
        nonlocal key
        raw = "".join(buf).strip()
        if raw.startswith('"') and raw.endswith('"') and len(raw) >= 2:
            raw = re.sub(r'\\(["\\])', r"\1", raw[1:-1])
        out.append((key, raw))  # type: ignore[arg-type]
        key = None
        buf.clear()

    for ch in text:
        if ch == "=" and key is None and not in_quotes and depth == 0:
            key = "".join(buf).strip()
            if key not in KNOWN_MARKERS:
                raise SimpleSchemaError(f"unknown marker {key!r}")
            buf.clear()
        elif ch == '"' and not escaped:
            in_quotes = not in_quotes
            buf.append(ch)
        elif ch == "\\" and in_quotes and not escaped:
            escaped = True
            buf.append(ch)
        elif ch in "{[" and not in_quotes:
            depth += 1
            buf.append(ch)
        elif ch in "}]" and not in_quotes:
            depth -= 1
            buf.append(ch)
        elif ch.isspace() and not in_quotes and depth == 0:
            if key is not None:
                flush()
        else:
            escaped = False
            buf.append(ch)
    if key is not None:
        flush()
    elif "".join(buf).strip():
        raise SimpleSchemaError(f"marker without a value: {''.join(buf)!r}")
    if in_quotes:
        raise SimpleSchemaError("unclosed quote")
    return out


class Converter:
    def __init__(self, types: dict[str, Any] | None = None):
        self.types_src = types or {}
        self.types: dict[str, tuple[dict[str, Any], bool]] = {}

    def custom(self, name: str) -> tuple[dict[str, Any], bool]:
        if name not in self.types:
            if name not in self.types_src:
                raise SimpleSchemaError(f"unknown type {name!r}")
            spec = self.types_src[name]
            if isinstance(spec, str):
                parent: dict[str, Any] = {}
                schema = self.field(name, spec, parent)
                self.types[name] = (schema, bool(parent.get("required")))
            else:
                self.types[name] = (self.obj(spec), False)
        schema, required = self.types[name]
        return json.loads(json.dumps(schema)), required

    def type_schema(self, typ: str) -> tuple[dict[str, Any], bool]:
        typ = typ.strip()
        if typ.startswith("[]"):
            items, _ = self.type_schema(typ[2:])
            return {"type": "array", "items": items}, False
        m = re.fullmatch(r"map\[(\w+)\](.+)", typ)
        if m:
            if m.group(1) != "string":
                raise SimpleSchemaError(f"map keys must be strings: {typ}")
            values, _ = self.type_schema(m.group(2))
            return {"type": "object", "additionalProperties": values}, False
        if typ in ATOMIC:
            return {"type": ATOMIC[typ]}, False
        if typ == "object":
            return {"type": "object", "x-kubernetes-preserve-unknown-fields": True}, False
        return self.custom(typ)

    def field(self, name: str, text: str, parent: dict[str, Any]) -> dict[str, Any]:
        typ, _, markers = text.partition("|")
        schema, custom_required = self.type_schema(typ)
        if custom_required:
            parent.setdefault("required", []).append(name)
        for key, value in parse_markers(markers) if markers.strip() else []:
            self.apply(schema, key, value, name, parent)
        return schema

    def apply(self, schema: dict[str, Any], key: str, value: str, name: str, parent: dict[str, Any]) -> None:
        t = schema.get("type")
        if key == "required":
            if value.lower() == "true":
                parent.setdefault("required", []).append(name)
        elif key == "default":
            if t == "string":
                schema["default"] = value
            elif t == "integer":
                schema["default"] = int(value)
            elif t == "number":
                schema["default"] = float(value)
            elif t == "boolean":
                schema["default"] = value.lower() == "true"
            else:
                schema["default"] = json.loads(value)
        elif key == "description":
            schema["description"] = value
        elif key in ("minimum", "maximum"):
            schema[key] = float(value)
        elif key == "enum":
            vals = [v.strip() for v in value.split(",")]
            if t == "integer":
                schema["enum"] = [int(v) for v in vals]
            elif t == "string":
                schema["enum"] = vals
            else:
                raise SimpleSchemaError(f"enum on {t}")
        elif key == "pattern":
            re.compile(value)
            schema["pattern"] = value
        elif key in ("minLength", "maxLength", "minItems", "maxItems"):
            schema[key] = int(value)
        elif key == "uniqueItems":
            if value.lower() == "true":
                schema["x-kubernetes-list-type"] = "set"
        elif key == "immutable":
            if value.lower() == "true":
                schema.setdefault("x-kubernetes-validations", []).append({"rule": "self == oldSelf"})
        elif key == "validation":
            schema.setdefault("x-kubernetes-validations", []).append({"rule": value})
        elif key == "listType":
            schema["x-kubernetes-list-type"] = value
        elif key == "listMapKey":
            schema.setdefault("x-kubernetes-list-map-keys", []).append(value)

    def obj(self, spec: dict[str, Any]) -> dict[str, Any]:
        schema: dict[str, Any] = {"type": "object", "properties": {}}
        for name, sub in spec.items():
            if isinstance(sub, str):
                schema["properties"][name] = self.field(name, sub, schema)
            elif isinstance(sub, dict):
                schema["properties"][name] = self.obj(sub)
            else:
                raise SimpleSchemaError(f"field {name}: unexpected {type(sub).__name__}")
        if not schema.get("required") and any("default" in p for p in schema["properties"].values()):
            schema["default"] = {}
        return schema


def to_openapi(spec: dict[str, Any], types: dict[str, Any] | None = None) -> dict[str, Any]:
    """OpenAPI schema kro generates for a SimpleSchema ``spec`` block."""
    return Converter(types).obj(spec)
