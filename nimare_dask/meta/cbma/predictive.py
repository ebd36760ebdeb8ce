"""ALE family-wise error thresholds *predicted* by NiMARE's XGBoost models (no simulation).

Frahm et al. (2025, Imaging Neuroscience, doi:10.1162/imag_a_00423) trained one XGBoost
regressor per threshold (voxel-level FWE ALE value, cluster-level FWE cluster size in voxels,
TFCE) on 68,100 simulated ALE datasets of 10-150 experiments. NiMARE 0.22.1 ships the three
models (``resources/ml_models``, MIT) and applies the first two in
``FWECorrector(method="predictive")``; this module does the same on nimare_dask results:

* :func:`feature_extraction`: NiMARE's 26 features of (number of experiments, subjects per
  experiment, foci per experiment);
* :func:`predict_cutoffs`: the predicted ``vfwe`` (ALE value), ``cfwe`` (voxels, rounded) and
  optionally ``tfce`` cutoffs; :class:`PredictiveCutoffError` outside the models' training range
  (more than 150 experiments, 300 subjects or 150 foci per experiment) and for degenerate input;
* :func:`correct_fwe_predictive`: the maps ``p/z/logp_level-voxel`` (the uncorrected p, z and
  logp where ALE >= the vFWE cutoff; p = 1, z = logp = 0 elsewhere) and
  ``p/z/logp_desc-size_level-cluster`` (the same inside 6-connected clusters of ALE above the
  uncorrected p < 0.001 threshold with at least ``cfwe`` voxels), named as NiMARE's.

The models are NiMARE's files re-saved in XGBoost's UBJSON format (xgboost >= 3.1 no longer
reads the legacy binary ``.xgb`` files NiMARE ships; re-saved with xgboost 2.1.4, predictions
identical to the legacy files'). xgboost is an optional dependency: ``pip install
"nimare_dask[predictive]"``.
"""

from __future__ import annotations

import warnings
from functools import cache
from importlib import resources
from typing import Any

import numpy as np
from scipy.stats import kurtosis, skew

from nimare_dask.results import Correction, MetaResult
from nimare_dask.stats.clusters import label_clusters

__all__ = [
    "MODEL_FILES",
    "PredictiveCutoffError",
    "correct_fwe_predictive",
    "feature_extraction",
    "predict_cutoffs",
    "supports_predictive",
]

#: Packaged model of each cutoff (``nimare_dask/resources/ml_models``).
MODEL_FILES = {"vfwe": "vFWE_model.ubj", "cfwe": "cFWE_model.ubj", "tfce": "tfce_model.ubj"}
#: Training range of the models (NiMARE's limits).
MAX_EXPERIMENTS, MAX_SUBJECTS, MAX_FOCI = 150, 300, 150
#: NiMARE's null-distribution keys of the predicted cutoffs.
NULL_KEYS = {
    "vfwe": "summary_stat_thresh_level-voxel_corr-fwe_method-predictive",
    "cfwe": "summary_stat_thresh_desc-size_level-cluster_corr-fwe_method-predictive",
}
#: Uncorrected p of the cluster-forming threshold (fixed by the models' training).
CLUSTER_FORMING_P = 0.001


class PredictiveCutoffError(ValueError):
    """Inputs the predictive models do not cover (out of their training range, or degenerate)."""


def _load_xgboost():
    try:
        import xgboost
    except ImportError as exc:
        raise ImportError(
            "ALE predictive cutoffs (FWECorrector(method='predictive'), predict_cutoffs) need "
            "the optional dependency xgboost: pip install 'nimare_dask[predictive]'"
        ) from exc
    return xgboost


@cache
def _booster(name: str):
    xgb = _load_xgboost()
    booster = xgb.Booster()
    ref = resources.files("nimare_dask.resources").joinpath("ml_models", MODEL_FILES[name])
    with resources.as_file(ref) as path:
        booster.load_model(str(path))
    return booster


def _safe_stat(func, values: np.ndarray) -> float:
    with warnings.catch_warnings():  # constant inputs: scipy warns, the value is NaN -> 0
        warnings.simplefilter("ignore", RuntimeWarning)
        value = func(values)
    return 0.0 if np.isnan(value) else float(value)


