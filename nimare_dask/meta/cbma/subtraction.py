"""ALE subtraction (Laird et al. 2005): the difference of two groups' ALE maps and its
label-permutation null (NiMARE's ``ALESubtraction``; moved here from :mod:`.ale`, which still
exports it under NiMARE's import path ``nimare_dask.meta.cbma.ale.ALESubtraction``)."""

from __future__ import annotations

import warnings

import numpy as np

from nimare_dask.kernels import ALEKernel
from nimare_dask.meta.base import PairwiseCBMAEstimator
from nimare_dask.meta.cbma.ale import (
    _NULL_KEYS,
    _TOOL,
    ALE,
    _ale_stat,
    _own_csr,
    _stack_csr,
    ale_approximate_maps,
)
from nimare_dask.meta.cbma.chunkstats import ale_chunk_stats, per_chunk
from nimare_dask.meta.cbma.fwe import DEFAULT_N_ITERS
from nimare_dask.meta.text import an, inputs_sentence, sig
from nimare_dask.results import MetaResult
from nimare_dask.stats.transforms import p_to_logp, p_to_z

__all__ = ["ALESubtraction"]


class ALESubtraction(PairwiseCBMAEstimator):
    """ALE subtraction: the difference of two groups' ALE maps (Laird et al. 2005).

    Parameters
    ----------
    kernel : ALEKernel, optional
        The MA kernel (``kernel__*`` keyword arguments configure the default).
    n_iters : int
        Permutations of the group labels (NiMARE's default 5000).
    voxel_thresh : float
        Cluster-forming uncorrected p for cluster-level inference: the threshold is the
        ``1 - voxel_thresh`` quantile of the pooled absolute permuted differences.
    low_memory : {False, True, "auto"}
        NiMARE's switch (default ``"auto"``) for building each group's sparse MA maps chunk
        by chunk into disk-backed memmaps before the permutations. NiMARE's values are
        accepted (others raise ``ValueError`` at fit) and none changes anything here: the MA
        maps are always built chunk by chunk (``chunks``) as sparse matrices, the two groups
        are pooled into one voxel-major sparse copy of ``log(1 - MA)`` (the size of NiMARE's
        CSR maps; the per-group matrices are freed once it is built) and every permutation
        block reads that copy; no dense (studies x voxels) matrix and no per-permutation set
        of maps is held. There is no disk-backed mode: the pooled sparse maps must fit in
        memory.
    vfwe_only : bool
        At fit, only the voxel-level null (cluster nulls are then computed by
        :meth:`correct_fwe_montecarlo` when asked for, from the same permutations).
    restrict_to_inference_mask : bool
        With inference maps, restrict the permutation null (maxima, clusters, threshold) to
        the union of the inference masks; voxels outside get p = 1.
    random_state : int, optional
        Seed of the permutations. None follows NiMARE: permutation ``i`` is seeded with ``i``,
        so the null is the same at every run (and the same as NiMARE's).
    n_cores : int, optional
        Threads when no Dask ``distributed`` client is active.
    mask : str, Grid, image or path, optional
        Analysis mask (default: the first studyset's grid).
    chunks : int, optional
        Analyses per chunk when the MA maps are built.
    checkpoint : str, Path or zarr.Group, optional
        Zarr group for the fit's permutation blocks (a rerun resumes).
    progress : bool
        Show progress bars.

    Notes
    -----
    ``fit(studyset1, studyset2)`` gives ``stat_desc-group1MinusGroup2`` (ALE(group 1) -
    ALE(group 2) over the whole mask), its ``p/z/logp_desc-group1MinusGroup2`` from the
    label-permutation null (two-sided: ``p = 2 min(#perm >= obs, #perm <= obs) / n``, clipped
    to ``[1/n, 1 - 1/n]``; z two-tailed, signed), and each group's one-sample maps
    ``stat/p/z/logp_desc-group{1,2}`` (approximate null). With inference maps the test is
    one-sided: positive differences only where ``inference_map1``, negative ones only where
    ``inference_map2`` (``p = #perm >= obs / n`` resp. ``<=``), p = 1 elsewhere (GingerALE's
    contrast).

    The permutations are NiMARE's own (same seeds, same shuffles), run in blocks on the Monte
    Carlo engine: each block is one product of a permutation-indicator matrix with the stored
    per-study ``log(1 - MA)`` maps. Null distributions: ``values_level-voxel_corr-fwe_method-
    montecarlo`` (max |difference|) and, for cluster-level inference,
    ``values_desc-{size,mass}_level-cluster_corr-fwe_method-montecarlo`` and
    ``summary_stat_thresh_level-voxel_corr-fwe_method-montecarlo``.

    Difference from NiMARE: the cluster-forming threshold is read from a histogram of the
    pooled |differences| (float32 bit patterns, relative bin width 2**-15) instead of sorting
    n_iters x n_voxels values; it is within 3e-5 (relative) of NiMARE's ``np.quantile``.
    """

    _default_kernel = ALEKernel
    _stream = "alesubtraction_permutations"

    def __init__(
        self,
        kernel=None,
        n_iters: int = DEFAULT_N_ITERS,
        voxel_thresh: float = 0.001,
        low_memory: bool | str = "auto",
        vfwe_only: bool = True,
        restrict_to_inference_mask: bool = False,
        random_state: int | None = None,
        n_cores: int | None = None,
        mask=None,
        chunks: int | None = None,
        checkpoint=None,
        progress: bool = True,
        **kwargs,
    ):
        self._init_kernel(kernel, kwargs)
        self.n_iters = n_iters
        self.voxel_thresh = voxel_thresh
        self.low_memory = low_memory
        self.vfwe_only = vfwe_only
        self.restrict_to_inference_mask = restrict_to_inference_mask
        self.random_state = random_state
        self.n_cores = n_cores
        self.mask = mask
        self.chunks = chunks
        self.checkpoint = checkpoint
        self.progress = progress

    # ------------------------------------------------------------------ helpers
    def _inference_mask(self, value, grid, label: str):
        if value is None:
            return None
        if (
            hasattr(value, "affine")
            and hasattr(value, "shape")
            and not isinstance(value, np.ndarray)
        ):
            arr = grid.to_map(value, interpolation="nearest")
        else:
            arr = np.asarray(value)
        if arr.ndim != 1 or arr.shape[0] != grid.n_voxels:
            raise ValueError(
                f"ALESubtraction: {label} must be a 1-D array over the {grid.n_voxels} in-mask "
                f"voxels (or an image on the grid); got shape {arr.shape}"
            )
        return np.asarray(arr) > 0

    def _block(self, pooled, grid, voxels, seed, **kwargs):
        from nimare_dask.meta.cbma.permutation import ALEDiffPermutations

        return ALEDiffPermutations(pooled, grid, voxels, legacy=seed is None, **kwargs)

    def _run(
        self,
        block,
        n_iters,
        name,
        seed,
        *,
        reducer="concat",
        checkpoint=None,
        n_cores=None,
        progress=None,
        **kw,
    ):
        """Run permutations on the Monte Carlo engine; run settings are passed, never set on
        ``self`` (``None``: the estimator's)."""
        from nimare_dask.meta.cbma.fwe import permutation_block_size, run_null

        if kw.get("block_size") is None:
            kw["block_size"] = permutation_block_size(n_iters)
        return run_null(
            block,
            n_iters,
            stream=self._stream,
            name=name,
            fingerprint=block.fingerprint(),
            # with seed None the blocks seed permutation i with i (NiMARE); the engine's seed
            # is then unused, and fixed so checkpoints resume
            random_state=0 if seed is None else seed,
            reducer=reducer,
            n_cores=self.n_cores if n_cores is None else n_cores,
            checkpoint=checkpoint,
            progress=self.progress if progress is None else progress,
            **kw,
        )

    @staticmethod
    def _sub_checkpoint(checkpoint, name: str):
        if checkpoint is None:
            return None
        import zarr

        if isinstance(checkpoint, zarr.Group):
            return checkpoint.require_group(name)
        return f"{str(checkpoint).rstrip('/')}/{name}"

    def _record_run(self, key: str, mc) -> None:
        # a new dict each time: a reader never sees one being changed
        self.montecarlo_ = {**(getattr(self, "montecarlo_", None) or {}), key: mc}

    def _voxel_null(self, st: dict, checkpoint=None, **kw) -> dict:
        """Pass 1: max |difference|, tail counts and the |difference| histogram.

        ``st`` holds the pooled maps, grid, voxels, ``n_iters`` and the seed
        (``random_state``); a new state is returned (``st`` is not changed).
        """
        seed = st["random_state"]
        block = self._block(
            st["pooled"], st["grid"], st["voxels"], seed, mode="voxel", histogram=True
        )
        block.observed = block.observed_differences()
        mc = self._run(
            block,
            st["n_iters"],
            "alesubtraction-null-block",
            seed,
            reducer={"upper": "sum", "lower": "sum", "abs_hist": "sum"},
            checkpoint=self._sub_checkpoint(checkpoint, "voxel"),
            **kw,
        )
        self._record_run("alesubtraction_voxel", mc)
        return {
            **st,
            "observed": block.observed,
            "absmax": mc["absmax"],
            "upper": mc["upper"],
            "lower": mc["lower"],
            "abs_hist": mc["abs_hist"],
            "n_run": mc.n_iters_run,
            "voxel_run": mc,
            "clusters": None,
        }

    def _cluster_null(self, st: dict, voxel_thresh: float, checkpoint=None, **kw) -> dict:
        """Pass 2: the largest clusters of |difference| above the pooled quantile (a new
        state is returned; ``st`` is not changed)."""
        from nimare_dask.meta.cbma.permutation import abs_hist_quantile

        seed = st["random_state"]
        thr = abs_hist_quantile(st["abs_hist"], 1.0 - float(voxel_thresh))
        block = self._block(
            st["pooled"], st["grid"], st["voxels"], seed, mode="cluster", threshold=thr
        )
        mc = self._run(
            block,
            st["n_run"],
            "alesubtraction-cluster-null-block",
            seed,
            checkpoint=self._sub_checkpoint(checkpoint, f"cluster-{voxel_thresh}"),
            **kw,
        )
        self._record_run("alesubtraction_cluster", mc)
        return {
            **st,
            "clusters": {
                "voxel_thresh": float(voxel_thresh),
                "threshold": np.float32(thr),
                "sizes": mc["max_size"].astype(np.float32),
                "masses": mc["max_mass"].astype(np.float32),
            },
        }

    def _difference_maps(self, st, mask1, mask2) -> dict:
        n = st["n_run"]
        upper = st["upper"].astype(np.float64)
        lower = st["lower"].astype(np.float64)
        obs = st["observed"]
        smallest = 1.0 / n
        if mask1 is None and mask2 is None:
            p = 2.0 * np.minimum(upper / n, lower / n)
            p = np.maximum(smallest, np.minimum(p, 1.0 - smallest)).astype(np.float32)
            sign = np.sign(lower - upper).astype(np.float32)
            tail = "two"
        else:
            p = np.ones(obs.shape[0], dtype=np.float32)
            sign = np.zeros(obs.shape[0], dtype=np.float32)
            vox = st["voxels"]
            if mask1 is not None:
                pos = mask1[vox] & (obs > 0)
                p[pos] = np.maximum(smallest, upper[pos] / n)
                sign[pos] = 1
            if mask2 is not None:
                neg = mask2[vox] & (obs < 0)
                p[neg] = np.maximum(smallest, lower[neg] / n)
                sign[neg] = -1
            tail = "one"
        z = (p_to_z(p, tail=tail) * sign).astype(np.float32)
        logp = p_to_logp(p)
        n_vox = st["grid"].n_voxels
        full = {
            "p": np.ones(n_vox, np.float32),
            "z": np.zeros(n_vox, np.float32),
            "logp": np.zeros(n_vox, np.float32),
        }
        full["p"][st["voxels"]] = p
        full["z"][st["voxels"]] = z
        full["logp"][st["voxels"]] = logp
        return {f"{k}_desc-group1MinusGroup2": v for k, v in full.items()}

    def _null_dict(self, st) -> dict:
        from nimare_dask.meta.cbma.fwe import NULL_KEYS

        out = {NULL_KEYS["voxel"]: st["absmax"]}
        cl = st.get("clusters")
        if cl is not None:
            out[NULL_KEYS["size"]] = cl["sizes"]
            out[NULL_KEYS["mass"]] = cl["masses"]
            out["summary_stat_thresh_level-voxel_corr-fwe_method-montecarlo"] = cl["threshold"]
        return out

    # ------------------------------------------------------------------ fit
    def fit(self, studyset1, studyset2, inference_map1=None, inference_map2=None) -> MetaResult:
        """Fit the subtraction to two studysets.

        Parameters
        ----------
        studyset1, studyset2 : Studyset or str or Path
            The two groups (in-memory, opened from a store, or store paths).
        inference_map1, inference_map2 : array_like or image, optional
            Directional inference masks (1-D over the grid's voxels, or images; > 0 is in):
            group 1 > group 2 is only tested in ``inference_map1``, group 2 > group 1 only in
            ``inference_map2`` (one-sided tests).

        Returns
        -------
        MetaResult
            Computed maps ``stat/p/z/logp_desc-group1MinusGroup2`` and
            ``stat/p/z/logp_desc-group{1,2}`` (float32), the permutation nulls; also kept as
            ``self.result_``.
        """
        from nimare_dask.meta.cbma.fwe import check_n_iters
        from nimare_dask.meta.cbma.permutation import PooledMaps

        n_iters = check_n_iters(self.n_iters, "ALESubtraction")
        if self.low_memory not in (False, True, "auto"):  # NiMARE's check
            raise ValueError(f"low_memory must be False, True, or 'auto'; got {self.low_memory!r}.")
        if not self.vfwe_only and not 0 < float(self.voxel_thresh) < 1:
            raise ValueError(
                f"ALESubtraction: voxel_thresh must be in (0, 1), got {self.voxel_thresh!r}"
            )
        ss1 = self._prepare(studyset1, "studyset1")
        ss2 = self._prepare(studyset2, "studyset2")
        if not ss1.grid.same_as(ss2.grid):
            raise ValueError("ALESubtraction: the two studysets are on different grids")
        for ss, label in ((ss1, "studyset1"), (ss2, "studyset2")):
            self._check_sample_sizes(ss, label)
        grid = ss1.grid
        mask1 = self._inference_mask(inference_map1, grid, "inference_map1")
        mask2 = self._inference_mask(inference_map2, grid, "inference_map2")
        if (mask1 is not None or mask2 is not None) and not (
            (mask1 is not None and mask1.any()) or (mask2 is not None and mask2.any())
        ):
            raise ValueError(
                "ALESubtraction: directional inference needs at least one voxel in "
                "inference_map1 or inference_map2"
            )
        csr1, csr2, (log1m1, c1, m1), (log1m2, c2, m2) = self._compute(
            *(
                per_chunk(self.kernel, ss, _own_csr, _stack_csr, "ale-ma-csr", self.chunks)
                for ss in (ss1, ss2)
            ),
            *(ale_chunk_stats(self.kernel, ss, self.chunks) for ss in (ss1, ss2)),
        )
        n_vox = grid.n_voxels
        stat1, stat2 = _ale_stat(log1m1), _ale_stat(log1m2)
        maps = {"stat_desc-group1MinusGroup2": stat1 - stat2}
        nulls = {}
        for label, stat, counts, row_max in (("group1", stat1, c1, m1), ("group2", stat2, c2, m2)):
            group_maps, group_nulls, _ = ale_approximate_maps(stat, counts, row_max, n_vox)
            maps.update({f"{k}_desc-{label}": v for k, v in group_maps.items()})
            nulls.update({f"{k}_desc-{label}": v for k, v in group_nulls.items()})

        pooled = PooledMaps.from_csr(
            csr1, csr2, transform=lambda d: np.log1p(-np.asarray(d, dtype=np.float32))
        )
        del csr1, csr2
        voxels = np.arange(n_vox, dtype=np.int64)
        if self.restrict_to_inference_mask and (mask1 is not None or mask2 is not None):
            union = np.zeros(n_vox, dtype=bool)
            for m in (mask1, mask2):
                if m is not None:
                    union |= m
            voxels = np.flatnonzero(union)
        self.inputs_ = {"studyset1": ss1, "studyset2": ss2, "mask1": mask1, "mask2": mask2}
        st = {
            "pooled": pooled,
            "grid": grid,
            "voxels": voxels,
            "n_iters": n_iters,
            "random_state": self.random_state,
        }
        st = self._voxel_null(st, checkpoint=self.checkpoint)
        if not self.vfwe_only:
            st = self._cluster_null(st, self.voxel_thresh, checkpoint=self.checkpoint)
        self._perm_ = st
        maps.update(self._difference_maps(st, mask1, mask2))
        nulls.update(self._null_dict(st))
        self.null_distributions_ = nulls
        self.result_ = MetaResult(
            estimator=self,
            grid=grid,
            maps=maps,
            description=self._description(ss1, ss2, st["n_run"], mask1, mask2),
            null_distributions=dict(nulls),
        )
        return self.result_

    def _description(self, ss1, ss2, n_run, mask1=None, mask2=None) -> str:
        directional = ""
        if mask1 is not None or mask2 is not None:
            directional = (
                " Following GingerALE, group 1 > group 2 was only tested in the first inference "
                "mask and group 2 > group 1 only in the second (one-sided tests)."
            )
        return (
            "An activation likelihood estimation (ALE) subtraction analysis "
            f"\\citep{{laird2005ale,eickhoff2012activation}} was performed with {_TOOL}, using "
            f"{an(self._kernel_name())} kernel. {self._kernel_description()} ALE-difference "
            "scores (group 1 minus group 2) were calculated for all voxels in the mask. Each "
            "group's ALE values were converted to p-values using an approximate null "
            "distribution \\citep{eickhoff2012activation}. The ALE-difference scores were tested "
            f"against a null distribution built from {n_run} random reassignments of the "
            "experiments to the two groups, preserving the group sizes; a voxel's two-sided "
            "p-value is twice the smaller fraction of permuted differences at or beyond the "
            f"observed one.{directional} {inputs_sentence(ss1, self.kernel, 1)} "
            f"{inputs_sentence(ss2, self.kernel, 2)}"
        ).replace("  ", " ")

    # ------------------------------------------------------------------ correction
    def correct_fwe_montecarlo(
        self,
        result,
        voxel_thresh: float | None = 0.001,
        n_iters: int | None = None,
        n_cores: int | None = None,
        vfwe_only: bool = False,
        target: str = "pairwise",
        random_state: int | None = None,
        checkpoint=None,
        early_stop=None,
        progress: bool | None = None,
        block_size: int | None = None,
    ):
        """Voxel- and cluster-level FWE correction of the difference (label permutations).

        Only call this from a corrector: ``FWECorrector(method="montecarlo", ...)``.

        Parameters
        ----------
        result : MetaResult
            The result of this estimator's last ``fit``.
        voxel_thresh : float, optional
            Cluster-forming p (default: the estimator's ``voxel_thresh``).
        n_iters : int, optional
            Permutations (default: the estimator's ``n_iters``). The fit's permutations are
            reused when ``n_iters`` and ``random_state`` match; cluster nulls computed at fit
            are reused for the same ``voxel_thresh``, otherwise only the cluster pass runs.
        n_cores : int, optional
            Threads when no Dask ``distributed`` client is active.
        vfwe_only : bool
            Only voxel-level correction.
        target : {"pairwise", "main-effects", "all"}
            Correct the difference, each group's one-sample ALE (random-foci null), or both.
        random_state : int, optional
            Seed (default: the estimator's; a different one recomputes the permutations).
        checkpoint : str, Path or zarr.Group, optional
            Zarr group for the blocks of recomputed passes.
        early_stop : EarlyStopping, optional
            Early stopping of recomputed passes (and of the main-effect nulls).
        progress : bool, optional
            Progress bars (default: the estimator's ``progress``).
        block_size : int, optional
            Iterations per task.

        Returns
        -------
        Correction
            ``p/z/logp_desc-group1MinusGroup2_level-voxel`` and, unless ``vfwe_only``,
            ``p/z/logp_desc-group1MinusGroup2{Mass,Size}_level-cluster`` (z two-tailed,
            signed); with main effects ``p/z/logp_desc-group{1,2}_level-voxel`` and
            ``..._desc-group{1,2}{Size,Mass}_level-cluster``. Eager.
        """
        from nimare_dask.meta.cbma.fwe import (
            NULL_KEYS,
            check_n_iters,
            run_record,
            two_sided_fwe_maps,
        )
        from nimare_dask.results import Correction

        if target not in ("pairwise", "main-effects", "all"):
            raise ValueError(
                f"target must be one of 'pairwise', 'main-effects', 'all'; got {target!r}"
            )
        st = getattr(self, "_perm_", None)
        if st is None or not getattr(self, "inputs_", None):
            raise RuntimeError("ALESubtraction: fit the estimator before correcting its result")
        n_iters = check_n_iters(self.n_iters if n_iters is None else n_iters, "ALESubtraction")
        voxel_thresh = self.voxel_thresh if voxel_thresh is None else float(voxel_thresh)
        if not vfwe_only and not 0 < voxel_thresh < 1:
            raise ValueError(f"voxel_thresh must be in (0, 1), got {voxel_thresh!r}")
        # run settings travel as arguments and the fit's permutation state is never changed in
        # place, so corrections may run at once from several threads or Dask tasks
        run = {
            "n_cores": n_cores,
            "progress": progress,
            "early_stop": early_stop,
            "block_size": block_size,
        }
        maps: dict = {}
        tables: dict = {}
        null_out: dict = {}
        texts = []
        if target in ("pairwise", "all"):
            seed = self.random_state if random_state is None else random_state
            if (n_iters, seed) != (st["n_iters"], st["random_state"]):
                warnings.warn(
                    "ALESubtraction FWE correction is recomputing the permutations because "
                    f"the requested n_iters={n_iters}, random_state={seed} differ from the "
                    f"fit's n_iters={st['n_iters']}, random_state={st['random_state']}",
                    UserWarning,
                    stacklevel=3,
                )
                st = {**st, "n_iters": n_iters, "random_state": seed}
                st = self._voxel_null(st, checkpoint=checkpoint, **run)
                if not vfwe_only:
                    st = self._cluster_null(st, voxel_thresh, checkpoint=checkpoint, **run)
            elif not vfwe_only and (
                st.get("clusters") is None or st["clusters"]["voxel_thresh"] != float(voxel_thresh)
            ):
                st = self._cluster_null(st, voxel_thresh, checkpoint=checkpoint, **run)
                self._perm_ = st  # the fit's permutations: later corrections reuse the pass
            stat = np.asarray(result.get_map("stat_desc-group1MinusGroup2", "array"))
            sign = np.sign(np.asarray(result.get_map("z_desc-group1MinusGroup2", "array")))
            nulls = {"voxel": st["absmax"]}
            thr = None
            if not vfwe_only:
                cl = st["clusters"]
                nulls.update(size=cl["sizes"], mass=cl["masses"])
                thr = float(cl["threshold"])
            maps.update(
                two_sided_fwe_maps(
                    stat, sign, nulls, thr, result.grid, "group1MinusGroup2", vfwe_only
                )
            )
            null_out.update(self._null_dict(st))
            if vfwe_only:
                for key in ("size", "mass"):
                    null_out.pop(NULL_KEYS[key], None)
                null_out.pop("summary_stat_thresh_level-voxel_corr-fwe_method-montecarlo", None)
            self.null_distributions_ = {**self.null_distributions_, **null_out}
            tables["montecarlo"] = run_record(
                st["voxel_run"],
                random_state=str(st["random_state"])
                if st["random_state"] is not None
                else "None (permutation i seeded with i)",
                voxel_thresh=float(voxel_thresh),
                cluster_forming_threshold=np.nan if thr is None else thr,
                vfwe_only=bool(vfwe_only),
            )
            texts.append(self._fwe_text(st["n_run"], vfwe_only, voxel_thresh, thr))
        if target in ("main-effects", "all"):
            group_maps, group_nulls, text = self._main_effects(
                result, voxel_thresh, n_iters, vfwe_only, random_state, checkpoint, run
            )
            maps.update(group_maps)
            null_out.update(group_nulls)
            texts.append(text)
        return Correction(
            maps=maps, tables=tables, description=" ".join(texts), null_distributions=null_out
        )

    @staticmethod
    def _fwe_text(n_run, vfwe_only, voxel_thresh, thr) -> str:
        text = (
            "Family-wise error correction of the ALE differences used the same label "
            f"permutations ({n_run} random reassignments of the experiments to the two groups, "
            "preserving the group sizes): the maximum absolute ALE difference of each "
            "permutation formed the voxel-level null"
        )
        if vfwe_only:
            return text + "."
        return text + (
            ", and the sizes and masses of the largest clusters (face-wise connectivity; "
            "positive and negative differences apart) formed the cluster-level nulls. Clusters "
            f"were defined at |difference| > {sig(thr)}, the {sig(1 - voxel_thresh, 6)} quantile "
            "of the absolute permuted differences over all voxels and permutations."
        )

    def _main_effects(self, result, voxel_thresh, n_iters, vfwe_only, random_state, ckpt, run):
        from nimare_dask.results import MetaResult as _Result

        rename = {
            "p_level-voxel": "p_desc-{g}_level-voxel",
            "z_level-voxel": "z_desc-{g}_level-voxel",
            "logp_level-voxel": "logp_desc-{g}_level-voxel",
            "p_desc-size_level-cluster": "p_desc-{g}Size_level-cluster",
            "z_desc-size_level-cluster": "z_desc-{g}Size_level-cluster",
            "logp_desc-size_level-cluster": "logp_desc-{g}Size_level-cluster",
            "p_desc-mass_level-cluster": "p_desc-{g}Mass_level-cluster",
            "z_desc-mass_level-cluster": "z_desc-{g}Mass_level-cluster",
            "logp_desc-mass_level-cluster": "logp_desc-{g}Mass_level-cluster",
        }
        maps, nulls, text = {}, {}, ""
        for g, key in (("group1", "studyset1"), ("group2", "studyset2")):
            est = ALE(kernel=self.kernel, random_state=self.random_state, n_cores=self.n_cores)
            est.inputs_ = {"studyset": self.inputs_[key]}
            est.null_distributions_ = {
                k: self.null_distributions_[f"{k}_desc-{g}"] for k in _NULL_KEYS
            }
            group_result = _Result(
                estimator=est,
                grid=result.grid,
                maps={"stat": result.get_map(f"stat_desc-{g}", return_type="array")},
            )
            corr = est.correct_fwe_montecarlo(
                group_result,
                voxel_thresh=voxel_thresh,
                n_iters=n_iters,
                vfwe_only=vfwe_only,
                random_state=random_state,
                checkpoint=self._sub_checkpoint(ckpt, f"main-effect-{g}"),
                n_cores=self.n_cores if run["n_cores"] is None else run["n_cores"],
                progress=self.progress if run["progress"] is None else run["progress"],
                early_stop=run["early_stop"],
                block_size=run["block_size"],
            )
            maps.update({rename[k].format(g=g): v for k, v in corr.maps.items()})
            for k, v in corr.null_distributions.items():
                parts = k.split("_", 1)
                level = parts[1]
                if level.startswith("desc-"):
                    what, rest = level[len("desc-") :].split("_", 1)
                    nulls[f"{parts[0]}_desc-{g}{what}_{rest}"] = v
                else:
                    nulls[f"{parts[0]}_desc-{g}_{level}"] = v
            text = (
                "The group main effects were corrected with the one-sample ALE Monte Carlo "
                "procedure (random-foci null). " + corr.description
            )
        return maps, nulls, text
