"""Reports: cluster tables, anatomical labels, methods text, figures, HTML report, outputs.

The only layer that plots (:mod:`nimare_dask.reports.figures`).
"""

from nimare_dask.reports.atlas import Atlas, load_atlas
from nimare_dask.reports.clusters import cluster_table, cluster_table_from_arrays
from nimare_dask.reports.html import render_report, write_report
from nimare_dask.reports.methods import methods_references, methods_text, write_methods
from nimare_dask.reports.outputs import save_outputs

__all__ = [
    "Atlas",
    "cluster_table",
    "cluster_table_from_arrays",
    "load_atlas",
    "methods_references",
    "methods_text",
    "render_report",
    "save_outputs",
    "write_methods",
    "write_report",
]
