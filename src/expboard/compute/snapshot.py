"""Snapshots of a source folder: one zip archive stored with the run as ``snapshot.zip``.

Left out of a snapshot:

- what the first of ``.expboardignore``, ``.amlignore`` and ``.gitignore`` found at the top of the source
  folder lists, and only that one (as in Azure ML, an ``.amlignore`` makes the ``.gitignore`` unused);
  gitignore syntax, the simple part: ``#`` comments, ``!`` negation, ``*``, ``?``, ``**``, ``[...]``, a trailing
  ``/`` for folders only, a ``/`` inside the pattern anchoring it to the source folder;
- always: ``.git/``, ``.expboard/``, ``__pycache__/``, and the top-level ``logs/`` and ``outputs/`` folders,
  which belong to the run (stale files there would be uploaded as if the run had written them).

The snapshot may hold at most ``EXPBOARD_SNAPSHOT_MAX_MB`` megabytes of files (300 by default); past that
:func:`build_snapshot` raises :class:`~expboard.errors.PayloadTooLargeError` before any run is created.
"""

from __future__ import annotations

import io
import os
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path

from .. import settings
from ..errors import PayloadTooLargeError, ValidationError

__all__ = [
    "ENV_SNAPSHOT_MAX_MB",
    "SNAPSHOT_FILE",
    "IGNORE_FILES",
    "IgnoreRules",
    "Snapshot",
    "build_snapshot",
    "extract_snapshot",
    "snapshot_limit_bytes",
]

SNAPSHOT_FILE = "snapshot.zip"
ENV_SNAPSHOT_MAX_MB = settings.env("snapshot_max_mb")
IGNORE_FILES = (".expboardignore", ".amlignore", ".gitignore")  # the first one present is used
ALWAYS_IGNORED = (".git/", ".expboard/", "__pycache__/", "/logs/", "/outputs/")


def snapshot_limit_bytes(max_bytes: int | None = None) -> int:
    """The size limit: the argument, else ``EXPBOARD_SNAPSHOT_MAX_MB``, else 300 MB."""
    if max_bytes is not None:
        return int(max_bytes)
    return int(settings.get("snapshot_max_mb") * 1024 * 1024)


def _glob_to_regex(pattern: str) -> str:
    out = []
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("/**", i) and i + 3 == n:
            out.append("/.*")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif c == "*":
            out.append("[^/]*")
            i += 1
        elif c == "?":
            out.append("[^/]")
            i += 1
        elif c == "[":
            j = pattern.find("]", i + 2)
            if j == -1:
                out.append(re.escape(c))
                i += 1
            else:
                body = pattern[i + 1 : j]
                if body.startswith("!"):
                    body = "^" + body[1:]
                out.append(f"[{body}]")
                i = j + 1
        elif c == "\\" and i + 1 < n:
            out.append(re.escape(pattern[i + 1]))
            i += 2
        else:
            out.append(re.escape(c))
            i += 1
    return "".join(out)


@dataclass(frozen=True)
class _Rule:
    regex: re.Pattern[str]
    negate: bool
    dir_only: bool
    anchored: bool


class IgnoreRules:
    """Gitignore-style patterns; the last pattern that matches a path decides.

    >>> rules = IgnoreRules(["*.ckpt", "data/", "!keep.ckpt"])
    >>> rules.ignored("model.ckpt", is_dir=False), rules.ignored("keep.ckpt", is_dir=False)
    (True, False)
    >>> rules.ignored("data", is_dir=True), rules.ignored("src/data", is_dir=True)
    (True, True)
    """

    def __init__(self, patterns: list[str]) -> None:
        self.rules: list[_Rule] = []
        for line in patterns:
            line = line.rstrip("\n").rstrip("\r")
            if not line.strip() or line.startswith("#"):
                continue
            line = line.rstrip() if not line.endswith("\\ ") else line
            negate = line.startswith("!")
            if negate:
                line = line[1:]
            dir_only = line.endswith("/")
            line = line.rstrip("/")
            if not line:
                continue
            anchored = "/" in line
            line = line.lstrip("/")
            self.rules.append(_Rule(re.compile(_glob_to_regex(line) + r"\Z"), negate, dir_only, anchored))

    @classmethod
    def for_source(cls, source: Path) -> IgnoreRules:
        """The rules for a source folder: the first of :data:`IGNORE_FILES` present, plus the paths always
        left out."""
        patterns = list(ALWAYS_IGNORED)
        for name in IGNORE_FILES:
            f = source / name
            if f.is_file():
                patterns += f.read_text(encoding="utf-8", errors="replace").splitlines()
                break
        return cls(patterns)

    def ignored(self, rel_path: str, is_dir: bool) -> bool:
        result = False
        base = rel_path.rsplit("/", 1)[-1]
        for rule in self.rules:
            if rule.dir_only and not is_dir:
                continue
            subject = rel_path if rule.anchored else base
            if rule.regex.match(subject):
                result = not rule.negate
        return result


@dataclass(frozen=True)
class Snapshot:
    """A zipped source folder: ``data`` (the archive), ``files`` (how many), ``size`` (bytes before zipping)."""

    data: bytes
    files: int
    size: int


def build_snapshot(source: str | os.PathLike[str], max_bytes: int | None = None) -> Snapshot:
    """Zip the source folder, leaving out ignored paths. Raises PayloadTooLargeError past the size limit."""
    root = Path(source)
    if not root.is_dir():
        raise ValidationError(f"source_directory {str(root)!r} is not a folder")
    limit = snapshot_limit_bytes(max_bytes)
    rules = IgnoreRules.for_source(root)
    files: list[tuple[Path, str]] = []
    total = 0
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = Path(dirpath).relative_to(root).as_posix()
        prefix = "" if rel_dir == "." else rel_dir + "/"
        dirnames[:] = sorted(
            d
            for d in dirnames
            if not os.path.islink(os.path.join(dirpath, d)) and not rules.ignored(prefix + d, is_dir=True)
        )
        for fn in sorted(filenames):
            rel = prefix + fn
            if rules.ignored(rel, is_dir=False):
                continue
            path = Path(dirpath) / fn
            try:
                size = path.stat().st_size
            except OSError:  # a dangling symlink
                continue
            total += size
            if total > limit:
                raise PayloadTooLargeError(
                    f"the snapshot of {str(root)!r} is over the limit of {limit / 2**20:.3g} MB (reached at "
                    f"{rel!r}, after {len(files) + 1} files); list large files or folders (data, checkpoints) "
                    f"in {root / '.expboardignore'} (or .amlignore, .gitignore), move them out of the source "
                    f"folder, or raise the limit with {ENV_SNAPSHOT_MAX_MB}"
                )
            files.append((path, rel))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        for path, rel in files:
            zf.write(path, rel)
    return Snapshot(buf.getvalue(), len(files), total)


def extract_snapshot(data: bytes, dest: str | os.PathLike[str]) -> int:
    """Unpack a snapshot into ``dest`` (file modes kept); returns the number of files."""
    dest_path = Path(dest)
    count = 0
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        for info in zf.infolist():
            target = Path(zf.extract(info, dest_path))
            mode = (info.external_attr >> 16) & 0o777
            if mode and not info.is_dir():
                os.chmod(target, mode | 0o600)
            count += not info.is_dir()
    return count
