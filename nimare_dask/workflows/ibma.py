"""NiMARE 0.22.1's ``IBMAWorkflow``: image-based meta-analysis, correction, diagnostics.

The IBMA estimators live in :mod:`nimare_dask.meta.ibma`; they are imported when the workflow
is fitted (``IBMAWorkflow(...)`` itself stores its arguments only), so this module imports
whatever state that package is in.
"""

from __future__ import annotations

from pathlib import Path

from nimare_dask.correct import FDRCorrector
from nimare_dask.diagnostics import Jackknife
from nimare_dask.results import MetaResult
from nimare_dask.studyset import Studyset
from nimare_dask.workflows.base import Workflow, check_drop_invalid

__all__ = ["IBMAWorkflow"]

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
    Missing input images (z, p, beta, varcope) are derived first with
    ``nimare_dask.transforms.ImageTransformer``, as NiMARE does.
    """

    _corr_options = ("montecarlo", "fdr", "bonferroni")
    _diag_options = ("jackknife",)
    _mcc_method = "indep"
    _corr_default = FDRCorrector
    _diag_default = Jackknife
    _checks_pairwise = False

    def __init__(
        self,
        estimator=None,
        corrector=None,
        diagnostics=None,
        voxel_thresh: float | None = 1.65,
        cluster_threshold: int | None = 10,
        output_dir: str | Path | None = None,
        n_cores: int = 1,
    ):
        self._given = (estimator, corrector, diagnostics)
        self.voxel_thresh = voxel_thresh
        self.cluster_threshold = cluster_threshold
        self.output_dir = output_dir
        self.n_cores = n_cores
        self.estimator = estimator
        self.corrector = corrector
        self.diagnostics = diagnostics

    def _resolve(self) -> None:
        from nimare_dask.meta import ibma

        base = getattr(ibma, "IBMAEstimator", None)
        if base is None:
            raise ImportError("nimare_dask.meta.ibma does not define IBMAEstimator yet")
        estimator, corrector, diagnostics = self._given
        self._estm_base = base
        self._estm_options = _OPTIONS
        self._estm_default = "stouffers"
        Workflow.__init__(
            self,
            estimator,
            corrector,
            diagnostics,
            self.voxel_thresh,
            self.cluster_threshold,
            self.output_dir,
            self.n_cores,
        )

    def fit(self, dataset: Studyset, drop_invalid: bool = True) -> MetaResult:
        """Derive missing images, fit, correct and run the diagnostics (and write outputs).

        Returns
        -------
        MetaResult
            Eager.
        """
        self._resolve()
        if not drop_invalid:
            check_drop_invalid(drop_invalid)  # IBMA: analyses without images are dropped
        fields = getattr(self.estimator, "_image_input_fields", None)
        if callable(fields):
            from nimare_dask.transforms import ImageTransformer

            dataset = ImageTransformer(target=list(fields().values())).transform(dataset)
        result = self.estimator.fit(dataset)
        return self._transform(result, {"studyset": dataset})
