"""Meta-analytic connectivity modelling (MACM): what co-activates with a seed, database-wide.

A MACM selects the experiments of a database that report at least one focus in a seed region
(a mask, or within ``r`` mm of seed coordinates) and meta-analyses them (ALE by default, as
NiMARE's ``macm_workflow``), optionally with a multiple-comparison correction.

:func:`macm` takes one seed or a list of seeds. Selection is vectorised over the whole database
(:meth:`~nimare_dask.studyset.Studyset.get_studies_by_mask`,
:meth:`~nimare_dask.studyset.Studyset.get_studies_by_coordinate`). For several seeds and an
approximate-null ALE without a corrector, the seeds share one Dask graph: the MA maps of the
union of the selected experiments are built once, chunk by chunk, and every seed's
``sum log(1 - MA)`` and per-experiment null histograms come out of the same pass
(``macm-ale-chunk`` tasks). Otherwise each seed is fit on its own (the estimator's own graph,
then the corrector).
"""

from __future__ import annotations

import copy
from importlib import resources
from pathlib import Path

import dask
import nibabel as nib
import numpy as np
import pandas as pd
from dask.base import tokenize

from nimare_dask.meta.base import compute
from nimare_dask.meta.cbma import ALE
from nimare_dask.meta.cbma.ale import ale_approximate_maps
from nimare_dask.results import MetaResult
from nimare_dask.results.references import merge_bibtex, references_for
from nimare_dask.space import Grid, get_grid
from nimare_dask.stats.nulls import (
    ale_study_histograms,
    pad_histograms,
)
from nimare_dask.studyset import Studyset, open_studyset

__all__ = ["amygdala_roi", "macm", "select_studies"]

_MACM_TEXT = (
    "A meta-analytic connectivity modeling (MACM; "
    "\\citealt{{laird2009investigating,robinson2010metaanalytic,eickhoff2010anatomical}}) "
    "analysis was performed. The input dataset included {n_foci_db} foci across {n_exps_db} "
    "experiments, from which experiments were selected for analysis if they had at least one "
    "focus {where}. The resulting sample included {n_foci_sel} foci across {n_exps_sel} "
    "experiments. "
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
        return f"within {float(rr):g} mm of {len(np.atleast_2d(xyz))} seed coordinate(s)"
    if _is_coordinates(seed):
        n = len(np.atleast_2d(np.asarray(seed, float)))
        return f"within {float(r):g} mm of {n} seed coordinate(s)"
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
        With several seeds, an approximate-null ALE and no corrector, compute the seeds
        together in one graph (MA maps of each selected experiment built once).

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
    shared = (
        share_ma
        and len(seeds) > 1
        and corrector is None
        and type(estimator) is ALE
        and getattr(estimator, "null_method", "approximate") == "approximate"
    )
    if shared:
        results = _shared_ale(studyset, selections, estimator, n_cores)
    else:
        results = []
        for ids in selections:
            est = copy.deepcopy(estimator)
            if n_cores is not None and hasattr(est, "n_cores"):
                est.n_cores = n_cores
            res = est.fit(studyset.slice(ids))
            if corrector is not None:
                res = corrector.transform(res)
            results.append(res)
    n_foci_db = int(studyset.foci_counts().sum())
    counts = pd.Series(studyset.foci_counts(), index=studyset.ids)
    for seed, ids, res in zip(seeds, selections, results, strict=True):
        text = _MACM_TEXT.format(
            n_foci_db=n_foci_db,
            n_exps_db=len(studyset),
            where=_describe_seed(seed, r),
            n_foci_sel=int(counts.loc[ids].sum()),
            n_exps_sel=len(ids),
        )
        res.description = text + (res.description or "")
        res.references = merge_bibtex(references_for(text), res.references)
        res.tables["selected_studies"] = pd.DataFrame({"id": ids})
    return results[0] if single else results


# ---------------------------------------------------------------------------------- shared ALE
def _ale_chunk(block: np.ndarray, membership: np.ndarray):
    """Per seed, sum over the chunk's selected experiments of log(1 - MA); per experiment,
    its ALE-grid histogram and maximum."""
    block = np.asarray(block)
    log1m = np.log1p(-block.astype(np.float64))
    partial = np.asarray(membership, dtype=np.float64) @ log1m
    counts = ale_study_histograms(block)
    row_max = block.max(axis=1) if block.shape[1] else np.zeros(block.shape[0], np.float32)
    return partial, counts, row_max.astype(np.float32)


def _combine(parts):
    log1m = np.sum([p[0] for p in parts], axis=0)
    counts = pad_histograms([p[1] for p in parts])
    row_max = np.concatenate([p[2] for p in parts])
    return log1m, counts, row_max


def _shared_ale(studyset: Studyset, selections, estimator, n_cores) -> list[MetaResult]:
    grid = studyset.grid if estimator.mask is None else get_grid(estimator.mask)
    ss = studyset if grid.same_as(studyset.grid) else studyset.with_grid(grid)
    union = np.unique(np.concatenate(selections))
    sub = ss.slice(union)
    check = getattr(estimator, "_check_sample_sizes", None)
    if callable(check):
        check(sub)
    index = pd.Index(sub.ids)
    members = np.zeros((len(selections), len(sub)), dtype=np.float64)
    for s, ids in enumerate(selections):
        members[s, index.get_indexer(ids)] = 1.0
    ma = estimator.kernel.transform(sub, return_type="xarray", chunks=estimator.chunks).data
    bounds = np.concatenate([[0], np.cumsum(ma.chunks[0])])
    token = tokenize(ma.name, members)
    parts = [
        dask.delayed(_ale_chunk, pure=True)(
            block,
            members[:, bounds[i] : bounds[i + 1]] > 0,  # bool: 1 byte per seed and study
            dask_key_name=f"macm-ale-chunk-{token}-{i}",
        )
        for i, block in enumerate(ma.to_delayed().ravel())
    ]
    total = dask.delayed(_combine, pure=True)(parts, dask_key_name=f"macm-ale-combine-{token}")
    ((log1m, counts, row_max),) = compute(total, n_cores=n_cores)
    n_vox = grid.n_voxels
    results = []
    for s, ids in enumerate(selections):
        rows = index.get_indexer(ids)
        stat = (1.0 - np.exp(log1m[s])).astype(np.float32)
        maps, nulls, lumped = ale_approximate_maps(stat, counts[rows], row_max[rows], n_vox)
        est = copy.deepcopy(estimator)
        est.null_distributions_ = nulls
        est._lumped_null_ = lumped
        describe = getattr(est, "_description", None)
        seed_ss = sub.slice(ids)
        text = describe(seed_ss) if callable(describe) else ""
        res = MetaResult(
            estimator=est, grid=grid, maps=maps, description=text, null_distributions=nulls
        )
        est.result_ = res
        results.append(res)
    return results
