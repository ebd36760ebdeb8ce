"""Monte Carlo FWE correction shared by the CBMA estimators: run a null, make the maps.

* :func:`run_null` runs a block function on the Monte Carlo engine with the estimator's
  settings (threads or the active Dask client, checkpoint, early stopping, progress bar).
* :func:`upper_fwe_maps` turns one-sided max-statistic, max-cluster-size and max-cluster-mass
  nulls into NiMARE's ``logp/z`` maps (plus ``p`` maps) at voxel and cluster level.
* :func:`run_record` is the one-row table that records what a run did (iterations run, early
  stop and why, the seed used), stored with the result.

p-values follow NiMARE's ``null_to_p`` (``p = #(null >= x) / n``, clipped to
``[1/n, 1 - 1/n]``, no +1); clusters are 6-connected sets of voxels strictly above the
cluster-forming threshold, mass ``sum(stat - threshold)`` (:mod:`nimare_dask.stats.clusters`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from nimare_dask.meta.base import CBMAEstimator
from nimare_dask.meta.text import an, p_text, sig
from nimare_dask.montecarlo import EarlyStopping, MonteCarloResult, run_blocks
from nimare_dask.stats.clusters import cluster_p_maps
from nimare_dask.stats.nulls import null_to_p
from nimare_dask.stats.transforms import p_to_logp, p_to_z

__all__ = [
    "NULL_KEYS",
    "check_n_iters",
    "permutation_block_size",
    "run_null",
    "run_record",
    "two_sided_fwe_maps",
    "upper_fwe_maps",
]

#: NiMARE's keys of the one-sample FWE nulls.
NULL_KEYS = {
    "voxel": "values_level-voxel_corr-fwe_method-montecarlo",
    "size": "values_desc-size_level-cluster_corr-fwe_method-montecarlo",
    "mass": "values_desc-mass_level-cluster_corr-fwe_method-montecarlo",
}


def check_n_iters(n_iters: Any, owner: str) -> int:
    """``n_iters`` as a positive int (``TypeError``/``ValueError`` naming ``owner``)."""
    if isinstance(n_iters, bool) or not isinstance(n_iters, int | np.integer):
        raise TypeError(f"{owner}: n_iters must be a positive integer, got {n_iters!r}")
    if n_iters < 1:
        raise ValueError(f"{owner}: n_iters must be >= 1, got {n_iters}")
    return int(n_iters)


def permutation_block_size(n_iters: int) -> int:
    """Permutations per block of a label-permutation null: up to 64, a multiple of 8.

    A block is a product of a (studies x block) membership matrix with the per-study maps:
    its multiply-adds run over the block's permutations in vector lanes, so a block of 64
    costs far less per permutation than the small blocks that timing calibration picks (the
    per-block setup is large). At least 8 blocks per run, for parallelism.
    """
    size = -(-int(n_iters) // 8)
    if size >= 8:
        size = min(64, size // 8 * 8)
    return max(1, size)


def _n_threads(n_cores: int | None) -> int | None:
    if n_cores is None or n_cores <= 0:
        return None  # the engine's default: dask's num_workers, else all cores
    return int(min(n_cores, os.cpu_count() or n_cores))


def run_null(
    block_fn: Callable,
    n_iters: int,
    *,
    stream: str,
    name: str,
    fingerprint: str,
    random_state: int | None = None,
    reducer: Any = "concat",
    n_cores: int | None = None,
    checkpoint: str | Path | Any | None = None,
    early_stop: EarlyStopping | None = None,
    progress: bool = True,
    block_size: int | None = None,
) -> MonteCarloResult:
    """Run a null on the Monte Carlo engine with an estimator's settings.

    Parameters
    ----------
    block_fn : callable
        ``block_fn(start, stop, seed_info) -> dict`` (see :mod:`nimare_dask.montecarlo`).
    n_iters : int
        Iterations.
    stream : str
        Random stream name (NiMARE's, e.g. ``"correct_fwe_montecarlo"``).
    name : str
        Task name on the Dask dashboard and progress-bar label.
    fingerprint : str
        Everything the blocks depend on besides the seed (checked against a checkpoint).
    random_state : int, optional
        Seed (None: a fresh one, recorded in the result).
    reducer : str or dict
        How outputs combine (``"concat"`` per iteration or ``"sum"``).
    n_cores : int, optional
        Threads of the local pool when no ``distributed`` client is active.
    checkpoint : str, Path or zarr.Group, optional
        Where finished blocks are saved; a rerun with the same arguments resumes.
    early_stop : EarlyStopping, optional
        Stop once the FWE thresholds are precise enough.
    progress : bool
        Show a progress bar.
    block_size : int, optional
        Iterations per block (default: calibrated to about half a second).

    Returns
    -------
    MonteCarloResult
        Eager arrays.
    """
    return run_blocks(
        block_fn,
        n_iters,
        block_size,
        random_state=random_state,
        stream=stream,
        reducer=reducer,
        checkpoint=checkpoint,
        early_stop=early_stop,
        progress=progress,
        name=name,
        inputs_fingerprint=fingerprint,
        n_threads=_n_threads(n_cores),
    )


def run_record(mc: MonteCarloResult, **extra: Any) -> pd.DataFrame:
    """A one-row table describing a Monte Carlo run (kept with the corrected result).

    Parameters
    ----------
    mc : MonteCarloResult
        The run.
    **extra
        More columns (e.g. ``voxel_thresh``, ``cluster_forming_threshold``).

    Returns
    -------
    pandas.DataFrame
    """
    row = {
        "n_iters": mc.n_iters,
        "n_iters_run": mc.n_iters_run,
        "stopped_early": mc.stopped_early,
        "reason": mc.reason,
        "random_state": str(mc.random_state),
        "stream": mc.stream,
        "block_size": mc.block_size,
        "n_blocks_computed": mc.n_blocks_computed,
        "n_blocks_loaded": mc.n_blocks_loaded,
        "backend": mc.backend,
        "checkpoint": mc.checkpoint or "",
        "wall_s": round(float(mc.timing.get("wall_s", 0.0)), 3),
    }
    row.update(extra)
    return pd.DataFrame([row])


def _p_maps(prefix: str, suffix: str, p: np.ndarray, z: np.ndarray) -> dict[str, np.ndarray]:
    return {
        f"p{prefix}{suffix}": np.asarray(p, dtype=np.float32),
        f"z{prefix}{suffix}": np.asarray(z, dtype=np.float32),
        f"logp{prefix}{suffix}": p_to_logp(p),
    }


def upper_fwe_maps(
    stat: np.ndarray,
    nulls: Mapping[str, np.ndarray],
    threshold: float | None,
    grid: Any,
    vfwe_only: bool = False,
    p_voxel: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """One-sided voxel- and cluster-level FWE maps from max-statistic nulls (NiMARE's CBMA rule).

    Parameters
    ----------
    stat : numpy.ndarray
        (n_voxels,) observed statistic (as stored in the result, float32).
    nulls : mapping
        ``"voxel"``, ``"size"``, ``"mass"``: per-iteration maxima.
    threshold : float, optional
        Cluster-forming threshold on the statistic (strict ``>``).
    grid : Grid
        The voxel grid (clusters are 6-connected on it).
    vfwe_only : bool
        Only the voxel-level maps.
    p_voxel : numpy.ndarray, optional
        Voxel-level p-values computed elsewhere (the histogram of the maxima).

    Returns
    -------
    dict
        ``p/z/logp_level-voxel`` and, unless ``vfwe_only``, ``p/z/logp_desc-size_level-cluster``
        and ``p/z/logp_desc-mass_level-cluster`` (eager; z one-tailed).
    """
    stat = np.asarray(stat)
    if p_voxel is None:
        p_voxel = null_to_p(stat, nulls["voxel"], tail="upper")
    maps = _p_maps("", "_level-voxel", p_voxel, p_to_z(p_voxel, tail="one"))
    if vfwe_only:
        return maps
    cl = cluster_p_maps(stat, threshold, nulls["size"], nulls["mass"], grid)
    maps.update(_p_maps("_desc-size", "_level-cluster", cl.p_size, p_to_z(cl.p_size, "one")))
    maps.update(_p_maps("_desc-mass", "_level-cluster", cl.p_mass, p_to_z(cl.p_mass, "one")))
    return maps


def two_sided_fwe_maps(
    stat: np.ndarray,
    sign: np.ndarray,
    nulls: Mapping[str, np.ndarray],
    threshold: float | None,
    grid: Any,
    desc: str,
    vfwe_only: bool = False,
    two_sided_clusters: bool = True,
) -> dict[str, np.ndarray]:
    """FWE maps of a signed or unsigned statistic tested on its magnitude (pairwise estimators).

    ``p = null_to_p(|stat|, max |null|, "upper")``; clusters of ``|stat| > threshold``
    (positive and negative labelled apart when ``two_sided_clusters``); z two-tailed and
    signed by ``sign`` (NiMARE's ALESubtraction and MKDAChi2).

    Parameters
    ----------
    stat : numpy.ndarray
        (n_voxels,) statistic.
    sign : numpy.ndarray
        Sign given to the z maps.
    nulls : mapping
        ``"voxel"``, ``"size"``, ``"mass"``.
    threshold : float, optional
        Cluster-forming threshold on ``|stat|``.
    grid : Grid
        The voxel grid.
    desc : str
        Map ``desc`` entity: maps are ``p_desc-<desc>_level-voxel``,
        ``p_desc-<desc>Size_level-cluster``, ``p_desc-<desc>Mass_level-cluster`` ...
    vfwe_only : bool
        Only the voxel-level maps.
    two_sided_clusters : bool
        Label negative values as clusters too.

    Returns
    -------
    dict
        Eager maps.
    """
    stat = np.asarray(stat)
    sign = np.asarray(sign)
    p_voxel = null_to_p(np.abs(stat), nulls["voxel"], tail="upper")
    maps = _p_maps(f"_desc-{desc}", "_level-voxel", p_voxel, p_to_z(p_voxel, "two") * sign)
    if vfwe_only:
        return maps
    cl = cluster_p_maps(
        stat, threshold, nulls["size"], nulls["mass"], grid, two_sided=two_sided_clusters
    )
    for what, p in (("Mass", cl.p_mass), ("Size", cl.p_size)):
        maps.update(_p_maps(f"_desc-{desc}{what}", "_level-cluster", p, p_to_z(p, "two") * sign))
    return maps


# ---------------------------------------------------------------------------- estimator mixin
def _description(
    n_run: int, stat: str, threshold, voxel_thresh, vfwe_only, mc, where: str = "the mask"
) -> str:
    """Methods text of a random-foci Monte Carlo FWE correction."""
    retained = (
        "statistic"
        if vfwe_only
        else ("statistic, the size of the largest cluster and the mass of the largest cluster")
    )
    text = (
        "Family-wise error rate correction was performed with a Monte Carlo procedure "
        "\\citep{eickhoff2012activation,eickhoff2016behavior}: in each of "
        f"{n_run} iterations every focus was moved to a voxel drawn at random from {where} "
        "(preserving each experiment's number of foci and sample size), and the maximum "
        f"{retained} were retained. "
    )
    if not vfwe_only:
        text += (
            f"Clusters were defined with face-wise (6-) connectivity as voxels with {an(stat)} "
            f"above {sig(threshold)}, the value corresponding to an uncorrected p < "
            f"{p_text(voxel_thresh)} under the estimator's null distribution; a cluster's mass "
            "is the sum of its values minus that threshold. "
        )
    text += "Corrected p-values are the fraction of iterations whose maximum is at least as large."
    if mc is not None and mc.stopped_early:
        text += (
            f" The run stopped early after {mc.n_iters_run} of {mc.n_iters} iterations, once the "
            "Monte Carlo standard error of the 95th percentile of each null fell below the "
            "requested tolerance."
        )
    return text


class RandomFociFWEMixin:
    """Monte Carlo FWE correction (random-foci null) for ALE, MKDADensity and KDA.

    The estimator provides ``_null_kind`` ("ale", "union" or "sum"), ``kernel``,
    ``random_state``, ``n_cores``, ``summarystat_threshold(p)`` and, after ``fit``,
    ``inputs_["studyset"]`` (and ``weight_vec_`` for weighted MKDA).
    """

    _null_kind: str = "ale"
    _stat_name: str = "summary statistic"

    def _null_weights(self):
        return None

    def _fitted_studyset(self, result=None):
        inputs = getattr(self, "inputs_", None)
        if not inputs or "studyset" not in inputs:
            raise RuntimeError(
                f"{type(self).__name__}: Monte Carlo correction needs the studyset the estimator "
                "was fitted on; call fit() first (results built without fit cannot be "
                "corrected by Monte Carlo)"
            )
        ss = inputs["studyset"]
        if (
            result is not None
            and "stat" in result.maps
            and result.grid.n_voxels != ss.grid.n_voxels
        ):
            raise ValueError(
                f"{type(self).__name__}: the result's maps have {result.grid.n_voxels} voxels but "
                f"the estimator was last fitted on a grid of {ss.grid.n_voxels}; correct the "
                "result of the last fit"
            )
        return ss

    def _null_block(self, ss, mode: str, **kwargs):
        from nimare_dask.meta.cbma.random_foci import build_random_foci_null

        weights = self._null_weights()
        kwargs.setdefault("pool_ijk", self._coverage_pool(ss.grid))
        return build_random_foci_null(
            self.kernel,
            [ss],
            self._null_kind,
            mode=mode,
            weights=None if weights is None else [weights],
            **kwargs,
        )

    def _montecarlo_histogram(self, ss, bins: np.ndarray, n_iters: int, rint: bool = False, **kw):
        """The random-foci histogram null of the statistic (``null_method="montecarlo"``)."""
        bins = np.asarray(bins, dtype=np.float64)
        step = bins[1] - bins[0]
        edges = np.append(bins - step / 2, bins[-1] + step / 2)
        block = self._null_block(ss, "hist", edges=edges, rint_step=step if rint else 0.0)
        mc = run_null(
            block,
            n_iters,
            stream="null_montecarlo",
            name=f"{type(self).__name__.lower()}-null-montecarlo-block",
            fingerprint=block.fingerprint(),
            random_state=getattr(self, "random_state", None),
            reducer={"hist": "sum"},
            n_cores=getattr(self, "n_cores", None),
            progress=getattr(self, "progress", True),
            **kw,
        )
        last = np.bincount(mc["last_bin"], minlength=len(bins)).astype(np.int64)
        self.montecarlo_ = {**(getattr(self, "montecarlo_", None) or {}), "null_montecarlo": mc}
        return {
            "histweights_corr-none_method-montecarlo": mc["hist"].astype(np.int64),
            "histweights_level-voxel_corr-fwe_method-montecarlo": last,
        }

    def correct_fwe_montecarlo(
        self,
        result,
        voxel_thresh: float = 0.001,
        n_iters: int = 5000,
        vfwe_only: bool = False,
        random_state: int | None = None,
        n_cores: int | None = None,
        checkpoint=None,
        early_stop: EarlyStopping | None = None,
        progress: bool | None = None,
        block_size: int | None = None,
        tfce: bool = False,
    ):
        """Voxel- and cluster-level FWE correction with a random-foci Monte Carlo null.

        Only call this from a corrector: ``FWECorrector(method="montecarlo", ...)
        .transform(result)``.

        Parameters
        ----------
        result : MetaResult
            The result of this estimator's last ``fit``.
        voxel_thresh : float
            Cluster-forming threshold as an uncorrected p-value, converted to a statistic value
            with the estimator's uncorrected null (NiMARE's rule).
        n_iters : int
            Monte Carlo iterations (NiMARE's default 5000; 10,000 is usual for ALE).
        vfwe_only : bool
            Only voxel-level correction. With ``null_method="montecarlo"`` the fit's histogram
            of per-iteration maxima is used and nothing is recomputed (as NiMARE).
        random_state : int, optional
            Seed (default: the estimator's ``random_state``; None draws a fresh seed, recorded
            in the ``montecarlo`` table).
        n_cores : int, optional
            Threads when no Dask ``distributed`` client is active (default: the estimator's).
        checkpoint : str, Path or zarr.Group, optional
            A Zarr group where finished blocks are saved; rerunning the same correction resumes
            from it (a checkpoint of another run is refused).
        early_stop : EarlyStopping, optional
            Stop once the Monte Carlo standard errors of the 95th percentiles are small.
        progress : bool, optional
            Show a progress bar (default: the estimator's ``progress``).
        block_size : int, optional
            Iterations per task (default: calibrated to about half a second).
        tfce : bool
            ALE only: also threshold-free cluster enhancement of the z map and its voxel-level
            FWE from the maximum TFCE of the same iterations (:mod:`.ale_tfce`; JALE's TFCE).

        Returns
        -------
        Correction
            Maps ``p/z/logp_level-voxel``, ``p/z/logp_desc-size_level-cluster`` and
            ``p/z/logp_desc-mass_level-cluster`` (z one-tailed; NiMARE has no ``p`` maps), the
            nulls ``values_level-voxel_corr-fwe_method-montecarlo``,
            ``values_desc-{size,mass}_level-cluster_corr-fwe_method-montecarlo``, and the
            table ``montecarlo`` (iterations run, early stop, seed). With ``tfce``: also
            ``stat_desc-tfce``, ``p/z/logp_desc-tfce_level-voxel`` and the null
            ``values_desc-tfce_level-voxel_corr-fwe_method-montecarlo``. Eager.
        """
        from nimare_dask.results import Correction
        from nimare_dask.stats.nulls import nullhist_to_p

        owner = type(self).__name__
        n_iters = check_n_iters(n_iters, owner)
        if not 0 < float(voxel_thresh) < 1:
            raise ValueError(f"{owner}: voxel_thresh must be in (0, 1), got {voxel_thresh!r}")
        if not isinstance(tfce, bool | np.bool_):
            raise TypeError(f"{owner}: tfce must be True or False, got {tfce!r}")
        if tfce and self._null_kind != "ale":
            raise ValueError(f"{owner}: tfce=True is only available for ALE (JALE's TFCE)")
        ss = self._fitted_studyset(result)
        stat = np.asarray(result.get_map("stat", return_type="array"))
        nulls_ = getattr(self, "null_distributions_", {}) or {}
        if vfwe_only and not tfce and getattr(self, "null_method", "") == "montecarlo":
            hist = nulls_["histweights_level-voxel_corr-fwe_method-montecarlo"]
            p = nullhist_to_p(stat, hist, nulls_["histogram_bins"])
            maps = upper_fwe_maps(stat, {}, None, result.grid, vfwe_only=True, p_voxel=p)
            text = (
                "Family-wise error rate correction was performed at the voxel level with the "
                "histogram of the maximum statistic of the uncorrected Monte Carlo null."
            )
            return Correction(maps=maps, description=text)
        threshold = None if vfwe_only else float(self.summarystat_threshold(voxel_thresh))
        if tfce:
            from nimare_dask.meta.cbma.ale_tfce import tfce_block

            block = tfce_block(self, ss, threshold)
        else:
            block = self._null_block(ss, "fwe", threshold=threshold)
        seed = random_state if random_state is not None else getattr(self, "random_state", None)
        mc = run_null(
            block,
            n_iters,
            stream="correct_fwe_montecarlo",
            name=f"{owner.lower()}-fwe-null-block",
            fingerprint=block.fingerprint(),
            random_state=seed,
            n_cores=n_cores if n_cores is not None else getattr(self, "n_cores", None),
            checkpoint=checkpoint,
            early_stop=early_stop,
            progress=getattr(self, "progress", True) if progress is None else progress,
            block_size=block_size,
        )
        self.montecarlo_ = {
            **(getattr(self, "montecarlo_", None) or {}),
            "correct_fwe_montecarlo": mc,
        }
        nulls = {"voxel": mc["max_stat"].astype(np.float32)}
        null_out = {NULL_KEYS["voxel"]: nulls["voxel"]}
        if not vfwe_only:
            nulls["size"] = mc["max_size"].astype(np.float32)
            nulls["mass"] = mc["max_mass"].astype(np.float32)
            null_out[NULL_KEYS["size"]] = nulls["size"]
            null_out[NULL_KEYS["mass"]] = nulls["mass"]
        maps = upper_fwe_maps(stat, nulls, threshold, result.grid, vfwe_only=vfwe_only)
        tfce_text = ""
        if tfce:
            from nimare_dask.meta.cbma.ale_tfce import tfce_correction

            tfce_maps, tfce_null, tfce_text = tfce_correction(self, result, mc)
            maps.update(tfce_maps)
            null_out.update(tfce_null)
        if isinstance(getattr(self, "null_distributions_", None), dict):
            self.null_distributions_.update(null_out)
        table = run_record(
            mc,
            voxel_thresh=float(voxel_thresh),
            cluster_forming_threshold=np.nan if threshold is None else threshold,
            vfwe_only=bool(vfwe_only),
            tfce=bool(tfce),
        )
        where = (
            "the grey-matter voxels of the mask (MNI152 grey-matter probability > 0.1)"
            if getattr(self, "mask_coverage", "brain") == "gm"
            else "the mask"
        )
        text = _description(
            mc.n_iters_run, self._stat_name, threshold, voxel_thresh, vfwe_only, mc, where
        )
        if tfce_text:
            text = f"{text} {tfce_text}"
        return Correction(
            maps=maps,
            tables={"montecarlo": table},
            description=text,
            null_distributions=null_out,
        )


#: NiMARE's default number of iterations of Monte Carlo nulls.
DEFAULT_N_ITERS = 5000


class RandomFociEstimator(RandomFociFWEMixin, CBMAEstimator):
    """Base of the one-sample estimators with a random-foci null (ALE, MKDADensity, KDA).

    Holds their shared parameters (see :class:`~nimare_dask.meta.cbma.ale.ALE`) and the
    ``null_method`` checks; ``__init__`` only stores.
    """

    def __init__(
        self,
        kernel=None,
        null_method: str = "approximate",
        n_iters: int | None = None,
        random_state: int | None = None,
        n_cores: int | None = None,
        mask=None,
        mask_coverage: str = "brain",
        chunks: int | None = None,
        progress: bool = True,
        **kwargs,
    ):
        self._init_kernel(kernel, kwargs)
        self.null_method = null_method
        self.n_iters = n_iters
        self.random_state = random_state
        self.n_cores = n_cores
        self.mask = mask
        self.mask_coverage = mask_coverage
        self.chunks = chunks
        self.progress = progress

    def _check_null_method(self) -> None:
        if self.null_method not in ("approximate", "montecarlo"):
            raise ValueError(
                f"null_method must be 'approximate' or 'montecarlo'; got {self.null_method!r}"
            )

    def _n_null_iters(self) -> int:
        n = DEFAULT_N_ITERS if self.n_iters is None else self.n_iters
        return check_n_iters(n, type(self).__name__)

    def _fit(self, studyset):
        """``fit``: prepare the input, compute the lazy pieces of :meth:`_fit_parts` in one
        ``dask.compute``, finish."""
        self._check_null_method()
        ss = self._prepare(studyset)
        lazy, finish = self._fit_parts(ss)
        return finish(self._compute(*lazy))

    def _fit_parts(self, ss):  # pragma: no cover - overridden
        """``(lazy pieces, finish)`` of a fit on the prepared studyset ``ss``: ``finish`` takes
        the computed pieces (a list, in order) and returns the result."""
        raise NotImplementedError
