"""Fetchers: the real fetch code against local copies of the public files (never the network)."""

from __future__ import annotations

import hashlib
import inspect
import json
import shutil
from pathlib import Path

import pytest

from nimare_dask.datasets import (
    FetchError,
    UnverifiedDownloadWarning,
    fetch_neuroquery,
    fetch_neurosynth,
    get_data_dir,
)
from nimare_dask.datasets.registry import BASE_URLS, FEATURE_SETS, SHA256, database_files

NS = "data-neurosynth_version-7"


def _sha(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _all_paths(result: dict) -> list[str]:
    out = [result["coordinates"], result["metadata"]]
    for f in result["features"]:
        out.extend(f.values())
    return out


@pytest.fixture
def ns_src(shared_data) -> Path:
    return shared_data / "neurosynth-v7"


def test_fetch_from_local_folder_verifies_checksums(tmp_path, ns_src):
    res = fetch_neurosynth(tmp_path, base_url=ns_src)
    assert Path(res["coordinates"]) == tmp_path / "neurosynth" / f"{NS}_coordinates.tsv.gz"
    (feat,) = res["features"]
    assert set(feat) == {"features", "vocabulary", "keys", "metadata"}
    assert feat["features"].endswith("vocab-LDA50_source-abstract_type-weight_features.npz")
    for p in _all_paths(res):
        assert _sha(p) == SHA256[Path(p).name]
    assert not list((tmp_path / "neurosynth").glob(".*"))  # no leftover partial files


def test_env_variables_and_file_url(tmp_path, ns_src, monkeypatch):
    monkeypatch.setenv("NIMARE_DASK_DATA", str(tmp_path / "cache"))
    monkeypatch.setenv("NIMARE_DASK_BASE_URL", ns_src.as_uri())  # file:///...
    res = fetch_neurosynth()
    assert Path(res["metadata"]).parent == tmp_path / "cache" / "neurosynth"
    assert get_data_dir() == tmp_path / "cache"
    assert get_data_dir(tmp_path / "x") == tmp_path / "x"  # the argument wins


def test_default_data_dir_is_pooch_cache(monkeypatch):
    import pooch

    monkeypatch.delenv("NIMARE_DASK_DATA", raising=False)
    assert get_data_dir() == Path(pooch.os_cache("nimare_dask"))


def test_reuses_verified_files_and_refetches_corrupt_ones(tmp_path, ns_src):
    res = fetch_neurosynth(tmp_path, base_url=ns_src)
    # reuse: an empty source would fail, so nothing is fetched again
    empty = tmp_path / "empty"
    empty.mkdir()
    assert fetch_neurosynth(tmp_path, base_url=empty) == res
    # a truncated (corrupt) file is fetched again and verified
    coords = Path(res["coordinates"])
    coords.write_bytes(coords.read_bytes()[:1000])
    with pytest.raises(FetchError, match="not found"):
        fetch_neurosynth(tmp_path, base_url=empty)
    fetch_neurosynth(tmp_path, base_url=ns_src)
    assert _sha(coords) == SHA256[coords.name]
    # overwrite=True fetches even a good file again
    before = coords.stat().st_mtime_ns
    fetch_neurosynth(tmp_path, base_url=ns_src, overwrite=True)
    assert coords.stat().st_mtime_ns >= before and _sha(coords) == SHA256[coords.name]


def test_corrupt_source_is_rejected(tmp_path, ns_src):
    mirror = tmp_path / "mirror"
    shutil.copytree(ns_src, mirror)
    bad = mirror / f"{NS}_metadata.tsv.gz"
    bad.write_bytes(b"tampered" + bad.read_bytes())
    with pytest.raises(FetchError, match=rf"{NS}_metadata\.tsv\.gz: checksum mismatch"):
        fetch_neurosynth(tmp_path / "data", base_url=mirror)
    assert not (tmp_path / "data" / "neurosynth" / bad.name).exists()


def test_offline_error_names_url_and_suggests_base_url(tmp_path, monkeypatch):
    monkeypatch.delenv("NIMARE_DASK_BASE_URL", raising=False)
    # port 9 on localhost refuses connections: the HTTP path fails without any network use
    with pytest.raises(FetchError) as err:
        fetch_neurosynth(tmp_path, base_url="http://127.0.0.1:9/mirror/")
    msg = str(err.value)
    assert f"http://127.0.0.1:9/mirror/{NS}_coordinates.tsv.gz" in msg
    assert "NIMARE_DASK_BASE_URL" in msg


def test_unverified_files_warn(tmp_path, ns_src):
    mirror = tmp_path / "mirror"
    shutil.copytree(ns_src, mirror)
    terms = f"{NS}_vocab-terms_source-abstract_type-tfidf_features.npz"
    (mirror / terms).write_bytes(b"placeholder")  # no checksum recorded for this file
    with pytest.warns(UnverifiedDownloadWarning, match=terms):
        res = fetch_neurosynth(tmp_path / "d", vocab="terms", base_url=mirror)
    assert res["features"][0]["features"].endswith(terms)


def test_neuroquery_several_sources(tmp_path, shared_data):
    res = fetch_neuroquery(
        tmp_path, source=["abstract", "title"], base_url=shared_data / "neuroquery-v1"
    )
    assert [Path(f["features"]).name.split("source-")[1] for f in res["features"]] == [
        "abstract_type-count_features.npz",
        "title_type-count_features.npz",
    ]
    assert res["features"][0]["vocabulary"] == res["features"][1]["vocabulary"]
    for p in _all_paths(res):
        assert _sha(p) == SHA256[Path(p).name]


def test_bad_selection_lists_options(tmp_path):
    with pytest.raises(ValueError, match="LDA100/abstract/weight"):
        fetch_neurosynth(tmp_path, vocab="LDA77", base_url=tmp_path)
    with pytest.raises(ValueError, match="available"):
        fetch_neurosynth(tmp_path, version="9", base_url=tmp_path)


def test_file_names_and_urls_match_nimare(nimare_resources):
    """Same file names as NiMARE's manifest, same pinned repository commits."""
    manifest = json.loads((nimare_resources / "database_file_manifest.json").read_text())
    for entry in manifest:
        stem = entry["coordinates"].split("_coordinates")[0]  # data-<db>_version-<v>
        database, version = stem[5:].split("_version-")
        ours = database_files(database, version, FEATURE_SETS[database][version])
        assert ours["coordinates"] == entry["coordinates"]
        assert ours["metadata"] == entry["metadata"]
        assert len(ours["features"]) == len(entry["features"])
        for theirs in entry["features"]:
            assert theirs in ours["features"]
    import nimare.extract.extract as ext

    src = inspect.getsource(ext)
    for url in BASE_URLS.values():
        commit = url.rstrip("/").split("/raw/")[1].split("/")[0]
        assert commit in src
