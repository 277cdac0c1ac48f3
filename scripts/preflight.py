"""Before `make up` touches anything: can this stack work here, as far as can be checked?

`make preflight STACK=x` (run by `up`, `preview` and `destroy`) checks, in order:

1. the tools (Python 3.11+, the Pulumi CLI, the Azure CLI and its login, kubelogin where the
   stack needs it);
2. the stack file: no shipped example value left (`EXAMPLES`, kept true to the shipped stack
   files by tests/test_preflight.py);
3. with the Azure CLI, for what the program would create (found by running it offline under
   mocks, `offline.plan.evaluate_stack`, so the answer follows the code):
   - the resource providers are registered, in every subscription the stack writes to;
   - the deployer may create resources and role assignments there (Owner, or Contributor plus
     Role Based Access Control Administrator or User Access Administrator, at the subscription
     or above), and logs in as the principal type the stack declares;
   - the region offers the pools' VM sizes (in their zones) and has the vCPU quota for them;
   - the region offers the PostgreSQL flexible server the reference app asks for;
   - with local accounts off (an AKS stack's `cluster.localAccounts` false), the deployer is a
     member, directly or through nested groups, of a group in `cluster.adminGroupObjectIds`:
     nothing else makes it cluster admin, so otherwise `up` creates the cluster and then fails
     with Forbidden at the first Kubernetes call;
   - a person signed in is reminded that, if CI deploys the stack too, both must share a
     backend (a warning: which stacks CI deploys, the repository variable DEPLOY_STACKS, is
     not readable from here).

A check that cannot be made (az missing, not logged in, a command failing or answering
something unreadable, a custom role, Microsoft Graph refusing a service principal without
directory read rights) is listed as "could not check" and does not fail the run; a problem found
does; a warning is printed and does not fail it. `PREFLIGHT_SKIP=rbac,quota` skips checks by
name (listed as skipped).

Not modelled: deny assignments, Entra PIM roles that are eligible but not active (they count
as missing), role-assignment conditions (reported as could-not-check), management-group
ancestry (any management-group assignment the subscription query returns is taken to apply),
the surge nodes an upgrade adds on top of the pools' maximum, quota other than vCPUs; for the
admin groups, a kubelogin mode other than `azurecli` (its identity is taken to be the Azure
CLI's), a platform subscription in another Entra tenant than the Azure CLI's current one
(Microsoft Graph is asked in the latter), and whether the current token already carries a
membership added after it was issued.

Only ever reads: every az command here is a list/show/get/check; the access token is decoded for
its `oid` claim and never printed.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Optional

ROOT = Path(__file__).resolve().parent.parent
PROJECT = "aks-platform"
CHECKS = ("examples", "providers", "rbac", "quota", "postgres", "admins", "team")


# --- 2. Shipped example values ----------------------------------------------------------------


@dataclass(frozen=True)
class Example:
    values: frozenset[str]
    replace_with: str
    secret: bool = False


# Keys are config paths below `aks-platform:`, list indexes written `[]`. Every value here is in
# a shipped stack file at that key, and every value a shipped stack file has at such a key (or
# that looks like an identifier, URL, image or public range anywhere) is here: both directions
# are tests, so a changed or added example cannot slip past preflight.
EXAMPLES: dict[str, Example] = {
    "addons.argocd.repoUrl": Example(
        frozenset({"https://github.com/aks-platform/aks-platform.git"}),
        "the Git URL of your fork of this repository (Argo CD syncs its gitops/ folder from it)",
    ),
    "addons.argocd.appImage": Example(
        frozenset({"ghcr.io/aks-platform/webapp:0.1.0"}),
        "the reference app image you built from app/Dockerfile and pushed where the nodes can pull it",
    ),
    "cluster.adminGroupObjectIds[]": Example(
        frozenset({"3f2b7c1e-6d4a-4f0b-9b8e-2a1c5d7e9f10"}),
        "the object ID of your Entra group of cluster administrators (`az ad group show --group <name> --query id -o tsv`)",
    ),
    "cluster.apiServerAuthorizedIpRanges[]": Example(
        frozenset({"203.0.113.0/24"}),
        "the public ranges you and CI reach the API server from (203.0.113.0/24 is a documentation "
        "range: nobody, not even `pulumi up`, would reach the cluster)",
    ),
    "tenants[].subscriptionId": Example(
        frozenset({"8c1d2e3f-4a5b-4c6d-8e7f-9a0b1c2d3e4f", "1f2e3d4c-5b6a-4978-8a9b-0c1d2e3f4a5b"}),
        "the tenant's subscription ID (`az account list --query '[].{name:name, id:id}'`)",
    ),
    "tenants[].tenantId": Example(
        frozenset({"7a6b5c4d-3e2f-4a1b-9c8d-7e6f5a4b3c2d"}),
        "the Entra tenant of that subscription (`az account show --subscription <id> --query tenantId -o tsv`), "
        "or remove the key when it is your own tenant",
    ),
    "tenants[].sourceRepos[]": Example(
        frozenset({"https://github.com/aks-platform/payments-apps.git", "https://github.com/aks-platform/analytics-apps.git"}),
        "the Git repositories this tenant's Argo CD project may sync from",
    ),
    "hybrid.servicePrincipalClientId": Example(
        frozenset({"5b9c3f0e-2d7a-4e1b-8c6f-0a9d8e7f6c5b"}),
        "your service principal's application (client) ID (`az ad sp create-for-rbac --name <name>` prints it as appId)",
    ),
    "hybrid.servicePrincipalObjectId": Example(
        frozenset({"9e8d7c6b-5a4f-4e3d-8c2b-1a0f9e8d7c6b"}),
        "that service principal's object ID (`az ad sp show --id <appId> --query id -o tsv`)",
    ),
    "hybrid.appServicePrincipalClientId": Example(
        frozenset({"3c4d5e6f-7a8b-4c9d-8e0f-1a2b3c4d5e6f"}),
        "the reference app's own service principal's application (client) ID, not the controllers' "
        "(`az ad sp create-for-rbac --name <app-name>` prints it as appId)",
    ),
    "hybrid.appServicePrincipalObjectId": Example(
        frozenset({"6f5e4d3c-2b1a-4f0e-9d8c-7b6a5f4e3d2c"}),
        "the app's service principal's object ID (`az ad sp show --id <appId> --query id -o tsv`)",
    ),
    "kubeconfig": Example(
        frozenset({"set-with-pulumi-config-set--secret-aks-platform-kubeconfig"}),
        "your cluster's kubeconfig (Pulumi encrypts it into the stack file)",
        secret=True,
    ),
    "servicePrincipalClientSecret": Example(
        frozenset({"set-with-pulumi-config-set--secret-aks-platform-servicePrincipalClientSecret"}),
        "your service principal's client secret (Pulumi encrypts it)",
        secret=True,
    ),
    "appServicePrincipalClientSecret": Example(
        frozenset({"set-with-pulumi-config-set--secret-aks-platform-appServicePrincipalClientSecret"}),
        "the app's service principal's client secret (Pulumi encrypts it)",
        secret=True,
    ),
}
SECRET_COMMANDS = {
    "kubeconfig": "pulumi config set --secret --stack {stack} aks-platform:kubeconfig < ~/.kube/config",
    "servicePrincipalClientSecret": "pulumi config set --secret --stack {stack} aks-platform:servicePrincipalClientSecret '<client secret>'",
    "appServicePrincipalClientSecret": "pulumi config set --secret --stack {stack} aks-platform:appServicePrincipalClientSecret '<client secret>'",
}


def config_leaves(value: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    """(path, scalar) for every scalar under `value`; paths like `tenants[0].subscriptionId`."""
    if isinstance(value, Mapping):
        for key, child in value.items():
            yield from config_leaves(child, f"{path}.{key}" if path else str(key))
    elif isinstance(value, list):
        for i, child in enumerate(value):
            yield from config_leaves(child, f"{path}[{i}]")
    else:
        yield path, value


def project_config(doc: Mapping[str, Any]) -> dict[str, Any]:
    """The `aks-platform:*` keys of a parsed stack file, without the namespace."""
    prefix = f"{PROJECT}:"
    config = doc.get("config") or {}
    return {k[len(prefix):]: v for k, v in config.items() if isinstance(k, str) and k.startswith(prefix)}


def example_key(path: str) -> str:
    """`tenants[1].subscriptionId` -> `tenants[].subscriptionId`; a secret's `.secure` dropped."""
    generic = re.sub(r"\[\d+\]", "[]", path)
    return generic[: -len(".secure")] if generic.endswith(".secure") else generic


