"""The checks every add-on's Helm release must pass, in one place for the component tests."""

from __future__ import annotations

from components.helm import DEFAULT_TIMEOUT_SECONDS
from components.versions import ChartPin
from offline.evaluate import Evaluation, Registration


def assert_pinned_release(ev: Evaluation, component: Registration, namespace: Registration, release: Registration, pin: ChartPin) -> None:
    """`release` installs exactly `pin` into its own namespace, atomically, as a child of
    `component` on the caller's Kubernetes provider, after its namespace exists."""
    assert namespace.plain("metadata.name") == pin.namespace
    assert release.plain("chart") == pin.chart
    assert release.plain("version") == pin.version
    # OCI charts carry their registry in `chart`: no repository options then.
    assert release.get("repositoryOpts.repo") == pin.repository
    assert release.plain("name") == pin.release_name
    assert release.plain("namespace") == pin.namespace
    assert release.plain("atomic") is True
    assert release.plain("timeout") == DEFAULT_TIMEOUT_SECONDS
    provider = ev.one("pulumi:providers:kubernetes")
    for child in (namespace, release):
        assert child.parent == component.urn
        assert child.provider.startswith(provider.urn + "::")
    assert ev.depends_on(release, namespace)
