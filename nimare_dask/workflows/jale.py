"""Many ALE analyses from one tagged experiment table, as JALE runs them.

:func:`run_jale_analyses` takes a studyset read from a JALE experiment sheet
(:func:`~nimare_dask.io.jale.read_jale_sheet`: tags as labels) and JALE's analysis list
(:func:`~nimare_dask.io.jale.read_jale_analyses`) and runs:

* ``M`` main effects: ALE, Monte Carlo FWE (voxel and cluster level; TFCE with
  ``tfce=True``), Jackknife contributions of each experiment to each significant cluster, and
  the same contributions summed per tag (JALE's "task contributions");
* ``C`` contrasts: both groups' main effects (computed once, shared with ``M`` rows of the
  same name), then :class:`~nimare_dask.meta.cbma.ALESubtraction`. With ``contrast="jale"``
  (JALE's and GingerALE's contrast) each direction is tested only where that group's
  cluster-level FWE main effect is significant, and the conjunction map
  ``stat_desc-conjunction`` is the voxel-wise minimum of the two significant ALE maps;
  ``contrast="nimare"`` tests the whole brain;
* ``P<n>`` probabilistic ALE (:func:`probabilistic_ale`);
* ``B``/``B<n>`` balanced contrasts with ``BalancedALESubtraction`` (``n`` defaults to JALE's ``min(floor(mean(min(n1, n2), 17)), min(n1, n2) - 2)``).

Sharing: the selections are boolean column operations on the (experiments x tags) label
matrix; each main effect is fitted once by name, and the fits of all main effects are
computed in one ``dask.compute`` (one graph of ``ALE._fit_parts`` passes, as
:func:`~nimare_dask.workflows.macm.macm`), so a main effect is bit-identical to
``ALE().fit(studyset.slice(selected))``. The Monte Carlo nulls depend on each selection's foci
counts and sample sizes and are run per analysis.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from nimare_dask import storage
from nimare_dask.correct import FWECorrector
from nimare_dask.diagnostics import FocusCounter, Jackknife
from nimare_dask.diagnostics.stability import ResampledStability
from nimare_dask.io.jale import (
    JaleAnalysis,
    JaleSheetError,
    parse_jale_analyses,
    read_jale_analyses,
    select_experiments,
    tag_matrix,
)
from nimare_dask.meta.base import compute
from nimare_dask.meta.cbma import ALE, ALESubtraction, BalancedALESubtraction
from nimare_dask.meta.kernel import ALEKernel
from nimare_dask.reports import save_outputs
from nimare_dask.results import MetaResult
from nimare_dask.studyset import Studyset

__all__ = [
    "JaleOutput",
    "balanced_target_n",
    "probabilistic_ale",
    "run_jale_analyses",
    "tag_contributions",
]

#: The map main effects are thresholded on (cluster-level FWE, as JALE's ``cFWE``).
CLUSTER_TARGET = "z_desc-size_level-cluster_corr-FWE_method-montecarlo"
#: One-sided p < 0.05 on a cluster-level z map.
Z_05 = 1.6448536269514722
#: The probabilistic ALE map (JALE's ``<name>_sub_ale_<n>``).
PROB_MAP = "prob_desc-subsample"
_FOLDERS = {
    "main": "MainEffect",
    "contrast": "Contrast",
    "probabilistic": "Probabilistic",
    "balanced": "BalancedContrast",
}


@dataclass
class JaleOutput:
    """What :func:`run_jale_analyses` produced.

    Attributes
    ----------
    results : dict
        ``{(kind, label): MetaResult}``; kind is ``main``, ``contrast``, ``probabilistic``
        or ``balanced``; label the analysis name (``<name1>_vs_<name2>`` for contrasts).
    selections : dict
        ``{name: ids}``: the experiments each named selection holds.
    summary : pandas.DataFrame
        One row per analysis: kind, label, sheet row, experiments, foci, subjects, status.
    files : dict
        ``{(kind, label): {...}}`` as :func:`~nimare_dask.reports.save_outputs` returns.
    """

    results: dict = field(default_factory=dict)
    selections: dict = field(default_factory=dict)
    summary: pd.DataFrame = field(default_factory=pd.DataFrame)
    files: dict = field(default_factory=dict)


def balanced_target_n(n1: int, n2: int) -> int:
    """JALE's default experiments per subsample of a balanced contrast.

    ``min(floor(mean(min(n1, n2), 17)), min(n1, n2) - 2)`` (``determine_target_n``).

    Returns
    -------
    int
    """
    # Adapted from JALE 0.2.10 (https://github.com/juaml/JALE, jale/core/utils/input.py),
    # MIT License, Copyright (c) Lennart Frahm
    small = min(int(n1), int(n2))
    return int(min(np.floor((small + 17) / 2), small - 2))


def probabilistic_ale(
    studyset: Studyset,
    target_n: int,
    n_subsamples: int = 2500,
    *,
    n_iters: int = 5000,
    voxel_thresh: float = 0.001,
    alpha: float = 0.05,
    mask_coverage: str = "gm",
    random_state: int | None = None,
    kernel: ALEKernel | None = None,
    n_cores: int | None = None,
) -> MetaResult:
    """Probabilistic ALE (JALE's ``P<n>``): how often each voxel survives cluster-level FWE in
    unique subsamples of ``target_n`` experiments.

    Up to ``n_subsamples`` unique subsets of ``target_n`` experiments (all of them when there
    are fewer) are drawn; each subset's ALE is thresholded at uncorrected ``voxel_thresh`` and
    its clusters kept when larger than one cluster-size threshold: the ``1 - alpha`` quantile
    of the largest cluster of ``n_iters`` random-foci datasets of ``target_n`` randomly chosen
    experiments (JALE's ``compute_monte_carlo_null(target_n=...)``). The map is the fraction of
    subsets in which each voxel survives (JALE's ``<name>_sub_ale_<n>``).

    This is :class:`~nimare_dask.diagnostics.stability.ResampledStability` with
    ``resampling_policy="subsample"`` (one Dask graph; the MA maps are built once and shared by
    every subset). As there (and in NiMARE), each subset's z values come from the full
    selection's approximate ALE null; JALE computes each subset's null from that subset's own
    MA maps, and draws its subsets without a seed.

    Parameters
    ----------
    studyset : Studyset
        The selected experiments.
    target_n : int
        Experiments per subsample.
    n_subsamples : int
        Unique subsamples (JALE's ``subsample_n``, 2500).
    n_iters : int
        Monte Carlo iterations of the cluster-size threshold (JALE's 5000).
    voxel_thresh, alpha : float
        Cluster-forming p and FWE level.
    mask_coverage : {"gm", "brain"}
        Voxels random foci are drawn from (JALE: grey matter).
    random_state : int, optional
        Seed of the subset schedule and the Monte Carlo null.
    kernel : ALEKernel, optional
        Default: width from each experiment's sample size.
    n_cores : int, optional
        Threads of the local scheduler.

    Returns
    -------
    MetaResult
        The full selection's ALE maps plus ``prob_desc-subsample`` (float32, the fraction of
        subsamples in which each voxel survives: ResampledStability's map, renamed) and
        ResampledStability's summary table (eager).
    """
    if isinstance(target_n, bool) or not isinstance(target_n, int | np.integer):
        raise TypeError(f"target_n must be an integer; got {target_n!r}")
    if not 0 < target_n <= len(studyset):
        raise ValueError(
            f"probabilistic ALE: target_n must be between 1 and the {len(studyset)} selected "
            f"experiments; got {target_n}"
        )
    est = ALE(kernel=kernel or ALEKernel(), mask_coverage=mask_coverage, n_cores=n_cores)
    result = est.fit(studyset)
    stab = ResampledStability(
        target_image=CLUSTER_TARGET,
        resampling_policy="subsample",
        target_n=int(target_n),
        n_resamples=int(n_subsamples),
        random_state=random_state,
        voxel_thresh=voxel_thresh,
        mask_coverage=mask_coverage,
        alpha=alpha,
        n_cores=n_cores,
        n_iters=n_iters,
    )
    out = stab.transform(result, studyset=studyset)
    out.maps = out.maps.rename({f"{CLUSTER_TARGET}_diag-ResampledStability": PROB_MAP})
    return out


def tag_contributions(
    counts: pd.DataFrame, studyset: Studyset, value: str = "contribution"
) -> pd.DataFrame:
    """Per-cluster contributions summed over the experiments carrying each tag.

    Parameters
    ----------
    counts : DataFrame
        A Jackknife (or FocusCounter) counts table: column ``id``, then one column per
        cluster.
    studyset : Studyset
        Tags as labels (:func:`~nimare_dask.io.jale.read_jale_sheet`); the table's ids must
        be among its analyses.
    value : str
        Name of the summed column.

    Returns
    -------
    DataFrame
        Long table ``cluster, tag, n_experiments`` (experiments of the analysis carrying the
        tag), ``n_contributing`` (of them, with a positive value), ``<value>`` (the sum) and
        ``percent`` (the sum as a percentage of the cluster's total over all experiments, as
        JALE's task ``NORM`` column); eager.
    """
    clusters = [c for c in counts.columns if c != "id"]
    matrix, tags = tag_matrix(studyset)
    cols = ["cluster", "tag", "n_experiments", "n_contributing", value, "percent"]
    if not clusters or not tags:
        return pd.DataFrame(columns=cols)
    rows = pd.Index(studyset.ids).get_indexer(counts["id"].astype(str))
    if (rows < 0).any():
        missing = counts["id"][rows < 0].tolist()[:5]
        raise KeyError(f"tag_contributions: ids not in the studyset: {missing}")
    has = matrix[rows].astype(np.float64)  # (experiments, tags)
    vals = np.nan_to_num(counts[clusters].to_numpy(dtype=np.float64))  # (experiments, clusters)
    sums = has.T @ vals  # (tags, clusters)
    contributing = has.T @ (vals > 0)
    total = vals.sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        percent = np.where(total > 0, 100.0 * sums / total, 0.0)
    n_exp = has.sum(axis=0)
    keep = n_exp > 0
    out = []
    for k, cluster in enumerate(clusters):
        out.append(
            pd.DataFrame(
                {
                    "cluster": cluster,
                    "tag": np.asarray(tags)[keep],
                    "n_experiments": n_exp[keep].astype(int),
                    "n_contributing": contributing[keep, k].astype(int),
                    value: sums[keep, k],
                    "percent": percent[keep, k],
                }
            )
        )
    return pd.concat(out, ignore_index=True)


# ---------------------------------------------------------------------------- planning
def _as_analyses(analyses) -> list[JaleAnalysis]:
    if isinstance(analyses, str | os.PathLike):
        return read_jale_analyses(analyses)
    analyses = list(analyses)
    if analyses and all(isinstance(a, JaleAnalysis) for a in analyses):
        return analyses
    return parse_jale_analyses(analyses)


def _groups(analyses: list[JaleAnalysis]) -> dict[str, tuple[tuple[str, ...], str]]:
    """Each named selection once: ``{name: (conditions, where)}``; a name reused with other
    conditions is an error (JALE would silently reuse the first result)."""
    out: dict[str, tuple[tuple[str, ...], str]] = {}
    for a in analyses:
        pairs = [(a.name, a.conditions)]
        if a.name2 is not None:
            pairs.append((a.name2, a.conditions2))
        for name, conds in pairs:
            where = f"analysis {name!r} (row {a.row})"
            if name in out and out[name][0] != conds:
                raise JaleSheetError(
                    f"{where}: the name is already used by {out[name][1]} with other conditions "
                    f"({' '.join(out[name][0])} vs {' '.join(conds)}); use distinct names"
                )
            out.setdefault(name, (conds, where))
    return out


def _experiments_table(ss: Studyset) -> pd.DataFrame:
    meta = ss.metadata.set_index("id")
    out = pd.DataFrame({"id": ss.ids, "subjects": ss.sample_sizes, "n_foci": ss.foci_counts()})
    for col in ("article", "tags", "rows"):
        if col in meta:
            vals = meta.loc[ss.ids, col].tolist()
            out[col] = [", ".join(map(str, v)) if isinstance(v, list) else v for v in vals]
    return out


def _fit_main_effects(subsets: dict[str, Studyset], mask_coverage, n_cores) -> dict:
    """ALE of every named selection, all passes in one ``dask.compute``."""
    lazy, finishers = [], []
    for name, ss in subsets.items():
        est = ALE(kernel=ALEKernel(), mask_coverage=mask_coverage, n_cores=n_cores)
        est._check_null_method()
        parts, finish = est._fit_parts(est._prepare(ss, f"selection {name!r}"))
        finishers.append((name, finish, len(parts)))
        lazy.extend(parts)
    computed = compute(*lazy, n_cores=n_cores)
    out, start = {}, 0
    for name, finish, n in finishers:
        out[name] = finish(list(computed[start : start + n]))
        start += n
    return out


def _significant(result: MetaResult) -> np.ndarray:
    return np.asarray(result.get_map(CLUSTER_TARGET, return_type="array")) > Z_05


# ---------------------------------------------------------------------------- running
def run_jale_analyses(
    studyset: Studyset,
    analyses,
    output_dir: str | os.PathLike | None = None,
    *,
    n_iters: int = 5000,
    voxel_thresh: float = 0.001,
    tfce: bool = False,
    contrast: str = "jale",
    contrast_iters: int = 10000,
    n_subsamples: int = 2500,
    difference_iterations: int = 1000,
    diagnostics: str = "jackknife",
    mask_coverage: str = "gm",
    random_state: int | None = None,
    report: bool = False,
    n_cores: int | None = None,
) -> JaleOutput:
    """Run a JALE analysis list on a tagged studyset.

    Parameters
    ----------
    studyset : Studyset
        From :func:`~nimare_dask.io.jale.read_jale_sheet` (tags as labels).
    analyses : path, list of JaleAnalysis or list of rows
        JALE's analysis sheet (file or rows ``[type, name, conditions...]``).
    output_dir : str or Path, optional
        Writes ``<Kind>/<label>/<label>_<map>.nii.gz``, tables (cluster tables, the
        experiments of the selection, Jackknife and per-tag contributions), methods text and
        ``analyses.tsv`` (the summary). Nothing is written when None.
    n_iters : int
        Monte Carlo iterations of main effects and probabilistic ALE (JALE's 5000).
    voxel_thresh : float
        Cluster-forming p (JALE's 0.001).
    tfce : bool
        Also TFCE FWE on main effects (one Monte Carlo pass gives voxel, cluster and TFCE).
    contrast : {"jale", "nimare"}
        ``C`` rows: each direction restricted to that group's significant main effect plus
        the conjunction (JALE), or the whole brain (NiMARE's ALESubtraction).
    contrast_iters : int
        Label permutations of ``C`` rows (JALE's ``contrast_permutations``, 10000).
    n_subsamples : int
        Subsamples of ``P`` and ``B`` rows (JALE's ``subsample_n``, 2500).
    difference_iterations : int
        ``B`` rows' difference iterations (JALE's 1000).
    diagnostics : {"jackknife", "focuscounter", "none"}
        Per-experiment contributions to main-effect clusters (and their per-tag sums).
    mask_coverage : {"gm", "brain"}
        Where random foci fall in the Monte Carlo nulls (JALE: grey matter).
    random_state : int, optional
        Seed of every Monte Carlo step (identical results for any number of workers).
    report : bool
        Write an HTML report per analysis.
    n_cores : int, optional
        Threads of the local scheduler when no Dask client is active.

    Returns
    -------
    JaleOutput
        Eager results, selections, the summary and the files written.
    """
    if contrast not in ("jale", "nimare"):
        raise ValueError(f"contrast must be 'jale' or 'nimare'; got {contrast!r}")
    if diagnostics not in ("jackknife", "focuscounter", "none", None):
        raise ValueError(
            f"diagnostics must be jackknife, focuscounter or none; got {diagnostics!r}"
        )
    todo = _as_analyses(analyses)
    tags = tag_matrix(studyset)
    groups = _groups(todo)
    out = JaleOutput()
    subsets: dict[str, Studyset] = {}
    for name, (conds, where) in groups.items():
        sel = select_experiments(studyset, conds, where=where, tags=tags)
        out.selections[name] = studyset.ids[sel]
        subsets[name] = studyset.slice(studyset.ids[sel])
    for a in todo:  # check subsample sizes before any Monte Carlo run
        if a.kind == "probabilistic" and a.target_n > len(subsets[a.name]):
            raise JaleSheetError(
                f"analysis {a.name!r} (row {a.row}): P{a.target_n} asks for subsamples of "
                f"{a.target_n} experiments but the selection has {len(subsets[a.name])}"
            )

    corrector = FWECorrector(
        method="montecarlo",
        voxel_thresh=voxel_thresh,
        n_iters=n_iters,
        random_state=random_state,
        n_cores=n_cores,
        **({"tfce": True} if tfce else {}),
    )
    main_names = list(
        dict.fromkeys(
            n
            for a in todo
            if a.kind in ("main", "contrast")
            for n in ((a.name,) if a.kind == "main" else (a.name, a.name2))
        )
    )
    fitted = _fit_main_effects({n: subsets[n] for n in main_names}, mask_coverage, n_cores)
    rows = []

    def record(kind, label, row, ss, result, status="", groups=None):
        out.results[(kind, label)] = result
        rows.append(
            {
                "kind": kind,
                "analysis": label,
                "row": row,
                "n_experiments": len(ss),
                "n_foci": int(ss.foci_counts().sum()),
                "n_subjects": float(np.nansum(ss.sample_sizes)),
                "status": status,
            }
        )
        if output_dir is not None:
            folder = Path(output_dir) / _FOLDERS[kind] / label
            ss1, ss2 = groups if groups is not None else (ss, None)
            out.files[(kind, label)] = save_outputs(
                result, folder, label, studyset=ss1, studyset2=ss2, report=report
            )

    first_row = {}
    for a in todo:
        if a.kind == "main":
            first_row.setdefault(a.name, a.row)
        elif a.kind == "contrast":
            first_row.setdefault(a.name, a.row)
            first_row.setdefault(a.name2, a.row + 1)
    mains: dict[str, MetaResult] = {}
    for name in main_names:
        ss = subsets[name]
        result = corrector.transform(fitted[name])
        result = _diagnose(result, diagnostics, ss)
        result.tables["experiments"] = _experiments_table(ss)
        mains[name] = result
        n_sig = int(_significant(result).sum())
        record("main", name, first_row[name], ss, result, f"{n_sig} significant voxels (cFWE)")

    for a in todo:
        if a.kind == "probabilistic":
            ss = subsets[a.name]
            result = probabilistic_ale(
                ss,
                a.target_n,
                n_subsamples,
                n_iters=n_iters,
                voxel_thresh=voxel_thresh,
                mask_coverage=mask_coverage,
                random_state=random_state,
                n_cores=n_cores,
            )
            result.tables["experiments"] = _experiments_table(ss)
            record("probabilistic", a.name, a.row, ss, result, f"P{a.target_n}")
        elif a.kind == "contrast":
            result, status = _contrast(
                a, subsets, mains, contrast, contrast_iters, voxel_thresh, random_state, n_cores
            )
            both = studyset.slice(np.union1d(out.selections[a.name], out.selections[a.name2]))
            if result is not None:
                pair = (subsets[a.name], subsets[a.name2])
                record("contrast", a.label, a.row, both, result, status, pair)
            else:
                rows.append(
                    {"kind": "contrast", "analysis": a.label, "row": a.row, "status": status}
                )
        elif a.kind == "balanced":
            ss1, ss2 = subsets[a.name], subsets[a.name2]
            n = a.target_n or balanced_target_n(len(ss1), len(ss2))
            params = {
                "target_n": n,
                "n_subsamples": n_subsamples,
                "difference_iterations": difference_iterations,
                "n_iters": n_iters,
                "voxel_thresh": voxel_thresh,
                "mask_coverage": mask_coverage,
                "random_state": random_state,
            }
            est = BalancedALESubtraction(**params)
            both = studyset.slice(np.union1d(out.selections[a.name], out.selections[a.name2]))
            record("balanced", a.label, a.row, both, est.fit(ss1, ss2), f"B{n}", (ss1, ss2))
    out.summary = pd.DataFrame(rows)
    if output_dir is not None:
        loc = storage.Location(output_dir)
        loc.write_bytes("analyses.tsv", out.summary.to_csv(sep="\t", index=False).encode())
        loc.write_bytes(
            "experiments.tsv",
            _experiments_table(studyset).to_csv(sep="\t", index=False).encode(),
        )
    return out


def _diagnose(result: MetaResult, kind, ss: Studyset) -> MetaResult:
    """Jackknife/FocusCounter on the cluster-level FWE map, plus the per-tag sums."""
    if kind in (None, "none"):
        return result
    cls = {"jackknife": Jackknife, "focuscounter": FocusCounter}[kind]
    diag = cls(target_image=CLUSTER_TARGET, target_threshold=Z_05)
    result = diag.transform(result, studyset=ss)
    stem = f"{CLUSTER_TARGET}_diag-{cls.__name__}"
    value = "contribution" if kind == "jackknife" else "n_foci"
    for name in list(result.tables):  # _tab-counts, or one per tail: _tab-counts_tail-<t>
        if name.startswith(f"{stem}_tab-counts"):
            tail = name[len(f"{stem}_tab-counts") :]
            result.tables[f"{stem}_tab-tags{tail}"] = tag_contributions(
                result.tables[name], ss, value
            )
    return result


def _contrast(a, subsets, mains, mode, n_iters, voxel_thresh, random_state, n_cores):
    """ALESubtraction of a C row; ``(None, why)`` when neither main effect is significant."""
    ss1, ss2 = subsets[a.name], subsets[a.name2]
    shared = np.intersect1d(ss1.ids, ss2.ids)
    status = ""
    if shared.size:
        status = f"{shared.size} experiments in both groups; "
    sig1, sig2 = _significant(mains[a.name]), _significant(mains[a.name2])
    est = ALESubtraction(kernel=ALEKernel(), n_iters=n_iters, random_state=random_state)
    corrector = FWECorrector(
        method="montecarlo",
        voxel_thresh=voxel_thresh,
        n_iters=n_iters,
        random_state=random_state,
        n_cores=n_cores,
    )
    if mode == "jale":
        if not (sig1.any() or sig2.any()):
            return None, status + "skipped: neither main effect has significant voxels"
        result = corrector.transform(est.fit(ss1, ss2, inference_map1=sig1, inference_map2=sig2))
        ale1 = np.asarray(mains[a.name].get_map("stat", return_type="array"))
        ale2 = np.asarray(mains[a.name2].get_map("stat", return_type="array"))
        conj = np.where(sig1 & sig2, np.minimum(ale1, ale2), 0).astype(np.float32)
        result.add_maps({"stat_desc-conjunction": conj})
        status += "restricted to significant main effects"
    else:
        result = corrector.transform(est.fit(ss1, ss2))
        status += "whole brain"
    return result, status
