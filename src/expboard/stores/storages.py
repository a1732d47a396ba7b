"""The registry of file storages: an artifact root URI picks one (a folder path or ``file://``, ``s3://``)."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote, urlparse

from ..errors import ValidationError
from .files import FileStorage, LocalFiles

__all__ = ["is_storage_uri", "open_file_storage", "register_file_storage"]

StorageFactory = Callable[..., FileStorage]
_REGISTRY: dict[str, StorageFactory] = {}


def register_file_storage(scheme: str, factory: StorageFactory) -> None:
    """Make ``scheme://...`` artifact roots open ``factory(uri, **options)``."""
    _REGISTRY[scheme.lower()] = factory


def is_storage_uri(root: str | os.PathLike[str]) -> bool:
    """Whether ``root`` is a URI with a scheme (``s3://...``) rather than a folder path."""
    text = os.fspath(root)
    scheme = urlparse(text).scheme if isinstance(text, str) else ""
    return len(scheme) > 1 and "://" in text  # a Windows drive letter is not a scheme


def open_file_storage(root: str | os.PathLike[str] | FileStorage, **options: Any) -> FileStorage:
    """The storage for an artifact root: a folder path, ``file:///path`` or ``s3://bucket/prefix``.
    ``options`` go to the storage (for S3: ``endpoint_url``)."""
    if isinstance(root, FileStorage):
        return root
    if not is_storage_uri(root):
        return LocalFiles(root)
    text = os.fspath(root)
    assert isinstance(text, str)
    scheme = urlparse(text).scheme.lower()
    factory = _REGISTRY.get(scheme)
    if factory is None:
        known = ", ".join(f"{s}://" for s in sorted(_REGISTRY))
        raise ValidationError(f"unsupported artifact root {text!r}: use a folder path or one of {known}")
    return factory(text, **options)


def _open_folder(uri: str, **options: Any) -> FileStorage:
    parsed = urlparse(uri)
    if parsed.netloc not in ("", "localhost"):
        raise ValidationError(f"file:// artifact roots must be local paths such as file:///srv/expboard (got {uri!r})")
    return LocalFiles(unquote(parsed.path))


def _open_s3(uri: str, **options: Any) -> FileStorage:
    from .s3 import S3Files  # boto3 only when an s3:// root is used

    return S3Files(uri, **options)


register_file_storage("file", _open_folder)
register_file_storage("s3", _open_s3)
