"""The policy pack's policies: thin wrappers that hand the engine's view of a resource to rules.py.

Kept apart from ``__main__.py`` because constructing :class:`pulumi_policy.PolicyPack`
starts the analyzer's gRPC server and blocks; this module only builds the policy objects,
so tests (and anyone curious) can import it without a Pulumi engine.

What pulumi-policy 1.21.0 shows a policy (read from its source, pulumi_policy/policy.py):

* ``args.props`` — the resource's inputs (``Analyze``) behind a proxy that raises on values
  unknown during preview; ``args.opts.protect`` — the protect option; ``args.urn``.
* Secretness is **not** visible to validations: ``Analyze`` and ``AnalyzeStack`` deserialize
  properties with secrets unwrapped to plain text (pulumi/pulumi-policy#241 is the open
  request; the docs' FAQ says the same). Only ``Remediate`` deserializes with
  ``proxy_secrets=True``, keeping :class:`pulumi_policy.Secret` markers. So the pack enforces
  "no plain-text secret" as a *remediation*: any secret-looking input that arrives in plain
  text is returned wrapped in ``Secret`` and the engine stores it encrypted. The failing
  (mandatory) form of that rule, and the one over stack outputs, run offline
  (``offline/policy_check.py``: tests, ``make plan``), where the mocks do see which values are secret.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Optional

from pulumi_policy import (
    EnforcementLevel,
    PolicyConfigSchema,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
)
from pulumi_policy import Secret as PolicySecret

try:  # imported from the repository (policy.pack)
    from . import rules
except ImportError:  # run by the Pulumi CLI from inside policy/ (this folder is sys.path[0])
    import rules  # type: ignore[no-redef]

PACK_NAME = "aks-platform-guardrails"


def _target(value: Any) -> Any:
    """The list/dict behind one of pulumi_policy's proxies (they expose it as ['__target'])."""
    if isinstance(value, (dict, list, str, bytes)):
        return value
    try:
        return value["__target"]
    except (KeyError, TypeError, IndexError):
        return value


def plain(value: Any, *, keep_secrets: bool = False) -> Any:
    """Proxies -> plain dicts and lists; a Secret -> rules.SECRET (or kept, for remediation).

    Unknown values stay as the engine's sentinels (rules treat them as unknown), so reading
    them here never raises the SDK's UnknownValueError.
    """
    if isinstance(value, PolicySecret):
        return PolicySecret(plain(value.value, keep_secrets=True)) if keep_secrets else rules.SECRET
    value = _target(value)
    if isinstance(value, Mapping):
        inner = _target(value)
        return {k: plain(inner[k], keep_secrets=keep_secrets) for k in inner}
    if isinstance(value, Sequence) and not isinstance(value, (str, bytes)):
        return [plain(v, keep_secrets=keep_secrets) for v in _target(value)]
    return value


def stack_of(urn: str) -> str:
    """'urn:pulumi:<stack>::<project>::<type>::<name>' -> '<stack>'."""
    head = urn.split("::", 1)[0]
    return head.split(":", 2)[2] if head.count(":") >= 2 else ""


def _resource(args: ResourceValidationArgs) -> rules.Resource:
    return rules.Resource(
        type=args.resource_type,
        name=args.name,
        inputs=plain(args.props),
        protect=bool(args.opts.protect) if args.opts is not None else False,
    )


def _context(args: ResourceValidationArgs) -> rules.Context:
    return rules.Context(stack=stack_of(args.urn), config=dict(args.get_config() or {}))


def validation(rule: rules.Rule):
    """A pulumi_policy validate callback running one rules.py rule."""

    def validate(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
        if rule.types is not None and args.resource_type not in rule.types:
            return
        for message in rule.check(_resource(args), _context(args)):
            report_violation(message, None)

    validate.__name__ = f"validate_{rule.name.replace('-', '_')}"
    return validate


def remediate_plaintext_secrets(args: ResourceValidationArgs) -> Optional[dict[str, Any]]:
    """Rule 4 in the pack: wrap every plain-text secret-looking input in Secret (None: nothing to do)."""
    masked = plain(args.props)
    paths = list(rules.plaintext_secret_paths(masked))
    if not paths:
        return None
    props = plain(args.props, keep_secrets=True)
    for path in paths:
        holder: Any = props
        for part in path[:-1]:
            holder = holder[part]
        holder[path[-1]] = PolicySecret(holder[path[-1]])
    return props


def _schema(policy_name: str) -> Optional[PolicyConfigSchema]:
    props = rules.CONFIG_SCHEMAS.get(policy_name)
    return PolicyConfigSchema(properties=props) if props else None


def build_policies() -> list:
    """The pack's policies, in rules.RESOURCE_RULES order."""
    policies: list = []
    for rule in rules.RESOURCE_RULES:
        if rule.check is rules.no_plaintext_secret_inputs:
            policies.append(
                ResourceValidationPolicy(
                    name=rule.name,
                    description=rule.description
                    + " In the pack this is a remediation (policies cannot see secretness): such inputs are marked secret.",
                    remediate=remediate_plaintext_secrets,
                    enforcement_level=EnforcementLevel.REMEDIATE,
                )
            )
            continue
        policies.append(
            ResourceValidationPolicy(
                name=rule.name,
                description=rule.description,
                validate=validation(rule),
                enforcement_level=EnforcementLevel.MANDATORY,
                config_schema=_schema(rule.name),
            )
        )
    return policies


POLICIES = build_policies()
