"""MetaResult: naming grammar, map storage and laziness, NIfTI/TSV output, Zarr round trips."""

import json
import threading

import dask.array as da
import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import zarr

from nimare_dask import get_grid
from nimare_dask.results import MetaResult, add_correction, map_name, open_result, parse_map_name
from nimare_dask.results import store as result_store
from nimare_dask.studyset import StoreError

N = 228483  # voxels of the shipped 2 mm MNI152 brain mask


# ----------------------------------------------------------------------------- naming
@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"datatype": "z"}, "z"),
        ({"datatype": "p", "corr": "FDR", "method": "indep"}, "p_corr-FDR_method-indep"),
        (
            {
                "datatype": "z",
                "desc": "size",
                "level": "cluster",
                "corr": "FWE",
                "method": "montecarlo",
            },
            "z_desc-size_level-cluster_corr-FWE_method-montecarlo",
        ),
        (
            {"datatype": "logp", "level": "voxel", "corr": "FWE", "method": "montecarlo"},
            "logp_level-voxel_corr-FWE_method-montecarlo",
        ),
        ({"datatype": "z", "desc": "uniformity"}, "z_desc-uniformity"),
        (
            {"datatype": "histweights", "corr": "none", "method": "approximate"},
            "histweights_corr-none_method-approximate",
        ),
    ],
)
def test_map_name_grammar(kwargs, expected):
    assert map_name(**kwargs) == expected
    parsed = parse_map_name(expected)
    assert {k: v for k, v in parsed.items() if v is not None} == kwargs


def test_map_name_rejects_bad_entities():
    with pytest.raises(ValueError, match="level"):
        map_name("z", level="study")
    with pytest.raises(ValueError, match="corr"):
        map_name("z", corr="BH")
    with pytest.raises(ValueError, match="desc"):
        map_name("z", desc="size_level")
    with pytest.raises(ValueError, match="datatype"):
        map_name("")
    with pytest.raises(ValueError, match="not a map name"):
        parse_map_name("z_method-x_desc-y")  # entities out of order
    assert add_correction("z_desc-size_level-cluster", "FWE", "montecarlo") == (
        "z_desc-size_level-cluster_corr-FWE_method-montecarlo"
    )
    with pytest.raises(ValueError, match="already"):
        add_correction("p_corr-FDR_method-indep", "FWE", "bonferroni")


def test_names_of_nimare_results_parse():
    # Every map and null-distribution name NiMARE documents follows the grammar.
    names = [
        "stat",
        "p",
        "z",
        "logp",
        "z_desc-size_level-cluster_corr-FWE_method-montecarlo",
        "logp_desc-mass_level-cluster_corr-FWE_method-montecarlo",
        "p_desc-group1MinusGroup2",
        "z_desc-associationMass_level-cluster_corr-FWE_method-montecarlo",
        "values_level-voxel_corr-fwe_method-montecarlo",
        "values_corr-none_method-reducedMontecarlo",
    ]
    for name in names:
        parts = parse_map_name(name)
        assert map_name(**parts) == name


# ----------------------------------------------------------------------------- maps
def test_maps_are_cast_clipped_and_validated():
    p = np.linspace(0, 1, N)  # float64, with an exact 0
    logp = np.full(N, np.inf)
    labels = np.arange(N, dtype=np.int32)
    r = MetaResult(maps={"p": p, "logp_level-voxel": logp, "labels": labels, "z": p[None, :]})
    assert r.maps["p"].dtype == np.float32 and r.maps["z"].dtype == np.float32
    assert r.maps["labels"].dtype == np.int32
    assert r.get_map("p", "array")[0] == np.float32(1.4e-45)  # NiMARE's float32 p floor
    assert r.get_map("logp_level-voxel", "array")[0] == np.finfo(np.float32).max
    assert r.maps_names == ["p", "logp_level-voxel", "labels", "z"]
    with pytest.raises(ValueError, match="228483 voxels"):
        MetaResult(maps={"z": np.zeros(10)})
    with pytest.raises(ValueError, match="1-D"):
        MetaResult(maps={"z": np.zeros((2, N))})
    with pytest.raises(ValueError, match="name"):
        MetaResult(maps={"a/b": np.zeros(N)})
    with pytest.raises(TypeError, match="DataFrame"):
        MetaResult(tables={"t": {"a": 1}})


