"""Every refusal the suite knows registers nothing: the real program, under the mocks.

The tables of the config tests (values, tenants, hybrid content, Azure's rules, secrets)
are run through `build(from_pulumi())`, as `pulumi up` runs it: each must raise ConfigError
naming the key, from the config step (its traceback passes through stacks/validation.py and
never through the composition or a component), with not one resource registered. A control
test moves one rule back into its component and shows both checks fail on that program.
"""

from __future__ import annotations

import traceback
from pathlib import Path
from typing import Any

import pytest
from pulumi.runtime.settings import SETTINGS

from offline.mocks import PINNED_TARGET
from stacks.config import AsoConfig, ConfigError
from tests import test_config, test_config_hybrid, test_config_rules, test_config_secrets, test_config_tenants
from tests.conftest import run_program


def _refusals() -> list[Any]:
    cases = []
    for path, value, key, _ in test_config.INVALID:
        cases.append(pytest.param(test_config.with_(path, value), frozenset(), key, id=f"value:{path}={value!r}"[:70]))
    for p in test_config_tenants.TENANT_CASES:
        tenants, key, _ = p.values
        cases.append(pytest.param(test_config_tenants.with_tenants(*tenants), frozenset(), key, id=f"tenant:{p.id}"))
    for name, raw, key, _ in test_config_rules.REFUSED:
        cases.append(pytest.param(raw, frozenset(), key, id=f"rule:{name}"))
    for name, raw, key, _ in test_config_hybrid.CASES:
        cases.append(pytest.param(raw, test_config_hybrid.SECRETS, key, id=f"hybrid:{name}"))
    for name, raw, secret_keys, key, _ in test_config_secrets.CASES:
        cases.append(pytest.param(raw, secret_keys, key, id=f"secret:{name}"))
    return cases


REFUSALS = _refusals()


def test_the_tables_cover_each_kind_of_refusal():
    kinds = {p.id.split(":", 1)[0] for p in REFUSALS}
    assert kinds == {"value", "tenant", "rule", "hybrid", "secret"} and len(REFUSALS) > 250


LATE = ("components/", "stacks/native.py", "stacks/hybrid.py", "stacks/platform.py", "stacks/__init__.py")


def run_refused(raw: dict[str, Any], secret_keys: frozenset[str]) -> tuple[BaseException, list[Any]]:
    """Run the whole program (`build(from_pulumi())`, as __main__.py does) under the mocks; the error and what registered."""
    config = {**PINNED_TARGET, **{f"aks-platform:{k}": v for k, v in raw.items()}}
    try:
        run_program(config, [f"aks-platform:{k}" for k in secret_keys])
    except Exception as err:  # noqa: BLE001 (the type is asserted by the callers)
        return err, list(SETTINGS.monitor.registrations)
    raise AssertionError("the program ran to completion")


def raised_by_the_config_step(err: BaseException) -> bool:
    """Raised inside stacks/validation.py, with no frame of the composition or a component on the way."""
    files = [frame.filename.replace("\\", "/") for frame in traceback.extract_tb(err.__traceback__)]
    return any(f.endswith("stacks/validation.py") for f in files) and not any(late in f for f in files for late in LATE)


@pytest.mark.parametrize("raw, secret_keys, key", REFUSALS)
def test_a_refusal_registers_nothing(raw, secret_keys, key, tmp_path: Path):
    raw = test_config_hybrid.resolve(raw, tmp_path)
    err, registered = run_refused(raw, secret_keys)
    assert isinstance(err, ConfigError), repr(err)
    assert any(p.startswith(f"aks-platform:{key}: got ") for p in err.problems), err.problems
    assert raised_by_the_config_step(err)
    assert registered == []


# The refusals that used to happen inside components or the hybrid composition, after
# resources were registered, with internal names (AsoArgs.crd_pattern, a bare AssertionError).
ISSUE_EXAMPLES = [
    pytest.param(test_config.with_("addons.aso.crdPattern", ["storage.azure.com/*", "storage.azure.com/*"]), frozenset(), "addons.aso.crdPattern[1]", id="crd-pattern-duplicate"),
    pytest.param(test_config.with_("addons.aso.crdPattern", ["storage..azure.com/*"]), frozenset(), "addons.aso.crdPattern[0]", id="crd-pattern-malformed"),
    pytest.param(test_config_hybrid.hybrid(servicePrincipalClientSecret=""), test_config_hybrid.SECRETS, "servicePrincipalClientSecret", id="empty-client-secret"),
    pytest.param(test_config_hybrid.hybrid(kubeconfig=""), test_config_hybrid.SECRETS, "kubeconfig", id="empty-kubeconfig"),
]


@pytest.mark.parametrize("raw, secret_keys, key", ISSUE_EXAMPLES)
def test_the_issue_examples_register_nothing(raw, secret_keys, key):
    err, registered = run_refused(raw, secret_keys)
    assert isinstance(err, ConfigError) and [p.split(": got ")[0] for p in err.problems] == [f"aks-platform:{key}"], err
    assert raised_by_the_config_step(err)
    assert registered == []


def test_the_checks_above_catch_a_rule_moved_back_into_a_component(monkeypatch):
    """The control: without the config step's rule, the duplicate crdPattern reaches the ASO
    component, which refuses it only after the cluster and more were registered. Both checks
    of the tests above fail on that program, so they can tell a late refusal from an early one."""
    monkeypatch.setattr(AsoConfig, "rules", lambda self: iter(()))
    err, registered = run_refused(test_config.with_("addons.aso.crdPattern", ["storage.azure.com/*", "storage.azure.com/*"]), frozenset())
    assert not isinstance(err, ConfigError) and "AsoArgs.crd_pattern" in str(err)
    assert not raised_by_the_config_step(err)
    assert {r.type for r in registered} >= {"azure-native:resources:ResourceGroup", "azure-native:containerservice:ManagedCluster"}
