"""Fishers and Stouffers: combination tests on z images, with NiMARE's dependence model.

Images from one group (a study by default) are dependent. When a bag holds such a group:

* Fishers refers ``-2 sum w ln p`` to Brown's scaled chi-squared, with weights ``1/size`` per
  group (or the group-mean sample size shared out) and the covariance of ``-2 ln p`` terms from
  Kost & McDermott's cubic in the empirical null correlation.
* Stouffers averages each group's z, standardised by ``sqrt(sum of its correlation block) /
  size``, and combines one value per group.

Groups whose images cancel (block variance <= 1e-12) are dropped from the bag, as NiMARE does.
Formulas adapted from pymare/estimators/combination.py (PyMARE, MIT licence, Copyright (c) 2019-
PyMARE developers).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy import special

from nimare_dask.meta.ibma._models import Groups, colsum
from nimare_dask.meta.ibma._stats import log_chi2_sf, logp_map
from nimare_dask.meta.ibma.base import _TOOL, MIN_STUDIES, IBMAEstimator

__all__ = ["Fishers", "Stouffers"]

_LN2 = math.log(2.0)
_CANCELLATION_FLOOR = 1e-12


class _Combination(IBMAEstimator):
    _image_types = ("z",)
    _requires_corr = True
    _map_names = ("z", "p", "logp", "dof")

    def _needs_sample_sizes(self) -> bool:
        return bool(self.use_sample_size)

    def _screen(self, z, rows, codes, ctx):
        """Drop groups whose images cancel; return the kept (z, rows, codes, groups, corr)."""
        if np.unique(codes).size == codes.size:
            return z, rows, codes, None, None
        corr = ctx["corr"]
        if corr is None:
            return z, rows, codes, Groups(codes), None
        sub = corr[np.ix_(rows, rows)]
        groups = Groups(codes)
        keep = np.ones(rows.size, dtype=bool)
        for j in range(groups.m):
            members = np.flatnonzero(groups.local == j)
            if members.size < 2:
                continue
            variance = float(sub[np.ix_(members, members)].sum() / members.size**2)
            if not np.isfinite(variance) or variance <= _CANCELLATION_FLOOR:
                keep[members] = False
        if not keep.all():
            z, rows, codes, sub = z[keep], rows[keep], codes[keep], sub[np.ix_(keep, keep)]
            if np.unique(codes).size == codes.size:
                return z, rows, codes, None, None
            groups = Groups(codes)
        return z, rows, codes, groups, sub

    def _fit_bag(self, arrays, rows, codes, ctx):
        z, rows, codes, groups, corr = self._screen(arrays[0], rows, codes, ctx)
        n_groups = np.unique(codes).size
        if n_groups < MIN_STUDIES:
            return None
        weights = None
        if self.use_sample_size:  # each image gets its group's mean sample size in this bag
            bag_groups = Groups(codes)
            n = ctx["sample_sizes"][rows][:, None]
            weights = bag_groups.mean(n)[bag_groups.local, 0]
        if self.two_sided:
            lp1 = self._log_p(z, groups, corr, weights)
            lp2 = self._log_p(-z, groups, corr, weights)
            log_p = np.minimum(0.0, _LN2 + np.minimum(lp1, lp2))
            zc = -special.ndtri_exp(log_p - _LN2)
            zc = np.where(lp2 < lp1, -zc, zc)
        else:
            log_p = self._log_p(z, groups, corr, weights)
            zc = -special.ndtri_exp(log_p)
        return {
            "z": zc,
            "p": np.exp(log_p),
            "logp": logp_map(log_p),
            "dof": np.full(z.shape[1], float(n_groups - 1)),
        }

    def _log_p(self, z, groups, corr, weights):
        raise NotImplementedError


def _check_bool(name: str, value) -> None:
    if not isinstance(value, bool | np.bool_):
        raise TypeError(f"{name} must be a bool, got {value!r}")


class Fishers(_Combination):
    """Fisher's combined probability test on z images (NiMARE's ``Fishers``).

    Parameters
    ----------
    two_sided : bool, default=True
        Concordant two-sided test (both directions, corrected for two tests); False tests
        positive effects only.
    use_sample_size : bool, default=False
        Give each study a total weighted-Fisher coefficient equal to its sample size.
    **kwargs
        The common parameters of :class:`~nimare_dask.meta.ibma.base.IBMAEstimator`.

    Notes
    -----
    Requires ``z`` images. Maps: ``z, p, logp, dof`` (``dof`` = groups - 1). With dependent
    images, Brown's (1975) scaled chi-squared with Kost & McDermott's (2002) covariance.
    """

    def __init__(self, two_sided: bool = True, use_sample_size: bool = False, **kwargs: Any):
        super().__init__(**kwargs)
        self.two_sided = two_sided
        self.use_sample_size = use_sample_size

    def _check_params(self) -> None:
        super()._check_params()
        _check_bool("two_sided", self.two_sided)
        _check_bool("use_sample_size", self.use_sample_size)

    def _log_p(self, z, groups, corr, weights):
        log_p = special.log_ndtr(-z)
        external = np.ones(z.shape[0]) if weights is None else np.asarray(weights, float)
        if groups is not None:
            w = external / groups.sizes[groups.local]
        else:
            w = external
        if groups is None and weights is None:
            chi2 = -2 * colsum(log_p)
        else:
            chi2 = -2 * colsum(log_p * w[:, None])
        expectation = 2.0 * w.sum()
        variance = 4.0 * np.square(w).sum()
        if groups is not None and corr is not None:
            for j in range(groups.m):
                members = np.flatnonzero(groups.local == j)
                if members.size < 2:
                    continue
                iu = np.triu_indices(members.size, k=1)
                r = corr[np.ix_(members, members)][iu]
                pw = w[members][iu[0]] * w[members][iu[1]]
                variance += 2.0 * (pw * (r * (3.263 + r * (0.710 + r * 0.027)))).sum()
        scale = variance / (2.0 * expectation)
        dof = 2.0 * expectation**2 / variance
        return log_chi2_sf(chi2 / scale, dof)

    def _description(self, n_images: int) -> str:
        text = (
            f"An image-based meta-analysis was performed with {_TOOL} on {n_images} "
            "z-statistic images using the Fisher combined probability method "
            "\\citep{fisher1946statistical}."
        )
        if self.use_sample_size:
            text += " Studies received weighted-Fisher coefficients equal to sample size."
        return text


class Stouffers(_Combination):
    """Stouffer's z test on z images (NiMARE's ``Stouffers``).

    Parameters
    ----------
    use_sample_size : bool, default=False
        Weight by the square root of the (group-mean) sample size.
    two_sided : bool, default=True
        Concordant two-sided test; False tests positive effects only.
    **kwargs
        The common parameters of :class:`~nimare_dask.meta.ibma.base.IBMAEstimator`.

    Notes
    -----
    Requires ``z`` images. Maps: ``z, p, logp, dof`` (``dof`` = groups - 1). Dependent images
    are combined into one variance-standardised z per group first.
    """

    def __init__(self, use_sample_size: bool = False, two_sided: bool = True, **kwargs: Any):
        if "normalize_contrast_weights" in kwargs:
            raise TypeError(
                "normalize_contrast_weights was removed in NiMARE 0.21.0; repeated images are "
                "combined per group whenever `groupby` finds a group with more than one image. "
                "Pass groupby=False to treat every image as independent."
            )
        super().__init__(**kwargs)
        self.use_sample_size = use_sample_size
        self.two_sided = two_sided

    def _check_params(self) -> None:
        super()._check_params()
        _check_bool("two_sided", self.two_sided)
        _check_bool("use_sample_size", self.use_sample_size)

    def _log_p(self, z, groups, corr, weights):
        w = np.ones(z.shape[0]) if weights is None else np.sqrt(np.asarray(weights, float))
        if groups is None:
            cz = colsum(z * w[:, None]) / np.sqrt((w**2).sum())
            return special.log_ndtr(-cz)
        gz = np.empty((groups.m, z.shape[1]))
        gw = np.empty(groups.m)
        for j in range(groups.m):
            members = np.flatnonzero(groups.local == j)
            gw[j] = w[members[0]]
            if members.size == 1:
                variance = 1.0
            elif corr is not None:
                variance = corr[np.ix_(members, members)].sum() / members.size**2
            else:  # no null correlation could be estimated: treat the group as independent
                variance = 1.0 / members.size
            gz[j] = z[members].mean(axis=0) / np.sqrt(variance)
        cz = colsum(gz * gw[:, None]) / np.sqrt((gw**2).sum())
        return special.log_ndtr(-cz)

    def _description(self, n_images: int) -> str:
        text = (
            f"An image-based meta-analysis was performed with {_TOOL} on {n_images} "
            "z-statistic images using the Stouffer method \\citep{stouffer1949american}"
        )
        if self.use_sample_size:
            return text + (
                ", with studies weighted by the square root of the study sample sizes, per "
                "\\cite{zaykin2011optimally}."
            )
        return text + "."
