"""Null distributions of CBMA summary statistics, and p-values from them.

Everything here is numpy in, numpy out (numba where a loop is hot). The conventions are those of
NiMARE 0.22.1 (``NIMARE_FACTS.md`` sections 2.2-2.7):

* Histogram nulls live on a grid of **bin centres** (not edges) starting at 0 with a fixed step.
  A value belongs to its nearest centre, ties away from zero.
* ALE: per-study histograms of modelled-activation (MA) values on a 1e-5 grid, combined across
  studies by the "nearest-bin product convolution" ``1 - (1 - a)(1 - b)``
  (:func:`ale_null_from_histograms`).
* MKDA: the exact Poisson-binomial of the studies' coverage fractions
  (:func:`poisson_binomial_null`, :func:`weighted_poisson_binomial_null`).
* KDA: additive convolution of per-study histograms of integer sphere counts
  (:func:`additive_null_from_histograms`).
* :func:`nullhist_to_p` turns a histogram into upper-tail p-values; :func:`nullhist_to_stat` gives
  the statistic threshold for a p-value; :func:`null_to_p` compares values with an array of null
  samples.
"""

from __future__ import annotations

import numba
import numpy as np
from numpy.typing import ArrayLike

__all__ = [
    "ALE_INV_STEP",
    "additive_null_from_histograms",
    "ale_histogram_bins",
    "ale_null_from_histograms",
    "ale_study_histograms",
    "count_histograms",
    "histogram_bin_of",
    "null_to_p",
    "nullhist_p_table",
    "nullhist_to_p",
    "nullhist_to_stat",
    "poisson_binomial_null",
    "round_half_away",
    "weighted_histogram_bins",
    "weighted_poisson_binomial_null",
]

#: Bins per unit of the ALE histogram grid (step 1e-5).
ALE_INV_STEP = 100000
#: The step of the ALE grid as the bin centres spell it (``round(arange(...), 5)``).
_ALE_STEP = 1.0 / ALE_INV_STEP
#: Reciprocal of the centre spacing, computed the way the centres are built (99999.99999999999),
#: so values are assigned to the same centres as NiMARE assigns them.
_ALE_INV_STEP_EXACT = 1.0 / (float(np.round(_ALE_STEP, 5)) - 0.0)


def round_half_away(x: ArrayLike) -> np.ndarray:
    """Round to the nearest integer, halves away from zero (NumPy rounds halves to even).

    Parameters
    ----------
    x : array_like
        Values.

    Returns
    -------
    numpy.ndarray
        int64 array of the same shape (eager).
    """
    x = np.asarray(x, dtype=np.float64)
    a = np.abs(x)
    r = np.round(a)
    r = np.where(np.abs(a - r) == 0.5, np.ceil(a), r)
    return np.asarray(np.sign(x) * r).astype(np.int64)


# ---------------------------------------------------------------------------- generic tests
def null_to_p(
    test_value: ArrayLike, null_array: ArrayLike, tail: str = "two", symmetric: bool = False
):
    """p-values of test values against an array of null samples.

    p is the fraction of null samples at or beyond the value (no +1 correction), clipped to
    ``[1/n, 1 - 1/n]`` (NiMARE's ``stats.null_to_p``).

    Parameters
    ----------
    test_value : float or array_like
        Values to test.
    null_array : array_like
        Null samples (n,).
    tail : {"two", "upper", "lower"}
        "upper": large values are significant; "lower": small values; "two": twice the smaller
        one-sided p (or, with ``symmetric=True``, compare absolute values).
    symmetric : bool
        Assume a zero-centred symmetric null for ``tail="two"``.

    Returns
    -------
    float or numpy.ndarray
        p-values (eager); a float for a scalar input.
    """
    # Adapted from NiMARE 0.22.1 (https://github.com/neurostuff/NiMARE), MIT License, Copyright (c) 2018 NiMARE developers
    if tail not in {"two", "upper", "lower"}:
        raise ValueError(f'tail must be one of "two", "upper", "lower"; got {tail!r}')
    scalar = np.ndim(test_value) == 0
    test = np.atleast_1d(np.asarray(test_value, dtype=np.float64))
    null = np.asarray(null_array, dtype=np.float64).ravel()
    if null.size == 0:
        raise ValueError("null_array is empty")

    def upper(t: np.ndarray, nul: np.ndarray) -> np.ndarray:
        nul = np.sort(nul)
        return 1.0 - np.searchsorted(nul, t, side="left") / nul.size

    if tail == "two":
        if symmetric:
            p = upper(np.abs(test), np.abs(null))
        else:
            p = 2 * np.minimum(upper(test, null), upper(-test, -null))
    elif tail == "lower":
        p = upper(-test, -null)
    else:
        p = upper(test, null)
    smallest = 1.0 / null.size
    p = np.maximum(smallest, np.minimum(p, 1.0 - smallest))
    return float(p[0]) if scalar else p


