"""Evaluate a Pulumi program offline under mocks and record the resource graph.

Used by the tests and by `make plan`: the program runs for real (components, config
validation, invokes) against :class:`offline.mocks.AzureMocks`; a recording monitor keeps
each registration's type, name, parent, provider, dependencies, options and inputs, with
secret inputs marked and unknown (preview) inputs kept as :data:`UNKNOWN`.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Optional

import pulumi
import yaml
from google.protobuf import json_format
from pulumi.runtime import mocks as runtime_mocks
from pulumi.runtime import resource as pulumi_resource_runtime
from pulumi.runtime import rpc
from pulumi.runtime.proto import source_pb2
from pulumi.runtime.config import set_all_config
from pulumi.runtime.sync_await import _sync_await

from offline.mocks import AzureMocks, admin_kubeconfig
from policy.rules import SECRET, UNKNOWN_MARK
from stacks import build
from stacks.validation import from_pulumi

UNKNOWN = rpc.UNKNOWN
_SIG = rpc._special_sig_key
_SECRET_SIG = rpc._special_secret_sig
_RESOURCE_SIG = rpc._special_resource_sig

REPO_ROOT = Path(__file__).resolve().parent.parent
PROJECT = "aks-platform"


@dataclass(frozen=True)
class Secret:
    """An input the program marked secret (Output.secret / a --secret config value)."""

    value: Any


@dataclass
class Registration:
    urn: str
    type: str
    name: str
    parent: str
    custom: bool
    provider: str
    dependencies: list[str]
    property_dependencies: dict[str, list[str]]
    protect: bool
    ignore_changes: list[str]
    delete_before_replace: bool
    inputs: dict[str, Any]
    # What decides replacement and deletion beyond the inputs (offline.teardown reads them).
    replace_on_changes: list[str] = field(default_factory=list)
    custom_timeouts: dict[str, str] = field(default_factory=dict)
    deleted_with: str = ""
    retain_on_delete: bool = False

    def plain(self, path: Optional[str] = None) -> Any:
        """Inputs (or one dotted path into them) with Secret wrappers removed."""
        value: Any = unwrap(self.inputs)
        if path:
            for part in path.split("."):
                value = value[int(part)] if isinstance(value, list) else value[part]
        return value

    def get(self, path: str, default: Any = None) -> Any:
        """Like plain(path), or `default` where the path is absent."""
        try:
            return self.plain(path)
        except (KeyError, IndexError, TypeError):
            return default

    def input(self, path: str) -> Any:
        """The raw input at a dotted path, Secret wrappers kept."""
        value: Any = self.inputs
        for part in path.split("."):
            if isinstance(value, Secret):
                value = value.value
            value = value[int(part)] if isinstance(value, list) else value[part]
        return value


@dataclass
class OutputValue:
    value: Any
    secret: bool
    known: bool


@dataclass
class Evaluation:
    resources: list[Registration]
    outputs: dict[str, OutputValue] = field(default_factory=dict)
    result: Any = None

    def by_type(self, type_: str) -> list[Registration]:
        return [r for r in self.resources if r.type == type_]

    def one(self, type_: str, name: Optional[str] = None) -> Registration:
        found = [r for r in self.by_type(type_) if name is None or r.name == name]
        if len(found) != 1:
            raise AssertionError(f"expected one {type_} {name or ''}, found {[r.name for r in found]}")
        return found[0]

    def by_urn(self) -> dict[str, Registration]:
        return {r.urn: r for r in self.resources}

    def named(self, name: str) -> Registration:
        found = [r for r in self.resources if r.name == name]
        if len(found) != 1:
            raise AssertionError(f"expected one resource named {name}, found {len(found)}")
        return found[0]

    def depends_on(self, child: Registration, ancestor: Registration) -> bool:
        """Whether `child` waits for `ancestor`, through dependencies, parents' deps and providers."""
        graph = self.by_urn()
        seen: set[str] = set()
        stack = [child.urn]
        while stack:
            urn = stack.pop()
            if urn in seen:
                continue
            seen.add(urn)
            if urn == ancestor.urn and urn != child.urn:
                return True
            reg = graph.get(urn)
            if reg is None:
                continue
            stack.extend(reg.dependencies)
            for deps in reg.property_dependencies.values():
                stack.extend(deps)
            if reg.provider:
                stack.append(reg.provider.rsplit("::", 1)[0])
        return False


