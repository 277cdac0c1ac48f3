"""aks-platform policy pack: `pulumi preview --policy-pack policy`.

The policies live in pack.py (importable without an engine); the rule logic in rules.py is
shared with the offline check (offline/policy_check.py) that the tests and `make plan` run.
"""

from pulumi_policy import EnforcementLevel, PolicyPack

if __package__:  # imported from the repository (python -m policy / tests)
    from .pack import PACK_NAME, POLICIES
else:  # run by the Pulumi CLI: this folder is sys.path[0]
    from pack import PACK_NAME, POLICIES  # type: ignore[no-redef]


def serve() -> None:
    """Start the analyzer (blocks; prints its port for the engine, as PolicyPack does)."""
    PolicyPack(name=PACK_NAME, policies=POLICIES, enforcement_level=EnforcementLevel.MANDATORY)


if __name__ == "__main__":
    serve()
