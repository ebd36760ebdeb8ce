"""Intercept-only meta-regression on one liberal-mask bag, as array expressions over voxels.

Every IBMA regression estimator of NiMARE 0.22.1 fits PyMARE 0.0.13 with the design ``X = 1``
(an intercept only). With one predictor PyMARE's matrix algebra collapses to sums over rows and
over dependence groups, which is what this module computes for all voxels of a bag at once:
inputs are ``(k, V)`` arrays (k images of the bag, V voxels), outputs ``(V,)`` arrays.

Derivations (X = 1, weights ``w``, ``W = sum w``, residuals ``e = y - beta``; group ``j`` has
``n_j`` rows and weight ``W_j``):

* WLS: ``beta = sum(w y) / W``, model covariance ``1 / W``.
* CR2 sandwich (``pymare.stats.cluster_robust_cov``): the adjustment ``(I - H_j)^(-1/2)`` has one
  non-unit eigenvalue, ``1 - W_j / W``, along the whitened design, so the adjusted score is
  ``s_j = sum_j(w e) / sqrt(1 - W_j / W)`` and the variance ``sum_j s_j^2 / W^2``.
* Satterthwaite degrees of freedom (``pymare.stats.satterthwaite_dof``): with
  ``c_j = 1 - W_j / W``, ``b_j = W_j / (W^2 c_j)`` and ``d_j = W_j^2 / (W^3 c_j)``:
  ``dof = (sum b - sum d)^2 / ((sum d)^2 - 2 sum b d + sum b^2)``, floored at 1.
* Knapp-Hartung: ``q = sum(w e^2) / (k - 1)`` (0 below machine epsilon), variance ``q / W``,
  ``k - 1`` degrees of freedom.
* DerSimonian-Laird tau^2: ``(Q - (k - 1)) / (W - sum w^2 / W)``, floored at 0.
* Correlated-effects tau^2 (Hedges, Tipton & Johnson 2010; ``correlated_effects_tau2``).
* Hedges tau^2: ``(sum (y - ybar)^2 - (1 - 1/k) sum v) / (k - 1)``, floored at 0.

Formulas adapted from pymare/stats.py and pymare/estimators/estimators.py (PyMARE, MIT licence,
Copyright (c) 2019- PyMARE developers), rewritten for the intercept-only case.
"""

from __future__ import annotations

import numpy as np

from nimare_dask.meta.ibma._stats import fe_stats

__all__ = ["Groups", "RegressionFit", "colsum", "regression_fit"]

_MIN_LEVERAGE_COMPLEMENT = 1e-10
_EPS = float(np.finfo(float).eps)


def colsum(x: np.ndarray) -> np.ndarray:
    """Sum over rows, one row after another: a voxel's sum never depends on the chunk's shape
    (NumPy switches to an 8-way pairwise sum when a reduction axis becomes contiguous, e.g. for
    a one-voxel bag, which would change the last bit)."""
    x = np.asarray(x, dtype=float)
    out = np.zeros(x.shape[1:])
    for row in x:
        out += row
    return out


class Groups:
    """Dependence groups of a bag's rows: codes, sizes and group sums as a matrix product.

    Parameters
    ----------
    codes : numpy.ndarray
        One integer group code per row (any integers).
    """

    def __init__(self, codes: np.ndarray) -> None:
        uniq, local = np.unique(np.asarray(codes), return_inverse=True)
        self.local = local.reshape(-1)
        self.m = int(uniq.size)
        self.onehot = (self.local[None, :] == np.arange(self.m)[:, None]).astype(float)
        self.sizes = self.onehot.sum(axis=1)

    @classmethod
    def singletons(cls, k: int) -> Groups:
        """Every row its own group."""
        return cls(np.arange(k))

    def sum(self, x: np.ndarray) -> np.ndarray:
        """Per-group sums of ``(k, V)`` -> ``(m, V)``, row by row in a fixed order (so a
        voxel's value never depends on which other voxels share its chunk, unlike a BLAS
        product whose rounding depends on the shapes)."""
        x = np.asarray(x, dtype=float)
        out = np.zeros((self.m,) + x.shape[1:])
        for row, g in enumerate(self.local):
            out[g] += x[row]
        return out

    def mean(self, x: np.ndarray) -> np.ndarray:
        """Per-group means of ``(k, V)`` -> ``(m, V)``."""
        return self.sum(x) / self.sizes[:, None]


