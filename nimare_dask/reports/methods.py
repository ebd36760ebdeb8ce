"""Methods text ("boilerplate") and its BibTeX references, built from a result.

The text starts with the description the estimator and corrector wrote (natbib citations such
as ``\\citep{eickhoff2012activation}``) and adds what a reader needs to reproduce the analysis:
kernel widths (the distinct sample-size FWHMs of an ALE), null method, Monte Carlo iterations,
thresholds, random seed, the number of studies, analyses and foci, diagnostics, the atlas used
for labels, and package versions. Citation keys resolve to the entries of
``nimare_dask/resources/references.bib``.
"""

from __future__ import annotations

import platform
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from nimare_dask.reports.clusters import default_threshold, is_cluster_level
from nimare_dask.results import MetaResult
from nimare_dask.results.references import merge_bibtex, references_for
from nimare_dask.studyset import Studyset

__all__ = ["methods_references", "methods_text", "package_versions", "write_methods"]

_PACKAGES = ("nimare_dask", "numpy", "scipy", "pandas", "nibabel", "nilearn", "dask", "xarray")


def package_versions() -> dict[str, str]:
    """Versions of Python and the packages the analysis ran on.

    Returns
    -------
    dict
        ``{name: version}`` (``"not installed"`` where missing).
    """
    out = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def _fmt(x: float) -> str:
    return f"{x:.2f}".rstrip("0").rstrip(".")


def _kernel_text(est: Any, studysets: list[Studyset]) -> str:
    kernel = getattr(est, "kernel", None)
    if kernel is None:
        return ""
    name = type(kernel).__name__
    if hasattr(kernel, "fwhm_for"):
        if getattr(kernel, "fwhm", None) is not None:
            return (
                f"The {name} used a Gaussian kernel with a fixed full width at half maximum "
                f"(FWHM) of {_fmt(kernel.fwhm)} mm for every experiment."
            )
        if getattr(kernel, "sample_size", None) is not None:
            return (
                f"The {name} used one Gaussian kernel for every experiment, with the FWHM of a "
                f"sample of {_fmt(kernel.sample_size)} participants "
                f"({_fmt(kernel.fwhm_for())} mm) \\citep{{eickhoff2009coordinate}}."
            )
        sizes = np.concatenate([np.asarray(s.sample_sizes, dtype=float) for s in studysets])
        sizes = sizes[np.isfinite(sizes)]
        if sizes.size == 0:
            return (
                f"The {name}'s Gaussian FWHM was derived from each experiment's sample size "
                "\\citep{eickhoff2009coordinate}."
            )
        uniq, counts = np.unique(sizes, return_counts=True)
        parts = [
            f"{_fmt(kernel.fwhm_for(n))} mm (N = {_fmt(n)}, {c} experiment{'s' if c > 1 else ''})"
            for n, c in zip(uniq, counts, strict=True)
        ]
        fwhms = sorted({round(kernel.fwhm_for(n), 2) for n in uniq})
        return (
            f"The {name}'s Gaussian FWHM was derived from each experiment's sample size "
            f"\\citep{{eickhoff2009coordinate}}, giving {len(fwhms)} distinct "
            f"FWHM{'s' if len(fwhms) > 1 else ''} between {_fmt(min(fwhms))} and "
            f"{_fmt(max(fwhms))} mm: {'; '.join(parts)}."
        )
    r = getattr(kernel, "r", None)
    if r is not None:
        value = getattr(kernel, "value", 1)
        return (
            f"The {name} modelled each focus as a sphere of radius {_fmt(r)} mm with value "
            f"{_fmt(value)}."
        )
    return ""


def _inputs_text(studysets: list[Studyset]) -> str:
    if not studysets:
        return ""
    texts = []
    for i, ss in enumerate(studysets):
        n_studies = len(np.unique(ss.study_ids))
        sizes = np.asarray(ss.sample_sizes, dtype=float)
        participants = (
            f", {int(np.nansum(sizes))} participants in total" if np.isfinite(sizes).any() else ""
        )
        label = f"Group {i + 1}" if len(studysets) > 1 else "The input"
        texts.append(
            f"{label} comprised {n_studies} studies, {len(ss)} analyses (experiments) and "
            f"{len(ss.coordinates)} foci{participants}."
        )
    return " ".join(texts)


def _settings_text(result: MetaResult) -> str:
    est = result.estimator_info or {}
    params = est.get("params", {})
    cor = result.corrector_info or {}
    cparams = cor.get("params", {})
    bits = []
    null = params.get("null_method")
    if null:
        bits.append(f"uncorrected p-values from the {null} null distribution")
    if cor:
        method = cparams.get("method")
        desc = f"{cor.get('class', 'correction')} (method={method!r}"
        if method == "montecarlo":
            n_iters = cparams.get("n_iters") or params.get("n_iters")
            desc += (
                f", {n_iters} iterations, cluster-forming threshold p < "
                f"{cparams.get('voxel_thresh')}"
            )
            if cparams.get("vfwe_only"):
                desc += ", voxel-level only"
        desc += ")"
        bits.append(desc)
    elif params.get("n_iters"):
        bits.append(f"{params['n_iters']} iterations")
    seed = cparams.get("random_state", params.get("random_state"))
    bits.append(
        f"random seed {seed}" if seed is not None else "no fixed random seed (random_state=None)"
    )
    return "Settings: " + "; ".join(bits) + "."


