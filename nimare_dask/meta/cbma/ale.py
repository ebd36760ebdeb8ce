"""CBMA estimators of the ALE family: ALE, ALESubtraction, SCALE.

ALE (Turkeltaub et al. 2002, 2012; Eickhoff et al. 2009, 2012): each study's foci are blurred
into a modelled-activation (MA) map, the voxel-wise maximum over its foci; the ALE statistic is
the union ``1 - prod_i (1 - MA_i)``, computed as ``1 - exp(sum_i log1p(-MA_i))`` by a
chunk/combine reduction over studies (so any chunking gives the same answer). p-values come from
the approximate null of Eickhoff et al. (2012): per-study histograms of MA values combined by the
nearest-bin product convolution (:mod:`nimare_dask.stats.nulls`), exactly as NiMARE 0.22.1.

The union and the histograms come from one pass over each chunk's MA maps
(:mod:`nimare_dask.meta.cbma.chunkstats`) rather than from ``kernel.reduce("log1m")``, whose
float64 logarithm differs from NiMARE's float32 one by an ulp often enough to move ALE values
across histogram bins; SCALE, whose null is random anyway, uses the kernel's reductions.
"""

from __future__ import annotations

import numpy as np

from nimare_dask import __version__
from nimare_dask.kernels import ALEKernel
from nimare_dask.meta.cbma.chunkstats import ale_chunk_stats
from nimare_dask.meta.cbma.fwe import RandomFociEstimator
from nimare_dask.meta.text import an, inputs_sentence
from nimare_dask.results import MetaResult
from nimare_dask.stats.nulls import (
    ale_histogram_bins,
    ale_null_from_histograms,
    histogram_bin_of,
    nullhist_p_table,
    nullhist_to_p,
    nullhist_to_stat,
)
from nimare_dask.stats.transforms import nlogp_to_logp, p_to_z

__all__ = ["ALE"]

_NULL_KEYS = ("histogram_bins", "histweights_corr-none_method-approximate")
_MC_KEY = "histweights_corr-none_method-montecarlo"


def _ale_stat(log1m) -> np.ndarray:
    """ALE from the summed ``log(1 - MA)``: float64 union, stored as float32."""
    return (1.0 - np.exp(np.asarray(log1m, dtype=np.float64))).astype(np.float32)


def ale_approximate_maps(stat, counts, row_max, n_voxels):
    """stat/p/z/logp maps and the null histogram from computed per-study histograms.

    The null is exact up to the bin of the largest statistic; the mass above it is lumped into
    the next bin (see :func:`~nimare_dask.stats.nulls.ale_null_from_histograms`): every p-value
    is NiMARE's, at a fraction of the work.
    """
    bins = ale_histogram_bins(row_max)
    top = int(histogram_bin_of(np.max(stat, initial=0), bins))
    weights = ale_null_from_histograms(counts, n_voxels, bins, top_bin=top)
    maps = {"stat": stat, **_maps_of_p(*nullhist_p_table(stat, weights, bins))}
    nulls = {_NULL_KEYS[0]: bins, _NULL_KEYS[1]: weights}
    return maps, nulls, [counts, n_voxels, top]


def _maps_of_p(rows: np.ndarray, p_table: np.ndarray) -> dict:
    """p, z (one-tailed) and logp maps from a p table, each function evaluated once per row."""
    used = np.zeros(p_table.size, dtype=bool)
    used[rows] = True
    which = np.flatnonzero(used)
    z_table = np.zeros(p_table.size)
    logp_table = np.zeros(p_table.size, dtype=np.float32)
    z_table[which] = p_to_z(p_table[which], tail="one")
    logp_table[which] = nlogp_to_logp(-np.log(p_table[which]))
    return {"p": p_table[rows], "z": z_table[rows], "logp": logp_table[rows]}


