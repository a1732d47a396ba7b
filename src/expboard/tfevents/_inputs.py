"""Turning what users pass (Python numbers, numpy arrays, torch tensors of any dtype) into numpy, without
importing torch: a tensor is recognised by its type's module and converted through its own methods."""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["UnsupportedInputError", "as_array", "is_tensor", "make_np", "to_float", "to_int"]


class UnsupportedInputError(TypeError, NotImplementedError):
    """An input of a type SummaryWriter does not take (a TypeError; also the NotImplementedError that
    torch's ``make_np`` raises, so code catching either keeps working)."""


def is_tensor(x: Any) -> bool:
    """True for a ``torch.Tensor`` (or subclass, e.g. ``Parameter``), checked without importing torch."""
    return any(c.__module__.startswith("torch") and c.__name__ == "Tensor" for c in type(x).__mro__)


def _tensor_to_numpy(x: Any) -> np.ndarray:
    x = x.detach()
    if x.device.type == "meta":
        raise ValueError("a tensor on the 'meta' device has no values to log")
    if x.dtype.is_floating_point and x.element_size() < 4:
        x = x.float()  # bfloat16, float16, float8: numpy has no bfloat16; float32 holds every value exactly
    elif x.is_complex() and x.element_size() < 8:
        x = x.cfloat()  # complex32
    if getattr(x, "is_quantized", False):
        x = x.dequantize()
    return np.asarray(x.cpu().resolve_conj().resolve_neg().numpy())


def make_np(x: Any) -> np.ndarray:
    """An ndarray of ``x``, accepting what torch's SummaryWriter accepts: arrays as they are, a Python or
    numpy scalar as shape (1,), a torch tensor through ``detach().cpu().numpy()`` (bfloat16 and half as
    float32). Lists are refused, as torch refuses them."""
    if isinstance(x, np.ndarray):
        return x
    if is_tensor(x):
        return _tensor_to_numpy(x)
    if np.isscalar(x):
        return np.array([x])
    raise UnsupportedInputError(
        f"expected a numpy array, a torch tensor or a number, got {type(x).__name__} "
        "(as torch's SummaryWriter: pass numpy.asarray(...) for a list)"
    )


def as_array(x: Any) -> np.ndarray:
    """Like :func:`make_np`, also taking lists and tuples (where torch takes them: raw histogram buckets,
    raw PR-curve counts)."""
    return make_np(x) if isinstance(x, np.ndarray) or is_tensor(x) or np.isscalar(x) else np.asarray(x)


def to_float(x: Any) -> float:
    """A float from a Python number, a one-element array or tensor (any shape, any dtype)."""
    if isinstance(x, float | int):
        return float(x)
    if is_tensor(x):
        if x.numel() != 1:
            raise ValueError(f"a scalar must have exactly one element, got a tensor of shape {tuple(x.shape)}")
        return float(x.detach().cpu().reshape(-1)[0].item())
    arr = np.asarray(x)
    if arr.size != 1:
        raise ValueError(f"a scalar must have exactly one element, got an array of shape {arr.shape}")
    if arr.dtype.kind not in "biuf":
        try:
            return float(arr.reshape(-1)[0])
        except (TypeError, ValueError) as exc:
            raise TypeError(f"a scalar must be a number, got {type(x).__name__} {x!r}") from exc
    return float(arr.reshape(-1)[0])


def to_int(x: Any, what: str = "global_step") -> int:
    """An int from a Python int, an integral float, a one-element array or tensor."""
    if isinstance(x, int):
        return int(x)
    if is_tensor(x):
        if x.numel() != 1:
            raise ValueError(f"{what} must have exactly one element, got a tensor of shape {tuple(x.shape)}")
        x = x.detach().cpu().reshape(-1)[0].item()
    else:
        arr = np.asarray(x)
        if arr.size != 1:
            raise ValueError(f"{what} must have exactly one element, got shape {arr.shape}")
        x = arr.reshape(-1)[0].item()
    if isinstance(x, float) and not x.is_integer():
        raise ValueError(f"{what} must be an integer, got {x!r}")
    try:
        return int(x)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{what} must be an integer, got {type(x).__name__} {x!r}") from exc
