"""HTTP byte ranges for the server's download routes (run files, model files): one ``Range: bytes=start-[end]``
parsed into an offset and a length, and the headers of the answer once the file's size is known."""

from __future__ import annotations

import re

from ..errors import ValidationError

__all__ = ["INT64_MAX", "parse_range", "range_headers"]

INT64_MAX = 2**63 - 1
_RANGE_RE = re.compile(r"^bytes=(\d+)-(\d*)$")


def parse_range(header: str) -> tuple[int, int | None]:
    """``(offset, length)`` of a ``bytes=start-[end]`` header (length None: to the end of the file)."""
    m = _RANGE_RE.match(header.strip())
    if not m:
        raise ValidationError(f"unsupported Range {header!r}: use one range 'bytes=start-[end]'")
    offset = int(m.group(1))
    length = int(m.group(2)) - offset + 1 if m.group(2) else None
    if length is not None and length < 0:
        raise ValidationError(f"invalid Range {header!r}")
    if offset > INT64_MAX or (length is not None and length > INT64_MAX):
        raise ValidationError(f"invalid Range {header!r}: positions go up to {INT64_MAX}")
    return offset, length


def range_headers(size: int, offset: int, length: int | None, partial: bool) -> tuple[int, int, dict[str, str]]:
    """``(start, stop, headers)`` of the bytes served from a file of ``size`` bytes: what exists of the range,
    with Content-Range when the answer is partial (206)."""
    start = min(offset, size)
    stop = size if length is None else min(size, offset + length)
    headers = {"accept-ranges": "bytes", "content-length": str(stop - start)}
    if partial:
        span = f"{start}-{stop - 1}" if stop > start else "*"
        headers["content-range"] = f"bytes {span}/{size}"
    return start, stop, headers
