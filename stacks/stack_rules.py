"""The rules that span top-level keys, and what a hybrid stack's kubeconfig and secret contain.

Each rule names the top-level fields it reads (`@stack_rule("kind", "hybrid")`) and runs only
when every one of them is valid on its own, so a problem in one key never produces a second,
misleading message here. Paths are absolute key paths (aliases).
"""

from __future__ import annotations

import json
import typing
from types import SimpleNamespace
from typing import Annotated, Any, Callable, Iterable, Iterator, Mapping, Optional

import yaml
from pydantic import BaseModel, TypeAdapter, ValidationError

from components.oidc_issuer import PURPOSE_TAG
from stacks.config import ADDED_TAG_NAMES, PROJECT, StackConfig, TenantConfig, read_text_file, secret_fields
from stacks.problems import MISSING, Problem

Rule = Callable[[SimpleNamespace, "RuleContext"], Iterable[Problem]]
RULES: list[tuple[tuple[str, ...], Rule]] = []

# Azure allows at most 50 tag name-value pairs per resource
# (https://learn.microsoft.com/azure/azure-resource-manager/management/tag-resources#limitations).
MAX_TAGS = 50


class RuleContext:
    def __init__(self, raw: Mapping[str, Any], secret_keys: frozenset[str], failed: frozenset[str] = frozenset()):
        self.raw = raw
        self.secret_keys = secret_keys
        # Fields with a problem of their own (field names): a rule may still run without them.
        self.failed = failed


def stack_rule(*needs: str) -> Callable[[Rule], Rule]:
    unknown = set(needs) - set(StackConfig.model_fields)
    assert not unknown, f"stack_rule needs unknown fields {unknown}"

    def register(fn: Rule) -> Rule:
        RULES.append((needs, fn))
        return fn

    return register


_ADAPTERS: dict[int, tuple[Any, TypeAdapter]] = {}


def element_type(model: type[BaseModel], field: str, key: bool = False) -> Any:
    """The declared type of one element of a list field (tuple[X, ...]), or of a mapping field's keys or values."""
    annotation = model.model_fields[field].annotation
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) is dict:
        return args[0] if key else args[1]
    return args[0]


def valid(annotation: Any, value: Any) -> bool:
    """Whether `value` is valid for the declared `annotation` on its own."""
    # Keyed by identity, the annotation kept alive beside its adapter (so its id is never reused).
    cached = _ADAPTERS.get(id(annotation))
    if cached is None:
        cached = _ADAPTERS[id(annotation)] = (annotation, TypeAdapter(annotation))
    adapter = cached[1]
    try:
        adapter.validate_python(value)
    except ValidationError:
        return False
    return True


def check(values: Mapping[str, Any], failed: set[str], raw: Mapping[str, Any], secret_keys: frozenset[str]) -> list[Problem]:
    v = SimpleNamespace(**values)
    ctx = RuleContext(raw, secret_keys, frozenset(failed))
    problems: list[Problem] = []
    for needs, rule in RULES:
        if not any(n in failed for n in needs):
            problems.extend(rule(v, ctx))
    return problems


# --- kinds and secrets ----------------------------------------------------------------------


@stack_rule("kind")
def _sections_of_the_other_kind(v: SimpleNamespace, ctx: RuleContext) -> Iterator[Problem]:
    if v.kind == "hybrid" and ctx.raw.get("cluster") is not None:
        yield Problem(("cluster",), ctx.raw["cluster"], "nothing: kind 'hybrid' uses an existing cluster")
    if v.kind == "aks" and ctx.raw.get("hybrid") is not None:
        yield Problem(("hybrid",), ctx.raw["hybrid"], "nothing unless kind is 'hybrid'")


@stack_rule()
def _secrets_are_secret(v: SimpleNamespace, ctx: RuleContext) -> Iterator[Problem]:
    for alias in secret_fields():
        if alias in ctx.raw and alias not in ctx.secret_keys:
            yield Problem((alias,), ctx.raw[alias], f"a secret: set it with `pulumi config set --secret {PROJECT}:{alias}`")


@stack_rule("kind")
def _secrets_only_for_hybrid(v: SimpleNamespace, ctx: RuleContext) -> Iterator[Problem]:
    for alias in secret_fields():
        if alias in ctx.raw and alias in ctx.secret_keys and v.kind != "hybrid":
            yield Problem((alias,), ctx.raw[alias], "nothing unless kind is 'hybrid'")