def test_get_map_errors_and_images():
    z = np.random.default_rng(0).normal(size=N).astype(np.float32)
    z[:5] = np.nan
    r = MetaResult(maps={"z": z, "p": np.full(N, 0.5)})
    with pytest.raises(KeyError, match="available maps: z, p"):
        r.get_map("logp")
    with pytest.raises(ValueError, match="return_type"):
        r.get_map("z", return_type="nifti")
    img = r.get_map("z")
    grid = get_grid()
    assert img.shape == grid.shape and np.allclose(img.affine, grid.affine)
    data = img.get_fdata()
    # NaN is written as 0 in images (as NiMARE), and the in-mask values round trip.
    assert not np.isnan(data).any()
    np.testing.assert_array_equal(data[grid.mask][5:], z[5:])
    assert (data[grid.mask][:5] == 0).all() and (data[~grid.mask] == 0).all()


def test_aliases_and_references():
    r = MetaResult(description="ALE \\citep{eickhoff2012activation,turkeltaub2002meta}.")
    assert r.description_ == r.description
    assert "@article{eickhoff2012activation," in r.bibtex_
    assert "@article{turkeltaub2002meta," in r.references
    r.add_description("FDR \\citep{benjamini1995controlling}.")
    assert r.description.endswith("FDR \\citep{benjamini1995controlling}.")
    assert r.references.count("@article") == 3


def _counting_map(counter, value=1.0, chunks=60000):
    """A lazy map whose chunks count how often they are computed."""
    lock = threading.Lock()

    def block(x):
        with lock:
            counter.append(1)
        return np.full(x.shape, value, dtype=np.float32)

    return da.zeros(N, chunks=chunks, dtype=np.float32).map_blocks(
        block, dtype=np.float32, meta=np.empty((0,), np.float32)
    )


def test_lazy_until_asked_and_one_pass():
    counter = []
    base = _counting_map(counter)
    r = MetaResult(maps={"stat": base, "z": base * 2, "p": base / 4})
    assert r.is_lazy
    r2 = r.copy()
    repr(r2)
    assert r2.maps_names == ["stat", "z", "p"]
    assert isinstance(r2.maps["z"].data, da.Array)
    assert counter == []  # nothing computed by construction, copy or repr
    np.testing.assert_array_equal(r.get_map("z", "array"), 2)
    n_chunks = base.npartitions
    assert len(counter) == n_chunks
    counter.clear()
    r.compute()  # all three maps share ``base``: one dask.compute, each chunk once
    assert len(counter) == n_chunks and not r.is_lazy
    assert r2.is_lazy  # the copy is independent
    counter.clear()


def test_copy_is_independent():
    r = MetaResult(
        maps={"z": np.zeros(N, np.float32)},
        tables={"t": pd.DataFrame({"a": [1, 2]})},
        null_distributions={"h": np.arange(3.0)},
    )
    c = r.copy()
    c.maps["z"].values[0] = 5
    c.tables["t"].loc[0, "a"] = 9
    c.null_distributions["h"][0] = 7
    c.add_maps({"p": np.ones(N)})
    assert r.get_map("z", "array")[0] == 0 and r.tables["t"].loc[0, "a"] == 1
    assert r.null_distributions["h"][0] == 0 and r.maps_names == ["z"]


