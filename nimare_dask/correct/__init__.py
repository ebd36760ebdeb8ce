"""Multiple-comparison correction of meta-analysis results (FWE and FDR).

``FWECorrector(method="bonferroni" | "montecarlo")`` and ``FDRCorrector(method="indep" |
"negcorr")``; ``transform(result)`` returns a new result with ``_corr-..._method-...`` maps.
"""

from nimare_dask.correct.base import Corrector
from nimare_dask.correct.fdr import FDRCorrector
from nimare_dask.correct.fwe import FWECorrector

__all__ = ["Corrector", "FDRCorrector", "FWECorrector"]
