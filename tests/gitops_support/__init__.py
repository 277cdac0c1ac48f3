"""Helpers for validating Kubernetes manifests against the pinned upstream CRDs in ../shared/upstream."""