# --- hybrid ---------------------------------------------------------------------------------


@stack_rule("kind", "hybrid", "kubeconfig")
def _hybrid_kubeconfig(v: SimpleNamespace, ctx: RuleContext) -> Iterator[Problem]:
    if v.kind != "hybrid" or v.hybrid is None:
        return
    path = v.hybrid.kubeconfig_path
    if (v.kubeconfig is None) == (path is None):
        yield Problem(
            ("hybrid", "kubeconfigPath"), path,
            f"exactly one of hybrid.kubeconfigPath or the secret {PROJECT}:kubeconfig "
            f"(`pulumi config set --secret {PROJECT}:kubeconfig < file`)",
        )
        return
    if v.kubeconfig is not None:
        where: tuple = ("kubeconfig",)
        text = v.kubeconfig.get_secret_value()
        given: Any = v.kubeconfig
    else:
        where, given = ("hybrid", "kubeconfigPath"), path
        text, problem = read_kubeconfig_file(path)
        if problem:
            yield Problem(where, given, problem)
            return
    yield from kubeconfig_problems(text, v.hybrid.context, where, given)


def read_kubeconfig_file(path: str) -> tuple[str, Optional[str]]:
    """The file's text, or why it cannot be read (never an exception)."""
    return read_text_file(path, "kubeconfig file")


def _entries(doc: Mapping[str, Any], section: str, body_key: str) -> tuple[dict[str, Mapping[str, Any]], Optional[str]]:
    """A kubeconfig list section (`contexts`, `clusters`, `users`) as name -> body, or why it is malformed.

    client-go refuses to load a kubeconfig whose entries are not `{name: <text>, <body_key>: {...}}`;
    the reason names the entry by index, never by its content.
    """
    entries = doc.get(section)
    if entries is None:
        return {}, None
    if not isinstance(entries, list):
        return {}, f"`{section}` is a {type(entries).__name__}, not a list"
    found: dict[str, Mapping[str, Any]] = {}
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict):
            return {}, f"{section}[{i}] is a {type(entry).__name__}, not a mapping {{name, {body_key}}}"
        name = entry.get("name")
        if not isinstance(name, str) or not name:
            return {}, f"{section}[{i}] has no name (a non-empty text)"
        body = entry.get(body_key)
        if body is None:
            body = {}
        if not isinstance(body, dict):
            return {}, f"{section}[{i}] has a {type(body).__name__} as its `{body_key}`, not a mapping"
        found[name] = body
    return found, None


def kubeconfig_problems(text: str, context: Optional[str], where: tuple, given: Any) -> Iterator[Problem]:
    """Whether `text` is a kubeconfig the Kubernetes provider can use with `context`.

    Never quotes the document: only its shape, and the names of its contexts and clusters.
    The chosen context must name a cluster with a server and a user that the document
    defines, as client-go's validation requires (k8s.io/client-go/tools/clientcmd/validation.go:
    validateContext, validateClusterInfo).
    """
    if not text.strip():
        yield Problem(
            where, given,
            "a kubeconfig document; this one is empty, and the Kubernetes provider would fall back to the machine's "
            "default kubeconfig (possibly another cluster)",
        )
        return
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        at = f" (line {mark.line + 1})" if mark is not None else ""
        yield Problem(where, given, f"a kubeconfig document (YAML); this is not YAML{at}")
        return
    shape = "a kubeconfig (kind: Config with clusters, contexts and users)"
    if not isinstance(doc, dict) or not isinstance(doc.get("contexts"), list) or not isinstance(doc.get("clusters"), list):
        found = f"a mapping with {len(doc)} keys" if isinstance(doc, dict) else f"a {type(doc).__name__}"
        if isinstance(doc, dict):
            present = [k for k in ("apiVersion", "kind", "clusters", "contexts", "users") if k in doc]
            found += f" ({', '.join(present)} among them)" if present else ", none of them a kubeconfig's"
        yield Problem(where, given, f"{shape}; found {found}")
        return
    sections = {}
    for section, body_key in (("contexts", "context"), ("clusters", "cluster"), ("users", "user")):
        sections[section], malformed = _entries(doc, section, body_key)
        if malformed:
            yield Problem(where, given, f"{shape}; in this one {malformed}")
            return
    contexts, clusters, users = sections["contexts"], sections["clusters"], sections["users"]
    names = ", ".join(sorted(contexts)) or "none"
    chosen = context or doc.get("current-context")
    if not chosen:
        yield Problem(
            ("hybrid", "context"), None,
            f"required: the kubeconfig sets no current-context; name one of its contexts: {names}",
        )
        return
    if not isinstance(chosen, str) or chosen not in contexts:
        key = ("hybrid", "context") if context else where
        shown = repr(chosen) if isinstance(chosen, str) else f"a {type(chosen).__name__} as current-context"
        yield Problem(key, context if context else given, f"a context the kubeconfig has ({names}); it has no {shown}")
        return
    cluster, user = contexts[chosen].get("cluster"), contexts[chosen].get("user")
    if not isinstance(cluster, str) or cluster not in clusters:
        named = repr(cluster) if isinstance(cluster, str) else "none" if cluster is None else f"a {type(cluster).__name__}"
        yield Problem(where, given, f"a kubeconfig whose context {chosen!r} names one of its clusters; it names {named}")
    elif not isinstance(clusters[cluster].get("server"), str) or not clusters[cluster]["server"]:
        yield Problem(where, given, f"a kubeconfig whose cluster {cluster!r} has a server URL; it has none")
    elif not isinstance(user, str) or user not in users:
        named = "none" if user is None else "an undefined one" if isinstance(user, str) else f"a {type(user).__name__}"
        yield Problem(
            where, given,
            f"a kubeconfig whose context {chosen!r} names one of its users (client-go refuses it otherwise); it names {named}",
        )


