"""Vectorised bounded scalar minimisation of the profile likelihoods, one voxel per lane.

PyMARE 0.0.13's ``bounded_scalar_min`` scans 31 fixed fractions of the search interval, brackets
the best point and refines it by parabolic interpolation with Brent's safeguards (golden-section
steps), stopping when every dataset is *settled* (scan minimum on an end of the interval),
*flat* (objective spread <= ``ftol (1 + |f|)``) or *narrow* (bracket <= ``xtol`` x the scanned
bracket), or after ``maxiter`` steps; it returns the better of the refined and the best scan
point. This is the same algorithm, compiled, with the stopping rule applied **per voxel**
(PyMARE keeps refining converged datasets until the last one converges, so its optimum can be a
little tighter; both lie inside the same ``xtol`` bracket).

Objectives (``kind``): 0/1 variance-based ML/REML over ``u`` with ``tau2 = scale u / (1 - u)``;
2/3 sample-size-based ML/REML over the variance ratio ``r = tau2 / (tau2 + sigma2)``.
Adapted from pymare/stats.py and pymare/estimators/estimators.py (PyMARE, MIT licence,
Copyright (c) 2019- PyMARE developers).
"""

from __future__ import annotations

import math

import numba
import numpy as np

__all__ = ["SCAN_FRACTIONS", "minimize"]

SCAN_FRACTIONS = np.unique(
    np.concatenate(
        [np.linspace(0.0, 1.0, 25), [1e-6, 1e-4, 1e-2], 1.0 - np.array([1e-2, 1e-4, 1e-6])]
    )
)
_GOLDEN = (3.0 - math.sqrt(5.0)) / 2.0
_EPS = float(np.finfo(float).eps)
_TINY = float(np.finfo(float).tiny)


@numba.njit(cache=True, fastmath=False)
def _nll(kind, x, y, s, scale):
    k = y.shape[0]
    if kind <= 1:
        tau2 = scale * x / (1.0 - x)
        W = 0.0
        wy = 0.0
        slw = 0.0
        for i in range(k):
            w = 1.0 / (s[i] + tau2)
            W += w
            wy += w * y[i]
            slw += math.log(w)
        b = wy / W
        rss = 0.0
        for i in range(k):
            w = 1.0 / (s[i] + tau2)
            rss += w * (y[i] - b) ** 2
        out = -0.5 * (slw - rss)
        if kind == 1:
            out += 0.5 * math.log(W)
        return out
    W = 0.0
    wy = 0.0
    slv = 0.0
    for i in range(k):
        vu = x + (1.0 - x) / s[i]
        W += 1.0 / vu
        wy += y[i] / vu
        slv += math.log(vu)
    b = wy / W
    disp = 0.0
    for i in range(k):
        vu = x + (1.0 - x) / s[i]
        disp += (y[i] - b) ** 2 / vu
    disp = max(disp, _TINY)
    if kind == 2:
        sc = disp / k
        return 0.5 * (slv + k * math.log(sc) + k)
    sc = disp / (k - 1)
    return 0.5 * (slv + (k - 1) * math.log(sc) + (k - 1) + math.log(W))


@numba.njit(cache=True)
def _eval(kind, x, y, s, scale):
    f = _nll(kind, x, y, s, scale)
    if math.isnan(f):
        return math.inf
    return f


