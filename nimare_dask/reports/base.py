"""NiMARE 0.22.1's ``nimare.reports.base``: ``run_reports`` and ``Report``.

Both write our self-contained HTML report (:func:`nimare_dask.reports.html.write_report`):
maps, cluster tables with anatomical labels, diagnostics tables, methods text and references.
NiMARE's niworkflows-style figure set (its ``default.yml`` sections) is not reproduced; the
file name and the call are NiMARE's.
"""

from __future__ import annotations

from pathlib import Path

from nimare_dask.reports.html import write_report
from nimare_dask.results import MetaResult

__all__ = ["Report", "run_reports"]


def _inputs(result: MetaResult) -> dict:
    try:
        known = result.get_inputs()
    except (TypeError, ValueError, KeyError, AttributeError):
        return {}
    if "studyset1" in known:
        return {"studyset": known.get("studyset1"), "studyset2": known.get("studyset2")}
    return {"studyset": known.get("studyset")}


class Report:
    """NiMARE's ``Report(results, out_dir, out_filename="report.html")``.

    Parameters
    ----------
    results : MetaResult
    out_dir : str or Path
        Folder (created if needed).
    out_filename : str
        File name of the report.
    """

    def __init__(self, results: MetaResult, out_dir: str | Path, out_filename: str = "report.html"):
        if not isinstance(results, MetaResult):
            raise TypeError(f"Report needs a nimare_dask MetaResult, got {type(results).__name__}")
        self.results = results
        self.out_dir = Path(out_dir)
        self.out_filename = out_filename

    def generate_report(self) -> Path:
        """Write the report.

        Returns
        -------
        Path
            The HTML file.
        """
        return write_report(
            self.results, self.out_dir, filename=self.out_filename, **_inputs(self.results)
        )


def run_reports(results: MetaResult, out_dir: str | Path) -> Path:
    """Write ``<out_dir>/report.html`` for a result (NiMARE's ``run_reports``).

    The inputs the result was fitted on (kept by the result, see
    :meth:`~nimare_dask.results.MetaResult.get_inputs`) add the coordinates figure.

    Returns
    -------
    Path
        The HTML file.
    """
    return Report(results, out_dir).generate_report()