def feature_extraction(nexp: int, nsub, nfoci) -> np.ndarray:
    """NiMARE's 26 features of an ALE dataset, the models' input.

    Parameters
    ----------
    nexp : int
        Number of experiments.
    nsub : array_like
        (nexp,) subjects per experiment (> 0).
    nfoci : array_like
        (nexp,) foci per experiment (>= 0).

    Returns
    -------
    numpy.ndarray
        (1, 26) float64 (eager): number of experiments; sum, mean, median, standard deviation,
        max, min, skewness and excess kurtosis of the subjects and of the foci; mean, standard
        deviation, max and min of foci / subjects; foci per experiment; and the foci of
        experiments with > 20, 16-20, 11-15 and <= 10 subjects.

    Raises
    ------
    PredictiveCutoffError
        Mismatched or non-positive inputs, or inputs beyond the models' training range.
    """
    # Adapted from NiMARE 0.22.1 (https://github.com/neurostuff/NiMARE), MIT License, Copyright (c) 2018 NiMARE developers
    nsub = np.asarray(nsub, dtype=float)
    nfoci = np.asarray(nfoci, dtype=float)
    if nsub.ndim != 1 or nfoci.ndim != 1 or nsub.shape != nfoci.shape:
        raise PredictiveCutoffError(
            "predictive cutoffs need one-dimensional subject and focus counts of equal length; "
            f"got shapes {nsub.shape} and {nfoci.shape}"
        )
    if nsub.shape[0] != nexp:
        raise PredictiveCutoffError(
            f"expected {nexp} experiments, but received {nsub.shape[0]} subject counts"
        )
    if nexp < 1:
        raise PredictiveCutoffError("predictive cutoffs need at least one experiment")
    if not np.all(np.isfinite(nsub)) or np.any(nsub <= 0):
        raise PredictiveCutoffError(
            "predictive cutoffs need a positive, finite number of subjects for every experiment"
        )
    if not np.all(np.isfinite(nfoci)) or np.any(nfoci < 0):
        raise PredictiveCutoffError("predictive cutoffs need non-negative focus counts")
    if nexp > MAX_EXPERIMENTS:
        raise PredictiveCutoffError(
            "predictive cutoffs are outside the models' training range: "
            f"{nexp} experiments exceed {MAX_EXPERIMENTS}"
        )
    if nsub.max() > MAX_SUBJECTS:
        raise PredictiveCutoffError(
            "predictive cutoffs are outside the models' training range: "
            f"an experiment has {nsub.max():.0f} subjects (more than {MAX_SUBJECTS})"
        )
    if nfoci.max() > MAX_FOCI:
        raise PredictiveCutoffError(
            "predictive cutoffs are outside the models' training range: "
            f"an experiment has {nfoci.max():.0f} foci (more than {MAX_FOCI})"
        )
    ratios = nfoci / nsub
    bands = (nsub > 20, (nsub > 15) & (nsub <= 20), (nsub > 10) & (nsub <= 15), nsub <= 10)

    def summary(x: np.ndarray) -> list[float]:
        return [
            np.sum(x), np.mean(x), np.median(x), np.std(x), np.max(x), np.min(x),
            _safe_stat(skew, x), _safe_stat(kurtosis, x),
        ]  # fmt: skip

    features = [
        nexp,
        *summary(nsub),
        *summary(nfoci),
        np.mean(ratios),
        np.std(ratios),
        np.max(ratios),
        np.min(ratios),
        np.sum(nfoci) / nexp,
        *(np.sum(nfoci[band]) for band in bands),
    ]
    return np.asarray(features, dtype=float).reshape(1, -1)


def predict_cutoffs(nexp: int, nsub, nfoci, include_tfce: bool = False) -> dict[str, float]:
    """Predicted FWE cutoffs of an ALE meta-analysis (NiMARE's ``predict_cutoffs``).

    Parameters
    ----------
    nexp : int
        Number of experiments.
    nsub : array_like
        (nexp,) subjects per experiment.
    nfoci : array_like
        (nexp,) foci per experiment.
    include_tfce : bool
        Also predict the TFCE cutoff.

    Returns
    -------
    dict
        ``{"vfwe": ALE value (float), "cfwe": cluster size in voxels (int, rounded)}`` and,
        with ``include_tfce``, ``"tfce"`` (float). Eager.

    Raises
    ------
    PredictiveCutoffError
        Inputs outside the models' training range (see :func:`feature_extraction`).
    ImportError
        xgboost is not installed (the ``predictive`` extra).
    """
    xgb = _load_xgboost()
    dmatrix = xgb.DMatrix(feature_extraction(nexp, nsub, nfoci))
    names = ["vfwe", "cfwe"] + (["tfce"] if include_tfce else [])
    out: dict[str, Any] = {}
    for name in names:
        value = float(np.ravel(_booster(name).predict(dmatrix))[0])
        out[name] = round(value) if name == "cfwe" else value
    return out


def supports_predictive(estimator: Any) -> bool:
    """Whether ``estimator`` (an instance or a class) is an ALE the models apply to."""
    from nimare_dask.meta.cbma.ale import ALE

    if isinstance(estimator, type):
        return issubclass(estimator, ALE)
    return isinstance(estimator, ALE)


