"""Rebuild the estimator of a saved result, and refit it on the result's stored inputs.

A result written by :meth:`~nimare_dask.results.MetaResult.to_zarr` records its estimator as
``{"class": name, "params": get_params()}`` (JSON, never a pickle) and, since inputs are kept,
the studyset(s) it was fitted on. :func:`estimator_from_info` makes the estimator again from
the record (classes from :data:`ESTIMATORS` only); :func:`refit_estimator` fits it on the
stored inputs, so that what needs the fitted null model (a Monte Carlo FWE correction of the
reopened result, a refit-based Jackknife) works as on the live result. Used by
:meth:`Corrector.transform <nimare_dask.correct.Corrector.transform>` and by
``nimare-dask jackknife``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from nimare_dask.kernels import ALEKernel, KDAKernel, MKDAKernel
from nimare_dask.meta.base import PairwiseCBMAEstimator
from nimare_dask.meta.cbma import ALE, KDA, SCALE, ALESubtraction, MKDAChi2, MKDADensity
from nimare_dask.meta.cbma.weights import StudyWeights
from nimare_dask.meta.ibma import (
    DerSimonianLaird,
    Fishers,
    FixedEffectsHedges,
    Hedges,
    PermutedOLS,
    SampleSizeBasedLikelihood,
    Stouffers,
    VarianceBasedLikelihood,
    WeightedLeastSquares,
)
from nimare_dask.meta.ibma.base import IBMAEstimator

__all__ = [
    "ESTIMATORS",
    "KERNELS",
    "MissingInputsError",
    "estimator_class",
    "estimator_from_info",
    "refit_estimator",
]

#: The estimator classes a saved result may name.
ESTIMATORS: dict[str, type] = {
    cls.__name__: cls
    for cls in (
        ALE,
        ALESubtraction,
        SCALE,
        MKDADensity,
        KDA,
        MKDAChi2,
        DerSimonianLaird,
        Fishers,
        FixedEffectsHedges,
        Hedges,
        PermutedOLS,
        SampleSizeBasedLikelihood,
        Stouffers,
        VarianceBasedLikelihood,
        WeightedLeastSquares,
    )
}
#: The kernel classes a saved estimator's ``kernel`` may name.
KERNELS: dict[str, type] = {cls.__name__: cls for cls in (ALEKernel, MKDAKernel, KDAKernel)}

#: Maps a refit must reproduce (the first one the result has): the statistic, independent of
#: random nulls and of inference masks.
_CHECK_MAPS = ("stat", "stat_desc-group1MinusGroup2", "chi2_desc-uniformity", "t", "est", "z")


class MissingInputsError(ValueError):
    """A saved result's estimator cannot be refitted: its inputs are not stored with it."""


def estimator_class(info: dict | None) -> type | None:
    """The estimator class a result's ``estimator_info`` names (None if none or unknown)."""
    if not isinstance(info, dict):
        return None
    return ESTIMATORS.get(str(info.get("class")))


def estimator_from_info(info: dict | None, *, mask: Any = None):
    """The (unfitted) estimator a saved result records.

    Parameters
    ----------
    info : dict
        ``result.estimator_info``: ``{"class": name, "params": {...}}``.
    mask : Grid, image or path, optional
        Analysis mask of the new estimator (pass the result's grid). A saved ``mask`` is not
        used: only its text survives in the record.

    Returns
    -------
    estimator
        A new instance with the recorded parameters (``checkpoint`` is not restored).

    Raises
    ------
    ValueError
        When the record names no known estimator or kernel.
    """
    cls = estimator_class(info)
    if cls is None:
        raise ValueError(
            "the saved result does not record a known estimator (one of "
            f"{', '.join(sorted(ESTIMATORS))}): {info!r}"
        )
    params = dict(info.get("params") or {})
    kernel = params.pop("kernel", None)
    params = {k: v for k, v in params.items() if not k.startswith("kernel__")}
    if isinstance(kernel, dict):
        kcls = KERNELS.get(str(kernel.get("class")))
        if kcls is None:
            raise ValueError(
                f"the saved {cls.__name__} uses kernel {kernel.get('class')!r}, which is not one "
                f"of {', '.join(sorted(KERNELS))}"
            )
        params["kernel"] = kcls(**(kernel.get("params") or {}))
    names = set(cls._param_names())
    kwargs = {k: v for k, v in params.items() if k in names}
    if issubclass(cls, IBMAEstimator):  # nilearn resampling keywords travel as resample__<name>
        kwargs.update((k, v) for k, v in params.items() if k.startswith("resample__"))
    if "mask" in names:
        kwargs["mask"] = mask
    if "checkpoint" in names:
        kwargs["checkpoint"] = None
    if cls is SCALE and "xyz" in kwargs:
        kwargs["xyz"] = np.asarray(kwargs["xyz"], dtype=np.float64).reshape(-1, 3)
    weighting = kwargs.get("weighting")
    if isinstance(weighting, list):
        kwargs["weighting"] = np.asarray(weighting, dtype=np.float64)
    elif isinstance(weighting, dict) and set(weighting) == {"class", "params"}:
        if weighting["class"] != "StudyWeights":  # a StudyWeights object's record
            raise ValueError(f"the saved weighting names an unknown class {weighting['class']!r}")
        kwargs["weighting"] = StudyWeights(**weighting["params"])
    return cls(**kwargs)


