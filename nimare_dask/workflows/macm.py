"""Meta-analytic connectivity modelling (MACM): what co-activates with a seed, database-wide.

A MACM selects the experiments of a database that report at least one focus in a seed region
(a mask, or within ``r`` mm of seed coordinates) and meta-analyses them (ALE by default, as
NiMARE's ``macm_workflow``), optionally with a multiple-comparison correction.

:func:`macm` takes one seed or a list of seeds. Selection is vectorised over the whole database
(:meth:`~nimare_dask.studyset.Studyset.get_studies_by_mask`,
:meth:`~nimare_dask.studyset.Studyset.get_studies_by_coordinate`). Each seed is fit by the
estimator's own code: a copy of the estimator per seed builds the lazy pass of its fit
(``_fit_parts``, the very tasks ``fit`` computes: for ALE one chunked pass giving
``sum log(1 - MA)``, per-experiment MA histograms and maxima), the passes of all seeds are
computed in one ``dask.compute`` (one graph; seeds with the same experiments share their
tasks), and each seed's fit is finished from its own pass. A seed's maps are therefore
bit-identical to ``estimator.fit(studyset.slice(selected))``, alone or with other seeds. The
corrector, if any, then runs on each seed's result.
"""

from __future__ import annotations

import copy
from importlib import resources
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

from nimare_dask.meta.base import compute
from nimare_dask.meta.cbma import ALE
from nimare_dask.meta.text import INPUTS_SENTENCE, plural
from nimare_dask.results import MetaResult
from nimare_dask.results.references import merge_bibtex, references_for
from nimare_dask.space import Grid
from nimare_dask.studyset import Studyset, open_studyset

__all__ = ["amygdala_roi", "macm", "macm_workflow", "select_studies"]

_MACM_TEXT = (
    "A meta-analytic connectivity modeling (MACM; "
    "\\citealt{{laird2009investigating,robinson2010metaanalytic,eickhoff2010anatomical}}) "
    "analysis was performed. The database included {n_foci_db} foci from {n_exps_db} "
    "experiments, from which experiments were selected for analysis if they had at least one "
    "focus {where}. The resulting sample included {n_foci_sel} foci from {n_exps_sel} "
    "experiments{participants}. "
)


def amygdala_roi() -> nib.Nifti1Image:
    """The bilateral amygdala ROI shipped with the package (NiMARE's test ROI, 366 voxels).

    Returns
    -------
    nibabel.Nifti1Image
        A uint8 mask on the 2 mm MNI152 grid. The shipped file is stored LAS (as NiMARE's);
        it is returned in the grid's RAS orientation (the same voxels in world space, so
        images need no resampling). See ``resources/data/amygdala_roi.README.txt``.
    """
    ref = resources.files("nimare_dask.resources") / "data" / "amygdala_roi.nii.gz"
    with resources.as_file(ref) as path:
        img = nib.as_closest_canonical(nib.load(str(path)))
        data = (np.asarray(img.dataobj) > 0).astype(np.uint8)
        return nib.Nifti1Image(data, img.affine)


def _is_coordinates(roi) -> bool:
    if isinstance(roi, str | Path | nib.Nifti1Image | Grid):
        return False
    arr = np.asarray(roi, dtype=object)
    return arr.ndim in (1, 2) and arr.shape[-1] == 3 and arr.size > 0


def _as_seed_list(roi) -> list:
    """One seed or a list of seeds -> a list of seeds (mask, coordinates or (xyz, r))."""
    if isinstance(roi, list) and roi and not _is_coordinates(roi):
        return roi
    if isinstance(roi, list) and roi and all(_looks_like_seed(s) for s in roi):
        return roi
    return [roi]


def _looks_like_seed(seed) -> bool:
    return isinstance(seed, str | Path | nib.Nifti1Image | Grid | tuple) or (
        isinstance(seed, np.ndarray) and seed.ndim == 2
    )


def _describe_seed(seed, r: float) -> str:
    if isinstance(seed, tuple):
        xyz, rr = seed
        return f"within {float(rr):g} mm of {plural(len(np.atleast_2d(xyz)), 'seed coordinate')}"
    if _is_coordinates(seed):
        n = len(np.atleast_2d(np.asarray(seed, float)))
        return f"within {float(r):g} mm of {plural(n, 'seed coordinate')}"
    return "inside the target mask"


def select_studies(studyset: Studyset, rois, r: float = 20.0) -> list[np.ndarray]:
    """The analyses with at least one focus in each seed (vectorised over the database).

    Parameters
    ----------
    studyset : Studyset
        The database.
    rois : seed or list of seeds
        A seed is a mask (NIfTI image, path or :class:`~nimare_dask.space.Grid`; any value
        > 0 is inside; foci outside the mask's grid never count), an (N, 3) array of MNI
        coordinates (a focus within ``r`` mm of any of them counts), or a tuple
        ``(coordinates, radius)``.
    r : float
        Radius (mm) for coordinate seeds given without one (NiMARE's default, 20).

    Returns
    -------
    list of numpy.ndarray
        Per seed, the selected analysis ids (sorted), eager.
    """
    out = []
    for seed in _as_seed_list(rois):
        if isinstance(seed, tuple):
            xyz, radius = seed
            ids = studyset.get_studies_by_coordinate(np.atleast_2d(np.asarray(xyz, float)), radius)
        elif _is_coordinates(seed):
            ids = studyset.get_studies_by_coordinate(np.atleast_2d(np.asarray(seed, float)), r)
        else:
            ids = studyset.get_studies_by_mask(seed if isinstance(seed, Grid) else _load(seed))
        out.append(np.asarray(sorted(ids), dtype=object))
    return out


