"""How a configuration problem is reported: key path, value given (secrets masked), what is allowed.

`ConfigError` carries one message per problem. Messages come from two places and look
the same: pydantic's own errors (types, patterns, bounds, unknown keys), translated here
with the declared field's text, and the hand-written rules that span several keys
(:class:`Problem`). A value is never shown when it is secret: its top-level key is a Pulumi
secret (`pulumi config set --secret`; Pulumi hands the program the list of secret keys), or
it sits under a key named like one of the declared secrets, or it reads as a credential.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Optional, Sequence, Union

PROJECT = "aks-platform"
SECRET_SHOWN = "[secret, not shown]"

Path = tuple[Union[str, int], ...]


class ConfigError(ValueError):
    """Raised before any resource is registered when the stack config is invalid."""

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"invalid stack configuration ({len(self.problems)} problem(s)):\n{lines}")


@dataclass(frozen=True)
class Problem:
    """One problem: where (key path of aliases, list indexes as ints), the value given, what is allowed."""

    path: Path
    given: Any
    allowed: str

    def under(self, prefix: Sequence[Union[str, int]]) -> "Problem":
        return Problem((*prefix, *self.path), self.given, self.allowed)


class Missing:
    """The value given for a required key that is absent."""

    def __repr__(self) -> str:
        return "nothing"


MISSING = Missing()


def key_text(path: Path) -> str:
    # A key of another namespace (azure-native:subscriptionId) is named in full.
    foreign = bool(path) and isinstance(path[0], str) and ":" in path[0]
    text = "" if foreign else f"{PROJECT}:"
    for i, part in enumerate(path):
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += ("." if i else "") + str(part)
    return text


def _norm(name: str) -> str:
    return re.sub(r"[-_.\s]", "", name).lower()


# Text that is a credential whatever key it was set under: a kubeconfig with users, a PEM
# key, a bearer token, the JSON `az ad sp create-for-rbac` prints.
_CREDENTIAL_TEXT = re.compile(
    r"(-----BEGIN [A-Z ]*PRIVATE KEY-----|client-key-data|client-certificate-data|\btoken\s*:|\"password\"\s*:|"
    r"\bpassword\s*[:=]|\beyJ[A-Za-z0-9_-]{10,}\.)",
    re.IGNORECASE,
)


class Masker:
    """Decides what of a value may appear in a message."""

    def __init__(self, secret_keys: Iterable[str], secret_names: Iterable[str], raw: Optional[Mapping[str, Any]] = None):
        self.exact_secret_keys = set(secret_keys)
        self.secret_names = {_norm(n) for n in secret_names}
        # Every leaf value inside a secret key's value: a rule's "allowed" text may quote a
        # sibling value (e.g. "does not overlap podCidr 10.244.0.0/16"), which is just as secret.
        # Leaves only: the mapping keys are the schema's own names, not the secret.
        texts = {t for k in self.exact_secret_keys if raw and k in raw for t in _leaves(raw[k]) if len(t) >= 3}
        # Whole tokens, ignoring case (rules compare Azure names lowercased and quote them so):
        # a secret 'name' hides 'Name' and 'rg-name-x' but leaves 'names' alone.
        self.secret_pattern = (
            re.compile(
                "|".join(rf"(?<![A-Za-z0-9_]){re.escape(t)}(?![A-Za-z0-9_])" for t in sorted(texts, key=len, reverse=True)),
                re.IGNORECASE,
            )
            if texts
            else None
        )

    def scrub(self, text: str) -> str:
        """`text` with every secret leaf value and every URL credential replaced."""
        if self.secret_pattern is not None:
            text = self.secret_pattern.sub("[secret]", text)
        return redact_url_credentials(text)

    def path_is_secret(self, path: Path) -> bool:
        if path and isinstance(path[0], str) and (path[0] in self.exact_secret_keys):
            return True
        return any(isinstance(p, str) and _norm(p) in self.secret_names for p in path)

    def redact(self, value: Any) -> Any:
        """The value with secret-named entries and credential-looking text replaced."""
        if isinstance(value, Mapping):
            return {
                k: (SECRET_SHOWN if isinstance(k, str) and _norm(k) in self.secret_names else self.redact(v))
                for k, v in value.items()
            }
        if isinstance(value, (list, tuple)):
            return [self.redact(v) for v in value]
        if isinstance(value, str) and _CREDENTIAL_TEXT.search(value):
            return SECRET_SHOWN
        return value

    def shown(self, path: Path, value: Any) -> str:
        if isinstance(value, Missing):
            return "nothing"
        if self.path_is_secret(path):
            return SECRET_SHOWN
        redacted = self.redact(value)
        if redacted == SECRET_SHOWN:
            return SECRET_SHOWN
        text = self.scrub(repr(redacted).replace(repr(SECRET_SHOWN), SECRET_SHOWN))
        # A long document (a pasted file) is not useful in a one-line message.
        return text if len(text) <= 300 else text[:280] + "… (truncated)"


def _leaves(value: Any) -> Iterable[str]:
    """The leaf values (not the keys) of a config value, as text; booleans are no secret."""
    if isinstance(value, Mapping):
        for v in value.values():
            yield from _leaves(v)
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from _leaves(v)
    elif value is not None and not isinstance(value, bool):
        yield str(value)


# Credentials inside a URL, wherever a message quotes one: user-info (`https://user:pass@`,
# `https://token@`, scp-like `user:pass@host:path`) and credential query parameters
# (`?access_token=...`). `ssh://git@host` and `git@host:path` carry a user name only and stay.
_URL_USERINFO = re.compile(r"(?i)\b(?P<scheme>[a-z][a-z0-9+.-]*://)(?P<userinfo>[^\s/@'\"]+)@")
_SCP_USERINFO = re.compile(r"(?<![\w/:.-])[\w.-]+:[^\s/@'\"]+@(?=[\w.-]+:)")
# Query parameter names that carry a credential: *token, *password, *secret, *key, sig, ...
CREDENTIAL_PARAM = re.compile(r"(?i)^(?:[\w-]*[_-])?(token|password|passwd|pwd|pass|secret|key|apikey|sig|signature|auth|credentials?)$")
_QUERY_PARAM = re.compile(r"(?P<lead>[?&;])(?P<name>[\w.-]+)=(?P<value>[^&#;\s'\"]*)")


def redact_url_credentials(text: str) -> str:
    def userinfo(match: re.Match[str]) -> str:
        scheme, info = match.group("scheme"), match.group("userinfo")
        if ":" in info or scheme.lower() in ("http://", "https://"):
            return f"{scheme}***@"
        return match.group(0)

    def param(match: re.Match[str]) -> str:
        if CREDENTIAL_PARAM.match(match.group("name")):
            return f"{match.group('lead')}{match.group('name')}=***"
        return match.group(0)

    text = _URL_USERINFO.sub(userinfo, text)
    text = _SCP_USERINFO.sub("***@", text)
    return _QUERY_PARAM.sub(param, text)


def message(problem: Problem, masker: Masker) -> str:
    allowed = masker.scrub(problem.allowed)
    return f"{key_text(problem.path)}: got {masker.shown(problem.path, problem.given)}; allowed: {allowed}"


def unknown_key_text(name: str, known: Sequence[str]) -> str:
    """'no such setting' with the known keys, and the likely intended one first."""
    lowered = {k.lower(): k for k in known}
    guess = lowered.get(name.lower()) or next(iter(difflib.get_close_matches(name, known, n=1, cutoff=0.75)), None)
    hint = f"did you mean {guess!r}? " if guess else ""
    return f"no such setting ({hint}known: {', '.join(known)})"


def distinct_problems(problems: Iterable[Problem]) -> list[Problem]:
    """One message per key path: the first problem reported there wins."""
    kept: dict[Path, Problem] = {}
    for p in problems:
        kept.setdefault(p.path, p)
    return list(kept.values())


