"""VarianceBasedLikelihood and SampleSizeBasedLikelihood: ML/REML tau^2 by a compiled,
voxel-parallel bounded search (:mod:`nimare_dask.meta.ibma._numba`), then the same weighted
least squares and inference as the closed-form estimators (:mod:`._models`)."""

from __future__ import annotations

from typing import Any

import numpy as np

from nimare_dask.meta.ibma._models import (
    Groups,
    collapse_n,
    collapse_v,
    colsum,
    dl_tau2,
    infer,
    rows_weights,
)
from nimare_dask.meta.ibma._numba import minimize
from nimare_dask.meta.ibma.base import _TOOL
from nimare_dask.meta.ibma.regression import RegressionEstimator

__all__ = ["SampleSizeBasedLikelihood", "VarianceBasedLikelihood"]

_SEARCH_MAX = 1.0 - 1e-9
_SQRT_EPS = float(np.sqrt(np.finfo(float).eps))


def _check_method(method) -> str:
    if not isinstance(method, str) or method.lower() not in ("ml", "reml"):
        raise ValueError(f"No log-likelihood function defined for method '{method}'.")
    return method.lower()


class VarianceBasedLikelihood(RegressionEstimator):
    """Likelihood-based meta-regression with known sampling variances (NiMARE's).

    Parameters
    ----------
    method : {"ml", "reml"}, default="ml"
        Maximum or restricted maximum likelihood.
    **kwargs
        ``weight_scheme``, ``rho``, ``small_sample_correction`` and the common parameters.

    Notes
    -----
    Requires ``beta`` and ``varcope`` images. Maps: ``z, p, logp, est, se, tau2, dof``. The
    profile likelihood in tau^2 is minimised per voxel by PyMARE's algorithm (scan + safeguarded
    parabolic refinement, ``xtol=1e-6`` of the scanned bracket, ``ftol=1e-12``, 50 steps), with
    a per-voxel stopping rule; see :mod:`nimare_dask.meta.ibma._numba`.
    """

    _map_names = ("z", "p", "logp", "est", "se", "tau2", "dof")

    def __init__(self, method: str = "ml", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.method = method

    def _check_params(self) -> None:
        super()._check_params()
        _check_method(self.method)

    def _fit_bag(self, arrays, rows, codes, ctx):
        y, v = arrays
        groups = self._groups(codes)
        if self.weight_scheme == "collapse" and groups is not None:
            y, v = collapse_v(y, v, groups, self.rho)
            groups = Groups.singletons(y.shape[0])
        aggregate = groups is not None and self.weight_scheme != "individual" and groups.m > 1
        fy, fv = collapse_v(y, v, groups, self.rho) if aggregate else (y, v)
        scale = dl_tau2(fy, fv) + colsum(fv) / fv.shape[0]
        scale = np.where(np.isfinite(scale) & (scale > 0), scale, 1.0)
        kind = 0 if _check_method(self.method) == "ml" else 1
        u = minimize(kind, fy, fv, scale, _SEARCH_MAX)
        tau2 = scale * u / (1.0 - u)
        w = rows_weights(v, tau2, groups, self.weight_scheme)
        out = infer(y, v, w, tau2, groups, self._ssc)
        out["tau2"] = tau2
        return out

    def _description(self, n_images: int) -> str:
        return (
            f"An image-based meta-analysis was performed with {_TOOL}, on {n_images} beta and "
            "variance images using variance-based maximum likelihood estimation, in which "
            "tau-squared is estimated on a voxel-wise basis."
        )


class SampleSizeBasedLikelihood(RegressionEstimator):
    """Likelihood-based meta-regression with known sample sizes, unknown variances (NiMARE's).

    Parameters
    ----------
    method : {"ml", "reml"}, default="ml"
        Maximum or restricted maximum likelihood.
    **kwargs
        ``weight_scheme``, ``rho``, ``small_sample_correction`` and the common parameters.

    Notes
    -----
    Requires ``beta`` images and sample sizes (which must not all be equal in a bag: the model
    is then unidentified and NiMARE/PyMARE raise, as this does). Maps:
    ``z, p, logp, est, se, tau2, sigma2, dof``.
    """

    _image_types = ("beta",)
    _map_names = ("z", "p", "logp", "est", "se", "tau2", "sigma2", "dof")

    def __init__(self, method: str = "ml", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.method = method

    def _check_params(self) -> None:
        super()._check_params()
        _check_method(self.method)

    def _needs_sample_sizes(self) -> bool:
        return True

    def _fit_bag(self, arrays, rows, codes, ctx):
        (y,) = arrays
        n = np.broadcast_to(ctx["sample_sizes"][rows][:, None], y.shape)
        groups = self._groups(codes)
        if self.weight_scheme == "collapse" and groups is not None:
            y, n = collapse_n(y, n, groups, self.rho)
            groups = Groups.singletons(y.shape[0])
        aggregate = groups is not None and self.weight_scheme != "individual" and groups.m > 1
        fy, fn = collapse_n(y, n, groups, self.rho) if aggregate else (y, n)
        spread = fn.std(axis=0)
        if (spread < _SQRT_EPS).any():
            raise ValueError(
                "SampleSizeBasedLikelihood cannot work with all-equal sample sizes, and the "
                f"images {', '.join(ctx['ids'][r] for r in rows)} that cover "
                f"{int((spread < _SQRT_EPS).sum())} voxel(s) all have them."
            )
        reml = _check_method(self.method) == "reml"
        ratio = minimize(3 if reml else 2, fy, fn, np.ones(fy.shape[1]), 1.0)
        k = fy.shape[0]
        v_unit = ratio + (1.0 - ratio) / fn
        w_unit = 1.0 / v_unit
        beta = colsum(w_unit * fy) / colsum(w_unit)
        disp = np.maximum(colsum((fy - beta) ** 2 / v_unit), np.finfo(float).tiny)
        scale = disp / (k - (1 if reml else 0))
        sigma2 = scale * (1.0 - ratio)
        tau2 = scale * ratio
        v = sigma2 / n
        w = rows_weights(v, tau2, groups, self.weight_scheme)
        out = infer(y, v, w, tau2, groups, self._ssc)
        out["tau2"] = tau2
        out["sigma2"] = sigma2
        return out

    def _description(self, n_images: int) -> str:
        return (
            f"An image-based meta-analysis was performed with {_TOOL}, on {n_images} beta "
            "images using sample size-based maximum likelihood estimation, in which "
            "tau-squared and sigma-squared are estimated on a voxel-wise basis."
        )
