"""NiMARE 0.22.1's public helpers at NiMARE's paths (issue #12), against the oracle.

``nimare_dask.utils``, ``nimare_dask.stats`` (NiMARE's names), ``nimare_dask.generate``,
``nimare_dask.io`` (NIMADS <-> Sleuth), ``nimare_dask.nimads`` and ``nimare_dask.dataset``:
(a) every parameter of NiMARE's signature is accepted the same way, (b) the numbers equal
NiMARE's on its own bundled data and on random inputs, (c) ``nd.utils`` works after
``import nimare_dask as nd`` in a fresh interpreter.
"""

from __future__ import annotations

import gzip
import inspect
import json
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

import nimare_dask as nd
from nimare_dask import generate as our_generate
from nimare_dask import io as our_io
from nimare_dask import nimads as our_nimads
from nimare_dask import stats as our_stats
from nimare_dask import utils as our_utils

nimare_utils = pytest.importorskip("nimare.utils")
nimare_stats = pytest.importorskip("nimare.stats")
nimare_io = pytest.importorskip("nimare.io")
nimare_generate = pytest.importorskip("nimare.generate")
nimare_nimads = pytest.importorskip("nimare.nimads")

ALL_METADATA = ["authors", "publication", "year", "doi", "pmid", "affiliations"]


# ------------------------------------------------------------------------- (a) signatures
def _assert_accepts_signature(ours, theirs) -> None:
    """Every call that NiMARE's signature accepts, ours accepts with the same meaning.

    Positional-or-keyword parameters sit at the same position, keyword-only ones can be given
    by keyword, optional parameters stay optional, literal defaults are equal, and whatever
    ours adds has a default.
    """
    ps = inspect.signature(ours).parameters
    pt = inspect.signature(theirs).parameters
    ours_list = list(ps.values())
    var_kw = any(p.kind is p.VAR_KEYWORD for p in ours_list)
    for i, (name, p) in enumerate(pt.items()):
        if p.kind is p.VAR_KEYWORD:
            assert var_kw, f"{theirs.__qualname__}: **{name} not accepted"
            continue
        if p.kind is p.VAR_POSITIONAL:
            assert any(q.kind is q.VAR_POSITIONAL for q in ours_list), f"*{name} not accepted"
            continue
        assert name in ps or var_kw, f"{theirs.__qualname__}: parameter {name!r} missing"
        if name not in ps:
            continue
        q = ps[name]
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.POSITIONAL_ONLY):
            assert q.kind in (q.POSITIONAL_OR_KEYWORD, q.POSITIONAL_ONLY), (
                f"{name!r} must be positional as in NiMARE"
            )
            assert ours_list.index(q) == i, f"{name!r} is at another position than in NiMARE"
        else:
            assert q.kind in (q.POSITIONAL_OR_KEYWORD, q.KEYWORD_ONLY), f"{name!r} by keyword"
        if p.default is not p.empty:
            assert q.default is not q.empty, f"{name!r} must be optional as in NiMARE"
            if isinstance(p.default, str | int | float | bool | type(None)):
                assert q.default == p.default, f"{name!r}: default {q.default!r} != {p.default!r}"
    for name, q in ps.items():
        if name not in pt and q.kind not in (q.VAR_KEYWORD, q.VAR_POSITIONAL):
            assert q.default is not q.empty, f"our extra parameter {name!r} needs a default"


SIGNATURE_PAIRS = [
    (our_utils.get_resource_path, nimare_utils.get_resource_path),
    (our_utils.get_template, nimare_utils.get_template),
    (our_utils.mm2vox, nimare_utils.mm2vox),
    (our_utils.vox2mm, nimare_utils.vox2mm),
    (our_utils.load_json, nimare_utils.load_json),
    (our_utils.tal2mni, nimare_utils.tal2mni),
    (our_utils.mni2tal, nimare_utils.mni2tal),
    (our_utils.unique_rows, nimare_utils.unique_rows),
    (our_stats.null_to_p, nimare_stats.null_to_p),
    (our_stats.nullhist_to_p, nimare_stats.nullhist_to_p),
    (our_stats.one_way, nimare_stats.one_way),
    (our_stats.two_way, nimare_stats.two_way),
    (our_stats.two_way_counts, nimare_stats.two_way_counts),
    (our_stats.pearson, nimare_stats.pearson),
    (our_stats.nlogp_bonferroni, nimare_stats.nlogp_bonferroni),
    (our_stats.nlogp_fdr, nimare_stats.nlogp_fdr),
    (our_generate.create_coordinate_studyset, nimare_generate.create_coordinate_studyset),
    (our_io.convert_nimads_to_sleuth, nimare_io.convert_nimads_to_sleuth),
    (our_io.convert_sleuth_to_nimads_dict, nimare_io.convert_sleuth_to_nimads_dict),
    (our_io.load_nimads, nimare_io.load_nimads),
]


@pytest.mark.parametrize(
    ("ours", "theirs"),
    SIGNATURE_PAIRS,
    ids=[f"{t.__module__}.{t.__name__}" for _, t in SIGNATURE_PAIRS],
)
def test_signature_accepts_nimare_parameters(ours, theirs):
    _assert_accepts_signature(ours, theirs)


def test_get_masker_signature():
    # NiMARE's memory default is joblib.Memory(location=None) (no caching); ours is None and the
    # argument is documented as ignored (the masker never caches), so only names/positions match.
    ours = inspect.signature(our_utils.get_masker).parameters
    theirs = inspect.signature(nimare_utils.get_masker).parameters
    assert list(ours) == list(theirs)
    assert ours["memory_level"].default == theirs["memory_level"].default == 1
    assert ours["memory"].default is None


