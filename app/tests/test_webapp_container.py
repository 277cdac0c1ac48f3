"""The image recipe (no Docker engine here, so its promises are checked from the files).

The end-to-end test runs the same gunicorn.conf.py and entry point the image runs.
"""

from __future__ import annotations

import fnmatch
import re
import runpy

import pytest

from webapp_testkit import APP_DIR

DOCKERFILE = (APP_DIR / "Dockerfile").read_text()


def stages() -> list[list[str]]:
    """Instructions per stage, continuation lines joined, comments dropped."""
    joined = re.sub(r"\\\n\s*", " ", DOCKERFILE)
    result: list[list[str]] = []
    for line in joined.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.upper().startswith("FROM "):
            result.append([])
        if result:
            result[-1].append(line)
    return result


def test_multi_stage_slim_base_and_non_root_runtime():
    build, runtime = stages()
    assert re.search(r"^ARG PYTHON_IMAGE=python:3\.11-slim", DOCKERFILE, re.M)
    assert build[0] == "FROM ${PYTHON_IMAGE} AS build"
    assert runtime[0] == "FROM ${PYTHON_IMAGE}"
    (user,) = [i for i in runtime if i.startswith("USER ")]
    uid = user.split()[1].split(":")[0]
    assert uid.isdigit() and int(uid) >= 1000  # numeric: runAsNonRoot can verify it
    # Installing happens in the build stage; the runtime stage copies the venv and the code.
    assert not [i for i in runtime if re.search(r"\b(pip|apt-get|apk|gcc|build-essential)\b", i)]
    assert "COPY --from=build /opt/venv /opt/venv" in runtime
    assert "--only-binary=:all:" in " ".join(build)
    assert runtime[-1] == 'CMD ["gunicorn", "--config", "/srv/gunicorn.conf.py", "webapp.wsgi:app"]'
    assert "EXPOSE 8000 8081" in runtime


def test_copied_files_exist_and_pass_dockerignore():
    patterns = [p for p in (APP_DIR / ".dockerignore").read_text().splitlines() if p and not p.startswith("#")]

    def included(path: str) -> bool:
        keep = True
        for p in patterns:
            negate = p.startswith("!")
            pat = p.lstrip("!").rstrip("/")
            if fnmatch.fnmatch(path, pat) or path.startswith(pat + "/"):
                keep = negate
        return keep

    sources = [
        s for stage in stages() for i in stage if i.startswith("COPY ") and "--from" not in i for s in i.split()[1:-1]
    ]
    assert sources == ["requirements.txt", "constraints.txt", "gunicorn.conf.py", "webapp/"]
    for src in sources:
        assert (APP_DIR / src).exists(), src
        assert included(src.rstrip("/")), src
    for leaked in ("tests/conftest.py", "node_modules/azurite/package.json", "requirements-test.txt", "README.md"):
        assert not included(leaked), leaked
    assert included("webapp/templates/index.html")


@pytest.mark.parametrize("name", ["requirements.txt", "requirements-test.txt", "constraints.txt"])
def test_requirements_are_exact_pins(name):
    lines = [ln.strip() for ln in (APP_DIR / name).read_text().splitlines()]
    pins = [ln for ln in lines if ln and not ln.startswith("#")]
    assert pins
    for pin in pins:
        assert re.fullmatch(r"[A-Za-z0-9_.-]+(\[[a-z,]+\])?==[0-9][0-9A-Za-z.]*", pin), pin


def _pins(name: str) -> dict[str, str]:
    pins = {}
    for line in (APP_DIR / name).read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            package, version = line.split("==")
            pins[re.sub(r"[-_.]+", "-", package.split("[")[0]).lower()] = version
    return pins


def test_test_pins_agree_with_the_repository_pins():
    """app/requirements-test.txt must not pull another pytest than the repo's suite uses."""
    repo = _pins("../requirements.txt")
    tests = _pins("requirements-test.txt")
    assert {"pytest", "pytest-xdist"} <= set(tests)
    assert {name: repo[name] for name in tests if name in repo} == {
        name: version for name, version in tests.items() if name in repo
    }


def test_image_lock_covers_the_requirements_and_their_dependencies():
    """constraints.txt must keep up with requirements.txt, or image builds float again."""
    from importlib.metadata import PackageNotFoundError, requires

    from packaging.requirements import Requirement

    lock, direct = _pins("constraints.txt"), _pins("requirements.txt")
    assert {name: lock.get(name) for name in direct} == direct
    assert "psycopg-binary" in lock  # the [binary] extra
    # Walk the installed metadata: every runtime dependency of a locked package is locked.
    for name in lock:
        try:
            reqs = requires(name) or []
        except PackageNotFoundError:
            pytest.fail(f"{name} is in constraints.txt but not installed: pip install -r app/requirements.txt")
        for req in map(Requirement, reqs):
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                assert re.sub(r"[-_.]+", "-", req.name).lower() in lock, f"{name} needs {req.name}"


def test_gunicorn_config(monkeypatch):
    for var in ("PORT", "HEALTH_PORT", "WEB_CONCURRENCY", "GUNICORN_THREADS"):
        monkeypatch.delenv(var, raising=False)
    conf = runpy.run_path(str(APP_DIR / "gunicorn.conf.py"))
    assert conf["bind"] == ["0.0.0.0:8000"] and conf["_health_port"] == 8081
    assert (conf["workers"], conf["threads"], conf["worker_class"]) == (2, 8, "gthread")
    assert conf["graceful_timeout"] < 30  # inside Kubernetes' default termination grace period
    monkeypatch.setenv("PORT", "9090")
    monkeypatch.setenv("WEB_CONCURRENCY", "3")
    conf = runpy.run_path(str(APP_DIR / "gunicorn.conf.py"))
    assert (conf["bind"], conf["workers"]) == (["0.0.0.0:9090"], 3)
    monkeypatch.setenv("WEB_CONCURRENCY", "many")
    with pytest.raises(ValueError, match=r"WEB_CONCURRENCY='many' is invalid: expected a whole number >= 1"):
        runpy.run_path(str(APP_DIR / "gunicorn.conf.py"))
    monkeypatch.setenv("WEB_CONCURRENCY", "2")
    monkeypatch.setenv("HEALTH_PORT", "9090")
    with pytest.raises(ValueError, match=r"^HEALTH_PORT=9090 is invalid: expected a port other than PORT \(9090\)$"):
        runpy.run_path(str(APP_DIR / "gunicorn.conf.py"))
    monkeypatch.delenv("HEALTH_PORT")
    # "²".isdigit() is true and int("²") fails; "٨٠" (Arabic-Indic 80) int() would read.
    for port in ("²", "٨٠", "8o8o", "0"):
        monkeypatch.setenv("PORT", port)
        with pytest.raises(ValueError, match=rf"^PORT='{port}' is invalid: expected a whole number >= 1$"):
            runpy.run_path(str(APP_DIR / "gunicorn.conf.py"))
