"""Fetchers: the real fetch code, never the network.

The fetch logic runs on small synthetic files (their checksums pinned for the test) served from a
temporary folder, a ``file://`` URL or a local HTTP server; the tests marked ``database`` fetch
the real public files from ``../shared/data`` and check them against the pinned checksums.
"""

from __future__ import annotations

import functools
import hashlib
import http.server
import inspect
import itertools
import json
import shutil
import threading
from pathlib import Path

import pytest

from nimare_dask.datasets import FetchError, fetch_neuroquery, fetch_neurosynth, get_data_dir
from nimare_dask.datasets.registry import (
    BASE_URLS,
    FEATURE_SETS,
    GIT_BLOB_SHA1,
    SHA256,
    checksum,
    database_files,
)

NS = "data-neurosynth_version-7"
#: what fetch_neurosynth() fetches by default (version 7, LDA50 topics)
NS_DEFAULT = [
    f"{NS}_coordinates.tsv.gz",
    f"{NS}_metadata.tsv.gz",
    f"{NS}_vocab-LDA50_source-abstract_type-weight_features.npz",
    f"{NS}_vocab-LDA50_vocabulary.txt",
    f"{NS}_vocab-LDA50_keys.tsv",
    f"{NS}_vocab-LDA50_metadata.json",
]
TERMS = f"{NS}_vocab-terms_source-abstract_type-tfidf_features.npz"


def _sha(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _git_blob(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data, usedforsecurity=False).hexdigest()


def _all_paths(result: dict) -> list[str]:
    out = [result["coordinates"], result["metadata"]]
    for f in result["features"]:
        out.extend(f.values())
    return out


@pytest.fixture
def ns_src(tmp_path, monkeypatch) -> Path:
    """A folder of small synthetic stand-ins for the default Neurosynth files, their SHA-256
    pinned in the registry for the duration of the test."""
    folder = tmp_path / "synthetic-neurosynth"
    folder.mkdir()
    for i, name in enumerate(NS_DEFAULT):
        data = f"{i}\tsynthetic stand-in for {name}\n".encode() * 200  # > 1000 bytes
        (folder / name).write_bytes(data)
        monkeypatch.setitem(SHA256, name, hashlib.sha256(data).hexdigest())
    return folder


@pytest.fixture
def http_base(ns_src):
    """``ns_src`` served over HTTP from 127.0.0.1 (a thread in this process)."""
    handler = functools.partial(_QuietHandler, directory=str(ns_src))
    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler) as server:
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield f"http://127.0.0.1:{server.server_address[1]}/"
        finally:
            server.shutdown()
            thread.join()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):
        pass


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


def test_http_download_verifies_and_reuses(tmp_path, http_base, ns_src):
    res = fetch_neurosynth(tmp_path, base_url=http_base)
    for p in _all_paths(res):
        assert _sha(p) == SHA256[Path(p).name] == _sha(ns_src / Path(p).name)
    assert not list((tmp_path / "neurosynth").glob(".*"))  # no leftover partial files
    # a corrupt local copy is downloaded again
    coords = Path(res["coordinates"])
    coords.write_bytes(b"truncated")
    assert fetch_neurosynth(tmp_path, base_url=http_base) == res
    assert _sha(coords) == SHA256[coords.name]


def test_http_download_with_wrong_checksum_is_rejected(tmp_path, http_base, ns_src):
    bad = ns_src / f"{NS}_metadata.tsv.gz"
    bad.write_bytes(b"tampered" + bad.read_bytes())
    with pytest.raises(FetchError, match=rf"{NS}_metadata\.tsv\.gz: checksum mismatch"):
        fetch_neurosynth(tmp_path, base_url=http_base)
    assert not (tmp_path / "neurosynth" / bad.name).exists()
    assert not list((tmp_path / "neurosynth").glob(".*"))  # the bad download is gone too


def test_file_without_pinned_checksum_is_refused(tmp_path, ns_src, monkeypatch):
    (ns_src / TERMS).write_bytes(b"placeholder")
    monkeypatch.delitem(GIT_BLOB_SHA1, TERMS)
    with pytest.raises(FetchError, match=rf"{TERMS}: no checksum is pinned"):
        fetch_neurosynth(tmp_path / "d", vocab="terms", base_url=ns_src)
    # refused before anything was fetched
    assert not any((tmp_path / "d").rglob("*.*"))


def test_git_blob_checksum_verifies_large_files(tmp_path, ns_src, monkeypatch):
    # git's id of the empty blob: the digest is git's own (git hash-object)
    assert _git_blob(b"") == "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391"
    assert TERMS in GIT_BLOB_SHA1 and TERMS not in SHA256  # pinned by its git blob id
    data = b"synthetic tf-idf features\n" * 100
    (ns_src / TERMS).write_bytes(data)
    monkeypatch.setitem(GIT_BLOB_SHA1, TERMS, _git_blob(data))
    vocab = f"{NS}_vocab-terms_vocabulary.txt"
    (ns_src / vocab).write_bytes(b"term\n")
    monkeypatch.setitem(SHA256, vocab, hashlib.sha256(b"term\n").hexdigest())
    res = fetch_neurosynth(tmp_path / "d", vocab="terms", base_url=ns_src)
    assert Path(res["features"][0]["features"]).read_bytes() == data
    (ns_src / TERMS).write_bytes(data + b"x")
    with pytest.raises(FetchError, match="git-blob-sha1 .* expected"):
        fetch_neurosynth(tmp_path / "e", vocab="terms", base_url=ns_src)


def test_every_fetchable_file_has_a_pinned_checksum():
    names = set()
    for database, versions in FEATURE_SETS.items():
        for version, combos in versions.items():
            files = database_files(database, version, combos)
            names.update([files["coordinates"], files["metadata"]])
            names.update(itertools.chain.from_iterable(f.values() for f in files["features"]))
    assert len(names) == 66
    assert not set(SHA256) & set(GIT_BLOB_SHA1)
    assert set(SHA256) | set(GIT_BLOB_SHA1) == names  # nothing pinned that cannot be fetched
    for name in names:
        algorithm, digest = checksum(name)
        assert len(digest) == {"sha256": 64, "git-blob-sha1": 40}[algorithm]
        int(digest, 16)
    with pytest.raises(KeyError, match="no checksum"):
        checksum("data-neurosynth_version-9_coordinates.tsv.gz")


@pytest.mark.database
def test_real_files_match_their_pinned_checksums(tmp_path, shared_data):
    res = fetch_neurosynth(tmp_path, base_url=shared_data / "neurosynth-v7")
    assert [Path(p).name for p in _all_paths(res)] == NS_DEFAULT
    for p in _all_paths(res):
        assert _sha(p) == SHA256[Path(p).name]
    for p in sorted(shared_data.glob("*/data-*")):  # every real file we hold is pinned
        assert _sha(p) == SHA256[p.name], p.name


@pytest.mark.database
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
