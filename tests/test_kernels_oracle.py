"""MA kernels against NiMARE 0.22.1 (the oracle): dense, sparse and summary forms.

Tolerances: MKDA/KDA maps hold the kernel's constant ``value`` (``float32(count) *
float32(value)`` for KDA) and are compared **exactly**. ALE maps are within **1 float32 ulp**:
both sides build the same float64 kernel (``gaussian_filter`` of an impulse, same sigma
arithmetic on 2 mm voxels), cast it to float32 and take a float32 max, but NiMARE's Gaussian
goes through numpy's ``exp``, whose last bit depends on the CPU (``tests/_parity.py``).
Summaries are float64 sums on our side; NiMARE's are float32 sums of the same float32 values
(integers for MKDA), hence ``rtol=1e-6`` (float32 accumulation over a few hundred studies)
where values are not integers.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from _parity import ULP_BELOW_ONE, assert_sparse_within_ulp, assert_within_ulp
from nimare.meta import kernel as nk  # the oracle: a declared test dependency, never skipped

from nimare_dask import Studyset
from nimare_dask.kernels import ALEKernel, KDAKernel, MKDAKernel

PAIRS = [
    (ALEKernel(), nk.ALEKernel()),
    (ALEKernel(fwhm=10), nk.ALEKernel(fwhm=10)),
    (ALEKernel(fwhm=7.3), nk.ALEKernel(fwhm=7.3)),
    (ALEKernel(sample_size=20), nk.ALEKernel(sample_size=20)),
    (MKDAKernel(), nk.MKDAKernel()),
    (MKDAKernel(r=6, value=2.5), nk.MKDAKernel(r=6, value=2.5)),
    (KDAKernel(), nk.KDAKernel()),
    (KDAKernel(r=8, value=0.3), nk.KDAKernel(r=8, value=0.3)),
]


def _ids(pair):
    return repr(pair[0])


@pytest.fixture(scope="module")
def pain_pair(pain_json):
    from nimare.studyset import Studyset as NiMAREStudyset

    return Studyset(pain_json), NiMAREStudyset(str(pain_json))


def _with_foci(ours: Studyset) -> np.ndarray:
    """Rows of ours that NiMARE returns (it drops analyses without coordinates)."""
    return ours.foci_counts() > 0


def _assert_ma(ours, theirs, kernel, err_msg=""):
    """MKDA/KDA: exact (constant values); ALE: 1 float32 ulp (NiMARE's exp, module docstring)."""
    if isinstance(kernel, ALEKernel):
        assert_within_ulp(ours, theirs, maxulp=1, err_msg=err_msg)
    else:
        np.testing.assert_array_equal(ours, theirs, err_msg=err_msg)


@pytest.mark.parametrize("pair", PAIRS, ids=_ids)
def test_pain_dense_sparse_summary(pair, pain_pair):
    ours_k, theirs_k = pair
    ours, theirs = pain_pair
    expected = theirs_k.transform(theirs, return_type="array")
    keep = _with_foci(ours)
    assert list(np.asarray(ours.ids)[keep]) == list(theirs.ids)
    dense = ours_k.transform(ours, return_type="array")[keep]
    assert dense.dtype == expected.dtype == np.float32
    _assert_ma(dense, expected, ours_k, "dense")  # see module docstring
    lazy = ours_k.transform(ours, chunks=5).values[keep]
    np.testing.assert_array_equal(lazy, dense)  # ours, computed another way: exact
    csr = ours_k.transform(ours, return_type="sparse")[np.flatnonzero(keep)]
    their_csr = theirs_k.transform(theirs, return_type="sparse")
    if isinstance(ours_k, ALEKernel):
        assert_sparse_within_ulp(csr, their_csr, maxulp=1, err_msg="sparse")
    else:
        np.testing.assert_array_equal(csr.toarray(), their_csr.toarray())
    np.testing.assert_array_equal(csr.toarray(), dense)
    summary = ours_k.transform(ours, return_type="summary", chunks=4).values
    if isinstance(ours_k, KDAKernel) and not isinstance(ours_k, MKDAKernel):
        with pytest.raises(NotImplementedError):  # NiMARE cannot; we sum the dense maps
            theirs_k.transform(theirs, return_type="summary_array")
        np.testing.assert_allclose(summary, expected.astype(np.float64).sum(0), rtol=1e-12)
    elif isinstance(ours_k, MKDAKernel) and ours_k.value != int(ours_k.value):
        # NiMARE's MKDA summary casts `value` to int32 (2.5 -> 2), unlike its own dense maps;
        # ours is the sum of the maps
        their_summary = theirs_k.transform(theirs, return_type="summary_array")
        counts = (expected > 0).sum(0)
        np.testing.assert_array_equal(their_summary, counts * int(ours_k.value))
        np.testing.assert_array_equal(summary, counts * ours_k.value)
    else:
        their_summary = theirs_k.transform(theirs, return_type="summary_array")
        np.testing.assert_allclose(summary, their_summary, rtol=1e-6, atol=0)
    _assert_ma(ours_k.max_values(ours)[keep], expected.max(1), ours_k, "max_values")


def test_pain_ale_union_matches_nimare_ale_stat(pain_pair):
    # the log1m reduction is what ALE needs: 1 - exp(sum log(1 - MA)) = NiMARE's ALE stat
    from nimare.meta.cbma import ALE

    ours, theirs = pain_pair
    stat = 1.0 - np.exp(ALEKernel().reduce(ours, "log1m", chunks=6).values)
    result = ALE(null_method="approximate").fit(theirs)
    expected = result.get_map("stat", return_type="array")
    # NiMARE stores the float64 ALE as float32: compare after the same cast. NiMARE sums
    # float32 log1p(-MA) (ours: float64) and takes 1 - exp(.) with numpy's exp, whose last bit
    # depends on the CPU; near 1, one float64 ulp of exp (2^-53) is many float32 ulps of a
    # small ALE value (1e-10): within 1 float32 ulp plus 2^-53 (measured on an AVX2-only
    # CPU: 46 voxels differ by exactly 2^-53)
    assert_within_ulp(stat, expected, maxulp=1, atol=ULP_BELOW_ONE, err_msg="ALE stat")


# ---------------------------------------------------------------------- Neurosynth v7
@pytest.fixture(scope="module")
def neurosynth_subset(shared_data):
    """~300 Neurosynth v7 studies (every 48th; MNI, TAL and UNKNOWN spaces) with random
    sample sizes, as our Studyset and as NiMARE's kernel input (a DataFrame of the same
    harmonised mm coordinates, so that only the kernels are compared)."""
    import warnings

    from nimare.utils import get_masker, get_template

    folder = shared_data / "neurosynth-v7"
    meta = pd.read_table(folder / "data-neurosynth_version-7_metadata.tsv.gz", dtype={"id": str})
    keep = set(meta["id"].iloc[::48])
    meta = meta[meta["id"].isin(keep)]
    coords = pd.read_table(
        folder / "data-neurosynth_version-7_coordinates.tsv.gz", dtype={"id": str}
    )
    coords = coords[coords["id"].isin(keep)]
    space = dict(zip(meta["id"], meta["space"], strict=True))
    rng = np.random.default_rng(7)
    analyses = pd.DataFrame({"study_id": meta["id"], "contrast_id": "1"})
    points = pd.DataFrame(
        {"id": coords["id"] + "-1", "x": coords["x"], "y": coords["y"], "z": coords["z"],
         "space": coords["id"].map(space)}
    )  # fmt: skip
    metadata = pd.DataFrame(
        {"id": analyses["study_id"] + "-1", "sample_sizes": rng.integers(6, 60, len(analyses))}
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # UNKNOWN-space foci are kept as MNI (a warning)
        ours = Studyset.from_tables(analyses, points, metadata, source_name="neurosynth subset")
    frame = ours.coordinates[["id", "x", "y", "z"]].copy()
    n_by_id = dict(zip(ours.ids, ours.sample_sizes, strict=True))
    frame["sample_size"] = frame["id"].map(n_by_id)
    masker = get_masker(get_template("mni152_2mm", mask="brain"))
    return ours, frame, masker


@pytest.mark.database
@pytest.mark.parametrize(
    "pair",
    [
        (ALEKernel(), nk.ALEKernel()),
        (ALEKernel(fwhm=10), nk.ALEKernel(fwhm=10)),
        (MKDAKernel(), nk.MKDAKernel()),
        (KDAKernel(), nk.KDAKernel()),
    ],
    ids=_ids,
)
def test_neurosynth_subset(pair, neurosynth_subset):
    ours_k, theirs_k = pair
    ours, frame, masker = neurosynth_subset
    assert 280 <= len(ours) <= 310
    keep = _with_foci(ours)
    expected = theirs_k.transform(frame, masker=masker, return_type="sparse")
    csr = ours_k.transform(ours, return_type="sparse")[np.flatnonzero(keep)]
    assert csr.shape == expected.shape
    if isinstance(ours_k, ALEKernel):  # 1 ulp (module docstring), compared sparsely
        assert_sparse_within_ulp(csr, expected, maxulp=1, err_msg="sparse")
    else:
        assert (csr != expected).nnz == 0  # exact equality, compared sparsely
    # the lazy dense form too, for the first chunk of 64 analyses (only that chunk runs)
    first = ours_k.transform(ours, chunks=64).isel(analysis=slice(0, 64)).values
    n_first = int(keep[:64].sum())
    np.testing.assert_array_equal(first[keep[:64]], csr[:n_first].toarray())  # ours: exact
    summary = ours_k.transform(ours, return_type="summary").values
    np.testing.assert_allclose(
        summary, np.asarray(expected.sum(axis=0), dtype=np.float64).ravel(), rtol=1e-6
    )
    if isinstance(ours_k, MKDAKernel):
        np.testing.assert_array_equal(
            summary, theirs_k.transform(frame, masker=masker, return_type="summary_array")
        )


def test_1mm_sigma_differs_from_nimare_by_sqrt2():
    # NiMARE's sigma = FWHM / sqrt(prod(zooms)) * sqrt(2) / (2 sqrt(2 ln 2)) is only right at
    # 2 mm; at 1 mm it is sqrt(2) too wide. Ours is FWHM / (2 sqrt(2 ln 2)) / zoom (documented).
    from nimare.meta.utils import get_ale_kernel

    from nimare_dask.kernels import ale_sigma_vox
    from nimare_dask.space import load_template

    img_1mm, img_2mm = load_template("mni152_1mm"), load_template("mni152_2mm")
    their_1mm, _ = get_ale_kernel(img_1mm, fwhm=10)
    their_2mm, _ = get_ale_kernel(img_2mm, fwhm=10)
    ours_1mm = ale_sigma_vox(10, img_1mm.header.get_zooms())
    ours_2mm = ale_sigma_vox(10, img_2mm.header.get_zooms())
    # same value at 2 mm, to a float64 ulp (NiMARE's sigma goes through numpy's log)
    their_2mm = np.broadcast_to(their_2mm, np.shape(ours_2mm))  # one sigma for the 3 axes
    assert_within_ulp(ours_2mm, their_2mm, maxulp=1, dtype=np.float64, err_msg="sigma")
    np.testing.assert_allclose(their_1mm / ours_1mm, np.sqrt(2), rtol=1e-7)  # float32 step