def histogram_bin_of(values: ArrayLike, histogram_bins: ArrayLike) -> np.ndarray:
    """Index of the bin centre nearest each value (ties away from zero, clipped to the grid).

    The lookup :func:`nullhist_to_p` makes; estimators use it to find the bin of their largest
    statistic (``top_bin`` of :func:`ale_null_from_histograms`).

    Parameters
    ----------
    values : array_like
        Non-negative statistic values.
    histogram_bins : array_like
        (B,) equally spaced bin centres starting at 0.

    Returns
    -------
    numpy.ndarray
        int64 bin indices (eager).
    """
    bins = np.asarray(histogram_bins)
    inv_step = float(1 / (bins[1] - bins[0]))
    vals = np.asarray(values)
    out = _nearest_bins(np.ascontiguousarray(vals.ravel()), inv_step, bins.size)
    return out.reshape(vals.shape)


@numba.njit(cache=True, nogil=True)
def _nearest_bins(values, inv_step, n_bins):
    out = np.empty(values.shape[0], np.int64)
    for i in range(values.shape[0]):
        out[i] = _nearest_bin(np.float64(values[i]), inv_step, n_bins)
    return out


def _tail_probabilities(weights: np.ndarray) -> tuple[np.ndarray, float]:
    """Normalised upper-tail sums of histogram weights (B, ...) and their smallest non-zero."""
    # Adapted from NiMARE 0.22.1 (https://github.com/neurostuff/NiMARE), MIT License, Copyright (c) 2018 NiMARE developers
    null = weights / np.sum(weights, axis=0)
    null = np.cumsum(null[::-1], axis=0)[::-1]
    null /= np.max(null, axis=0)
    return null, float(np.min(null[null != 0]))


