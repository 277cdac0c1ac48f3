"""The platform's guardrails as plain functions: one place for the rule logic.

Each rule looks at one resource — its type, its inputs, whether it is protected — in the
context of a stack (name, environment, policy config) and returns violation messages (an
empty list: compliant). Nothing here imports Pulumi: the same functions run

* inside the Pulumi policy pack (``pack.py``, ``pulumi preview --policy-pack policy``), on
  the properties the engine sends, and
* offline (``check.py``), on the graph the program registers under the project's mocks, so
  a violation fails the tests and ``make plan`` before anyone previews.

Inputs use one representation on both sides:

* a value the program marked secret is replaced by :data:`SECRET` (``"[secret]"``);
* a value not known yet (a preview) is :data:`UNKNOWN_MARK` or one of the engine's
  unknown sentinels. A rule never reports a violation on a value it cannot see.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, Mapping, Optional, Sequence

SECRET = "[secret]"
UNKNOWN_MARK = "[unknown]"
# The engine's markers for values not known during a preview (sdk/go/common/resource/plugin
# rpc.go; pulumi_policy/proxy.py lists the same seven).
ENGINE_UNKNOWNS = frozenset(
    {
        "1c4a061d-8072-4f0a-a4cb-0ff528b18fe7",  # bool
        "3eeb2bf0-c639-47a8-9e75-3b44932eb421",  # number
        "04da6b54-80e4-46f7-96ec-b56ff0331ba9",  # string (also what the Python SDK sends)
        "6a19a0b0-7e62-4c92-b797-7f8e31da9cc2",  # array
        "030794c1-ac77-496b-92df-f27374a8bd58",  # asset
        "e48ece36-62e2-4504-bad9-02848725956a",  # archive
        "dd056dcd-154b-4c76-9bd3-c8f88648b5ff",  # object
    }
)

MANAGED_CLUSTER = "azure-native:containerservice:ManagedCluster"
AGENT_POOL = "azure-native:containerservice:AgentPool"
USER_ASSIGNED_IDENTITY = "azure-native:managedidentity:UserAssignedIdentity"
RESOURCE_GROUP = "azure-native:resources:ResourceGroup"
ROLE_ASSIGNMENT = "azure-native:authorization:RoleAssignment"
HELM_RELEASE = "kubernetes:helm.sh/v3:Release"
HELM_CHART_V4 = "kubernetes:helm.sh/v4:Chart"

# What must be protected in a production stack (losing one is an outage or a re-bootstrap).
PROD_PROTECTED_TYPES = frozenset({MANAGED_CLUSTER, AGENT_POOL, USER_ASSIGNED_IDENTITY, RESOURCE_GROUP})

DEFAULT_CONFIG: dict[str, Any] = {
    # Rule 2: a role assignment on a whole subscription needs this opt-in.
    "allowSubscriptionScopeRoleAssignments": False,
    # Rule 5: a stack is production when its name, or the environment it deploys, is one of these.
    "prodEnvironments": ["prod"],
}

# JSON schema of each policy's config (the pack publishes it; `pulumi policy validate-config`).
CONFIG_SCHEMAS: dict[str, dict[str, dict[str, Any]]] = {
    "no-subscription-scope-role-assignment": {
        "allowSubscriptionScopeRoleAssignments": {
            "type": "boolean",
            "default": False,
            "description": "Allow role assignments whose scope is a whole subscription (e.g. ASO with "
            "addons.aso.subscriptionScope: true).",
        }
    },
    "prod-resources-protected": {
        "prodEnvironments": {
            "type": "array",
            "items": {"type": "string"},
            "default": ["prod"],
            "description": "Stack names / environment tags that mark a production stack.",
        }
    },
}


@dataclass(frozen=True)
class Resource:
    type: str
    name: str
    inputs: Mapping[str, Any]
    protect: bool = False


@dataclass(frozen=True)
class Context:
    """The stack a resource belongs to: its name, its environment (when known), policy config."""

    stack: str = ""
    environment: Optional[str] = None
    config: Mapping[str, Any] = field(default_factory=dict)

    def setting(self, key: str) -> Any:
        return self.config[key] if key in self.config else DEFAULT_CONFIG[key]


def is_unknown(value: Any) -> bool:
    return isinstance(value, str) and (value == UNKNOWN_MARK or value in ENGINE_UNKNOWNS)


def get(value: Any, path: str) -> Any:
    """The value at a dotted path in nested dicts, or None where a step is missing."""
    for part in path.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value


# --- Rule 1: workload identity and the OIDC issuer on every AKS cluster -------------------


def workload_identity_enabled(res: Resource, ctx: Context) -> list[str]:
    if res.type != MANAGED_CLUSTER:
        return []
    problems = []
    for path, what in (
        ("securityProfile.workloadIdentity.enabled", "workload identity"),
        ("oidcIssuerProfile.enabled", "the OIDC issuer"),
    ):
        value = get(res.inputs, path)
        if is_unknown(value):
            continue
        if value is not True:
            problems.append(
                f"AKS cluster {res.name}: {what} is off ({path} = {value!r}); controllers authenticate "
                f"to Azure with workload identity, which needs {path} = true"
            )
    return problems


# --- Rule 2: no subscription-wide role assignment unless allowed ---------------------------

_SUBSCRIPTION_SCOPE = re.compile(r"^/subscriptions/[^/]+/?$", re.IGNORECASE)
_WIDER_THAN_SUBSCRIPTION = re.compile(r"^(/|/providers/Microsoft\.Management/managementGroups/[^/]+/?)$", re.IGNORECASE)


def no_subscription_scope_role_assignment(res: Resource, ctx: Context) -> list[str]:
    if res.type != ROLE_ASSIGNMENT:
        return []
    scope = res.inputs.get("scope")
    if is_unknown(scope) or scope == SECRET:
        return []
    if scope is None or (isinstance(scope, str) and not scope.strip()):
        return [f"role assignment {res.name}: no scope; a role assignment needs the narrowest scope that works"]
    if not isinstance(scope, str):
        return []
    if _WIDER_THAN_SUBSCRIPTION.match(scope):
        return [f"role assignment {res.name}: scope {scope!r} is wider than a subscription; not allowed"]
    if _SUBSCRIPTION_SCOPE.match(scope) and not ctx.setting("allowSubscriptionScopeRoleAssignments"):
        return [
            f"role assignment {res.name}: scope {scope!r} is a whole subscription; grant on a resource group "
            "or a resource, or set the policy config allowSubscriptionScopeRoleAssignments: true"
        ]
    return []


# --- Rule 3: every Helm release pinned to an exact version ---------------------------------

# SemVer 2.0 with an optional leading v (charts use both: cert-manager "v1.21.1", ASO "2.20.0").
EXACT_VERSION = re.compile(
    r"^v?(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(-[0-9A-Za-z-]+(\.[0-9A-Za-z-]+)*)?(\+[0-9A-Za-z-]+(\.[0-9A-Za-z-]+)*)?$"
)
_RANGE_CHARS = re.compile(r"[\^~><*=|, ]|(^|\.)[xX](\.|$)")


def helm_release_pinned(res: Resource, ctx: Context) -> list[str]:
    if res.type not in (HELM_RELEASE, HELM_CHART_V4):
        return []
    version = res.inputs.get("version")
    chart = res.inputs.get("chart")
    if is_unknown(version):
        return []
    what = f"Helm release {res.name} (chart {chart!r})"
    if version is None or (isinstance(version, str) and not version.strip()):
        return [f"{what}: no version; pin an exact chart version (e.g. '1.2.3'), else every update may install a new one"]
    if not isinstance(version, str) or version.strip().lower() == "latest" or _RANGE_CHARS.search(version) or not EXACT_VERSION.match(version):
        return [f"{what}: version {version!r} is not an exact version; pin one such as '1.2.3' (no ranges, wildcards or 'latest')"]
    return []


# --- Rule 4: no plain-text secret -----------------------------------------------------------

# A key names a secret when, lower-cased without - _ ., it ends with one of these...
SECRET_KEY_ENDINGS = (
    "kubeconfig",
    "password",
    "passwd",
    "secret",
    "clientsecret",
    "token",
    "connectionstring",
    "privatekey",
    "accesskey",
    "apikey",
    "sastoken",
    "clientkeydata",
)
# ...unless it is a reference to one (its name, where it lives), not the secret itself.
SECRET_KEY_PREFIX_EXCEPTIONS = ("existing",)


def _norm(key: str) -> str:
    return re.sub(r"[-_.\s]", "", key).lower()


def is_secret_key(key: str) -> bool:
    k = _norm(key)
    return k.endswith(SECRET_KEY_ENDINGS) and not k.startswith(SECRET_KEY_PREFIX_EXCEPTIONS)


def plaintext_secret_paths(value: Any, path: tuple = ()) -> Iterator[tuple]:
    """Paths (tuples of keys and list indexes) of non-empty plain-text strings under secret-looking keys.

    A value already replaced by :data:`SECRET` is fine, and so is one not known yet, an empty
    string, or a non-string (a flag such as ``createSecret: true``; a nested mapping, whose own
    keys are checked in turn).
    """
    if isinstance(value, Mapping):
        for key in value:
            sub = value[key]
            if isinstance(key, str) and is_secret_key(key) and _is_plain_text(sub):
                yield (*path, key)
            else:
                yield from plaintext_secret_paths(sub, (*path, key))
    elif isinstance(value, (list, tuple)):
        for i, sub in enumerate(value):
            yield from plaintext_secret_paths(sub, (*path, i))


def format_path(path: Sequence[Any]) -> str:
    """('values', 'users', 0, 'token') -> 'values.users[0].token'"""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _is_plain_text(value: Any) -> bool:
    return isinstance(value, str) and value.strip() != "" and value != SECRET and not is_unknown(value)


def no_plaintext_secret_inputs(res: Resource, ctx: Context) -> list[str]:
    return [
        f"{res.type} {res.name}: input {path} looks like a secret but is not marked secret; "
        "wrap it in pulumi.Output.secret (or read it with config.require_secret)"
        for path in map(format_path, plaintext_secret_paths(res.inputs))
    ]


def no_plaintext_secret_outputs(outputs: Mapping[str, Any]) -> list[str]:
    """Stack outputs (secret ones already :data:`SECRET`): a secret-looking one must be secret."""
    return [
        f"stack output {path} looks like a secret but is exported in plain text; export it with pulumi.Output.secret"
        for path in map(format_path, plaintext_secret_paths(dict(outputs)))
    ]


# --- Rule 5: production resources protected --------------------------------------------------


def is_production(ctx: Context, inputs: Mapping[str, Any]) -> bool:
    prod = {str(p).lower() for p in ctx.setting("prodEnvironments")}
    stack = ctx.stack.rsplit("/", 1)[-1].lower()
    tag = get(inputs, "tags.environment")
    names = {stack, (ctx.environment or "").lower(), tag.lower() if isinstance(tag, str) else ""}
    return bool(prod & names)


def prod_resources_protected(res: Resource, ctx: Context) -> list[str]:
    if res.type not in PROD_PROTECTED_TYPES or res.protect or not is_production(ctx, res.inputs):
        return []
    return [
        f"{res.type} {res.name}: production resource without protect; set ResourceOptions(protect=True) "
        "(config aks-platform:protect: true) so a refactor or a destroy cannot delete it"
    ]


# --- Rule 6: storage is private; the published OIDC issuer is the one exception ----------------

STORAGE_ACCOUNT = "azure-native:storage:StorageAccount"
BLOB_CONTAINER = "azure-native:storage:BlobContainer"
BLOB = "azure-native:storage:Blob"
# The exception, exactly (components/oidc_issuer.py builds it; a test holds the two equal):
# an account named "oidc" + 20 hex digits and tagged as the issuer's may allow anonymous
# blob reads; in it only the container "oidc" may be public, per blob ("Blob", never
# "Container", which lists), and it holds only the two discovery documents.
OIDC_ISSUER_ACCOUNT_RE = re.compile(r"^oidc[0-9a-f]{20}$")
OIDC_ISSUER_PURPOSE_TAG = ("aks-platform-purpose", "oidc-issuer")
OIDC_ISSUER_CONTAINER = "oidc"
OIDC_ISSUER_BLOBS = frozenset({".well-known/openid-configuration", "openid/v1/jwks"})


def _is_issuer_account_name(name: Any) -> bool:
    return isinstance(name, str) and bool(OIDC_ISSUER_ACCOUNT_RE.fullmatch(name))


def storage_private(res: Resource, ctx: Context) -> list[str]:
    inputs = res.inputs
    account = inputs.get("accountName")
    if is_unknown(account):
        return []
    if res.type == STORAGE_ACCOUNT:
        public = inputs.get("allowBlobPublicAccess")
        if is_unknown(public) or public is False:
            return []
        key, value = OIDC_ISSUER_PURPOSE_TAG
        if public is True and _is_issuer_account_name(account) and get(inputs, f"tags.{key}") == value:
            return []
        return [
            f"storage account {res.name} ({account}): allowBlobPublicAccess is {public!r}; set it to false "
            "(anonymous access is allowed only on the published OIDC issuer's account)"
        ]
    if res.type == BLOB_CONTAINER:
        access = inputs.get("publicAccess")
        container = inputs.get("containerName")
        if is_unknown(access) or access in (None, "None") or is_unknown(container):
            return []
        if access == "Blob" and _is_issuer_account_name(account) and container == OIDC_ISSUER_CONTAINER:
            return []
        return [
            f"blob container {res.name} ({account}/{container}): publicAccess is {access!r}; set it to 'None' "
            f"(only the OIDC issuer's container {OIDC_ISSUER_CONTAINER!r} may be public, per blob)"
        ]
    if res.type == BLOB and _is_issuer_account_name(account):
        container, blob = inputs.get("containerName"), inputs.get("blobName")
        if is_unknown(container) or is_unknown(blob):
            return []
        if container == OIDC_ISSUER_CONTAINER and blob in OIDC_ISSUER_BLOBS:
            return []
        return [
            f"blob {res.name} ({account}/{container}/{blob}): the OIDC issuer's account is read anonymously and "
            f"may hold only {sorted(OIDC_ISSUER_BLOBS)} in {OIDC_ISSUER_CONTAINER!r}"
        ]
    return []


# --- The catalogue ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Rule:
    name: str
    description: str
    check: Callable[[Resource, Context], list[str]]
    types: Optional[frozenset[str]] = None  # None: every resource type


RESOURCE_RULES: tuple[Rule, ...] = (
    Rule(
        "aks-workload-identity",
        "Every AKS cluster has the OIDC issuer and workload identity enabled.",
        workload_identity_enabled,
        frozenset({MANAGED_CLUSTER}),
    ),
    Rule(
        "no-subscription-scope-role-assignment",
        "No role assignment on a whole subscription (or wider) unless allowSubscriptionScopeRoleAssignments.",
        no_subscription_scope_role_assignment,
        frozenset({ROLE_ASSIGNMENT}),
    ),
    Rule(
        "helm-release-pinned",
        "Every Helm release installs an exact chart version.",
        helm_release_pinned,
        frozenset({HELM_RELEASE, HELM_CHART_V4}),
    ),
    Rule(
        "no-plaintext-secret-inputs",
        "No input whose key names a secret (kubeconfig, password, clientSecret, token, ...) in plain text.",
        no_plaintext_secret_inputs,
    ),
    Rule(
        "storage-private",
        "No anonymous access to storage, except the published OIDC issuer's two discovery documents.",
        storage_private,
        frozenset({STORAGE_ACCOUNT, BLOB_CONTAINER, BLOB}),
    ),
    Rule(
        "prod-resources-protected",
        "In production stacks, clusters, node pools, identities and resource groups are protected.",
        prod_resources_protected,
        frozenset(PROD_PROTECTED_TYPES),
    ),
)
STACK_OUTPUTS_RULE = "no-plaintext-secret-outputs"


def check_resource(res: Resource, ctx: Context, rules: Sequence[Rule] = RESOURCE_RULES) -> list[tuple[str, str]]:
    """(rule name, message) for every violation of `res`."""
    found: list[tuple[str, str]] = []
    for rule in rules:
        if rule.types is None or res.type in rule.types:
            found.extend((rule.name, message) for message in rule.check(res, ctx))
    return found


def check_all(resources: Iterable[Resource], ctx: Context, outputs: Optional[Mapping[str, Any]] = None) -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    for res in resources:
        found.extend(check_resource(res, ctx))
    if outputs is not None:
        found.extend((STACK_OUTPUTS_RULE, m) for m in no_plaintext_secret_outputs(outputs))
    return found
