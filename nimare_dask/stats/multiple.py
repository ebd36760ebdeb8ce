"""Multiple-comparison corrections of p-values, in log space.

The inputs and outputs are ``nlogp = -ln(p)`` (never negative; see
:mod:`nimare_dask.stats.transforms`). Working with logarithms means that multiplying a p-value
by the number of tests is an addition and nothing underflows: a corrected p below the smallest
double survives as its logarithm.

:func:`neglnp_bonferroni` and :func:`neglnp_fdr` match NiMARE 0.22.1's
``nimare.stats.nlogp_bonferroni`` and ``nlogp_fdr`` (which take ``ln(p)``, the negative of ours;
those two names, with NiMARE's sign and signature, are in :mod:`nimare_dask.stats.nimare_api`
and exported from :mod:`nimare_dask.stats`): Bonferroni is ``p * m`` capped at 1; FDR is the
Benjamini-Hochberg (``"bh"``) or Benjamini-Yekutieli (``"by"``) step-up procedure with the
usual monotone envelope (a running minimum from the largest p down). NaN tests take no part in
the procedure and come back NaN, but are still counted in the number of tests ``m`` unless
``m`` is given.

Adapted from NiMARE 0.22.1 (https://github.com/neurostuff/NiMARE), MIT License, Copyright (c) 2018 NiMARE developers (``nimare/stats.py``: ``nlogp_bonferroni``, ``nlogp_fdr``, ``_fdr_step_up``).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

__all__ = ["neglnp_bonferroni", "neglnp_fdr"]

_NEGATIVE_TOLERANCE = 1e-9


def _check(nlogp: ArrayLike) -> np.ndarray:
    nlogp = np.asarray(nlogp, dtype=np.float64)
    if nlogp.size and np.nanmin(nlogp, initial=np.inf) < -_NEGATIVE_TOLERANCE:
        raise ValueError(
            "nlogp must be -ln(p), which is never negative; got a minimum of "
            f"{np.nanmin(nlogp)}. Did you pass ln(p) (NiMARE's convention: use "
            "nimare_dask.stats.nlogp_bonferroni / nlogp_fdr for it) or a p-value?"
        )
    return np.maximum(nlogp, 0.0)


def _n_tests(nlogp: np.ndarray, m: int | None) -> int:
    if m is None:
        return int(nlogp.size)
    m = int(m)
    n_evaluated = int(np.count_nonzero(~np.isnan(nlogp)))
    if m < n_evaluated:
        raise ValueError(f"m={m} is smaller than the {n_evaluated} evaluated (non-NaN) tests")
    return m


def neglnp_bonferroni(nlogp: ArrayLike, m: int | None = None) -> np.ndarray:
    """Bonferroni-correct ``nlogp = -ln(p)`` values: ``p_corr = min(p * m, 1)``.

    Parameters
    ----------
    nlogp : array_like
        ``-ln(p)`` of the uncorrected p-values (any shape).
    m : int, optional
        Number of tests. Default: ``nlogp.size`` (NaN entries included).

    Returns
    -------
    numpy.ndarray
        ``-ln(p_corr)`` as float64, same shape, NaN where the input is NaN (eager).
    """
    # Adapted from NiMARE 0.22.1 (https://github.com/neurostuff/NiMARE), MIT License, Copyright (c) 2018 NiMARE developers
    nlogp = _check(nlogp)
    m = _n_tests(nlogp, m)
    if m == 0:
        return nlogp.copy()
    # p * m capped at one is -ln(p) - ln(m) floored at zero.
    return np.maximum(nlogp - np.log(m), 0.0)


def neglnp_fdr(nlogp: ArrayLike, method: str = "bh", m: int | None = None) -> np.ndarray:
    """FDR-adjust ``nlogp = -ln(p)`` values with the Benjamini-Hochberg/-Yekutieli step-up.

    With the evaluated p-values sorted ascending, ``p_(1) <= ... <= p_(k)``, the adjusted value
    of rank ``i`` is ``min_{j >= i} min(1, p_(j) * m * c / j)``, where ``c = 1`` for ``"bh"``
    and ``c = sum_{r=1}^{m} 1/r`` for ``"by"``.

    Parameters
    ----------
    nlogp : array_like
        ``-ln(p)`` of the uncorrected p-values (1-D; other shapes are flattened and restored).
    method : {"bh", "by"}
        Benjamini-Hochberg (independent or positively dependent tests) or Benjamini-Yekutieli
        (any dependence).
    m : int, optional
        Number of tests. Default: ``nlogp.size``, NaN entries included (the conservative
        reading R's ``p.adjust`` also takes).

    Returns
    -------
    numpy.ndarray
        ``-ln(q)`` (adjusted p-values) as float64, same shape, NaN where the input is NaN
        (eager).
    """
    # Adapted from NiMARE 0.22.1 (https://github.com/neurostuff/NiMARE), MIT License, Copyright (c) 2018 NiMARE developers
    if method not in ("bh", "by"):
        raise ValueError(f'method must be "bh" or "by", got {method!r}')
    nlogp = _check(nlogp)
    shape = nlogp.shape
    flat = nlogp.ravel()
    m = _n_tests(flat, m)
    evaluated = ~np.isnan(flat)
    values = flat[evaluated]
    out = np.full(flat.shape, np.nan)
    if values.size:
        order = np.argsort(-values, kind="stable")  # ascending p = descending -ln(p)
        ranks = np.arange(1, values.size + 1, dtype=np.float64)
        # -ln(p * m * c / rank) = -ln(p) + (ln(rank / m) - ln(c))
        log_fraction = np.log(ranks / m)
        if method == "by":
            log_fraction = log_fraction - np.log(np.sum(1.0 / np.arange(1, m + 1)))
        adjusted = values[order] + log_fraction
        # Monotone envelope: q_(i) = min_{j >= i} (...), i.e. the largest -ln over j >= i.
        adjusted = np.maximum.accumulate(adjusted[::-1])[::-1]
        adjusted = np.maximum(adjusted, 0.0)
        result = np.empty_like(values)
        result[order] = adjusted
        out[evaluated] = result
    return out.reshape(shape)
