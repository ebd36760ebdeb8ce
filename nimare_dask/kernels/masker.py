"""NiMARE's ``masker`` and DataFrame inputs of the kernels, as a Grid and a Studyset.

NiMARE's ``KernelTransformer.transform(dataset, masker=None, ...)`` takes the grid of its MA
maps from a nilearn masker (its ``mask_img``), and accepts a coordinates DataFrame in place of
a collection. Inside nimare_dask the grid is a :class:`~nimare_dask.space.Grid`: these helpers
turn both NiMARE inputs into our objects, at the edge.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import pandas as pd

from nimare_dask.space import Grid, get_grid
from nimare_dask.studyset.core import Studyset

__all__ = ["grid_from_masker", "studyset_from_frame"]


def grid_from_masker(masker: Any) -> Grid:
    """The voxel grid a NiMARE-style masker (or mask) defines.

    Parameters
    ----------
    masker : Grid, nilearn masker, nibabel image, path or template name
        A fitted nilearn masker gives ``mask_img_``, an unfitted one ``mask_img``; an image
        or path is the mask (non-zero voxels inside); ``"mni152_2mm"`` etc. name a template.

    Returns
    -------
    Grid

    Raises
    ------
    ValueError
        A masker without a mask image, or anything else.
    """
    if isinstance(masker, Grid):
        return masker
    if hasattr(masker, "transform") and hasattr(masker, "inverse_transform"):  # nilearn
        img = getattr(masker, "mask_img_", None)
        if img is None:
            img = getattr(masker, "mask_img", None)
        if img is None:
            raise ValueError(f"{type(masker).__name__} defines no mask image (mask_img)")
        masker = img
    if isinstance(masker, os.PathLike):
        masker = os.fspath(masker)
    try:
        return get_grid(masker)
    except ValueError as err:
        raise ValueError(
            f"masker must be a nilearn masker, a mask image or its path, a Grid or a template "
            f"name, not {type(masker).__name__}: {err}"
        ) from None


def studyset_from_frame(coordinates: pd.DataFrame, grid: Grid) -> Studyset:
    """A Studyset from NiMARE's coordinates DataFrame input of ``transform``.

    Parameters
    ----------
    coordinates : pandas.DataFrame
        One row per focus: ``id`` and ``x, y, z`` (mm, in the mask's space) or ``i, j, k``
        (voxel indices of ``grid``, used instead of ``x, y, z`` when present, as NiMARE);
        optional ``sample_size`` (the mean per ``id`` is the analysis's sample size),
        ``study_id``, ``contrast_id``.
    grid : Grid
        The masker's grid.

    Returns
    -------
    Studyset
        One analysis per ``id`` (ids sorted), foci not harmonised (taken as MNI).

    Raises
    ------
    ValueError
        A column is missing.
    """
    if "id" not in coordinates.columns:
        raise ValueError("a coordinates DataFrame needs an 'id' column (one row per focus)")
    df = coordinates.reset_index(drop=True)
    if {"i", "j", "k"}.issubset(df.columns):
        xyz = grid.ijk_to_mm(df[["i", "j", "k"]].to_numpy(dtype=np.int64))
    elif {"x", "y", "z"}.issubset(df.columns):
        xyz = df[["x", "y", "z"]].to_numpy(dtype=np.float64)
    else:
        raise ValueError("a coordinates DataFrame needs columns x, y, z (or i, j, k)")
    ids = df["id"].astype(str)
    first = df.assign(id=ids).groupby("id", sort=True).first()
    analyses = pd.DataFrame(
        {
            "id": first.index.to_numpy(),
            "study_id": first["study_id"].astype(str).to_numpy()
            if "study_id" in first
            else first.index.to_numpy(),
            "contrast_id": first["contrast_id"].astype(str).to_numpy()
            if "contrast_id" in first
            else first.index.to_numpy(),
        }
    )
    points = pd.DataFrame(
        {"id": ids, "x": xyz[:, 0], "y": xyz[:, 1], "z": xyz[:, 2], "space": "MNI"}
    )
    metadata = None
    if "sample_size" in df.columns:
        sizes = df.assign(id=ids).groupby("id", sort=True)["sample_size"].mean()
        metadata = pd.DataFrame({"id": sizes.index.to_numpy(), "sample_size": sizes.to_numpy()})
    return Studyset.from_tables(
        analyses, points, metadata, target=grid, harmonize=False, source_name="coordinates"
    )