# The azure-native keys every stack pins (stacks/config.py PROVIDER_KEYS), as shipped.
PROVIDER_EXAMPLES: dict[str, Example] = {
    "azure-native:subscriptionId": Example(
        frozenset({"7da93a04-7e16-56f2-9816-1f831d635d0e"}),
        "the ID of the subscription this stack deploys into (`az account list --query '[].{name:name, id:id}'`)",
    ),
    "azure-native:tenantId": Example(
        frozenset({"3eeb0d03-5363-5182-bd00-464d5a90be26"}),
        "the Entra tenant of that subscription (`az account show --subscription <id> --query tenantId -o tsv`)",
    ),
}


def check_examples(doc: Mapping[str, Any], stack: str) -> list[str]:
    problems = []
    config = doc.get("config") or {}
    for key, example in PROVIDER_EXAMPLES.items():
        value = config.get(key)
        if isinstance(value, str) and value in example.values:
            problems.append(
                f"{key} still holds the shipped example {value!r}: set it to {example.replace_with}: "
                f"`pulumi config set --stack {stack} {key} <value>`"
            )
    for path, value in config_leaves(project_config(doc)):
        key = example_key(path)
        example = EXAMPLES.get(key)
        if example is None or not isinstance(value, str) or value not in example.values:
            continue
        if example.secret:
            shown = path[: -len(".secure")] if path.endswith(".secure") else path
            fix = SECRET_COMMANDS[shown].format(stack=stack)
            problems.append(
                f"{PROJECT}:{shown} still holds the shipped marker, not a secret: set it to {example.replace_with}: `{fix}`"
            )
        else:
            problems.append(
                f"{PROJECT}:{path} still holds the shipped example {value!r}: set it to {example.replace_with}: "
                f"`pulumi config set --path --stack {stack} '{PROJECT}:{path}' <value>`"
            )
    return problems


