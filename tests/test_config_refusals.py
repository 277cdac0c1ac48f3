"""Every refusal the suite knows registers nothing: the real program, under the mocks.

The tables of the config tests (values, tenants, hybrid content, Azure's rules, secrets)
are run through `build(from_pulumi())`, as `pulumi up` runs it: each must raise ConfigError
naming the key, with not one resource registered (no provider, no resource group, no chart).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pulumi.runtime.settings import SETTINGS

from stacks.config import ConfigError
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


@pytest.mark.parametrize("raw, secret_keys, key", REFUSALS)
def test_a_refusal_registers_nothing(raw, secret_keys, key, tmp_path: Path):
    raw = test_config_hybrid.resolve(raw, tmp_path)
    config = {f"aks-platform:{k}": v for k, v in raw.items()}
    with pytest.raises(ConfigError) as err:
        run_program(config, [f"aks-platform:{k}" for k in secret_keys])
    assert any(p.startswith(f"aks-platform:{key}: got ") for p in err.value.problems), err.value.problems
    assert SETTINGS.monitor.registrations == []


def test_the_issue_examples_register_nothing():
    """The refusals that used to happen inside components, after resources were registered."""
    examples = [
        (test_config.with_("addons.aso.crdPattern", ["storage.azure.com/*", "storage.azure.com/*"]), frozenset(), "addons.aso.crdPattern[1]"),
        (test_config.with_("addons.aso.crdPattern", ["storage..azure.com/*"]), frozenset(), "addons.aso.crdPattern[0]"),
        (test_config_hybrid.hybrid(servicePrincipalClientSecret=""), test_config_hybrid.SECRETS, "servicePrincipalClientSecret"),
        (test_config_hybrid.hybrid(kubeconfig=""), test_config_hybrid.SECRETS, "kubeconfig"),
    ]
    for raw, secret_keys, key in examples:
        with pytest.raises(ConfigError, match=key.replace("[", r"\[").replace("]", r"\]")):
            run_program({f"aks-platform:{k}": v for k, v in raw.items()}, [f"aks-platform:{k}" for k in secret_keys])
        assert SETTINGS.monitor.registrations == []
