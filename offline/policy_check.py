"""The policy rules, offline: the same rules.py functions over the graph the mocks record.

Layering: policy/ is the lower package (its rules run standalone inside Pulumi's policy
runtime, which ships only policy/), so the offline runner of those rules lives here in
offline/: above offline/evaluate.py (it evaluates stacks and masks values with it) and below
offline/plan.py (which puts its violations into the plan document).

``check_evaluation`` takes an :class:`offline.evaluate.Evaluation` (tests, ``make plan``);
``check_plan`` takes a plan document (``build/plan-<stack>.json``). Unlike inside the
policy pack, secretness is known here (the recording monitor keeps the engine's secret
markers), so "no plain-text secret" is a failing rule over inputs and stack outputs.

    python -m offline.policy_check [STACK ...]     # every stack by default; exit 1 on a violation

Evaluates in update mode (every value known) unless --mode preview.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Optional

from offline.evaluate import PROJECT, Evaluation, UnknownStack, available_stacks, evaluate_stack, load_stack, mask, output_value
from policy import rules


@dataclass(frozen=True, order=True)
class Violation:
    resource: str  # URN, or "stack outputs"
    rule: str
    message: str

    def as_dict(self) -> dict[str, str]:
        return {"resource": self.resource, "rule": self.rule, "message": self.message}


def _check(
    resources: Iterable[tuple[str, rules.Resource]],
    outputs: Optional[Mapping[str, Any]],
    ctx: rules.Context,
) -> list[Violation]:
    found = [
        Violation(urn, rule, message)
        for urn, res in resources
        for rule, message in rules.check_resource(res, ctx)
    ]
    if outputs is not None:
        found += [Violation("stack outputs", rules.STACK_OUTPUTS_RULE, m) for m in rules.no_plaintext_secret_outputs(outputs)]
    return sorted(found)


def check_evaluation(
    ev: Evaluation, stack: str, environment: Optional[str] = None, config: Optional[Mapping[str, Any]] = None
) -> list[Violation]:
    """Violations in an Evaluation of `stack` (policy `config` as the pack would get it)."""
    ctx = rules.Context(stack=stack, environment=environment, config=dict(config or {}))
    resources = [
        (r.urn, rules.Resource(type=r.type, name=r.name, inputs=mask(r.inputs), protect=r.protect))
        for r in ev.resources
    ]
    outputs = {k: mask(output_value(v)) for k, v in ev.outputs.items()}
    return _check(resources, outputs, ctx)


def check_plan(doc: Mapping[str, Any], config: Optional[Mapping[str, Any]] = None) -> list[Violation]:
    """Violations in a plan document (already masked)."""
    ctx = rules.Context(stack=doc["stack"], environment=doc.get("environment"), config=dict(config or {}))
    resources = [
        (r["urn"], rules.Resource(type=r["type"], name=r["name"], inputs=r["inputs"], protect=r["protect"]))
        for r in doc["resources"]
    ]
    return _check(resources, doc.get("outputs"), ctx)


def check_stack(stack: str, mode: str = "update", config: Optional[Mapping[str, Any]] = None) -> list[Violation]:
    stack_cfg, _ = load_stack(stack)
    env = stack_cfg.get(f"{PROJECT}:environment")
    ev = evaluate_stack(stack, mode)
    return check_evaluation(ev, stack, environment=env if isinstance(env, str) else None, config=config)


def main(argv: Optional[Iterable[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m offline.policy_check", description="Run the policy rules offline.")
    parser.add_argument("stacks", nargs="*", help="default: every Pulumi.<stack>.yaml")
    parser.add_argument("--mode", choices=("preview", "update"), default="update")
    args = parser.parse_args(list(argv) if argv is not None else None)
    failed = False
    for stack in args.stacks or available_stacks():
        try:
            violations = check_stack(stack, args.mode)
        except UnknownStack as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        print(f"{stack}: {'ok' if not violations else f'{len(violations)} violation(s)'}")
        for v in violations:
            print(f"  {v.rule} {v.resource}: {v.message}")
        failed = failed or bool(violations)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
