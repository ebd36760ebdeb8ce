"""Chi-square tests on per-voxel study counts (MKDA chi-square, Neurosynth decoding).

Numpy in, numpy out. ``nlogp`` follows this package's convention (``-ln p``, never negative; see
:mod:`nimare_dask.stats.transforms`).

:func:`one_way`, :func:`two_way_counts` and :func:`two_way`: Adapted from NiMARE 0.22.1 (https://github.com/neurostuff/NiMARE), MIT License, Copyright (c) 2018 NiMARE developers (``nimare/stats.py``, itself
taken from Neurosynth), with chi2 = 0 at a zero denominator of the two-way test.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike
from scipy import special

__all__ = ["chi2_to_nlogp", "one_way", "one_way_expected", "two_way", "two_way_counts"]


def one_way(data: ArrayLike, n: float) -> np.ndarray:
    """One-way chi-square test of each count against the mean count (Neurosynth's test).

    ``chi2 = (c - e)^2 * n / (e * (n - e))`` with ``e`` the mean of ``data``; where the
    denominator is 0 (every count is 0, or every count is ``n``) every count equals its
    expectation and chi2 is 0.

    Parameters
    ----------
    data : array_like
        (V,) counts, each out of ``n`` trials (e.g. active studies per voxel).
    n : float
        Number of trials (studies).

    Returns
    -------
    numpy.ndarray
        float64 chi-square values (eager).
    """
    # Adapted from NiMARE 0.22.1 (https://github.com/neurostuff/NiMARE), MIT License, Copyright (c) 2018 NiMARE developers
    term = np.asarray(data, dtype=np.float64)
    return one_way_expected(term, n, np.mean(term, axis=0))


def one_way_expected(data: ArrayLike, n, expected) -> np.ndarray:
    """:func:`one_way` with the expected count given (e.g. the mean of a whole map, when
    ``data`` is a block of it).

    Parameters
    ----------
    data : array_like
        Counts, each out of ``n`` trials.
    n : float or array_like
        Number of trials (broadcasting against ``data``).
    expected : float or array_like
        Expected counts (broadcasting against ``data``).

    Returns
    -------
    numpy.ndarray
        float64 chi-square values, 0 where ``expected * (n - expected)`` is 0 (eager).
    """
    # Adapted from NiMARE 0.22.1 (https://github.com/neurostuff/NiMARE), MIT License, Copyright (c) 2018 NiMARE developers
    term = np.asarray(data, dtype=np.float64)
    denominator = expected * (n - expected)
    with np.errstate(divide="ignore", invalid="ignore"):
        chi2 = (term - expected) ** 2 * n / denominator
    return np.where(denominator == 0, 0.0, chi2)


def two_way_counts(
    selected: ArrayLike, unselected: ArrayLike, n_selected: float, n_unselected: float
) -> np.ndarray:
    """Two-way (2x2) chi-square test of association from per-voxel active-study counts.

    ``chi2 = N (a n2 - b n1)^2 / ((a + b)(N - a - b) n1 n2)`` with ``a``, ``b`` the active counts
    of the two groups, ``n1``, ``n2`` their sizes and ``N = n1 + n2``.

    Where the denominator is 0 (no study active, every study active, or an empty group) the
    table carries no evidence of association and **chi2 is 0** (so p = 1 and z = 0). NiMARE
    0.22.1 sets 2.0 there, a value with no statistical meaning (p = 0.157 at voxels where
    nothing varies); this is a deliberate difference (``NIMARE_FACTS.md`` section 6, item 7).

    Parameters
    ----------
    selected, unselected : array_like
        (V,) active-study counts of group 1 and group 2.
    n_selected, n_unselected : float
        Group sizes (scalars or arrays broadcasting against the counts).

    Returns
    -------
    numpy.ndarray
        float64 chi-square values (eager).
    """
    # Adapted from NiMARE 0.22.1 (https://github.com/neurostuff/NiMARE), MIT License, Copyright (c) 2018 NiMARE developers
    a = np.asarray(selected, dtype=np.float64)
    b = np.asarray(unselected, dtype=np.float64)
    n1 = np.asarray(n_selected, dtype=np.float64)
    n2 = np.asarray(n_unselected, dtype=np.float64)
    total = n1 + n2
    row0 = a + b
    row1 = total - row0
    with np.errstate(divide="ignore", invalid="ignore"):
        numerator = total * (a * n2 - b * n1) ** 2
        denominator = row0 * row1 * n1 * n2
        chi2 = numerator / denominator
    return np.where(denominator == 0, 0.0, chi2)


def two_way(cells: ArrayLike) -> np.ndarray:
    """Two-way chi-square test from (V, 2, 2) contingency tables.

    ``cells[:, 0, 0]`` and ``cells[:, 0, 1]`` are the active counts of the two groups; the
    columns' sums are the group sizes. See :func:`two_way_counts` (chi2 = 0 at a zero
    denominator).

    Parameters
    ----------
    cells : array_like
        (V, 2, 2) tables.

    Returns
    -------
    numpy.ndarray
        float64 chi-square values (eager).
    """
    # Adapted from NiMARE 0.22.1 (https://github.com/neurostuff/NiMARE), MIT License, Copyright (c) 2018 NiMARE developers
    cells = np.asarray(cells, dtype=np.float64)
    if cells.ndim != 3 or cells.shape[1:] != (2, 2):
        raise ValueError(f"two_way expects an array of shape (n, 2, 2); got {cells.shape}")
    return two_way_counts(
        cells[:, 0, 0], cells[:, 0, 1], cells[:, :, 0].sum(axis=1), cells[:, :, 1].sum(axis=1)
    )


def chi2_to_nlogp(chi2: ArrayLike, dof: int = 1) -> np.ndarray:
    """Upper-tail ``-ln p`` of chi-square statistics, accurate far into the tail.

    Parameters
    ----------
    chi2 : array_like
        Chi-square values (>= 0).
    dof : int
        Degrees of freedom.

    Returns
    -------
    numpy.ndarray
        float64 ``-ln p`` (>= 0; eager).
    """
    x = np.asarray(chi2, dtype=np.float64)
    if dof == 1:
        # chi2(1) = Z^2, so p = 2 * Phi(-sqrt(x)).
        nlogp = -(np.log(2.0) + special.log_ndtr(-np.sqrt(np.maximum(x, 0.0))))
    else:
        from scipy import stats

        nlogp = -stats.chi2.logsf(x, dof)
    return np.maximum(nlogp, 0.0)
