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

import numpy as np

from nimare_dask.kernels import KDAKernel, MKDAKernel
from nimare_dask.meta.base import PairwiseCBMAEstimator
from nimare_dask.meta.cbma.ale import _TOOL
from nimare_dask.meta.cbma.chunkstats import coverage, kda_histograms
from nimare_dask.meta.cbma.fwe import RandomFociEstimator, check_n_iters
from nimare_dask.meta.cbma.mkda_stats import approximate_maps as _approximate_maps
from nimare_dask.meta.cbma.mkda_stats import chi2_maps
from nimare_dask.meta.cbma.weights import (
    normalize_weights,
    study_weights_of,
    weighting_raw,
    weighting_text,
)
from nimare_dask.meta.text import an, inputs_sentence, p_text, sig
from nimare_dask.results import MetaResult
from nimare_dask.stats.nulls import (
    additive_null_from_histograms,
    nullhist_to_stat,
    poisson_binomial_null,
    weighted_histogram_bins,
    weighted_poisson_binomial_null,
)
from nimare_dask.stats.transforms import nlogp_to_logp, nlogp_to_p

__all__ = ["KDA", "MKDAChi2", "MKDADensity"]

_NULL_BINS = "histogram_bins"
_NULL_WEIGHTS = "histweights_corr-none_method-approximate"
_MC_WEIGHTS = "histweights_corr-none_method-montecarlo"


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
        key = _MC_WEIGHTS if _MC_WEIGHTS in nulls and _NULL_WEIGHTS not in nulls else _NULL_WEIGHTS
        return nullhist_to_stat(nulls[key], nulls[_NULL_BINS], p)


class MKDADensity(_HistogramNullMixin, RandomFociEstimator):
    """Multilevel kernel density analysis: density of active studies (Wager et al. 2007).

    Parameters
    ----------
    kernel : MKDAKernel, optional
        The MA kernel (default ``MKDAKernel(r=10)``; ``kernel__r=8`` style keywords).
    null_method : {"approximate", "montecarlo"}
        The exact Poisson-binomial null, or a random-foci Monte Carlo null (histogram of the
        statistic over ``n_iters`` datasets with foci moved to random in-mask voxels, see
        ``mask_coverage``).
    n_iters : int, optional
        Iterations of the Monte Carlo null (default 5000; unused by the approximate null).
    weighting : None, "uniform", "sample_size", StudyWeights, dict or array
        Per-analysis weights (NiMARE's): ``"sample_size"`` is ``StudyWeights()``, sqrt(N)
        (Wager et al. 2009); ``"uniform"`` weights every analysis 1; a
        :class:`~nimare_dask.meta.cbma.weights.StudyWeights` gives other transforms, the
        fixed-effects discount, explicit weights and imputation. Ours also takes a dict
        (analysis id to weight) or an array aligned with the studyset's analyses (after
        dropping analyses without foci). Weights are rescaled to sum to the number of
        analyses fitted. The :class:`StudyWeights` used is ``study_weights_`` after a fit.
    n_histogram_bins : int
        Grid size of the weighted null (non-uniform weights only).
    random_state, n_cores, mask, mask_coverage, chunks, progress
        As for :class:`~nimare_dask.meta.cbma.ale.ALE`.

    Notes
    -----
    Maps ``stat``, ``p``, ``z``, ``logp``; null distributions ``histogram_bins``,
    ``histweights_corr-none_method-approximate`` and ``histogram_means`` (each analysis's
    coverage fraction). ``FWECorrector(method="montecarlo")`` uses a random-foci null
    (:meth:`correct_fwe_montecarlo`).
    """

    _default_kernel = MKDAKernel
    _null_kind = "union"
    _stat_name = "density statistic"

    def _null_weights(self):
        return getattr(self, "weight_vec_", None)

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
        mask_coverage: str = "brain",
        chunks: int | None = None,
        progress: bool = True,
        **kwargs,
    ):
        super().__init__(
            kernel, null_method, n_iters, random_state, n_cores, mask, mask_coverage, chunks,
            progress, **kwargs,
        )  # fmt: skip
        self.weighting = weighting
        self.n_histogram_bins = n_histogram_bins

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
        return self._fit(studyset)

    def _fit_parts(self, ss):
        """``(lazy pieces, finish)`` of a fit on the prepared studyset ``ss`` (see
        :meth:`ALE._fit_parts <nimare_dask.meta.cbma.ale.ALE._fit_parts>`)."""
        study_weights = None if self.weighting is None else study_weights_of(self.weighting)
        raw = weighting_raw(self.weighting, ss, study_weights)
        self.study_weights_ = study_weights
        weights = np.ones(len(ss)) if raw is None else normalize_weights(raw, len(ss))
        stat = self.kernel.reduce(ss, "sum", weights=weights, chunks=self.chunks)
        cover = coverage(self.kernel, ss, chunks=self.chunks)
        return [stat, cover], lambda computed: self._fit_finish(ss, weights, *computed)

    def _fit_finish(self, ss, weights, stat, cover) -> MetaResult:
        self.weight_vec_ = weights
        stat = np.asarray(stat, dtype=np.float64)
        prop_active = np.asarray(cover, dtype=np.float64) / ss.grid.n_voxels
        self.inputs_ = {"studyset": ss}
        uniform = np.all(weights == weights[0])
        if uniform:
            bins = np.arange(len(prop_active) + 1, step=1)
        else:
            bins = weighted_histogram_bins(weights, n_bins=self.n_histogram_bins)
        if self.null_method == "montecarlo":
            nulls = {_NULL_BINS: bins}
            nulls.update(
                self._montecarlo_histogram(ss, bins, self._n_null_iters(), rint=not uniform)
            )
            null = nulls[_MC_WEIGHTS]
        else:
            if uniform:
                null = poisson_binomial_null(prop_active)
            else:
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
        weight_text = weighting_text(
            self.weighting, getattr(self, "study_weights_", None), self.weight_vec_, len(ss)
        )
        return (
            "A multilevel kernel density (MKDA) meta-analysis \\citep{wager2007meta} was "
            f"performed with {_TOOL}, using {an(self._kernel_name())} kernel. "
            f"{self._kernel_description()} {weight_text}Summary statistics (OF values) were "
            "converted to p-values using an approximate null distribution (the exact "
            "distribution of the number of active studies under spatial independence). "
            f"{inputs_sentence(ss)}"
        ).replace("  ", " ")


