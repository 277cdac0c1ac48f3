"""AppPrincipalCredentials: the reference app's own service principal secret, in its namespaces.

On a cluster whose issuer Entra ID cannot reach (and that the platform cannot publish), the
app authenticates with a service principal of its own, never the controllers'. Its client
secret reaches the cluster only here: a Kubernetes Secret in each app namespace, created by
Pulumi from the `--secret` config value (never in Git, never a stack output), which the
app's Deployment reads by `secretKeyRef`.

The namespaces are created here too, bare: the Secret must exist before Argo CD syncs the app
(the Deployment would otherwise start without it), and Argo CD then applies the namespace
manifest from Git over it (labels, Pod Security). Pulumi's server-side apply owns only the
name, so the two never fight over a field. Deleting this component deletes the namespaces
and so everything in them: the app is removed with its credentials.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import pulumi
import pulumi_kubernetes as k8s

from components.gitops_bridge import APP_CREDENTIALS_KEY, APP_CREDENTIALS_SECRET


@dataclass
class AppPrincipalCredentialsArgs:
    namespaces: Sequence[str]
    client_secret: pulumi.Input[str]

    def __post_init__(self) -> None:
        if not self.namespaces or len(set(self.namespaces)) != len(self.namespaces):
            raise ValueError(f"AppPrincipalCredentialsArgs.namespaces: {list(self.namespaces)}: allowed: distinct namespace names, at least one")


class AppPrincipalCredentials(pulumi.ComponentResource):
    def __init__(self, name: str, args: AppPrincipalCredentialsArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("aks-platform:app_principal:AppPrincipalCredentials", name, None, opts)
        # Secret by what it is, whatever the caller passed.
        secret = pulumi.Output.secret(args.client_secret)
        self.secrets: list[k8s.core.v1.Secret] = []
        for namespace in args.namespaces:
            ns = k8s.core.v1.Namespace(
                f"{name}-{namespace}",
                metadata=k8s.meta.v1.ObjectMetaArgs(name=namespace),
                opts=pulumi.ResourceOptions(parent=self),
            )
            self.secrets.append(
                k8s.core.v1.Secret(
                    f"{name}-{namespace}-secret",
                    metadata=k8s.meta.v1.ObjectMetaArgs(
                        name=APP_CREDENTIALS_SECRET,
                        namespace=ns.metadata.name,
                        labels={"app.kubernetes.io/part-of": "aks-platform"},
                    ),
                    type="Opaque",
                    string_data=secret.apply(lambda value: {APP_CREDENTIALS_KEY: value}),
                    opts=pulumi.ResourceOptions(parent=self),
                )
            )
        self.register_outputs({})
