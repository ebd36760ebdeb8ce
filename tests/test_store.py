"""The Zarr v3 studyset store: round trips, laziness, fsspec URLs and atomic writes."""

import json

import numpy as np
import pytest
import scipy.sparse as sp
import xarray as xr
import zarr

from nimare_dask import Studyset, open_studyset
from nimare_dask.studyset import StoreError
from nimare_dask.studyset import store as store_mod


def _assert_same(a: Studyset, b: Studyset):
    assert list(a.ids) == list(b.ids)
    np.testing.assert_array_equal(a.xyz(), b.xyz())
    np.testing.assert_array_equal(a.sample_sizes, b.sample_sizes)
    assert list(a.coordinates["space"]) == list(b.coordinates["space"])
    assert a.fingerprint == b.fingerprint
    assert a.labels == b.labels


@pytest.mark.parametrize("where", ["local", "memory"])
def test_round_trip_laird(tmp_path, nimare_resources, where):
    ss = Studyset(nimare_resources / "neurosynth_laird_studyset.json")
    loc = str(tmp_path / "laird.zarr") if where == "local" else f"memory://laird-{tmp_path.name}"
    assert ss.to_zarr(loc) == loc
    back = open_studyset(loc)
    _assert_same(ss, back)
    np.testing.assert_array_equal(back.annotation_matrix.values, ss.annotation_matrix.values)
    assert back.get_texts("abstract") == ss.get_texts("abstract")
    assert back.get_metadata(field="journal") == ss.get_metadata(field="journal")
    assert back.store is not None and "laird" in repr(back.store)


def test_sparse_annotations_and_images_round_trip(tmp_path, nimare_test_data):
    from nimare_dask.studyset import Annotations

    ss = Studyset(nimare_test_data / "neurosynth_dset.json")
    vals = sp.random(len(ss), 40, density=0.2, format="csr", random_state=1, dtype=np.float32)
    ss = Studyset.from_tables(
        **{**ss._tables(), "annotations": Annotations(vals, [f"t{i}" for i in range(40)])},
        harmonize=False,
    )
    ss.to_zarr(tmp_path / "s.zarr")
    back = open_studyset(tmp_path / "s.zarr")
    assert back.annotation_matrix.is_sparse
    np.testing.assert_array_equal(back.annotation_matrix.values.toarray(), vals.toarray())
    assert back.get_images("z") == ss.get_images("z")
    _assert_same(ss, back)


def test_store_layout_is_versioned_zarr_v3_with_format_version(tmp_path, pain_studyset):
    pain_studyset.to_zarr(tmp_path / "p.zarr")
    pointer = json.loads((tmp_path / "p.zarr" / "nimare_dask.json").read_text())
    assert pointer["kind"] == "nimare_dask.studyset"
    assert pointer["format_version"] == store_mod.FORMAT_VERSION == 2
    version = tmp_path / "p.zarr" / pointer["version"]
    root = json.loads((version / "zarr.json").read_text())
    assert root["zarr_format"] == 3 and root["node_type"] == "group"
    info = root["attributes"]["nimare_dask"]
    assert info == pointer["info"]
    assert info["n_analyses"] == 21 and info["n_foci"] == 267
    assert info["grid"]["n_voxels"] == 228_483
    # tables are plain xarray datasets, readable without nimare_dask
    pts = xr.open_zarr(version, group="points", zarr_format=3, consolidated=False)
    assert pts.sizes["point"] == 267 and pts["voxel"].dtype == np.int32


def test_store_of_format_version_1_gives_a_clear_error(tmp_path):
    # the layout before the pointer protocol: one Zarr group at the root
    root = zarr.open_group(str(tmp_path / "old.zarr"), mode="w", zarr_format=3)
    root.attrs["nimare_dask"] = {"format": "nimare_dask.studyset", "format_version": 1}
    with pytest.raises(StoreError, match="format version 1.*write it again"):
        open_studyset(tmp_path / "old.zarr")


def test_open_is_lazy_for_datasets(tmp_path, pain_studyset):
    pain_studyset.to_zarr(tmp_path / "p.zarr")
    ss = open_studyset(tmp_path / "p.zarr")
    ds = ss.store.dataset("points")
    import dask.array as da

    assert isinstance(ds["x"].data, da.Array)