def approximate_threshold(nulls: dict, lumped, p: float) -> float:
    """The ALE value for an uncorrected p-value from a (possibly lumped) approximate null.

    ``lumped`` is ``(counts, n_voxels, top_bin)`` of the fit (or None). When the threshold lies
    above the exactly computed bins (the lumped tail alone exceeds ``p``: nothing in the data
    reaches it), the whole null is computed once and kept in ``nulls``.
    """
    bins, weights = nulls[_NULL_KEYS[0]], nulls[_NULL_KEYS[1]]
    if lumped is not None:
        counts, n_voxels, top = lumped
        tail = weights[top + 1 :].sum() / weights.sum() if top + 1 < weights.size else 0.0
        if tail > p:
            weights = ale_null_from_histograms(counts, n_voxels, bins)
            nulls[_NULL_KEYS[1]] = weights
            lumped[2] = bins.size
    return nullhist_to_stat(weights, bins, p)


def _own_csr(csr, n_voxels):
    return csr


def _stack_csr(parts):
    import scipy.sparse as sp

    out = sp.vstack(parts, format="csr")
    out.sort_indices()
    return out


_ALE_CITE = "\\citep{turkeltaub2002meta,turkeltaub2012minimizing,eickhoff2012activation}"
_TOOL = (
    f"nimare_dask {__version__}, a reimplementation of NiMARE \\citep{{salo2023nimare}} on "
    "Dask and Zarr"
)


