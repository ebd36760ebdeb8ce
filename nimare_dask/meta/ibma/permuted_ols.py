"""PermutedOLS: one-sample t over group means, with a group sign-flip max-statistic FWE null.

Each dependence group contributes the mean of its images in a bag; the statistic is the
one-sample t over those contributions (``m - 1`` degrees of freedom) or, with
``use_sample_size``, the intercept-only CR2 t with sample-size weights and Satterthwaite
degrees of freedom (NiMARE 0.22.1, ``nimare/meta/_permutation.py``, adapted under the MIT licence,
Copyright (c) 2018- NiMARE developers).

The FWE null (:meth:`PermutedOLS.correct_fwe_montecarlo`) draws one sign per group and
iteration, shared by every bag and voxel chunk, from the Monte Carlo engine's per-iteration
generators (``SeedSequence([seed, stream], spawn_key=(i,))``, stream
``"correct_fwe_montecarlo"``), so the null is identical for any voxel chunking, block size,
scheduler and number of workers. Per bag, the maximum permuted ``|t|`` (or ``t``) is converted
to z with the bag's degrees of freedom and the maximum over bags forms the null.
"""

from __future__ import annotations

from typing import Any

import dask
import numpy as np

from nimare_dask.meta.base import compute
from nimare_dask.meta.ibma._models import Groups, colsum
from nimare_dask.meta.ibma._permute_numba import chunk_layout, ols_block_max, sign_patterns
from nimare_dask.meta.ibma._stats import logp_map, t_to_nlogp, t_to_z
from nimare_dask.meta.ibma.bags import iter_bags
from nimare_dask.meta.ibma.base import _TOOL, MIN_STUDIES, IBMAEstimator, _make_context

__all__ = ["PermutedOLS"]

_STREAM = "correct_fwe_montecarlo"
#: Largest default block of sign-flip iterations (see ``correct_fwe_montecarlo``).
_BLOCK_MAX = 1000


def _contributions(y: np.ndarray, blocks: np.ndarray, n: np.ndarray | None):
    """Group means ``(m, V)``, global block columns and per-group weights (or None)."""
    groups = Groups(blocks)
    cols = np.unique(blocks)
    contrib = groups.mean(y)
    weights = None if n is None else groups.mean(n[:, None])[:, 0]
    return contrib, cols, weights


def _cr2_stats(contrib: np.ndarray, q: np.ndarray):
    total = q.sum()
    adj = q**2 / (1.0 - q / total)
    return {
        "wv": q[:, None] * contrib,
        "av": adj[:, None] * contrib,
        "ass": colsum(adj[:, None] * contrib**2),
        "aw": adj.sum(),
        "total": total,
    }


def _signed_sums(signs: np.ndarray, values: np.ndarray) -> np.ndarray:
    """``signs @ values`` summed group by group in a fixed order, so every (iteration, voxel)
    value is bitwise the same whatever the batch of iterations or the voxel chunk (a BLAS
    product's rounding depends on the shapes)."""
    out = np.zeros((signs.shape[0], values.shape[1]))
    for g in range(values.shape[0]):
        out += signs[:, g : g + 1] * values[g]
    return out