# --- 3. What the stack needs from Azure -------------------------------------------------------

# azure-native module -> resource provider namespace. Every module a shipped stack registers is
# here (a test evaluates them all).
PROVIDER_NAMESPACES = {
    "containerservice": "Microsoft.ContainerService",
    "managedidentity": "Microsoft.ManagedIdentity",
    "authorization": "Microsoft.Authorization",
    "resources": "Microsoft.Resources",
}
# Registered in every subscription and not unregistrable (Azure docs, "Azure resource providers
# and types": the providers registered by default).
ALWAYS_REGISTERED = frozenset({"Microsoft.Authorization", "Microsoft.Resources"})
# What the GitOps layer's reference app creates (gitops/platform/kro/webapp-rgd.yaml and
# gitops/platform/crossplane/webapp-composition.yaml; the apps ask for size `small`).
APP_PROVIDERS = frozenset({"Microsoft.DBforPostgreSQL", "Microsoft.Storage"})
APP_POSTGRES_VERSION = "16"
APP_POSTGRES_EDITION = "Burstable"
APP_POSTGRES_SKU = "Standard_B1ms"

# The platform's own subscription: the default azure-native provider's, known only at run time.
PLATFORM = "platform"


@dataclass(frozen=True)
class Pool:
    key: str  # the config key, e.g. cluster.userPools[0]
    name: str
    vm_size: str
    nodes: int  # maxCount when autoscaling, else count
    zones: tuple[str, ...]


@dataclass(frozen=True)
class Needs:
    stack: str
    location: str
    # subscription (PLATFORM or an ID) -> provider namespaces to be registered there
    providers: Mapping[str, frozenset[str]]
    # subscriptions where the program creates resources / role assignments
    resource_subscriptions: frozenset[str]
    role_assignment_subscriptions: frozenset[str]
    pools: tuple[Pool, ...] = ()
    postgres: bool = False
    platform_subscription: Optional[str] = None  # from azure-native:subscriptionId, when set
    unmapped: tuple[str, ...] = ()
    # cluster.adminGroupObjectIds where they are the only way to cluster admin (an AKS stack
    # with local accounts off); empty otherwise (local accounts on, or a hybrid stack)
    admin_groups: tuple[str, ...] = ()


def stack_needs(stack: str, root: Path = ROOT) -> Needs:
    """Evaluate the program offline (raises stacks.config.ConfigError on bad config)."""
    from offline.evaluate import stack_config
    from offline.plan import evaluate_stack
    from stacks.validation import load

    config, secret = stack_config(stack, root)
    prefix = f"{PROJECT}:"
    cfg = load(
        {k[len(prefix):]: v for k, v in config.items() if k.startswith(prefix)},
        frozenset(k[len(prefix):] for k in secret if k.startswith(prefix)),
    )
    evaluation = evaluate_stack(stack, "preview", root)

    provider_subscription: dict[str, str] = {}
    for reg in evaluation.resources:
        if reg.type == "pulumi:providers:azure-native":
            provider_subscription[reg.urn] = reg.get("subscriptionId") or PLATFORM

    providers: dict[str, set[str]] = {}
    resources: set[str] = set()
    assignments: set[str] = set()
    unmapped: set[str] = set()
    for reg in evaluation.resources:
        parts = reg.type.split(":")
        if not reg.custom or parts[0] != "azure-native" or len(parts) != 3:
            continue
        subscription = provider_subscription.get(reg.provider.rsplit("::", 1)[0], PLATFORM) if reg.provider else PLATFORM
        resources.add(subscription)
        if reg.type == "azure-native:authorization:RoleAssignment":
            assignments.add(subscription)
        namespace = PROVIDER_NAMESPACES.get(parts[1])
        if namespace is None:
            unmapped.add(reg.type)
        elif namespace not in ALWAYS_REGISTERED:
            providers.setdefault(subscription, set()).add(namespace)

    addons = cfg.addons
    app = addons.argocd.enabled and ((addons.aso.enabled and addons.kro.enabled) or addons.crossplane.enabled) and bool(cfg.app_resource_groups)
    if app:
        providers.setdefault(PLATFORM, set()).update(APP_PROVIDERS)

    pools: list[Pool] = []
    admin_groups: tuple[str, ...] = ()
    if cfg.cluster is not None:
        c = cfg.cluster
        if not c.local_accounts:
            admin_groups = tuple(c.admin_group_object_ids)
        for key, pool in [("cluster.systemPool", c.system_pool)] + [
            (f"cluster.userPools[{i}]", p) for i, p in enumerate(c.user_pools)
        ]:
            nodes = pool.max_count if pool.autoscaling and pool.max_count is not None else pool.count
            pools.append(Pool(key, pool.name, pool.vm_size, nodes, pool.zones))

    return Needs(
        stack=stack,
        location=cfg.location,
        providers={s: frozenset(n) for s, n in providers.items()},
        resource_subscriptions=frozenset(resources),
        role_assignment_subscriptions=frozenset(assignments),
        pools=tuple(pools),
        postgres=app,
        platform_subscription=config.get("azure-native:subscriptionId"),
        unmapped=tuple(sorted(unmapped)),
        admin_groups=admin_groups,
    )


