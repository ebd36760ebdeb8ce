"""End-to-end coordinate-based workflows: ALE with Monte Carlo FWE, and ALE contrasts.

NiMARE 0.22.1's classes live here too: :class:`CBMAWorkflow`, :class:`PairwiseCBMAWorkflow`
and :class:`ContrastWorkflow` (from :mod:`nimare_dask.workflows.contrast`).

These are what ``nimare-dask ale`` runs; they are plain functions so notebooks and scripts can
run the same job and get the same files.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from nimare_dask.correct import FWECorrector
from nimare_dask.diagnostics import FocusCounter, Jackknife, ResampledStability
from nimare_dask.meta.base import CBMAEstimator, PairwiseCBMAEstimator
from nimare_dask.meta.cbma import ALE, ALESubtraction
from nimare_dask.meta.kernel import ALEKernel
from nimare_dask.reports import save_outputs
from nimare_dask.results import MetaResult
from nimare_dask.studyset import Studyset
from nimare_dask.workflows.base import Workflow, check_drop_invalid
from nimare_dask.workflows.contrast import ContrastWorkflow

__all__ = [
    "CLUSTER_TARGET",
    "CBMAWorkflow",
    "ContrastWorkflow",
    "PairwiseCBMAWorkflow",
    "WorkflowOutput",
    "ale_contrast_workflow",
    "ale_workflow",
]

#: The corrected map the diagnostics and the contrast masks use (cluster-size FWE, as GingerALE).
CLUSTER_TARGET = "z_desc-size_level-cluster_corr-FWE_method-montecarlo"
#: One-sided p < 0.05 on a cluster-level z map.
Z_05_ONE_SIDED = 1.6448536269514722


@dataclass
class WorkflowOutput:
    """What a workflow produced: the results by name and the files written for each."""

    results: dict[str, MetaResult] = field(default_factory=dict)
    files: dict[str, dict] = field(default_factory=dict)


def _kernel(fwhm: float | None) -> ALEKernel:
    return ALEKernel(fwhm=fwhm) if fwhm else ALEKernel()


def _cluster_target(result: MetaResult) -> str:
    """The cluster-level FWE z map (Monte Carlo or predictive), else the uncorrected z."""
    for name in (CLUSTER_TARGET, CLUSTER_TARGET.replace("montecarlo", "predictive")):
        if name in result.maps:
            return name
    return "z"


def _diagnose(result: MetaResult, kind: str, studyset, studyset2=None) -> MetaResult:
    if kind in (None, "none"):
        return result
    cls = {"jackknife": Jackknife, "focuscounter": FocusCounter}[kind]
    target = _cluster_target(result)
    diag = cls(target_image=target, target_threshold=Z_05_ONE_SIDED)
    return diag.transform(result, studyset=studyset, studyset2=studyset2)


def ale_workflow(
    studyset: Studyset,
    *,
    n_iters: int = 10000,
    voxel_thresh: float = 0.001,
    fwhm: float | None = None,
    random_state: int | None = None,
    diagnostics: str | None = "jackknife",
    output_dir: str | Path | None = None,
    prefix: str = "",
    report: bool = True,
    n_cores: int | None = None,
    name: str = "ale",
    tfce: bool = False,
    correction: str = "montecarlo",
    stability: str | None = None,
    stability_resamples: int | None = None,
) -> WorkflowOutput:
    """ALE with voxel- and cluster-level FWE, diagnostics and outputs on disk.

    Parameters
    ----------
    studyset : Studyset
        The experiments (sample sizes set the kernel width unless ``fwhm`` is given).
    n_iters : int
        Monte Carlo iterations of the FWE null.
    voxel_thresh : float
        Cluster-forming threshold (uncorrected p).
    fwhm : float, optional
        Fixed kernel FWHM in mm (default: from each experiment's sample size).
    random_state : int, optional
        Seed; the result is identical for any number of workers.
    diagnostics : {"jackknife", "focuscounter", "none"}
        Per-study contributions to each significant cluster.
    output_dir : str or Path, optional
        Where to write maps, tables, methods text and the report (nothing written if None).
    prefix : str
        File-name prefix.
    report : bool
        Write the HTML report.
    n_cores : int, optional
        Threads for the local scheduler when no Dask client is active.
    name : str
        Key of the result in the returned :class:`WorkflowOutput`.
    tfce : bool
        Also TFCE of the z map with voxel-level FWE from the same Monte Carlo iterations.
    correction : {"montecarlo", "predictive"}
        Monte Carlo FWE (``n_iters`` iterations), or NiMARE's predicted vFWE/cFWE cutoffs
        (XGBoost models, ``pip install "nimare_dask[predictive]"``; no simulation).
    stability : {"leave_1_out", "subsample"}, optional
        Also :class:`~nimare_dask.diagnostics.ResampledStability` with that policy (map
        ``..._diag-ResampledStability``: the share of replicates in which each voxel survives
        cluster-level FWE, with ``n_iters`` iterations per replicate).
    stability_resamples : int, optional
        Replicates for ``stability="subsample"`` (NiMARE's default otherwise).

    Returns
    -------
    WorkflowOutput
        Computed results and the files written.
    """
    if correction not in ("montecarlo", "predictive"):
        raise ValueError(f"correction must be 'montecarlo' or 'predictive', got {correction!r}")
    if correction == "predictive" and tfce:
        raise ValueError("tfce needs the Monte Carlo null: use correction='montecarlo'")
    est = ALE(kernel=_kernel(fwhm), n_cores=n_cores)
    result = est.fit(studyset)
    if correction == "predictive":
        corrector = FWECorrector(method="predictive")
    else:
        corrector = FWECorrector(
            method="montecarlo",
            voxel_thresh=voxel_thresh,
            n_iters=n_iters,
            random_state=random_state,
            n_cores=n_cores,
            **({"tfce": True} if tfce else {}),
        )
    result = corrector.transform(result)
    result = _diagnose(result, diagnostics, studyset)
    if stability is not None:
        result = ResampledStability(
            target_image=_cluster_target(result),
            resampling_policy=stability,
            n_resamples=stability_resamples,
            random_state=random_state,
            voxel_thresh=voxel_thresh,
            n_iters=n_iters,
            n_cores=n_cores,
        ).transform(result, studyset=studyset)
    out = WorkflowOutput(results={name: result})
    if output_dir is not None:
        out.files[name] = save_outputs(result, output_dir, prefix, studyset=studyset, report=report)
        out.files[name].update(_save_reopenable(result, studyset, output_dir, prefix))
    return out


def _save_reopenable(result: MetaResult, studyset: Studyset, output_dir, prefix: str) -> dict:
    """The result as a Zarr store and its input as NIMADS JSON (for ``nimare-dask jackknife``)."""
    start = prefix if not prefix or prefix.endswith("_") else prefix + "_"
    out = Path(output_dir)
    store = result.to_zarr(str(out / f"{start}result.zarr"), overwrite=True)
    inputs = studyset.to_nimads(out / f"{start}input_studyset.json")
    return {"result_store": str(store), "input_studyset": str(inputs)}


def ale_contrast_workflow(
    studyset1: Studyset,
    studyset2: Studyset,
    *,
    n_iters: int = 10000,
    voxel_thresh: float = 0.001,
    fwhm: float | None = None,
    random_state: int | None = None,
    diagnostics: str | None = "jackknife",
    gingerale_contrast: bool = False,
    output_dir: str | Path | None = None,
    prefix: str = "",
    report: bool = True,
    n_cores: int | None = None,
) -> WorkflowOutput:
    """Two-group ALE: each group's corrected main effect, the subtraction, and optionally
    GingerALE's contrast (each direction restricted to that group's significant voxels) with
    the conjunction map.

    Parameters
    ----------
    studyset1, studyset2 : Studyset
        The two groups of experiments (disjoint ids).
    gingerale_contrast : bool
        Also run the GingerALE approach: ``group1 > group2`` is only tested where group 1's
        cluster-level FWE main effect is significant (z > 1.645), and vice versa; the conjunction
        is the voxel-wise minimum of the two significant main-effect ALE maps.
    Other parameters
        As :func:`ale_workflow`.

    Returns
    -------
    WorkflowOutput
        Results ``group1``, ``group2``, ``subtraction`` (NiMARE's whole-brain approach) and, with
        ``gingerale_contrast``, ``contrast`` (maps ``z_desc-group1MinusGroup2`` restricted as
        above, plus ``stat_desc-conjunction``).
    """
    out = WorkflowOutput()
    sub = lambda p: f"{prefix}{'_' if prefix else ''}{p}"  # noqa: E731
    for key, ss in (("group1", studyset1), ("group2", studyset2)):
        part = ale_workflow(
            ss,
            n_iters=n_iters,
            voxel_thresh=voxel_thresh,
            fwhm=fwhm,
            random_state=random_state,
            diagnostics=diagnostics,
            output_dir=output_dir,
            prefix=sub(key),
            report=report,
            n_cores=n_cores,
            name=key,
        )
        out.results.update(part.results)
        out.files.update(part.files)

    corrector = FWECorrector(
        method="montecarlo",
        voxel_thresh=voxel_thresh,
        n_iters=n_iters,
        random_state=random_state,
        n_cores=n_cores,
    )
    est = ALESubtraction(kernel=_kernel(fwhm), n_iters=n_iters, random_state=random_state)
    result = corrector.transform(est.fit(studyset1, studyset2))
    out.results["subtraction"] = result
    if output_dir is not None:
        out.files["subtraction"] = save_outputs(
            result,
            output_dir,
            sub("subtraction"),
            studyset=studyset1,
            studyset2=studyset2,
            report=report,
        )

    if gingerale_contrast:
        masks = []
        for key in ("group1", "group2"):
            z = out.results[key].get_map(CLUSTER_TARGET, return_type="array")
            masks.append(np.asarray(z) > Z_05_ONE_SIDED)
        est = ALESubtraction(kernel=_kernel(fwhm), n_iters=n_iters, random_state=random_state)
        contrast = corrector.transform(
            est.fit(
                studyset1,
                studyset2,
                inference_map1=masks[0],
                inference_map2=masks[1],
            )
        )
        ale1 = np.asarray(out.results["group1"].get_map("stat", return_type="array"))
        ale2 = np.asarray(out.results["group2"].get_map("stat", return_type="array"))
        both = masks[0] & masks[1]
        conj = np.where(both, np.minimum(ale1, ale2), 0).astype(np.float32)
        contrast.add_maps({"stat_desc-conjunction": conj})
        out.results["contrast"] = contrast
        if output_dir is not None:
            out.files["contrast"] = save_outputs(
                contrast,
                output_dir,
                sub("contrast"),
                studyset=studyset1,
                studyset2=studyset2,
                report=report,
            )
    return out


# ---------------------------------------------------------------------- NiMARE's classes
class CBMAWorkflow(Workflow):
    """NiMARE's ``CBMAWorkflow``: one-sample CBMA, correction and diagnostics.

    Parameters
    ----------
    estimator : CBMAEstimator, class or {"ale", "scale", "mkdadensity", "kda"}, optional
        Default: :class:`~nimare_dask.meta.cbma.ALE`.
    corrector : Corrector, class or {"montecarlo", "fdr", "bonferroni"}, optional
        Default: ``FWECorrector(method="montecarlo")``.
    diagnostics : {"jackknife", "focuscounter"}, diagnostic object/class or a list, optional
        Default: :class:`~nimare_dask.diagnostics.Jackknife`. They run on every corrected
        ``z`` map with ``_desc-mass`` (Monte Carlo) or every corrected ``z`` map (otherwise).
    voxel_thresh, cluster_threshold, output_dir, n_cores
        See :class:`~nimare_dask.workflows.base.Workflow`.
    """

    _estm_base = CBMAEstimator
    _estm_options = ("ale", "scale", "mkdadensity", "kda")
    _estm_default = "ale"

    def fit(self, dataset: Studyset, drop_invalid: bool = True) -> MetaResult:
        """Fit the estimator, correct, run the diagnostics (and write outputs).

        Parameters
        ----------
        dataset : Studyset
        drop_invalid : bool
            Analyses without foci are dropped (NiMARE's default); False is refused when
            there are any (see :func:`~nimare_dask.workflows.base.check_drop_invalid`).

        Returns
        -------
        MetaResult
            Corrected, with the diagnostics' tables and maps (eager).
        """
        check_drop_invalid(drop_invalid, dataset)
        result = self.estimator.fit(dataset)
        return self._transform(result, {"studyset": dataset})


class PairwiseCBMAWorkflow(Workflow):
    """NiMARE's ``PairwiseCBMAWorkflow``: two-group CBMA, correction and diagnostics.

    Parameters
    ----------
    estimator : PairwiseCBMAEstimator, class or {"alesubtraction", "mkdachi2"}, optional
        Default: :class:`~nimare_dask.meta.cbma.MKDAChi2`.
    corrector, diagnostics, voxel_thresh, cluster_threshold, output_dir, n_cores
        As :class:`CBMAWorkflow`; diagnostics run on the corrected ``z`` maps of the
        ``associationMass`` / ``group1MinusGroup2Mass`` clusters (else the voxel-level ones).
    """

    _estm_base = PairwiseCBMAEstimator
    _estm_options = ("alesubtraction", "mkdachi2")
    _estm_default = "mkdachi2"

    def fit(self, dataset1: Studyset, dataset2: Studyset, drop_invalid: bool = True) -> MetaResult:
        """Fit the two groups, correct and run the diagnostics (and write outputs).

        Returns
        -------
        MetaResult
            Eager.
        """
        check_drop_invalid(drop_invalid, dataset1, dataset2)
        result = self.estimator.fit(dataset1, dataset2)
        return self._transform(result, {"studyset": dataset1, "studyset2": dataset2})
