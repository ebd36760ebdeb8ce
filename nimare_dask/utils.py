"""NiMARE 0.22.1's ``nimare.utils`` helpers, at the same path and with the same signatures.

``get_resource_path``, ``get_template``, ``mm2vox``, ``vox2mm``, ``load_json``, ``get_masker``,
``tal2mni``, ``mni2tal``, ``unique_rows``, ``validate_coordinate_spaces``,
``get_masker_mask_image`` and ``load_nimads`` behave as NiMARE's, on this package's shipped
resources. Inside the package the voxel grid is :class:`nimare_dask.space.Grid`
(:func:`nimare_dask.get_grid`); these functions are for scripts written against NiMARE.

Not shipped (so :func:`get_template` raises a ``FileNotFoundError`` naming them): the 1 mm
MNI152 T1 image (``get_template("mni152_1mm")``, 11 MB; the 1 mm brain mask is shipped).
"""

from __future__ import annotations

import gzip
import json
import logging
import os
import os.path as op

import nibabel as nib
import numpy as np

from nimare_dask.space import mni2tal as _mni2tal_rows
from nimare_dask.space import tal2mni as _tal2mni_rows

__all__ = [
    "get_masker",
    "get_masker_mask_image",
    "load_nimads",
    "get_resource_path",
    "get_template",
    "load_json",
    "mm2vox",
    "mni2tal",
    "tal2mni",
    "unique_rows",
    "validate_coordinate_spaces",
    "vox2mm",
]

LGR = logging.getLogger(__name__)

#: NiMARE's default float dtype for images and masked data.
DEFAULT_FLOAT_DTYPE = np.float32

_T1 = {
    "mni152_1mm": "tpl-MNI152NLin6Asym_res-01_T1w.nii.gz",
    "mni152_2mm": "tpl-MNI152NLin6Asym_res-02_T1w.nii.gz",
    "ale_2mm": "tpl-MNI152NLin6Asym_res-02_T1w.nii.gz",
}
_BRAIN = {
    "mni152_1mm": "tpl-MNI152NLin6Asym_res-01_desc-brain_mask.nii.gz",
    "mni152_2mm": "tpl-MNI152NLin6Asym_res-02_desc-brain_mask.nii.gz",
    "ale_2mm": "tpl-MNI152NLin6Asym_res-02_desc-brain_mask.nii.gz",  # flipped below
}


def get_resource_path() -> str:
    """Absolute path of the package's resources folder (the same expression as NiMARE's).

    Returns
    -------
    str
        ``.../nimare_dask/resources`` (NiMARE's docstring promises a trailing separator, but
        ``os.path.abspath`` drops it, there and here).
    """
    return op.abspath(op.join(op.dirname(__file__), "resources") + op.sep)


def _mask_img_to_bool(img: nib.Nifti1Image) -> np.ndarray:
    return np.asanyarray(img.dataobj).astype(bool)


def _load_shipped(fname: str, space: str) -> nib.Nifti1Image:
    path = op.join(get_resource_path(), "templates", fname)
    if not op.exists(path):
        raise FileNotFoundError(
            f"template {space!r} needs {fname}, which nimare_dask does not ship (NiMARE does); "
            "use mask='brain' or space='mni152_2mm'"
        )
    return nib.load(path)


