"""Small, strict readers for structured Pulumi config.

Every reader takes the full config key path (``aks-platform:cluster.systemPool.count``) so
that an error names exactly what the user typed, the value given and what is allowed. The
readers collect problems into a :class:`Problems` list instead of raising at the first one,
so a user fixing a stack file sees every mistake in one run.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any, Callable, Iterable, Mapping, Optional, TypeVar

T = TypeVar("T")

GUID_RE = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
# RFC 1123 label: what Kubernetes allows for namespace names.
DNS_LABEL_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


class ConfigError(ValueError):
    """Raised before any resource is registered when the stack config is invalid."""

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"invalid stack configuration ({len(self.problems)} problem(s)):\n{lines}")


class Problems:
    """Collects validation messages; `raise_if_any` turns them into one ConfigError."""

    def __init__(self) -> None:
        self.messages: list[str] = []

    def add(self, key: str, given: Any, allowed: str) -> None:
        self.messages.append(f"{key}: got {given!r}; allowed: {allowed}")

    def raise_if_any(self) -> None:
        if self.messages:
            raise ConfigError(self.messages)


_MISSING = object()


class Section:
    """A view on one config mapping that remembers its key path and which keys were read.

    `finish()` reports every key that no reader asked for: a typo like `skuTeir` must be an
    error, not a silently ignored setting.
    """

    def __init__(self, path: str, data: Any, problems: Problems):
        self.path = path
        self.problems = problems
        if data is None:
            data = {}
        if not isinstance(data, Mapping):
            problems.add(path, data, "a mapping (YAML object)")
            data = {}
        self.data: Mapping[str, Any] = data
        self._read: set[str] = set()

    def key(self, name: str) -> str:
        return f"{self.path}.{name}"

    def raw(self, name: str, default: Any = _MISSING) -> Any:
        self._read.add(name)
        return self.data.get(name, default)

    def has(self, name: str) -> bool:
        return name in self.data

    def section(self, name: str) -> "Section":
        return Section(self.key(name), self.raw(name, None), self.problems)

    def finish(self) -> None:
        for unknown in sorted(set(self.data) - self._read):
            self.problems.add(
                self.key(unknown), self.data[unknown], f"no such setting; known: {', '.join(sorted(self._read))}"
            )

    # Typed readers. Each returns the default on a problem so validation can go on.

    def string(
        self,
        name: str,
        default: Optional[str] = None,
        *,
        pattern: Optional[re.Pattern[str]] = None,
        allowed_text: str = "a string",
        choices: Optional[Iterable[str]] = None,
        required: bool = False,
    ) -> Optional[str]:
        value = self.raw(name)
        if value is _MISSING or value is None:
            if required:
                self.problems.add(self.key(name), None, f"required: {allowed_text}")
            return default
        choice_list = list(choices) if choices is not None else None
        if not isinstance(value, str):
            self.problems.add(self.key(name), value, _one_of(choice_list) if choice_list else allowed_text)
            return default
        if choice_list is not None and value not in choice_list:
            self.problems.add(self.key(name), value, _one_of(choice_list))
            return default
        if pattern is not None and not pattern.fullmatch(value):
            self.problems.add(self.key(name), value, allowed_text)
            return default
        return value

    def boolean(self, name: str, default: bool) -> bool:
        value = self.raw(name)
        if value is _MISSING or value is None:
            return default
        if isinstance(value, bool):
            return value
        # Pulumi stores `pulumi config set k true` as the string "true".
        if value in ("true", "false"):
            return value == "true"
        self.problems.add(self.key(name), value, "true or false")
        return default

    def integer(self, name: str, default: Optional[int], *, minimum: int, maximum: int) -> Optional[int]:
        value = self.raw(name)
        if value is _MISSING or value is None:
            return default
        if isinstance(value, str) and re.fullmatch(r"-?\d+", value):
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= maximum:
            self.problems.add(self.key(name), value, f"a whole number from {minimum} to {maximum}")
            return default
        return value

    def string_list(
        self, name: str, *, check: Callable[[str], bool] = lambda _: True, allowed_text: str = "strings"
    ) -> tuple[str, ...]:
        value = self.raw(name)
        if value is _MISSING or value is None:
            return ()
        if not isinstance(value, list):
            self.problems.add(self.key(name), value, f"a list of {allowed_text}")
            return ()
        good: list[str] = []
        for index, item in enumerate(value):
            if isinstance(item, str) and check(item):
                good.append(item)
            else:
                self.problems.add(f"{self.key(name)}[{index}]", item, allowed_text)
        return tuple(good)

    def string_map(self, name: str, *, check_key: Callable[[str], bool] = lambda _: True, allowed_text: str) -> dict[str, str]:
        value = self.raw(name)
        if value is _MISSING or value is None:
            return {}
        if not isinstance(value, Mapping):
            self.problems.add(self.key(name), value, allowed_text)
            return {}
        result: dict[str, str] = {}
        for k, v in value.items():
            if not isinstance(k, str) or not check_key(k) or not isinstance(v, (str, int, float, bool)):
                self.problems.add(f"{self.key(name)}.{k}", v, allowed_text)
                continue
            result[k] = str(v).lower() if isinstance(v, bool) else str(v)
        return dict(sorted(result.items()))

    def items(self, name: str) -> list["Section"]:
        """A list of mappings, each as its own Section (`key[0]`, `key[1]`, ...)."""
        value = self.raw(name)
        if value is _MISSING or value is None:
            return []
        if not isinstance(value, list):
            self.problems.add(self.key(name), value, "a list of mappings")
            return []
        return [Section(f"{self.key(name)}[{i}]", item, self.problems) for i, item in enumerate(value)]


def _one_of(choices: list[str]) -> str:
    return "one of " + ", ".join(repr(c) for c in choices)


def is_guid(value: str) -> bool:
    return bool(GUID_RE.fullmatch(value))


def is_cidr(value: str) -> bool:
    try:
        ipaddress.ip_network(value, strict=True)
        return True
    except ValueError:
        return False


def is_dns_label(value: str, max_length: int = 63) -> bool:
    return len(value) <= max_length and bool(DNS_LABEL_RE.fullmatch(value))

