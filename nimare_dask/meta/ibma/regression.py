"""The PyMARE-backed meta-regression estimators of NiMARE: WeightedLeastSquares,
DerSimonianLaird, Hedges and FixedEffectsHedges (closed forms, :mod:`._models`)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from nimare_dask.meta.ibma._models import Groups, regression_fit
from nimare_dask.meta.ibma.base import _TOOL, IBMAEstimator

__all__ = [
    "DerSimonianLaird",
    "FixedEffectsHedges",
    "Hedges",
    "RegressionEstimator",
    "WeightedLeastSquares",
]

WEIGHT_SCHEMES = ("individual", "rescale", "collapse")
SMALL_SAMPLE_CORRECTIONS = ("knapp-hartung", "knapp-hartung-conservative", "wald")


class RegressionEstimator(IBMAEstimator):
    """Base of the meta-regression estimators (NiMARE's ``_PyMARERegressionEstimator``).

    Parameters
    ----------
    weight_scheme : {"rescale", "individual", "collapse"}, default="rescale"
        Weighting of images within a dependence group (PyMARE's).
    rho : float, default=0.8
        Assumed within-group correlation, in [0, 1].
    small_sample_correction : None or {"knapp-hartung", "knapp-hartung-conservative", "wald"}
        Correction of the ungrouped path (None: the estimator's default: Knapp-Hartung where
        tau^2 is estimated, Wald for a given tau^2). With groups, CR2 standard errors and
        Satterthwaite degrees of freedom are used instead.
    **kwargs
        The common parameters of :class:`~nimare_dask.meta.ibma.base.IBMAEstimator`.
    """

    _image_types = ("beta", "varcope")
    _map_names = ("z", "p", "logp", "est", "se", "dof")
    _default_ssc = "knapp-hartung"

    def __init__(
        self,
        weight_scheme: str = "rescale",
        rho: float = 0.8,
        small_sample_correction: str | None = None,
        **kwargs: Any,
    ) -> None:
        if weight_scheme not in WEIGHT_SCHEMES:
            raise ValueError(
                f"Invalid weight_scheme '{weight_scheme}'; must be one of {sorted(WEIGHT_SCHEMES)}."
            )
        if small_sample_correction is not None and (
            small_sample_correction not in SMALL_SAMPLE_CORRECTIONS
        ):
            raise ValueError(
                f"Invalid small_sample_correction '{small_sample_correction}'; must be None or "
                f"one of {sorted(SMALL_SAMPLE_CORRECTIONS)}."
            )
        if not isinstance(rho, int | float | np.integer | np.floating) or isinstance(rho, bool):
            raise ValueError(f"Invalid rho {rho!r}; must be a number.")
        if not 0.0 <= float(rho) <= 1.0:
            raise ValueError(f"Invalid rho {rho!r}; must lie in [0, 1].")
        self.weight_scheme = weight_scheme
        self.rho = float(rho)
        self.small_sample_correction = small_sample_correction
        super().__init__(**kwargs)

    @property
    def _ssc(self) -> str:
        return self.small_sample_correction or self._default_ssc

    @staticmethod
    def _groups(codes: np.ndarray) -> Groups | None:
        """Groups of a bag, or None when no group holds two images (PyMARE gets no labels)."""
        return Groups(codes) if np.unique(codes).size < codes.size else None

    def _bag_inputs(self, arrays, rows, ctx):
        return arrays[0], arrays[1]

    def _tau2_method(self) -> str:
        raise NotImplementedError

    def _fit_bag(self, arrays, rows, codes, ctx):
        y, v = self._bag_inputs(arrays, rows, ctx)
        return regression_fit(
            y,
            v,
            self._groups(codes),
            scheme=self.weight_scheme,
            rho=self.rho,
            ssc=self._ssc,
            tau2_method=self._tau2_method(),
            tau2=getattr(self, "tau2", 0.0),
        )


def _check_tau2(tau2) -> float:
    if isinstance(tau2, bool) or not isinstance(tau2, int | float | np.integer | np.floating):
        raise ValueError(
            f"tau2 must be a non-negative number, got {tau2!r} (per-voxel tau2 arrays are not "
            "supported: voxels are fitted in bags)"
        )
    if not float(tau2) >= 0:
        raise ValueError(f"tau2 must be >= 0, got {tau2!r}")
    return float(tau2)


class WeightedLeastSquares(RegressionEstimator):
    """Weighted least-squares meta-regression with a known tau^2 (NiMARE's).

    Parameters
    ----------
    tau2 : float, default=0
        Assumed between-study variance (0: the inverse-variance fixed-effects model).
    **kwargs
        ``weight_scheme``, ``rho``, ``small_sample_correction`` and the common parameters.

    Notes
    -----
    Requires ``beta`` and ``varcope`` images. Maps: ``z, p, logp, est, se, dof``; table
    ``level-estimator`` (tau2). Reference: Brockwell & Gordon (2001).
    """

    _default_ssc = "wald"

    def __init__(self, tau2: float = 0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.tau2 = tau2

    def _check_params(self) -> None:
        super()._check_params()
        _check_tau2(self.tau2)

    def _tau2_method(self) -> str:
        return "given"

    def _tables(self) -> dict:
        return {"level-estimator": pd.DataFrame(columns=["tau2"], data=[self.tau2])}

    def _description(self, n_images: int) -> str:
        return (
            f"An image-based meta-analysis was performed with {_TOOL}, on {n_images} beta "
            "images using the Weighted Least Squares approach \\citep{brockwell2001comparison}, "
            f"with an a priori tau-squared value of {self.tau2} defined across all voxels."
        )


class DerSimonianLaird(RegressionEstimator):
    """DerSimonian-Laird random-effects meta-regression (NiMARE's).

    Notes
    -----
    Requires ``beta`` and ``varcope`` images. Maps: ``z, p, logp, est, se, tau2, dof``.
    tau^2 by the method of moments (the correlated-effects estimator of Hedges, Tipton and
    Johnson (2010) for ``weight_scheme="rescale"`` with groups).
    """

    _map_names = ("z", "p", "logp", "est", "se", "tau2", "dof")

    def _tau2_method(self) -> str:
        return "dl"

    def _description(self, n_images: int) -> str:
        return (
            f"An image-based meta-analysis was performed with {_TOOL}, on {n_images} beta and "
            "variance images using the DerSimonian-Laird method \\citep{dersimonian1986meta}, "
            "in which tau-squared is estimated on a voxel-wise basis using the "
            "method-of-moments approach \\citep{dersimonian1986meta,kosmidis2017improving}."
        )


class Hedges(RegressionEstimator):
    """Hedges random-effects meta-regression (NiMARE's).

    Notes
    -----
    Requires ``beta`` and ``varcope`` images. Maps: ``z, p, logp, est, se, tau2, dof``.
    """

    _map_names = ("z", "p", "logp", "est", "se", "tau2", "dof")

    def _tau2_method(self) -> str:
        return "hedges"

    def _description(self, n_images: int) -> str:
        return (
            f"An image-based meta-analysis was performed with {_TOOL}, on {n_images} beta and "
            "variance images using the Hedges method \\citep{hedges2014statistical}, in which "
            "tau-squared is estimated on a voxel-wise basis."
        )


class FixedEffectsHedges(RegressionEstimator):
    """Fixed-effects meta-regression of Hedges' g from t images and sample sizes (NiMARE's).

    Parameters
    ----------
    tau2 : float, default=0
        Assumed between-study variance.

    Notes
    -----
    Requires ``t`` images and sample sizes. ``d = t / sqrt(n)``, ``g = d h`` with
    ``h = 1 - 3 / (4 (n - 1) - 1)`` and variance ``(n-1)(1 + n d^2) h^2 / (n (n-3)) - d^2``
    (Bossier et al. 2019). Maps: ``z, p, logp, est, se, dof``; table ``level-estimator``.
    """

    _image_types = ("t",)
    _default_ssc = "wald"

    def __init__(self, tau2: float = 0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.tau2 = tau2

    def _check_params(self) -> None:
        super()._check_params()
        _check_tau2(self.tau2)

    def _needs_sample_sizes(self) -> bool:
        return True

    def _bag_inputs(self, arrays, rows, ctx):
        n = ctx["sample_sizes"][rows][:, None]
        d = arrays[0] / np.sqrt(n)
        h = 1 - (3 / (4 * (n - 1) - 1))
        var = ((n - 1) * (1 + n * d**2) * (h**2) / (n * (n - 3))) - d**2
        return d * h, var

    def _tau2_method(self) -> str:
        return "given"

    def _tables(self) -> dict:
        return {"level-estimator": pd.DataFrame(columns=["tau2"], data=[self.tau2])}

    def _description(self, n_images: int) -> str:
        return (
            f"An image-based meta-analysis was performed with {_TOOL}, on {n_images} "
            "t-statistic images using Hedges' g as point estimates and the variance of "
            "bias-corrected Cohen's d in a Weighted Least Squares approach "
            "\\citep{brockwell2001comparison,bossier2019}, with an a priori tau-squared value "
            f"of {self.tau2} defined across all voxels."
        )
