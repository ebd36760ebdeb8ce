"""Diagnostics of meta-analysis results: which analyses drive each cluster, and how stable.

``Jackknife`` (leave-one-out contributions), ``FocusCounter`` (foci per cluster),
``ResampledStability`` (how often each voxel survives when the studyset is resampled) and
``FocusFilter`` (drop foci outside a mask), as in NiMARE 0.22.1; ``clusters_table`` makes the
nilearn-style cluster table they use. ``Diagnostics`` is the base class of ``Jackknife`` and
``FocusCounter`` (NiMARE's ``diagnostics.Diagnostics``).
"""

from nimare_dask.diagnostics.base import Diagnostics
from nimare_dask.diagnostics.clusters import ClusterTable, clusters_table
from nimare_dask.diagnostics.focuscounter import FocusCounter
from nimare_dask.diagnostics.focusfilter import FocusFilter
from nimare_dask.diagnostics.jackknife import Jackknife
from nimare_dask.diagnostics.stability import ResampledStability

__all__ = [
    "ClusterTable",
    "Diagnostics",
    "FocusCounter",
    "FocusFilter",
    "Jackknife",
    "ResampledStability",
    "clusters_table",
]