def test_studyset_signature_accepts_nimare_parameters(pain_json):
    _assert_accepts_signature(our_nimads.Studyset.__init__, nimare_nimads.Studyset.__init__)
    # positional target and NiMARE's mask (defines the grid) work as in NiMARE
    from nimare_dask.workflows import amygdala_roi

    assert our_nimads.Studyset(str(pain_json), "mni152_2mm").grid.n_voxels == 228_483
    roi = our_nimads.Studyset(str(pain_json), mask=amygdala_roi())
    assert roi.grid.n_voxels == int((amygdala_roi().get_fdata() > 0).sum())


# ------------------------------------------------------------------------------ utils
def test_get_resource_path():
    path = our_utils.get_resource_path()
    # as NiMARE's: abspath() drops the separator its docstring promises
    theirs = nimare_utils.get_resource_path()
    assert os.path.isabs(path) and path.endswith(os.sep) == theirs.endswith(os.sep)
    assert Path(path).name == Path(theirs).name == "resources"
    assert Path(path, "templates", "tpl-MNI152NLin6Asym_res-02_desc-brain_mask.nii.gz").exists()


@pytest.mark.parametrize(
    ("space", "mask", "n_nonzero"),
    [
        ("mni152_2mm", None, 857785),
        ("mni152_2mm", "brain", 228483),
        ("ale_2mm", None, 857785),
        ("ale_2mm", "brain", 228483),
        ("mni152_1mm", "brain", 1827243),
    ],
)
def test_get_template_matches_nimare(space, mask, n_nonzero):
    ours = our_utils.get_template(space=space, mask=mask)
    theirs = nimare_utils.get_template(space=space, mask=mask)
    assert ours.shape == theirs.shape
    np.testing.assert_array_equal(ours.affine, theirs.affine)
    a, b = np.asanyarray(ours.dataobj), np.asanyarray(theirs.dataobj)
    assert a.dtype == b.dtype  # float32 T1, bool masks
    np.testing.assert_array_equal(a, b)
    assert int(np.count_nonzero(a)) == n_nonzero
    assert ours.get_data_dtype() == theirs.get_data_dtype()


def test_get_template_errors():
    with pytest.raises(FileNotFoundError, match="does not ship"):
        our_utils.get_template("mni152_1mm")  # the 1 mm T1 is not shipped
    with pytest.raises(ValueError, match="not supported"):
        our_utils.get_template("colin27")
    with pytest.raises(ValueError, match="not supported"):
        our_utils.get_template(mask="gm")


def test_mm2vox_vox2mm_match_nimare():
    rng = np.random.default_rng(0)
    for space in ("mni152_2mm", "mni152_1mm"):
        affine = nimare_utils.get_template(space, mask="brain").affine
        xyz = rng.uniform(-100, 100, size=(2000, 3))
        # exact half-voxel positions: NiMARE rounds them half to even (np.round)
        half = nimare_utils.vox2mm(rng.integers(0, 90, size=(200, 3)) + 0.5, affine)
        xyz = np.vstack([xyz, half, np.round(xyz)])
        ours, theirs = our_utils.mm2vox(xyz, affine), nimare_utils.mm2vox(xyz, affine)
        assert ours.dtype == theirs.dtype
        np.testing.assert_array_equal(ours, theirs)
        np.testing.assert_array_equal(
            our_utils.mm2vox(xyz[0], affine), nimare_utils.mm2vox(xyz[0], affine)
        )
        np.testing.assert_array_equal(
            our_utils.vox2mm(ours, affine), nimare_utils.vox2mm(theirs, affine)
        )
    # the package's own grid rounds the same way
    grid = nd.get_grid("mni152_2mm")
    np.testing.assert_array_equal(grid.mm_to_ijk(xyz), our_utils.mm2vox(xyz, grid.affine))


def test_tal2mni_mni2tal_match_nimare():
    rng = np.random.default_rng(1)
    for shape in [(500, 3), (3, 500), (3, 3), (1, 3), (3, 1)]:
        x = rng.uniform(-80, 80, size=shape)
        for ours, theirs in [
            (our_utils.tal2mni, nimare_utils.tal2mni),
            (our_utils.mni2tal, nimare_utils.mni2tal),
        ]:
            a, b = ours(x), theirs(x)
            assert a.shape == b.shape == shape
            # Same matrix, products summed in another order (NiMARE: a 4x4 homogeneous np.dot,
            # whose BLAS kernel depends on the shape; ours: 3x3 product plus offset): equal to
            # 1 ulp of ~100 mm (measured: bit-identical on 500 rows, 1 ulp on a single row).
            np.testing.assert_allclose(a, b, rtol=0, atol=1e-12)
    for bad in [np.zeros((4, 5)), np.zeros((2, 4))]:
        with pytest.raises(AttributeError, match="Nx3 or 3xN"):
            our_utils.tal2mni(bad)
        with pytest.raises(AttributeError):
            nimare_utils.tal2mni(bad)


def test_unique_rows_matches_nimare():
    rng = np.random.default_rng(2)
    ar = rng.integers(0, 4, size=(300, 3))
    np.testing.assert_array_equal(our_utils.unique_rows(ar), nimare_utils.unique_rows(ar))
    a, ca = our_utils.unique_rows(ar.astype(float), return_counts=True)
    b, cb = nimare_utils.unique_rows(ar.astype(float), return_counts=True)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(ca, cb)
    with pytest.raises(ValueError, match="2D"):
        our_utils.unique_rows(np.zeros(3))


