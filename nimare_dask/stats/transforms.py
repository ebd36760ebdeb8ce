"""Conversions between p-values, z-values and their logarithms.

Everything goes through log space, so tails far beyond what a float p-value can hold keep their
information (a z of 40 is a p of about 1e-350, which no double represents, but whose logarithm
is an ordinary number).

Conventions (NiMARE 0.22.1, ``NIMARE_FACTS.md`` section 0):

- ``nlogp`` in this package is the **negated natural logarithm** of a p-value, ``-ln(p)``, so it
  is never negative (NiMARE's own ``nlogp`` is ``ln(p)``, without the minus; our functions
  reject negative input so that a sign mix-up fails loudly instead of silently).
- ``logp`` (what ``logp*`` maps hold) is ``-log10(p)``, clipped to ``[0, float32 max]``.
- one-tailed z is floored at 0 (a p above 0.5 gives z = 0); two-tailed z is unsigned.
- p maps are clipped to ``[1.4e-45, 1]``, the positive float32 range (:func:`clip_p`).

All functions take numpy arrays (or scalars) and return numpy arrays (0-d input returns a
numpy scalar). They work blockwise, so ``dask.array.map_blocks`` can apply them to dask arrays.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike
from scipy import special

__all__ = [
    "P_FLOOR_FLOAT32",
    "clip_p",
    "nlogp_to_logp",
    "nlogp_to_p",
    "nlogp_to_z",
    "p_to_logp",
    "p_to_z",
    "z_to_nlogp",
    "z_to_p",
]

#: Smallest positive float32 (a denormal, 1.4e-45): the floor of every p map.
P_FLOOR_FLOAT32 = float(np.nextafter(np.float32(0), np.float32(1)))
#: Smallest positive float64 (a denormal, 4.9e-324): the floor used on the way to z.
_P_FLOOR_FLOAT64 = float(np.nextafter(0.0, 1.0))
_LN2 = float(np.log(2.0))
_LN10 = float(np.log(10.0))
_FLOAT32_MAX = float(np.finfo(np.float32).max)
# nlogp values this far below zero cannot be rounding error: they are ln(p) passed by mistake.
_NEGATIVE_TOLERANCE = 1e-9


def _check_tail(tail: str) -> None:
    if tail not in ("one", "two"):
        raise ValueError(f'tail must be "one" or "two", got {tail!r}')


def _scalar_out(x: np.ndarray):
    return x[()] if x.shape == () else x


def _as_nlogp(nlogp: ArrayLike) -> np.ndarray:
    """Return ``nlogp`` as float64, rejecting values that are clearly ``ln(p)``, not ``-ln(p)``."""
    nlogp = np.asarray(nlogp, dtype=np.float64)
    if nlogp.size and np.nanmin(nlogp, initial=np.inf) < -_NEGATIVE_TOLERANCE:
        raise ValueError(
            "nlogp must be -ln(p), which is never negative; got a minimum of "
            f"{np.nanmin(nlogp)}. (NiMARE's nlogp is ln(p): negate it first.)"
        )
    # Tiny negatives are rounding (p a hair above 1); treat them as p = 1.
    return np.maximum(nlogp, 0.0)


def clip_p(p: ArrayLike, dtype=None) -> np.ndarray:
    """Clip p-values to ``[1.4e-45, 1]``, the positive float32 range NiMARE uses for p maps.

    Parameters
    ----------
    p : array_like
        P-values.
    dtype : numpy dtype, optional
        Output dtype. Default: the input's floating dtype (float64 for integer input).

    Returns
    -------
    numpy.ndarray
        Clipped p-values (eager). NaN stays NaN.
    """
    p = np.asarray(p)
    if dtype is None:
        dtype = p.dtype if np.issubdtype(p.dtype, np.floating) else np.float64
    dtype = np.dtype(dtype)
    out = np.clip(p.astype(dtype, copy=True), dtype.type(P_FLOOR_FLOAT32), dtype.type(1))
    return _scalar_out(out)


def z_to_nlogp(z: ArrayLike, tail: str = "two") -> np.ndarray:
    """Convert z-values to ``nlogp = -ln(p)``.

    Parameters
    ----------
    z : array_like
        Z-statistics.
    tail : {"two", "one"}
        Two-tailed (``p = 2 * sf(|z|)``) or one-tailed upper (``p = sf(z)``) test.

    Returns
    -------
    numpy.ndarray
        ``-ln(p)`` as float64, never negative and finite for every finite z (eager).
    """
    _check_tail(tail)
    z = np.asarray(z, dtype=np.float64)
    if tail == "two":
        # ln(2 * Phi(-|z|)); log_ndtr stays accurate far into the tail where Phi underflows.
        nlogp = -(_LN2 + special.log_ndtr(-np.abs(z)))
    else:
        nlogp = -special.log_ndtr(-z)
    # p cannot exceed one; the doubled tail at z ~ 0 can only by rounding.
    nlogp = np.maximum(nlogp, 0.0)
    return _scalar_out(nlogp)


def z_to_p(z: ArrayLike, tail: str = "two") -> np.ndarray:
    """Convert z-values to p-values.

    Parameters
    ----------
    z : array_like
        Z-statistics.
    tail : {"two", "one"}
        Two-tailed or one-tailed (upper) test.

    Returns
    -------
    numpy.ndarray
        P-values as float64, floored at the smallest positive double (as NiMARE's ``z_to_p``);
        use :func:`z_to_nlogp` for tails beyond that (eager).
    """
    p = np.exp(-np.asarray(z_to_nlogp(z, tail=tail)))
    p = np.clip(p, _P_FLOOR_FLOAT64, 1.0)
    return _scalar_out(np.asarray(p))


def nlogp_to_z(nlogp: ArrayLike, tail: str = "two") -> np.ndarray:
    """Convert ``nlogp = -ln(p)`` to unsigned z-values.

    Parameters
    ----------
    nlogp : array_like
        Negated natural logarithms of p-values (>= 0). Values below ``-1e-9`` raise
        ``ValueError`` (they look like ``ln(p)``, NiMARE's sign convention).
    tail : {"two", "one"}
        Two-tailed (z = |z|) or one-tailed test (z floored at 0, so p > 0.5 gives 0).

    Returns
    -------
    numpy.ndarray
        Z-values as float64 (eager). No upper bound: the inverse is taken in log space.
    """
    _check_tail(tail)
    nlogp = _as_nlogp(nlogp)
    if tail == "two":
        # The upper tail holds half of a two-tailed p: ln(p / 2) = -nlogp - ln 2.
        z = -special.ndtri_exp(-nlogp - _LN2)
    else:
        z = np.maximum(-special.ndtri_exp(-nlogp), 0.0)
    z = np.asarray(z) + 0.0  # turns the -0.0 of p == 1 into 0.0
    return _scalar_out(z)


def p_to_z(p: ArrayLike, tail: str = "two") -> np.ndarray:
    """Convert p-values to unsigned z-values.

    Parameters
    ----------
    p : array_like
        P-values; clipped to ``[4.9e-324, 1]`` (the positive float64 range), so z is bounded at
        about 38.5. Use :func:`nlogp_to_z` for larger z.
    tail : {"two", "one"}
        Two-tailed or one-tailed test (one-tailed z is floored at 0).

    Returns
    -------
    numpy.ndarray
        Z-values as float64 (eager).
    """
    p = np.clip(np.asarray(p, dtype=np.float64), _P_FLOOR_FLOAT64, 1.0)
    return nlogp_to_z(-np.log(p), tail=tail)


def p_to_logp(p: ArrayLike, dtype=np.float32) -> np.ndarray:
    """Convert p-values to ``logp = -log10(p)``, the quantity NiMARE's ``logp`` maps hold.

    Parameters
    ----------
    p : array_like
        P-values. Clipped to ``[1.4e-45, 1]`` first (:func:`clip_p`), in ``dtype``.
    dtype : numpy dtype
        Working and output dtype (float32, like every map).

    Returns
    -------
    numpy.ndarray
        ``-log10(p)`` in ``[0, 44.85]`` for float32 (eager).
    """
    p = clip_p(p, dtype=dtype)
    out = np.negative(np.log10(np.asarray(p)))
    out = np.clip(out + out.dtype.type(0), 0, np.finfo(out.dtype).max)
    return _scalar_out(np.asarray(out))


def nlogp_to_logp(nlogp: ArrayLike, dtype=np.float32) -> np.ndarray:
    """Convert ``nlogp = -ln(p)`` to ``logp = -log10(p)`` without forming p.

    Parameters
    ----------
    nlogp : array_like
        Negated natural logarithms of p-values (>= 0).
    dtype : numpy dtype
        Output dtype (float32, like every map).

    Returns
    -------
    numpy.ndarray
        ``-log10(p)``, clipped to ``[0, float32 max]`` (eager). Unlike :func:`p_to_logp` this
        is not bounded by the smallest representable p.
    """
    logp = _as_nlogp(nlogp) / _LN10
    logp = np.clip(logp, 0.0, _FLOAT32_MAX).astype(dtype)
    return _scalar_out(logp)


def nlogp_to_p(nlogp: ArrayLike, dtype=np.float32) -> np.ndarray:
    """Convert ``nlogp = -ln(p)`` to p-values clipped to ``[1.4e-45, 1]``.

    Parameters
    ----------
    nlogp : array_like
        Negated natural logarithms of p-values (>= 0).
    dtype : numpy dtype
        Output dtype (float32, like every map).

    Returns
    -------
    numpy.ndarray
        P-values (eager).
    """
    return clip_p(np.exp(-_as_nlogp(nlogp)), dtype=dtype)
