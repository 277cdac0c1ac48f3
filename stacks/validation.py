"""Running the declaration: pydantic per top-level key, then the rules that span keys.

Each top-level key is validated on its own (its section's models and their rules run
inside pydantic), so a mistake in one key never hides the problems of another. The rules
spanning top-level keys (stacks/stack_rules.py) then run on the keys that are valid; a rule
that needs a key with a problem is skipped, so no message follows from another one. Every
pydantic error is translated into the project's format with the declared field's text.
"""

from __future__ import annotations

import re
import typing
from functools import lru_cache
from typing import Annotated, Any, Mapping, Optional, Union

from pydantic import BaseModel, TypeAdapter, ValidationError
from pydantic.fields import FieldInfo

from stacks import stack_rules
from stacks.config import GUID, PROJECT, PROVIDER_KEYS, PROVIDER_NAMESPACE, StackConfig, decode, secret_fields
from stacks.problems import MISSING, ConfigError, Masker, Path, Problem, distinct_problems, message, unknown_key_text

# Key names whose values are never shown, wherever they appear: the declared secrets, and
# names that say "credential" (a defence besides Pulumi's secret keys, which decide first).
SECRET_NAME_ENDINGS = ("secret", "password", "passwd", "token", "kubeconfig", "privatekey", "connectionstring", "apikey", "accesskey")


class _NameMasker(Masker):
    def __init__(self, secret_keys: frozenset[str], raw: Optional[Mapping[str, Any]] = None):
        super().__init__(secret_keys, secret_fields(), raw)

    def path_is_secret(self, path: Path) -> bool:
        if super().path_is_secret(path):
            return True
        return any(isinstance(p, str) and _norm(p).endswith(SECRET_NAME_ENDINGS) for p in path)


# The top-level keys only a hybrid stack takes.
HYBRID_ONLY_KEYS = ("hybrid", *secret_fields())


def _norm(name: str) -> str:
    return "".join(c for c in name if c not in "-_. ").lower()


def masker_for(secret_keys: frozenset[str], raw: Optional[Mapping[str, Any]] = None) -> Masker:
    return _NameMasker(secret_keys, raw)


def _model_of(annotation: Any) -> Optional[type[BaseModel]]:
    """The section model inside Optional[...], tuple[..., ...], dict[...] or Annotated[...]."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    origin = typing.get_origin(annotation)
    if origin is Annotated:
        return _model_of(typing.get_args(annotation)[0])
    if origin in (Union, tuple, list, dict) or str(origin) == "types.UnionType":
        for arg in typing.get_args(annotation):
            found = _model_of(arg)
            if found is not None:
                return found
    return None


def _fields_by_alias(model: type[BaseModel]) -> dict[str, FieldInfo]:
    return {info.alias or name: info for name, info in model.model_fields.items()}


def field_at(path: Path) -> tuple[Optional[FieldInfo], Optional[type[BaseModel]]]:
    """The declared field a key path ends in, and the model that holds it."""
    model: Optional[type[BaseModel]] = StackConfig
    info: Optional[FieldInfo] = None
    holder: Optional[type[BaseModel]] = None
    for part in path:
        if isinstance(part, int) or model is None:
            continue
        found = _fields_by_alias(model).get(part)
        if found is None:
            return info, holder
        holder, info = model, found
        model = _model_of(found.annotation)
    return info, holder


def _field_end(path: Path) -> int:
    """The index in `path` of the declared field it reaches (as field_at walks it)."""
    model: Optional[type[BaseModel]] = StackConfig
    end = -1
    for i, part in enumerate(path):
        if isinstance(part, int) or model is None:
            continue
        found = _fields_by_alias(model).get(part)
        if found is None:
            break
        end, model = i, _model_of(found.annotation)
    return end


def element_description(annotation: Any, path: Path, key: bool) -> Optional[str]:
    """The item()'s text of the list element, mapping key or mapping value `path` ends in."""
    origin = typing.get_origin(annotation)
    if origin is Annotated:
        return element_description(typing.get_args(annotation)[0], path, key)
    if origin is Union or str(origin) == "types.UnionType":
        found = [element_description(a, path, key) for a in typing.get_args(annotation) if a is not type(None)]
        return next((f for f in found if f), None)
    args = typing.get_args(annotation)
    if origin is tuple and isinstance(path[-1], int) and args:
        element = args[0]
    elif origin is dict and len(args) == 2 and isinstance(path[-1], str):
        element = args[0] if key else args[1]
    else:
        return None
    if typing.get_origin(element) is Annotated:
        for meta in typing.get_args(element)[1:]:
            if isinstance(meta, FieldInfo) and meta.description:
                return meta.description
    return None


