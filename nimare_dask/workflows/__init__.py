"""End-to-end workflows: NiMARE 0.22.1's classes and functions, and ours (what the CLI runs).

NiMARE's names: :class:`CBMAWorkflow`, :class:`PairwiseCBMAWorkflow`, :class:`ContrastWorkflow`,
:class:`IBMAWorkflow`, :func:`macm_workflow`, :func:`conjunction_analysis`. Ours:
:func:`ale_workflow`, :func:`ale_contrast_workflow`, :func:`macm` (many seeds in one graph).
"""

from nimare_dask.workflows.base import Workflow
from nimare_dask.workflows.cbma import (
    CBMAWorkflow,
    ContrastWorkflow,
    PairwiseCBMAWorkflow,
    ale_contrast_workflow,
    ale_workflow,
)
from nimare_dask.workflows.ibma import IBMAWorkflow
from nimare_dask.workflows.jale import probabilistic_ale, run_jale_analyses
from nimare_dask.workflows.macm import amygdala_roi, macm, macm_workflow, select_studies
from nimare_dask.workflows.misc import conjunction_analysis

__all__ = [
    "CBMAWorkflow",
    "ContrastWorkflow",
    "IBMAWorkflow",
    "PairwiseCBMAWorkflow",
    "Workflow",
    "ale_contrast_workflow",
    "ale_workflow",
    "amygdala_roi",
    "conjunction_analysis",
    "macm",
    "macm_workflow",
    "probabilistic_ale",
    "run_jale_analyses",
    "select_studies",
]
