"""Balanced ALE subtraction (NiMARE 0.22.1's ``BalancedALESubtraction``; JALE's balanced contrast).

NiMARE's balanced subtraction (``meta/cbma/ale.py:1628``) resamples both groups to a common
number of experiments ``target_n`` (default: the smaller group's size). Its per-group
probability maps ``prob_desc-group{1,2}`` are the fraction of a *subset schedule* of
``target_n``-experiment subsets in which a voxel survives cluster-size thresholding. The
schedule (``meta/cbma/utils.py:generate_subset_schedule``) is:

* leave-one-out (``target_n == total_n - 1``): the ``total_n`` subsets without experiment ``i``,
  in order of ``i``;
* exhaustive, when the number of subsets asked for reaches ``C(total_n, target_n)`` and that
  number is at most ``exhaustive_limit`` (NiMARE's estimator passes 10,000): every combination
  in lexicographic order;
* otherwise seeded: unique sorted subsets drawn with
  ``numpy.random.RandomState(seed).choice(total_n, target_n, replace=False)`` until enough
  distinct ones are found, returned sorted.

:func:`subset_schedule` reproduces it exactly (the same subsets in the same order, also for the
seeded case, since it replays the same legacy generator), so the subsamples of a schedule are
dealt out as blocks of tasks over shared MA maps and give NiMARE's schedule whatever the
chunking. The estimator, :class:`BalancedALESubtraction`, runs its four passes as blocks on
the Monte Carlo engine (:mod:`.balanced_blocks`).
"""

from __future__ import annotations

import os
from itertools import combinations
from math import comb

import dask
import numpy as np

from nimare_dask.kernels import ALEKernel
from nimare_dask.meta.base import PairwiseCBMAEstimator
from nimare_dask.meta.cbma.ale import _TOOL
from nimare_dask.meta.text import an, inputs_sentence, sig
from nimare_dask.results import MetaResult
from nimare_dask.stats.transforms import p_to_logp, p_to_z

__all__ = ["EXHAUSTIVE_LIMIT", "BalancedALESubtraction", "resolve_target_n", "subset_schedule"]

#: The ``exhaustive_limit`` NiMARE's BalancedALESubtraction passes to its schedule.
EXHAUSTIVE_LIMIT = 10000


def resolve_target_n(n1: int, n2: int, target_n: int | None) -> int:
    """The matched number of experiments per subsample (NiMARE's rule).

    Parameters
    ----------
    n1, n2 : int
        Experiments in each group.
    target_n : int, optional
        Requested size (None or 0: the smaller group's size).

    Returns
    -------
    int
    """
    largest = min(int(n1), int(n2))
    resolved = target_n or largest
    if isinstance(resolved, bool) or not isinstance(resolved, int | np.integer):
        raise TypeError(f"target_n must be an integer or None, got {target_n!r}")
    if not 0 < resolved <= largest:
        raise ValueError(
            f"target_n must be between 1 and the smaller group size ({largest}); got {resolved}"
        )
    return int(resolved)