def test_load_json_plain_and_gz(pain_json, tmp_path):
    gz = tmp_path / "pain.json.gz"
    with open(pain_json, "rb") as src, gzip.open(gz, "wb") as dst:
        shutil.copyfileobj(src, dst)
    expected = nimare_utils.load_json(str(pain_json))
    assert our_utils.load_json(str(pain_json)) == expected
    assert our_utils.load_json(pain_json) == expected  # a Path works too
    assert our_utils.load_json(str(gz)) == nimare_utils.load_json(str(gz)) == expected


def test_get_masker_matches_nimare(tmp_path):
    mask_img = nimare_utils.get_template("mni152_2mm", mask="brain")
    t1 = nimare_utils.get_template("mni152_2mm")
    ours = our_utils.get_masker(mask_img, memory="ignored-cache-dir", memory_level=3)
    theirs = nimare_utils.get_masker(mask_img)
    assert type(ours).__name__ == "NiftiMasker" and hasattr(ours, "mask_img_")
    a, b = ours.transform(t1), theirs.transform(t1)
    assert a.dtype == b.dtype == np.float32
    np.testing.assert_array_equal(a, b)
    assert a.shape[-1] == 228483
    assert not Path("ignored-cache-dir").exists()  # memory has no effect
    # a path, and an already-fitted masker (returned as is)
    path = tmp_path / "mask.nii.gz"
    mask_img.to_filename(path)
    np.testing.assert_array_equal(our_utils.get_masker(str(path)).transform(t1), b)
    assert our_utils.get_masker(ours) is ours
    with pytest.raises(ValueError, match="Masker"):
        our_utils.get_masker(42)


# ------------------------------------------------------------------------------ stats
def test_null_to_p_matches_nimare():
    rng = np.random.default_rng(3)
    null = rng.normal(size=5000)
    tests = [
        rng.normal(scale=2, size=300),
        np.round(rng.normal(scale=2, size=3000), 1),  # > 1000 values with ties: unique path
        np.concatenate([null[:50], [-10.0, 10.0, 0.0]]),  # values in the null, beyond it
    ]
    for test in tests:
        for tail in ("two", "upper", "lower"):
            for symmetric in (False, True):
                ours = our_stats.null_to_p(test, null, tail=tail, symmetric=symmetric)
                theirs = nimare_stats.null_to_p(test, null, tail=tail, symmetric=symmetric)
                assert type(ours) is type(theirs)
                np.testing.assert_array_equal(ours, theirs)
    # float32 null, int null, Python scalars (NiMARE returns a scalar) and a 0-d array (an array)
    null32 = null.astype(np.float32)
    np.testing.assert_array_equal(
        our_stats.null_to_p(tests[0], null32), nimare_stats.null_to_p(tests[0], null32)
    )
    ints = rng.integers(0, 20, size=400)
    np.testing.assert_array_equal(
        our_stats.null_to_p(ints[:40], ints, tail="upper"),
        nimare_stats.null_to_p(ints[:40], ints, tail="upper"),
    )
    for value in (1.5, 2, np.float64(-0.3), np.array(0.7)):
        ours = our_stats.null_to_p(value, null)
        theirs = nimare_stats.null_to_p(value, null)
        assert type(ours) is type(theirs) and np.shape(ours) == np.shape(theirs)
        np.testing.assert_array_equal(ours, theirs)
    with pytest.raises(ValueError, match="tail"):
        our_stats.null_to_p(1.0, null, tail="left")


def test_nullhist_to_p_matches_nimare():
    rng = np.random.default_rng(4)
    bins = np.round(np.arange(0, 0.5 + 1e-5, 1e-3), 5)
    weights = rng.random(bins.size) * np.exp(-np.arange(bins.size) / 50.0)
    weights[-20:] = 0  # empty top bins: the p floor is the smallest non-zero tail
    values = np.concatenate(
        [rng.uniform(-0.01, 0.6, 500), bins[:50], bins[:50] + 5e-4, [0.0, -1.0, 10.0]]
    )
    cases = [
        (values, weights),
        (values, weights.astype(np.float32)),  # NiMARE computes in the weights' dtype
        (values, rng.integers(0, 50, bins.size)),
        (values[:40], rng.random((bins.size, 40))),  # voxel-wise null
    ]
    for test, w in cases:
        ours = our_stats.nullhist_to_p(test, w, bins)
        theirs = nimare_stats.nullhist_to_p(test, w, bins)
        assert ours.dtype == theirs.dtype
        np.testing.assert_array_equal(ours, theirs)
    ours = our_stats.nullhist_to_p(np.float64(0.1), weights, bins)
    theirs = nimare_stats.nullhist_to_p(np.float64(0.1), weights, bins)
    assert np.ndim(ours) == np.ndim(theirs) == 0 and ours == theirs
    with pytest.raises(ValueError, match="bins"):
        our_stats.nullhist_to_p(values, weights[:-1], bins)


def test_chi2_tests_and_pearson_match_nimare():
    rng = np.random.default_rng(5)
    n = 40
    counts = rng.integers(0, n + 1, size=2000)
    np.testing.assert_array_equal(our_stats.one_way(counts, n), nimare_stats.one_way(counts, n))
    np.testing.assert_array_equal(
        our_stats.one_way(np.zeros(10), n), nimare_stats.one_way(np.zeros(10), n)
    )
    n1, n2 = 25, 60
    a = rng.integers(0, n1 + 1, size=3000)
    b = rng.integers(0, n2 + 1, size=3000)
    a[:10], b[:10] = 0, 0  # no study active: NiMARE's chi2 = 2.0 (kept here)
    a[10:20], b[10:20] = n1, n2  # every study active
    cells = np.stack([np.stack([a, b], -1), np.stack([n1 - a, n2 - b], -1)], axis=1)
    ours, theirs = our_stats.two_way(cells), nimare_stats.two_way(cells)
    np.testing.assert_array_equal(ours, theirs)
    assert (ours[:20] == 2.0).all()
    np.testing.assert_array_equal(
        our_stats.two_way_counts(a, b, n1, n2), nimare_stats.two_way_counts(a, b, n1, n2)
    )
    with pytest.raises(ValueError, match="shape"):
        our_stats.two_way(np.zeros((3, 2)))
    x = rng.normal(size=(1, 500))
    y = rng.normal(size=(30, 500)) + 0.3 * x
    np.testing.assert_array_equal(our_stats.pearson(x, y), nimare_stats.pearson(x, y))
    np.testing.assert_array_equal(our_stats.pearson(x[0], y), nimare_stats.pearson(x[0], y))