def test_existing_store_needs_overwrite_and_survives(tmp_path, pain_studyset):
    loc = tmp_path / "p.zarr"
    pain_studyset.to_zarr(loc)
    small = pain_studyset.slice(pain_studyset.ids[:3])
    with pytest.raises(StoreError, match="overwrite=True"):
        small.to_zarr(loc)
    assert len(open_studyset(loc)) == 21
    small.to_zarr(loc, overwrite=True)
    assert len(open_studyset(loc)) == 3
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no leftovers
    # the replaced version is kept until the next commit (for readers still on it), no more
    small.to_zarr(loc, overwrite=True)
    versions = [p.name for p in loc.iterdir() if p.is_dir()]
    assert len(versions) == 2 and len(open_studyset(loc)) == 3


def test_crash_mid_write_leaves_old_store_intact(tmp_path, pain_studyset, monkeypatch):
    loc = tmp_path / "p.zarr"
    pain_studyset.to_zarr(loc)

    def boom(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(store_mod, "_write_tables", boom)
    with pytest.raises(RuntimeError, match="disk full"):
        pain_studyset.slice(pain_studyset.ids[:2]).to_zarr(loc, overwrite=True)
    assert len(open_studyset(loc)) == 21  # the old store is untouched
    assert len([p for p in loc.iterdir() if p.is_dir()]) == 1  # the new version removed


def test_unpublished_or_foreign_stores_refuse_to_open(tmp_path, pain_studyset):
    loc = tmp_path / "p.zarr"
    pain_studyset.to_zarr(loc)
    pointer_file = loc / "nimare_dask.json"
    pointer = json.loads(pointer_file.read_text())
    pointer_file.write_text(json.dumps({**pointer, "format_version": 99}))
    with pytest.raises(StoreError, match="newer"):
        open_studyset(loc)
    pointer_file.write_text(json.dumps({**pointer, "kind": "nimare_dask.result"}))
    with pytest.raises(StoreError, match="not a 'nimare_dask.studyset'"):
        open_studyset(loc)
    pointer_file.unlink()  # a first write that never published
    with pytest.raises(StoreError, match="no published"):
        open_studyset(loc)
    with pytest.raises(StoreError, match="no nimare_dask.studyset store"):
        open_studyset(tmp_path / "missing.zarr")


class CountingScheduler:
    """Counts the computes (as xarray's tests do) and the tasks each one ran."""

    def __init__(self):
        self.calls = 0
        self.tasks: list[int] = []

    def __call__(self, dsk, keys, **kwargs):
        import dask

        self.calls += 1
        graph = dsk.__dask_graph__() if hasattr(dsk, "__dask_graph__") else dsk
        self.tasks.append(len(graph))
        return dask.get(dsk, keys, **kwargs)


def test_open_and_select_compute_nothing_beyond_what_they_need(tmp_path, nimare_resources):
    import dask

    from nimare_dask.workflows import amygdala_roi

    ss = Studyset(nimare_resources / "neurosynth_laird_studyset.json")
    ss.to_zarr(tmp_path / "laird.zarr")
    n_labels = len(ss.labels)
    counter = CountingScheduler()
    with dask.config.set(scheduler=counter):
        back = open_studyset(tmp_path / "laird.zarr", chunks={"analysis": 10, "label": 1})
        assert back._points_src is not None and callable(back._points_src)  # foci not read yet
        ids = back.get_studies_by_mask(amygdala_roi())
        back.slice(ids)
        back.get_studies_by_coordinate([[-24, -4, -18]], r=12)
        assert counter.calls == 0  # opening and selecting by coordinates compute nothing
        assert back.annotation_matrix.values.chunksize == (10, 1)  # the chunks asked for
        label = back.labels[3]
        hits = back.get_studies_by_label(label, label_threshold=0.001)
    assert hits == ss.get_studies_by_label(label, label_threshold=0.001)
    assert ids == ss.get_studies_by_mask(amygdala_roi())
    # one compute, over that label's column only: a chunk per 10 analyses (a read and a select
    # each, plus the concatenation), not the whole matrix
    assert counter.calls == 1
    n_chunks = -(-len(ss) // 10)
    assert counter.tasks[0] <= 2 * n_chunks + 5 < n_labels * n_chunks
