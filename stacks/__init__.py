"""Stack config and the composition for each kind of environment."""

from __future__ import annotations

from typing import Any

from stacks.config import StackConfig


def build(cfg: StackConfig) -> dict[str, Any]:
    """Build the platform for the stack's kind; returns the stack outputs."""
    if cfg.kind == "aks":
        from stacks import native

        return native.build(cfg)
    from stacks import hybrid

    return hybrid.build(cfg)