def _log_p(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    p = rng.uniform(size=4000) ** 6
    p[:15] = 1e-300  # far tail
    p[20:40] = p[40]  # ties
    p[50:70] = np.nan  # unevaluated tests
    p[70] = 1.0
    return np.log(p)


def test_nlogp_corrections_take_nimare_sign_and_match():
    lnp = _log_p(6)
    ours, theirs = our_stats.nlogp_bonferroni(lnp), nimare_stats.nlogp_bonferroni(lnp)
    np.testing.assert_array_equal(ours, theirs)
    for method in ("bh", "by"):
        ours = our_stats.nlogp_fdr(lnp, method=method)
        np.testing.assert_array_equal(ours, nimare_stats.nlogp_fdr(lnp, method=method))
        # our -ln(p) variant gives the same numbers negated (floored at 0 instead of capped)
        neg = our_stats.neglnp_fdr(-lnp, method=method)
        np.testing.assert_allclose(-neg, ours, rtol=0, atol=1e-12, equal_nan=True)
    lnp_full = lnp[~np.isnan(lnp)]
    np.testing.assert_array_equal(our_stats.nlogp_fdr(lnp_full), nimare_stats.nlogp_fdr(lnp_full))
    np.testing.assert_allclose(
        -our_stats.neglnp_bonferroni(-lnp),
        our_stats.nlogp_bonferroni(lnp),
        rtol=0,
        atol=1e-12,
        equal_nan=True,
    )
    # the sign mix-up fails loudly both ways
    with pytest.raises(ValueError, match="at most 0"):
        our_stats.nlogp_bonferroni(-lnp)
    with pytest.raises(ValueError, match="never negative"):
        our_stats.neglnp_bonferroni(lnp)
    with pytest.raises(ValueError, match="method"):
        our_stats.nlogp_fdr(lnp, method="holm")


def test_stats_exports_and_layering():
    for name in (
        "null_to_p",
        "nullhist_to_p",
        "one_way",
        "two_way",
        "two_way_counts",
        "pearson",
        "nlogp_bonferroni",
        "nlogp_fdr",
        "neglnp_bonferroni",
        "neglnp_fdr",
    ):
        assert name in our_stats.__all__ and callable(getattr(our_stats, name))
    src = Path(our_stats.__file__).parent
    for py in src.glob("*.py"):
        for line in py.read_text().splitlines():
            if line.lstrip().startswith(("import nimare_dask", "from nimare_dask")):
                assert line.split()[1].startswith("nimare_dask.stats"), f"{py.name}: {line}"


# ------------------------------------------------------------------------------ generate
@pytest.mark.parametrize(
    "kwargs",
    [
        dict(
            foci=2,
            n_studies=8,
            n_noise_foci=3,
            seed=42,
            sample_size=[20, 40],
            foci_percentage="75%",
        ),
        dict(foci=[(0, -52, 26), (40, 20, -10)], n_studies=12, seed=3, foci_percentage=0.5),
        dict(foci=0, n_studies=5, seed=1, n_noise_foci=2),
        dict(foci=3, fwhm=15, n_studies=6, seed=7, sample_size=list(range(10, 16))),
    ],
)
def test_create_coordinate_studyset_matches_nimare(kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gt_theirs, theirs = nimare_generate.create_coordinate_studyset(**kwargs)
    gt_ours, ours = our_generate.create_coordinate_studyset(**kwargs)
    assert gt_ours == gt_theirs  # same ground truth, same order
    assert list(ours.ids) == list(theirs.ids)
    a = ours.coordinates
    b = theirs.coordinates
    assert a["id"].tolist() == b["id"].tolist()  # same foci, in the same order
    np.testing.assert_array_equal(a[["x", "y", "z"]].to_numpy(), b[["x", "y", "z"]].to_numpy())
    sizes = theirs.metadata.set_index("id")["sample_sizes"]
    np.testing.assert_array_equal(ours.sample_sizes, [float(sizes[i][0]) for i in ours.ids])
    # ground-truth semantics: each signal study reports one focus near each true focus
    if kwargs.get("foci") and not kwargs.get("n_noise_foci"):
        xyz = ours.xyz()
        for focus in gt_ours:
            assert (np.linalg.norm(xyz - np.asarray(focus), axis=1) < 20).any()


def test_create_coordinate_studyset_validation():
    with pytest.raises(ValueError, match="foci"):
        our_generate.create_coordinate_studyset(foci="3")
    with pytest.raises(ValueError, match="foci_percentage"):
        our_generate.create_coordinate_studyset(foci_percentage=1.5)
    with pytest.raises(ValueError, match="sample_size"):
        our_generate.create_coordinate_studyset(sample_size=[1, 2, 3], n_studies=5)
    with pytest.raises(NotImplementedError):
        our_generate.create_coordinate_studyset(space="TAL")
    with pytest.raises(our_generate.GeneratorNotProvidedError, match="create_coordinate_studyset"):
        from nimare_dask.generate import create_coordinate_dataset  # noqa: F401


# ------------------------------------------------------------------------------ io
SLEUTH_FILES = ["test_sleuth_file.txt", "test_sleuth_file2.txt", "BOTH", "PAIN"]


@pytest.mark.parametrize("which", SLEUTH_FILES)
@pytest.mark.parametrize("target", [None, "MNI", "TAL", "ale_2mm", "mni152_2mm", "other"])
def test_convert_sleuth_to_nimads_dict_matches_nimare(nimare_test_data, which, target):
    pain = Path(our_utils.get_resource_path()) / "data" / "pain_sleuth.txt"
    files = {
        "BOTH": [
            str(nimare_test_data / "test_sleuth_file.txt"),
            str(nimare_test_data / "test_sleuth_file2.txt"),
        ],
        "PAIN": str(pain),
    }.get(which, str(nimare_test_data / which))
    kw = dict(target=target, studyset_id="ss", studyset_name="name")
    ours = our_io.convert_sleuth_to_nimads_dict(files, **kw)
    theirs = nimare_io.convert_sleuth_to_nimads_dict(files, **kw)
    assert ours == theirs  # ids, names, order, spaces, coordinates (TAL->MNI bit-identical)
    assert json.dumps(ours) == json.dumps(theirs)  # key order too
    assert our_io.convert_sleuth_to_nimads_dict(files)["id"] is None


@pytest.mark.parametrize(
    "bad", ["test_sleuth_file3.txt", "test_sleuth_file4.txt", "test_sleuth_file5.txt"]
)
def test_convert_sleuth_to_nimads_dict_rejects_what_nimare_rejects(nimare_test_data, bad):
    path = str(nimare_test_data / bad)
    with pytest.raises(ValueError):
        nimare_io.convert_sleuth_to_nimads_dict(path)
    with pytest.raises(our_io.SleuthError):  # a ValueError naming file and line
        our_io.convert_sleuth_to_nimads_dict(path)


def _sleuth_outputs(src, **kw):
    import tempfile

    out = {}
    for name, func in (
        ("ours", our_io.convert_nimads_to_sleuth),
        ("theirs", nimare_io.convert_nimads_to_sleuth),
    ):
        d = Path(tempfile.mkdtemp(prefix=f"sleuth-{name}-"))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            func(src, d, **kw)
        out[name] = {p.name: p.read_text() for p in sorted(d.iterdir())}
        shutil.rmtree(d)
    return out["ours"], out["theirs"]


def _with_inline_annotations(pain_json) -> dict:
    data = json.loads(Path(pain_json).read_text())
    for i, study in enumerate(data["studies"]):
        for analysis in study["analyses"]:
            analysis["annotations"] = {"include": i % 2 == 0, "w": 0.5 if i % 3 == 0 else 1}
    return data


def test_convert_nimads_to_sleuth_matches_nimare(pain_json, nimare_test_data):
    nimads = str(nimare_test_data / "nimads_studyset.json")
    annotation = json.loads((nimare_test_data / "nimads_annotation.json").read_text())
    inline = _with_inline_annotations(pain_json)
    cases = [
        (str(pain_json), {}),
        (str(pain_json), dict(decimal_precision=3, export_metadata=ALL_METADATA)),
        (nimads, dict(export_metadata=ALL_METADATA)),  # authors, publication, year in headers
        (nimads, dict(annotation=annotation)),  # one file per annotation value
        (str(nimare_test_data / "sample_size_nimads_studyset.json"), {}),
        (inline, {}),
        (inline, dict(annotation_columns=["include"], split_booleans=False)),
        (inline, dict(annotation_values={"w": [1]})),
    ]
    for src, kw in cases:
        ours, theirs = _sleuth_outputs(src, **kw)
        assert list(ours) == list(theirs), kw
        for name in ours:
            assert ours[name] == theirs[name], (kw, name)  # byte for byte


def test_convert_nimads_to_sleuth_talairach(pain_json, nimare_test_data):
    # NiMARE 0.22.1 writes the MNI numbers under "//Reference=TAL"; we write Talairach ones:
    # ours = mni2tal(NiMARE's), to the written precision (both sides rounded to 0.005).
    for src in (str(pain_json), str(nimare_test_data / "nimads_studyset.json")):
        ours, theirs = _sleuth_outputs(src, target="TAL")
        a = ours["nimads_sleuth_file.txt"].splitlines()
        b = theirs["nimads_sleuth_file.txt"].splitlines()
        assert a[0] == b[0] == "//Reference=TAL" and len(a) == len(b)
        n = 0
        for x, y in zip(a, b, strict=True):
            if x.startswith("//") or not x:
                assert x == y
                continue
            ours_xyz = np.array(x.split("\t"), dtype=float)
            theirs_tal = our_utils.mni2tal(np.array(y.split("\t"), dtype=float)[None])[0]
            assert np.abs(ours_xyz - theirs_tal).max() <= 0.005 + 1e-9
            n += 1
        assert n > 200


@pytest.mark.filterwarnings("ignore::nimare_dask.io.FociOutsideMaskWarning")
def test_sleuth_nimads_round_trip(pain_json, nimare_test_data, tmp_path):
    # Sleuth -> NIMADS dict -> Sleuth, ours against NiMARE's chain, then read back
    pain_txt = Path(our_utils.get_resource_path()) / "data" / "pain_sleuth.txt"
    for files in (str(pain_txt), str(nimare_test_data / "test_sleuth_file2.txt")):
        ours_dict = our_io.convert_sleuth_to_nimads_dict(files, target="MNI")
        theirs_dict = nimare_io.convert_sleuth_to_nimads_dict(files, target="MNI")
        ours, theirs = _sleuth_outputs(ours_dict)
        assert ours == _sleuth_outputs(theirs_dict)[1] == theirs
        written = tmp_path / Path(files).name
        written.write_text(ours["nimads_sleuth_file.txt"])
        again = our_io.read_sleuth(written)
        original = our_io.read_sleuth(files)
        assert list(again.ids) == list(original.ids)
        np.testing.assert_allclose(again.xyz(), original.xyz(), atol=0.005 + 1e-9)
        np.testing.assert_array_equal(again.sample_sizes, original.sample_sizes)
    # a Studyset object converts like its NIMADS file
    ss = our_io.load_nimads(str(pain_json))
    out = our_io.convert_nimads_to_sleuth(ss, tmp_path / "obj")
    assert [p.name for p in out] == ["nimads_sleuth_file.txt"]
    assert out[0].read_text() == _sleuth_outputs(str(pain_json))[1]["nimads_sleuth_file.txt"]


def test_convert_nimads_to_sleuth_errors(pain_json, tmp_path):
    with pytest.raises(our_io.StudysetError, match="decimal_precision"):
        our_io.convert_nimads_to_sleuth(str(pain_json), tmp_path, decimal_precision=-1)
    with pytest.raises(our_io.StudysetError, match="Failed to load studyset"):
        our_io.convert_nimads_to_sleuth(str(tmp_path / "missing.json"), tmp_path)
    ambiguous = {"notes": [{"analysis": "1", "note": {"foo": "bar"}}]}  # "1" in every study
    with pytest.raises(our_io.StudysetError, match="missing notes"):
        our_io.convert_nimads_to_sleuth(str(pain_json), tmp_path, annotation=ambiguous)


def test_load_nimads(pain_json, nimare_test_data):
    data = json.loads(Path(pain_json).read_text())
    theirs = nimare_io.load_nimads(str(pain_json))
    for src in (str(pain_json), pain_json, data):
        ours = our_io.load_nimads(src)
        assert list(ours.ids) == list(theirs.ids)
        np.testing.assert_array_equal(ours.xyz(), theirs.coordinates[["x", "y", "z"]].to_numpy())
    assert our_io.load_nimads(ours) is ours
    with pytest.raises(ValueError, match="dictionary"):
        our_io.load_nimads(42)
    # an annotation, also onto a Studyset object
    nimads = str(nimare_test_data / "nimads_studyset.json")
    annotation = json.loads((nimare_test_data / "nimads_annotation.json").read_text())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with_ann = our_io.load_nimads(nimads, annotation)
        plain = our_io.load_nimads(nimads)
    assert with_ann.labels == ["include"] and plain.labels == []
    again = our_io.load_nimads(plain, annotation)
    np.testing.assert_array_equal(
        np.asarray(again.annotation_matrix.values), np.asarray(with_ann.annotation_matrix.values)
    )
    assert int(np.asarray(with_ann.annotation_matrix.values).sum()) == len(annotation["notes"])


# ------------------------------------------------------------------------------ nimads, dataset
def test_nimads_studyset_and_dataset_paths(pain_json):
    assert our_nimads.Studyset is nd.Studyset
    ss = our_nimads.Studyset(str(pain_json))
    assert len(ss) == 21
    from nimare_dask.dataset import DatasetNotProvidedError

    with pytest.raises(DatasetNotProvidedError, match="nimare_dask.Studyset"):
        from nimare_dask.dataset import Dataset  # noqa: F401
    with pytest.raises(ImportError, match="removes it in 1.0"):
        nd.dataset.Dataset  # noqa: B018
    with pytest.raises(AttributeError):
        nd.dataset.Something  # noqa: B018


# ------------------------------------------------------------------------------ (c) fresh process
def test_nd_utils_in_fresh_process():
    code = (
        "import sys\n"
        "import nimare_dask as nd\n"
        "img = nd.utils.get_template()\n"
        "assert img.shape == (91, 109, 91), img.shape\n"
        "assert nd.utils.get_template(mask='brain').get_fdata().sum() == 228483\n"
        "assert nd.stats.nlogp_bonferroni([-10.0])[0] < 0\n"
        "nd.generate, nd.nimads, nd.dataset\n"
        "assert not any(m == 'nimare' or m.startswith('nimare.') for m in sys.modules), 'nimare'\n"
        "print('ok')\n"
    )
    res = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=False
    )
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "ok"


# ------------------------------------------------ (d) NiMARE keywords of kernels, results, utils
@pytest.fixture(scope="module")
def half_mask():
    """The 2 mm brain mask cut below z index 40: NiMARE's affine, fewer voxels (a real subset
    grid, so that ``masker=`` must change which voxels the maps cover)."""
    import nibabel as nib

    brain = our_utils.get_template("mni152_2mm", mask="brain")
    data = np.asarray(brain.dataobj).copy()
    data[:, :, :40] = 0
    return nib.Nifti1Image(data.astype(np.uint8), brain.affine)


@pytest.fixture(scope="module")
def pain_pair_api(pain_json):
    from nimare.studyset import Studyset as NiMAREStudyset

    return nd.Studyset(pain_json), NiMAREStudyset(str(pain_json))


@pytest.mark.parametrize("which", ["MKDAKernel", "ALEKernel"])
def test_kernel_transform_masker_and_dataset_match_nimare(which, half_mask, pain_pair_api):
    from _parity import assert_within_ulp
    from nilearn.maskers import NiftiMasker
    from nimare.meta import kernel as nk

    from nimare_dask.meta import kernel as ok

    ours, theirs = pain_pair_api
    masker = NiftiMasker(half_mask).fit()
    ref = getattr(nk, which)().transform(theirs, masker=masker, return_type="array")
    keep = ours.foci_counts() > 0  # NiMARE leaves out analyses without foci (kernels docs)
    kernel = getattr(ok, which)(memory=None, memory_level=0)  # NiMARE's no-op keywords
    # the masker's grid, whichever way it is given (fitted / unfitted masker, image)
    for given in (masker, NiftiMasker(half_mask), half_mask):
        dense = kernel.transform(dataset=ours, masker=given, return_type="array")[keep]
        assert dense.shape == ref.shape == (keep.sum(), int(np.asarray(half_mask.dataobj).sum()))
        # MKDA holds constant values: exact; ALE within 1 float32 ulp (NiMARE's exp, _parity)
        assert_within_ulp(dense, ref, maxulp=0 if which == "MKDAKernel" else 1)
    sparse = kernel.transform(ours, masker, return_type="sparse")[np.flatnonzero(keep)]
    assert_within_ulp(sparse.toarray(), ref, maxulp=0 if which == "MKDAKernel" else 1)
    with pytest.raises(TypeError, match="not both"):
        kernel.transform(ours, dataset=ours)
    with pytest.raises(TypeError, match="memory_level"):
        getattr(ok, which)(memory_level="high")


def test_kernel_transform_dataframe_with_masker_matches_nimare(half_mask, pain_pair_api):
    from nilearn.maskers import NiftiMasker
    from nimare.meta import kernel as nk

    from nimare_dask.meta.kernel import KDAKernel, KernelTransformer

    _, theirs = pain_pair_api
    masker = NiftiMasker(half_mask).fit()
    coords = theirs.coordinates[["id", "x", "y", "z"]]
    ref = nk.KDAKernel(r=6).transform(coords, masker=masker, return_type="array")
    ours = KDAKernel(r=6).transform(coords, masker=masker, return_type="array")
    np.testing.assert_array_equal(ours, ref)  # KDA counts times a constant: exact
    # precomputed i, j, k are used instead of x, y, z, as NiMARE
    ijk = our_utils.mm2vox(coords[["x", "y", "z"]].to_numpy(), half_mask.affine)
    with_ijk = coords.assign(i=ijk[:, 0], j=ijk[:, 1], k=ijk[:, 2], x=0.0, y=0.0, z=0.0)
    ref_ijk = nk.KDAKernel(r=6).transform(with_ijk, masker=masker, return_type="array")
    np.testing.assert_array_equal(ref_ijk, ref)
    np.testing.assert_array_equal(
        KDAKernel(r=6).transform(with_ijk, masker=masker, return_type="array"), ref_ijk
    )
    assert issubclass(KDAKernel, KernelTransformer)
    with pytest.raises(TypeError, match="DataFrame with masker"):
        KDAKernel().transform(coords)


def test_metaresult_mask_matches_nimare(half_mask):
    from nilearn.maskers import NiftiMasker
    from nimare.results import MetaResult as NiMAREMetaResult

    from nimare_dask.results import MetaResult

    n = int(np.asarray(half_mask.dataobj).sum())
    z = np.random.default_rng(0).normal(size=n).astype(np.float32)
    ref = NiMAREMetaResult(None, mask=half_mask, maps={"z": z}).get_map("z")
    for mask in (half_mask, NiftiMasker(half_mask)):
        ours = MetaResult(mask=mask, maps={"z": z})
        assert ours.grid.n_voxels == n
        img = ours.get_map("z")
        np.testing.assert_array_equal(img.affine, ref.affine)
        np.testing.assert_array_equal(img.get_fdata(), ref.get_fdata())  # values copied: exact
    with pytest.raises(ValueError, match="different grids"):
        MetaResult(grid="mni152_2mm", mask=half_mask)


@pytest.mark.parametrize(
    "spaces",
    [["mni152_2mm"] * 3, ["MNI", "TAL", None], [None, None], [f"s{i}" for i in range(12)]],
)
def test_validate_coordinate_spaces_same_outcome(spaces):
    import pandas as pd

    df = pd.DataFrame({"x": 0.0, "space": spaces})
    try:
        nimare_utils.validate_coordinate_spaces(df)
    except ValueError as err:
        with pytest.raises(ValueError) as ours:
            our_utils.validate_coordinate_spaces(df)
        assert str(ours.value) == str(err)
    else:
        our_utils.validate_coordinate_spaces(df)


def test_validate_coordinate_spaces_studyset(pain_pair_api):
    ours, theirs = pain_pair_api
    nimare_utils.validate_coordinate_spaces(theirs.coordinates)  # harmonised: one space
    our_utils.validate_coordinate_spaces(ours)
    with pytest.raises(ValueError, match="missing"):  # no foci: NiMARE's "missing" error
        our_utils.validate_coordinate_spaces(ours.slice([]))
    with pytest.raises(ValueError, match="'space' column"):
        our_utils.validate_coordinate_spaces([1, 2])


def test_get_masker_mask_image_matches_nimare(half_mask, tmp_path, pain_pair_api):
    import nibabel as nib
    from nilearn.maskers import NiftiMasker

    path = tmp_path / "half.nii.gz"
    nib.save(half_mask, path)
    for masker in (NiftiMasker(str(path)), NiftiMasker(half_mask)):
        theirs = nimare_utils.get_masker_mask_image(masker)
        ours = our_utils.get_masker_mask_image(masker)
        assert ours[0] is masker and theirs[0] is masker
        np.testing.assert_array_equal(ours[1].get_fdata(), theirs[1].get_fdata())
    for args in ({}, {"message": "need one"}):
        with pytest.raises(ValueError) as err:
            nimare_utils.get_masker_mask_image(**args)
        with pytest.raises(ValueError, match=str(err.value)):
            our_utils.get_masker_mask_image(**args)
    # a Studyset's masker (our Grid): its mask, as NiMARE's Studyset.masker.mask_img
    ours, theirs = pain_pair_api
    grid, img = our_utils.get_masker_mask_image(dataset=ours)
    _, ref = nimare_utils.get_masker_mask_image(dataset=theirs)
    assert grid is ours.grid
    np.testing.assert_array_equal(img.get_fdata() > 0, ref.get_fdata() > 0)


def test_utils_load_nimads_and_studyset_reexports(pain_json):
    ours = our_utils.load_nimads(str(pain_json))
    assert list(ours.ids) == list(nimare_utils.load_nimads(str(pain_json)).ids)
    with pytest.raises(ValueError, match="dictionary"):
        our_utils.load_nimads(42)
    import nimare_dask.studyset as our_studyset

    for name in ("from_parquet", "write_parquet", "write_nimads", "to_nimads_dict", "from_nimads"):
        assert getattr(our_studyset, name) is getattr(our_nimads, name)
    assert list(our_studyset.from_nimads(str(pain_json)).ids) == list(ours.ids)


def test_convert_dataset_to_studyset_ids_and_out_file(tmp_path, nimare_test_data):
    from nimare.dataset import Dataset

    src = nimare_test_data / "test_pain_dataset.json"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = nimare_io.convert_dataset_to_studyset(
            Dataset(str(src)), studyset_id="sid", studyset_name="pain", out_file=tmp_path / "t.json"
        )
    ours = our_io.convert_dataset_to_studyset(
        str(src), studyset_id="sid", studyset_name="pain", out_file=tmp_path / "o.json"
    )
    assert (ours.info["id"], ours.info["name"]) == (ref.id, ref.name) == ("sid", "pain")
    theirs_json = json.loads((tmp_path / "t.json").read_text())
    ours_json = json.loads((tmp_path / "o.json").read_text())
    assert (ours_json["id"], ours_json["name"]) == (theirs_json["id"], theirs_json["name"])
    assert list(ours.ids) == list(ref.ids)
    n_points = sum(len(a["points"]) for s in theirs_json["studies"] for a in s["analyses"])
    assert sum(len(a["points"]) for s in ours_json["studies"] for a in s["analyses"]) == n_points


def test_convert_neurosynth_to_studyset_ids(nimare_test_data):
    kwargs = {"studyset_id": "ns", "studyset_name": "Neurosynth"}
    files = (
        nimare_test_data / "data-neurosynth_version-7_coordinates.tsv.gz",
        nimare_test_data / "data-neurosynth_version-7_metadata.tsv.gz",
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = nimare_io.convert_neurosynth_to_studyset(*map(str, files), **kwargs)
        ours = our_io.convert_neurosynth_to_studyset(*files, **kwargs)
        default = our_io.convert_neurosynth_to_studyset(*files)
    assert (ours.info["id"], ours.info["name"]) == (ref.id, ref.name)
    assert default.info["id"] == "nimads_from_neurosynth"  # NiMARE's default
    assert list(ours.ids) == list(ref.ids)


def test_correctors_and_focusfilter_take_nimare_keywords(half_mask, pain_pair_api):
    from nimare.correct import FDRCorrector as RefFDR
    from nimare.diagnostics import FocusFilter as RefFocusFilter

    from nimare_dask.correct import FDRCorrector, FWECorrector
    from nimare_dask.diagnostics import Diagnostics, FocusCounter, FocusFilter, Jackknife

    ours, theirs = pain_pair_api
    fdr = FDRCorrector(method="indep", alpha=0.01)
    assert fdr.get_params(deep=True) == fdr.get_params(deep=False)
    assert {k: fdr.get_params()[k] for k in ("method", "alpha")} == {
        k: RefFDR(method="indep", alpha=0.01).get_params(deep=True)[k] for k in ("method", "alpha")
    }
    assert FWECorrector(method="bonferroni").get_params(deep=False)["method"] == "bonferroni"
    assert issubclass(Jackknife, Diagnostics) and issubclass(FocusCounter, Diagnostics)
    ff = FocusFilter(mask=half_mask)
    assert ff.get_params(deep=True) == ff.get_params(deep=False)
    filtered = ff.transform(dataset=ours)
    ref = RefFocusFilter(mask=half_mask).transform(dataset=theirs)
    assert len(filtered.coordinates) == len(ref.coordinates) < len(theirs.coordinates)
    with pytest.raises(TypeError, match="not both"):
        ff.transform(ours, dataset=ours)


def test_decoder_fit_dataset_keyword_matches_nimare(nimare_resources):
    from nimare.decode.discrete import NeurosynthDecoder as Ref
    from nimare.nimads import Studyset as NiMAREStudyset

    from nimare_dask.decode import NeurosynthDecoder

    laird_json = nimare_resources / "neurosynth_laird_studyset.json"
    ours_ss = nd.Studyset(laird_json)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs_ss = NiMAREStudyset(str(laird_json))
        ref = Ref(correction=None)
        ref.fit(dataset=theirs_ss)
        ids = list(ours_ss.ids[:7])
        expected = ref.transform(ids)
    out = NeurosynthDecoder(correction=None).fit(dataset=ours_ss).transform(ids)
    assert list(out.index) == list(expected.index)
    # float64 on both sides; same formulas in another order: 1e-9 relative (test_decode_discrete)
    np.testing.assert_allclose(
        out.to_numpy(float), expected[out.columns].to_numpy(float), rtol=1e-9, equal_nan=True
    )
    with pytest.raises(TypeError, match="multiple values for argument 'studyset'"):
        NeurosynthDecoder().fit(ours_ss, dataset=ours_ss)
    with pytest.raises(TypeError, match="not both"):
        NeurosynthDecoder().fit(studyset=ours_ss, dataset=ours_ss)