def _needed_inputs(est) -> tuple[str, ...]:
    if isinstance(est, PairwiseCBMAEstimator):
        return ("studyset1", "studyset2")
    return ("studyset",)


def refit_estimator(result, *, why: str = "this operation"):
    """Rebuild a reopened result's estimator and fit it on the result's inputs.

    Parameters
    ----------
    result : MetaResult
        A result whose estimator object is gone (e.g. from
        :func:`~nimare_dask.results.open_result`); its ``estimator_info`` and inputs
        (:meth:`~nimare_dask.results.MetaResult.get_inputs`: stored with it, or given with
        ``set_inputs``) are used.
    why : str
        What needs the estimator (for error messages), e.g.
        ``"FWECorrector(method='montecarlo')"``.

    Returns
    -------
    estimator
        Fitted on the inputs; its statistic map was checked against the result's.

    Raises
    ------
    MissingInputsError
        The inputs are neither stored with the result nor given (the message says how to give
        them).
    ValueError
        The record names no known estimator, or the refit does not reproduce the result.
    """
    est = estimator_from_info(result.estimator_info, mask=result.grid)
    name = type(est).__name__
    inputs = result.get_inputs()
    needed = _needed_inputs(est)
    missing = [n for n in needed if n not in inputs]
    if missing:
        where = getattr(result, "location", None)
        given = ", ".join(f"{n}=<the Studyset it was fitted on>" for n in needed)
        raise MissingInputsError(
            f"{why} needs the {name} estimator fitted on the result's input studyset(s), but "
            f"the result{f' at {where}' if where else ''} does not keep "
            f"{' and '.join(repr(n) for n in missing)} (results written before inputs were "
            "stored, or with to_zarr(..., inputs=False), only record the estimator's class and "
            f"parameters). Provide them with result.set_inputs({given}) and try again, or "
            "save the live result again with result.to_zarr(...), which stores them."
        )
    if isinstance(est, PairwiseCBMAEstimator):
        kwargs = {}
        if isinstance(est, ALESubtraction):
            kwargs = {"inference_map1": inputs.get("mask1"), "inference_map2": inputs.get("mask2")}
        refit = est.fit(inputs["studyset1"], inputs["studyset2"], **kwargs)
    else:
        refit = est.fit(inputs["studyset"])
    _check_refit(result, refit, name)
    return est


def _check_refit(result, refit, name: str) -> None:
    for map_name in _CHECK_MAPS:
        if map_name in result.maps_names and map_name in refit.maps_names:
            saved = np.asarray(result.get_map(map_name, return_type="array"), dtype=np.float64)
            again = np.asarray(refit.get_map(map_name, return_type="array"), dtype=np.float64)
            scale = float(np.nanmax(np.abs(saved), initial=0.0)) or 1.0
            if saved.shape != again.shape or not np.allclose(
                again, saved, rtol=1e-5, atol=1e-6 * scale, equal_nan=True
            ):
                raise ValueError(
                    f"refitting {name} on the result's inputs does not reproduce its "
                    f"{map_name!r} map: the inputs or the estimator's parameters differ from "
                    "those of the fit that made the result"
                )
            return
