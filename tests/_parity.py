"""Parity contracts between our maps and NiMARE's (the oracle) where NiMARE's last bit depends
on the CPU.

NiMARE computes through numpy's ``exp``/``log``/``log1p``/``log10`` (and scipy's special
functions on top of the C library's), whose results in the last bit depend on the SIMD code
numpy picks at run time (AVX-512, AVX2 or baseline) and on glibc's FMA variants: the same
NiMARE run gives maps that differ by a float32 ulp between, for example, an AVX-512 Xeon and an
AVX2-only EPYC. So its maps are matched within 1 float32 ulp, not bit for bit (2 ulps for
``logp`` maps NiMARE takes with numpy's float32 ``log10``, which is up to 2 ulps from the
correctly rounded value on every code path, measured). Integers, counts and values that are
copied are still compared exactly (``assert_array_equal``).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

#: one float64 ulp of numbers just below 1 (the spacing of ``exp(x)`` for small ``x < 0``)
ULP_BELOW_ONE = 2.0**-53


def assert_within_ulp(
    ours, theirs, maxulp: int = 1, *, atol: float = 0.0, dtype=np.float32, err_msg: str = ""
) -> None:
    """``ours`` and ``theirs`` agree within ``maxulp`` ulps of ``dtype`` (float32: the maps'
    dtype), with NaNs at the same places.

    ``atol`` (absolute, default 0) is added to the tolerance where a quantity is the difference
    of two nearly equal numbers, so that an ulp of the operands is many ulps of the result (see
    :data:`ULP_BELOW_ONE`); the tolerance is then ``atol + maxulp * ulp(max(|ours|, |theirs|))``.
    """
    a = np.asarray(ours).astype(dtype)
    b = np.asarray(theirs).astype(dtype)
    assert a.shape == b.shape, f"{err_msg}: shapes {a.shape} != {b.shape}"
    nan = np.isnan(a)
    np.testing.assert_array_equal(nan, np.isnan(b), err_msg=f"{err_msg}: NaN positions differ")
    a, b = a[~nan], b[~nan]
    if atol == 0:
        try:
            np.testing.assert_array_max_ulp(a, b, maxulp=maxulp, dtype=dtype)
        except AssertionError as err:
            raise AssertionError(f"{err_msg}: {err}") from None
        return
    tol = atol + maxulp * np.spacing(np.maximum(np.abs(a), np.abs(b))).astype(np.float64)
    diff = np.abs(a.astype(np.float64) - b.astype(np.float64))
    bad = ~(diff <= tol)  # inf - inf gives NaN: flagged unless identical
    bad &= a != b
    if bad.any():
        i = np.flatnonzero(bad)[:5]
        raise AssertionError(
            f"{err_msg}: {bad.sum()} of {a.size} values differ by more than {maxulp} ulp + "
            f"{atol:g}: ours {a[i]}, theirs {b[i]}, |diff| {diff[i]}, tolerance {tol[i]}"
        )


def assert_sparse_within_ulp(ours, theirs, maxulp: int = 1, *, err_msg: str = "") -> None:
    """Two sparse matrices agree within ``maxulp`` float32 ulps on the union of their nonzeros
    (a value one ulp above zero on one side may be an implicit zero on the other)."""
    a, b = sp.csr_array(ours), sp.csr_array(theirs)
    assert a.shape == b.shape, f"{err_msg}: shapes {a.shape} != {b.shape}"
    keys, values = [], []
    for m in (a, b):
        m = m.copy()
        m.sum_duplicates()
        rows = np.repeat(np.arange(m.shape[0], dtype=np.int64), np.diff(m.indptr))
        keys.append(rows * m.shape[1] + m.indices.astype(np.int64))
        values.append(m.data)
    union = np.union1d(*keys)
    dense = []
    for k, v in zip(keys, values, strict=True):
        out = np.zeros(union.size, dtype=np.float32)
        out[np.searchsorted(union, k)] = v
        dense.append(out)
    assert_within_ulp(dense[0], dense[1], maxulp, err_msg=err_msg)


def quiet(fn, *args, **kwargs):
    """Call ``fn`` (usually NiMARE, the oracle) with its warnings and log messages silenced."""
    import logging
    import warnings

    logging.disable(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return fn(*args, **kwargs)
    finally:
        logging.disable(logging.NOTSET)
