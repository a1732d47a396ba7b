"""Histogram bucketing as torch's SummaryWriter does it (numpy only; shared by the byte encoders and the
protobuf builders)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["bucket_histogram", "histogram_buckets", "tensorflow_bins"]


def tensorflow_bins() -> np.ndarray:
    """TensorFlow's default histogram bucket edges, as torch's SummaryWriter computes them: ``v = 1e-12``
    multiplied by 1.1 while below 1e20, mirrored to the negatives, and 0 (bit-identical edges)."""
    pos = []
    v = 1e-12
    while v < 1e20:
        pos.append(v)
        v *= 1.1
    arr = np.array(pos)
    return np.concatenate([-arr[::-1], [0.0], arr])


_TF_BINS: np.ndarray | None = None


def histogram_buckets(
    values: np.ndarray, bins: str | int | Sequence[float] | np.ndarray = "tensorflow", max_bins: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """``(bucket_limits, bucket_counts)``; see :func:`bucket_histogram`."""
    limits, counts, _lo, _hi = bucket_histogram(values, bins, max_bins)
    return limits, counts


def bucket_histogram(
    values: np.ndarray, bins: str | int | Sequence[float] | np.ndarray = "tensorflow", max_bins: int | None = None
) -> tuple[np.ndarray, np.ndarray, float, float]:
    """``(bucket_limits, bucket_counts, min, max)`` of a flat float64 array, bucketed as torch's
    SummaryWriter does.

    ``numpy.histogram`` with ``bins``; past ``max_bins`` buckets, groups of ``len // max_bins`` buckets are
    merged (the last group padded); then empty buckets at both ends are dropped, keeping one empty bucket on
    the left whose right edge is the left edge of the first non-empty bucket.
    """
    global _TF_BINS
    v_min = v_max = None
    if isinstance(bins, str) and bins == "tensorflow":
        if _TF_BINS is None:
            _TF_BINS = tensorflow_bins()
        limits = _TF_BINS
        # numpy.histogram's own method for uneven edges (sort, then search the edges), without its checks,
        # and searching only the edges between the smallest and largest value (NaN sorts last, uncounted)
        sa = np.sort(values)
        n_ok = int(sa.searchsorted(np.nan)) if sa.size and np.isnan(sa[-1]) else sa.size
        counts = np.zeros(len(limits) - 1, dtype=np.intp)
        if n_ok:
            lo = min(max(int(limits.searchsorted(sa[0], "right")) - 1, 0), len(limits) - 2)
            hi = min(int(limits.searchsorted(sa[n_ok - 1], "left")) + 1, len(limits) - 1)
            if lo < hi:
                edges = limits[lo : hi + 1]
                cum = sa.searchsorted(edges, "left")
                if hi == len(limits) - 1:
                    cum[-1] = sa.searchsorted(edges[-1], "right")
                counts[lo:hi] = np.diff(cum)
        if sa.size:  # min and max as numpy gives them: NaN when there is a NaN
            v_min, v_max = (float("nan"), float("nan")) if n_ok < sa.size else (float(sa[0]), float(sa[-1]))
    else:
        counts, limits = np.histogram(values, bins=bins)
    n = len(counts)
    if max_bins is not None and n > max_bins > 0:
        sub = n // max_bins
        rem = n % sub
        if rem:
            counts = np.concatenate([counts, np.zeros(sub - rem, counts.dtype)])
        counts = counts.reshape(-1, sub).sum(axis=-1)
        new_limits = np.empty(counts.size + 1, limits.dtype)
        new_limits[:-1] = limits[:-1:sub]
        new_limits[-1] = limits[-1]
        limits = new_limits
    nz = np.flatnonzero(counts)
    if nz.size == 0:
        raise ValueError("no value falls inside the histogram's bins")
    start, end = int(nz[0]), int(nz[-1]) + 1
    out_counts = counts[start - 1 : end] if start > 0 else np.concatenate([[0], counts[:end]])
    out_limits = limits[start : end + 1]
    if v_min is None or v_max is None:
        v_min, v_max = float(values.min()), float(values.max())
    return out_limits.astype(np.float64), out_counts.astype(np.float64), v_min, v_max
