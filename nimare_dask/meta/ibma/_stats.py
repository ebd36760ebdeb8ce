"""Distribution tails and fixed-effect inference for the IBMA estimators, in log space.

Everything is elementwise over 1-D voxel arrays, so a voxel chunk is processed as one array
expression. The tail functions follow NiMARE 0.22.1 / PyMARE 0.0.13 so the maps match theirs:

* ``log_t_sf`` / ``t_to_nlogp`` / ``t_to_z``: adapted from nimare/transforms.py (NiMARE, MIT
  licence, Copyright (c) 2018- NiMARE developers): SciPy's ``t.logsf`` with the far-tail power
  law where it underflows, and the t-to-z transform by matching log tails.
* ``log_chi2_sf``: adapted from pymare/stats.py (PyMARE, MIT licence, Copyright (c) 2019-
  PyMARE developers): SciPy's ``chi2.logsf`` with Lentz's continued fraction for the
  regularised upper incomplete gamma where SciPy underflows.
* ``fe_stats``: the fixed-effect z/p/logp of ``pymare.results.MetaRegressionResults
  .get_fe_stats`` (normal reference without degrees of freedom, t otherwise).

``nlogp`` here is PyMARE's convention, the natural logarithm of p (<= 0); the ``logp`` maps
NiMARE writes are ``-log10(p)`` (:func:`logp_map`).
"""

from __future__ import annotations

import math

import numpy as np
from scipy import special
from scipy import stats as ss

__all__ = ["fe_stats", "log_chi2_sf", "log_t_sf", "logp_map", "t_to_nlogp", "t_to_z"]

_LN2 = math.log(2.0)
_LN10 = math.log(10.0)
_F32_MAX = float(np.finfo(np.float32).max)
_GAMMA_CF_MAX_ITER = 300
_GAMMA_CF_TOL = float(np.finfo(np.float64).eps)


def _log_t_power_law(dof):
    return (
        special.gammaln((dof + 1) / 2.0)
        - special.gammaln(dof / 2.0)
        - 0.5 * np.log(np.pi)
        + ((dof - 2) / 2.0) * np.log(dof)
    )


def log_t_sf(t: np.ndarray, dof) -> np.ndarray:
    """``ln P(T > t)`` for Student's t, finite where SciPy's ``logsf`` underflows (eager)."""
    t = np.atleast_1d(np.asarray(t, dtype=float))
    dof = np.broadcast_to(np.asarray(dof, dtype=float), t.shape)
    with np.errstate(divide="ignore"):
        out = np.asarray(ss.t.logsf(t, dof), dtype=float).copy()
    under = ~np.isfinite(out) & np.isfinite(t) & (t > 0)
    if under.any():
        out[under] = _log_t_power_law(dof[under]) - dof[under] * np.log(t[under])
    return out


def t_to_nlogp(t: np.ndarray, dof, tail: str = "two") -> np.ndarray:
    """Natural log of the one- or two-tailed p of t statistics (NiMARE's ``t_to_nlogp``)."""
    t = np.asarray(t, dtype=float)
    if tail == "two":
        out = _LN2 + log_t_sf(np.abs(t), dof)
    elif tail == "one":
        out = log_t_sf(t, dof)
    else:
        raise ValueError('tail must be "one" or "two"')
    return np.minimum(out.reshape(t.shape), 0.0)


def t_to_z(t: np.ndarray, dof) -> np.ndarray:
    """z with the same one-tailed log p as ``t`` (sign kept; NiMARE's ``t_to_z``)."""
    t = np.asarray(t, dtype=float)
    nlogp = t_to_nlogp(np.abs(t), dof, tail="one")
    return np.sign(t) * np.maximum(-special.ndtri_exp(nlogp), 0.0) + 0.0


def log_chi2_sf(q: np.ndarray, df) -> np.ndarray:
    """``ln P(X > q)`` for chi-squared ``X`` with ``df`` degrees of freedom, without underflow."""
    q = np.asarray(q, dtype=float)
    df = np.asarray(df, dtype=float)
    a, x = np.broadcast_arrays(df / 2.0, q / 2.0)
    with np.errstate(divide="ignore"):
        out = np.broadcast_to(ss.chi2.logsf(q, df), a.shape).astype(float, copy=True)
    tail = ~np.isfinite(out) & np.isfinite(x) & (x >= a + 1.0)
    if not np.any(tail):
        return out
    a_t, x_t = a[tail], x[tail]
    tiny = np.finfo(np.float64).tiny
    b = x_t + 1.0 - a_t
    c = np.full(b.shape, 1.0 / tiny)
    d = 1.0 / b
    h = d.copy()
    active = np.ones(b.shape, dtype=bool)
    for i in range(1, _GAMMA_CF_MAX_ITER + 1):
        an = -i * (i - a_t)
        b = b + 2.0
        d = an * d + b
        d = np.where(np.abs(d) < tiny, tiny, d)
        c = b + an / c
        c = np.where(np.abs(c) < tiny, tiny, c)
        d = 1.0 / d
        delta = d * c
        h = np.where(active, h * delta, h)
        active &= np.abs(delta - 1.0) > _GAMMA_CF_TOL
        if not np.any(active):
            break
    out[tail] = -x_t + a_t * np.log(x_t) - special.gammaln(a_t) + np.log(h)
    return out


def logp_map(nlogp: np.ndarray) -> np.ndarray:
    """``-log10(p)`` from ``ln p``, clipped to ``[0, float32 max]`` (NaN kept; eager)."""
    out = np.asarray(nlogp, dtype=float) / -_LN10 + 0.0
    return np.where(np.isnan(out), np.nan, np.clip(out, 0.0, _F32_MAX))


def fe_stats(est: np.ndarray, var: np.ndarray, dof) -> dict[str, np.ndarray]:
    """z, p, logp (``-log10 p``) and se of an intercept estimate with variance ``var``.

    Parameters
    ----------
    est, var : numpy.ndarray
        Estimate and its variance, one per voxel.
    dof : None, float or numpy.ndarray
        None for a normal reference, else the t reference's degrees of freedom.

    Returns
    -------
    dict
        ``est, se, z, p, logp`` (eager float64 arrays); z, p and logp are NaN where the
        standard error is not positive and finite.
    """
    se = np.sqrt(var)
    with np.errstate(invalid="ignore", divide="ignore"):
        stat = est / se
        if dof is None:
            log_tail = ss.norm.logsf(np.abs(stat))
            z = stat
        else:
            log_tail = ss.t.logsf(np.abs(stat), dof)
            z = -np.sign(stat) * special.ndtri_exp(log_tail)
        nlogp = np.minimum(log_tail + _LN2, 0.0)
    undefined = ~np.isfinite(se) | (se <= 0)
    return {
        "est": est,
        "se": se,
        "z": np.where(undefined, np.nan, z),
        "p": np.where(undefined, np.nan, np.exp(nlogp)),
        "logp": np.where(undefined, np.nan, logp_map(nlogp)),
    }