def subset_schedule(
    total_n: int,
    target_n: int,
    n_samples: int | None = None,
    random_state: int | None = None,
    exhaustive_limit: int = 1000,
) -> list[np.ndarray]:
    """Subsets of ``target_n`` of ``total_n`` experiments, as NiMARE schedules them.

    Parameters
    ----------
    total_n : int
        Experiments in the group.
    target_n : int
        Experiments per subset (``0 < target_n <= total_n``).
    n_samples : int, optional
        Subsets wanted (capped at ``C(total_n, target_n)``; None: all of them, which must then
        be at most ``exhaustive_limit``).
    random_state : int, optional
        Seed of the drawn schedule (None: fresh entropy, as NiMARE).
    exhaustive_limit : int
        Largest number of combinations enumerated.

    Returns
    -------
    list of numpy.ndarray
        int32 sorted experiment indices, one array per subset (eager).
    """
    total_n, target_n = int(total_n), int(target_n)
    if not 0 < target_n <= total_n:
        raise ValueError(f"target_n must be between 1 and total_n ({total_n}); got {target_n}.")
    if target_n == total_n - 1:
        return [np.delete(np.arange(total_n), i).astype(np.int32) for i in range(total_n)]
    n_comb = comb(total_n, target_n)
    if n_samples is None:
        if n_comb > exhaustive_limit:
            raise ValueError(
                f"C({total_n}, {target_n}) = {n_comb} subsets exceed exhaustive_limit="
                f"{exhaustive_limit}; give n_samples to draw that many distinct subsets"
            )
        n_samples = n_comb
    else:
        n_samples = min(int(n_samples), n_comb)
    if n_samples == n_comb and n_comb <= exhaustive_limit:
        return [np.asarray(c, dtype=np.int32) for c in combinations(range(total_n), target_n)]
    rng = np.random.RandomState(random_state)  # NiMARE's legacy generator, replayed exactly
    drawn: set[tuple[int, ...]] = set()
    while len(drawn) < n_samples:
        drawn.add(tuple(np.sort(rng.choice(total_n, size=target_n, replace=False)).tolist()))
    return [np.asarray(s, dtype=np.int32) for s in sorted(drawn)]


#: Passes of at most this many units skip block-size calibration (see ``_small_pass_blocks``).
_SMALL_PASS = 100

_STREAMS = {
    "cluster": "balanced_cluster_null_group{}",
    "difference": "balanced_difference",
    "null": "balanced_null",
}


def _positive_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ValueError(
            f"BalancedALESubtraction: {name} must be a positive integer, got {value!r}"
        )
    return int(value)


def balanced_p_maps(observed: np.ndarray, min_null: np.ndarray, max_null: np.ndarray, alpha):
    """NiMARE's p/z/logp maps of the balanced difference from its min/max nulls.

    A voxel above the ``1 - alpha/2`` percentile of the max null gets ``p = #(max >= d)/n``;
    one below the ``alpha/2`` percentile of the min null ``p = #(min <= d)/n``; both floored at
    ``1/n``; z is one-tailed, signed (negative for the second case); p = 1, z = 0 elsewhere.

    Returns
    -------
    dict
        ``p``, ``z``, ``logp`` float32 arrays (eager).
    """
    n = float(max_null.size)
    low = np.percentile(min_null, 100.0 * (alpha / 2.0))
    high = np.percentile(max_null, 100.0 * (1.0 - alpha / 2.0))
    smallest = 1.0 / n
    p = np.ones(observed.shape[0], dtype=np.float32)
    z = np.zeros(observed.shape[0], dtype=np.float32)
    pos = np.flatnonzero(observed > high)
    neg = np.flatnonzero(observed < low)
    if pos.size:
        ge = max_null.size - np.searchsorted(np.sort(max_null), observed[pos], side="left")
        p_pos = np.maximum(smallest, (ge / n).astype(np.float32))
        p[pos] = p_pos
        z[pos] = p_to_z(p_pos, tail="one")
    if neg.size:
        le = np.searchsorted(np.sort(min_null), observed[neg], side="right")
        p_neg = np.maximum(smallest, (le / n).astype(np.float32))
        p[neg] = np.minimum(p[neg], p_neg)
        z[neg] = -p_to_z(p_neg, tail="one")
    return {"p": p, "z": z, "logp": p_to_logp(p)}