# --- The Azure CLI ---------------------------------------------------------------------------


class AzError(Exception):
    """An az command failed or answered what this script cannot read."""


def az(*args: str, subscription: Optional[str] = None) -> Any:
    cmd = ["az", *args]
    if subscription:
        cmd += ["--subscription", subscription]
    cmd += ["--output", "json", "--only-show-errors"]
    shown = " ".join(a for a in cmd[1:] if a not in ("--output", "json", "--only-show-errors"))
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    except (OSError, subprocess.TimeoutExpired) as err:
        raise AzError(f"`az {shown}` did not run: {err}") from None
    if done.returncode != 0:
        lines = [line for line in done.stderr.strip().splitlines() if line.strip()]
        raise AzError(f"`az {shown}` failed: {lines[-1] if lines else f'exit {done.returncode}'}")
    try:
        return json.loads(done.stdout)
    except ValueError:
        raise AzError(f"`az {shown}` answered no JSON") from None


def token_object_id(subscription: str) -> str:
    """The signed-in principal's object ID in the subscription's tenant (the token's `oid`).

    Graph-free, so it works for a service principal without directory read permission too.
    """
    token = az("account", "get-access-token", subscription=subscription)
    try:
        payload = token["accessToken"].split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        return str(claims["oid"])
    except (KeyError, IndexError, TypeError, ValueError):
        raise AzError("`az account get-access-token` returned a token without an `oid` claim") from None


@dataclass
class Findings:
    problems: list[str] = field(default_factory=list)
    unchecked: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # printed, never failing the run


@dataclass(frozen=True)
class Login:
    subscription: str  # the platform subscription the checks run against
    user_type: str  # `user` or `servicePrincipal` (az account show's user.type)
    user_name: str


def login_from_account(account: Mapping[str, Any], needs: Needs) -> Login:
    user = account.get("user") or {}
    subscription = needs.platform_subscription or os.environ.get("ARM_SUBSCRIPTION_ID") or account.get("id")
    if not subscription:
        raise AzError("`az account show` named no subscription")
    return Login(subscription=subscription, user_type=str(user.get("type", "")), user_name=str(user.get("name", "")))


def _subscription(login: Login, key: str) -> str:
    return login.subscription if key == PLATFORM else key


def _who(login: Login, object_id: str) -> str:
    """The signed-in principal by type, name (a UPN or an application ID) and object ID."""
    if login.user_type == "user":
        return f"you (user {login.user_name}, object ID {object_id})"
    return f"the service principal (application ID {login.user_name}, object ID {object_id})"


def _where(login: Login, key: str) -> str:
    return f"subscription {_subscription(login, key)}" + (" (the platform's)" if key == PLATFORM else " (a tenant's)")


def check_providers(needs: Needs, login: Login) -> Findings:
    found = Findings()
    for key, namespaces in sorted(needs.providers.items()):
        sub = _subscription(login, key)
        for namespace in sorted(namespaces):
            try:
                state = az("provider", "show", "--namespace", namespace, subscription=sub).get("registrationState")
            except (AzError, AttributeError) as err:
                found.unchecked.append(f"resource provider {namespace} in {_where(login, key)}: {err}")
                continue
            if state == "Registered":
                continue
            if state == "Registering":
                found.problems.append(
                    f"resource provider {namespace} is still registering in {_where(login, key)}: wait until "
                    f"`az provider show --namespace {namespace} --subscription {sub} --query registrationState` says Registered"
                )
            else:
                found.problems.append(
                    f"resource provider {namespace} is {state or 'not registered'} in {_where(login, key)}, which the stack "
                    f"needs: `az provider register --namespace {namespace} --subscription {sub} --wait`"
                )
    for type_ in needs.unmapped:
        found.unchecked.append(f"the resource provider for {type_}: preflight does not know its namespace")
    return found


# What the deployer needs per subscription, by built-in role name (their IDs, the same in every
# tenant, come from components/roles.py).
ASSIGNS_ROLES = frozenset({"Owner", "User Access Administrator", "Role Based Access Control Administrator"})
CREATES_RESOURCES = frozenset({"Owner", "Contributor"})


