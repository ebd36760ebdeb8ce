"""NiMARE 0.22.1's ``IBMAWorkflow``: image-based meta-analysis, correction, diagnostics.

The IBMA estimators live in :mod:`nimare_dask.meta.ibma`. ``IBMAWorkflow(...)`` resolves the
estimator, corrector and diagnostics as NiMARE does. ``fit`` derives missing
input images, fits, corrects (default FDR, ``indep``) and runs the diagnostics (default
Jackknife, ``target_threshold=voxel_thresh``) on every corrected ``z`` map, as NiMARE 0.22.1;
with ``output_dir`` it writes NiMARE's files (maps, tables, ``boilerplate.txt``,
``references.bib``).
"""

from __future__ import annotations

import logging

from nimare_dask.correct import FDRCorrector
from nimare_dask.diagnostics import Jackknife
from nimare_dask.meta.ibma import IBMAEstimator
from nimare_dask.results import MetaResult
from nimare_dask.studyset import Studyset
from nimare_dask.workflows.base import Workflow

__all__ = ["IBMAWorkflow"]

LGR = logging.getLogger(__name__)

_OPTIONS = (
    "stouffers",
    "fishers",
    "permutedols",
    "wleastsquares",
    "dersimonianlaird",
    "hedges",
    "samplesizebl",
    "variancebl",
)


class IBMAWorkflow(Workflow):
    """Image-based meta-analysis with correction and diagnostics (NiMARE's ``IBMAWorkflow``).

    Parameters
    ----------
    estimator : IBMA estimator, class or str, optional
        One of ``"stouffers"``, ``"fishers"``, ``"permutedols"``, ``"wleastsquares"``,
        ``"dersimonianlaird"``, ``"hedges"``, ``"samplesizebl"``, ``"variancebl"``; default
        Stouffers.
    corrector : Corrector, class or {"montecarlo", "fdr", "bonferroni"}, optional
        Default: ``FDRCorrector(method="indep")``.
    diagnostics : "jackknife", Jackknife or a list, optional
        Default: Jackknife.
    voxel_thresh, cluster_threshold, output_dir, n_cores
        As :class:`~nimare_dask.workflows.base.Workflow`.

    Notes
    -----
    Missing input images (the estimator's: z; beta and varcope; t) are derived first with
    :class:`nimare_dask.transforms.ImageTransformer`, as NiMARE does. The estimator, corrector
    and diagnostics are resolved in the constructor (an unknown string raises there). With
    ``corrector="montecarlo"`` (PermutedOLS) NiMARE runs the diagnostics only on ``_desc-mass``
    maps, which PermutedOLS does not make: no diagnostics run, as in NiMARE.
    """

    _estm_base = IBMAEstimator
    _estm_options = _OPTIONS
    _estm_default = "stouffers"
    _corr_options = ("montecarlo", "fdr", "bonferroni")
    _diag_options = ("jackknife",)
    _mcc_method = "indep"
    _corr_default = FDRCorrector
    _diag_default = Jackknife
    _checks_pairwise = False

    def fit(self, dataset: Studyset, drop_invalid: bool = True) -> MetaResult:
        """Derive missing images, fit, correct and run the diagnostics (and write outputs).

        Parameters
        ----------
        dataset : Studyset or path
            Analyses with images (and sample sizes where the estimator needs them).
        drop_invalid : bool, default=True
            Passed to the estimator: drop analyses lacking a required image or sample size
            (False: raise instead).

        Returns
        -------
        MetaResult
            Eager; the corrected maps, the diagnostics' tables and label maps.
        """
        from nimare_dask.transforms import ImageTransformer

        # NiMARE: ImageTransformer(target=estimator._image_input_fields().values())
        targets = list(getattr(self.estimator, "_image_types", ()))
        if targets:
            dataset = ImageTransformer(target=targets).transform(dataset)
        LGR.info("Performing meta-analysis...")
        result = self.estimator.fit(dataset, drop_invalid=drop_invalid)
        # the diagnostics refit on the analyses the estimator used (its inputs_, as NiMARE)
        return self._transform(result, {"studyset": self.estimator.inputs_["studyset"]})
