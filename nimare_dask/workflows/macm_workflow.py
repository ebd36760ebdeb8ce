"""NiMARE 0.22.1's ``macm_workflow``: MACM of a legacy Dataset JSON file, files on disk.

Experiments with at least one focus in the mask are selected with the legacy ``Dataset``'s
rule (foci rounded to the mask's voxels, indices *clipped* to the grid, so a focus beyond the
edge counts for the edge voxel), then ALE (approximate null) and Monte Carlo FWE. For
studysets and many seeds, :func:`nimare_dask.workflows.macm.macm` is the scalable entry point.
"""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np

from nimare_dask.correct import FWECorrector
from nimare_dask.meta.cbma import ALE
from nimare_dask.results import MetaResult
from nimare_dask.storage import Location
from nimare_dask.studyset import Studyset

__all__ = ["macm_workflow", "studies_in_mask_clipped"]

_TEXT = (
    "A meta-analytic connectivity modeling (MACM; "
    "\\citealt{{laird2009investigating,robinson2010metaanalytic,eickhoff2010anatomical}}) "
    "analysis was performed. The input dataset included {n_foci_db} foci across {n_exps_db} "
    "experiments, from which experiments were selected for analysis if they had at least one "
    "focus inside the target mask. The resulting sample included {n_foci_sel} foci across "
    "{n_exps_sel} experiments. "
)


def studies_in_mask_clipped(studyset: Studyset, mask) -> list[str]:
    """Analyses with a focus in ``mask`` by the legacy Dataset rule (indices clipped to grid).

    Returns
    -------
    list of str
        Full analysis ids, sorted.
    """
    img = nib.load(str(mask)) if isinstance(mask, str | Path) else mask
    data = np.asanyarray(img.dataobj)
    ijk = np.round(
        np.c_[studyset.xyz(), np.ones(len(studyset.xyz()))] @ np.linalg.inv(img.affine).T
    )[:, :3].astype(int)
    ijk = np.clip(ijk, 0, np.array(data.shape[:3]) - 1)
    hit = data[ijk[:, 0], ijk[:, 1], ijk[:, 2]] > 0
    return list(studyset.ids[np.unique(studyset.focus_rows()[hit])])


def macm_workflow(
    dataset_file: str | Path,
    mask_file: str | Path,
    output_dir: str | Path | None = None,
    prefix: str | None = None,
    n_iters: int = 5000,
    v_thr: float = 0.001,
    n_cores: int = 1,
) -> MetaResult:
    """MACM with ALE, as NiMARE's ``macm_workflow`` (same selection, estimator and files).

    Parameters
    ----------
    dataset_file : str or Path
        A NiMARE legacy Dataset JSON (or NIMADS JSON) file.
    mask_file : str or Path
        The seed mask.
    output_dir : str or Path, optional
        Default: the dataset file's folder.
    prefix : str, optional
        File-name prefix; default ``<dataset file name without extension>_``.
    n_iters : int
        Monte Carlo iterations of the FWE correction.
    v_thr : float
        Cluster-forming threshold (uncorrected p).
    n_cores : int
        Threads of the local scheduler (no effect under an active Dask scheduler).

    Returns
    -------
    MetaResult
        The corrected result (NiMARE returns None; the files are the same): every map as
        ``<prefix><map>.nii.gz``, ``<prefix>input_dataset.json``, ``<prefix>boilerplate.txt``,
        ``<prefix>references.bib``.
    """
    dataset_file = Path(dataset_file)
    ss = Studyset(dataset_file)
    ids = studies_in_mask_clipped(ss, mask_file)
    if not ids:
        raise ValueError(
            f"macm_workflow: no experiment of {dataset_file} has a focus in {mask_file}"
        )
    sel = ss.slice(ids)
    result = ALE(n_cores=n_cores).fit(sel)  # NiMARE: ALE() (approximate null)
    corrector = FWECorrector(
        method="montecarlo", n_iters=n_iters, voxel_thresh=v_thr, n_cores=n_cores
    )
    result = corrector.transform(result)
    text = _TEXT.format(
        n_foci_db=int(ss.foci_counts().sum()),
        n_exps_db=len(ss),
        n_foci_sel=int(sel.foci_counts().sum()),
        n_exps_sel=len(sel),
    )
    description, result.description, result.references = result.description, "", ""
    result.add_description(f"{text}{description}".strip())
    out = dataset_file.resolve().parent if output_dir is None else Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    if prefix is None:
        prefix = dataset_file.stem + "_"
    result.save_maps(output_dir=out, prefix=prefix)
    loc = Location(str(out))
    loc.write_bytes(f"{prefix}input_dataset.json", dataset_file.read_bytes())
    loc.write_bytes(f"{prefix}boilerplate.txt", result.description_.encode())
    loc.write_bytes(f"{prefix}references.bib", result.bibtex_.encode())
    return result
