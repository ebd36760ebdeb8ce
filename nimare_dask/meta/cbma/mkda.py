"""CBMA estimators of the (M)KDA family: MKDADensity, KDA, MKDAChi2.

* MKDADensity (Wager et al. 2007): stat = sum_i w_i MA_i over binary sphere maps (with uniform
  weights, the number of studies active at a voxel); approximate null = the exact
  Poisson-binomial of the studies' coverage fractions.
* KDA: stat = sum over studies of sphere counts; approximate null = additive convolution of the
  per-study histograms of sphere counts.
* MKDAChi2: one-way (uniformity) and two-way (association) chi-square tests of the per-voxel
  numbers of active studies in two groups, as in Neurosynth.

Every reduction over studies is a chunk/combine reduction (:meth:`kernel.reduce`), so any
chunking gives the same maps; a fit is one ``dask.compute``.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from nimare_dask.kernels import KDAKernel, MKDAKernel
from nimare_dask.meta.base import CBMAEstimator, PairwiseCBMAEstimator
from nimare_dask.meta.cbma.ale import _TOOL, _n_foci
from nimare_dask.meta.cbma.chunkstats import coverage, kda_histograms
from nimare_dask.results import MetaResult
from nimare_dask.stats.chi2 import chi2_to_nlogp, one_way, two_way_counts
from nimare_dask.stats.nulls import (
    additive_null_from_histograms,
    nullhist_to_p,
    nullhist_to_stat,
    poisson_binomial_null,
    weighted_histogram_bins,
    weighted_poisson_binomial_null,
)
from nimare_dask.stats.transforms import nlogp_to_logp, nlogp_to_p, p_to_z

__all__ = ["KDA", "MKDAChi2", "MKDADensity"]

_NULL_BINS = "histogram_bins"
_NULL_WEIGHTS = "histweights_corr-none_method-approximate"


def _approximate_maps(stat: np.ndarray, weights: np.ndarray, bins: np.ndarray) -> dict:
    p = nullhist_to_p(stat, weights, bins)
    return {
        "stat": stat,
        "p": p,
        "z": p_to_z(p, tail="one"),
        "logp": nlogp_to_logp(-np.log(p)),
    }


class _HistogramNullMixin:
    """``summarystat_threshold(p)`` for estimators with a histogram null."""

    def summarystat_threshold(self, p: float) -> float:
        """The statistic whose approximate-null upper-tail probability first falls to ``p``.

        Parameters
        ----------
        p : float
            Uncorrected p-value.

        Returns
        -------
        float
        """
        nulls = getattr(self, "null_distributions_", None)
        if not nulls:
            raise RuntimeError(f"{type(self).__name__} is not fitted yet")
        return nullhist_to_stat(nulls[_NULL_WEIGHTS], nulls[_NULL_BINS], p)


def _raw_weights(weighting, studyset) -> np.ndarray | None:
    """Unnormalised per-analysis weights (None for unweighted)."""
    if weighting is None:
        return None
    n = len(studyset)
    if isinstance(weighting, str):
        if weighting == "uniform":
            return np.ones(n)
        if weighting == "sample_size":
            sizes = studyset.sample_sizes
            bad = ~(np.isfinite(sizes) & (sizes > 0))
            if bad.any():
                ids = list(studyset.ids[bad][:25])
                raise ValueError(
                    f"MKDADensity(weighting='sample_size'): {int(bad.sum())} analyses have no "
                    f"usable sample size: {ids}. Add 'sample_sizes' to their metadata or pass "
                    "explicit weights."
                )
            return np.sqrt(sizes)
        raise ValueError(
            f"weighting must be None, 'uniform', 'sample_size', a dict or an array; got "
            f"{weighting!r}"
        )
    if isinstance(weighting, Mapping):
        missing = [i for i in studyset.ids if i not in weighting]
        if missing:
            raise ValueError(f"MKDADensity: no weight for analyses {missing[:25]}")
        raw = np.array([float(weighting[i]) for i in studyset.ids])
    else:
        raw = np.asarray(weighting, dtype=np.float64).ravel()
        if raw.size != n:
            raise ValueError(
                f"MKDADensity: got {raw.size} weights for {n} analyses (after dropping "
                "analyses without foci); pass a dict {analysis id: weight} instead"
            )
    if not (np.isfinite(raw) & (raw > 0)).all():
        raise ValueError("MKDADensity: weights must be positive finite numbers")
    return raw


def _normalize_weights(raw: np.ndarray) -> np.ndarray:
    """Rescale to sum to the number of analyses (exactly 1 each when all are equal)."""
    raw = np.asarray(raw, dtype=np.float64)
    if np.all(raw == raw[0]):
        return np.ones_like(raw)
    return raw.size * raw / raw.sum()


class MKDADensity(_HistogramNullMixin, CBMAEstimator):
    """Multilevel kernel density analysis: density of active studies (Wager et al. 2007).

    Parameters
    ----------
    kernel : MKDAKernel, optional
        The MA kernel (default ``MKDAKernel(r=10)``; ``kernel__r=8`` style keywords).
    null_method : {"approximate", "montecarlo"}
        Only "approximate" (exact Poisson-binomial) is available in this version.
    n_iters : int, optional
        Iterations of the Monte Carlo null (unused by the approximate null).
    weighting : None, "uniform", "sample_size", dict or array
        Per-analysis weights: ``"sample_size"`` is sqrt(N) (Wager et al. 2009); a dict maps
        analysis id to weight. Weights are rescaled to sum to the number of analyses.
    n_histogram_bins : int
        Grid size of the weighted null (non-uniform weights only).
    random_state, n_cores, mask, chunks
        As for :class:`~nimare_dask.meta.cbma.ale.ALE`.

    Notes
    -----
    Maps ``stat``, ``p``, ``z``, ``logp``; null distributions ``histogram_bins``,
    ``histweights_corr-none_method-approximate`` and ``histogram_means`` (each analysis's
    coverage fraction).
    """

    _default_kernel = MKDAKernel

    def __init__(
        self,
        kernel=None,
        null_method: str = "approximate",
        n_iters: int | None = None,
        weighting=None,
        n_histogram_bins: int = 100_000,
        random_state: int | None = None,
        n_cores: int | None = None,
        mask=None,
        chunks: int | None = None,
        **kwargs,
    ):
        self._init_kernel(kernel, kwargs)
        self.null_method = null_method
        self.n_iters = n_iters
        self.weighting = weighting
        self.n_histogram_bins = n_histogram_bins
        self.random_state = random_state
        self.n_cores = n_cores
        self.mask = mask
        self.chunks = chunks

    def _check_null_method(self) -> None:
        if self.null_method == "montecarlo":
            raise NotImplementedError(
                f"{type(self).__name__}(null_method='montecarlo') is not available yet; use "
                "null_method='approximate'"
            )
        if self.null_method != "approximate":
            raise ValueError(
                f"null_method must be 'approximate' or 'montecarlo'; got {self.null_method!r}"
            )

    def fit(self, studyset) -> MetaResult:
        """Fit the estimator to a studyset.

        Parameters
        ----------
        studyset : Studyset or str or Path
            An in-memory studyset, one opened from a store, or the path of a store.

        Returns
        -------
        MetaResult
            Computed maps ``stat``, ``p``, ``z``, ``logp`` (float32); also ``self.result_``.
        """
        self._check_null_method()
        ss = self._prepare(studyset)
        raw = _raw_weights(self.weighting, ss)
        weights = np.ones(len(ss)) if raw is None else _normalize_weights(raw)
        self.weight_vec_ = weights
        stat = self.kernel.reduce(ss, "sum", weights=weights, chunks=self.chunks)
        cover = coverage(self.kernel, ss, chunks=self.chunks)
        stat, cover = self._compute(stat, cover)
        stat = np.asarray(stat, dtype=np.float64)
        prop_active = np.asarray(cover, dtype=np.float64) / ss.grid.n_voxels
        if np.all(weights == weights[0]):
            bins = np.arange(len(prop_active) + 1, step=1)
            null = poisson_binomial_null(prop_active)
        else:
            bins = weighted_histogram_bins(weights, n_bins=self.n_histogram_bins)
            null = weighted_poisson_binomial_null(weights, prop_active, bins)
        nulls = {_NULL_BINS: bins, _NULL_WEIGHTS: null, "histogram_means": prop_active}
        self.null_distributions_ = nulls
        self.result_ = MetaResult(
            estimator=self,
            grid=ss.grid,
            maps=_approximate_maps(stat, null, bins),
            description=self._description(ss),
            null_distributions=dict(nulls),
        )
        return self.result_

    def _description(self, ss) -> str:
        weight_text = ""
        if self.weighting is not None and not np.all(self.weight_vec_ == 1):
            ess = self.weight_vec_.sum() ** 2 / np.sum(self.weight_vec_**2)
            weight_text = (
                "Each study contrast map was weighted "
                + (
                    "by the square root of its sample size (Wager et al., 2009)"
                    if self.weighting == "sample_size"
                    else "by a user-supplied weight"
                )
                + f". Weights were normalized across the {len(ss)} contrasts, giving an "
                f"effective sample size of {ess:.1f} contrasts. "
            )
        return (
            "A multilevel kernel density (MKDA) meta-analysis \\citep{wager2007meta} was "
            f"performed with {_TOOL}, using a(n) {self._kernel_name()} kernel. "
            f"{self._kernel_description()} {weight_text}Summary statistics (OF values) were "
            "converted to p-values using an approximate null distribution (the exact "
            "distribution of the number of active studies under spatial independence). The "
            f"input dataset included {_n_foci(ss)} foci from {len(ss)} experiments."
        ).replace("  ", " ")


class KDA(_HistogramNullMixin, CBMAEstimator):
    """Kernel density analysis (obsolete; kept for comparisons with MKDA).

    Parameters
    ----------
    kernel : KDAKernel, optional
        The MA kernel (default ``KDAKernel(r=10)``: sphere counts).
    null_method : {"approximate", "montecarlo"}
        Only "approximate" is available in this version.
    n_iters : int, optional
        Iterations of the Monte Carlo null (unused by the approximate null).
    random_state, n_cores, mask, chunks
        As for :class:`~nimare_dask.meta.cbma.ale.ALE`.

    Notes
    -----
    Maps ``stat``, ``p``, ``z``, ``logp``. The null's bins step by the kernel's ``value`` from
    0 to ``value * (total number of foci)``.
    """

    _default_kernel = KDAKernel

    def __init__(
        self,
        kernel=None,
        null_method: str = "approximate",
        n_iters: int | None = None,
        random_state: int | None = None,
        n_cores: int | None = None,
        mask=None,
        chunks: int | None = None,
        **kwargs,
    ):
        self._init_kernel(kernel, kwargs)
        self.null_method = null_method
        self.n_iters = n_iters
        self.random_state = random_state
        self.n_cores = n_cores
        self.mask = mask
        self.chunks = chunks

    _check_null_method = MKDADensity._check_null_method

    def fit(self, studyset) -> MetaResult:
        """Fit the estimator to a studyset.

        Parameters
        ----------
        studyset : Studyset or str or Path
            An in-memory studyset, one opened from a store, or the path of a store.

        Returns
        -------
        MetaResult
            Computed maps ``stat``, ``p``, ``z``, ``logp`` (float32); also ``self.result_``.
        """
        self._check_null_method()
        ss = self._prepare(studyset)
        step = float(getattr(self.kernel, "value", 1.0))
        if not np.isfinite(step) or step <= 0:
            raise ValueError(f"KDA needs a kernel with a positive value; got {step}")
        stat = self.kernel.reduce(ss, "sum", chunks=self.chunks)
        hists = kda_histograms(self.kernel, ss, step, chunks=self.chunks)
        stat, counts = self._compute(stat, hists)
        stat = np.asarray(stat, dtype=np.float32)
        max_poss = step * ss.foci_counts().sum()
        bins = np.arange(0, max_poss + step * 1.5, step)
        null = additive_null_from_histograms(counts, bins.size)
        nulls = {_NULL_BINS: bins, _NULL_WEIGHTS: null}
        self.null_distributions_ = nulls
        self.result_ = MetaResult(
            estimator=self,
            grid=ss.grid,
            maps=_approximate_maps(stat, null, bins),
            description=self._description(ss),
            null_distributions=dict(nulls),
        )
        return self.result_

    def _description(self, ss) -> str:
        return (
            f"A kernel density (KDA) meta-analysis \\citep{{wager2007meta}} was performed with "
            f"{_TOOL}, using a(n) {self._kernel_name()} kernel. {self._kernel_description()} "
            "Summary statistics (OF values) were converted to p-values using an approximate "
            "null distribution. The input dataset included "
            f"{_n_foci(ss)} foci from {len(ss)} experiments."
        ).replace("  ", " ")


class MKDAChi2(PairwiseCBMAEstimator):
    """Multilevel kernel density analysis, chi-square tests (Wager et al. 2007; Neurosynth).

    Parameters
    ----------
    kernel : MKDAKernel, optional
        The MA kernel (default ``MKDAKernel(r=10)``).
    prior : float
        Prior probability of the "feature" for ``prob_desc-AgF_prior`` and
        ``prob_desc-FgA_prior`` (none of them when 0 or None).
    random_state, n_cores, mask, chunks
        As for :class:`~nimare_dask.meta.cbma.ale.ALE`.

    Notes
    -----
    ``fit(studyset1, studyset2)`` gives, with c1, c2 the per-voxel numbers of active studies
    (studies whose MA map is > 0) and n1, n2 the group sizes: ``z/chi2/p/logp_desc-uniformity``
    (one-way test of c1 against its mean; the same maps as ``..._desc-group1``),
    ``..._desc-group2`` (the same test of c2), ``z/chi2/p/logp_desc-association`` (two-way
    test; z signed by p(A|F) - p(A|U)), and ``prob_desc-A``, ``-AgF``, ``-AgU``, ``-FgA``,
    ``-group1`` (= AgF), ``-group2`` (= AgU), ``-AgF_prior``, ``-FgA_prior``.

    Differences from NiMARE 0.22.1:

    * Where the association test's denominator is 0 (no study active at the voxel, or every
      study active) chi2 is 0, p is 1 and z is 0; NiMARE reports chi2 = 2.0 (p = 0.157).
    * Active studies are counted (MA > 0) rather than MA values summed, which is the same for
      the binary MKDA kernel (the default) and keeps the counts bounded by the group sizes for
      any kernel.

    As in NiMARE, ``prob_desc-FgA`` (and ``prob_desc-FgA_prior``) are NaN where no study of
    either group is active (0/0).
    """

    _default_kernel = MKDAKernel

    def __init__(
        self,
        kernel=None,
        prior: float | None = 0.5,
        random_state: int | None = None,
        n_cores: int | None = None,
        mask=None,
        chunks: int | None = None,
        **kwargs,
    ):
        self._init_kernel(kernel, kwargs)
        self.prior = prior
        self.random_state = random_state
        self.n_cores = n_cores
        self.mask = mask
        self.chunks = chunks

    def fit(self, studyset1, studyset2) -> MetaResult:
        """Compare two studysets voxel by voxel.

        Parameters
        ----------
        studyset1, studyset2 : Studyset or str or Path
            Group 1 ("feature present") and group 2.

        Returns
        -------
        MetaResult
            Computed maps (see the class notes), float32; also ``self.result_``.
        """
        ss1 = self._prepare(studyset1, "studyset1")
        ss2 = self._prepare(studyset2, "studyset2")
        if not ss1.grid.same_as(ss2.grid):
            raise ValueError("MKDAChi2: the two studysets are on different grids")
        c1 = self.kernel.reduce(ss1, "count", chunks=self.chunks)
        c2 = self.kernel.reduce(ss2, "count", chunks=self.chunks)
        c1, c2 = self._compute(c1, c2)
        maps = chi2_maps(
            np.asarray(c1, dtype=np.float64),
            np.asarray(c2, dtype=np.float64),
            len(ss1),
            len(ss2),
            prior=self.prior,
        )
        self.null_distributions_ = {}
        self.result_ = MetaResult(
            estimator=self,
            grid=ss1.grid,
            maps=maps,
            description=self._description(ss1, ss2),
        )
        return self.result_

    def _description(self, ss1, ss2) -> str:
        return (
            "A multilevel kernel density chi-squared analysis \\citep{wager2007meta} was "
            f"performed according to the same procedure as implemented in Neurosynth "
            f"\\citep{{yarkoni2011large}} with {_TOOL}, using a(n) {self._kernel_name()} "
            f"kernel. {self._kernel_description()} The first dataset was evaluated for "
            "uniformity of activation via a one-way chi-square test, and the association "
            "between activation and group membership via a two-way chi-square test. The first "
            f"input dataset included {_n_foci(ss1)} foci from {len(ss1)} experiments. "
            f"The second input dataset included {_n_foci(ss2)} foci from {len(ss2)} "
            "experiments."
        ).replace("  ", " ")


def chi2_maps(c1: np.ndarray, c2: np.ndarray, n1: int, n2: int, prior=0.5) -> dict:
    """All MKDAChi2 maps from the per-voxel active-study counts of two groups.

    Parameters
    ----------
    c1, c2 : numpy.ndarray
        (V,) numbers of active studies in group 1 and group 2.
    n1, n2 : int
        Group sizes.
    prior : float or None
        Prior of the feature for the ``*_prior`` maps (none when falsy).

    Returns
    -------
    dict
        ``{map name: float64 array}`` (eager).
    """
    n = n1 + n2
    with np.errstate(divide="ignore", invalid="ignore"):
        p_f = n1 / n
        p_a = (c1 + c2) / n
        p_agf = c1 / n1
        p_agu = c2 / n2
        p_fga = p_agf * p_f / p_a
        maps: dict[str, np.ndarray] = {}
        if prior:
            p_agf_prior = prior * p_agf + (1 - prior) * p_agu
            p_fga_prior = p_agf * prior / p_agf_prior

    def one_way_maps(counts, size):
        chi2 = one_way(counts, size)
        nlogp = chi2_to_nlogp(chi2, 1)
        z = np.sqrt(chi2) * np.sign(counts - np.mean(counts))
        return chi2, nlogp, z

    u_chi2, u_nlogp, u_z = one_way_maps(c1, n1)
    g2_chi2, g2_nlogp, g2_z = one_way_maps(c2, n2)
    a_chi2 = two_way_counts(c1, c2, n1, n2)
    a_nlogp = chi2_to_nlogp(a_chi2, 1)
    a_z = np.sqrt(a_chi2) * np.sign(p_agf - p_agu)

    for desc, chi2, nlogp, z in (
        ("uniformity", u_chi2, u_nlogp, u_z),
        ("association", a_chi2, a_nlogp, a_z),
        ("group1", u_chi2, u_nlogp, u_z),
        ("group2", g2_chi2, g2_nlogp, g2_z),
    ):
        maps[f"z_desc-{desc}"] = z
        maps[f"chi2_desc-{desc}"] = chi2
        maps[f"p_desc-{desc}"] = nlogp_to_p(nlogp, dtype=np.float64)
        maps[f"logp_desc-{desc}"] = nlogp_to_logp(nlogp)
    maps.update(
        {
            "prob_desc-A": p_a,
            "prob_desc-AgF": p_agf,
            "prob_desc-AgU": p_agu,
            "prob_desc-FgA": p_fga,
            "prob_desc-group1": p_agf,
            "prob_desc-group2": p_agu,
        }
    )
    if prior:
        maps["prob_desc-AgF_prior"] = p_agf_prior
        maps["prob_desc-FgA_prior"] = p_fga_prior
    return maps