def _model_at(path: Path) -> Optional[type[BaseModel]]:
    """The section model a key path points at (a mapping), if any."""
    info, _ = field_at(path)
    return _model_of(info.annotation) if info is not None else StackConfig if not path else None


def translate(error: Mapping[str, Any], prefix: Path) -> list[Problem]:
    """One pydantic error as the project's problems (a rule error carries several)."""
    loc: list[Union[str, int]] = list(prefix)
    key_error = False
    for part in error["loc"]:
        if part == "[key]":
            key_error = True
            continue
        loc.append(part)
    path: Path = tuple(loc)
    kind = error["type"]
    ctx = error.get("ctx") or {}
    given = error.get("input")
    if kind == "too_short" and isinstance(given, (list, tuple)) and ctx.get("actual_length") != len(given):
        # Counted after dropping the invalid items, which have their own messages.
        return []
    if kind == "config_rules":
        return [p.under(path) for p in ctx["problems"]]
    info, _ = field_at(path)
    allowed = (info.description if info is not None else None) or "a valid value"
    if info is not None and _field_end(path) == len(path) - 2:
        # An element of a list or mapping: its own text where one is declared (item()).
        allowed = element_description(info.annotation, path, key_error) or allowed
    if kind == "missing":
        return [Problem(path, MISSING, "required: " + allowed)]
    if kind == "extra_forbidden":
        holder = _model_at(path[:-1])
        known = list(_fields_by_alias(holder)) if holder else []
        return [Problem(path, given, unknown_key_text(str(path[-1]), known))]
    if kind == "config":
        allowed = ctx["allowed"]
    elif kind in ("model_type", "model_attributes_type", "dict_type"):
        model = _model_at(path)
        if model is not None:
            allowed = "a mapping (YAML object) with the keys " + ", ".join(_fields_by_alias(model))
        else:
            allowed = "a mapping (YAML object): " + allowed
    elif kind in ("tuple_type", "list_type"):
        allowed = "a list: " + allowed
    if key_error:
        given = path[-1]
    return [Problem(path, given, allowed)]


@lru_cache(maxsize=None)
def _adapter(field_name: str) -> TypeAdapter:
    info = StackConfig.model_fields[field_name]
    return TypeAdapter(Annotated[info.annotation, *info.metadata] if info.metadata else info.annotation)


def provider_problems(provider: Mapping[str, Any]) -> list[Problem]:
    """The stack's azure-native keys (without the namespace): each required, a GUID."""
    problems = []
    for key, allowed in PROVIDER_KEYS.items():
        value = provider.get(key)
        path = (f"{PROVIDER_NAMESPACE}:{key}",)
        if value is None or value == "":
            problems.append(Problem(path, MISSING, "required: " + allowed))
        elif not isinstance(value, str) or not re.fullmatch(GUID, value):
            problems.append(Problem(path, value, allowed))
    return problems


