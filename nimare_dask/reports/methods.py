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

from nimare_dask.meta.text import INPUTS_SENTENCE, sig
from nimare_dask.reports.clusters import is_cluster_level, is_ibma, map_threshold, two_tailed_p
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
    """Millimetres and sample sizes as printed: 2 decimals at most (10.16, 9.5, 10)."""
    return f"{x:.2f}".rstrip("0").rstrip(".")


def _estimator(result: MetaResult) -> Any:
    """The result's estimator, or for a reopened result the one its record describes."""
    if result.estimator is not None:
        return result.estimator
    from nimare_dask.meta.rebuild import estimator_from_info

    try:
        return estimator_from_info(result.estimator_info)
    except (ValueError, TypeError):
        return None


def _kernel_text(est: Any, studysets: list[Studyset]) -> str:
    kernel = getattr(est, "kernel", None)
    if kernel is None:
        return ""
    name = type(kernel).__name__.replace("Kernel", " kernel")
    if hasattr(kernel, "fwhm_for"):
        if getattr(kernel, "fwhm", None) is not None:
            return (
                f"The {name} was a Gaussian with a fixed full width at half maximum (FWHM) of "
                f"{_fmt(kernel.fwhm)} mm for every experiment."
            )
        if getattr(kernel, "sample_size", None) is not None:
            return (
                f"The {name} was one Gaussian for every experiment, with the FWHM of a sample of "
                f"{_fmt(kernel.sample_size)} participants ({_fmt(kernel.fwhm_for())} mm) "
                "\\citep{eickhoff2009coordinate}."
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
        if len(fwhms) == 1:
            return (
                f"The {name}'s Gaussian FWHM was derived from each experiment's sample size "
                f"\\citep{{eickhoff2009coordinate}}: {'; '.join(parts)}."
            )
        return (
            f"The {name}'s Gaussian FWHM was derived from each experiment's sample size "
            f"\\citep{{eickhoff2009coordinate}}, giving {len(fwhms)} distinct FWHMs between "
            f"{_fmt(min(fwhms))} and {_fmt(max(fwhms))} mm: {'; '.join(parts)}."
        )
    r = getattr(kernel, "r", None)
    if r is not None:
        value = getattr(kernel, "value", 1)
        return (
            f"The {name} modelled each focus as a sphere of radius {_fmt(r)} mm with value "
            f"{_fmt(value)}."
        )
    return ""


_WHICH = {
    None: "input dataset",
    1: "first input dataset (group 1)",
    2: "second input dataset (group 2)",
}


def _input_counts(ss: Studyset, which: int | None, images: bool = False) -> str:
    """The report's sentence on one input: studies, analyses, foci (or images), participants."""
    n_studies = len(np.unique(ss.study_ids))
    sizes = np.asarray(ss.sample_sizes, dtype=float)
    participants = (
        f", with a total of {int(np.nansum(sizes))} participants"
        if np.isfinite(sizes).any()
        else ""
    )
    if images:
        return (
            f"The {_WHICH[which]} comprised {n_studies} studies and {len(ss)} analyses "
            f"(statistical images){participants}."
        )
    return (
        f"The {_WHICH[which]} comprised {n_studies} studies, {len(ss)} analyses (experiments) "
        f"and {len(ss.coordinates)} foci{participants}."
    )


def _merge_inputs(
    description: str, kernel: str, studysets: list[Studyset], images: bool = False
) -> tuple[str, str]:
    """Put the report's input sentences (and the kernel text) in the description.

    Each estimator states its input's size in one sentence
    (:func:`nimare_dask.meta.text.inputs_sentence`); where that sentence describes the
    studyset given here (same foci and experiments), the fuller sentence replaces it, the
    kernel text just before the first one, so that no count is said twice. What found no
    place is returned, to be appended.
    """
    rest = []
    for i, ss in enumerate(studysets):
        which = None if len(studysets) == 1 else i + 1
        sentence = _input_counts(ss, which, images)
        if images:  # image-based estimators state the images they used; nothing to replace
            rest.append(sentence)
            continue
        n_foci, n_exps = int(ss.foci_counts().sum()), len(ss)
        for m in INPUTS_SENTENCE.finditer(description):
            if (
                m["which"] == _WHICH[which]
                and int(m["foci"]) == n_foci
                and int(m["experiments"]) == n_exps
            ):
                if kernel:
                    sentence = f"{kernel} {sentence}"
                    kernel = ""
                description = description[: m.start()] + sentence + description[m.end() :]
                break
        else:
            rest.append(sentence)
    return description, " ".join(p for p in (kernel, *rest) if p)


def _seed_text(result: MetaResult) -> str:
    """The random seed(s) of what ran at random (as recorded by the runs), once."""
    seeds = []
    for name, table in result.tables.items():
        if name.startswith("montecarlo") and "random_state" in table and len(table):
            seeds.append(str(table["random_state"].iloc[0]))
    if not seeds:
        params = (result.estimator_info or {}).get("params", {})
        random_fit = params.get("null_method") == "montecarlo" or (
            (result.estimator_info or {}).get("class") in ("SCALE", "ALESubtraction")
        )
        if not random_fit:
            return ""
        seed = params.get("random_state")
        seeds.append("None" if seed is None else str(seed))
    out = []
    for seed in dict.fromkeys(seeds):
        if seed.startswith("None (permutation"):
            out.append("permutation i was seeded with i (random_state=None, as NiMARE)")
        elif seed == "None":
            out.append("no fixed random seed was set (random_state=None)")
        else:
            out.append(f"the random seed was {seed}")
    text = "; ".join(out)
    return f"For the Monte Carlo procedures, {text}."


def _threshold_text(result: MetaResult) -> str:
    names = [n for n in result.maps_names if n.startswith("z_") and "_corr-" in n]
    if not names:
        return ""
    cluster = [n for n in names if is_cluster_level(n)]
    voxel = [n for n in names if not is_cluster_level(n)]
    out = []
    predicted = [n for n in names if "_method-predictive" in n]
    if predicted:
        out.append(
            f"Predictive FWE maps ({', '.join(predicted)}) hold the uncorrected z of the "
            "voxels that survive the predicted cutoff and 0 elsewhere."
        )
        cluster = [n for n in cluster if n not in predicted]
        voxel = [n for n in voxel if n not in predicted]
    if cluster:
        out.append(
            f"Cluster-level corrected z maps ({', '.join(cluster)}) hold, in every voxel of a "
            "cluster, the z value of the cluster's corrected p; thresholded at z > "
            f"{sig(map_threshold(result, cluster[0]))} they show the clusters with one-sided "
            "corrected p < 0.05."
        )
    tails = "two-sided" if two_tailed_p(result) else "one-sided"
    for name in voxel:
        thr = map_threshold(result, name)
        if thr is None:
            continue
        if thr < 1.7:
            out.append(f"{name} is significant at z > {sig(thr)} (one-sided p < 0.05).")
        elif is_ibma(result) or "_method-montecarlo" in name:
            out.append(
                f"{name} is significant at |z| > {sig(thr)} (corrected {tails} p < 0.05; z is "
                "the two-tailed conversion of the corrected p)."
            )
        else:
            out.append(f"{name} is significant at |z| > {sig(thr)} (two-sided p < 0.05).")
    return " ".join(out)


def _diagnostics_text(result: MetaResult) -> str:
    out = []
    for diag in result.diagnostics:
        name = diag.get("class") if isinstance(diag, dict) else type(diag).__name__
        params = diag.get("params", {}) if isinstance(diag, dict) else diag.get_params()
        target = params.get("target_image")
        thr = params.get("target_threshold")
        where = f"the clusters of {target}" + (
            f" thresholded at {sig(thr)}" if thr is not None else ""
        )
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
    kernel = _kernel_text(_estimator(result), studysets)
    description, rest = _merge_inputs(
        result.description.strip(), kernel, studysets, images=is_ibma(result)
    )
    parts = [description, rest]
    parts.append(_seed_text(result))
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