class ALE(RandomFociEstimator):
    """Activation likelihood estimation.

    Parameters
    ----------
    kernel : ALEKernel, optional
        The MA kernel (default ``ALEKernel()``: width from each analysis's sample size).
        ``kernel__fwhm=10`` style keyword arguments configure it; ``kernel_transformer=`` is
        accepted as an alias.
    null_method : {"approximate", "montecarlo"}
        How stat values become p-values: the approximate null (Eickhoff et al., 2012) or a
        random-foci Monte Carlo null (the histogram of the ALE maps of ``n_iters`` datasets
        whose foci are moved to random in-mask voxels, see ``mask_coverage``).
    n_iters : int, optional
        Iterations of the Monte Carlo null (default 5000; unused by the approximate null).
    random_state : int, optional
        Seed of random steps (Monte Carlo null and FWE correction). None: a fresh seed per
        run, recorded in the correction's ``montecarlo`` table.
    n_cores : int, optional
        Threads of the local scheduler when no Dask scheduler is configured, and of the
        null-histogram convolution (default: all cores).
    mask : str, Grid, image or path, optional
        Analysis mask (default: the studyset's grid).
    mask_coverage : {"brain", "gm"}
        Voxels random foci are drawn from (Monte Carlo nulls): every mask voxel, or, as
        NiMARE's ``mask_coverage="gm"``, those with MNI152 grey-matter probability > 0.1.
    chunks : int, optional
        Analyses per task (default: the kernel's dense chunk size, ~64 MB of float32 maps;
        each task builds its analyses' MA maps once, as CSR).
    progress : bool
        Show progress bars of Monte Carlo runs.

    Notes
    -----
    ``fit`` returns a :class:`~nimare_dask.results.MetaResult` with maps ``stat``, ``p``, ``z``
    (one-tailed) and ``logp`` and null distributions ``histogram_bins`` and
    ``histweights_corr-none_method-approximate`` (or, with ``null_method="montecarlo"``,
    ``histweights_corr-none_method-montecarlo`` and
    ``histweights_level-voxel_corr-fwe_method-montecarlo``); the maps are computed in one
    ``dask.compute``. Analyses without foci are dropped.

    ``FWECorrector(method="montecarlo")`` calls :meth:`correct_fwe_montecarlo`: voxel- and
    cluster-level FWE from a random-foci null run in blocks on the Monte Carlo engine
    (threads, or the active Dask ``distributed`` client; identical for any number of
    workers).
    """

    _default_kernel = ALEKernel
    _null_kind = "ale"
    _stat_name = "ALE value"

    def fit(self, studyset) -> MetaResult:
        """Fit the estimator to a studyset.

        Parameters
        ----------
        studyset : Studyset or str or Path
            An in-memory studyset, one opened from a store, or the path of a store.

        Returns
        -------
        MetaResult
            Computed maps ``stat``, ``p``, ``z``, ``logp`` (float32); also kept as
            ``self.result_``.
        """
        return self._fit(studyset)

    def _fit_parts(self, ss):
        """A fit of the prepared studyset ``ss`` in two steps: the lazy pass over its chunks
        (:func:`~nimare_dask.meta.cbma.chunkstats.ale_chunk_stats`) and the function that
        turns the computed pass into the result.

        :meth:`fit` computes the pass at once; :func:`~nimare_dask.workflows.macm` computes the
        passes of many seeds in one ``dask.compute``: the same tasks, so the same numbers.
        """
        self._check_sample_sizes(ss)
        lazy = [ale_chunk_stats(self.kernel, ss, self.chunks)]
        return lazy, lambda computed: self._fit_finish(ss, *computed)

    def _fit_finish(self, ss, stats) -> MetaResult:
        log1m, counts, row_max = stats
        self.inputs_ = {"studyset": ss}
        self._lumped_null_ = None
        if self.null_method == "montecarlo":
            stat = _ale_stat(log1m)
            bins = ale_histogram_bins(row_max)
            nulls = {_NULL_KEYS[0]: bins}
            nulls.update(self._montecarlo_histogram(ss, bins, self._n_null_iters()))
            p = nullhist_to_p(stat, nulls[_MC_KEY], bins)
            maps = {
                "stat": stat,
                "p": p,
                "z": p_to_z(p, tail="one"),
                "logp": nlogp_to_logp(-np.log(p)),
            }
        else:
            maps, nulls, self._lumped_null_ = ale_approximate_maps(
                _ale_stat(log1m), counts, row_max, ss.grid.n_voxels
            )
        self.null_distributions_ = nulls
        description = self._description(ss)
        self.result_ = MetaResult(
            estimator=self,
            grid=ss.grid,
            maps=maps,
            description=description,
            null_distributions=dict(nulls),
        )
        return self.result_

    def _description(self, ss) -> str:
        if self.null_method == "montecarlo":
            null = (
                "a Monte Carlo null distribution: the ALE maps of "
                f"{self._n_null_iters()} datasets whose foci were moved to {self._coverage_text()}"
            )
        else:
            null = "an approximate null distribution \\citep{eickhoff2012activation}"
        return (
            f"An activation likelihood estimation (ALE) meta-analysis {_ALE_CITE} was performed "
            f"with {_TOOL}, using {an(self._kernel_name())} kernel. "
            f"{self._kernel_description()} ALE values were converted to p-values using "
            f"{null}. {inputs_sentence(ss, self.kernel)}"
        ).replace("  ", " ")

    def summarystat_threshold(self, p: float) -> float:
        """The ALE value whose uncorrected-null upper-tail probability first falls to ``p``.

        The null is the one ``null_method`` chose (approximate or Monte Carlo histogram).

        Parameters
        ----------
        p : float
            Uncorrected p-value (e.g. the cluster-forming 0.001).

        Returns
        -------
        float
        """
        nulls = getattr(self, "null_distributions_", None)
        if not nulls:
            raise RuntimeError(f"{type(self).__name__} is not fitted yet")
        if _MC_KEY in nulls and _NULL_KEYS[1] not in nulls:
            return nullhist_to_stat(nulls[_MC_KEY], nulls[_NULL_KEYS[0]], p)
        return approximate_threshold(nulls, getattr(self, "_lumped_null_", None), p)


def __getattr__(name: str):
    """NiMARE's import paths ``...cbma.ale.ALESubtraction`` and ``...cbma.ale.SCALE`` (the
    classes live in :mod:`.subtraction` and :mod:`.scale`)."""
    if name == "ALESubtraction":
        from nimare_dask.meta.cbma.subtraction import ALESubtraction

        return ALESubtraction
    if name == "SCALE":
        from nimare_dask.meta.cbma.scale import SCALE

        return SCALE
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