@numba.njit(cache=True)
def _minimize_one(kind, y, s, scale, lower, upper, fracs, xtol, ftol, maxiter):
    n = fracs.shape[0]
    xs = np.empty(n)
    fs = np.empty(n)
    best = 0
    for j in range(n):
        xs[j] = lower + fracs[j] * (upper - lower)
        fs[j] = _eval(kind, xs[j], y, s, scale)
        if fs[j] < fs[best]:
            best = j
    settled = best == 0 or best == n - 1
    middle = min(max(best, 1), n - 2)
    low, f_low = xs[middle - 1], fs[middle - 1]
    mid, f_mid = xs[middle], fs[middle]
    high, f_high = xs[middle + 1], fs[middle + 1]
    tol = xtol * (high - low)
    last_step = high - low
    previous_step = high - low
    for _ in range(maxiter):
        spread = max(abs(f_low - f_mid), abs(f_high - f_mid))
        flat = spread <= ftol * (1.0 + abs(f_mid))
        if settled or flat or (high - low <= tol):
            break
        left = mid - low
        right = mid - high
        slope = left * (f_mid - f_high) - right * (f_mid - f_low)
        curve = (f_high - f_mid) / (high - mid) - (f_mid - f_low) / (mid - low)
        if slope != 0.0:
            vertex = mid - 0.5 * (left**2 * (f_mid - f_high) - right**2 * (f_mid - f_low)) / slope
        else:
            vertex = math.nan
        floor = max(tol, _EPS * (1.0 + abs(mid)))
        proposed = abs(vertex - mid)
        usable = (
            curve > 0
            and math.isfinite(vertex)
            and vertex > low + floor
            and vertex < high - floor
            and proposed > floor
            and proposed < 0.5 * previous_step
        )
        larger_half = max(mid - low, high - mid)
        if (mid - low) > (high - mid):
            safeguard = mid - _GOLDEN * (mid - low)
        else:
            safeguard = mid + _GOLDEN * (high - mid)
        cand = vertex if usable else safeguard
        f_cand = _eval(kind, cand, y, s, scale)
        if usable:
            previous_step = last_step
            last_step = proposed
        else:
            previous_step = larger_half
            last_step = _GOLDEN * larger_half
        after = cand > mid
        better = f_cand < f_mid
        if after:
            if better:
                low, f_low = mid, f_mid
            else:
                high, f_high = cand, f_cand
        else:
            if better:
                high, f_high = mid, f_mid
            else:
                low, f_low = cand, f_cand
        if better:
            mid, f_mid = cand, f_cand
    if not (f_mid <= fs[best]):
        return xs[best]
    return mid


@numba.njit(parallel=True, cache=True)
def _minimize(kind, y, s, scale, lower, upper, fracs, xtol, ftol, maxiter):
    n_vox = y.shape[1]
    out = np.empty(n_vox)
    for v in numba.prange(n_vox):
        out[v] = _minimize_one(
            kind,
            np.ascontiguousarray(y[:, v]),
            np.ascontiguousarray(s[:, v]),
            scale[v],
            lower,
            upper,
            fracs,
            xtol,
            ftol,
            maxiter,
        )
    return out


def minimize(
    kind: int,
    y: np.ndarray,
    s: np.ndarray,
    scale: np.ndarray,
    upper: float,
    xtol: float = 1e-6,
    ftol: float = 1e-12,
    maxiter: int = 50,
) -> np.ndarray:
    """Minimiser of the profile likelihood ``kind`` for every voxel (column) of ``y``.

    Parameters
    ----------
    kind : int
        0/1 variance-based ML/REML (``s`` = variances), 2/3 sample-size-based ML/REML
        (``s`` = sample sizes).
    y, s : numpy.ndarray
        ``(k, V)`` float64.
    scale : numpy.ndarray
        ``(V,)`` search scale (variance-based; ignored otherwise).
    upper : float
        Upper end of the search interval (lower is 0).
    xtol, ftol, maxiter
        PyMARE's ``bounded_scalar_min`` tolerances.

    Returns
    -------
    numpy.ndarray
        ``(V,)`` minimisers (eager).
    """
    y = np.asarray(y, dtype=np.float64)
    s = np.ascontiguousarray(np.broadcast_to(np.asarray(s, dtype=np.float64), y.shape))
    scale = np.ascontiguousarray(np.broadcast_to(np.asarray(scale, dtype=np.float64), y.shape[1:]))
    return _minimize(
        int(kind), y, s, scale, 0.0, float(upper), SCAN_FRACTIONS, xtol, ftol, int(maxiter)
    )