def decode_value(value: Any) -> Any:
    """Protobuf JSON -> Python, keeping secrets (as Secret) and unknowns (as UNKNOWN)."""
    if isinstance(value, dict):
        sig = value.get(_SIG)
        if sig == _SECRET_SIG:
            return Secret(decode_value(value.get("value")))
        if sig == _RESOURCE_SIG:
            return value.get("urn")
        return {k: decode_value(v) for k, v in value.items()}
    if isinstance(value, list):
        return [decode_value(v) for v in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def unwrap(value: Any) -> Any:
    if isinstance(value, Secret):
        return unwrap(value.value)
    if isinstance(value, dict):
        return {k: unwrap(v) for k, v in value.items()}
    if isinstance(value, list):
        return [unwrap(v) for v in value]
    return value


def contains_unknown(value: Any) -> bool:
    if isinstance(value, Secret):
        return contains_unknown(value.value)
    if isinstance(value, dict):
        return any(contains_unknown(v) for v in value.values())
    if isinstance(value, list):
        return any(contains_unknown(v) for v in value)
    return value == UNKNOWN


class RecordingMonitor(runtime_mocks.MockMonitor):
    def __init__(self, mocks: pulumi.runtime.Mocks):
        super().__init__(mocks)
        self.registrations: list[Registration] = []
        self._lock = threading.Lock()

    def RegisterResource(self, request):  # noqa: N802 (gRPC method name)
        response = super().RegisterResource(request)
        if request.type == "pulumi:pulumi:Stack":
            return response
        inputs = decode_value(json_format.MessageToDict(request.object)) if request.object else {}
        reg = Registration(
            urn=response.urn,
            type=request.type,
            name=request.name,
            parent=request.parent,
            custom=request.custom,
            provider=request.provider,
            dependencies=sorted(request.dependencies),
            property_dependencies={k: sorted(v.urns) for k, v in sorted(request.propertyDependencies.items())},
            protect=bool(request.protect),
            ignore_changes=list(request.ignoreChanges),
            delete_before_replace=bool(request.deleteBeforeReplace),
            inputs=inputs,
            replace_on_changes=list(request.replaceOnChanges),
            custom_timeouts={
                key: getattr(request.customTimeouts, key)
                for key in ("create", "update", "delete")
                if request.HasField("customTimeouts") and getattr(request.customTimeouts, key)
            },
            deleted_with=request.deletedWith,
            retain_on_delete=bool(request.retainOnDelete),
        )
        with self._lock:
            self.registrations.append(reg)
        return response


def evaluate(
    program: Callable[[], Any],
    *,
    config: Mapping[str, Any] | None = None,
    secret_keys: Iterable[str] = (),
    stack: str = "test",
    preview: bool = False,
    mocks: Optional[pulumi.runtime.Mocks] = None,
) -> Evaluation:
    """Run `program` under fresh mocks. `config` keys are full (`aks-platform:location`).

    If the program returns a mapping of Outputs (the stack outputs), they are resolved with
    their secret and known flags.
    """
    mocks = mocks or AzureMocks(preview=preview)
    monitor = RecordingMonitor(mocks)
    # A new root Stack per evaluation: set_mocks keeps an existing one, whose URN would name
    # the previous evaluation's stack.
    pulumi.runtime.settings.ROOT.set(None)
    pulumi.runtime.set_mocks(mocks, project=PROJECT, stack=stack, preview=preview, monitor=monitor)
    set_all_config(
        {k: v if isinstance(v, str) else json.dumps(v) for k, v in (config or {}).items()},
        list(secret_keys),
    )
    holder: dict[str, Any] = {}

    def run() -> Any:
        result = program()
        holder["result"] = result
        if isinstance(result, Mapping):
            return pulumi.Output.all(
                **{k: pulumi.Output.from_input(v) for k, v in result.items()}
            )
        return None

    settings = pulumi.runtime.settings.SETTINGS
    settings.rpc_manager.clear()
    # The SDK walks the Python stack (traceback.extract_stack) at every registration for the
    # request's sourcePosition/stackTrace, which only the engine's diagnostics read; the mocks
    # and the recording ignore them. Skipping the walk is ~15% of an evaluation's CPU. An empty
    # trace is what the SDK itself sends when it finds no user frame.
    capture_stack = pulumi_resource_runtime._get_stack_trace
    pulumi_resource_runtime._get_stack_trace = source_pb2.StackTrace
    try:
        _sync_await(pulumi.runtime.stack.run_pulumi_func(lambda: _sync_await(pulumi.Output.from_input(run()).future())))
    except BaseException:
        # A failed run (a mock refusing a request, as Azure would) leaves its registrations'
        # tasks behind: drop them, so the next evaluation waits only for its own.
        with settings.lock:
            leftover = list(settings.outputs)
            settings.outputs.clear()
        for task in leftover:
            task.cancel()
        settings.rpc_manager.clear()
        raise
    finally:
        pulumi_resource_runtime._get_stack_trace = capture_stack
    outputs: dict[str, OutputValue] = {}
    result = holder.get("result")
    if isinstance(result, Mapping):
        for key, value in result.items():
            out = pulumi.Output.from_input(value)
            outputs[key] = OutputValue(
                value=_sync_await(out.future(with_unknowns=True)),
                secret=_sync_await(out.is_secret()),
                known=_sync_await(out.is_known()),
            )
    regs = sorted(monitor.registrations, key=lambda r: r.urn)
    return Evaluation(resources=regs, outputs=outputs, result=result)


def stack_config(stack: str, root: Path = REPO_ROOT) -> tuple[dict[str, Any], list[str]]:
    """The config of `Pulumi.<stack>.yaml`, and which keys are secure.

    Offline there is no passphrase to decrypt `secure:` values; each becomes a stand-in
    that says so, still marked secret, so the program treats it as it would the real one.
    """
    doc = yaml.safe_load((root / f"Pulumi.{stack}.yaml").read_text()) or {}
    config: dict[str, Any] = {}
    secret: list[str] = []
    for key, value in (doc.get("config") or {}).items():
        full = key if ":" in key else f"{PROJECT}:{key}"
        if isinstance(value, Mapping) and set(value) == {"secure"}:
            secret.append(full)
            config[full] = None  # filled below, once the whole stack's config is known
        elif isinstance(value, Mapping) and "value" in value and len(value) == 1:
            config[full] = value["value"]
        else:
            config[full] = value
    for full in secret:
        config[full] = offline_secret_stand_in(full, config)
    return _kind_stand_ins(config, secret, root)


# Offline stand-in for the public key `make kind` generates: its private half was discarded
# when this file was made, so it signs nothing; it only gives the plan a fixed issuer URL.
OFFLINE_KIND_PUBLIC_KEY = Path(__file__).resolve().parent / "kind-sa.pub"


def _kind_stand_ins(config: dict[str, Any], secret: list[str], root: Path) -> tuple[dict[str, Any], list[str]]:
    """What `make kind` creates (kubeconfig, public key), where a stack names it and it is absent.

    Offline there is no cluster yet: the kubeconfig file becomes the secret kubeconfig
    stand-in and the public key the fixed one above, so the program sees what it would after
    `make kind`. Where the files exist (a user ran `make kind`), they are used as they are.
    """
    hybrid = config.get(f"{PROJECT}:hybrid")
    if not isinstance(hybrid, Mapping):
        return config, secret
    hybrid = dict(hybrid)

    def absent(key: str) -> bool:
        value = hybrid.get(key)
        if not isinstance(value, str):
            return False
        path = Path(value).expanduser()
        return not (path if path.is_absolute() else root / path).is_file()

    if absent("kubeconfigPath"):
        del hybrid["kubeconfigPath"]
        key = f"{PROJECT}:kubeconfig"
        config[key] = offline_secret_stand_in(key, config)
        secret = [*secret, key]
    if absent("serviceAccountPublicKeyPath"):
        hybrid["serviceAccountPublicKeyPath"] = str(OFFLINE_KIND_PUBLIC_KEY)
    config[f"{PROJECT}:hybrid"] = hybrid
    return config, secret


def offline_secret_stand_in(key: str, config: Mapping[str, Any] | None = None) -> str:
    """A value for a secure config key that offline evaluation cannot decrypt.

    A kubeconfig stand-in has the context the stack names (`hybrid.context`), as the user's
    real kubeconfig does: config validation checks that it is there.
    """
    if key.lower().endswith("kubeconfig"):
        hybrid = (config or {}).get(f"{PROJECT}:hybrid")
        context = hybrid.get("context") if isinstance(hybrid, Mapping) else None
        return admin_kubeconfig("offline-existing-cluster", "offline", context)
    return f"offline-stand-in-for-{key}"


# --- The shipped stacks ----------------------------------------------------------------------


class UnknownStack(ValueError):
    pass


def available_stacks(root: Path = REPO_ROOT) -> list[str]:
    return sorted(p.name[len("Pulumi.") : -len(".yaml")] for p in root.glob("Pulumi.*.yaml"))


def load_stack(stack: str, root: Path = REPO_ROOT) -> tuple[dict[str, Any], list[str]]:
    stacks = available_stacks(root)
    if stack not in stacks:
        raise UnknownStack(
            f"no stack {stack!r}: there is no Pulumi.{stack}.yaml; "
            f"available: {', '.join(stacks) or '(none)'}"
        )
    return stack_config(stack, root)


def evaluate_stack(stack: str, mode: str = "preview", root: Path = REPO_ROOT) -> Evaluation:
    """The program for `stack`, evaluated under fresh mocks in `mode` (preview or update)."""
    if mode not in ("preview", "update"):
        raise ValueError(f"mode {mode!r}: allowed: preview, update")
    config, secret = load_stack(stack, root)
    return evaluate(lambda: build(from_pulumi()), config=config, secret_keys=secret, stack=stack, preview=mode == "preview")


# --- Masking: the one representation the plan and the policy rules share ---------------------


def mask(value: Any) -> Any:
    """Inputs as the plan and the rules see them: secrets -> "[secret]", unknowns -> "[unknown]"."""
    if isinstance(value, Secret):
        return SECRET
    if isinstance(value, dict):
        return {k: mask(v) for k, v in value.items()}
    if isinstance(value, list):
        return [mask(v) for v in value]
    if isinstance(value, str) and value == UNKNOWN:
        return UNKNOWN_MARK
    return value


def output_value(out: OutputValue) -> Any:
    """A resolved stack output, with its secret and unknown flags turned into markers for `mask`."""
    if out.secret:
        return Secret(out.value)
    if not out.known:
        return UNKNOWN
    return out.value
