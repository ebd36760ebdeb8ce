"""NiMARE 0.22.1's ``nimare.stats`` functions, with NiMARE's names, signatures and numbers.

These exist so a script that does ``from nimare.stats import null_to_p, nlogp_fdr`` keeps working
with ``from nimare_dask.stats import ...``. Each one follows NiMARE's code (dtype handling,
return types and edge cases included), so results are identical to NiMARE's.

**Sign convention.** :func:`nlogp_bonferroni` and :func:`nlogp_fdr` here take and return
NiMARE's ``nlogp``, the natural logarithm of p, ``ln(p) <= 0``. The rest of this package uses
``-ln(p) >= 0``; its log-space corrections are :func:`~nimare_dask.stats.multiple.neglnp_bonferroni`
and :func:`~nimare_dask.stats.multiple.neglnp_fdr` (same numbers, negated, plus an ``m``
argument).

**Chi-square at a zero denominator.** :func:`two_way` and :func:`two_way_counts` here return
NiMARE's 2.0 where a table has no variation. The package's own estimators use
:mod:`nimare_dask.stats.chi2`, which returns 0 there (see README, "Differences from NiMARE").

Adapted from NiMARE 0.22.1 (https://github.com/neurostuff/NiMARE), MIT License, Copyright (c) 2018 NiMARE developers (``nimare/stats.py``).
"""

from __future__ import annotations

import numpy as np

from nimare_dask.stats.chi2 import one_way

__all__ = [
    "nlogp_bonferroni",
    "nlogp_fdr",
    "null_to_p",
    "nullhist_to_p",
    "one_way",
    "pearson",
    "two_way",
    "two_way_counts",
]


def _round2(ndarray: np.ndarray) -> np.ndarray:
    """Round X.5 away from zero (NumPy rounds it to even); int array of the same shape.

    Adapted from NiMARE 0.22.1 (https://github.com/neurostuff/NiMARE), MIT License, Copyright (c) 2018 NiMARE developers (``utils._round2``).
    """
    onedarray = ndarray.flatten()
    signs = np.sign(onedarray)
    idx = np.where(np.abs(onedarray - np.round(onedarray)) == 0.5)[0]
    x = np.abs(onedarray)
    y = np.round(x)
    y[idx] = np.ceil(x[idx])
    y *= signs
    return y.reshape(ndarray.shape).astype(int)


def two_way_counts(selected, unselected, n_selected, n_unselected):
    """Two-way chi-square test from paired per-voxel study counts (NiMARE's ``two_way_counts``).

    Parameters
    ----------
    selected, unselected : (N,) array_like
        Per-voxel active-study counts of the two groups.
    n_selected, n_unselected : int or array_like
        Number of studies in each group.

    Returns
    -------
    numpy.ndarray
        float64 chi-square values (eager); **2.0** where the denominator is 0, as NiMARE.
    """
    # Adapted from NiMARE 0.22.1 (https://github.com/neurostuff/NiMARE), MIT License, Copyright (c) 2018 NiMARE developers
    a = np.asarray(selected, dtype=np.float64)
    b = np.asarray(unselected, dtype=np.float64)
    total = n_selected + n_unselected
    row0 = a + b
    row1 = total - row0
    with np.errstate(divide="ignore", invalid="ignore"):
        numerator = total * (a * n_unselected - b * n_selected) ** 2
        denominator = row0 * row1 * n_selected * n_unselected
        chi_sq = numerator / denominator
    chi_sq[denominator == 0] = 2.0
    return chi_sq


def two_way(cells):
    """Two-way chi-square test of independence on (N, 2, 2) contingency tables (NiMARE's).

    Parameters
    ----------
    cells : (N, 2, 2) array_like
        One 2x2 table per voxel: ``cells[:, 0, 0]`` and ``cells[:, 0, 1]`` are the active counts
        of the two groups; column sums are the group sizes.

    Returns
    -------
    numpy.ndarray
        float64 chi-square values (eager); 2.0 where a table has no variation (NiMARE's value;
        :func:`nimare_dask.stats.chi2.two_way` gives 0 there).
    """
    # Adapted from NiMARE 0.22.1 (https://github.com/neurostuff/NiMARE), MIT License, Copyright (c) 2018 NiMARE developers
    cells = np.asarray(cells, dtype=np.float64)
    if cells.ndim != 3 or cells.shape[1:] != (2, 2):
        raise ValueError(
            f"two_way expects an array of shape (n_tables, 2, 2); got {cells.shape!r}."
        )
    return two_way_counts(
        selected=cells[:, 0, 0],
        unselected=cells[:, 0, 1],
        n_selected=np.asarray(cells[:, :, 0].sum(axis=1)),
        n_unselected=np.asarray(cells[:, :, 1].sum(axis=1)),
    )