def _builtin_role_names() -> dict[str, str]:
    """role definition GUID -> built-in role name."""
    from components.roles import BUILTIN_ROLES

    return {guid.lower(): name for name, guid in BUILTIN_ROLES.items()}


def role_assignments(subscription: str, object_id: str) -> list[dict]:
    """The principal's role assignments that reach the subscription, its groups' included.

    ARM's `assignedTo('<object id>')` filter (what `az role assignment list --include-groups`
    sends) through `az rest`, which takes the token for the URL's subscription: no Microsoft
    Graph lookup, so a service principal without directory rights gets an answer too.
    """
    url = (
        f"/subscriptions/{subscription}/providers/Microsoft.Authorization/roleAssignments"
        f"?api-version=2022-04-01&$filter=assignedTo('{object_id}')"
    )
    items: list[dict] = []
    for _ in range(50):
        page = az("rest", "--method", "get", "--url", url)
        if not isinstance(page, Mapping) or not isinstance(page.get("value"), list):
            raise AzError("`az rest` (role assignments) answered no `value` list")
        items.extend(page["value"])
        url = page.get("nextLink")
        if not url:
            break
    return items


def _applies_to_subscription(scope: str, subscription: str) -> bool:
    scope = scope.rstrip("/").lower()
    return scope in ("", f"/subscriptions/{subscription}".lower()) or scope.startswith(
        "/providers/microsoft.management/managementgroups/"
    )


def check_rbac(needs: Needs, login: Login) -> Findings:
    found = Findings()
    for key in sorted(needs.resource_subscriptions):
        sub = _subscription(login, key)
        assigns = key in needs.role_assignment_subscriptions
        try:
            oid = token_object_id(sub)
            items = role_assignments(sub, oid)
        except AzError as err:
            found.unchecked.append(f"your roles in {_where(login, key)}: {err}")
            continue
        names = _builtin_role_names()
        held: set[str] = set()
        assigns_freely = False  # an assigning role without a condition
        custom: set[str] = set()
        conditioned: set[str] = set()
        for item in items:
            props = item.get("properties") or {}
            if not _applies_to_subscription(str(props.get("scope", "")), sub):
                continue
            role = str(props.get("roleDefinitionId", "")).rsplit("/", 1)[-1].lower()
            if role in names:
                held.add(names[role])
                if names[role] in ASSIGNS_ROLES:
                    if props.get("condition"):
                        conditioned.add(names[role])
                    else:
                        assigns_freely = True
            elif role:
                custom.add(role)
        can_create = bool(held & CREATES_RESOURCES)
        can_assign = bool(held & ASSIGNS_ROLES)
        missing = []
        if not can_create:
            missing.append("create resources (Owner or Contributor)")
        if assigns and not can_assign:
            missing.append("create role assignments (Owner, User Access Administrator or Role Based Access Control Administrator)")
        principal_type = "User" if login.user_type == "user" else "ServicePrincipal"
        who = _who(login, oid)
        if missing:
            grant = "Contributor" if not can_create else "Role Based Access Control Administrator"
            text = (
                f"{who} cannot {' or '.join(missing)} at {_where(login, key)} or above"
                + (" (found only " + ", ".join(sorted(held)) + ")" if held else "")
                + ": the stack does both there, and without them `up` fails after the first resources exist. "
                f"An Owner grants it: `az role assignment create --assignee-object-id {oid} --assignee-principal-type "
                f"{principal_type} --role \"{grant}\" --scope /subscriptions/{sub}`"
            )
            if custom:
                found.unchecked.append(text + f" (custom role(s) {', '.join(sorted(custom))} not evaluated: they may grant it)")
            else:
                found.problems.append(text)
        elif assigns and not assigns_freely:
            found.unchecked.append(
                f"whether {who} may create the stack's role assignments at {_where(login, key)}: "
                f"{', '.join(sorted(conditioned))} is held under a condition preflight does not evaluate "
                "(the roles the stack assigns are in components/roles.py)"
            )
    return found