# The JSON `az ad sp create-for-rbac` prints (appId, password, tenant), or with --sdk-auth
# (clientId, clientSecret, ...): the secret is one field of it, not the document.
_AZ_SP_FIELDS = {"appId": "password", "clientId": "clientSecret"}


def client_secret_problem(secret: str) -> Optional[str]:
    if not secret.strip():
        return "a non-empty client secret (an empty one fails every Azure login of ASO and Crossplane)"
    if secret != secret.strip():
        return "the client secret without leading or trailing whitespace (Entra ID would refuse it)"
    try:
        doc = json.loads(secret)
    except ValueError:
        return None
    if isinstance(doc, dict):
        for id_field, secret_field in _AZ_SP_FIELDS.items():
            if secret_field in doc or id_field in doc:
                return (
                    f"the client secret alone: this is the JSON `az ad sp create-for-rbac` prints; set the secret to its "
                    f"`{secret_field}` field and hybrid.servicePrincipalClientId to its `{id_field}`"
                )
        return "the client secret alone, not a JSON document"
    return None


@stack_rule("kind", "hybrid", "service_principal_client_secret")
def _hybrid_identity(v: SimpleNamespace, ctx: RuleContext) -> Iterator[Problem]:
    if v.kind != "hybrid" or v.hybrid is None:
        return
    h, secret = v.hybrid, v.service_principal_client_secret
    if not h.workload_identity:
        if h.service_principal_client_id is None:
            yield Problem(
                ("hybrid", "servicePrincipalClientId"), None,
                "one way for the controllers to reach Azure: hybrid.oidcIssuerUrl (the cluster's public issuer), "
                "hybrid.serviceAccountPublicKeyPath (the platform publishes the issuer; `make kind`), or a service "
                f"principal: hybrid.servicePrincipalClientId and the secret {PROJECT}:servicePrincipalClientSecret",
            )
        elif secret is None:
            yield Problem(
                ("servicePrincipalClientSecret",), MISSING,
                f"with hybrid.servicePrincipalClientId: its client secret (`pulumi config set --secret {PROJECT}:servicePrincipalClientSecret`)",
            )
    elif secret is not None and h.service_principal_client_id is None:
        yield Problem(
            ("servicePrincipalClientSecret",), secret,
            "nothing with hybrid.oidcIssuerUrl or hybrid.serviceAccountPublicKeyPath (workload identity): a stray "
            f"client secret would sit in state unused (`pulumi config rm {PROJECT}:servicePrincipalClientSecret`)",
        )
    if secret is not None:
        problem = client_secret_problem(secret.get_secret_value())
        if problem:
            yield Problem(("servicePrincipalClientSecret",), secret, problem)