def nullhist_p_table(
    test_values: ArrayLike, histogram_weights: ArrayLike, histogram_bins: ArrayLike
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`nullhist_to_p` as a table: each value's row and one p per row.

    Maps that are functions of p (z, logp) are then computed once per distinct p (one per
    histogram bin) rather than once per voxel.

    Parameters
    ----------
    test_values : array_like
        (V,) statistic values.
    histogram_weights : array_like
        (B,) weights over the bins.
    histogram_bins : array_like
        (B,) equally spaced bin centres starting at 0.

    Returns
    -------
    rows : numpy.ndarray
        (V,) int64: the value's bin, or ``B`` for values <= 0.
    p : numpy.ndarray
        (B + 1,) float64 p per row (the last, 1.0, for values <= 0); ``p[rows]`` is
        :func:`nullhist_to_p` (eager).
    """
    test = np.atleast_1d(np.asarray(test_values))
    bins = np.asarray(histogram_bins)
    weights = np.asarray(histogram_weights, dtype=np.float64)
    if bins.ndim != 1 or bins.size < 2:
        raise ValueError("histogram_bins must be 1-D with at least two bin centres")
    if weights.shape != bins.shape:
        raise ValueError(
            f"histogram_weights has {weights.shape[0]} bins but histogram_bins has {bins.size}"
        )
    null, smallest = _tail_probabilities(weights)
    table = np.append(np.maximum(smallest, np.minimum(null, 1.0)), 1.0)
    rows = histogram_bin_of(test, bins)
    rows[~(test > 0)] = bins.size
    return rows, table


def nullhist_to_p(
    test_values: ArrayLike, histogram_weights: ArrayLike, histogram_bins: ArrayLike
) -> np.ndarray:
    """One-sided (upper-tail) p-values of statistics against a histogram null.

    The histogram is normalised, accumulated from the top, and divided by its maximum. A value is
    looked up in the bin ``round_half_away(value / step)`` (clipped to the last bin); values
    <= 0 get p = 1; p is floored at the smallest non-zero tail probability.

    Parameters
    ----------
    test_values : array_like
        Statistic values (V,) (or a scalar).
    histogram_weights : array_like
        (B,) weights (counts or probabilities) over the bins, or (B, V) for a voxel-wise null.
    histogram_bins : array_like
        (B,) equally spaced bin centres starting at 0.

    Returns
    -------
    numpy.ndarray
        float64 p-values (eager); a float for a scalar input.
    """
    # Adapted from NiMARE 0.22.1 (https://github.com/neurostuff/NiMARE), MIT License, Copyright (c) 2018 NiMARE developers
    test = np.asarray(test_values)
    scalar = test.ndim == 0
    test = np.atleast_1d(test)
    bins = np.asarray(histogram_bins)
    weights = np.asarray(histogram_weights, dtype=np.float64)
    if bins.ndim != 1 or bins.size < 2:
        raise ValueError("histogram_bins must be 1-D with at least two bin centres")
    if weights.shape[0] != bins.size:
        raise ValueError(
            f"histogram_weights has {weights.shape[0]} bins but histogram_bins has {bins.size}"
        )
    voxelwise = weights.ndim == 2
    if not voxelwise:
        weights = weights[:, None]
    null, smallest = _tail_probabilities(weights)
    null = np.squeeze(null, axis=1) if not voxelwise else null

    p = np.ones(test.shape, dtype=np.float64)
    idx = np.flatnonzero(test > 0)
    vb = histogram_bin_of(test[idx], bins)
    p[idx] = null[vb, idx] if voxelwise else null[vb]
    p = np.maximum(smallest, np.minimum(p, 1.0))
    return float(p[0]) if scalar else p


def nullhist_to_stat(histogram_weights: ArrayLike, histogram_bins: ArrayLike, p: float) -> float:
    """The statistic threshold for an uncorrected p-value (NiMARE's ``_p_to_summarystat``).

    The centre of the last bin whose upper-tail probability is still greater than ``p``, so the
    threshold errs on the conservative side.

    Parameters
    ----------
    histogram_weights : array_like
        (B,) null histogram weights.
    histogram_bins : array_like
        (B,) bin centres.
    p : float
        The p-value.

    Returns
    -------
    float
    """
    weights = np.asarray(histogram_weights, dtype=np.float64).ravel()
    bins = np.asarray(histogram_bins)
    if weights.sum() <= 0:
        return float(bins[0])
    tail = np.cumsum(weights[::-1])[::-1]
    tail /= tail[0]
    below = np.flatnonzero(tail <= p)
    if below.size == 0:
        return float(bins[-1])
    return float(bins[max(0, below[0] - 1)])


# ---------------------------------------------------------------------------- ALE
def ale_histogram_bins(max_ma_values: ArrayLike) -> np.ndarray:
    """Bin centres of the ALE null: 0 to the largest attainable ALE value, step 1e-5.

    Each study's maximum MA value is rounded up to the grid (in float32, like the MA values);
    the largest ALE is ``1 - prod(1 - max_i)``.

    Parameters
    ----------
    max_ma_values : array_like
        Per-study maximum MA value over the mask.

    Returns
    -------
    numpy.ndarray
        float64 bin centres (eager).
    """
    m = np.asarray(max_ma_values, dtype=np.float32)
    m = np.ceil(m * ALE_INV_STEP) / ALE_INV_STEP
    max_poss = 1.0 - np.prod(1.0 - m)
    return np.round(np.arange(0, max_poss + 1.5 * _ALE_STEP, _ALE_STEP), 5)


@numba.njit(cache=True, nogil=True)
def _nearest_bin(value, inv_step, n_bins):
    # Subtracting the floor (not adding 0.5) keeps 0.49999999999999994 below the half.
    scaled = value * inv_step
    fl = np.floor(scaled)
    idx = int(fl) + (1 if scaled - fl >= 0.5 else 0)
    if idx < 0:
        return 0
    if idx >= n_bins:
        return n_bins - 1
    return idx


@numba.njit(cache=True, nogil=True)
def _row_histograms(block, inv_step, n_bins):
    n_rows, n_vox = block.shape
    out = np.zeros((n_rows, n_bins), dtype=np.int32)
    for r in range(n_rows):
        n_zero = 0
        for v in range(n_vox):
            val = block[r, v]
            if val > 0:
                out[r, _nearest_bin(np.float64(val), inv_step, n_bins)] += 1
            else:
                n_zero += 1
        out[r, 0] += n_zero
    return out


def ale_study_histograms(ma_block: np.ndarray) -> np.ndarray:
    """Per-study counts of MA values on the ALE grid (nearest centre, zeros in bin 0).

    Parameters
    ----------
    ma_block : numpy.ndarray
        (n_rows, n_voxels) MA values (float32) of some studies over the whole mask.

    Returns
    -------
    numpy.ndarray
        (n_rows, L) int32 counts, L = one past the highest occupied bin; every row sums to
        ``n_voxels`` (eager).
    """
    block = np.ascontiguousarray(ma_block)
    if block.shape[0] == 0:
        return np.zeros((0, 1), dtype=np.int32)
    top = float(block.max()) if block.size else 0.0
    n_bins = _nearest_bin(top, _ALE_INV_STEP_EXACT, 1 << 62) + 1
    return _row_histograms(block, _ALE_INV_STEP_EXACT, n_bins)


def count_histograms(values: np.ndarray, step: float = 1.0) -> np.ndarray:
    """Per-row histograms of values that are multiples of ``step`` (KDA sphere counts).

    Parameters
    ----------
    values : numpy.ndarray
        (n_rows, n_voxels) values (0, step, 2*step, ...).
    step : float
        Grid step (the kernel's ``value``).

    Returns
    -------
    numpy.ndarray
        (n_rows, L) int64 counts (eager).
    """
    values = np.asarray(values)
    if values.shape[0] == 0:
        return np.zeros((0, 1), dtype=np.int64)
    idx = round_half_away(np.asarray(values, dtype=np.float64) / step)
    idx = np.maximum(idx, 0)
    length = int(idx.max()) + 1 if idx.size else 1
    offs = (np.arange(values.shape[0], dtype=np.int64) * length)[:, None]
    counts = np.bincount((idx + offs).ravel(), minlength=length * values.shape[0])
    return counts.reshape(values.shape[0], length)


def pad_histograms(parts: list[np.ndarray]) -> np.ndarray:
    """Stack per-chunk (n_rows, L_i) histograms into one (sum n_rows, max L_i) array."""
    if not parts:
        return np.zeros((0, 1), dtype=np.int64)
    width = max(p.shape[1] for p in parts)
    rows = sum(p.shape[0] for p in parts)
    out = np.zeros((rows, width), dtype=parts[0].dtype)
    r = 0
    for p in parts:
        out[r : r + p.shape[0], : p.shape[1]] = p
        r += p.shape[0]
    return out


@numba.njit(cache=True, nogil=True)
def _ale_shift(a, e1m, centers, inv_step, n_bins):
    """Output bin of ``1 - e1m * (1 - centers[a])`` minus ``a``."""
    return _nearest_bin(1.0 - e1m * (1.0 - centers[a]), inv_step, n_bins) - a


@numba.njit(cache=True, nogil=True)
def _gallop_run_end(a_idx, t, s, e1m, centers, inv_step, n_bins):
    """First position after ``t`` whose shift is not ``s`` (positions ``t..`` have shift s)."""
    n_a = a_idx.shape[0]
    lo = t  # last position known to have shift s
    hi = n_a  # first position known to differ (or the end)
    step = 1
    while lo + step < n_a:
        probe = lo + step
        if _ale_shift(a_idx[probe], e1m, centers, inv_step, n_bins) == s:
            lo = probe
            step *= 2
        else:
            hi = probe
            break
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if _ale_shift(a_idx[mid], e1m, centers, inv_step, n_bins) == s:
            lo = mid
        else:
            hi = mid
    return hi


@numba.njit(cache=True, nogil=True)
def _run_end(a_idx, t, s, e1m, centers, inv_step, n_bins, contiguous):
    """:func:`_gallop_run_end`, started from the closed-form guess.

    ``shift(a)`` is ``round(E - a * c)`` up to rounding, with ``c = 1 - e1m`` and
    ``E = c * inv_step``, so shift ``s`` holds up to ``a = (E - s + 0.5) / c``. The guess is
    checked and moved a few positions; if it is further off, the galloping search decides.
    """
    n_a = a_idx.shape[0]
    c = 1.0 - e1m
    guess = np.floor((c * inv_step - s + 0.5) / c) + 1.0
    if guess > a_idx[n_a - 1]:
        p = n_a
    elif contiguous:
        p = int(guess) - a_idx[0]
    else:
        p = np.searchsorted(a_idx, int(guess))
    if p <= t:
        p = t + 1
    for _ in range(4):
        if p < n_a and _ale_shift(a_idx[p], e1m, centers, inv_step, n_bins) == s:
            p += 1
        elif p - 1 > t and _ale_shift(a_idx[p - 1], e1m, centers, inv_step, n_bins) != s:
            p -= 1
        else:
            return p
    return _gallop_run_end(a_idx, t, s, e1m, centers, inv_step, n_bins)


@numba.njit(cache=True, nogil=True)
def _first_output_at(a_idx, e1m, centers, inv_step, n_bins, k):
    """First position whose output bin is >= ``k`` (outputs are non-decreasing in ``a``)."""
    lo = 0
    hi = a_idx.shape[0]
    while lo < hi:
        mid = (lo + hi) // 2
        if a_idx[mid] + _ale_shift(a_idx[mid], e1m, centers, inv_step, n_bins) >= k:
            hi = mid
        else:
            lo = mid + 1
    return lo


@numba.njit(cache=True, nogil=True)
def _zero_outputs(centers, inv_step, n_bins):
    """Output bin of each bin ``a`` combined with the exp bin 0 (``1 - (1 - a)``, rounded)."""
    out = np.empty(n_bins, np.int64)
    for a in range(n_bins):
        out[a] = _nearest_bin(1.0 - (1.0 - centers[a]), inv_step, n_bins)
    return out


@numba.njit(cache=True, nogil=True)
def _ale_combine_range(
    a_idx, a_prob, e_idx, e_prob, centers, inv_step, n_bins, out, k_lo, k_hi, zero_out
):
    """``out[k] = sum of p_e * H[a]`` over the pairs whose output bin ``k`` is in [k_lo, k_hi).

    The output bin of a pair is the one nearest ``1 - (1 - a)(1 - e)`` (clipped to the last).
    For a fixed exp bin ``e`` it is non-decreasing in ``a``, so the pairs of ``e`` that land in
    the range are one contiguous stretch of ``a``; for ``e > 0`` the output grows by at most one
    per unit step of ``a`` (the score grows by ``(1 - c_e) * step < step``, rounding included),
    so ``shift(a) = bin(a) - a`` is non-increasing and the stretch splits into runs of constant
    shift, each a contiguous ``out[a + shift] += p_e * H[a]`` that LLVM vectorises (multiply,
    then add: no fused multiply-add, the rounding of the scalar loop). ``e = 0`` (where
    ``1 - (1 - a)`` is ``a`` only up to rounding) reads its output bins from ``zero_out``
    (:func:`_zero_outputs`). Every output bin gets its contributions in the order
    of NiMARE's double loop (exp bins outer, ``a`` inner), so any split of the output range is
    bit-for-bit NiMARE's result.
    """
    n_a = a_idx.shape[0]
    out[k_lo:k_hi] = 0.0
    if n_a == 0 or k_hi <= k_lo:
        return
    a0 = a_idx[0]
    contiguous = a_idx[n_a - 1] - a0 + 1 == n_a
    for ie in range(e_idx.shape[0]):
        e1m = 1.0 - centers[e_idx[ie]]
        ep = e_prob[ie]
        if e_idx[ie] == 0:
            lo = 0
            hi = n_a
            while lo < hi:
                mid = (lo + hi) // 2
                if zero_out[a_idx[mid]] >= k_lo:
                    hi = mid
                else:
                    lo = mid + 1
            for t in range(lo, n_a):
                k = zero_out[a_idx[t]]
                if k >= k_hi:
                    break
                out[k] += ep * a_prob[t]
            continue
        t = _first_output_at(a_idx, e1m, centers, inv_step, n_bins, k_lo)
        while t < n_a:
            s = _ale_shift(a_idx[t], e1m, centers, inv_step, n_bins)
            if a_idx[t] + s >= k_hi:
                break
            end = _run_end(a_idx, t, s, e1m, centers, inv_step, n_bins, contiguous)
            if contiguous:
                stop = end if end < k_hi - s - a0 else k_hi - s - a0
                dst = out[a0 + s + t : a0 + s + stop]
                src = a_prob[t:stop]
                for v in range(stop - t):
                    dst[v] = dst[v] + ep * src[v]
            else:
                stop = t + np.searchsorted(a_idx[t:end], k_hi - s)
                for v in range(t, stop):
                    out[a_idx[v] + s] += ep * a_prob[v]
            t = stop


@numba.njit(cache=True, nogil=True)
def _ale_combine(a_idx, a_prob, e_idx, e_prob, centers, inv_step, n_bins, out):
    """``out[bin(1 - (1 - a)(1 - e))] += p_e * H[a]`` over all pairs, in NiMARE's order."""
    zero_out = _zero_outputs(centers, inv_step, n_bins)
    _ale_combine_range(
        a_idx, a_prob, e_idx, e_prob, centers, inv_step, n_bins, out, np.int64(0), n_bins, zero_out
    )


@numba.njit(cache=True, nogil=True)
def _ale_overflow(a_idx, a_prob, e_idx, e_prob, centers, inv_step, n_bins, k_top, overflow):
    """The mass at or above ``k_top`` after a step: the old ``overflow`` (it stays above) plus
    ``p_e * H[a]`` over the pairs whose output bin is >= ``k_top``."""
    n_a = a_idx.shape[0]
    suffix = np.zeros(n_a + 1)
    for t in range(n_a - 1, -1, -1):
        suffix[t] = suffix[t + 1] + a_prob[t]
    total = overflow * e_prob.sum()
    for ie in range(e_idx.shape[0]):
        t = _first_output_at(a_idx, 1.0 - centers[e_idx[ie]], centers, inv_step, n_bins, k_top)
        total += e_prob[ie] * suffix[t]
    return total


@numba.njit(cache=True, nogil=True)
def _ale_null_loop(hist, counts, recip, centers, inv_step, n_bins, overflow, zero_out):
    """Combine studies ``1..`` of ``counts`` into ``hist`` (the exact bins below ``hist.size``).

    The mass at or above ``k_top = hist.size`` is the scalar ``overflow`` (returned): it only
    ever moves up, so the exact bins never need it.
    """
    n_studies, width = counts.shape
    k_top = hist.shape[0]
    k_first = np.int64(0)  # not the literal 0: callees compile for int64 only
    cur = hist
    nxt = np.zeros(k_top)
    a_idx = np.empty(k_top, np.int64)
    e_idx_all = np.empty(width, np.int64)
    e_prob_all = np.empty(width)
    for i in range(1, n_studies):
        n_e = 0
        for b in range(width):
            if counts[i, b] > 0:
                e_idx_all[n_e] = b
                e_prob_all[n_e] = np.float64(counts[i, b]) * recip
                n_e += 1
        e_idx = e_idx_all[:n_e]
        e_prob = e_prob_all[:n_e]
        n_a = 0
        for k in range(k_top):
            if cur[k] > 0:
                a_idx[n_a] = k
                n_a += 1
        a = a_idx[:n_a]
        if n_a and a[n_a - 1] - a[0] + 1 == n_a:
            a_prob = cur[a[0] : a[0] + n_a]  # contiguous: a view, no gather
        else:
            a_prob = cur[a]
        # outputs stop at the last occupied bin plus the largest shift
        end = k_top
        if n_a > 0 and a[n_a - 1] + e_idx[n_e - 1] + 2 < k_top:
            end = a[n_a - 1] + e_idx[n_e - 1] + 2
        nxt[end:] = 0.0
        _ale_combine_range(
            a, a_prob, e_idx, e_prob, centers, inv_step, n_bins, nxt, k_first, end, zero_out
        )
        if k_top < n_bins:
            overflow = _ale_overflow(
                a, a_prob, e_idx, e_prob, centers, inv_step, n_bins, k_top, overflow
            )
        cur, nxt = nxt, cur
    if (n_studies - 1) % 2 == 1:  # the last step wrote the spare buffer
        for k in range(k_top):
            hist[k] = cur[k]
    return overflow


def _grid_counts(counts: np.ndarray, n_bins: int) -> np.ndarray:
    """Counts on the grid: values beyond the last centre are clipped into it."""
    counts = np.asarray(counts, dtype=np.int64)
    if counts.shape[1] <= n_bins:
        return np.ascontiguousarray(counts)
    out = counts[:, :n_bins].copy()
    out[:, -1] += counts[:, n_bins:].sum(axis=1)
    return out


def ale_null_from_histograms(
    study_counts: np.ndarray,
    n_voxels: int,
    histogram_bins: np.ndarray,
    top_bin: int | None = None,
) -> np.ndarray:
    """Combine per-study MA histograms into the ALE null (Eickhoff et al. 2012).

    Each study's counts are turned into probabilities (divided by ``n_voxels``); the combined
    histogram starts as the first study's, and each further study b moves mass
    ``H[a] * h[b]`` to the bin nearest ``1 - (1 - a)(1 - b)``. Studies are combined in row order,
    and every bin is bit for bit NiMARE's.

    With ``top_bin``, bins ``0..top_bin`` are computed exactly (still NiMARE's bits, since the
    combination never moves mass to a lower bin) and the mass of every higher bin is lumped into
    bin ``top_bin + 1``: the upper-tail probability of any value up to ``top_bin`` is unchanged
    (up to float64 rounding of the lumped sum), and the work shrinks with the range. Estimators
    pass the bin of their largest observed statistic.

    Parameters
    ----------
    study_counts : numpy.ndarray
        (n_studies, L) counts from :func:`ale_study_histograms` (rows sum to ``n_voxels``).
    n_voxels : int
        Number of mask voxels.
    histogram_bins : numpy.ndarray
        Bin centres from :func:`ale_histogram_bins`.
    top_bin : int, optional
        Highest bin computed exactly (None: every bin, NiMARE's whole histogram).

    Returns
    -------
    numpy.ndarray
        (B,) float64 null histogram weights (eager); with ``top_bin``, zero above
        ``top_bin + 1``.
    """
    centers = np.asarray(histogram_bins, dtype=np.float64)
    n_bins = centers.size
    inv_step = 1 / (centers[1] - centers[0])
    if np.asarray(study_counts).shape[0] == 0:
        out = np.zeros(n_bins)
        out[0] = 1.0
        return out
    counts = _grid_counts(study_counts, n_bins)
    k_top = n_bins if top_bin is None else min(max(int(top_bin), 0) + 1, n_bins)
    recip = 1.0 / n_voxels
    first = counts[0] * recip
    hist = np.zeros(k_top)
    hist[: min(k_top, first.size)] = first[:k_top]
    overflow = float(first[k_top:].sum())
    zero_out = _zero_outputs(centers, inv_step, n_bins)
    overflow = _ale_null_loop(hist, counts, recip, centers, inv_step, n_bins, overflow, zero_out)
    out = np.zeros(n_bins)
    out[:k_top] = hist
    if k_top < n_bins:
        out[k_top] = overflow
    return out


# ---------------------------------------------------------------------------- MKDA
def poisson_binomial_null(prop_active: ArrayLike) -> np.ndarray:
    """Exact null of a count of independent Bernoulli studies (bins 0..k).

    Parameters
    ----------
    prop_active : array_like
        (k,) each study's probability of covering a voxel (its in-mask coverage fraction).

    Returns
    -------
    numpy.ndarray
        (k + 1,) float64 probabilities (eager).
    """
    hist = np.ones(1)
    for p in np.asarray(prop_active, dtype=np.float64).ravel():
        hist = np.convolve(hist, [1 - p, p])
    return hist


def _weighted_grid_step(weights: np.ndarray, n_bins: int) -> tuple[float, np.ndarray]:
    weights = np.asarray(weights, dtype=np.float64).ravel()
    n_bins = max(int(n_bins), 2)
    step = weights.sum() / (n_bins - 1)
    return step, np.maximum(np.rint(weights / step).astype(np.int64), 1)


def weighted_histogram_bins(weights: ArrayLike, n_bins: int = 100_000) -> np.ndarray:
    """Bin centres spanning ``[0, sum(weights)]`` for a weighted MKDA null.

    Each weight is a whole number (>= 1) of bins of ``sum(weights) / (n_bins - 1)``; the grid is
    extended to cover the rounded total.

    Parameters
    ----------
    weights : array_like
        Per-study weights.
    n_bins : int
        Nominal number of bins.

    Returns
    -------
    numpy.ndarray
        float64 bin centres (eager).
    """
    step, multiples = _weighted_grid_step(weights, n_bins)
    total = np.asarray(weights, dtype=np.float64).sum()
    n_top = max(int(multiples.sum()), int(np.ceil(total / step)))
    return np.arange(n_top + 1, dtype=np.float64) * step


def weighted_poisson_binomial_null(
    weights: ArrayLike, prop_active: ArrayLike, histogram_bins: ArrayLike
) -> np.ndarray:
    """Null of ``sum_i w_i * Bernoulli(p_i)`` on a uniform grid, by convolution.

    Parameters
    ----------
    weights, prop_active : array_like
        (k,) weights and coverage probabilities.
    histogram_bins : array_like
        Bin centres from :func:`weighted_histogram_bins`.

    Returns
    -------
    numpy.ndarray
        (B,) float64 probabilities (eager).
    """
    weights = np.asarray(weights, dtype=np.float64).ravel()
    prop = np.asarray(prop_active, dtype=np.float64).ravel()
    if weights.size != prop.size:
        raise ValueError(f"got {weights.size} weights for {prop.size} studies")
    bins = np.asarray(histogram_bins, dtype=np.float64)
    step = bins[1] - bins[0]
    multiples = np.maximum(np.rint(weights / step), 1).astype(np.int64)
    size = bins.size
    if multiples.sum() >= size:
        raise ValueError(
            f"a grid of {size} bins cannot hold a statistic spanning {int(multiples.sum()) + 1}"
        )
    cur = np.zeros(size)
    cur[0] = 1.0
    occupied = 0
    for m, p in zip(multiples, prop, strict=True):
        m = int(m)
        grown = occupied + m
        nxt = np.zeros(size)
        nxt[: occupied + 1] = cur[: occupied + 1] * (1.0 - p)
        nxt[m : grown + 1] += cur[: grown - m + 1] * p
        cur = nxt
        occupied = grown
    return cur


# ---------------------------------------------------------------------------- KDA
def additive_null_from_histograms(study_counts: np.ndarray, n_bins: int) -> np.ndarray:
    """Null of a sum over studies of independent per-study values, by convolution (KDA).

    Parameters
    ----------
    study_counts : numpy.ndarray
        (n_studies, L) per-study histograms on a grid of multiples of the step (any scale:
        each row is normalised to sum to one).
    n_bins : int
        Length of the output grid (values beyond it would be dropped; it must cover the
        largest attainable sum).

    Returns
    -------
    numpy.ndarray
        (n_bins,) float64 probabilities (eager).
    """
    counts = np.asarray(study_counts, dtype=np.float64)
    out = np.zeros(n_bins)
    if counts.shape[0] == 0:
        out[0] = 1.0
        return out
    hist = counts[0] / counts[0].sum()
    for row in counts[1:]:
        h = row / row.sum()
        nz = np.flatnonzero(h)
        hist = np.convolve(hist, h[: nz[-1] + 1] if nz.size else h[:1])
        hist = hist[: max(np.flatnonzero(hist).max() + 1, 1)] if np.any(hist) else hist[:1]
    m = min(hist.size, n_bins)
    out[:m] = hist[:m]
    return out
