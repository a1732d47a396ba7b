"""Stores: where run history lives. A tracking URI picks one through :func:`open_store`."""

from __future__ import annotations

import os
from urllib.parse import urlparse

from ..errors import ValidationError
from .base import UNSET, MetricChunk, Store

__all__ = ["UNSET", "MetricChunk", "Store", "open_store"]


def open_store(
    tracking_uri: str, artifact_root: str | os.PathLike[str] | None = None, token: str | None = None
) -> Store:
    """The store for a tracking URI: ``sqlite:///...`` and ``postgresql://...`` (files under
    ``artifact_root``), or ``http(s)://...`` (a tracking server)."""
    scheme = urlparse(tracking_uri).scheme
    if scheme in ("sqlite", "postgresql", "postgres", "postgresql+psycopg"):
        from .sql import SqlStore

        if artifact_root is None:
            raise ValidationError(f"a {scheme} tracking URI needs an artifact root folder for run files")
        return SqlStore(tracking_uri, artifact_root)
    if scheme in ("http", "https"):
        from .http import HttpStore

        return HttpStore(tracking_uri, token=token)
    raise ValidationError(
        f"unsupported tracking URI {tracking_uri!r}: use sqlite:///path/expboard.db, postgresql://... "
        "or http(s)://host:port of an expboard server"
    )