def pearson(x, y):
    """Pearson correlation of row vector ``x`` with each row of ``y`` (NiMARE's ``pearson``).

    Parameters
    ----------
    x : (1, N) or (N,) array_like
        The vector correlated with each row of ``y``.
    y : (M, N) array_like
        One vector per row.

    Returns
    -------
    numpy.ndarray
        (M,) correlation coefficients (eager).
    """
    # Adapted from NiMARE 0.22.1 (https://github.com/neurostuff/NiMARE), MIT License, Copyright (c) 2018 NiMARE developers
    data = np.vstack((x, y))
    ms = data.mean(axis=1)[:, None]
    datam = data - ms
    datass = np.sqrt(np.sum(datam**2, axis=1))
    temp = np.dot(datam[1:], datam[0].T)
    return temp / (datass[1:] * datass[0])


def null_to_p(test_value, null_array, tail="two", symmetric=False):
    """p-value(s) of test value(s) against an array of null samples (NiMARE's ``null_to_p``).

    Parameters
    ----------
    test_value : float or 1D array_like
        Values to test.
    null_array : 1D array_like
        Null samples.
    tail : {"two", "upper", "lower"}
        "upper": larger values are more significant; "lower": smaller ones; "two": twice the
        smaller one-sided p (with ``symmetric=True``: compare absolute values).
    symmetric : bool
        For ``tail="two"``: assume a zero-centred, symmetric null.

    Returns
    -------
    float or numpy.ndarray
        A NumPy float when ``test_value`` is a Python ``float`` or ``int``; otherwise an array
        (a 0-d array in gives a (1,) array out, as in NiMARE). Clipped to
        ``[1/n, 1 - 1/n]``: never 0 or 1.
    """
    # Adapted from NiMARE 0.22.1 (https://github.com/neurostuff/NiMARE), MIT License, Copyright (c) 2018 NiMARE developers
    if tail not in {"two", "upper", "lower"}:
        raise ValueError('Argument "tail" must be one of ["two", "upper", "lower"]')

    return_first = isinstance(test_value, float | int)
    test_value = np.atleast_1d(test_value)
    null_array = np.array(null_array)

    # Above 1,000 values only the unique ones are looked up (same result, less work).
    if len(test_value) > 1000:
        reconstruct = True
        test_value, uniq_idx = np.unique(test_value, return_inverse=True)
    else:
        reconstruct = False

    def compute_p(t, null):
        null = np.sort(null)
        idx = np.searchsorted(null, t, side="left").astype(float)
        return 1 - idx / len(null)

    if tail == "two":
        if symmetric:
            p = compute_p(np.abs(test_value), np.abs(null_array))
        else:
            p_l = compute_p(test_value, null_array)
            p_r = compute_p(test_value * -1, null_array * -1)
            p = 2 * np.minimum(p_l, p_r)
    elif tail == "lower":
        p = compute_p(test_value * -1, null_array * -1)
    else:
        p = compute_p(test_value, null_array)

    smallest_value = 1.0 / len(null_array)
    result = np.maximum(smallest_value, np.minimum(p, 1.0 - smallest_value))
    if reconstruct:
        result = result[uniq_idx]
    return result[0] if return_first else result


def nullhist_to_p(test_values, histogram_weights, histogram_bins):
    """One-sided (upper-tail) p-values against a histogram null (NiMARE's ``nullhist_to_p``).

    Parameters
    ----------
    test_values : float or 1D array_like
        Values to test; with a 2-D ``histogram_weights`` one value per column.
    histogram_weights : (B,) or (B, V) array
        Raw weights or counts of the null histogram (one column per voxel for a voxel-wise
        null). Computed in their own dtype, as NiMARE does (float32 weights: float32 sums).
    histogram_bins : (B,) array
        Equally spaced bin **centres** (not edges).

    Returns
    -------
    float or numpy.ndarray
        p-values (a NumPy float for a 0-d input); values <= 0 get p = 1; p is floored at the
        smallest non-zero tail probability.
    """
    # Adapted from NiMARE 0.22.1 (https://github.com/neurostuff/NiMARE), MIT License, Copyright (c) 2018 NiMARE developers
    test_values = np.asarray(test_values)
    return_value = False
    if test_values.ndim == 0:
        return_value = True
        test_values = np.atleast_1d(test_values)
    histogram_bins = np.asarray(histogram_bins)
    histogram_weights = np.asarray(histogram_weights)
    if test_values.ndim != 1:
        raise ValueError(f"test_values must be a scalar or 1-D, got shape {test_values.shape}")
    if histogram_bins.ndim != 1:
        raise ValueError("histogram_bins must be 1-D")
    if histogram_weights.shape[0] != histogram_bins.shape[0]:
        raise ValueError(
            f"histogram_weights has {histogram_weights.shape[0]} bins but histogram_bins has "
            f"{histogram_bins.shape[0]}"
        )
    if histogram_weights.ndim not in (1, 2):
        raise ValueError("histogram_weights must be 1-D (B,) or 2-D (B, V)")
    if histogram_weights.ndim == 2:
        if histogram_weights.shape[1] != test_values.shape[0]:
            raise ValueError(
                f"a voxel-wise null needs one test value per column: {test_values.shape[0]} "
                f"values, {histogram_weights.shape[1]} columns"
            )
        voxelwise_null = True
    else:
        histogram_weights = histogram_weights[:, None]
        voxelwise_null = False

    n_bins = len(histogram_bins)
    inv_step = 1 / (histogram_bins[1] - histogram_bins[0])  # equal spacing assumed

    # Upper-tail probability of each bin, scaled so the first bin is 1.
    null_distribution = histogram_weights / np.sum(histogram_weights, axis=0)
    null_distribution = np.cumsum(null_distribution[::-1, :], axis=0)[::-1, :]
    null_distribution /= np.max(null_distribution, axis=0)
    null_distribution = np.squeeze(null_distribution)

    smallest_value = np.min(null_distribution[null_distribution != 0])

    p_values = np.ones(test_values.shape)
    idx = np.where(test_values > 0)[0]
    value_bins = _round2(test_values[idx] * inv_step)
    value_bins[value_bins >= n_bins] = n_bins - 1

    if voxelwise_null:
        p_values[idx] = null_distribution[value_bins, idx]
    else:
        p_values[idx] = null_distribution[value_bins]

    p_values = np.maximum(smallest_value, np.minimum(p_values, 1.0))
    if return_value:
        p_values = p_values[0]
    return p_values