def check_quota(needs: Needs, login: Login) -> Findings:
    found = Findings()
    if not needs.pools:
        return found
    loc, sub = needs.location, login.subscription
    sizes: dict[str, tuple[str, int]] = {}  # vm size -> (family, vCPUs)
    for vm_size in sorted({p.vm_size for p in needs.pools}):
        pools = [p for p in needs.pools if p.vm_size == vm_size]
        keys = ", ".join(f"{PROJECT}:{p.key}" for p in pools)
        try:
            skus = az("vm", "list-skus", "--location", loc, "--size", vm_size, "--resource-type", "virtualMachines", subscription=sub)
        except AzError as err:
            found.unchecked.append(f"VM size {vm_size} in {loc}: {err}")
            continue
        sku = next((s for s in skus or [] if str(s.get("name", "")).lower() == vm_size.lower()), None)
        if sku is None:
            found.problems.append(
                f"VM size {vm_size} ({keys}) is not offered in {loc}: choose one that is "
                f"(`az vm list-skus --location {loc} --resource-type virtualMachines --output table`)"
            )
            continue
        for restriction in sku.get("restrictions") or []:
            reason = restriction.get("reasonCode", "restricted")
            if restriction.get("type") == "Location":
                found.problems.append(
                    f"VM size {vm_size} ({keys}) is restricted in {loc} for subscription {sub} ({reason}): choose another "
                    f"size or region, or ask Azure support to lift it"
                )
            elif restriction.get("type") == "Zone":
                zones = set((restriction.get("restrictionInfo") or {}).get("zones") or [])
                for pool in pools:
                    if zones & set(pool.zones):
                        found.problems.append(
                            f"VM size {vm_size} is restricted in zone(s) {', '.join(sorted(zones & set(pool.zones)))} of {loc} "
                            f"({reason}), which {PROJECT}:{pool.key}.zones asks for: drop those zones or choose another size"
                        )
        caps = {c.get("name"): c.get("value") for c in sku.get("capabilities") or []}
        try:
            sizes[vm_size] = (str(sku["family"]), int(caps["vCPUs"]))
        except (KeyError, TypeError, ValueError):
            found.unchecked.append(f"the vCPU quota for {vm_size}: `az vm list-skus` gave no family or vCPUs")
    if not sizes:
        return found
    try:
        usages = az("vm", "list-usage", "--location", loc, subscription=sub)
        usage = {u["name"]["value"]: (int(u["currentValue"]), int(u["limit"]), u["name"].get("localizedValue", "")) for u in usages}
    except (AzError, KeyError, TypeError, ValueError) as err:
        found.unchecked.append(f"the vCPU quota in {loc}: {err if isinstance(err, AzError) else '`az vm list-usage` answered an unexpected shape'}")
        return found
    need: dict[str, int] = {}
    parts: dict[str, list[str]] = {}
    for pool in needs.pools:
        if pool.vm_size not in sizes:
            continue
        family, vcpus = sizes[pool.vm_size]
        for bucket in (family, "cores"):
            need[bucket] = need.get(bucket, 0) + pool.nodes * vcpus
            parts.setdefault(bucket, []).append(f"{PROJECT}:{pool.key} {pool.nodes} x {pool.vm_size} ({vcpus} vCPUs)")
    for bucket, wanted in sorted(need.items()):
        if bucket not in usage:
            found.unchecked.append(f"the vCPU quota for {bucket} in {loc}: `az vm list-usage` does not list it")
            continue
        current, limit, label = usage[bucket]
        if current + wanted > limit:
            found.problems.append(
                f"{label or bucket} in {loc}: the pools need up to {wanted} ({'; '.join(parts[bucket])}), {current} of the "
                f"limit {limit} are in use: raise it to at least {current + wanted} (`az quota update --resource-name {bucket} "
                f"--scope /subscriptions/{sub}/providers/Microsoft.Compute/locations/{loc} --limit-object value={current + wanted} "
                f"--resource-type dedicated`, or the portal's Quotas page), or shrink the pools"
            )
    return found


def check_postgres(needs: Needs, login: Login) -> Findings:
    found = Findings()
    if not needs.postgres:
        return found
    loc = needs.location
    what = f"PostgreSQL flexible server {APP_POSTGRES_VERSION} ({APP_POSTGRES_EDITION} {APP_POSTGRES_SKU}, the reference app's)"
    fix = "choose a region that offers it (`aks-platform:location`), or switch the app variants off (addons.aso/kro/crossplane)"
    try:
        answer = az("postgres", "flexible-server", "list-skus", "--location", loc, subscription=login.subscription)
    except AzError as err:
        found.unchecked.append(f"{what} in {loc}: {err}")
        return found
    capabilities = answer.get("value", []) if isinstance(answer, Mapping) else answer or []
    reasons = [str(c["reason"]) for c in capabilities if isinstance(c, Mapping) and c.get("reason")]
    restricted = any(
        f.get("name") == "OfferRestricted" and f.get("status") == "Enabled"
        for c in capabilities if isinstance(c, Mapping) for f in c.get("supportedFeatures") or []
    ) or any(isinstance(c, Mapping) and c.get("restricted") == "Enabled" for c in capabilities)
    usable = lambda item: str(item.get("status") or "Available") != "Disabled"  # noqa: E731
    versions = {
        str(v.get("name")) for c in capabilities if isinstance(c, Mapping) for v in c.get("supportedServerVersions") or [] if usable(v)
    }
    skus = {
        str(s.get("name"))
        for c in capabilities if isinstance(c, Mapping)
        for e in c.get("supportedServerEditions") or [] if e.get("name") == APP_POSTGRES_EDITION and usable(e)
        for s in e.get("supportedServerSkus") or [] if usable(s)
    }
    if restricted or not capabilities:
        found.problems.append(
            f"{what} is not offered to subscription {login.subscription} in {loc}"
            + (f" ({'; '.join(reasons)})" if reasons else "") + f": {fix}"
        )
    elif APP_POSTGRES_VERSION not in versions or APP_POSTGRES_SKU not in skus:
        lacking = [x for x, ok in ((f"version {APP_POSTGRES_VERSION}", APP_POSTGRES_VERSION in versions), (APP_POSTGRES_SKU, APP_POSTGRES_SKU in skus)) if not ok]
        found.problems.append(
            f"{what}: {loc} does not offer {' or '.join(lacking)}" + (f" ({'; '.join(reasons)})" if reasons else "") + f": {fix}"
        )
    return found

