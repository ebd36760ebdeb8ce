"""NIMADS and legacy Dataset JSON through nimare_dask.io: parity with NiMARE 0.22.1."""

from __future__ import annotations

import json
import warnings

import nimare  # noqa: F401 (the oracle, a test dependency)
import numpy as np
import pytest

from nimare_dask.io import convert_dataset_to_studyset, load_nimads, write_nimads

# Same Lancaster matrix in float64 on both sides: differences ~1e-13 mm.
ATOL_MM = 1e-6


def _nimare(kind, path):
    from nimare.dataset import Dataset
    from nimare.studyset import Studyset

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if kind == "legacy":
            return Studyset.from_dataset(Dataset(str(path)))
        return Studyset(str(path))


CASES = [
    ("nimads", "resources", "nidm_pain_studyset.json", 21, 267),
    ("legacy", "resources", "nidm_pain_dset.json", 21, 267),
    ("legacy", "tests/data", "neurosynth_dset.json", 14, 583),  # MNI and TAL foci
    ("nimads", "tests/data", "sample_size_nimads_studyset.json", 15, 69),
    ("legacy", "tests/data", "neurosynth_laird_studies.json", 17, 1117),  # MNI/TAL/UNKNOWN
]


@pytest.mark.parametrize("kind,folder,name,n_analyses,n_foci", CASES)
def test_matches_nimare(nimare_dir, kind, folder, name, n_analyses, n_foci):
    path = nimare_dir / folder / name
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # unknown-space / outside-mask notices
        ours = load_nimads(path) if kind == "nimads" else convert_dataset_to_studyset(path)
    theirs = _nimare(kind, path)
    assert list(ours.ids) == list(theirs.ids)
    assert len(ours) == n_analyses and len(ours.coordinates) == n_foci
    oc, tc = ours.coordinates, theirs.coordinates
    assert list(oc["id"]) == list(tc["id"])
    np.testing.assert_allclose(
        oc[["x", "y", "z"]].to_numpy(float), tc[["x", "y", "z"]].to_numpy(float), atol=ATOL_MM
    )
    # sample sizes are means of whole numbers: exact (NaN where both lack one)
    np.testing.assert_array_equal(ours.sample_sizes, np.asarray(theirs.sample_sizes(), float))


def test_write_nimads_round_trip(tmp_path, pain_studyset):
    out = write_nimads(pain_studyset, tmp_path / "ss.json")
    assert "studies" in json.loads(out.read_text())
    back = load_nimads(out)
    assert list(back.ids) == list(pain_studyset.ids)
    np.testing.assert_array_equal(back.xyz(), pain_studyset.xyz())
    np.testing.assert_array_equal(back.sample_sizes, pain_studyset.sample_sizes)
