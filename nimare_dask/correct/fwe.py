"""Family-wise error correction: Bonferroni (generic), Monte Carlo (the estimator's null) and
predictive cutoffs (ALE; :mod:`nimare_dask.meta.cbma.predictive`)."""

from __future__ import annotations

from typing import Any

import numpy as np

from nimare_dask.correct.base import Corrector
from nimare_dask.results import Correction, MetaResult
from nimare_dask.stats.multiple import neglnp_bonferroni

__all__ = ["FWECorrector"]

_BONFERRONI_TEXT = (
    "Family-wise error rate correction was performed with the Bonferroni procedure "
    "\\citep{bonferroni1936teoria,shaffer1995multiple}."
)


class FWECorrector(Corrector):
    """Family-wise error rate correction of a meta-analysis result.

    NiMARE 0.22.1's parameters with NiMARE's meaning: ``None`` leaves a parameter unset, so the
    correction method uses its own default.

    Parameters
    ----------
    method : {"bonferroni", "montecarlo", "predictive"}
        ``"bonferroni"`` works on any result with a ``p`` map. ``"montecarlo"`` uses the
        estimator's null model (``estimator.correct_fwe_montecarlo``): voxel-level FWE from the
        maximum statistic and cluster-level FWE from the maximum cluster size and mass.
        ``"predictive"`` (ALE only; needs the ``predictive`` extra, i.e. xgboost) thresholds
        the ALE map at voxel- and cluster-level cutoffs *predicted* by NiMARE's XGBoost models
        from the numbers of experiments, subjects and foci
        (:func:`~nimare_dask.meta.cbma.predictive.predict_cutoffs`), not simulated.
    n_iters : int, optional
        Monte Carlo iterations (None: the estimator's default, 5000 for CBMA as in NiMARE).
        Only ``"montecarlo"`` takes it; with another method a value raises ``TypeError``
        (NiMARE drops it silently).
    n_cores : int, optional
        Threads of the local scheduler when no Dask scheduler is configured (None: the
        estimator's setting; NiMARE's default is 1). Without effect for ``"bonferroni"`` and
        ``"predictive"``, which run no parallel work.
    voxel_thresh : float, optional
        Monte Carlo only: uncorrected cluster-forming p threshold (None: the estimator's
        default, 0.001).
    vfwe_only : bool, optional
        Monte Carlo only: skip cluster-level inference (None: the estimator's default).
    random_state : int, optional
        Monte Carlo only: seed of the iterations (None: the estimator's ``random_state``).
    **kwargs
        Forwarded to the estimator's correction method (NiMARE's behaviour); keywords set to
        None are dropped, and one the method does not accept raises ``TypeError`` at
        :meth:`transform` (as does any set keyword with ``"bonferroni"``).

    Notes
    -----
    Corrected maps are named ``<map>_corr-FWE_method-<method>``. Bonferroni corrects every
    uncorrected ``p``/``p_*`` map and derives ``z`` (two-tailed, signed like the uncorrected
    z) and ``logp`` maps where the result has them. NaN voxels are not counted as tests.
    """

    _kind = "fwe"
    _label = "FWE"
    _methods = ("bonferroni", "montecarlo", "predictive")
    _generic = {"bonferroni": "_bonferroni"}
    _defaults = {
        "n_iters": None,
        "voxel_thresh": None,
        "vfwe_only": None,
        "random_state": None,
        "n_cores": None,
    }

    def __init__(
        self,
        method: str = "bonferroni",
        n_iters: int | None = None,
        n_cores: int | None = None,
        voxel_thresh: float | None = None,
        vfwe_only: bool | None = None,
        random_state: int | None = None,
        **kwargs: Any,
    ) -> None:
        if n_iters is not None and (
            isinstance(n_iters, bool | np.bool_)
            or not isinstance(n_iters, int | np.integer)
            or n_iters <= 0
        ):
            raise ValueError(f"n_iters must be a positive integer or None, got {n_iters!r}")
        if voxel_thresh is not None and (
            isinstance(voxel_thresh, bool) or not 0 < float(voxel_thresh) < 1
        ):
            raise ValueError(
                f"voxel_thresh must be a p-value in (0, 1) or None, got {voxel_thresh!r}"
            )
        if random_state is not None and (
            isinstance(random_state, bool) or not isinstance(random_state, int | np.integer)
        ):
            raise TypeError(f"random_state must be an int or None, got {type(random_state)}")
        if n_cores is not None and (
            isinstance(n_cores, bool) or not isinstance(n_cores, int | np.integer)
        ):
            raise TypeError(f"n_cores must be an int or None, got {n_cores!r}")
        named = {
            "n_iters": n_iters,
            "voxel_thresh": voxel_thresh,
            "vfwe_only": vfwe_only,
            "random_state": random_state,
            "n_cores": n_cores,
        }
        super().__init__(method, named, kwargs)

    @classmethod
    def _own_methods(cls, estimator: Any) -> list[str]:
        from nimare_dask.meta.cbma.predictive import supports_predictive

        return ["predictive"] if supports_predictive(estimator) else []

    def _own_method(self, result: MetaResult):
        if self.method != "predictive" or "predictive" not in self._own_methods(result.estimator):
            return None
        from functools import partial

        from nimare_dask.meta.cbma.predictive import correct_fwe_predictive

        return partial(correct_fwe_predictive, result.estimator)

    def _missing_method(self, result: MetaResult) -> Exception:
        if self.method == "montecarlo":
            if result.estimator is None:
                recorded = (result.estimator_info or {}).get("class")
                what = (
                    f"its recorded estimator {recorded!r} is not one of nimare_dask's "
                    "estimators with a Monte Carlo null"
                    if recorded
                    else "it records no estimator"
                )
                return NotImplementedError(
                    "FWECorrector(method='montecarlo') needs the estimator's null model to run "
                    "on the Monte Carlo engine, but this result has no estimator object and "
                    f"{what}; correct the result that the estimator's fit() returned"
                )
            est = type(result.estimator).__name__
            return NotImplementedError(
                "FWECorrector(method='montecarlo') needs the estimator's null model to run on "
                f"the Monte Carlo engine, but "
                f"estimator {est} has no correct_fwe_montecarlo method (Monte Carlo FWE is "
                "defined for ALE, MKDADensity, KDA, SCALE, ALESubtraction, MKDAChi2 and PermutedOLS); use "
                "method='bonferroni'"
            )
        if self.method == "predictive":
            est = type(result.estimator).__name__ if result.estimator is not None else "None"
            return NotImplementedError(
                "FWECorrector(method='predictive') applies cutoffs predicted by NiMARE's ALE "
                f"models, which exist for ALE only, not for estimator {est}; use "
                "method='montecarlo' or 'bonferroni'"
            )
        return super()._missing_method(result)

    def _bonferroni(self, result: MetaResult) -> Correction:
        maps = self._correct_p_maps(result, neglnp_bonferroni)
        return Correction(maps=maps, description=_BONFERRONI_TEXT)
