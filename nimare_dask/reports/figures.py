"""Figures of a result as PNG bytes: the only module of the package that plots.

Every function returns the PNG file's bytes (for embedding in the HTML report or writing to
disk) and closes its matplotlib figure, so nothing is left open in a notebook. Brain figures
use nilearn's glass brain; the rest is plain matplotlib. No backend is forced: on a machine
without a display matplotlib picks its non-interactive Agg backend itself.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Mapping

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from nimare_dask.results import MetaResult
from nimare_dask.studyset import Studyset

__all__ = [
    "null_distribution_figures",
    "plot_contributions",
    "plot_coordinates",
    "plot_null_distribution",
    "plot_stat_map",
]

_DPI = 90


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=_DPI, bbox_inches="tight", facecolor=fig.get_facecolor())
    plt.close(fig)
    return buf.getvalue()


def plot_coordinates(
    studyset: Studyset, max_coordinates: int = 5000, random_state: int = 0, title: str = ""
) -> bytes:
    """Foci on a glass brain, one colour per study.

    Parameters
    ----------
    studyset : Studyset
        The foci (MNI mm).
    max_coordinates : int
        At most this many foci are drawn (a seeded random subset beyond that).
    random_state : int
        Seed of the subset.
    title : str
        Figure title.

    Returns
    -------
    bytes
        PNG.
    """
    from nilearn import plotting

    xyz = studyset.xyz()
    rows = studyset.focus_rows()
    study_of_row = pd.factorize(pd.Series(studyset.study_ids))[0]
    study = study_of_row[rows] if len(rows) else np.zeros(0, dtype=int)
    if len(xyz) > max_coordinates:
        keep = np.sort(
            np.random.default_rng(random_state).choice(len(xyz), max_coordinates, replace=False)
        )
        xyz, study = xyz[keep], study[keep]
    n_studies = int(study_of_row.max()) + 1 if len(study_of_row) else 0
    cmap = plt.get_cmap("tab20" if n_studies > 10 else "tab10")
    colors = [cmap(int(s) % cmap.N) for s in study]
    fig = plt.figure(figsize=(11, 3.4))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        display = plotting.plot_glass_brain(
            None, display_mode="lyrz", figure=fig, title=title or None, annotate=True
        )
        if len(xyz):
            display.add_markers(xyz, marker_color=colors, marker_size=14, alpha=0.8)
    if 0 < n_studies <= 30:
        names = pd.unique(pd.Series(studyset.study_ids))
        handles = [
            plt.Line2D([], [], ls="", marker="o", color=cmap(i % cmap.N), label=str(n))
            for i, n in enumerate(names)
        ]
        fig.legend(
            handles=handles,
            loc="lower center",
            ncol=min(6, n_studies),
            fontsize=7,
            frameon=False,
            bbox_to_anchor=(0.5, -0.02 - 0.045 * ((n_studies - 1) // 6)),
        )
    return _png(fig)


def plot_stat_map(
    result: MetaResult,
    name: str,
    threshold: float | None = 1e-6,
    title: str | None = None,
    two_sided: bool | None = None,
) -> bytes:
    """A map of the result on a glass brain.

    Parameters
    ----------
    result : MetaResult
        The result.
    name : str
        Map name.
    threshold : float, optional
        Values with ``|v| <= threshold`` are not shown (None: nilearn's "auto").
    title : str, optional
        Figure title (default: the map name and threshold).
    two_sided : bool, optional
        Show negative values too (default: when the map has any).

    Returns
    -------
    bytes
        PNG.
    """
    from nilearn import plotting

    values = np.nan_to_num(np.asarray(result.get_map(name, return_type="array"), np.float64))
    if two_sided is None:
        two_sided = bool((values < 0).any())
    img = result.grid.to_image(values.astype(np.float32))
    vmax = float(np.max(np.abs(values))) if values.size else 1.0
    fig = plt.figure(figsize=(11, 3.4))
    thr_text = "auto" if threshold is None else f"{threshold:g}"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        plotting.plot_glass_brain(
            img,
            display_mode="lyrz",
            figure=fig,
            colorbar=True,
            plot_abs=False,
            threshold="auto" if threshold is None else threshold,
            cmap="RdBu_r" if two_sided else "hot",
            vmin=-vmax if two_sided else 0,
            vmax=vmax if vmax > 0 else 1.0,
            symmetric_cbar=bool(two_sided),
            title=title if title is not None else f"{name} (|v| > {thr_text})",
        )
    return _png(fig)


def plot_null_distribution(
    values: np.ndarray | None = None,
    name: str = "",
    *,
    bins: np.ndarray | None = None,
    weights: np.ndarray | None = None,
    quantile: float = 0.95,
    observed: float | None = None,
) -> bytes:
    """Histogram of a null distribution with its ``quantile`` threshold marked.

    Parameters
    ----------
    values : numpy.ndarray, optional
        Null samples (e.g. the maximum statistic of each Monte Carlo iteration).
    name : str
        What the values are (axis label and title).
    bins, weights : numpy.ndarray, optional
        A histogram null instead of samples (bin centres and their weights), e.g. ALE's
        approximate null; drawn on a log scale.
    quantile : float
        Quantile marked with a vertical line (0.95: the FWE p < 0.05 threshold for a
        maximum-statistic null).
    observed : float, optional
        An observed value to mark too.

    Returns
    -------
    bytes
        PNG.
    """
    fig, ax = plt.subplots(figsize=(5.2, 3.2))
    if values is not None:
        vals = np.asarray(values, dtype=np.float64).ravel()
        vals = vals[np.isfinite(vals)]
        cut = float(np.quantile(vals, quantile)) if vals.size else np.nan
        ax.hist(vals, bins=min(60, max(5, vals.size // 5 or 5)), color="0.55", edgecolor="white")
        ax.set_ylabel("iterations")
        label = f"{int(round(quantile * 100))}th percentile = {cut:.4g}"
    elif bins is not None and weights is not None:
        b = np.asarray(bins, dtype=np.float64)
        w = np.asarray(weights, dtype=np.float64)
        w = w / w.sum() if w.sum() > 0 else w
        tail = np.cumsum(w[::-1])[::-1]
        idx = np.flatnonzero(tail > 1 - quantile)
        cut = float(b[idx[-1]]) if idx.size else np.nan
        ax.semilogy(b, np.where(w > 0, w, np.nan), color="0.3", lw=1)
        ax.set_ylabel("probability (log)")
        label = f"upper-tail p = {1 - quantile:g} at {cut:.4g}"
    else:
        raise ValueError("pass values, or bins and weights")
    ax.axvline(cut, color="crimson", lw=1.5, ls="--", label=label)
    if observed is not None:
        ax.axvline(observed, color="navy", lw=1.2, label=f"observed = {observed:.4g}")
    ax.set_xlabel(name or "value")
    ax.set_title(name, fontsize=9)
    ax.legend(fontsize=7, frameon=False)
    fig.tight_layout()
    return _png(fig)


def plot_contributions(
    table: pd.DataFrame, title: str = "", cmap: str = "Reds", max_rows: int = 200
) -> bytes:
    """Heatmap of a diagnostics counts table (analyses x clusters).

    Parameters
    ----------
    table : pandas.DataFrame
        Column ``id`` then one column per cluster (Jackknife fractions or focus counts).
    title : str
        Figure title.
    cmap : str
        Matplotlib colormap.
    max_rows : int
        Only the analyses with the largest total contribution are shown beyond this.

    Returns
    -------
    bytes
        PNG.
    """
    data = table.set_index("id") if "id" in table.columns else table
    data = data.apply(pd.to_numeric, errors="coerce").fillna(0.0)
    if len(data) > max_rows:
        data = data.loc[data.sum(axis=1).sort_values(ascending=False).index[:max_rows]]
    n_rows, n_cols = data.shape
    fig, ax = plt.subplots(
        figsize=(min(16, 2.5 + 0.45 * max(1, n_cols)), min(30, 1.5 + 0.22 * max(1, n_rows)))
    )
    vals = data.to_numpy(dtype=np.float64)
    im = ax.imshow(vals, aspect="auto", cmap=cmap, vmin=0, vmax=max(1e-12, np.nanmax(vals)))
    ax.set_xticks(range(n_cols))
    ax.set_xticklabels(
        [str(c).replace("PositiveTail ", "+").replace("NegativeTail ", "-") for c in data.columns],
        rotation=90,
        fontsize=7,
    )
    ax.set_yticks(range(n_rows))
    ax.set_yticklabels([str(i) for i in data.index], fontsize=7)
    ax.set_xlabel("cluster")
    ax.set_title(title, fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.04, pad=0.02)
    fig.tight_layout()
    return _png(fig)


def null_distribution_figures(result: MetaResult) -> Mapping[str, bytes]:
    """One histogram per null distribution of the result.

    Monte Carlo nulls (``values_*``: maximum statistic, maximum cluster size and mass per
    iteration) are drawn with their 95th percentile; a histogram null (``histogram_bins`` with
    ``histweights_*``) with its p = 0.001 cut.

    Parameters
    ----------
    result : MetaResult
        The result.

    Returns
    -------
    dict
        ``{null name: PNG bytes}``.
    """
    out: dict[str, bytes] = {}
    nulls = result.null_distributions
    for key, value in nulls.items():
        arr = np.asarray(value)
        if key.startswith("values_") and arr.ndim == 1 and arr.size:
            out[key] = plot_null_distribution(arr, key)
    for key, value in nulls.items():
        if key.startswith("histweights_"):
            suffix = "_desc-" + key.split("_desc-", 1)[1] if "_desc-" in key else ""
            bins = nulls.get(f"histogram_bins{suffix}", nulls.get("histogram_bins"))
            if bins is not None and np.asarray(bins).shape == np.asarray(value).shape:
                out[key] = plot_null_distribution(
                    name=key, bins=np.asarray(bins), weights=np.asarray(value), quantile=0.999
                )
    return out
