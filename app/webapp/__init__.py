"""Reference app: upload files to Azure Blob storage, keep their metadata in PostgreSQL."""

from .app import create_app

__all__ = ["create_app"]
