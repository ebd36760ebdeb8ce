"""Simulated image studysets for the IBMA tests: NIfTI files, our Studyset and NiMARE's Dataset.

Each study contributes 1-3 analyses (dependent images), images have missing regions (exact
zeros or NaN), sample sizes differ. A small box mask keeps every fit fast.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

SHAPE = (9, 10, 8)
AFFINE = np.diag([4.0, 4.0, 4.0, 1.0])
AFFINE[:3, 3] = [-18.0, -20.0, -16.0]


def mask_image() -> nib.Nifti1Image:
    """A 9x10x8 grid (4 mm) with an ellipsoid mask of a few hundred voxels."""
    ijk = np.indices(SHAPE).reshape(3, -1).T
    centre = (np.array(SHAPE) - 1) / 2
    inside = (((ijk - centre) / (np.array(SHAPE) / 2)) ** 2).sum(axis=1) <= 1.0
    return nib.Nifti1Image(inside.reshape(SHAPE).astype(np.uint8), AFFINE)


def simulate(
    tmp_path: Path,
    seed: int = 0,
    n_studies: int = 7,
    max_per_study: int = 3,
    missing: bool = True,
    equal_n: bool = False,
):
    """Write images and return ``(our_studyset, nimare_dataset, mask_img)``.

    Parameters
    ----------
    tmp_path : Path
        Folder for the NIfTI files.
    seed : int
        Simulation seed.
    n_studies : int
        Studies; each has 1..max_per_study analyses.
    max_per_study : int
        Most analyses per study (1: all independent).
    missing : bool
        Blank a box (zeros or NaN) in some images.
    equal_n : bool
        Same sample size everywhere.
    """
    from nimare_dask.space import Grid
    from nimare_dask.studyset import Studyset

    rng = np.random.default_rng(seed)
    mask_img = mask_image()
    mask = mask_img.get_fdata() > 0
    folder = Path(tmp_path) / f"ibma_seed{seed}"
    folder.mkdir(parents=True, exist_ok=True)
    signal = np.zeros(SHAPE)
    signal[2:6, 3:7, 2:6] = 0.8
    analyses, meta, images, contrasts = [], [], [], {}
    for s in range(n_studies):
        sid = f"study{s:02d}"
        n_an = int(rng.integers(1, max_per_study + 1))
        study_effect = rng.normal(0, 0.4, SHAPE)
        contrasts[sid] = {"contrasts": {}}
        for a in range(n_an):
            cid = f"c{a}"
            n = 20 if equal_n else int(rng.integers(12, 60))
            beta = signal + study_effect + rng.normal(0, 0.5, SHAPE)
            varcope = rng.uniform(0.05, 0.4, SHAPE)
            t = beta / np.sqrt(varcope)
            from scipy import stats

            z = stats.norm.isf(stats.t.sf(t, n - 1))
            imgs = {"beta": beta, "varcope": varcope, "t": t, "z": z}
            if missing and rng.random() < 0.35:
                lo = rng.integers(0, np.array(SHAPE) - 3)
                box = tuple(slice(int(x), int(x) + 3) for x in lo)
                fill = 0.0 if rng.random() < 0.5 else np.nan
                for k in imgs:
                    imgs[k] = imgs[k].copy()
                    imgs[k][box] = fill
            paths = {}
            for k, arr in imgs.items():
                arr = np.where(mask, arr, 0.0).astype(np.float32)
                p = folder / f"{sid}_{cid}_{k}.nii.gz"
                nib.save(nib.Nifti1Image(arr, AFFINE), p)
                paths[k] = str(p)
                images.append({"id": f"{sid}-{cid}", "type": k, "path": str(p)})
            analyses.append({"study_id": sid, "contrast_id": cid})
            meta.append({"id": f"{sid}-{cid}", "sample_sizes": [n]})
            contrasts[sid]["contrasts"][cid] = {
                "images": paths,
                "metadata": {"sample_sizes": [n]},
            }
    ours = Studyset.from_tables(
        pd.DataFrame(analyses),
        metadata=pd.DataFrame(meta),
        images=pd.DataFrame(images),
        target=Grid.from_mask(mask_img),
    )
    from nimare.dataset import Dataset

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dset = Dataset(contrasts, target="mni152_2mm", mask=mask_img)
    return ours, dset, mask_img