@stack_rule("kind", "hybrid", "app_service_principal_client_secret")
def _hybrid_app_principal(v: SimpleNamespace, ctx: RuleContext) -> Iterator[Problem]:
    if v.kind != "hybrid" or v.hybrid is None:
        return
    h, secret = v.hybrid, v.app_service_principal_client_secret
    has_ids = h.app_service_principal_client_id is not None
    if secret is not None and not has_ids:
        yield Problem(
            ("appServicePrincipalClientSecret",), secret,
            "only with hybrid.appServicePrincipalClientId and hybrid.appServicePrincipalObjectId (the app's own "
            "service principal, in service-principal mode)",
        )
    elif has_ids and secret is None and not h.workload_identity:
        yield Problem(
            ("appServicePrincipalClientSecret",), MISSING,
            f"the app's service principal complete: also appServicePrincipalClientSecret (`pulumi config set --secret "
            f"{PROJECT}:appServicePrincipalClientSecret`)",
        )
    if secret is not None:
        problem = client_secret_problem(secret.get_secret_value())
        if problem:
            yield Problem(("appServicePrincipalClientSecret",), secret, problem.replace("hybrid.servicePrincipalClientId", "hybrid.appServicePrincipalClientId"))


# A field's own constraints live in its metadata, beside the bare annotation.
_TENANT_NAME = Annotated[TenantConfig.model_fields["name"].annotation, *TenantConfig.model_fields["name"].metadata]


def _given_tenants(v: SimpleNamespace, ctx: RuleContext) -> list[tuple[int, Optional[str], list[tuple[int, str]]]]:
    """Each tenant as (index, name if valid, [(index, namespace)] of the valid namespaces).

    From the validated tenants, or, when some tenant has a problem of its own, from what is
    valid in the stack file: an invalid tenant does not hide a duplicate elsewhere.
    """
    if "tenants" not in ctx.failed:
        return [(i, t.name, list(enumerate(t.namespaces))) for i, t in enumerate(v.tenants)]
    given = ctx.raw.get("tenants")
    if not isinstance(given, list):
        return []
    name_type, namespace_type = _TENANT_NAME, element_type(TenantConfig, "namespaces")
    found = []
    for i, tenant in enumerate(given):
        if not isinstance(tenant, Mapping):
            continue
        name = tenant.get("name") if valid(name_type, tenant.get("name")) else None
        namespaces = tenant.get("namespaces")
        found.append((
            i, name,
            [(j, ns) for j, ns in enumerate(namespaces) if valid(namespace_type, ns)] if isinstance(namespaces, list) else [],
        ))
    return found


@stack_rule("kind", "hybrid")
def _tenants_need_workload_identity(v: SimpleNamespace, ctx: RuleContext) -> Iterator[Problem]:
    workload_identity = v.kind == "aks" or (v.hybrid is not None and v.hybrid.workload_identity)
    tenants = _given_tenants(v, ctx)
    if tenants and not workload_identity:
        yield Problem(
            ("tenants",), f"{len(tenants)} tenant(s)",
            "no tenants unless the controllers use workload identity (kind 'aks', or 'hybrid' with hybrid.oidcIssuerUrl or "
            "hybrid.serviceAccountPublicKeyPath): "
            "each tenant identity is federated to the controllers' service accounts",
        )


# --- tenants across each other --------------------------------------------------------------


@stack_rule()
def _tenants_distinct(v: SimpleNamespace, ctx: RuleContext) -> Iterator[Problem]:
    names: set[str] = set()
    owners: dict[str, tuple[int, Optional[str]]] = {}
    for i, name, namespaces in _given_tenants(v, ctx):
        if name is not None and name in names:
            yield Problem(("tenants", i, "name"), name, "a name no other tenant has")
        if name is not None:
            names.add(name)
        for j, ns in namespaces:
            owner = owners.get(ns)
            # The same tenant twice (a copied entry) is one problem: its name.
            if owner is not None and owner[0] != i and not (name is not None and owner[1] == name):
                who = repr(owner[1]) if owner[1] else f"tenants[{owner[0]}]"
                yield Problem(("tenants", i, "namespaces", j), ns, f"a namespace no other tenant has (tenant {who} has it)")
            owners.setdefault(ns, (i, name))


# --- Azure's rules for names and tags -------------------------------------------------------


@stack_rule("addons", "app_resource_groups")
def _aso_needs_a_scope(v: SimpleNamespace, ctx: RuleContext) -> Iterator[Problem]:
    if v.addons.aso.enabled and not v.app_resource_groups and not v.addons.aso.subscription_scope:
        yield Problem(
            ("appResourceGroups",), [],
            "at least one resource group for ASO to manage (or addons.aso.subscriptionScope: true to grant it the whole subscription)",
        )