def _counts(estimator) -> tuple[int, np.ndarray, np.ndarray]:
    """Experiments, subjects and foci per experiment of the studyset the ALE was fitted on
    (experiments without foci are left out, as NiMARE's coordinates table leaves them)."""
    inputs = getattr(estimator, "inputs_", None) or {}
    ss = inputs.get("studyset")
    if ss is None:
        raise RuntimeError(
            "FWECorrector(method='predictive') needs the studyset the ALE was fitted on; "
            "correct the result of fit()"
        )
    nfoci = np.asarray(ss.foci_counts(), dtype=float)
    nsub = np.asarray(ss.sample_sizes, dtype=float)
    keep = nfoci > 0
    nsub, nfoci = nsub[keep], nfoci[keep]
    if not np.all(np.isfinite(nsub)):
        missing = [str(i) for i in np.asarray(ss.ids)[keep][~np.isfinite(nsub)][:5]]
        raise PredictiveCutoffError(
            "ALE predictive cutoffs need a sample size for every experiment; missing for "
            f"{', '.join(missing)}"
        )
    return int(keep.sum()), nsub, nfoci


def correct_fwe_predictive(estimator, result: MetaResult) -> Correction:
    """Threshold an ALE result at predicted vFWE and cFWE cutoffs (NiMARE's maps).

    Only call this from a corrector: ``FWECorrector(method="predictive").transform(result)``.

    Parameters
    ----------
    estimator : ALE
        The fitted ALE (its studyset gives the numbers of experiments, subjects and foci).
    result : MetaResult
        Its result (maps ``stat``, ``p``, ``z``, ``logp``).

    Returns
    -------
    Correction
        Maps ``p/z/logp_level-voxel`` and ``p/z/logp_desc-size_level-cluster`` (float32,
        eager), the cutoffs as null distributions
        ``summary_stat_thresh_level-voxel_corr-fwe_method-predictive`` and
        ``summary_stat_thresh_desc-size_level-cluster_corr-fwe_method-predictive``, a table
        ``predictive`` with the cutoffs and the inputs of the prediction, and methods text.
    """
    import pandas as pd

    nexp, nsub, nfoci = _counts(estimator)
    cutoffs = predict_cutoffs(nexp, nsub, nfoci)
    vfwe, cfwe = float(cutoffs["vfwe"]), int(cutoffs["cfwe"])
    stat = np.asarray(result.get_map("stat", return_type="array"), dtype=np.float32)
    p = np.asarray(result.get_map("p", return_type="array"), dtype=np.float32)
    z = np.asarray(result.get_map("z", return_type="array"), dtype=np.float32)
    logp = np.asarray(result.get_map("logp", return_type="array"), dtype=np.float32)
    # float32 comparisons, as NiMARE's (NumPy 2 compares a float32 map with a Python float in
    # float32): the voxel cutoff and the cluster-forming threshold rounded to float32
    voxel_mask = stat >= np.float32(vfwe)
    thr = float(np.float32(estimator.summarystat_threshold(CLUSTER_FORMING_P)))
    clusters = label_clusters(stat, result.grid, thr)
    big = np.concatenate([[False], clusters.sizes >= cfwe])
    cluster_mask = big[clusters.labels]

    def masked(values: np.ndarray, mask: np.ndarray, fill: float) -> np.ndarray:
        return np.where(mask, values, np.float32(fill)).astype(np.float32)

    maps = {
        "p_level-voxel": masked(p, voxel_mask, 1.0),
        "z_level-voxel": masked(z, voxel_mask, 0.0),
        "logp_level-voxel": masked(logp, voxel_mask, 0.0),
        "p_desc-size_level-cluster": masked(p, cluster_mask, 1.0),
        "z_desc-size_level-cluster": masked(z, cluster_mask, 0.0),
        "logp_desc-size_level-cluster": masked(logp, cluster_mask, 0.0),
    }
    nulls = {NULL_KEYS["vfwe"]: vfwe, NULL_KEYS["cfwe"]: float(cfwe)}
    if isinstance(getattr(estimator, "null_distributions_", None), dict):
        estimator.null_distributions_.update(nulls)
    table = pd.DataFrame(
        [
            {
                "vfwe_cutoff": vfwe,
                "cfwe_cutoff_voxels": cfwe,
                "cluster_forming_p": CLUSTER_FORMING_P,
                "cluster_forming_threshold": thr,
                "n_experiments": nexp,
                "n_subjects": float(nsub.sum()),
                "n_foci": int(nfoci.sum()),
            }
        ]
    )
    text = (
        "Family-wise error correction used thresholds predicted, not simulated: no Monte "
        "Carlo null distribution was computed. The voxel-level FWE threshold (ALE >= "
        f"{vfwe:.5g}) and the cluster-level FWE cluster-size threshold ({cfwe} voxels, for "
        "clusters of 6-connected voxels with uncorrected p < 0.001) were predicted from the "
        "numbers of experiments, subjects and foci by the XGBoost regressors of "
        "\\citet{frahm2025predictive}, trained on simulated ALE datasets of 10 to 150 "
        "experiments and distributed with NiMARE. Corrected maps keep the uncorrected z "
        "values of the voxels that survive and are 0 elsewhere."
    )
    return Correction(
        maps=maps, tables={"predictive": table}, description=text, null_distributions=nulls
    )