def get_template(space: str = "mni152_2mm", mask: str | None = None) -> nib.Nifti1Image:
    """Load a template image, as NiMARE's ``get_template``.

    Parameters
    ----------
    space : {"mni152_1mm", "mni152_2mm", "ale_2mm"}
        MNI152NLin6Asym at 1 mm (182 x 218 x 182) or 2 mm (91 x 109 x 91). ``"ale_2mm"`` is the
        2 mm T1; with ``mask="brain"`` it is GingerALE's "more conservative" brain mask, stored
        with a flipped x axis (affine ``diag(-2, 2, 2)``), as NiMARE ships it: the same 228,483
        voxels as the ``mni152_2mm`` brain mask, built here by flipping that mask (voxel for
        voxel identical to NiMARE's file).
    mask : {None, "brain"}
        The T1 image (float32 data) or the brain mask (boolean data).

    Returns
    -------
    nibabel.Nifti1Image
        The image (its header is the file's, as NiMARE's).

    Raises
    ------
    ValueError
        An unknown ``space`` or ``mask``.
    FileNotFoundError
        ``get_template("mni152_1mm")`` (the 1 mm T1 is not shipped).
    """
    if space not in _T1:
        raise ValueError(f"Space '{space}' not supported")
    if mask is None:
        img = _load_shipped(_T1[space], space)
        return nib.Nifti1Image(
            img.get_fdata(dtype=DEFAULT_FLOAT_DTYPE), affine=img.affine, header=img.header
        )
    if mask != "brain":
        raise ValueError(f"Mask option '{mask}' not supported")
    img = _load_shipped(_BRAIN[space], space)
    data = _mask_img_to_bool(img)
    affine = img.affine
    if space == "ale_2mm":
        # GingerALE's mask is stored left-to-right flipped: same voxels, x axis reversed.
        flip = np.diag([-1.0, 1.0, 1.0, 1.0])
        flip[0, 3] = data.shape[0] - 1
        data = np.ascontiguousarray(data[::-1])
        affine = affine @ flip
        return nib.Nifti1Image(data, affine=affine, header=img.header)
    return nib.Nifti1Image(data, affine=affine, header=img.header)


def mm2vox(xyz, affine) -> np.ndarray:
    """Convert mm coordinates to voxel indices (rounded half to even, as NiMARE's).

    Parameters
    ----------
    xyz : (X, 3) array_like
        Coordinates in mm (a single (3,) coordinate also works).
    affine : (4, 4) array_like
        The image's affine.

    Returns
    -------
    numpy.ndarray
        (X, 3) int indices (eager). Coordinates off the grid move to the nearest voxel.
    """
    # Adapted from NiMARE 0.22.1 (MIT, Copyright (c) 2018 NiMARE developers)
    with np.errstate(invalid="ignore"):
        ijk = np.round(nib.affines.apply_affine(np.linalg.inv(affine), xyz)).astype(int)
    return ijk


def vox2mm(ijk, affine) -> np.ndarray:
    """Convert voxel indices to mm coordinates (no rounding).

    Parameters
    ----------
    ijk : (X, 3) array_like
        Voxel indices (a single (3,) index also works).
    affine : (4, 4) array_like
        The image's affine.

    Returns
    -------
    numpy.ndarray
        (X, 3) float coordinates (eager).
    """
    # Adapted from NiMARE 0.22.1 (MIT, Copyright (c) 2018 NiMARE developers)
    return nib.affines.apply_affine(affine, ijk)


def load_json(source):
    """Load a JSON file (plain or ``.gz``) and return what it holds.

    Parameters
    ----------
    source : str or path-like
        The file.

    Returns
    -------
    object
        The parsed JSON.
    """
    source_str = os.fspath(source)
    if str(source_str).endswith(".gz"):
        with gzip.open(source, "rt", encoding="utf-8") as f_obj:
            return json.load(f_obj)
    with open(source, encoding="utf-8") as f_obj:
        return json.load(f_obj)


def get_masker(mask, memory=None, memory_level=1):
    """A fitted nilearn masker from a mask image, path or masker (NiMARE's ``get_masker``).

    Parameters
    ----------
    mask : str, nibabel.Nifti1Image or nilearn masker
        A path or image becomes a :class:`nilearn.maskers.NiftiMasker` (no standardising,
        detrending or smoothing; float32 output); a masker is fitted if needed and returned.
    memory : joblib.Memory, str or Path, optional
        Accepted for NiMARE compatibility and **ignored**: the masker never caches (NiMARE's
        default is no caching too). Inside nimare_dask, masking is
        :meth:`nimare_dask.space.Grid.to_map`.
    memory_level : int, default=1
        Accepted and ignored, as ``memory``.

    Returns
    -------
    nilearn.maskers.NiftiMasker or the given masker
        Fitted.
    """
    from nilearn.maskers import NiftiMasker

    del memory, memory_level  # documented as having no effect
    if isinstance(mask, str | os.PathLike):
        mask = nib.load(os.fspath(mask))
    if isinstance(mask, nib.nifti1.Nifti1Image):
        mask = nib.Nifti1Image(_mask_img_to_bool(mask), affine=mask.affine, header=mask.header)
        mask = NiftiMasker(
            mask,
            standardize=False,
            detrend=False,
            smoothing_fwhm=None,
            dtype=DEFAULT_FLOAT_DTYPE,
        )
    if not (hasattr(mask, "transform") and hasattr(mask, "inverse_transform")):
        raise ValueError(
            "mask argument must be a string, a nibabel image, or a Nilearn Masker instance."
        )
    if hasattr(mask, "dtype") and mask.dtype is None:
        mask.dtype = DEFAULT_FLOAT_DTYPE
    if not hasattr(mask, "mask_img_"):
        mask.fit()
    return mask


