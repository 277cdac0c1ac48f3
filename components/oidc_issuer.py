"""PublishedIssuer: a service-account issuer that Entra ID can fetch, for a cluster you create.

Workload identity needs only two public documents at the URL the API server names as
`--service-account-issuer` (Azure Workload Identity, "Self-Managed Clusters > OpenID Connect
Issuer": https://azure.github.io/azure-workload-identity/docs/installation/self-managed-clusters/oidc-issuer.html):

* ``<issuer>/.well-known/openid-configuration``, the discovery document, and
* ``<issuer>/openid/v1/jwks``, the public signing key(s), each with the ``kid`` the API
  server writes into the tokens' header.

This component publishes both in Azure Blob storage: a storage account of its own whose
only container is readable anonymously per blob (no listing), holding exactly those two
blobs. Every other storage account keeps public access off; the guardrail
``policy.rules.storage_private`` knows exactly this exception (names below).

The issuer URL is a pure function of the public key: the account is named
``oidc`` + the first 20 hex digits of SHA-256 over the key's DER encoding. So it is known
the moment the key pair exists, before the cluster (``scripts/kind_cluster.py`` writes the
same URL into the kind config), globally unique without a random suffix to carry around,
and a new key pair (a new cluster identity) gets a new issuer, which is exactly when the
federations must change anyway. Public Azure cloud only (``blob.core.windows.net``).

Not modelled: key rotation with two keys published side by side (the JWKS takes a list;
one key is what `make kind` creates).
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass, field
from typing import Mapping, Optional

import pulumi
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from pulumi_azure_native import storage

# Shared with policy/rules.py (which imports nothing from here; a test holds them equal).
ACCOUNT_PREFIX = "oidc"
ACCOUNT_HASH_DIGITS = 20  # "oidc" + 20 = 24, Azure's maximum storage account name length
CONTAINER = "oidc"
DISCOVERY_PATH = ".well-known/openid-configuration"
JWKS_PATH = "openid/v1/jwks"
PUBLISHED_BLOBS = (DISCOVERY_PATH, JWKS_PATH)
BLOB_ENDPOINT_SUFFIX = "blob.core.windows.net"
# Tag that marks the account as the issuer's (read by the guardrail together with the name).
PURPOSE_TAG = "aks-platform-purpose"
PURPOSE = "oidc-issuer"
MIN_RSA_BITS = 2048


class InvalidPublicKey(ValueError):
    pass


def load_public_key(pem: str | bytes) -> rsa.RSAPublicKey:
    """The RSA public key in a PEM document (SubjectPublicKeyInfo), or InvalidPublicKey."""
    data = pem.encode() if isinstance(pem, str) else pem
    try:
        key = serialization.load_pem_public_key(data)
    except ValueError as err:
        raise InvalidPublicKey(f"not a PEM public key ({err})") from None
    if not isinstance(key, rsa.RSAPublicKey):
        raise InvalidPublicKey(f"a {type(key).__name__}; allowed: an RSA public key (RS256)")
    if key.key_size < MIN_RSA_BITS:
        raise InvalidPublicKey(f"an RSA key of {key.key_size} bits; allowed: at least {MIN_RSA_BITS}")
    return key


def _der(key: rsa.RSAPublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def key_id(key: rsa.RSAPublicKey) -> str:
    """The `kid` kube-apiserver puts in the tokens it signs with this key.

    kubernetes/kubernetes pkg/serviceaccount/jwt.go, keyIDFromPublicKey: unpadded base64url
    of SHA-256 over the PKIX (SubjectPublicKeyInfo) DER encoding of the public key.
    """
    return base64.urlsafe_b64encode(hashlib.sha256(_der(key)).digest()).rstrip(b"=").decode()


def storage_account_name(public_key_pem: str | bytes) -> str:
    key = load_public_key(public_key_pem)
    return ACCOUNT_PREFIX + hashlib.sha256(_der(key)).hexdigest()[:ACCOUNT_HASH_DIGITS]


def issuer_url(public_key_pem: str | bytes) -> str:
    """The issuer URL for this key: the `iss` of every token, the federations' issuer.

    No trailing slash: Entra fetches `<issuer>/.well-known/openid-configuration` and the
    federated credentials must match `iss` exactly.
    """
    return f"https://{storage_account_name(public_key_pem)}.{BLOB_ENDPOINT_SUFFIX}/{CONTAINER}"


def _b64url_uint(value: int) -> str:
    raw = value.to_bytes((value.bit_length() + 7) // 8, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def jwks_document(public_key_pem: str | bytes) -> str:
    """The JSON Web Key Set (RFC 7517) with the one signing key, as kube-apiserver serves it."""
    key = load_public_key(public_key_pem)
    numbers = key.public_numbers()
    jwk = {
        "use": "sig",
        "kty": "RSA",
        "kid": key_id(key),
        "alg": "RS256",
        "n": _b64url_uint(numbers.n),
        "e": _b64url_uint(numbers.e),
    }
    return json.dumps({"keys": [jwk]}, indent=2, sort_keys=True) + "\n"


def discovery_document(issuer: str) -> str:
    """The minimal OpenID Connect discovery document Entra ID reads (OIDC Discovery 1.0 §3)."""
    doc = {
        "issuer": issuer,
        "jwks_uri": f"{issuer}/{JWKS_PATH}",
        "response_types_supported": ["id_token"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
    }
    return json.dumps(doc, indent=2, sort_keys=True) + "\n"


@dataclass
class PublishedIssuerArgs:
    # The PEM public key the API server verifies (and, with its private half, signs) tokens with.
    public_key_pem: str
    resource_group_name: pulumi.Input[str]
    location: pulumi.Input[str]
    tags: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # Raises before the component registers anything.
        load_public_key(self.public_key_pem)


class PublishedIssuer(pulumi.ComponentResource):
    """The discovery document and JWKS, anonymously readable and nothing else."""

    # Resolves only once the account, the container and both documents exist: whatever is
    # federated to the issuer takes it as input, so it is created after the documents and,
    # on `destroy`, deleted before them (Entra ID fetches them at every token exchange).
    issuer_url: pulumi.Output[str]
    storage_account_name: str
    key_id: str
    # The resources that publish the issuer, for callers that must outlive none of them.
    publication: list[pulumi.Resource]

    def __init__(self, name: str, args: PublishedIssuerArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("aks-platform:oidc_issuer:PublishedIssuer", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.storage_account_name = storage_account_name(args.public_key_pem)
        url = issuer_url(args.public_key_pem)
        self.key_id = key_id(load_public_key(args.public_key_pem))

        account = storage.StorageAccount(
            f"{name}-account",
            account_name=self.storage_account_name,
            resource_group_name=args.resource_group_name,
            location=args.location,
            kind=storage.Kind.STORAGE_V2,
            sku=storage.SkuArgs(name=storage.SkuName.STANDARD_LRS),
            minimum_tls_version=storage.MinimumTlsVersion.TLS1_2,
            enable_https_traffic_only=True,
            # The one exception to "no public access": Entra ID fetches both documents
            # anonymously. Only the container below is public, per blob, without listing.
            allow_blob_public_access=True,
            # pulumi-azure-native's Blob resource uploads with the account key
            # (pulumi/pulumi-azure-native#2015, #2948), so shared keys stay on for this
            # account, which holds nothing but the two public documents. Writing them is
            # as powerful as editing the federated credentials: both need rights on the
            # platform resource group.
            allow_shared_key_access=True,
            allow_cross_tenant_replication=False,
            is_hns_enabled=False,
            public_network_access=storage.PublicNetworkAccess.ENABLED,
            tags={**args.tags, PURPOSE_TAG: PURPOSE},
            opts=child,
        )
        # The names are known now (derived from the key), so the container and blobs take
        # them as plain values, which the guardrail can read even in a first preview; the
        # dependencies keep the order.
        container = storage.BlobContainer(
            f"{name}-container",
            account_name=self.storage_account_name,
            container_name=CONTAINER,
            resource_group_name=args.resource_group_name,
            # "Blob": anonymous read of a blob by its name; "Container" would also list it.
            public_access=storage.PublicAccess.BLOB,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[account]),
        )
        documents = {
            DISCOVERY_PATH: discovery_document(url),
            JWKS_PATH: jwks_document(args.public_key_pem),
        }
        self.blobs = [
            storage.Blob(
                f"{name}-{'discovery' if path == DISCOVERY_PATH else 'jwks'}",
                account_name=self.storage_account_name,
                container_name=CONTAINER,
                resource_group_name=args.resource_group_name,
                blob_name=path,
                type=storage.BlobType.BLOCK,
                content_type="application/json",
                source=pulumi.StringAsset(text),
                opts=pulumi.ResourceOptions(parent=self, depends_on=[container]),
            )
            for path, text in documents.items()
        ]
        self.documents = documents
        self.publication = [account, container, *self.blobs]
        # From the URNs, not the ids: a URN resolves when the engine reports the resource
        # created or updated, and is known in a preview too, so the federations' issuer stays
        # a known value there (policy and reviewers read it) while carrying the dependency.
        self.issuer_url = pulumi.Output.all(*(r.urn for r in self.publication)).apply(lambda _: url)
        self.register_outputs(
            {"issuer_url": self.issuer_url, "storage_account_name": self.storage_account_name, "key_id": self.key_id}
        )