def _check_nlogp(nlogp):
    """``nlogp`` as a float array; positive values (p-values or ``-ln p``) are an error."""
    # Adapted from NiMARE 0.22.1 (https://github.com/neurostuff/NiMARE), MIT License, Copyright (c) 2018 NiMARE developers
    nlogp = np.asarray(nlogp, dtype=float)
    if np.any(nlogp > 0):
        raise ValueError(
            "nlogp must hold natural logarithms of p-values, which are at most 0; got a "
            f"maximum of {np.nanmax(nlogp)}. (For -ln(p) use "
            "nimare_dask.stats.neglnp_bonferroni / neglnp_fdr.)"
        )
    return nlogp


def nlogp_bonferroni(nlogp):
    """Bonferroni-correct ``nlogp = ln(p)`` values (NiMARE's sign): ``min(ln p + ln m, 0)``.

    Parameters
    ----------
    nlogp : numpy.ndarray
        Natural logarithms of the uncorrected p-values (<= 0); ``m`` is ``nlogp.size``, NaNs
        included.

    Returns
    -------
    numpy.ndarray
        Natural logarithms of the corrected p-values (eager).
    """
    # Adapted from NiMARE 0.22.1 (https://github.com/neurostuff/NiMARE), MIT License, Copyright (c) 2018 NiMARE developers
    nlogp = _check_nlogp(nlogp)
    return np.minimum(nlogp + np.log(nlogp.size), 0.0)


def nlogp_fdr(nlogp, method="bh"):
    """FDR-adjust ``nlogp = ln(p)`` values (NiMARE's sign) with the BH or BY step-up.

    Parameters
    ----------
    nlogp : numpy.ndarray
        Natural logarithms of the uncorrected p-values (<= 0).
    method : {"bh", "by"}
        Benjamini-Hochberg or Benjamini-Yekutieli (any other value is a ``ValueError``; NiMARE
        runs "bh" for it).

    Returns
    -------
    numpy.ndarray
        Natural logarithms of the adjusted p-values (eager). NaN tests take no part in the
        procedure and stay NaN, but count in the number of tests (as R's ``p.adjust``).
    """
    # Adapted from NiMARE 0.22.1 (https://github.com/neurostuff/NiMARE), MIT License, Copyright (c) 2018 NiMARE developers
    if method not in ("bh", "by"):  # NiMARE silently runs "bh" for any other string
        raise ValueError(f'method must be "bh" or "by", got {method!r}')
    nlogp = _check_nlogp(nlogp)
    n_tests = nlogp.size
    unevaluated = np.isnan(nlogp)
    if not unevaluated.any():
        return _fdr_step_up(nlogp, method, n_tests)
    corrected = np.full(nlogp.shape, np.nan)
    evaluated = ~unevaluated
    if evaluated.any():
        corrected[evaluated] = _fdr_step_up(nlogp[evaluated], method, n_tests)
    return corrected


def _fdr_step_up(nlogp, method, n_tests):
    # Adapted from NiMARE 0.22.1 (https://github.com/neurostuff/NiMARE), MIT License, Copyright (c) 2018 NiMARE developers
    sort_idx = np.argsort(nlogp)
    revert_idx = np.argsort(sort_idx)
    log_ecdffactor = np.log(np.arange(1, nlogp.size + 1) / n_tests)
    if method == "by":
        log_ecdffactor = log_ecdffactor - np.log(np.sum(1 / np.arange(1, n_tests + 1)))
    log_adjusted = nlogp[sort_idx] - log_ecdffactor
    log_adjusted = np.minimum.accumulate(log_adjusted[::-1])[::-1]
    return np.minimum(log_adjusted, 0.0)[revert_idx]