# ----------------------------------------------------------------------------- files
def test_save_maps_matches_nimare(tmp_path):
    from nimare.results import MetaResult as NiMAREResult
    from nimare.utils import get_template

    rng = np.random.default_rng(1)
    maps = {"z": rng.normal(size=N).astype(np.float32), "p": rng.uniform(size=N).astype(np.float32)}
    maps["z"][:3] = np.nan
    ours = MetaResult(maps=maps)
    theirs = NiMAREResult(None, mask=get_template("mni152_2mm", mask="brain"), maps=dict(maps))
    written = ours.save_maps(tmp_path / "ours", prefix="ale")
    theirs.save_maps(str(tmp_path / "theirs"), prefix="ale")
    assert sorted(p.name for p in written) == ["ale_p.nii.gz", "ale_z.nii.gz"]
    assert sorted(p.name for p in (tmp_path / "theirs").iterdir()) == [
        "ale_p.nii.gz",
        "ale_z.nii.gz",
    ]
    for name in ("ale_p.nii.gz", "ale_z.nii.gz"):
        a = nib.load(tmp_path / "ours" / name)
        b = nib.load(tmp_path / "theirs" / name)
        assert a.shape == b.shape == (91, 109, 91)
        np.testing.assert_array_equal(a.affine, b.affine)
        np.testing.assert_array_equal(a.get_fdata(), b.get_fdata())  # NaN -> 0 on both
    # No separator without a prefix; a custom separator; a subset of maps.
    assert [p.name for p in ours.save_maps(tmp_path / "o2", names=["z"])] == ["z.nii.gz"]
    assert [p.name for p in ours.save_maps(tmp_path / "o3", "x", "-", ["p"])] == ["x-p.nii.gz"]
    with pytest.raises(KeyError, match="available maps"):
        ours.save_maps(tmp_path / "o4", names=["nope"])


def test_save_tables(tmp_path):
    clusters = pd.DataFrame(
        {"Cluster ID": ["1", "2"], "Size (mm3)": [800, 16], "Peak z": [6.7, 3.2]}
    )
    decoder = pd.DataFrame({"r": [0.1, 0.3]}, index=pd.Index(["pain", "motor"], name="feature"))
    r = MetaResult(tables={"clusters": clusters, "decoder": decoder})
    paths = r.save_tables(tmp_path, prefix="ale")
    assert sorted(p.name for p in paths) == ["ale_clusters.tsv", "ale_decoder.tsv"]
    back = pd.read_csv(tmp_path / "ale_clusters.tsv", sep="\t", dtype={"Cluster ID": str})
    pd.testing.assert_frame_equal(back, clusters, check_dtype=False)
    back = pd.read_csv(tmp_path / "ale_decoder.tsv", sep="\t", index_col=0)
    assert list(back.index) == ["pain", "motor"] and back.index.name == "feature"


class _Kernel:
    def get_params(self):
        return {"fwhm": None, "sample_size": np.int64(20)}


class _Estimator:
    def get_params(self):
        return {"kernel": _Kernel(), "null_method": "approximate", "weights": np.arange(2)}


def _full_result():
    rng = np.random.default_rng(2)
    maps = {
        "stat": rng.uniform(size=N).astype(np.float32),
        "z": da.from_array(rng.normal(size=N).astype(np.float32), chunks=50000),
        "z_desc-size_level-cluster_corr-FWE_method-montecarlo": rng.normal(size=N),
        "labels": np.arange(N) % 7,
    }
    tables = {
        "clusters": pd.DataFrame(
            {
                "Cluster ID": ["1", "2", None],
                "X": [1.5, np.nan, -3.0],
                "n": np.array([3, 1, 2], dtype=np.int64),
                "flag": [True, False, True],
                "peaks": [[1, 2], [], [3]],
            }
        ),
        "decoder": pd.DataFrame({"r": [0.1, 0.3]}, index=pd.Index(["a", "b"], name="feature")),
        "empty": pd.DataFrame({"a": pd.Series([], dtype=float)}),
    }
    nulls = {
        "histweights_corr-none_method-approximate": rng.uniform(size=100),
        "values_level-voxel_corr-fwe_method-montecarlo": np.arange(10, dtype=np.float32),
        "grid2d": np.ones((3, 4)),
    }
    return MetaResult(
        estimator=_Estimator(),
        maps=maps,
        tables=tables,
        null_distributions=nulls,
        description="ALE \\citep{eickhoff2012activation}.",
    )


