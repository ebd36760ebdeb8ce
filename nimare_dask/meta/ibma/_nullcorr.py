"""The empirical null correlation between input maps (Fishers' and Stouffers' dependence model).

NiMARE 0.22.1 (``nimare/meta/ibma.py:_null_correlation``) correlates every pair of images over
the voxels both are valid at, after removing each voxel's mean over the images valid there, and
then inverts the shrinkage that centering induces within dependence groups
(``pymare.stats.undo_centering_shrinkage``). The pairwise sums are additive over voxels, so each
voxel chunk contributes five small ``(K, K)`` matrices (:func:`chunk_sums`) and the correlation
is formed once from their totals (:func:`null_correlation`).

Adapted from nimare/meta/ibma.py (NiMARE, MIT licence, Copyright (c) 2018- NiMARE developers) and
pymare/stats.py (PyMARE, MIT licence, Copyright (c) 2019- PyMARE developers).
"""

from __future__ import annotations

import numpy as np

__all__ = ["chunk_sums", "null_correlation", "undo_centering_shrinkage"]


def chunk_sums(values: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, ...]:
    """Pairwise-complete sums of one voxel chunk: ``(pairs, sums, squares, cross)`` (eager)."""
    weights = valid.astype(float)
    counts = weights.sum(axis=0)
    totals = np.where(valid, values, 0.0).sum(axis=0, dtype=float)
    means = np.divide(totals, counts, out=np.zeros_like(totals), where=counts > 0)
    resid = np.where(valid, values.astype(float) - means, 0.0)
    return weights @ weights.T, resid @ weights.T, (resid * resid) @ weights.T, resid @ resid.T


def null_correlation(parts: tuple[np.ndarray, ...], codes: np.ndarray) -> np.ndarray | None:
    """The de-shrunk null correlation from summed :func:`chunk_sums` (None if not estimable)."""
    pairs, sums, squares, cross = parts
    with np.errstate(invalid="ignore", divide="ignore"):
        pair_means = sums / pairs
        covariance = cross / pairs - pair_means * pair_means.T
        variance = squares / pairs - pair_means * pair_means
        corr = covariance / np.sqrt(variance * variance.T)
    estimable = np.isfinite(corr) & (pairs >= 2)
    if not estimable[~np.eye(corr.shape[0], dtype=bool)].any():
        return None
    corr = np.where(estimable, corr, 0.0)
    corr = np.clip((corr + corr.T) / 2.0, -1.0, 1.0)
    np.fill_diagonal(corr, 1.0)
    return undo_centering_shrinkage(corr, codes)


def _clamp(value, low, high):
    if value < low:
        return low
    if value > high:
        return high
    return value


def undo_centering_shrinkage(corr: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Invert the within-group correlation shrinkage that centering over K images induces."""
    corr = np.array(corr, dtype=float, copy=True)
    groups = np.asarray(groups).ravel()
    n = corr.shape[0]
    _, first, codes = np.unique(groups, return_index=True, return_inverse=True)
    order = np.argsort(first, kind="stable")  # groups in order of first occurrence
    members = [np.flatnonzero(codes == g) for g in order]
    sizes = [float(m.size) for m in members]
    pooled = [i for i in range(len(members)) if members[i].size > 1]
    squared = n**2
    selections, entries, observed = (
        [None] * len(members),
        [None] * len(members),
        [0.0] * len(members),
    )
    for i in pooled:
        member = members[i]
        mask = ~np.eye(member.size, dtype=bool)
        selection = np.ix_(member, member)
        selections[i] = (selection, mask)
        entries[i] = corr[selection][mask]
        observed[i] = float(entries[i].mean())
    coefficients = [None] * len(members)
    for i in pooled:
        size = sizes[i]
        own = size * (size - 1) / squared
        outside = n - size
        coefficients[i] = (
            1.0 - 2.0 * (size - 1) / n + own,
            -2.0 * (size - 1) / n + own,
            outside * (outside + 1.0),
            -1.0 / (size - 1),
        )

    def solve(r, i, others):
        num_slope, den_slope, outside, floor = coefficients[i]
        offset = -2.0 / n + (n + others) / squared
        identifying = (outside + others) / squared
        if identifying <= 0:
            return _clamp(r, -1.0, 1.0)
        shifted = 1.0 + offset
        low = (floor * num_slope + offset) / (floor * den_slope + shifted)
        r = _clamp(r, low, 1.0)
        rho = (r * shifted - offset) / (num_slope - r * den_slope)
        return _clamp(rho, floor, 1.0)

    weights = [s * (s - 1) for s in sizes]
    contributions = [0.0] * len(members)
    for _ in range(50):
        total = sum(contributions)
        updated = [0.0] * len(members)
        for i in pooled:
            updated[i] = weights[i] * solve(observed[i], i, total - contributions[i])
        if all(abs(updated[i] - contributions[i]) <= 1e-12 for i in pooled):
            break
        contributions = updated
    offset = 1.0 / (n - 1)
    corrected = (corr + offset) / (1.0 + offset)
    total = sum(contributions)
    for i in pooled:
        selection, off_diagonal = selections[i]
        entry = entries[i]
        mean = observed[i]
        rho = solve(mean, i, total - contributions[i])
        deviation = entry - mean
        highest, lowest = deviation.max(), deviation.min()
        scale = 1.0
        if highest > 0:
            scale = min(scale, (1.0 - rho) / highest)
        if lowest < 0:
            scale = min(scale, (-1.0 - rho) / lowest)
        scale = max(scale, 0.0)
        block = np.empty(off_diagonal.shape)
        block[off_diagonal] = rho + scale * deviation
        np.fill_diagonal(block, 1.0)
        corrected[selection] = block
    np.fill_diagonal(corrected, 1.0)
    return np.clip(corrected, -1.0, 1.0)