def validate(raw: Mapping[str, Any], secret_keys: frozenset[str], provider: Optional[Mapping[str, Any]] = None) -> StackConfig:
    masker = masker_for(secret_keys, raw)
    problems: list[Problem] = [] if provider is None else provider_problems(provider)
    fields = _fields_by_alias(StackConfig)
    for name in raw:
        if name not in fields:
            problems.append(Problem((name,), raw[name], unknown_key_text(name, list(fields))))

    data = dict(raw)
    # A stack without `kind` is 'aks'. One with keys only a hybrid stack takes most likely
    # forgot `kind: hybrid`: one message on `kind`, and none of what follows from the default
    # (the AKS cluster's own rules, "only with kind 'hybrid'" on every hybrid key).
    hybrid_only = [k for k in HYBRID_ONLY_KEYS if raw.get(k) is not None]
    kind_failed = "kind" not in raw and bool(hybrid_only)
    if kind_failed:
        problems.append(Problem(
            ("kind",), MISSING,
            f"'hybrid' for a stack with {', '.join(hybrid_only)} (keys only kind 'hybrid' takes): without `kind` the "
            "stack is 'aks', which creates an AKS cluster and takes none of them; set `kind: hybrid`",
        ))
        data["kind"] = None
    # Sections whose absence means "all defaults" for the kind: their rules still apply.
    kind = data.get("kind", "aks")
    if kind == "aks" and data.get("cluster") is None:
        data["cluster"] = {}
    if kind == "hybrid" and data.get("hybrid") is None:
        data["hybrid"] = {}

    # The other kind's section is refused as a whole (stack_rules), not validated key by key.
    other_kind = {"aks": "hybrid", "hybrid": "cluster"}.get(kind) if isinstance(kind, str) else None
    values: dict[str, Any] = {}
    failed: set[str] = set()
    for alias, info in fields.items():
        name = next(n for n, i in StackConfig.model_fields.items() if i is info)
        if alias == other_kind:
            values[name] = None
            continue
        if alias == "kind" and kind_failed:
            failed.add(name)
            continue
        if alias not in data:
            if info.is_required():
                problems.append(Problem((alias,), MISSING, "required: " + (info.description or "")))
                failed.add(name)
                continue
            if not info.validate_default:
                values[name] = info.get_default(call_default_factory=True)
                continue
        given = data[alias] if alias in data else info.get_default(call_default_factory=True)
        try:
            values[name] = _adapter(name).validate_python(given)
        except ValidationError as err:
            failed.add(name)
            for e in err.errors(include_url=False):
                problems.extend(translate(e, (alias,)))

    problems.extend(stack_rules.check(values, failed, raw, secret_keys))
    problems = distinct_problems(problems)
    if problems:
        raise ConfigError([message(p, masker) for p in problems])
    cfg = StackConfig.model_construct(**values)
    if provider is not None:
        cfg._subscription_id, cfg._tenant_id = provider["subscriptionId"], provider["tenantId"]
    return cfg


__all__ = ["validate", "translate", "field_at", "masker_for", "ConfigError"]


def load(
    raw: Mapping[str, Any], secret_keys: frozenset[str] = frozenset(), provider: Optional[Mapping[str, Any]] = None
) -> StackConfig:
    """Validate the stack's `aks-platform:*` settings (keys without the namespace) and, when
    `provider` is given (the `azure-native:*` keys, without the namespace; from_pulumi always
    gives them), the subscription and tenant the stack pins. Without `provider` the result
    checks the settings alone and has no subscription_id / tenant_id to build with."""
    return validate(raw, frozenset(secret_keys), provider)


def from_pulumi() -> StackConfig:
    """Read every `aks-platform:*` key of the running stack and which are secret, and validate."""
    from pulumi.runtime import config as runtime_config

    full: dict[str, Any] = {**runtime_config.get_config_env(), **runtime_config.CONFIG.get()}
    prefix = f"{PROJECT}:"
    raw = {k[len(prefix):]: decode(v) for k, v in sorted(full.items()) if k.startswith(prefix)}
    provider_prefix = f"{PROVIDER_NAMESPACE}:"
    provider = {k[len(provider_prefix):]: v for k, v in full.items() if k.startswith(provider_prefix)}
    # The keys set with --secret: PULUMI_CONFIG_SECRET_KEYS, or what the mocks were given.
    secret = frozenset(
        k[len(prefix):]
        for k in (*runtime_config.get_config_secret_keys_env(), *runtime_config._SECRET_KEYS.get())
        if k.startswith(prefix)
    )
    return load(raw, secret, provider)