def _load(seed):
    if isinstance(seed, str | Path):
        return nib.load(str(seed))
    return seed


def macm(
    studyset,
    roi,
    *,
    r: float = 20.0,
    estimator=None,
    corrector=None,
    n_cores: int | None = None,
    share_ma: bool = True,
) -> MetaResult | list[MetaResult]:
    """Meta-analytic connectivity modelling of one seed or many.

    Parameters
    ----------
    studyset : Studyset, str or Path
        The database (or the path of its store).
    roi : seed or list of seeds
        See :func:`select_studies`: a mask image or path, an (N, 3) array of coordinates
        (with ``r``), a ``(coordinates, radius)`` tuple, or a list of these.
    r : float
        Radius in mm for coordinate seeds (default 20, as NiMARE's
        ``get_studies_by_coordinate``).
    estimator : estimator, optional
        One-sample CBMA estimator fit on each seed's experiments (default ``ALE()``; databases
        without sample sizes need a fixed kernel width, e.g. ``ALE(kernel__fwhm=10)``).
    corrector : Corrector, optional
        Applied to each seed's result (e.g. ``FWECorrector(method="montecarlo",
        n_iters=10000, voxel_thresh=0.001)`` as NiMARE's ``macm_workflow``).
    n_cores : int, optional
        Threads of the local scheduler when no Dask scheduler is configured.
    share_ma : bool
        With several seeds, compute the fits of all seeds in one graph and one
        ``dask.compute`` (estimators with ``_fit_parts``: ALE, MKDADensity, KDA); False fits
        the seeds one after the other. The maps are the same either way.

    Returns
    -------
    MetaResult or list of MetaResult
        One result per seed (a single result for a single seed): the estimator's maps (and
        the corrector's), the table ``"selected_studies"`` (column ``id``) and a methods text
        that starts with the MACM selection (eager).
    """
    if isinstance(studyset, str | Path):
        studyset = open_studyset(studyset)
    if not isinstance(studyset, Studyset):
        raise TypeError(f"macm expects a Studyset or a store path; got {type(studyset).__name__}")
    estimator = ALE() if estimator is None else estimator
    single = len(_as_seed_list(roi)) == 1 and not isinstance(roi, list)
    seeds = _as_seed_list(roi)
    selections = select_studies(studyset, seeds, r)
    for seed, ids in zip(seeds, selections, strict=True):
        if len(ids) == 0:
            raise ValueError(f"macm: no experiment has a focus {_describe_seed(seed, r)}")
    # one copy of the estimator per seed: each keeps its own fitted state (nulls, inputs)
    estimators = []
    for _ in selections:
        est = copy.deepcopy(estimator)
        if n_cores is not None and hasattr(est, "n_cores"):
            est.n_cores = n_cores
        estimators.append(est)
    together = share_ma and len(seeds) > 1 and callable(getattr(estimator, "_fit_parts", None))
    if together:
        results = _fit_together(studyset, selections, estimators, n_cores)
    else:
        results = [
            est.fit(studyset.slice(ids)) for est, ids in zip(estimators, selections, strict=True)
        ]
    if corrector is not None:
        results = [corrector.transform(res) for res in results]
    n_foci_db = int(studyset.foci_counts().sum())
    counts = pd.Series(studyset.foci_counts(), index=studyset.ids)
    for seed, ids, res in zip(seeds, selections, results, strict=True):
        n_foci_sel = int(counts.loc[ids].sum())
        rest, participants = _without_inputs_sentence(res.description, n_foci_sel, len(ids))
        text = _MACM_TEXT.format(
            n_foci_db=n_foci_db,
            n_exps_db=len(studyset),
            where=_describe_seed(seed, r),
            n_foci_sel=n_foci_sel,
            n_exps_sel=len(ids),
            participants=participants,
        )
        res.description = (text + rest).strip()
        res.references = merge_bibtex(references_for(text), res.references)
        res.tables["selected_studies"] = pd.DataFrame({"id": ids})
    return results[0] if single else results


def _without_inputs_sentence(description: str, n_foci: int, n_exps: int) -> tuple[str, str]:
    """The estimator's description without its sentence on the selection's size (the MACM text
    states it once), and that sentence's participants clause."""
    for m in INPUTS_SENTENCE.finditer(description or ""):
        if int(m["foci"]) == n_foci and int(m["experiments"]) == n_exps:
            participants = (
                f", with a total of {m['participants']} participants" if m["participants"] else ""
            )
            rest = (description[: m.start()] + description[m.end() :]).replace("  ", " ")
            return rest.strip(), participants
    return description or "", ""


# ------------------------------------------------------------------------ seeds in one graph
def _fit_together(studyset: Studyset, selections, estimators, n_cores) -> list[MetaResult]:
    """Fit each seed's estimator on its selection, computing every seed's lazy pass at once.

    Each estimator builds its fit's pass with its own ``_fit_parts`` (the tasks its ``fit``
    computes), one ``dask.compute`` runs them all, and each fit is finished from its own
    computed pieces: the same numbers as separate fits.
    """
    lazy, finishers = [], []
    for est, ids in zip(estimators, selections, strict=True):
        est._check_null_method()
        parts, finish = est._fit_parts(est._prepare(studyset.slice(ids)))
        finishers.append((finish, len(parts)))
        lazy.extend(parts)
    computed = compute(*lazy, n_cores=n_cores)
    results, start = [], 0
    for finish, n in finishers:
        results.append(finish(list(computed[start : start + n])))
        start += n
    return results


from nimare_dask.workflows.macm_workflow import macm_workflow  # noqa: E402  (NiMARE's path)
