"""SCALE (Langner et al. 2014): ALE against a null that resamples foci from a reference pool
(NiMARE's ``SCALE``; moved here from :mod:`.ale`, which still exports it under NiMARE's import
path ``nimare_dask.meta.cbma.ale.SCALE``)."""

from __future__ import annotations

import numpy as np

from nimare_dask.kernels import ALEKernel
from nimare_dask.meta.base import CBMAEstimator
from nimare_dask.meta.cbma.ale import _TOOL, _ale_stat
from nimare_dask.meta.cbma.chunkstats import ale_chunk_stats
from nimare_dask.meta.cbma.fwe import DEFAULT_N_ITERS
from nimare_dask.meta.text import an, inputs_sentence
from nimare_dask.results import MetaResult
from nimare_dask.stats.transforms import p_to_logp, p_to_z

__all__ = ["SCALE"]


class SCALE(CBMAEstimator):
    """Specific coactivation likelihood estimation (Langner et al. 2014).

    ALE values tested against a voxel-wise null in which every focus is moved to a random
    coordinate of a reference pool (``xyz``, e.g. all foci of a database), preserving each
    study's number of foci and sample size.

    Parameters
    ----------
    xyz : numpy.ndarray
        (N, 3) reference pool of coordinates in mm.
    n_iters : int
        Iterations of the null.
    n_cores : int, optional
        Threads when no Dask ``distributed`` client is active.
    kernel : ALEKernel, optional
        The MA kernel (``kernel__*`` keyword arguments configure the default).
    random_state : int, optional
        Seed of the null (NiMARE's stream ``scale_permutations``; iteration ``i`` draws from
        :func:`nimare_dask.montecarlo.iteration_rng`, so the result does not depend on blocks
        or workers). None draws a fresh seed at each fit (kept in ``seed_``).
    mask : str, Grid, image or path, optional
        Analysis mask (default: the studyset's grid).
    chunks : int, optional
        Analyses per chunk of the observed MA maps.
    iters_per_block : int, optional
        Iterations per task (default: calibrated to about half a second).
    checkpoint : str, Path or zarr.Group, optional
        Zarr group for the null's blocks (a rerun resumes).
    progress : bool
        Show a progress bar.

    Notes
    -----
    Maps: ``stat``, ``p`` (which NiMARE does not return), ``z`` (one-tailed) and ``logp``.
    p = #(null >= observed) / n_iters, clipped to ``[1/n_iters, 1 - 1/n_iters]``.
    The same iterations give each iteration's maximum ALE, kept as the voxel-level FWE null
    (``values_level-voxel_corr-fwe_method-montecarlo``): :meth:`correct_fwe_montecarlo` with
    the fit's ``n_iters`` and seed reuses it (NiMARE recomputes the same permutations).
    """

    _default_kernel = ALEKernel
    _stream = "scale_permutations"

    def __init__(
        self,
        xyz,
        n_iters: int = DEFAULT_N_ITERS,
        n_cores: int | None = None,
        kernel=None,
        random_state: int | None = None,
        mask=None,
        chunks: int | None = None,
        iters_per_block: int | None = None,
        checkpoint=None,
        progress: bool = True,
        **kwargs,
    ):
        self.xyz = xyz
        self.n_iters = n_iters
        self.n_cores = n_cores
        self._init_kernel(kernel, kwargs)
        self.random_state = random_state
        self.mask = mask
        self.chunks = chunks
        self.iters_per_block = iters_per_block
        self.checkpoint = checkpoint
        self.progress = progress

    def _pool(self) -> np.ndarray:
        xyz = self.xyz
        if not isinstance(xyz, np.ndarray):
            raise TypeError(f"SCALE: xyz must be a numpy.ndarray, not {type(xyz).__name__}")
        if xyz.ndim != 2 or xyz.shape[1] != 3 or xyz.shape[0] == 0:
            raise ValueError(f"SCALE: xyz must have shape (N, 3) with N >= 1; got {xyz.shape}")
        if not np.isfinite(xyz).all():
            raise ValueError("SCALE: xyz has missing or non-finite coordinates")
        return xyz

    def _null(
        self,
        ss,
        mode: str,
        n_iters: int,
        seed,
        checkpoint=None,
        *,
        n_cores: int | None = None,
        progress: bool | None = None,
        block_size: int | None = None,
        early_stop=None,
        **kw,
    ):
        """Run the pool-resampling null; run settings are passed, never set on ``self``."""
        from nimare_dask.meta.cbma.fwe import run_null
        from nimare_dask.meta.cbma.random_foci import build_random_foci_null

        pool_ijk = ss.grid.mm_to_ijk(self._pool()).astype(np.int64)
        block = build_random_foci_null(self.kernel, [ss], "ale", mode=mode, pool_ijk=pool_ijk, **kw)
        return run_null(
            block,
            n_iters,
            stream=self._stream,
            name=f"scale-{mode}-null-block",
            fingerprint=block.fingerprint(),
            random_state=seed,
            reducer={"exceed": "sum"},
            n_cores=self.n_cores if n_cores is None else n_cores,
            checkpoint=checkpoint,
            early_stop=early_stop,
            progress=self.progress if progress is None else progress,
            block_size=block_size or self.iters_per_block,
        )

    def fit(self, studyset) -> MetaResult:
        """Fit SCALE to a studyset.

        Parameters
        ----------
        studyset : Studyset or str or Path
            An in-memory studyset, one opened from a store, or the path of a store.

        Returns
        -------
        MetaResult
            Computed maps ``stat``, ``p``, ``z``, ``logp`` (float32); also ``self.result_``.
        """
        from nimare_dask.meta.cbma.fwe import check_n_iters
        from nimare_dask.montecarlo import resolve_random_state

        self._pool()
        n_iters = check_n_iters(self.n_iters, "SCALE")
        ss = self._prepare(studyset)
        self._check_sample_sizes(ss)
        grid = ss.grid
        # float32 log1p, the arithmetic of the null's iterations (ties are exact)
        (log1m, _, _) = self._compute(ale_chunk_stats(self.kernel, ss, self.chunks))[0]
        stat = _ale_stat(log1m)
        seed = resolve_random_state(self.random_state)
        self.seed_ = seed
        mc = self._null(ss, "exceed", n_iters, seed, checkpoint=self.checkpoint, observed=stat)
        self.montecarlo_ = {"scale_permutations": mc}
        n_run = mc.n_iters_run
        # as NiMARE: float32 fractions, clipped away from 0 and 1
        p = mc["exceed"].astype(np.float32) / n_run
        smallest = 1.0 / n_run
        p = np.maximum(smallest, np.minimum(p, 1.0 - smallest)).astype(np.float32)
        maps = {"stat": stat, "p": p, "z": p_to_z(p, tail="one"), "logp": p_to_logp(p)}
        self.inputs_ = {"studyset": ss}
        self._fit_null_ = {"n_iters": n_iters, "seed": seed, "max_stat": mc["max_stat"]}
        self.null_distributions_ = {}
        self.result_ = MetaResult(
            estimator=self,
            grid=grid,
            maps=maps,
            description=self._description(ss),
        )
        return self.result_

    def correct_fwe_montecarlo(
        self,
        result,
        voxel_thresh: float | None = None,
        n_iters: int = DEFAULT_N_ITERS,
        n_cores: int | None = None,
        vfwe_only: bool = True,
        random_state: int | None = None,
        checkpoint=None,
        early_stop=None,
        progress: bool | None = None,
        block_size: int | None = None,
    ):
        """Voxel-level FWE correction with the maximum ALE of pool-resampled datasets.

        Only call this from a corrector: ``FWECorrector(method="montecarlo", vfwe_only=True)``.

        Parameters
        ----------
        result : MetaResult
            The result of this estimator's last ``fit``.
        voxel_thresh : float, optional
            Ignored (SCALE has no cluster-level correction).
        n_iters : int
            Iterations. With the fit's ``n_iters`` and seed, the fit's iterations are reused.
        n_cores : int, optional
            Threads when no Dask ``distributed`` client is active.
        vfwe_only : bool
            Must be True: cluster-level correction is not defined for SCALE's voxel-wise null
            (``NotImplementedError`` otherwise, as in NiMARE).
        random_state : int, optional
            Seed (default: the seed the fit used).
        checkpoint, early_stop, progress, block_size
            As for :meth:`ALE.correct_fwe_montecarlo`.

        Returns
        -------
        Correction
            ``p/z/logp_level-voxel`` (z one-tailed), the null
            ``values_level-voxel_corr-fwe_method-montecarlo`` and the ``montecarlo`` table.
        """
        from nimare_dask.meta.cbma.fwe import (
            NULL_KEYS,
            check_n_iters,
            run_record,
            upper_fwe_maps,
        )
        from nimare_dask.results import Correction

        if not vfwe_only:
            raise NotImplementedError(
                "SCALE only supports voxel-level Monte Carlo FWE correction "
                "(FWECorrector(method='montecarlo', vfwe_only=True)); cluster-level FWE is not "
                "defined for its voxel-wise null"
            )
        fitted = getattr(self, "_fit_null_", None)
        if fitted is None:
            raise RuntimeError("SCALE: fit the estimator before correcting its result")
        n_iters = check_n_iters(n_iters, "SCALE")
        seed = fitted["seed"] if random_state is None else random_state
        if (n_iters, seed) == (fitted["n_iters"], fitted["seed"]) and early_stop is None:
            mc = self.montecarlo_["scale_permutations"]  # the fit's iterations, reused
            null = fitted["max_stat"]
        else:
            mc = self._null(
                self.inputs_["studyset"],
                "fwe",
                n_iters,
                seed,
                checkpoint=checkpoint,
                n_cores=n_cores,
                progress=progress,
                block_size=block_size,
                early_stop=early_stop,
            )
            null = mc["max_stat"]
        null = np.asarray(null, dtype=np.float32)
        stat = np.asarray(result.get_map("stat", return_type="array"))
        maps = upper_fwe_maps(stat, {"voxel": null}, None, result.grid, vfwe_only=True)
        text = (
            "Family-wise error correction was performed for SCALE with a voxel-level Monte Carlo "
            "max-statistic procedure: in each of "
            f"{len(null)} iterations every focus was replaced by a coordinate drawn at random "
            "from the SCALE reference pool, and the maximum ALE value was retained."
        )
        return Correction(
            maps=maps,
            tables={"montecarlo": run_record(mc, vfwe_only=True)},
            description=text,
            null_distributions={NULL_KEYS["voxel"]: null},
        )

    def _description(self, ss) -> str:
        return (
            "A specific coactivation likelihood estimation (SCALE) meta-analysis "
            f"\\citep{{langner2014meta}} was performed with {_TOOL}, with {self.n_iters} "
            f"iterations, using {an(self._kernel_name())} kernel. {self._kernel_description()} "
            "In each iteration every focus was replaced by a coordinate drawn at random from a "
            f"pool of {len(self.xyz)} coordinates, and voxel-wise p-values are the fraction of "
            "iterations with an ALE value at least as large as the observed one. "
            f"{inputs_sentence(ss, self.kernel)}"
        ).replace("  ", " ")