ADMIN_GROUPS_KEY = f"{PROJECT}:cluster.adminGroupObjectIds"
# How the Azure CLI reports Microsoft Graph's 403 (Authorization_RequestDenied): it prints the
# error's message only (azure-cli role/_msgrpah/_graph_client.py raises GraphError with
# error.message; Azure/azure-cli#27934 shows the 403 body).
GRAPH_DENIED = ("Insufficient privileges", "Authorization_RequestDenied", "Forbidden")
FRESH_TOKEN = (
    "a membership only counts in a token issued after it was added: sign in again "
    "(`az logout && az login`; in CI, a new job logs in anew)"
)


def check_cluster_admin(needs: Needs, login: Login) -> Findings:
    """With local accounts off, is the deployer in one of cluster.adminGroupObjectIds?

    `az ad group member check` posts Microsoft Graph's directoryObject checkMemberGroups, which
    is transitive (nested groups count), and answers `{"value": true|false}`
    (azure-cli role/custom.py check_group_membership). A group ID that does not exist answers
    false as well. The group ID is sent lower-case: the CLI compares it with Graph's answer as
    a string.
    """
    found = Findings()
    if not needs.admin_groups:
        return found
    groups = ", ".join(needs.admin_groups)
    try:
        oid = token_object_id(login.subscription)
    except AzError as err:
        found.unchecked.append(f"whether you are in {ADMIN_GROUPS_KEY} ({groups}): {err}")
        return found
    who = _who(login, oid)
    errors: list[str] = []
    for group in needs.admin_groups:
        try:
            answer = az("ad", "group", "member", "check", "--group", group.lower(), "--member-id", oid)
        except AzError as err:
            errors.append(str(err))
            continue
        value = answer.get("value") if isinstance(answer, Mapping) else None
        if value is True:
            return found
        if value is not False:
            errors.append(f"`az ad group member check --group {group}` answered no true/false `value`")
    if errors:
        denied = any(marker.lower() in e.lower() for e in errors for marker in GRAPH_DENIED)
        why = (
            "Microsoft Graph refused to answer (a service principal needs an application permission such as "
            "Directory.Read.All to read group memberships)" if denied else "; ".join(errors)
        )
        found.unchecked.append(
            f"whether {who} is a member of a group in {ADMIN_GROUPS_KEY} ({groups}): {why}. Verify it by hand, "
            f"as someone who may read the directory: `az ad group member check --group {needs.admin_groups[0]} "
            f"--member-id {oid}` must answer true for one of the groups (add it with `az ad group member add "
            f"--group {needs.admin_groups[0]} --member-id {oid}`; {FRESH_TOKEN}); otherwise `up` creates the "
            "cluster and then fails with Forbidden at its first Kubernetes call"
        )
        return found
    found.problems.append(
        f"{who} is not a member of any group in {ADMIN_GROUPS_KEY} ({groups}), directly or through nested groups: "
        "with cluster.localAccounts false those groups' members are the cluster's only administrators, so `up` "
        "would create the cluster and then fail with Forbidden at its first Kubernetes call. An owner of the group "
        f"or an Entra administrator adds it: `az ad group member add --group {needs.admin_groups[0]} --member-id {oid}`; "
        f"then {FRESH_TOKEN}. If you are sure it is a member, check that the IDs name your groups "
        "(`az ad group show --group <id> --query displayName`)"
    )
    return found


TEAM_DOC = 'docs/operations.md, "Running it as a team"'


def check_team(needs: Needs, login: Login) -> Findings:
    """A person deploying: remind them that CI may deploy the same stack (not an error).

    Which stacks CI deploys is the repository variable DEPLOY_STACKS (stacks.yml), which is
    not readable from a laptop, so this is a warning for every stack a person runs.
    """
    found = Findings()
    if login.user_type != "user":
        return found
    local = os.environ.get("PULUMI_BACKEND_URL", "").startswith("file://")
    found.warnings.append(
        f"you are signed in as a person ({login.user_name}); if CI deploys stack {needs.stack} too (the repository "
        "variable DEPLOY_STACKS, which preflight cannot read), local and CI deployments of one stack must share a "
        + (
            "backend, and yours is a local file backend that CI cannot see: choose a shared one before the first `up`"
            if local else "backend: use the one CI uses (PULUMI_BACKEND_URL), and deploy from here only what is pushed"
        )
        + f" ({TEAM_DOC})"
    )
    return found