def _threshold_text(result: MetaResult) -> str:
    names = [n for n in result.maps_names if n.startswith("z_") and "_corr-" in n]
    if not names:
        return ""
    cluster = [n for n in names if is_cluster_level(n)]
    voxel = [n for n in names if not is_cluster_level(n)]
    out = []
    if cluster:
        out.append(
            f"Cluster-level corrected z maps ({', '.join(cluster)}) hold, in every voxel of a "
            "cluster, the z value of the cluster's corrected p; thresholded at z > "
            f"{default_threshold(cluster[0]):.3f} they show the clusters with one-sided "
            "corrected p < 0.05."
        )
    if voxel:
        for name in voxel:
            thr = default_threshold(name)
            tails = "one-sided" if thr < 1.7 else "two-sided"
            out.append(f"{name} is significant at |z| > {thr:.3f} ({tails} p < 0.05).")
    return " ".join(out)


def _diagnostics_text(result: MetaResult) -> str:
    out = []
    for diag in result.diagnostics:
        name = diag.get("class") if isinstance(diag, dict) else type(diag).__name__
        params = diag.get("params", {}) if isinstance(diag, dict) else diag.get_params()
        target = params.get("target_image")
        thr = params.get("target_threshold")
        where = f"the clusters of {target}" + (f" thresholded at {thr}" if thr is not None else "")
        if name == "Jackknife":
            out.append(
                f"Each experiment's contribution to {where} was estimated with a jackknife: "
                "the meta-analysis was recomputed without the experiment, and its contribution "
                "is the mean over the cluster's voxels of one minus the ratio of the "
                "leave-one-out statistic to the full statistic."
            )
        elif name == "FocusCounter":
            out.append(
                f"For {where}, the number of foci of each experiment inside each cluster was "
                "counted."
            )
    return " ".join(out)


def methods_text(
    result: MetaResult,
    studyset: Studyset | None = None,
    studyset2: Studyset | None = None,
    atlas: bool = True,
) -> str:
    """Methods paragraph describing exactly what ran, with natbib citations.

    Parameters
    ----------
    result : MetaResult
        The (corrected, diagnosed) result.
    studyset, studyset2 : Studyset, optional
        The input(s), for kernel widths and counts of studies, analyses and foci.
    atlas : bool
        Mention the atlas used for anatomical labels.

    Returns
    -------
    str
        The text (LaTeX citations ``\\citep{...}``).
    """
    studysets = [s for s in (studyset, studyset2) if s is not None]
    parts = [result.description.strip()]
    parts.append(_kernel_text(result.estimator, studysets))
    parts.append(_inputs_text(studysets))
    parts.append(_settings_text(result))
    parts.append(_threshold_text(result))
    parts.append(_diagnostics_text(result))
    if atlas:
        parts.append(
            "Anatomical labels of peaks and cluster centres are from the Harvard-Oxford "
            "cortical atlas (maximum probability, 25% threshold) \\citep{desikan2006automated}; "
            "figures were made with nilearn \\citep{abraham2014machine}."
        )
    versions = package_versions()
    parts.append(
        "Computations ran on Dask \\citep{rocklin2015dask}. Software versions: "
        + ", ".join(f"{k} {v}" for k, v in versions.items())
        + "."
    )
    return " ".join(p for p in parts if p)


def methods_references(text: str, result: MetaResult | None = None) -> str:
    """BibTeX entries for every citation of ``text`` (and of the result's references).

    Parameters
    ----------
    text : str
        Methods text.
    result : MetaResult, optional
        Its references are merged in first.

    Returns
    -------
    str
        BibTeX.
    """
    return merge_bibtex(result.references if result is not None else "", references_for(text))


def write_methods(
    result: MetaResult,
    output_dir: str | Path,
    prefix: str = "",
    studyset: Studyset | None = None,
    studyset2: Studyset | None = None,
) -> tuple[Path, Path]:
    """Write ``<prefix>boilerplate.txt`` and ``<prefix>references.bib``.

    Parameters
    ----------
    result : MetaResult
        The result.
    output_dir : str or Path
        Folder (created if needed).
    prefix : str
        File-name prefix (written as given, e.g. ``"pain_"``).
    studyset, studyset2 : Studyset, optional
        The inputs (see :func:`methods_text`).

    Returns
    -------
    tuple of Path
        The two files.
    """
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    text = methods_text(result, studyset, studyset2)
    boiler = out / f"{prefix}boilerplate.txt"
    bib = out / f"{prefix}references.bib"
    boiler.write_text(text + "\n", encoding="utf-8")
    bib.write_text(methods_references(text, result) + "\n", encoding="utf-8")
    return boiler, bib