def collapse_v(y: np.ndarray, v: np.ndarray, groups: Groups, rho: float):
    """One row per group: mean effect and the variance of a mean correlated at ``rho``."""
    sizes = groups.sizes[:, None]
    sum_v = groups.sum(v)
    cross = groups.sum(np.sqrt(v)) ** 2 - sum_v
    cv = np.where(sizes == 1, sum_v, (sum_v + rho * cross) / sizes**2)
    return groups.mean(y), cv


def collapse_n(y: np.ndarray, n: np.ndarray, groups: Groups, rho: float):
    """One row per group: mean effect and its effective sample size (``collapse_groups_by_n``)."""
    sizes = groups.sizes[:, None]
    inverse = groups.sum(1.0 / n)
    cross = groups.sum(1.0 / np.sqrt(n)) ** 2 - inverse
    with np.errstate(divide="ignore", invalid="ignore"):
        neff = np.where(sizes == 1, groups.sum(n), sizes**2 / (inverse + rho * cross))
    return groups.mean(y), neff


def wls(y: np.ndarray, w: np.ndarray):
    """Weighted mean and total weight per voxel."""
    W = colsum(w)
    with np.errstate(divide="ignore", invalid="ignore"):
        return colsum(w * y) / W, W


def dl_tau2(y: np.ndarray, v: np.ndarray) -> np.ndarray:
    """DerSimonian-Laird tau^2 per voxel (rows treated as independent)."""
    k = y.shape[0]
    if k <= 1:
        return np.zeros(y.shape[1])
    w = 1.0 / v
    beta, W = wls(y, w)
    Q = colsum(w * (y - beta) ** 2)
    A = W - colsum(w**2) / W
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.maximum(0.0, (Q - (k - 1)) / A)


def correlated_effects_tau2(y: np.ndarray, v: np.ndarray, groups: Groups, rho: float):
    """Method-of-moments tau^2 of the correlated-effects model (X = 1)."""
    sizes = groups.sizes[:, None]
    gw = 1.0 / (sizes * groups.mean(v))  # (m, V)
    row_w = gw[groups.local]
    bread = 1.0 / colsum(gw * sizes)
    within = bread * colsum(gw)
    across = bread * colsum(gw * sizes)
    beta, _ = wls(y, row_w)
    q_e = colsum(row_w * (y - beta) ** 2)
    numerator = q_e - groups.m + within + rho * (across - within)
    denominator = colsum(sizes * gw) - bread * colsum(gw**2 * sizes**2)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.maximum(0.0, numerator / denominator)


