"""NiMARE 0.22.1's ``nimare.workflows.misc``: conjunction analysis."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np

__all__ = ["conjunction_analysis"]


def conjunction_analysis(imgs: list) -> nib.Nifti1Image:
    """Minimum-statistic conjunction, as NiMARE: ``min`` where the product of the images is
    > 0, else 0 (so voxels negative in an even number of images also get their minimum).

    Parameters
    ----------
    imgs : list of str, Path or nibabel images
        At least two images on the same grid.

    Returns
    -------
    nibabel.Nifti1Image
        On the first image's grid, in the images' common dtype (eager).
    """
    if len(imgs) < 2:
        raise ValueError("Conjunction analysis requires more than one image.")
    arrays, ref = [], None
    for i, img in enumerate(imgs):
        if isinstance(img, str | Path):
            img = nib.load(str(img))
        elif not isinstance(img, nib.spatialimages.SpatialImage):
            raise ValueError(
                f"Invalid image type provided: {type(img)}. Must be a path to a NIfTI image "
                "or a NIfTI image object."
            )
        data = np.asanyarray(img.dataobj)
        if data.ndim == 4 and data.shape[3] == 1:
            data = data[..., 0]
        if data.ndim != 3:
            raise ValueError(f"image {i} is not 3-D (shape {data.shape})")
        if ref is None:
            ref = img
        elif data.shape != arrays[0].shape or not np.allclose(img.affine, ref.affine):
            raise ValueError(f"image {i} is not on the grid of image 0 (shape/affine differ)")
        arrays.append(data)
    stack = np.stack(arrays)
    out = np.where(np.prod(stack, axis=0) > 0, stack.min(axis=0), 0)
    return nib.Nifti1Image(out, ref.affine)