class KDA(_HistogramNullMixin, RandomFociEstimator):
    """Kernel density analysis (obsolete; kept for comparisons with MKDA).

    Parameters
    ----------
    kernel : KDAKernel, optional
        The MA kernel (default ``KDAKernel(r=10)``: sphere counts).
    null_method : {"approximate", "montecarlo"}
        The approximate null (convolution of per-study histograms) or a random-foci Monte
        Carlo null.
    n_iters : int, optional
        Iterations of the Monte Carlo null (default 5000; unused by the approximate null).
    random_state, n_cores, mask, mask_coverage, chunks, progress
        As for :class:`~nimare_dask.meta.cbma.ale.ALE`.

    Notes
    -----
    Maps ``stat``, ``p``, ``z``, ``logp``. The null's bins step by the kernel's ``value`` from
    0 to ``value * (total number of foci)``. ``FWECorrector(method="montecarlo")`` uses a
    random-foci null (:meth:`correct_fwe_montecarlo`).
    """

    _default_kernel = KDAKernel
    _null_kind = "sum"
    _stat_name = "density statistic"

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
        return self._fit(studyset)

    def _fit_parts(self, ss):
        """``(lazy pieces, finish)`` of a fit on the prepared studyset ``ss`` (see
        :meth:`ALE._fit_parts <nimare_dask.meta.cbma.ale.ALE._fit_parts>`)."""
        step = float(getattr(self.kernel, "value", 1.0))
        if not np.isfinite(step) or step <= 0:
            raise ValueError(f"KDA needs a kernel with a positive value; got {step}")
        lazy = [self.kernel.reduce(ss, "sum", chunks=self.chunks)]
        if self.null_method != "montecarlo":
            lazy.append(kda_histograms(self.kernel, ss, step, chunks=self.chunks))
        return lazy, lambda computed: self._fit_finish(ss, step, *computed)

    def _fit_finish(self, ss, step, stat, counts=None) -> MetaResult:
        self.inputs_ = {"studyset": ss}
        max_poss = step * ss.foci_counts().sum()
        bins = np.arange(0, max_poss + step * 1.5, step)
        if self.null_method == "montecarlo":
            nulls = {_NULL_BINS: bins}
            nulls.update(self._montecarlo_histogram(ss, bins, self._n_null_iters()))
            null = nulls[_MC_WEIGHTS]
        else:
            null = additive_null_from_histograms(counts, bins.size)
            nulls = {_NULL_BINS: bins, _NULL_WEIGHTS: null}
        stat = np.asarray(stat, dtype=np.float32)
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
            f"{_TOOL}, using {an(self._kernel_name())} kernel. {self._kernel_description()} "
            "Summary statistics (OF values) were converted to p-values using an approximate "
            f"null distribution. {inputs_sentence(ss)}"
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
    fwe_null_method : {"label-permutation", "random-foci"}
        Null of :meth:`correct_fwe_montecarlo`: random relabelling of the pooled studies
        (group sizes kept; NiMARE's default) or foci moved to random in-mask voxels.
    random_state, n_cores, mask, mask_coverage, chunks
        As for :class:`~nimare_dask.meta.cbma.ale.ALE` (``mask_coverage``: for
        ``fwe_null_method="random-foci"``). With ``random_state=None`` the label
        permutations follow NiMARE (permutation ``i`` seeded with ``i``, reproducible).
    progress : bool
        Show progress bars of Monte Carlo corrections.

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
        fwe_null_method: str = "label-permutation",
        random_state: int | None = None,
        n_cores: int | None = None,
        mask=None,
        mask_coverage: str = "brain",
        chunks: int | None = None,
        progress: bool = True,
        **kwargs,
    ):
        if fwe_null_method not in ("label-permutation", "random-foci"):
            raise ValueError(
                "fwe_null_method must be 'label-permutation' or 'random-foci'; got "
                f"{fwe_null_method!r}"
            )
        self._init_kernel(kernel, kwargs)
        self.prior = prior
        self.fwe_null_method = fwe_null_method
        self.progress = progress
        self.random_state = random_state
        self.n_cores = n_cores
        self.mask = mask
        self.mask_coverage = mask_coverage
        self.chunks = chunks

    def fit(self, studyset1, studyset2, inference_map1=None, inference_map2=None) -> MetaResult:
        """Compare two studysets voxel by voxel.

        Parameters
        ----------
        studyset1, studyset2 : Studyset or str or Path
            Group 1 ("feature present") and group 2.
        inference_map1, inference_map2 : array_like, optional
            Directional inference masks (1-D over the grid's voxels; > 0 is in): the
            association maps are kept only where group 1 is more active and
            ``inference_map1`` holds, or group 2 is more active and ``inference_map2`` holds
            (chi2 0, p 1, z 0 elsewhere), as in NiMARE.

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
        masks = []
        for value, label in (
            (inference_map1, "inference_map1"),
            (inference_map2, "inference_map2"),
        ):
            if value is None:
                masks.append(np.zeros(ss1.grid.n_voxels, dtype=bool))
                continue
            arr = np.asarray(value)
            if arr.ndim != 1 or arr.shape[0] != ss1.grid.n_voxels:
                raise ValueError(
                    f"MKDAChi2: {label} must be a 1-D array over the {ss1.grid.n_voxels} in-mask "
                    f"voxels; got shape {arr.shape}"
                )
            masks.append(arr > 0)
        if inference_map1 is not None or inference_map2 is not None:
            sign = np.sign(maps["prob_desc-AgF"] - maps["prob_desc-AgU"])
            keep = ((sign > 0) & masks[0]) | ((sign < 0) & masks[1])
            maps["chi2_desc-association"] = np.where(keep, maps["chi2_desc-association"], 0.0)
            maps["p_desc-association"] = np.where(keep, maps["p_desc-association"], 1.0)
            maps["z_desc-association"] = np.where(keep, maps["z_desc-association"], 0.0)
            maps["logp_desc-association"] = np.where(keep, maps["logp_desc-association"], 0.0)
        self.inputs_ = {"studyset1": ss1, "studyset2": ss2}
        self.null_distributions_ = {}
        self.result_ = MetaResult(
            estimator=self,
            grid=ss1.grid,
            maps=maps,
            description=self._description(ss1, ss2),
        )
        return self.result_

    # ------------------------------------------------------------------ corrections
    def _chi2_null(self, voxel_thresh, n_iters, random_state, n_cores, checkpoint, early_stop,
                   progress, block_size):  # fmt: skip
        from scipy.stats import chi2 as chi2_dist

        from nimare_dask.meta.cbma.fwe import permutation_block_size, run_null
        from nimare_dask.meta.cbma.permutation import Chi2Permutations, PooledMaps
        from nimare_dask.meta.cbma.random_foci import build_random_foci_null

        ss1, ss2 = self.inputs_["studyset1"], self.inputs_["studyset2"]
        threshold = float(chi2_dist.isf(voxel_thresh, 1))
        seed = self.random_state if random_state is None else random_state
        if self.fwe_null_method == "label-permutation":
            csr1 = self.kernel.transform(ss1, return_type="sparse", chunks=self.chunks)
            csr2 = self.kernel.transform(ss2, return_type="sparse", chunks=self.chunks)
            pooled = PooledMaps.from_csr(csr1, csr2, transform=np.ones_like)
            block = Chi2Permutations(pooled, ss1.grid, threshold, legacy=seed is None)
            stream, engine_seed = "chi2_label_permutations", 0 if seed is None else seed
        else:
            block = build_random_foci_null(
                self.kernel,
                [ss1, ss2],
                "union",
                mode="chi2",
                chi2={"n1": len(ss1), "n2": len(ss2), "threshold": threshold},
                pool_ijk=self._coverage_pool(ss1.grid),
            )
            for lay in block.layouts:
                lay.contrib[:] = 1.0  # count active studies, whatever the kernel's value
            stream, engine_seed = "chi2_random_foci", seed
        mc = run_null(
            block,
            n_iters,
            stream=stream,
            name=f"mkdachi2-{self.fwe_null_method}-block",
            fingerprint=block.fingerprint(),
            random_state=engine_seed,
            n_cores=self.n_cores if n_cores is None else n_cores,
            checkpoint=checkpoint,
            early_stop=early_stop,
            progress=self.progress if progress is None else progress,
            block_size=block_size
            or (permutation_block_size(n_iters) if stream == "chi2_label_permutations" else None),
        )
        self.montecarlo_ = {stream: mc}
        return mc, threshold, seed

    def correct_fwe_montecarlo(
        self,
        result,
        voxel_thresh: float = 0.001,
        n_iters: int = 1000,
        n_cores: int | None = None,
        random_state: int | None = None,
        checkpoint=None,
        early_stop=None,
        progress: bool | None = None,
        block_size: int | None = None,
    ):
        """Voxel- and cluster-level FWE correction of the chi-square maps (Monte Carlo).

        Only call this from a corrector: ``FWECorrector(method="montecarlo", ...)``.

        Parameters
        ----------
        result : MetaResult
            The result of this estimator's last ``fit``.
        voxel_thresh : float
            Cluster-forming p: clusters are voxels with ``chi2 > chi2.isf(voxel_thresh, 1)``.
        n_iters : int
            Iterations (NiMARE's default 1000).
        n_cores : int, optional
            Threads when no Dask ``distributed`` client is active.
        random_state : int, optional
            Seed (default: the estimator's; None with label permutations seeds permutation
            ``i`` with ``i``, as NiMARE).
        checkpoint, early_stop, progress, block_size
            As for :meth:`ALE.correct_fwe_montecarlo`.

        Returns
        -------
        Correction
            For X in uniformity, group1 (= uniformity), group2 and association:
            ``p/z/logp_desc-X_level-voxel``, ``p/z/logp_desc-XMass_level-cluster`` and
            ``p/z/logp_desc-XSize_level-cluster`` (z two-tailed, signed like the uncorrected
            z), NiMARE's nulls (``values_desc-{pAgF,group1,group2,pFgA}...``) and the
            ``montecarlo`` table. Eager.
        """
        from nimare_dask.meta.cbma.fwe import run_record, two_sided_fwe_maps
        from nimare_dask.results import Correction

        if not getattr(self, "inputs_", None):
            raise RuntimeError("MKDAChi2: fit the estimator before correcting its result")
        n_iters = check_n_iters(n_iters, "MKDAChi2")
        if not 0 < float(voxel_thresh) < 1:
            raise ValueError(f"MKDAChi2: voxel_thresh must be in (0, 1), got {voxel_thresh!r}")
        mc, threshold, seed = self._chi2_null(
            float(voxel_thresh), n_iters, random_state, n_cores, checkpoint, early_stop,
            progress, block_size,
        )  # fmt: skip
        maps: dict = {}
        nulls: dict = {}
        tests = (
            ("uniformity", "uniformity", ("pAgF", "group1")),
            ("group2", "group2", ("group2",)),
            ("association", "association", ("pFgA",)),
        )
        for test, desc, null_names in tests:
            stat = np.asarray(result.get_map(f"chi2_desc-{desc}", return_type="array"))
            sign = np.sign(np.asarray(result.get_map(f"z_desc-{desc}", return_type="array")))
            null = {
                "voxel": mc[f"{test}_max"],
                "size": mc[f"{test}_size"].astype(np.float64),
                "mass": mc[f"{test}_mass"],
            }
            test_maps = two_sided_fwe_maps(stat, sign, null, threshold, result.grid, desc)
            maps.update(test_maps)
            if test == "uniformity":
                maps.update({k.replace("uniformity", "group1"): v for k, v in test_maps.items()})
            for name in null_names:
                nulls[f"values_desc-{name}_level-voxel_corr-fwe_method-montecarlo"] = null["voxel"]
                nulls[f"values_desc-{name}size_level-cluster_corr-fwe_method-montecarlo"] = null[
                    "size"
                ]
                nulls[f"values_desc-{name}mass_level-cluster_corr-fwe_method-montecarlo"] = null[
                    "mass"
                ]
        self.null_distributions_.update(nulls)
        record = run_record(
            mc,
            random_state=str(seed)
            if seed is not None
            else "None (permutation i seeded with i)"
            if self.fwe_null_method == "label-permutation"
            else str(mc.random_state),
            voxel_thresh=float(voxel_thresh),
            cluster_forming_threshold=threshold,
            fwe_null_method=self.fwe_null_method,
        )
        how = (
            "random reassignments of the studies to the two groups (group sizes preserved)"
            if self.fwe_null_method == "label-permutation"
            else f"datasets whose foci were moved to {self._coverage_text()}"
        )
        text = (
            "Family-wise error correction of the chi-square maps was performed with a Monte "
            f"Carlo procedure: {mc.n_iters_run} {how} gave null distributions of the maximum "
            "chi-square value and of the size and mass of the largest cluster (face-wise "
            f"connectivity, chi-square above {sig(threshold)}, i.e. p < {p_text(voxel_thresh)}) "
            "for each test."
        )
        return Correction(
            maps=maps, tables={"montecarlo": record}, description=text, null_distributions=nulls
        )

    def correct_fdr_indep(self, result, alpha: float = 0.05):
        """Benjamini-Hochberg FDR correction of the four tests (NiMARE's map names).

        Only call this from a corrector: ``FDRCorrector(method="indep")``.

        Parameters
        ----------
        result : MetaResult
            An MKDAChi2 result.
        alpha : float
            Unused: the maps are adjusted p-values (kept for NiMARE's signature).

        Returns
        -------
        Correction
            ``p/z/logp_desc-{uniformity,group1,group2,association}_level-voxel`` (z two-tailed,
            signed).
        """
        from nimare_dask.results import Correction
        from nimare_dask.stats.multiple import neglnp_fdr
        from nimare_dask.stats.transforms import P_FLOOR_FLOAT32, nlogp_to_z

        maps = {}
        for label in ("uniformity", "group2", "association"):
            p = np.asarray(result.get_map(f"p_desc-{label}", return_type="array"))
            nlogp = -np.log(np.clip(p.astype(np.float64), np.nextafter(0.0, 1.0), 1.0))
            floored = p <= P_FLOOR_FLOAT32
            if floored.any():  # past the float32 floor the logp map still has the value
                logp = np.asarray(result.get_map(f"logp_desc-{label}", return_type="array"))
                nlogp = np.where(floored, np.log(10.0) * logp.astype(np.float64), nlogp)
            corr = neglnp_fdr(nlogp, method="bh")
            sign = np.sign(np.asarray(result.get_map(f"z_desc-{label}", return_type="array")))
            out = {
                "p": nlogp_to_p(corr),
                "z": (nlogp_to_z(corr, tail="two") * sign).astype(np.float32),
                "logp": nlogp_to_logp(corr),
            }
            for key, value in out.items():
                maps[f"{key}_desc-{label}_level-voxel"] = value
                if label == "uniformity":
                    maps[f"{key}_desc-group1_level-voxel"] = value
        text = (
            "False discovery rate correction was performed with the Benjamini-Hochberg "
            "procedure \\citep{benjamini1995controlling}."
        )
        return Correction(maps=maps, description=text)

    def _description(self, ss1, ss2) -> str:
        return (
            "A multilevel kernel density chi-squared analysis \\citep{wager2007meta} was "
            f"performed according to the same procedure as implemented in Neurosynth "
            f"\\citep{{yarkoni2011large}} with {_TOOL}, using {an(self._kernel_name())} "
            f"kernel. {self._kernel_description()} The first dataset was evaluated for "
            "uniformity of activation via a one-way chi-square test, and the association "
            "between activation and group membership via a two-way chi-square test. "
            f"{inputs_sentence(ss1, which=1)} {inputs_sentence(ss2, which=2)}"
        ).replace("  ", " ")
