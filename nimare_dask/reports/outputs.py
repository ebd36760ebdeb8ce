"""Everything a result produces, on disk: maps, tables, cluster tables, methods, report."""

from __future__ import annotations

from pathlib import Path

from nimare_dask.reports.clusters import cluster_table
from nimare_dask.reports.html import report_maps, write_report
from nimare_dask.reports.methods import write_methods
from nimare_dask.results import MetaResult
from nimare_dask.studyset import Studyset

__all__ = ["save_outputs"]


#: How publication tables print floats (p, z, mm, mm3).
TABLE_FLOAT_FORMAT = "%.6g"


def save_outputs(
    result: MetaResult,
    output_dir: str | Path,
    prefix: str = "",
    *,
    studyset: Studyset | None = None,
    studyset2: Studyset | None = None,
    report: bool = True,
) -> dict:
    """Write every output of a result and say where each went.

    Files (``<p>`` is ``prefix`` followed by ``_`` when not empty):

    * ``<p><map>.nii.gz`` for every map (NIfTI on the result's grid; NaN written as 0);
    * ``<p><table>.tsv`` for every table of the result (diagnostics tables included);
    * ``<p><map>_tab-clusters.tsv``: the publication cluster table of every corrected z map
      (of the uncorrected z maps when nothing is corrected), see
      :func:`~nimare_dask.reports.clusters.cluster_table`;
    * ``<p>boilerplate.txt`` and ``<p>references.bib``: methods text and its BibTeX;
    * ``<p>report.html``: the self-contained HTML report (``report=True``).

    Parameters
    ----------
    result : MetaResult
        The result (lazy maps are computed once).
    output_dir : str or Path
        Folder (created if needed).
    prefix : str
        File-name prefix.
    studyset, studyset2 : Studyset, optional
        The inputs (methods text counts, coordinates figure).
    report : bool
        Write the HTML report.

    Returns
    -------
    dict
        ``{"maps": [paths], "tables": [paths], "cluster_tables": [paths], "boilerplate": path,
        "references": path, "report": path or None}`` (paths as strings).
    """
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    if result.is_lazy:
        result = result.copy().compute()
    start = prefix if not prefix or prefix.endswith("_") else prefix + "_"
    maps = result.save_maps(out, prefix=start, prefix_sep="_")
    tables = result.save_tables(out, prefix=start, prefix_sep="_") if result.tables else []
    clusters = {name: cluster_table(result, name) for name in report_maps(result)["corrected"]}
    cluster_paths = []
    for name, table in clusters.items():
        path = out / f"{start}{name}_tab-clusters.tsv"
        # 6 significant digits: the maps are float32 (~7), so more digits would only print the
        # float32 -> decimal conversion (0.0001 as 9.999999747378752e-05)
        table.to_csv(path, sep="\t", index=False, float_format=TABLE_FLOAT_FORMAT)
        cluster_paths.append(path)
    boiler, bib = write_methods(result, out, start, studyset=studyset, studyset2=studyset2)
    report_path = None
    if report:
        report_path = write_report(
            result,
            out,
            studyset=studyset,
            studyset2=studyset2,
            filename=f"{start}report.html",
            cluster_tables=clusters,
        )
    return {
        "maps": [str(p) for p in maps],
        "tables": [str(p) for p in tables],
        "cluster_tables": [str(p) for p in cluster_paths],
        "boilerplate": str(boiler),
        "references": str(bib),
        "report": str(report_path) if report_path else None,
    }
