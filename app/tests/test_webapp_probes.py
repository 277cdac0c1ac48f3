"""The Deployment's probes (both GitOps variants) agree with what /healthz and /readyz do.

The manifests are read as they are committed; the app's time limits come from the
container's env there, else from the app's defaults. The last test measures the endpoints
with those limits against a frozen Azurite.
"""

from __future__ import annotations

import time

import pytest
import yaml

from webapp_testkit import APP_DIR, frozen

REPO = APP_DIR.parent
MANIFESTS = [
    REPO / "gitops" / "platform" / "kro" / "webapp-rgd.yaml",
    REPO / "gitops" / "platform" / "crossplane" / "webapp-composition.yaml",
]
# What a probe's timeout must leave on top of the app's own bound: the HTTP exchange and
# scheduling in a busy pod.
MARGIN = 0.5


def _containers(node):
    """Every container spec with probes, wherever the variant nests its Deployment."""
    if isinstance(node, dict):
        if "livenessProbe" in node or "readinessProbe" in node:
            yield node
        for value in node.values():
            yield from _containers(value)
    elif isinstance(node, list):
        for item in node:
            yield from _containers(item)


def web_containers() -> list[tuple[str, dict]]:
    found = []
    for path in MANIFESTS:
        for doc in yaml.safe_load_all(path.read_text()):
            found += [(path.name, c) for c in _containers(doc)]
    return found


def app_settings(container: dict):
    """The app's settings as that container would have them (its literal env values)."""
    from webapp.settings import Settings

    env = {e["name"]: e["value"] for e in container.get("env", []) if isinstance(e.get("value"), str)}
    # Placeholders for what the platform fills in; only the time limits matter here.
    env = {k: v for k, v in env.items() if "${" not in v and not k.startswith(("PG", "AZURE_"))}
    base = {
        "DATABASE_URL": "postgresql://u@h/db",
        "AZURE_STORAGE_CONNECTION_STRING": "AccountName=a;AccountKey=k",
    }
    return Settings.from_env({**base, **env})


def test_each_variant_has_one_web_container_with_both_probes():
    found = web_containers()
    assert sorted(name for name, _ in found) == sorted(p.name for p in MANIFESTS)
    for name, c in found:
        assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}, name
        assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}, name


@pytest.mark.parametrize("name, container", web_containers(), ids=lambda v: v if isinstance(v, str) else "")
def test_probe_timeouts_agree_with_the_endpoints(name, container):
    s = app_settings(container)
    ready, live = container["readinessProbe"], container["livenessProbe"]
    # /readyz gives each dependency READY_TIMEOUT, both at once: the probe must wait longer,
    # or a slow dependency shows up as a probe timeout instead of the app's answer.
    assert ready["timeoutSeconds"] >= s.ready_timeout + MARGIN
    # /healthz waits on nothing; Kubernetes' default of 1 s would do, 2 s absorbs GC pauses.
    assert live["timeoutSeconds"] >= 1
    # Even if every thread of a worker were busy, each is free again within the budget, long
    # before the kubelet gives up and restarts a healthy container.
    assert live["periodSeconds"] * live["failureThreshold"] > s.dependency_budget + live["timeoutSeconds"]
    # Readiness reacts faster than liveness: traffic moves away before anything restarts.
    assert ready["periodSeconds"] * ready["failureThreshold"] < live["periodSeconds"] * live["failureThreshold"]


def test_endpoints_answer_within_the_probe_timeouts_with_storage_frozen(make_app, azurite):
    """Measured, with the limits the manifests run with: the endpoints really answer in time."""
    (_, container), *_ = web_containers()
    s = app_settings(container)
    client = make_app(READY_TIMEOUT=str(s.ready_timeout)).test_client()
    with frozen(azurite.proc.pid):
        started = time.monotonic()
        live = client.get("/healthz")
        live_seconds = time.monotonic() - started
        started = time.monotonic()
        ready = client.get("/readyz")
        ready_seconds = time.monotonic() - started
    assert live.status_code == 200 and live_seconds < 0.2
    # "timeout" if /readyz stopped waiting first, "unavailable" if the ping's own read timeout
    # (the same READY_TIMEOUT) fired first: either way not ready, and in time.
    assert ready.status_code == 503 and ready.get_json()["checks"]["storage"] in ("timeout", "unavailable")
    # It is READY_TIMEOUT that bounds the answer, and the probe waits longer than that.
    assert s.ready_timeout - 0.05 <= ready_seconds < container["readinessProbe"]["timeoutSeconds"]
    assert ready_seconds < s.ready_timeout + MARGIN
