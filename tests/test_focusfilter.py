"""FocusFilter against NiMARE 0.22.1's on the pain studyset (default mask and an ROI)."""

from __future__ import annotations

import warnings

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from nimare_dask.diagnostics import FocusFilter


def _nimare_filtered(pain_json, mask=None):
    from nimare.diagnostics import FocusFilter as NFF
    from nimare.studyset import Studyset as NSS

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return NFF(mask=mask).transform(NSS(str(pain_json)))


def _same_foci(ours, ref) -> None:
    a = ours.coordinates[["id", "x", "y", "z"]].reset_index(drop=True)
    b = ref.coordinates[["id", "x", "y", "z"]].reset_index(drop=True)
    a = a.sort_values(["id", "x", "y", "z"], kind="stable").reset_index(drop=True)
    b = b.sort_values(["id", "x", "y", "z"], kind="stable").reset_index(drop=True)
    b["x"], b["y"], b["z"] = (b[c].astype(float) for c in "xyz")
    pd.testing.assert_frame_equal(a, b, check_dtype=False)  # coordinates are exact mm values


def test_default_mask_as_nimare(pain_studyset, pain_json):
    out = FocusFilter().transform(pain_studyset)
    ref = _nimare_filtered(pain_json)
    assert len(pain_studyset.coordinates) == 267
    assert len(out.coordinates) == len(ref.coordinates) == 241  # NIMARE_FACTS 1.13
    _same_foci(out, ref)
    # every analysis is kept, with its metadata
    np.testing.assert_array_equal(out.ids, pain_studyset.ids)
    np.testing.assert_array_equal(out.sample_sizes, pain_studyset.sample_sizes)
    assert out.grid is pain_studyset.grid


def _left_hemisphere_las(path):
    """The MNI brain mask's left hemisphere (x < 0), stored LAS (flipped i axis), as NiMARE's
    bundled ROIs are: foci must be projected with the mask's own affine."""
    from nimare_dask.space import load_template

    img = load_template("mni152_2mm", "mask")
    data = np.asarray(img.dataobj).astype(np.int8)
    xs = img.affine[0, 0] * np.arange(data.shape[0]) + img.affine[0, 3]
    data[xs >= 0] = 0
    flip = np.diag([-1.0, 1.0, 1.0, 1.0])
    flip[0, 3] = data.shape[0] - 1
    las = nib.Nifti1Image(data[::-1].copy(), img.affine @ flip)
    las.to_filename(path)
    return path


def test_roi_mask_as_nimare(pain_studyset, pain_json, tmp_path):
    roi = _left_hemisphere_las(tmp_path / "left_las.nii.gz")
    out = FocusFilter(mask=str(roi)).transform(pain_studyset)
    ref = _nimare_filtered(pain_json, mask=str(roi))
    assert 0 < len(out.coordinates) < 241
    _same_foci(out, ref)
    assert (out.coordinates["x"] < 0).all()
    assert len(out) == len(pain_studyset)
    # an image and a nilearn masker give the same selection
    from nilearn.maskers import NiftiMasker

    img = nib.load(roi)
    for mask in (img, NiftiMasker(img).fit()):
        again = FocusFilter(mask=mask).transform(pain_studyset)
        pd.testing.assert_frame_equal(again.coordinates, out.coordinates)


def test_bad_input():
    with pytest.raises(TypeError, match="Studyset"):
        FocusFilter().transform({"studies": []})