def hedges_tau2(y: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Hedges' tau^2 per voxel (unweighted residual excess)."""
    k = y.shape[0]
    if k <= 1:
        return np.zeros(y.shape[1])
    rss = colsum((y - colsum(y) / k) ** 2)
    expected = colsum((1.0 - 1.0 / k) * v)
    return np.maximum(0.0, (rss - expected) / (k - 1))


def cr2_variance(y, w, beta, W, groups: Groups) -> np.ndarray:
    """CR2 cluster-robust variance of the intercept."""
    S = groups.sum(w * (y - beta))
    comp = np.maximum(1.0 - groups.sum(w) / W, _MIN_LEVERAGE_COMPLEMENT)
    return colsum((S**2) / comp) / W**2


def satterthwaite_dof(w, W, groups: Groups) -> np.ndarray:
    """Satterthwaite degrees of freedom of the CR2 intercept test, floored at 1."""
    Wj = groups.sum(w)
    comp = np.maximum(1.0 - Wj / W, _MIN_LEVERAGE_COMPLEMENT)
    b = Wj / (W**2 * comp)
    d = Wj**2 / (W**3 * comp)
    trace = colsum(b) - colsum(d)
    trace_sq = colsum(d) ** 2 - 2.0 * colsum(b * d) + colsum(b**2)
    with np.errstate(divide="ignore", invalid="ignore"):
        dof = trace**2 / trace_sq
    return np.maximum(np.where(np.isfinite(dof), dof, 1.0), 1.0)


def rows_weights(v, tau2, groups: Groups | None, scheme: str) -> np.ndarray:
    """WLS weights: the correlated-effects rescaling for ``"rescale"`` with groups, else
    ``1 / (v + tau2)``."""
    if scheme == "rescale" and groups is not None:
        sizes = groups.sizes[:, None]
        return (1.0 / (sizes * (groups.mean(v) + tau2)))[groups.local]
    return 1.0 / (v + tau2)


class RegressionFit(dict):
    """Maps of one fitted bag: ``est, se, z, p, logp, dof`` (+ ``tau2``, ``sigma2``)."""


def infer(y, v, w, tau2, groups: Groups | None, ssc: str) -> RegressionFit:
    """Fixed-effect inference at the given weights (CR2 + Satterthwaite with groups, else the
    small-sample correction ``ssc``: ``"wald"``, ``"knapp-hartung"`` or
    ``"knapp-hartung-conservative"``)."""
    k = y.shape[0]
    beta, W = wls(y, w)
    if groups is not None:
        var = cr2_variance(y, w, beta, W, groups)
        dof = satterthwaite_dof(w, W, groups)
    elif ssc == "wald" or k - 1 < 1:
        var, dof = 1.0 / W, None
    else:
        rss = colsum(w * (y - beta) ** 2)
        scale = np.where(rss <= _EPS, 0.0, rss / (k - 1))
        if ssc == "knapp-hartung-conservative":
            scale = np.maximum(scale, 1.0)
        var, dof = scale / W, float(k - 1)
    out = RegressionFit(fe_stats(beta, var, dof))
    # NiMARE's dof map: the reference's degrees of freedom, or the group count minus one when
    # the reference is normal (an ungrouped bag has one group per row)
    dof_map = float(k - 1) if dof is None else np.asarray(dof, dtype=float)
    out["dof"] = np.broadcast_to(dof_map, (y.shape[1],)).astype(float)
    return out


def regression_fit(
    y: np.ndarray,
    v: np.ndarray,
    groups: Groups | None,
    *,
    scheme: str,
    rho: float,
    ssc: str,
    tau2_method: str,
    tau2: float = 0.0,
) -> RegressionFit:
    """Fit one bag with a moment (or given) tau^2 as PyMARE's estimators do.

    Parameters
    ----------
    y, v : numpy.ndarray
        ``(k, V)`` estimates and sampling variances.
    groups : Groups or None
        Dependence groups of the rows, or None when no group holds two rows.
    scheme : {"rescale", "individual", "collapse"}
        PyMARE's ``weight_scheme``.
    rho : float
        Assumed within-group correlation.
    ssc : str
        Small-sample correction of the ungrouped path.
    tau2_method : {"given", "dl", "hedges"}
        How tau^2 is obtained.
    tau2 : float
        The given tau^2 (``tau2_method="given"``).

    Returns
    -------
    RegressionFit
        Eager ``(V,)`` maps.
    """
    if scheme == "collapse" and groups is not None:
        y, v = collapse_v(y, v, groups, rho)
        groups = Groups.singletons(y.shape[0])
    aggregate = groups is not None and scheme in ("rescale", "collapse") and groups.m > 1
    if tau2_method == "given":
        t2 = np.full(y.shape[1], float(tau2))
    elif tau2_method == "dl":
        if aggregate and scheme == "rescale":
            t2 = correlated_effects_tau2(y, v, groups, rho)
        else:
            t2 = dl_tau2(y, v)
    elif tau2_method == "hedges":
        t2 = hedges_tau2(*collapse_v(y, v, groups, rho)) if aggregate else hedges_tau2(y, v)
    else:
        raise ValueError(f"unknown tau2_method {tau2_method!r}")
    w = rows_weights(v, t2, groups, scheme)
    out = infer(y, v, w, t2, groups, ssc)
    out["tau2"] = t2
    return out