@pytest.mark.parametrize("where", ["local", "memory"])
def test_zarr_round_trip(tmp_path, where):
    r = _full_result()
    loc = str(tmp_path / "res.zarr") if where == "local" else f"memory://result-{tmp_path.name}"
    assert r.to_zarr(loc) == loc
    back = open_result(loc)
    assert back.maps_names == r.maps_names
    assert back.is_lazy  # maps reopen as dask arrays
    for name in r.maps_names:
        a, b = r.get_map(name, "array"), back.get_map(name, "array")
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)
    for name, table in r.tables.items():
        pd.testing.assert_frame_equal(back.tables[name], table, check_dtype=False)
    assert back.tables["clusters"]["n"].dtype == np.int64
    assert back.tables["clusters"]["peaks"].tolist() == [[1, 2], [], [3]]
    for name, null in r.null_distributions.items():
        np.testing.assert_array_equal(back.null_distributions[name], null)
    assert back.description == r.description and back.references == r.references
    assert back.estimator is None
    assert (
        back.estimator_info
        == r.estimator_info
        == {
            "class": "_Estimator",
            "params": {
                "kernel": {"class": "_Kernel", "params": {"fwhm": None, "sample_size": 20}},
                "null_method": "approximate",
                "weights": [0, 1],
            },
        }
    )
    assert back.grid.same_as(r.grid)
    # Refuses to overwrite unless asked; overwriting replaces the contents.
    with pytest.raises(StoreError, match="exists"):
        r.to_zarr(loc)
    small = MetaResult(maps={"z": np.zeros(N)})
    small.to_zarr(loc, overwrite=True)
    assert open_result(loc).maps_names == ["z"] and open_result(loc).tables == {}


def test_zarr_store_is_plain_xarray_and_json(tmp_path):
    r = _full_result()
    loc = tmp_path / "res.zarr"
    r.to_zarr(loc)
    import xarray as xr

    # the pointer (written last) names the published version, a plain Zarr v3 group
    pointer = json.loads((loc / "nimare_dask.json").read_text())
    assert pointer["kind"] == "nimare_dask.result" and pointer["format_version"] == 2
    version = loc / pointer["version"]
    maps = xr.open_zarr(version, group="maps", zarr_format=3, consolidated=False)
    assert maps["z"].dims == ("voxel",) and maps["z"].dtype == np.float32
    info = zarr.open_group(str(version), mode="r").attrs["nimare_dask"]
    json.dumps(info)  # JSON only, no pickle
    assert info == pointer["info"] and info["format"] == "nimare_dask.result"
    assert info["grid"]["n_voxels"] == N
    assert [p.name for p in loc.iterdir() if p.is_dir()] == [pointer["version"]]


def test_open_result_refuses_bad_stores(tmp_path, monkeypatch):
    with pytest.raises(StoreError, match="no nimare_dask.result store"):
        open_result(tmp_path / "missing")
    r = MetaResult(maps={"z": np.zeros(N)})
    loc = tmp_path / "res.zarr"
    r.to_zarr(loc)
    with pytest.raises(StoreError, match="not on the grid given"):
        open_result(loc, grid="mni152_1mm")
    (loc / "nimare_dask.json").unlink()  # as if the first write had never published
    with pytest.raises(StoreError, match="no published"):
        open_result(loc)
    # A crash in the middle of a write leaves neither a result nor a temporary folder, and an
    # existing result stays as it was.
    good = tmp_path / "good.zarr"
    r.to_zarr(good)

    def boom(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(result_store, "_table_to_dataset", boom)
    bad = MetaResult(maps={"z": np.ones(N)}, tables={"t": pd.DataFrame({"a": [1]})})
    with pytest.raises(RuntimeError, match="disk full"):
        bad.to_zarr(tmp_path / "new.zarr")
    with pytest.raises(RuntimeError, match="disk full"):
        bad.to_zarr(good, overwrite=True)
    with pytest.raises(StoreError, match="no published|no nimare_dask.result"):
        open_result(tmp_path / "new.zarr")
    assert not [p for p in (tmp_path / "new.zarr").glob("v*")]  # the aborted version is gone
    assert len([p for p in good.iterdir() if p.is_dir()]) == 1
    assert open_result(good).get_map("z", "array").max() == 0