class BalancedALESubtraction(PairwiseCBMAEstimator):
    """Balanced ALE subtraction with matched-size subsampling (NiMARE 0.22.1; JALE).

    Parameters
    ----------
    kernel : ALEKernel, optional
        The MA kernel (``kernel_transformer=`` and ``kernel__*`` keywords as NiMARE).
    target_n : int, optional
        Experiments per subsample (None: the smaller group's size).
    n_subsamples : int
        Subsets of each group in its probability map (NiMARE's subset schedule).
    difference_iterations : int
        Subsample pairs averaged in the balanced difference (observed and each null iteration).
    n_iters : int
        Random-foci datasets of each group's cluster-size threshold, and null iterations of
        the balanced difference.
    voxel_thresh : float
        Cluster-forming uncorrected p of the probability maps (``z > Phi^-1(1 - p)``).
    null_method : {"random-foci", "label-permutation"}
        Null of the balanced difference: every focus moved to a random ``mask_coverage`` voxel
        (sample sizes and focus counts kept), or the pooled experiments' labels shuffled
        (group sizes kept).
    mask_coverage : {"gm", "brain"}
        The prior: voxels the difference is computed on and random foci are drawn from
        (``"gm"``: MNI152 grey-matter probability > 0.1).
    alpha : float
        FWE level of the cluster-size threshold and of the difference's extrema percentiles.
    random_state : int, optional
        Seed of every random step (None: a fresh one, recorded in ``montecarlo_``). The
        subset schedules use ``random_state`` and ``random_state + 1`` as NiMARE.
    n_cores : int, optional
        Threads when no Dask ``distributed`` client is active.
    mask : str, Grid, image or path, optional
        Analysis mask (default: the first studyset's grid).
    chunks : int, optional
        Analyses per chunk when the MA maps are built.
    block_size : int, optional
        Subsets or iterations per task of the probability-map and null passes (default:
        calibrated, ~0.5 s per task; passes of at most 100 units on local threads: four tasks
        per thread); results do not depend on it.
    progress : bool
        Show progress bars.

    Notes
    -----
    ``fit(studyset1, studyset2)`` returns maps ``stat_desc-balancedGroup1MinusGroup2`` (mean over
    ``difference_iterations`` random subsample pairs of ALE(group 1) - ALE(group 2), zero outside
    the prior), ``p/z/logp_desc-balancedGroup1MinusGroup2``, ``prob_desc-group1``,
    ``prob_desc-group2`` and ``stat_desc-conjunction`` (their minimum), and nulls
    ``values_desc-balancedMinNull_corr-none`` / ``values_desc-balancedMaxNull_corr-none``, as
    NiMARE. Only ``FWECorrector(method="bonferroni")`` applies (as in NiMARE).

    Every random draw is keyed by its unit: subset schedules are NiMARE's (the same subsets),
    the cluster-size nulls, difference pairs and null iterations use one generator per
    iteration (:func:`~nimare_dask.montecarlo.iteration_rng`), so results are identical for any
    block size, scheduler and number of workers, but random parts differ from NiMARE's draws
    (its single legacy generator): statistically equal, not bit-equal.
    """

    _default_kernel = ALEKernel
    #: Prior voxels per task of the observed difference (None: calibrated, ~0.5 s per task);
    #: ``block_size`` sizes the passes over subsets and iterations.
    _voxel_block_size: int | None = None

    def __init__(
        self,
        kernel=None,
        target_n: int | None = None,
        n_subsamples: int = 2500,
        difference_iterations: int = 1000,
        n_iters: int = 1000,
        voxel_thresh: float = 0.001,
        null_method: str = "random-foci",
        mask_coverage: str = "gm",
        alpha: float = 0.05,
        random_state: int | None = None,
        n_cores: int | None = None,
        mask=None,
        chunks: int | None = None,
        block_size: int | None = None,
        progress: bool = True,
        **kwargs,
    ):
        self._init_kernel(kernel, kwargs)
        self.target_n = target_n
        self.n_subsamples = n_subsamples
        self.difference_iterations = difference_iterations
        self.n_iters = n_iters
        self.voxel_thresh = voxel_thresh
        self.null_method = null_method
        self.mask_coverage = mask_coverage
        self.alpha = alpha
        self.random_state = random_state
        self.n_cores = n_cores
        self.mask = mask
        self.chunks = chunks
        self.block_size = block_size
        self.progress = progress

    # ------------------------------------------------------------------ checks
    def _check_params(self) -> dict:
        if self.null_method not in ("random-foci", "label-permutation"):
            raise ValueError(
                "BalancedALESubtraction: null_method must be 'random-foci' or "
                f"'label-permutation'; got {self.null_method!r}"
            )
        if not 0 < float(self.alpha) < 1:
            raise ValueError(f"BalancedALESubtraction: alpha must be in (0, 1); got {self.alpha}")
        if not 0 < float(self.voxel_thresh) < 1:
            raise ValueError(
                f"BalancedALESubtraction: voxel_thresh must be in (0, 1); got {self.voxel_thresh}"
            )
        if not isinstance(self.kernel, ALEKernel):
            raise TypeError(
                "BalancedALESubtraction needs an ALE kernel, got " + type(self.kernel).__name__
            )
        return {
            name: _positive_int(getattr(self, name), name)
            for name in ("n_subsamples", "difference_iterations", "n_iters")
        }

    def _run(self, block, n_units, stream, seed, reducer="concat", block_size=-1):
        from nimare_dask.meta.cbma.fwe import run_null

        block_size = self.block_size if block_size == -1 else block_size
        if block_size is None:
            block_size = self._small_pass_blocks(n_units)
        mc = run_null(
            block,
            n_units,
            stream=stream,
            name=stream.replace("_", "-") + "-block",
            # identifies a checkpoint's inputs; these passes keep none (hashing the MA
            # maps would cost more than a null iteration): block.fingerprint() if they do
            fingerprint="",
            random_state=seed,
            reducer=reducer,
            n_cores=self.n_cores,
            progress=self.progress,
            block_size=block_size,
        )
        self.montecarlo_ = {**(getattr(self, "montecarlo_", None) or {}), stream: mc}
        return mc

    def _small_pass_blocks(self, n_units: int) -> int | None:
        """Units per block of a short pass on local threads: four blocks per thread.

        Timing calibration runs (and discards) five units before the first block, a quarter
        of a 20-iteration pass; passes of at most :data:`_SMALL_PASS` units are split without
        it. None (calibrate) for longer passes or with a ``distributed`` client.
        """
        from nimare_dask.meta.cbma.fwe import _n_threads
        from nimare_dask.montecarlo.backends import active_client

        if n_units > _SMALL_PASS or active_client() is not None:
            return None
        threads = _n_threads(self.n_cores) or dask.config.get("num_workers", None)
        threads = threads or os.cpu_count() or 1
        return max(1, -(-int(n_units) // (4 * int(threads))))

    # ------------------------------------------------------------------ passes
    def _cluster_threshold(self, g: int, sizes: np.ndarray) -> float:
        """Group ``g``'s cluster-size threshold: the ``1 - alpha`` percentile of ``sizes``."""
        return float(np.percentile(sizes, 100.0 * (1.0 - float(self.alpha))))

    def _prob_map(self, g: int, group, t, grid, pool, z_thr, schedule_seed, seed, n):
        from nimare_dask.meta.cbma.balanced_blocks import ClusterNullBlock, ProbBlock

        stream = _STREAMS["cluster"].format(g)
        null = ClusterNullBlock(self.kernel, group, t, pool, grid, z_thr)
        sizes = self._run(null, n["n_iters"], stream, seed)["max_size"]
        threshold = self._cluster_threshold(g, sizes)
        schedule = np.asarray(
            subset_schedule(
                group.n, t, n["n_subsamples"], schedule_seed, exhaustive_limit=EXHAUSTIVE_LIMIT
            ),
            dtype=np.int64,
        )
        block = ProbBlock(group, schedule, grid, z_thr, threshold)
        counts = self._run(block, len(schedule), f"balanced_prob_group{g}", seed, "sum")["count"]
        prob = (counts / len(schedule)).astype(np.float32)
        return prob, {"cluster_threshold": threshold, "n_subsets": len(schedule), "sizes": sizes}

    def _difference(self, groups, t, d, prior, seed):
        from nimare_dask.meta.cbma.balanced_blocks import DifferenceBlock, draw_pairs
        from nimare_dask.montecarlo import iteration_rng

        g1, g2 = groups
        s1 = np.empty((d, t), dtype=np.int64)
        s2 = np.empty((d, t), dtype=np.int64)
        for j in range(d):
            a, b = draw_pairs(iteration_rng(seed, _STREAMS["difference"], j), g1.n, g2.n, t, 1)
            s1[j], s2[j] = a[0], b[0]
        block = DifferenceBlock(g1.log1m[:, prior].tocsc(), g2.log1m[:, prior].tocsc(), s1, s2)
        return self._run(
            block, prior.size, _STREAMS["difference"], seed, block_size=self._voxel_block_size
        )["diff"]

    # ------------------------------------------------------------------ fit
    def fit(self, studyset1, studyset2, inference_map1=None, inference_map2=None) -> MetaResult:
        """Fit the balanced subtraction to two studysets.

        Parameters
        ----------
        studyset1, studyset2 : Studyset or str or Path
            The two groups (in-memory, opened from a store, or store paths).
        inference_map1, inference_map2 : None
            NiMARE's pairwise ``fit`` accepts them but its balanced subtraction ignores them;
            here a map given raises ``ValueError`` (use :class:`ALESubtraction` for
            directional inference masks).

        Returns
        -------
        MetaResult
            Maps ``stat/p/z/logp_desc-balancedGroup1MinusGroup2``, ``stat_desc-conjunction``,
            ``prob_desc-group1``, ``prob_desc-group2`` (float32) and the min/max nulls; also
            kept as ``self.result_``. Eager.
        """
        from nimare_dask.meta.cbma.ale import _own_csr, _stack_csr
        from nimare_dask.meta.cbma.balanced_blocks import (
            DifferenceNullBlock,
            GroupMaps,
            log1m_csr,
            z_threshold,
        )
        from nimare_dask.meta.cbma.chunkstats import ale_chunk_stats, per_chunk
        from nimare_dask.montecarlo import resolve_random_state

        if inference_map1 is not None or inference_map2 is not None:
            raise ValueError(
                "BalancedALESubtraction does not use inference maps (NiMARE ignores them); "
                "ALESubtraction takes inference_map1/inference_map2"
            )
        n = self._check_params()
        ss1 = self._prepare(studyset1, "studyset1")
        ss2 = self._prepare(studyset2, "studyset2")
        if not ss1.grid.same_as(ss2.grid):
            raise ValueError("BalancedALESubtraction: the two studysets are on different grids")
        for ss, label in ((ss1, "studyset1"), (ss2, "studyset2")):
            self._check_sample_sizes(ss, label)
        t = resolve_target_n(len(ss1), len(ss2), self.target_n)
        grid = ss1.grid
        csr1, csr2, st1, st2 = self._compute(
            *(
                per_chunk(self.kernel, ss, _own_csr, _stack_csr, "ale-ma-csr", self.chunks)
                for ss in (ss1, ss2)
            ),
            *(ale_chunk_stats(self.kernel, ss, self.chunks) for ss in (ss1, ss2)),
        )
        groups = tuple(
            GroupMaps(log1m_csr(csr), st[1], st[2], ss.foci_counts(), ss.sample_sizes)
            for csr, st, ss in ((csr1, st1, ss1), (csr2, st2, ss2))
        )
        del csr1, csr2
        seed = resolve_random_state(self.random_state)
        base = seed % 2**32 if self.random_state is None else int(self.random_state)
        prior = np.asarray(grid.coverage(self.mask_coverage), dtype=np.int64)
        pool = np.ascontiguousarray(grid.voxel_ijk[prior], dtype=np.int64)
        z_thr = z_threshold(float(self.voxel_thresh))
        self.montecarlo_ = {}
        probs, info = [], {}
        for g, group in enumerate(groups, start=1):
            prob, info[f"group{g}"] = self._prob_map(
                g, group, t, grid, pool, z_thr, base + g - 1, seed, n
            )
            probs.append(prob)
        d = n["difference_iterations"]
        observed = np.zeros(grid.n_voxels, dtype=np.float32)
        observed[prior] = self._difference(groups, t, d, prior, seed)
        null = DifferenceNullBlock(self.null_method, self.kernel, groups, t, d, pool, grid, prior)
        mc = self._run(null, n["n_iters"], _STREAMS["null"], seed)
        min_null, max_null = mc["min"].astype(np.float32), mc["max"].astype(np.float32)
        diff_maps = balanced_p_maps(observed, min_null, max_null, float(self.alpha))
        maps = {"stat_desc-balancedGroup1MinusGroup2": observed}
        maps.update({f"{k}_desc-balancedGroup1MinusGroup2": v for k, v in diff_maps.items()})
        maps["stat_desc-conjunction"] = np.minimum(probs[0], probs[1]).astype(np.float32)
        maps["prob_desc-group1"], maps["prob_desc-group2"] = probs
        nulls = {
            "values_desc-balancedMinNull_corr-none": min_null,
            "values_desc-balancedMaxNull_corr-none": max_null,
        }
        self.inputs_ = {"studyset1": ss1, "studyset2": ss2}
        self.balanced_ = {"target_n": t, "random_state": seed, "prior_voxels": prior.size, **info}
        self.null_distributions_ = nulls
        self.result_ = MetaResult(
            estimator=self,
            grid=grid,
            maps=maps,
            description=self._description(ss1, ss2, t, info, seed),
            null_distributions=dict(nulls),
        )
        return self.result_

    def _description(self, ss1, ss2, t, info, seed) -> str:
        prior = (
            "grey-matter voxels (MNI152 grey-matter probability > 0.1)"
            if self.mask_coverage == "gm"
            else "in-mask voxels"
        )
        if self.null_method == "random-foci":
            null = (
                f"{self.n_iters} null iterations in which every focus was moved to a random "
                f"voxel among the {prior} (sample sizes and numbers of foci kept)"
            )
        else:
            null = (
                f"{self.n_iters} null iterations in which the experiments of both groups were "
                "randomly reassigned to the two groups (group sizes kept)"
            )
        g1, g2 = info["group1"], info["group2"]
        return (
            "A balanced ALE subtraction \\citep{laird2005ale,eickhoff2012activation,"
            f"Frahm_Monimu_Hoffstaedter}} was performed with {_TOOL}, using "
            f"{an(self._kernel_name())} kernel. {self._kernel_description()} Both groups were "
            f"subsampled to {t} experiments. For each group, a probability map gave the "
            "fraction of subsets of that size in which a voxel survived cluster-level "
            f"thresholding ({g1['n_subsets']} and {g2['n_subsets']} subsets; clusters of "
            f"voxels with uncorrected p < {sig(float(self.voxel_thresh))} under the subset's "
            "approximate null \\citep{eickhoff2012activation}, face-wise connectivity, larger "
            f"than the {sig(100 * (1 - float(self.alpha)))}th percentile of the largest "
            f"cluster in {self.n_iters} random-foci datasets of {t} experiments: "
            f"{sig(g1['cluster_threshold'])} and {sig(g2['cluster_threshold'])} voxels); their "
            "voxel-wise minimum is the conjunction map. The balanced difference was the mean, "
            f"over {self.difference_iterations} random pairs of subsamples, of the difference "
            f"of the two subsamples' ALE maps, computed on {prior}. It was tested against the "
            f"minima and maxima of the same mean difference in {null}: voxels above the "
            f"{sig(100 * (1 - float(self.alpha) / 2))}th percentile of the maxima (or below "
            f"the {sig(100 * float(self.alpha) / 2)}th percentile of the minima) were assigned "
            "the fraction of null maxima (minima) at least as extreme, floored at 1 / "
            f"{self.n_iters}. Random seed: {seed}. {inputs_sentence(ss1, self.kernel, 1)} "
            f"{inputs_sentence(ss2, self.kernel, 2)}"
        ).replace("  ", " ")
