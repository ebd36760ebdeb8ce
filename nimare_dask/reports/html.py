"""A self-contained HTML report of a result (figures embedded as base64 PNG data URIs).

Sections: summary, methods text, coordinates on a glass brain (one colour per study), the
statistic map, every corrected map thresholded (cluster-level maps at one-sided p < 0.05, i.e.
z > 1.645), cluster tables, null distributions with their thresholds, diagnostics
(contribution heatmaps), references. The file needs no network and no JavaScript.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import re
from pathlib import Path

import numpy as np
import pandas as pd

from nimare_dask.reports import figures
from nimare_dask.reports.clusters import cluster_table, is_cluster_level, is_ibma, map_threshold
from nimare_dask.reports.methods import methods_references, methods_text, package_versions
from nimare_dask.results import MetaResult, parse_map_name
from nimare_dask.studyset import Studyset

__all__ = ["MAP_DATATYPES", "map_table", "render_report", "report_maps", "write_report"]

_CSS = """
body { font-family: -apple-system, 'Segoe UI', Helvetica, Arial, sans-serif; margin: 2em auto;
       max-width: 1200px; color: #222; line-height: 1.45; }
h1 { font-size: 1.6em; border-bottom: 2px solid #444; padding-bottom: .2em; }
h2 { font-size: 1.25em; margin-top: 1.8em; border-bottom: 1px solid #bbb; }
h3 { font-size: 1.02em; margin-bottom: .3em; font-family: monospace; }
table.data { border-collapse: collapse; font-size: .78em; margin: .5em 0 1.2em 0; }
table.data th, table.data td { border: 1px solid #ccc; padding: 2px 6px; text-align: right; }
table.data th { background: #f0f0f0; }
table.data td:nth-child(1) { text-align: left; }
figure { margin: .6em 0 1.2em 0; }
figure img { max-width: 100%; }
figcaption { font-size: .85em; color: #555; }
pre { background: #f7f7f7; padding: .8em; overflow-x: auto; font-size: .75em; }
.note { color: #666; font-size: .9em; }
.grid { display: flex; flex-wrap: wrap; gap: 1em; }
"""


def report_maps(result: MetaResult) -> dict[str, list[str]]:
    """The maps a report shows, by role.

    Parameters
    ----------
    result : MetaResult

    Returns
    -------
    dict
        ``statistic``: the main statistic map(s) (``stat``, a group difference, ``z`` of an
        association ...); ``corrected``: every corrected ``z`` map (else the uncorrected ``z``
        maps), which also get cluster tables.
    """
    names = result.maps_names
    statistic = [
        n
        for n in ("stat", "stat_desc-group1MinusGroup2", "z_desc-association", "est")
        if n in names
    ]
    if "z" in names and (not statistic or is_ibma(result)):
        statistic.append("z")
    # diagnostic maps (``..._diag-ResampledStability``: fractions of replicates) are not z maps
    corrected = [n for n in names if n.startswith("z_") and "_corr-" in n and "_diag-" not in n]
    if not corrected:
        corrected = [
            n for n in ("z", "z_desc-group1MinusGroup2", "z_desc-association") if n in names
        ]
    return {"statistic": statistic, "corrected": corrected}


#: What each map datatype holds (NiMARE's names), for the report's list of maps.
MAP_DATATYPES = {
    "z": "z statistic",
    "p": "p value",
    "logp": "-log10 p",
    "stat": "summary statistic (ALE, density, ...)",
    "est": "estimated (meta-analytic) effect",
    "se": "standard error of the estimated effect",
    "tau2": "between-study variance (tau^2)",
    "sigma2": "within-study variance (sigma^2)",
    "dof": "degrees of freedom",
    "t": "t statistic",
    "chi2": "chi-squared statistic",
    "prob": "probability",
    "label": "cluster labels (diagnostics)",
}


def map_table(result: MetaResult) -> pd.DataFrame:
    """One row per map: its name, what it holds, level, correction and threshold.

    Parameters
    ----------
    result : MetaResult

    Returns
    -------
    pandas.DataFrame
        Columns ``map``, ``holds``, ``level``, ``correction``, ``significance threshold``
        (empty where the map's scale has none, e.g. ``est``, ``tau2``, ``dof``).
    """
    rows = []
    for name in result.maps_names:
        try:
            parts = parse_map_name(name)
        except ValueError:  # label and diagnostic maps (``label_...``, ``..._diag-...``)
            parts = {"datatype": name.split("_", 1)[0], "corr": None, "method": None}
        holds = MAP_DATATYPES.get(parts["datatype"], parts["datatype"])
        if "_diag-" in name:
            holds = f"{holds} (diagnostic {name.split('_diag-', 1)[1].split('_')[0]})"
        corr = parts["corr"]
        correction = f"{corr} ({parts['method']})" if corr else ""
        thr = None if "_diag-" in name else map_threshold(result, name)
        if thr is None:
            threshold = ""
        elif parts["datatype"] in ("p", "logp"):
            threshold = f"p < {10**-thr:.3g}"
        else:
            threshold = f"|z| > {thr:.3f}"
        rows.append(
            {
                "map": name,
                "holds": holds,
                "level": "cluster" if is_cluster_level(name) else "voxel",
                "correction": correction,
                "significance threshold": threshold,
            }
        )
    return pd.DataFrame(rows)


def _img(png: bytes, alt: str, caption: str = "") -> str:
    data = base64.b64encode(png).decode("ascii")
    cap = f"<figcaption>{html.escape(caption)}</figcaption>" if caption else ""
    return (
        f'<figure><img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">{cap}</figure>'
    )


def _fmt_number(v: float) -> str:
    if np.isfinite(v) and float(v).is_integer() and abs(v) < 1e9:
        return f"{v:.0f}"
    return f"{v:.4g}"


def _table_html(table: pd.DataFrame, max_rows: int = 500) -> str:
    shown = table.head(max_rows).copy()
    for col in shown.columns:
        if isinstance(shown[col].dtype, pd.Int64Dtype):
            shown[col] = shown[col].astype("float64")  # NA shown as an empty cell
    text = shown.to_html(
        index=False,
        na_rep="",
        classes="data",
        border=0,
        float_format=_fmt_number,
    )
    if len(table) > max_rows:
        text += f'<p class="note">First {max_rows} of {len(table)} rows.</p>'
    return text


def _readable_citations(text: str) -> str:
    return re.sub(
        r"\\cite[a-z]*\{([^}]*)\}", lambda m: "[" + m.group(1).replace(",", ", ") + "]", text
    )


def render_report(
    result: MetaResult,
    *,
    studyset: Studyset | None = None,
    studyset2: Studyset | None = None,
    title: str | None = None,
    cluster_tables: dict[str, pd.DataFrame] | None = None,
) -> str:
    """The report as an HTML string (figures embedded).

    Parameters
    ----------
    result : MetaResult
        The (corrected, diagnosed) result; lazy maps are computed.
    studyset, studyset2 : Studyset, optional
        The inputs (coordinates figure, counts in the methods text).
    title : str, optional
        Page title (default: the estimator's name).
    cluster_tables : dict, optional
        ``{map name: table}`` from :func:`~nimare_dask.reports.clusters.cluster_table`
        (default: made here for every corrected map).

    Returns
    -------
    str
        A complete HTML document.
    """
    if result.is_lazy:
        result = result.copy().compute()
    est = (result.estimator_info or {}).get("class", "meta-analysis")
    cor = (result.corrector_info or {}).get("class")
    title = title or f"{est} meta-analysis report"
    roles = report_maps(result)
    if cluster_tables is None:
        cluster_tables = {n: cluster_table(result, n) for n in roles["corrected"]}
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
    ]
    versions = package_versions()
    summary = {
        "Estimator": est,
        "Corrector": cor or "none",
        "Diagnostics": ", ".join(
            d.get("class", "?") if isinstance(d, dict) else type(d).__name__
            for d in result.diagnostics
        )
        or "none",
        "Grid": f"{result.grid.name} ({result.grid.n_voxels} voxels)",
        "Maps": str(len(result.maps_names)),
        "Created": _dt.datetime.now().isoformat(timespec="seconds"),
        "nimare_dask": versions.get("nimare_dask", ""),
    }
    image_based = is_ibma(result)
    for i, ss in enumerate([s for s in (studyset, studyset2) if s is not None]):
        label = f"Group {i + 1}" if studyset2 is not None else "Input"
        what = "analyses (images)" if image_based else "analyses"
        summary[label] = f"{len(np.unique(ss.study_ids))} studies, {len(ss)} {what}" + (
            "" if image_based else f", {len(ss.coordinates)} foci"
        )
    parts.append("<h2>Summary</h2>")
    parts.append(_table_html(pd.DataFrame({"": list(summary), "value": list(summary.values())})))

    text = methods_text(result, studyset, studyset2)
    parts.append("<h2>Methods</h2>")
    parts.append(f"<p>{html.escape(_readable_citations(text))}</p>")

    parts.append("<h2>Maps</h2>")
    parts.append(_table_html(map_table(result), max_rows=1000))

    if studyset is not None and not image_based:
        parts.append("<h2>Coordinates</h2>")
        for i, ss in enumerate([s for s in (studyset, studyset2) if s is not None]):
            cap = f"{len(ss.coordinates)} foci of {len(np.unique(ss.study_ids))} studies"
            parts.append(
                _img(figures.plot_coordinates(ss), f"coordinates group {i + 1}", cap + ".")
            )

    if roles["statistic"]:
        parts.append("<h2>Statistic map</h2>")
        for name in roles["statistic"]:
            parts.append(_img(figures.plot_stat_map(result, name), name, f"{name}, unthresholded."))

    if roles["corrected"]:
        parts.append("<h2>Thresholded maps and clusters</h2>")
        for name in roles["corrected"]:
            table = cluster_tables.get(name)
            thr = table.attrs.get("threshold") if table is not None else None
            if thr is None or parse_map_name(name)["datatype"] == "p":
                thr = map_threshold(result, name)
            level = "cluster-level" if is_cluster_level(name) else "voxel-level"
            if thr is None:  # a scale without a conventional threshold: shown as it is
                caption = f"{name}, unthresholded (no conventional threshold; {level})."
            else:
                caption = f"{name} thresholded at |z| > {thr:.3f} ({level})."
            parts.append(f"<h3>{html.escape(name)}</h3>")
            parts.append(_img(figures.plot_stat_map(result, name, threshold=thr), name, caption))
            if table is not None:
                if len(table):
                    parts.append(_table_html(table))
                else:
                    parts.append('<p class="note">No cluster survives this threshold.</p>')

    nulls = figures.null_distribution_figures(result)
    if nulls:
        parts.append("<h2>Null distributions</h2><div class='grid'>")
        for key, png in nulls.items():
            parts.append(_img(png, key, key))
        parts.append("</div>")

    counts = {k: t for k, t in result.tables.items() if "_tab-counts" in k and t is not None}
    clust = {k: t for k, t in result.tables.items() if k.endswith("_tab-clust")}
    if counts or clust:
        parts.append("<h2>Diagnostics</h2>")
        for key, table in clust.items():
            parts.append(f"<h3>{html.escape(key)}</h3>")
            parts.append(_table_html(table))
        for key, table in counts.items():
            parts.append(f"<h3>{html.escape(key)}</h3>")
            if table.shape[1] > 1:
                cmap = "Blues" if "FocusCounter" in key else "Reds"
                parts.append(_img(figures.plot_contributions(table, key, cmap=cmap), key, key))
            else:
                parts.append('<p class="note">No clusters.</p>')

    bib = methods_references(text, result)
    parts.append("<h2>References (BibTeX)</h2>")
    parts.append(f"<pre>{html.escape(bib)}</pre>")
    parts.append("</body></html>")
    return "\n".join(parts)


def write_report(
    result: MetaResult,
    out_dir: str | Path,
    *,
    studyset: Studyset | None = None,
    studyset2: Studyset | None = None,
    filename: str = "report.html",
    title: str | None = None,
    cluster_tables: dict[str, pd.DataFrame] | None = None,
) -> Path:
    """Write the self-contained HTML report.

    Parameters
    ----------
    result : MetaResult
        The result.
    out_dir : str or Path
        Folder (created if needed).
    studyset, studyset2 : Studyset, optional
        The inputs (coordinates figure, counts).
    filename : str
        File name.
    title : str, optional
        Page title.
    cluster_tables : dict, optional
        Precomputed cluster tables (see :func:`render_report`).

    Returns
    -------
    Path
        The report file.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / filename
    text = render_report(
        result, studyset=studyset, studyset2=studyset2, title=title, cluster_tables=cluster_tables
    )
    path.write_text(text, encoding="utf-8")
    return path
