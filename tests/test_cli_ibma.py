"""``nimare-dask ibma``: a studyset JSON with images in, NiMARE's maps out."""

from __future__ import annotations

import logging
import warnings

import nibabel as nib
import numpy as np
from _ibma_data import simulate

from nimare_dask.cli import main


def test_ibma_cli_writes_nimare_maps(tmp_path):
    from nimare.meta.ibma import Stouffers as NiStouffers

    ours, dset, mask = simulate(tmp_path / "sim", seed=3)
    src = tmp_path / "studyset.json"
    ours.to_nimads(src)
    mask_path = tmp_path / "mask.nii.gz"
    mask.to_filename(mask_path)
    out = tmp_path / "out"
    rc = main(
        ["ibma", str(src), "--estimator", "Stouffers", "--param", "use_sample_size=true",
         "--mask", str(mask_path), "--output-dir", str(out), "--prefix", "st"]
    )  # fmt: skip
    assert rc == 0
    logging.disable(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ref = NiStouffers(use_sample_size=True, mask=mask).fit(dset)
    finally:
        logging.disable(logging.NOTSET)
    inside = mask.get_fdata() > 0
    for name in ("z", "p"):
        got = nib.load(out / f"st_{name}.nii.gz").get_fdata()[inside]
        want = ref.get_map(name, return_type="image").get_fdata()[inside]
        # the closed form in float32, as the estimator tests (4e-7 relative, float32 rounding)
        np.testing.assert_allclose(got, want, rtol=4e-7, atol=1e-7, equal_nan=True)
    assert "Stouffer" in (out / "st_boilerplate.txt").read_text()
    # a parameter the estimator does not have is a clear error, not ignored
    assert main(["ibma", str(src), "--estimator", "Stouffers", "--param", "bogus=1",
                 "--mask", str(mask_path), "--output-dir", str(out)]) == 2  # fmt: skip