def _rows_or_columns(coords, func):
    """Apply a row-wise (N, 3) transform to NiMARE's (N, 3) or (3, N) input."""
    # Adapted from NiMARE 0.22.1 (MIT, Copyright (c) 2018 NiMARE developers): the shape rules
    coords = np.asarray(coords)
    shape = np.array(coords.shape)
    if coords.ndim == 2 and all(shape == 3):
        LGR.info("Input is an ambiguous 3x3 matrix.\nAssuming coords are row vectors (Nx3).")
        use_dim = 1
    elif not any(shape == 3) or coords.ndim != 2:
        raise AttributeError("Input must be an Nx3 or 3xN matrix.")
    else:
        use_dim = int(np.where(shape == 3)[0][0])
    if use_dim == 1:
        return func(coords)
    return func(coords.T).T


def tal2mni(coords) -> np.ndarray:
    """Talairach to MNI with Lancaster's ``icbm_other`` transform (BrainMap's tal2icbm_other).

    Parameters
    ----------
    coords : (X, 3) or (3, X) array_like
        Talairach coordinates (rows, or columns when no axis but the first has length 3;
        a 3 x 3 input is read as rows, as NiMARE's).

    Returns
    -------
    numpy.ndarray
        MNI coordinates, in the input's layout (eager).
    """
    return _rows_or_columns(coords, _tal2mni_rows)


def mni2tal(coords) -> np.ndarray:
    """MNI to Talairach with Lancaster's ``icbm_other`` transform (BrainMap's icbm_other2tal).

    Parameters
    ----------
    coords : (X, 3) or (3, X) array_like
        MNI coordinates (see :func:`tal2mni` for the layout).

    Returns
    -------
    numpy.ndarray
        Talairach coordinates, in the input's layout (eager).
    """
    return _rows_or_columns(coords, _mni2tal_rows)


def unique_rows(ar, return_counts=False):
    """Remove repeated rows from a 2-D array (rows come back sorted by their bytes).

    Parameters
    ----------
    ar : 2-D numpy.ndarray
        The array.
    return_counts : bool
        Also return how often each unique row occurs.

    Returns
    -------
    ar_out : numpy.ndarray
        The unique rows.
    unique_counts : numpy.ndarray
        Only with ``return_counts=True``.

    Notes
    -----
    From scikit-image's ``unique_rows`` (Copyright (C) 2019, the scikit-image team), as in
    NiMARE 0.22.1 (MIT, Copyright (c) 2018 NiMARE developers).
    """
    if ar.ndim != 2:
        raise ValueError(f"unique_rows() only makes sense for 2D arrays, got {ar.ndim}d")
    ar = np.ascontiguousarray(ar)
    ar_row_view = ar.view(f"|S{ar.itemsize * ar.shape[1]}")
    if return_counts:
        _, unique_row_indices, counts = np.unique(
            ar_row_view, return_index=True, return_counts=True
        )
        return ar[unique_row_indices], counts
    _, unique_row_indices = np.unique(ar_row_view, return_index=True)
    return ar[unique_row_indices]


