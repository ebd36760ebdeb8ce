"""Jackknife: how much each analysis contributes to each cluster (leave-one-out).

The contribution of analysis ``i`` to cluster ``c`` is the mean over the cluster's voxels of
``1 - stat_{-i} / stat``, where ``stat_{-i}`` is the value map of the meta-analysis without
``i`` (NaN -> 0), as in NiMARE 0.22.1 (``NIMARE_FACTS.md`` section 2.14).

No refit is needed for the estimators whose statistic is a voxel-wise reduction over analyses:
the reduction over all analyses is computed once, and each leave-one-out statistic follows from
it and the analysis's own modelled-activation (MA) values, only at the cluster voxels:

* ALE and SCALE (``stat``): ``S = sum_j log(1 - MA_j)``, ``stat_{-i} = 1 - exp(S - log(1 - MA_i))``;
* ALESubtraction (``stat_desc-group1MinusGroup2``): the same union for the left-out analysis's
  group, minus (or from) the other group's ALE;
* KDA and unweighted MKDADensity (``stat``): ``stat_{-i} = sum_j MA_j - MA_i``;
* MKDAChi2 (``z_desc-association``): the active-study counts of the left-out analysis's group
  lose its active voxels and the group one member.

These are exactly what a refit gives, up to float rounding. The per-analysis work runs as Dask
tasks over chunks of analyses (named ``jackknife-block``), sharing the one reduction; each task
returns only its analyses' per-cluster means. Other estimators (weighted MKDADensity, future
ones) are refitted without each analysis in turn.

Image-based results (:mod:`nimare_dask.meta.ibma`) are refitted too, as NiMARE does: one refit
per analysis the estimator used, each leaving that analysis out, compared on ``est`` (``z`` for
Fishers and Stouffers, which have no ``est``); two tails share the refits and their tables are
merged into one ``..._tab-counts`` table. A result fitted on fewer than three analyses is
refused (NiMARE 0.22.1: the estimator needs two after one is left out).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any

import dask
import numpy as np
import scipy.sparse as sp
from dask.base import tokenize

from nimare_dask.diagnostics.base import Diagnostics, TailContext, _is_ibma
from nimare_dask.kernels.foci import foci_blocks, shared
from nimare_dask.meta.base import compute
from nimare_dask.meta.cbma import ALE, KDA, SCALE, ALESubtraction, MKDAChi2, MKDADensity
from nimare_dask.results import MetaResult
from nimare_dask.stats.chi2 import two_way_counts
from nimare_dask.studyset import Studyset

__all__ = ["Jackknife"]

#: Elements of one task's (analyses x cluster voxels) float64 block (~32 MB).
_BLOCK_ELEMENTS = 2**22


def _ale(log1m: np.ndarray) -> np.ndarray:
    return (1.0 - np.exp(log1m)).astype(np.float32)


def _association_z(c1, c2, n1, n2) -> np.ndarray:
    chi2 = two_way_counts(c1, c2, n1, n2)
    with np.errstate(divide="ignore", invalid="ignore"):
        sign = np.sign(
            np.asarray(c1, dtype=np.float64) / n1 - np.asarray(c2, dtype=np.float64) / n2
        )
    return (np.sqrt(chi2) * sign).astype(np.float32)


# ---------------------------------------------------------------------------- value rules
# Each rule maps (leave-one-out sums of the left-out group, the other group's data) to the
# float32 value map at the cluster voxels; ``full`` is the same rule on the full sums.
def _value_ale(loo, other):
    return _ale(loo)


def _value_sum(loo, other):
    return np.asarray(loo, dtype=np.float32)


def _value_sub_group1(loo, other):
    return _ale(loo) - other  # other: float32 ALE of group 2


def _value_sub_group2(loo, other):
    return other - _ale(loo)  # other: float32 ALE of group 1


def _value_chi2_group1(loo, other, n_loo, n_other):
    return _association_z(loo, other, n_loo, n_other)


def _value_chi2_group2(loo, other, n_loo, n_other):
    return _association_z(other, loo, n_other, n_loo)


@dataclass
class _BlockContext:
    """What every task of one group shares (one graph key, not copied per task)."""

    kernel: Any
    grid: Any
    vox: np.ndarray  # sorted in-mask voxel indices of the clusters
    how: str  # "log1m", "sum" or "count"
    value: Any  # rule: (loo sums, other) -> float32 values
    full: np.ndarray  # float32 value map of the result at vox
    summary: sp.csr_matrix  # (n_vox_sel, n_cols): column means over each cluster's voxels


def _jackknife_block(sums, other, block, ctx: _BlockContext) -> np.ndarray:
    """Per-cluster contributions of one chunk of analyses (n_rows, n_cols) float64."""
    ijk, rows, n_rows, sample_sizes = block
    csr = ctx.kernel.csr_block(ijk, rows, n_rows, ctx.grid, sample_sizes)
    ma = csr[:, ctx.vox].toarray().astype(np.float64)
    if ctx.how == "log1m":
        loo = sums[None, :] - np.log1p(-ma)
    elif ctx.how == "sum":
        loo = sums[None, :] - ma
    else:
        loo = sums[None, :] - (ma > 0)
    values = ctx.value(loo, other)
    return _summarise(values, ctx.full, ctx.summary)


def _take(values: np.ndarray, index: np.ndarray) -> np.ndarray:
    return np.asarray(values)[index]


def _at_vox(values: np.ndarray, ctx: _BlockContext, transform=None) -> np.ndarray:
    """``values`` (a whole-grid map) at the context's voxels, optionally transformed."""
    out = np.asarray(values)[ctx.vox]
    return out if transform is None else transform(out)


