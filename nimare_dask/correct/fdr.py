"""False discovery rate correction: Benjamini-Hochberg and Benjamini-Yekutieli."""

from __future__ import annotations

from typing import Any

from nimare_dask.correct.base import Corrector
from nimare_dask.results import Correction, MetaResult
from nimare_dask.stats.multiple import neglnp_fdr

__all__ = ["FDRCorrector"]

_TEXT = {
    "indep": (
        "False discovery rate correction was performed with the Benjamini-Hochberg procedure "
        "\\citep{benjamini1995controlling}."
    ),
    "negcorr": (
        "False discovery rate correction was performed with the Benjamini-Yekutieli procedure "
        "\\citep{benjamini2001control}."
    ),
}


class FDRCorrector(Corrector):
    """False discovery rate correction of a meta-analysis result.

    Parameters
    ----------
    method : {"indep", "negcorr"}
        ``"indep"``: Benjamini-Hochberg (independent or positively dependent tests);
        ``"negcorr"``: Benjamini-Yekutieli (any dependence). An estimator method
        ``correct_fdr_<method>`` takes precedence when the estimator has one.
    alpha : float, optional
        The FDR level the maps are meant to be thresholded at. The generic maps are adjusted
        p-values (q-values), which ``alpha`` does not change; it is forwarded to an estimator's
        own FDR method, and one without an ``alpha`` parameter raises ``TypeError`` (NiMARE's
        rule). None leaves it unset (the estimator method's default).
    **kwargs
        Forwarded to the estimator's correction method (``TypeError`` if not accepted).

    Notes
    -----
    Corrected maps are named ``<map>_corr-FDR_method-<method>``; p, z and logp as for
    :class:`~nimare_dask.correct.FWECorrector` (Bonferroni). NaN voxels are not counted as
    tests, as in NiMARE's corrector.
    """

    _kind = "fdr"
    _label = "FDR"
    _methods = ("indep", "negcorr")
    _generic = {"indep": "_indep", "negcorr": "_negcorr"}
    _defaults = {"alpha": 0.05}
    _generic_ok = ("alpha",)

    def __init__(self, method: str = "indep", alpha: float | None = 0.05, **kwargs: Any) -> None:
        if alpha is not None and (isinstance(alpha, bool) or not 0 < float(alpha) < 1):
            raise ValueError(f"alpha must be in (0, 1) or None, got {alpha!r}")
        super().__init__(method, {"alpha": alpha}, kwargs)

    def _indep(self, result: MetaResult) -> Correction:
        maps = self._correct_p_maps(result, lambda x: neglnp_fdr(x, method="bh"))
        return Correction(maps=maps, description=_TEXT["indep"])

    def _negcorr(self, result: MetaResult) -> Correction:
        maps = self._correct_p_maps(result, lambda x: neglnp_fdr(x, method="by"))
        return Correction(maps=maps, description=_TEXT["negcorr"])