AZURE_CHECKS: dict[str, Callable[[Needs, Login], Findings]] = {
    "providers": check_providers,
    "rbac": check_rbac,
    "quota": check_quota,
    "postgres": check_postgres,
    "admins": check_cluster_admin,
    "team": check_team,
}


def run_azure_checks(needs: Needs, login: Login, skip: frozenset[str] = frozenset()) -> Findings:
    """The Azure checks side by side (each az call takes a second or more)."""
    total = Findings()
    names = [n for n in AZURE_CHECKS if n not in skip]
    with ThreadPoolExecutor(max_workers=len(names) or 1) as pool:
        results = list(pool.map(lambda n: AZURE_CHECKS[n](needs, login), names))
    for result in results:
        total.problems += result.problems
        total.unchecked += result.unchecked
        total.warnings += result.warnings
    total.unchecked += [f"{n}: skipped (PREFLIGHT_SKIP)" for n in AZURE_CHECKS if n in skip]
    return total


# --- The run --------------------------------------------------------------------------------


def main(stack: str, root: Path = ROOT) -> int:
    problems: list[str] = []
    unchecked: list[str] = []
    warnings: list[str] = []
    skip = frozenset(s.strip() for s in os.environ.get("PREFLIGHT_SKIP", "").split(",") if s.strip())
    stack_file = root / f"Pulumi.{stack}.yaml"
    if not stack_file.is_file():
        problems.append(f"no stack file {stack_file.name}: choose STACK= one of "
                        + ", ".join(sorted(p.name[7:-5] for p in root.glob("Pulumi.*.yaml"))))
    if sys.version_info < (3, 11):
        problems.append(f"Python 3.11+ is required (found {sys.version.split()[0]})")
    if shutil.which("pulumi") is None:
        problems.append("the Pulumi CLI is missing: install it (https://www.pulumi.com/docs/iac/download-install/)")
    account = None
    if shutil.which("az") is None:
        problems.append("the Azure CLI is missing: install it (https://learn.microsoft.com/cli/azure/install-azure-cli)")
        unchecked.append("the Azure checks (" + ", ".join(AZURE_CHECKS) + "): no Azure CLI")
    else:
        try:
            account = az("account", "show")
        except AzError:
            problems.append("the Azure CLI is not logged in: run `az login` (and `az account set --subscription <id>`)")
            unchecked.append("the Azure checks (" + ", ".join(AZURE_CHECKS) + "): not logged in")
    if stack_file.is_file():
        text = stack_file.read_text()
        if needs_kubelogin(text) and shutil.which("kubelogin") is None:
            problems.append(
                f"stack {stack} disables local accounts, so the Kubernetes provider authenticates through kubelogin: "
                "install it (`az aks install-cli` or https://azure.github.io/kubelogin/install.html)"
            )
        try:
            import yaml
        except ImportError:
            unchecked.append("the stack file's values and the Azure checks: PyYAML is missing (run under the venv: `make preflight`)")
        else:
            doc = yaml.safe_load(text) or {}
            if "examples" in skip:
                unchecked.append("examples: skipped (PREFLIGHT_SKIP)")
            else:
                problems += check_examples(doc, stack)
            if account is not None:
                azure = _azure(stack, root, account, skip)
                problems += azure.problems
                unchecked += azure.unchecked
                warnings += azure.warnings
    for problem in problems:
        print(f"make up: {problem}", file=sys.stderr)
    for item in unchecked:
        print(f"make up: could not check {item}", file=sys.stderr)
    for item in warnings:
        print(f"make up: warning: {item}", file=sys.stderr)
    return 1 if problems else 0


def _azure(stack: str, root: Path, account: Any, skip: frozenset[str]) -> Findings:
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    from stacks.config import ConfigError

    try:
        needs = stack_needs(stack, root)
    except ConfigError as err:
        return Findings(problems=[f"stack {stack}'s config is invalid:\n{err}"])
    try:
        login = login_from_account(account if isinstance(account, Mapping) else {}, needs)
    except AzError as err:
        return Findings(unchecked=[f"the Azure checks: {err}"])
    if needs.platform_subscription:
        # The stack pins its subscription (azure-native:subscriptionId): the signed-in account
        # must see it, or `up` fails at the first resource.
        try:
            az("account", "show", subscription=needs.platform_subscription)
        except AzError as err:
            return Findings(problems=[
                f"the signed-in account cannot use subscription {needs.platform_subscription} (azure-native:subscriptionId "
                f"of stack {stack}): sign in with an account that can (`az login --tenant <azure-native:tenantId>`), or "
                f"correct the key ({err})"
            ])
    return run_azure_checks(needs, login, skip)


def needs_kubelogin(stack_yaml: str) -> bool:
    """Local accounts are off unless the stack turns them on (the config default is false)."""
    if re.search(r"^\s*aks-platform:kind:\s*hybrid\s*$", stack_yaml, re.M):
        return False
    return not re.search(r"^\s*localAccounts:\s*true\s*$", stack_yaml, re.M)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "dev"))