# Azure limits storage account tag names to 128 characters (other resources: 512)
# (https://learn.microsoft.com/azure/azure-resource-manager/management/tag-resources#limitations).
MAX_STORAGE_TAG_NAME = 128


def _publishes_the_issuer(v: SimpleNamespace, ctx: RuleContext) -> bool:
    """Whether the stack creates the OIDC issuer's storage account (components/oidc_issuer.py)."""
    if {"kind", "hybrid"} & ctx.failed:
        return False
    return v.kind == "hybrid" and v.hybrid is not None and v.hybrid.service_account_public_key_path is not None


def _given_tags(v: SimpleNamespace, ctx: RuleContext) -> dict[str, Any]:
    """The tags, or, when one has a problem of its own, those whose name is valid (a bad name
    does not hide a case-duplicate elsewhere)."""
    if "tags" not in ctx.failed:
        return dict(v.tags)
    given = ctx.raw.get("tags")
    if not isinstance(given, Mapping):
        return {}
    name_type = element_type(StackConfig, "tags", key=True)
    return {name: value for name, value in given.items() if valid(name_type, name)}


@stack_rule()
def _tags(v: SimpleNamespace, ctx: RuleContext) -> Iterator[Problem]:
    # Azure tag names are case-insensitive: two names differing in case are one tag, and the
    # last write wins (https://learn.microsoft.com/azure/azure-resource-manager/management/tag-resources).
    tags = _given_tags(v, ctx)
    added = list(ADDED_TAG_NAMES)
    issuer = _publishes_the_issuer(v, ctx)
    if issuer:
        # The issuer's storage account carries one more tag (the guardrail reads it).
        added.append(PURPOSE_TAG)
    seen: dict[str, str] = {}
    for name in tags:
        lowered = name.lower()
        if lowered in added:
            where = " (on the OIDC issuer's storage account)" if lowered == PURPOSE_TAG else ""
            yield Problem(
                ("tags", name), tags[name],
                f"a tag name other than the platform's own {', '.join(added)}{where} (Azure compares names ignoring "
                "case, so this would silently replace the added tag)",
            )
        elif lowered in seen:
            yield Problem(("tags", name), tags[name], f"a name distinct from {seen[lowered]!r} ignoring case (Azure treats them as one tag)")
        elif issuer and len(name) > MAX_STORAGE_TAG_NAME:
            yield Problem(
                ("tags", name), tags[name],
                f"a tag name of at most {MAX_STORAGE_TAG_NAME} characters with hybrid.serviceAccountPublicKeyPath: the "
                "OIDC issuer's storage account carries every tag and Azure limits storage account tag names to 128",
            )
        seen.setdefault(lowered, name)
    total = len({n.lower() for n in tags} | set(added))
    if total > MAX_TAGS:
        yield Problem(
            ("tags",), f"{len(tags)} tags",
            f"at most {MAX_TAGS - len(added)} tags: Azure allows {MAX_TAGS} per resource and the platform adds "
            f"{len(added)} ({', '.join(added)}); Azure would refuse every resource",
        )


@stack_rule("environment", "existing_resource_group")
def _app_resource_groups(v: SimpleNamespace, ctx: RuleContext) -> Iterator[Problem]:
    # Resource group names are case-insensitive in Azure: `rg-App` and `rg-app` are one group.
    platform = (v.existing_resource_group or f"rg-{v.environment}-platform").lower()
    what = "existingResourceGroup" if v.existing_resource_group else "the platform's own group"
    if "app_resource_groups" not in ctx.failed:
        groups = list(enumerate(v.app_resource_groups))
    else:
        # One invalid name does not hide a duplicate among the valid ones.
        given = ctx.raw.get("appResourceGroups")
        name_type = element_type(StackConfig, "app_resource_groups")
        groups = [(i, g) for i, g in enumerate(given) if valid(name_type, g)] if isinstance(given, list) else []
    seen: dict[str, str] = {}
    for i, name in groups:
        lowered = name.lower()
        if lowered == platform:
            yield Problem(
                ("appResourceGroups", i), name,
                f"a group other than {what} ({platform}): ASO and Crossplane would get Contributor on the cluster's own group",
            )
        elif lowered in seen:
            yield Problem(("appResourceGroups", i), name, f"distinct resource group names ignoring case (Azure treats it as {seen[lowered]!r})")
        seen.setdefault(lowered, name)