def _cr2_t(signs: np.ndarray, st: dict) -> np.ndarray:
    ws = _signed_sums(signs, st["wv"])
    adj = _signed_sums(signs, st["av"])
    means = ws / st["total"]
    meat = st["ass"][None, :] - 2.0 * means * adj + means**2 * st["aw"]
    meat = np.maximum(meat, 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = ws / np.sqrt(meat)
    out[meat == 0] = np.nan
    return out


def _ols_t(sums: np.ndarray, ss: np.ndarray, m: int) -> np.ndarray:
    stat = np.maximum(m * ss - sums**2, 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        root = np.sqrt(stat)
        out = sums / root * np.sqrt(m - 1)
    return np.where(root == 0, np.nan, out)


def _satterthwaite_singletons(q: np.ndarray) -> float:
    W = q.sum()
    comp = np.maximum(1.0 - q / W, 1e-10)
    b = q / (W**2 * comp)
    d = q**2 / (W**3 * comp)
    trace = b.sum() - d.sum()
    trace_sq = d.sum() ** 2 - 2.0 * (b * d).sum() + (b**2).sum()
    with np.errstate(divide="ignore", invalid="ignore"):
        dof = trace**2 / trace_sq
    return float(max(dof if np.isfinite(dof) else 1.0, 1.0))


class PermutedOLS(IBMAEstimator):
    """Permuted ordinary least squares on beta images (NiMARE's ``PermutedOLS``).

    Parameters
    ----------
    two_sided : bool, default=True
        Two-sided test (|t|); False tests positive effects.
    use_sample_size : bool, default=False
        Weight each group by its sample size (CR2 t, Satterthwaite dof).
    n_jobs : int, default=1
        Threads of the local scheduler for the FWE null (NiMARE's parameter).
    random_state : int or None, default=42
        Seed of the sign-flip null.
    **kwargs
        The common parameters of :class:`~nimare_dask.meta.ibma.base.IBMAEstimator`.

    Notes
    -----
    Requires ``beta`` images (and sample sizes with ``use_sample_size``). Maps:
    ``t, z, p, logp, dof``. Correction: ``FWECorrector(method="montecarlo")``.
    """

    _image_types = ("beta",)
    _map_names = ("t", "z", "p", "logp", "dof")

    def __init__(
        self,
        two_sided: bool = True,
        use_sample_size: bool = False,
        n_jobs: int = 1,
        random_state: int | None = 42,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.two_sided = two_sided
        self.use_sample_size = use_sample_size
        self.n_jobs = n_jobs
        self.random_state = random_state

    def _needs_sample_sizes(self) -> bool:
        return bool(self.use_sample_size)

    def _bag_model(self, y, rows, ctx):
        n = ctx["sample_sizes"][rows] if self.use_sample_size else None
        contrib, cols, q = _contributions(y, ctx["blocks"][rows], n)
        m = contrib.shape[0]
        if q is None:
            t = _ols_t(colsum(contrib), colsum(contrib**2), m)
            dof = float(m - 1)
        else:
            if np.any(~np.isfinite(q)) or np.any(q <= 0):
                raise ValueError("Sample sizes must be finite positive values.")
            t = _cr2_t(np.ones((1, m)), _cr2_stats(contrib, q))[0]
            dof = _satterthwaite_singletons(q)
        return contrib, cols, q, t, dof

    def _fit_bag(self, arrays, rows, codes, ctx):
        _, _, _, t, dof = self._bag_model(arrays[0], rows, ctx)
        nlogp = t_to_nlogp(t, dof, tail="two" if self.two_sided else "one")
        return {
            "t": t,
            "z": t_to_z(t, dof),
            "p": np.exp(nlogp),
            "logp": logp_map(nlogp),
            "dof": np.full(t.shape, dof),
        }

    def _description(self, n_images: int) -> str:
        text = (
            f"An image-based meta-analysis was performed with {_TOOL}, on {n_images} beta "
            "images using a permuted ordinary least squares method derived from Nilearn's "
            "\\citep{abraham2014machine}."
        )
        if self.use_sample_size:
            text += " Each group was weighted by its sample size."
        return text

    def correct_fwe_montecarlo(
        self,
        result,
        n_iters: int = 5000,
        n_cores: int | None = None,
        random_state: int | None = None,
        block_size: int | None = None,
        checkpoint: Any = None,
        progress: bool = False,
    ):
        """Voxel-level FWE from the max-z null of group sign flips (use via FWECorrector).

        Parameters
        ----------
        result : MetaResult
            This estimator's fit result.
        n_iters : int, default=5000
            Sign-flip iterations.
        n_cores : int, optional
            Threads of the local pool (default: ``n_jobs``).
        random_state : int, optional
            Seed (default: the estimator's ``random_state``).
        block_size : int, optional
            Iterations per block (never changes a number). Default:
            ``min(1000, ceil(n_iters / (4 * threads)))``: a block tabulates each voxel's
            partial sums once for all its iterations, so blocks of hundreds of iterations
            amortise that (the engine's timing-based calibration, fooled by the tabulation
            cost of its one- and four-iteration probe blocks, would choose blocks of tens).
        checkpoint : path or zarr group, optional
            Resume an interrupted null from here (Monte Carlo engine checkpoints).
        progress : bool
            Show a progress bar.

        Returns
        -------
        Correction
            ``p/z/logp_level-voxel`` maps (eager) and the null distribution.
        """
        from nimare_dask.montecarlo import run_blocks
        from nimare_dask.results import Correction
        from nimare_dask.stats.transforms import p_to_z

        if isinstance(n_iters, bool) or not isinstance(n_iters, int | np.integer) or n_iters <= 0:
            raise ValueError("n_iters must be a positive integer.")
        inputs = getattr(self, "inputs_", None)
        if not inputs:
            raise ValueError("PermutedOLS.correct_fwe_montecarlo needs the fitted estimator")
        ctx = inputs["context"]
        parts = [
            dask.delayed(_null_inputs, pure=True)(self, [b], ctx)
            for b in inputs["arrays"][0].to_delayed().ravel()
        ]
        bags = [bag for part in compute(*parts, n_cores=n_cores or self.n_jobs) for bag in part]
        n_blocks = int(ctx["n_blocks"])
        two = bool(self.two_sided)

        def block_fn(start, stop, seed):
            flips = np.stack(
                [seed.rng(i).choice((-1.0, 1.0), size=n_blocks) for i in range(start, stop)]
            )
            by_dof: dict[float, np.ndarray] = {}  # max t over the bags sharing a dof (exact)
            for bag in bags:
                signs = flips[:, bag["cols"]]
                if bag["cr2"] is None:
                    tmax = np.full(stop - start, -np.inf)
                    starts, sizes = bag["layout"]
                    ols_block_max(
                        sign_patterns(signs, starts, sizes),
                        bag["contrib"],
                        bag["mss"],
                        bag["m"],
                        starts,
                        sizes,
                        two,
                        tmax,
                    )
                else:
                    t = _cr2_t(signs, bag["cr2"])
                    if two:
                        t = np.abs(t)
                    tmax = np.where(np.isnan(t), -np.inf, t).max(axis=1)
                prev = by_dof.get(bag["dof"])
                by_dof[bag["dof"]] = tmax if prev is None else np.fmax(prev, tmax)
            h0 = np.full(stop - start, -np.inf)
            for dof, tmax in by_dof.items():
                finite = np.isfinite(tmax)
                z = np.full(tmax.shape, -np.inf)
                z[finite] = t_to_z(tmax[finite], dof)
                np.fmax(h0, z, out=h0)
            return {"h0": h0}

        seed = self.random_state if random_state is None else random_state
        if block_size is None:
            threads = max(1, int(n_cores or self.n_jobs or 1))
            block_size = max(1, min(_BLOCK_MAX, -(-int(n_iters) // (4 * threads))))
        run = run_blocks(
            block_fn,
            int(n_iters),
            block_size,
            random_state=seed,
            stream=_STREAM,
            checkpoint=checkpoint,
            progress=progress,
            name="ibma-permuted-ols-null",
            n_threads=n_cores or self.n_jobs,
        )
        h0 = run["h0"]
        z_obs = np.asarray(result.maps["z"].values, dtype=float)
        valid = np.isfinite(z_obs)
        observed = np.abs(z_obs) if two else z_obs
        p = np.full(z_obs.shape, np.nan)
        null = np.sort(h0)
        exceed = null.size - np.searchsorted(null, observed[valid], side="left")
        p[valid] = (exceed + 1) / (null.size + 1)
        sign = np.sign(z_obs)
        sign[sign == 0] = 1
        z = p_to_z(p, tail="two" if two else "one") * sign
        description = (
            "Family-wise error rate correction was performed with a max-statistic null "
            "distribution generated by sign-flipping each group's contribution as one "
            "exchangeability block \\citep{winkler2014permutation}, following the permutation "
            "scheme of \\cite{freedman1983nonstochastic}. The maximum was taken over "
            "z-statistics, so that voxels backed by different numbers of images contribute on "
            f"a common scale. {n_iters} iterations were performed to generate the null "
            f"distribution (random seed {run.random_state})."
        )
        return Correction(
            maps={"p_level-voxel": p, "z_level-voxel": z, "logp_level-voxel": -np.log10(p)},
            description=description,
            null_distributions={"values_level-voxel_corr-fwe_method-montecarlo": h0},
        )


def _null_inputs(est: PermutedOLS, blocks: list[np.ndarray], ctx: dict) -> list[dict]:
    """Per bag of a voxel chunk: what the sign-flip null needs (group means, dof...)."""
    valid = est._validity(blocks) & ctx["keep"][:, None]
    if est.aggressive_mask:
        kept = np.flatnonzero(ctx["keep"])
        cols = np.flatnonzero(valid[kept].all(axis=0))
        bags = [(b"all", kept, cols)] if cols.size and kept.size >= MIN_STUDIES else []
    else:
        bags = iter_bags(valid)
    out = []
    for _, rows, cols in bags:
        if np.unique(ctx["codes"][rows]).size < MIN_STUDIES:
            continue
        y = np.asarray(blocks[0][rows][:, cols], dtype=np.float64)
        contrib, gcols, q, _, dof = est._bag_model(y, rows, ctx)
        m = contrib.shape[0]
        out.append(
            {
                "cols": gcols,
                "contrib": np.ascontiguousarray(contrib, dtype=np.float64),
                "mss": m * colsum(contrib**2),
                "m": m,
                "layout": chunk_layout(m),
                "cr2": None if q is None else _cr2_stats(contrib, q),
                "dof": dof,
            }
        )
    return out


_ = _make_context  # the context comes from the fit (inputs_["context"])
