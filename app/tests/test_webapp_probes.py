"""Liveness and readiness as the kubelet sees them, and the Deployment's probes (both GitOps
variants) agreeing with what the endpoints do.

The manifests are read as they are committed; the app's time limits come from the
container's env there, else from the app's defaults. Everything measured is measured
against real gunicorn started with the image's config file.
"""

from __future__ import annotations

import json
import os
import runpy
import socket
import threading
import time

import pytest
import yaml

from webapp_testkit import APP_DIR, LOOPBACK, frozen, http, multipart

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


def literal_env(container: dict) -> dict[str, str]:
    """The container's env values that are literals (not the platform's placeholders)."""
    env = {e["name"]: e["value"] for e in container.get("env", []) if isinstance(e.get("value"), str)}
    return {k: v for k, v in env.items() if "${" not in v}


def app_settings(container: dict):
    """The app's settings as that container would have them (its literal env values)."""
    from webapp.settings import Settings

    # Placeholders for what the platform fills in; only the time limits matter here.
    env = {k: v for k, v in literal_env(container).items() if not k.startswith(("PG", "AZURE_"))}
    base = {
        "DATABASE_URL": "postgresql://u@h/db",
        "AZURE_STORAGE_CONNECTION_STRING": "AccountName=a;AccountKey=k",
    }
    return Settings.from_env({**base, **env})


def gunicorn_ports(container: dict) -> dict[str, int]:
    """The ports gunicorn.conf.py listens on with that container's env (PORT, HEALTH_PORT)."""
    env = literal_env(container)
    saved = {k: os.environ.get(k) for k in ("PORT", "HEALTH_PORT")}
    try:
        for k in saved:
            os.environ.pop(k, None)
            if k in env:
                os.environ[k] = env[k]
        conf = runpy.run_path(str(APP_DIR / "gunicorn.conf.py"))
    finally:
        for k, v in saved.items():
            os.environ.pop(k, None)
            if v is not None:
                os.environ[k] = v
    return {"http": int(conf["bind"][0].rsplit(":", 1)[1]), "health": conf["_health_port"]}


def test_each_variant_probes_liveness_on_the_masters_listener_and_readiness_on_the_app():
    found = web_containers()
    assert sorted(name for name, _ in found) == sorted(p.name for p in MANIFESTS)
    for name, c in found:
        # Named ports, each the one gunicorn really listens on with this env.
        ports = {p["name"]: p["containerPort"] for p in c["ports"]}
        assert ports == gunicorn_ports(c), name
        assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}, name
        assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}, name


@pytest.mark.parametrize("name, container", web_containers(), ids=lambda v: v if isinstance(v, str) else "")
def test_probe_timeouts_agree_with_the_endpoints(name, container):
    s = app_settings(container)
    ready, live = container["readinessProbe"], container["livenessProbe"]
    # /readyz gives each dependency READY_TIMEOUT, both at once: the probe must wait longer,
    # or a slow dependency shows up as a probe timeout instead of the app's answer.
    assert ready["timeoutSeconds"] >= s.ready_timeout + MARGIN
    # Liveness is answered by the master's own listener, which waits on nothing (measured
    # below); Kubernetes' default of 1 s would do, 2 s absorbs pauses on a busy node.
    assert live["timeoutSeconds"] >= 1
    # Readiness reacts faster than liveness: traffic moves away before anything restarts.
    assert ready["periodSeconds"] * ready["failureThreshold"] < live["periodSeconds"] * live["failureThreshold"]


FAST = {
    "DEPENDENCY_BUDGET": "1.5",
    "DEPENDENCY_RETRIES": "1",
    "DB_POOL_TIMEOUT": "0.5",
    "REAP_INTERVAL": "0",
    "REAP_GRACE": "2",
    "LOG_LEVEL": "WARNING",
}


def _trickle_upload(port: int, stop: threading.Event) -> None:
    """A client sending an upload's body a few bytes at a time, as on a very slow link."""
    body, headers = multipart(b"x" * 2000, "slow.txt")
    with socket.create_connection((LOOPBACK, port)) as s:
        s.sendall(
            (
                f"POST /api/files HTTP/1.1\r\nHost: {LOOPBACK}\r\nContent-Type: {headers['Content-Type']}\r\n"
                f"Content-Length: {len(body)}\r\n\r\n"
            ).encode()
        )
        for i in range(0, len(body), 4):
            if stop.wait(0.05):
                return
            s.sendall(body[i : i + 4])


def test_liveness_never_waits_behind_slow_clients(env, gunicorn):
    """Two clients trickling uploads hold both request threads of the only worker; the
    liveness listener answers at once all the while (the app's own port can't).

    The threads come from the command line, as an operator may give them: the app's slots
    follow what gunicorn runs, not the environment variable."""
    g = gunicorn({**env.vars, **FAST, "GUNICORN_THREADS": "8"}, args=["--threads", "2"])
    ready = json.loads(http("GET", g.base + "/readyz")[1])
    assert ready["slots"] == {"in_use": 0, "total": 1}
    stop = threading.Event()
    clients = [threading.Thread(target=_trickle_upload, args=(g.port, stop)) for _ in range(2)]
    try:
        for c in clients:
            c.start()
        time.sleep(0.3)  # both are being read by a request thread
        with pytest.raises(OSError):  # timed out: queued behind the slow clients
            http("GET", g.base + "/healthz", timeout=0.5)
        for _ in range(10):
            status, body, seconds = http("GET", g.health, timeout=5)
            assert (status, json.loads(body), seconds < 0.3) == (200, {"status": "ok"}, True)
    finally:
        stop.set()
        for c in clients:
            c.join(5)
    assert http("GET", g.base + "/readyz")[0] == 200  # the worker serves again
    assert http("GET", g.health.replace("/healthz", "/other"))[0] == 404
    assert g.alive()


def test_endpoints_answer_within_the_probe_timeouts_with_storage_frozen(env, gunicorn, azurite):
    """Measured under gunicorn with the limits the manifests run with."""
    (_, container), *_ = web_containers()
    s = app_settings(container)
    g = gunicorn({**env.vars, "READY_TIMEOUT": str(s.ready_timeout), "REAP_INTERVAL": "0", "LOG_LEVEL": "WARNING"})
    with frozen(azurite.proc.pid):
        live = http("GET", g.health, timeout=10)
        ready = http("GET", g.base + "/readyz", timeout=10)
    assert live[0] == 200 and live[2] < 0.2
    # "timeout" if /readyz stopped waiting first, "unavailable" if the ping's own time limit
    # (the same READY_TIMEOUT) fired first: either way not ready, and in time.
    assert ready[0] == 503 and json.loads(ready[1])["checks"]["storage"] in ("timeout", "unavailable")
    # It is READY_TIMEOUT that bounds the answer, and the probe waits longer than that.
    assert s.ready_timeout - 0.05 <= ready[2] < container["readinessProbe"]["timeoutSeconds"]
    assert ready[2] < s.ready_timeout + MARGIN
