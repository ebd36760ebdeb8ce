"""Diagnostics of meta-analysis results: which analyses drive each cluster.

``Jackknife`` (leave-one-out contributions) and ``FocusCounter`` (foci per cluster), as in
NiMARE 0.22.1; ``clusters_table`` makes the nilearn-style cluster table they use.
"""

from nimare_dask.diagnostics.clusters import ClusterTable, clusters_table
from nimare_dask.diagnostics.focuscounter import FocusCounter
from nimare_dask.diagnostics.jackknife import Jackknife

__all__ = ["ClusterTable", "FocusCounter", "Jackknife", "clusters_table"]