def _summarise(values: np.ndarray, full: np.ndarray, summary: sp.csr_matrix) -> np.ndarray:
    """``mean over cluster voxels of 1 - values / full`` (float32 ratios, NaN -> 0)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        prop = np.nan_to_num(np.true_divide(values, full))
    contrib = (np.float32(1) - prop).astype(np.float64)
    return np.asarray((summary.T @ contrib.T).T)


def _summary_matrix(vox: np.ndarray, groups: list[np.ndarray]) -> sp.csr_matrix:
    """(len(vox), len(groups)) matrix whose column c averages the voxels of groups[c]."""
    rows, cols, vals = [], [], []
    for c, g in enumerate(groups):
        pos = np.searchsorted(vox, g)
        rows.append(pos)
        cols.append(np.full(len(g), c))
        vals.append(np.full(len(g), 1.0 / max(1, len(g))))
    return sp.csr_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
        shape=(len(vox), len(groups)),
    )


def _blocks(ss: Studyset, n_vox_sel: int) -> list:
    """Lazy (ijk, local rows, n_rows, sample sizes) per chunk of analyses.

    The foci come from the studyset's store or one table shared by every task
    (:func:`~nimare_dask.kernels.foci.foci_blocks`), never copied into the tasks.
    """
    per = int(max(1, min(512, _BLOCK_ELEMENTS // max(1, n_vox_sel))))
    bounds = np.append(np.arange(0, len(ss), per), len(ss)) if len(ss) else np.zeros(1, int)
    return foci_blocks(ss, bounds, "jackknife")


class Jackknife(Diagnostics):
    """Leave-one-out contribution of each analysis to each cluster (NiMARE's Jackknife).

    Parameters
    ----------
    target_image : str
        Map whose clusters are characterised (default: the cluster-size FWE z map).
    voxel_thresh : float, optional
        Deprecated alias of ``target_threshold``.
    cluster_threshold : int, optional
        Minimum cluster size in voxels.
    display_second_group : bool
        Pairwise estimators: also explain the negative tail with group 2's analyses.
    n_cores : int, optional
        Threads of the local scheduler when no Dask scheduler is configured.
    target_threshold : float, optional
        Threshold of ``target_image`` (None: 0); e.g. 1.645 on a cluster-level FWE z map.

    Notes
    -----
    ``transform(result, studyset=None, studyset2=None)`` adds ``<target>_tab-clust``,
    ``<target>_diag-Jackknife_tab-counts_tail-<tail>`` (column ``id`` then one float column
    per cluster) and ``label_<...>_tail-<tail>``; see :mod:`nimare_dask.diagnostics.base`.
    """

    def _check_result(self, result: MetaResult) -> None:
        """Image-based results: refuse one too small to refit without one analysis (NiMARE)."""
        est = result.estimator
        if not _is_ibma(est):
            return
        from nimare_dask.meta.ibma.bags import MIN_STUDIES

        inputs = getattr(est, "inputs_", None) or {}
        if "id" not in inputs:
            return
        dropped = (inputs.get("context") or {}).get("dropped", [])
        n_analyses = len(inputs["id"]) - len(dropped)
        if n_analyses < MIN_STUDIES + 1:
            raise ValueError(
                f"Jackknife needs at least {MIN_STUDIES + 1} analyses, but this result was "
                f"fitted on {n_analyses}: it refits the estimator without each analysis in "
                f"turn, and {type(est).__name__} needs at least {MIN_STUDIES}."
            )

    def _contributions(
        self,
        result: MetaResult,
        contexts: list[TailContext],
        value_map: str | None,
        studysets: tuple,
    ) -> list[np.ndarray]:
        est = result.estimator
        rule = self._rule(est, value_map)
        if rule is None:
            return self._refit_contributions(result, contexts, value_map, studysets)
        return self._shared_contributions(result, contexts, value_map, rule, studysets)

    @staticmethod
    def _rule(est, value_map: str | None) -> str | None:
        if isinstance(est, ALE | SCALE) and value_map == "stat":
            return "ale"
        if isinstance(est, ALESubtraction) and value_map == "stat_desc-group1MinusGroup2":
            return "subtraction"
        if isinstance(est, KDA) and value_map == "stat":
            return "sum"
        if (
            isinstance(est, MKDADensity)
            and value_map == "stat"
            and (est.weighting is None or est.weighting == "uniform")
        ):
            return "sum"
        if isinstance(est, MKDAChi2) and value_map == "z_desc-association":
            return "chi2"
        return None

    # ------------------------------------------------------------------ shared reductions
    def _shared_contributions(
        self, result, contexts, value_map, rule, studysets_used
    ) -> list[np.ndarray]:
        est = result.estimator
        kernel = est.kernel
        grid = result.grid
        full_map = np.asarray(result.get_map(value_map, return_type="array"))
        how = {"ale": "log1m", "subtraction": "log1m", "sum": "sum", "chi2": "count"}[rule]
        # group -> the contexts it explains (one-sample: both tails share group 0)
        by_group: dict[int, list[int]] = {}
        for k, ctx in enumerate(contexts):
            by_group.setdefault(ctx.group, []).append(k)
        # all studysets of the estimator (pairwise rules need the other group's sums)
        studysets = {ctx.group: ctx.studyset for ctx in contexts}
        pairwise = rule in ("subtraction", "chi2")
        if pairwise:
            studysets = {1: studysets_used[0], 2: studysets_used[1]}
        all_vox = np.unique(np.concatenate([np.flatnonzero(ctx.labels > 0) for ctx in contexts]))
        # voxel indices travel as shared keys (scattered under distributed), never as literal
        # fancy indices in the graph: they grow with the clusters
        full_sums = {g: kernel.reduce(ss, how).data for g, ss in studysets.items()}
        at_all = shared(all_vox, "jackknife-voxels", tokenize(all_vox))
        lazy_sums = {
            g: dask.delayed(_take, pure=True)(full, at_all) for g, full in full_sums.items()
        }

        tasks, plan = [], []
        for group, ks in by_group.items():
            ss = studysets[group]
            col_groups = [g for k in ks for g in contexts[k].voxel_groups]
            vox = np.unique(np.concatenate(col_groups))
            value, other_key = self._value_rule(rule, group, ss, studysets)
            ctx = _BlockContext(
                kernel=kernel,
                grid=grid,
                vox=vox,
                how=how,
                value=value,
                full=full_map[vox].astype(np.float32),
                summary=_summary_matrix(vox, col_groups),
            )
            token = tokenize(kernel.cache_key(ss), vox, rule, group, value_map)
            # the context grows with the clusters' voxels: one key (scattered under
            # distributed), shared by every task of the group
            shared_ctx = shared(ctx, "jackknife-inputs", token)
            run = dask.delayed(_jackknife_block, pure=True)
            sums = dask.delayed(_at_vox, pure=True)(full_sums[group], shared_ctx)
            other = None
            if other_key is not None:
                other_full = full_sums[other_key[1]]
                other = dask.delayed(_at_vox, pure=True)(other_full, shared_ctx, other_key[0])
            blocks = _blocks(ss, len(vox))
            tasks.extend(
                run(sums, other, blk, shared_ctx, dask_key_name=f"jackknife-block-{token}-{i}")
                for i, blk in enumerate(blocks)
            )
            plan.append((group, ks, len(blocks), [len(contexts[k].cluster_ids) for k in ks]))
        keys = list(lazy_sums)
        computed = compute(*(lazy_sums[g] for g in keys), *tasks, n_cores=self.n_cores)
        sums_out = dict(zip(keys, computed[: len(keys)], strict=True))
        parts = computed[len(keys) :]
        self._check_full(rule, value_map, full_map[all_vox], sums_out, studysets)

        out: list[np.ndarray | None] = [None] * len(contexts)
        start = 0
        for _group, ks, n_blocks, widths in plan:
            block_vals = np.vstack(parts[start : start + n_blocks])
            start += n_blocks
            col = 0
            for k, width in zip(ks, widths, strict=True):
                out[k] = block_vals[:, col : col + width].astype(np.float32)
                col += width
        return out  # type: ignore[return-value]

    @staticmethod
    def _value_rule(rule: str, group: int, ss: Studyset, studysets: dict):
        """The value rule for a group and, for pairwise rules, (transform, other group)."""
        if rule == "ale":
            return _value_ale, None
        if rule == "sum":
            return _value_sum, None
        if rule == "subtraction":
            if group == 1:
                return _value_sub_group1, (_ale, 2)
            return _value_sub_group2, (_ale, 1)
        n1, n2 = len(studysets[1]), len(studysets[2])
        if group == 1:
            return partial(_value_chi2_group1, n_loo=n1 - 1, n_other=n2), (np.asarray, 2)
        return partial(_value_chi2_group2, n_loo=n2 - 1, n_other=n1), (np.asarray, 1)

    @staticmethod
    def _check_full(rule, value_map, full_vals, sums, studysets) -> None:
        """The shared sums must reproduce the result's value map (same studyset and kernel)."""
        if rule == "ale":
            expected = _ale(sums[0])
        elif rule == "sum":
            expected = np.asarray(sums[0], dtype=np.float32)
        elif rule == "subtraction":
            expected = _ale(sums[1]) - _ale(sums[2])
        else:
            expected = _association_z(sums[1], sums[2], len(studysets[1]), len(studysets[2]))
        scale = max(1e-12, float(np.nanmax(np.abs(full_vals))) if full_vals.size else 1.0)
        if not np.allclose(expected, full_vals, rtol=1e-4, atol=1e-5 * scale, equal_nan=True):
            raise ValueError(
                f"the studyset(s) given do not reproduce the result's {value_map!r} map at the "
                "cluster voxels: pass the studyset(s) the result was fitted on"
            )

    # ------------------------------------------------------------------ refits
    def _refit_contributions(self, result, contexts, value_map, studysets) -> list[np.ndarray]:
        est = result.estimator
        if est is None or not hasattr(est, "fit"):
            raise ValueError("Jackknife needs the result's estimator to refit it")
        full = np.asarray(result.get_map(value_map, return_type="array"))
        pairwise = any(ctx.group for ctx in contexts)
        s1, s2 = studysets if pairwise else (None, None)
        # one refit per (group, left-out analysis), shared by the tails explained by the group
        # (a two-tailed one-sample result refits each analysis once, as NiMARE batches them)
        refits: dict[tuple, np.ndarray] = {}
        out = []
        for ctx in contexts:
            groups = ctx.voxel_groups
            ids = list(ctx.studyset.ids)
            rows = []
            for expid in ids:
                key = (ctx.group, expid)
                if key not in refits:
                    refits[key] = self._leave_one_out(est, ctx, ids, expid, value_map, s1, s2)
                with np.errstate(divide="ignore", invalid="ignore"):
                    contrib = np.float32(1) - np.nan_to_num(np.true_divide(refits[key], full))
                rows.append([float(np.mean(contrib[g])) for g in groups])
            out.append(np.asarray(rows, dtype=np.float32).reshape(len(ids), len(groups)))
        return out

    @staticmethod
    def _leave_one_out(est, ctx, ids, expid, value_map, s1, s2) -> np.ndarray:
        """The value map of the estimator refitted without ``expid``."""
        others = [i for i in ids if i != expid]
        clone = type(est)(**est.get_params(deep=False))
        subset = ctx.studyset.slice(others)
        groupby = getattr(clone, "groupby", None)
        if groupby is not None and not isinstance(groupby, str | bool):
            # IBMA labels given one per analysis: keep those of the analyses left
            clone.groupby = Jackknife._labels_of(est, others)
        if ctx.group == 1:
            refit = clone.fit(subset, s2)
        elif ctx.group == 2:
            refit = clone.fit(s1, subset)
        else:
            refit = clone.fit(subset)
        return np.asarray(refit.get_map(value_map, return_type="array"))

    @staticmethod
    def _labels_of(est, others: list) -> list:
        """An IBMA estimator's ``groupby`` labels of its last fit, for the ``others``."""
        inputs = getattr(est, "inputs_", None) or {}
        pos = {i: k for k, i in enumerate(inputs.get("id", []))}
        missing = [i for i in others if i not in pos]
        if missing or "labels" not in inputs:
            raise ValueError(
                f"groupby labels are known only for the analyses of the estimator's last fit; "
                f"{missing[:5]} are not among them: pass the studyset the result was fitted on"
            )
        return [inputs["labels"][pos[i]] for i in others]

    def transform(
        self,
        result: MetaResult,
        studyset: Studyset | None = None,
        studyset2: Studyset | None = None,
    ) -> MetaResult:
        """Leave-one-out contributions of each analysis to each cluster of ``target_image``.

        Parameters
        ----------
        result : MetaResult
            A coordinate-based meta-analysis result.
        studyset : Studyset, optional
            The studyset ``result`` was fitted on (group 1 for pairwise estimators); default:
            the result's own input (``set_inputs``, or stored with a reopened result).
        studyset2 : Studyset, optional
            Pairwise estimators: group 2.

        Returns
        -------
        MetaResult
            A copy of ``result`` with the tables and label maps added (eager: the shared
            reductions and every leave-one-out task run in one ``dask.compute``).
        """
        return super().transform(result, studyset, studyset2)