def validate_coordinate_spaces(coordinates) -> None:
    """Check that every focus is in one declared space (NiMARE's ``validate_coordinate_spaces``).

    Parameters
    ----------
    coordinates : pandas.DataFrame or Studyset
        A table with a ``space`` column (as NiMARE's ``coordinates``: after harmonisation it
        holds the target space). A :class:`~nimare_dask.studyset.core.Studyset` is checked on
        its harmonised foci, which are all in its grid's MNI space (what NiMARE's
        ``Studyset.coordinates["space"]`` says): it passes when it has foci.

    Raises
    ------
    ValueError
        No focus declares a space (NiMARE's message), or the ``space`` column holds more than
        one value.
    """
    # Adapted from NiMARE 0.22.1 (MIT, Copyright (c) 2018 NiMARE developers): nimare/utils.py
    import pandas as pd

    from nimare_dask.studyset.core import Studyset

    if isinstance(coordinates, Studyset):
        n = len(coordinates.coordinates)
        coordinates = pd.DataFrame({"space": [coordinates.space] * n}, dtype=object)
    if not isinstance(coordinates, pd.DataFrame) or "space" not in coordinates.columns:
        raise ValueError(
            "validate_coordinate_spaces needs a DataFrame with a 'space' column or a Studyset, "
            f"got {type(coordinates).__name__}"
        )
    coord_spaces = coordinates["space"].dropna().unique()
    if coord_spaces.size == 0:
        raise ValueError(
            "Coordinate space information is missing from the Dataset. "
            "Ensure the Dataset coordinates include a valid 'space' column."
        )
    if coord_spaces.size > 1:
        shown = ", ".join(map(str, coord_spaces[:10]))
        suffix = "..." if coord_spaces.size > 10 else ""
        raise ValueError(
            "Mixed coordinate spaces detected in the Dataset (space column contains more than "
            f"one value: {shown}{suffix}). Provide a target space when creating the Dataset "
            "to harmonize coordinates, or convert coordinates to a common space before "
            "running a meta-analysis."
        )


def get_masker_mask_image(masker=None, dataset=None, message=None):
    """A masker and its mask image (NiMARE's ``get_masker_mask_image``).

    Parameters
    ----------
    masker : nilearn masker or Grid, optional
        The masker; its ``mask_img`` (or ``labels_img``) is the image. A
        :class:`~nimare_dask.space.Grid` (what ``Studyset.masker`` is here) gives its mask.
    dataset : Studyset, optional
        Used when ``masker`` is None: its ``masker``.
    message : str, optional
        The error message when neither gives a masker.

    Returns
    -------
    masker : nilearn masker or Grid
        As given (or the dataset's).
    mask_img : nibabel.Nifti1Image
        A path is loaded; a Grid's mask comes as a uint8 image (eager).

    Raises
    ------
    ValueError
        No masker, or a masker without a mask image (NiMARE's messages).
    """
    # Adapted from NiMARE 0.22.1 (MIT, Copyright (c) 2018 NiMARE developers): nimare/utils.py
    from nimare_dask.space import Grid

    masker = masker or getattr(dataset, "masker", None)
    if masker is None:
        raise ValueError(message or "A masker is required.")
    if isinstance(masker, Grid):
        return masker, masker.mask_image()
    mask_img = getattr(masker, "mask_img", None) or getattr(masker, "labels_img", None)
    if mask_img is None:
        raise ValueError("Resolved masker does not define a mask image.")
    if isinstance(mask_img, str | os.PathLike):
        mask_img = nib.load(os.fspath(mask_img))
    return masker, mask_img


def load_nimads(studyset, annotation=None):
    """Load a studyset from a NIMADS dict, JSON path or Studyset (NiMARE's ``load_nimads``).

    The same function as :func:`nimare_dask.io.load_nimads` (which also takes ``target=``).

    Parameters
    ----------
    studyset : dict, str, Path or Studyset
        The studyset.
    annotation : dict, str or Path, optional
        A NIMADS annotation to attach.

    Returns
    -------
    Studyset
        Eager tables, on the MNI152 2 mm grid (a Studyset given keeps its grid).

    Raises
    ------
    ValueError
        ``studyset`` is none of these (NiMARE's message).
    """
    from nimare_dask.io import load_nimads as _load_nimads

    return _load_nimads(studyset, annotation)
