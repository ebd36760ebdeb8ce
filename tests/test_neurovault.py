"""fetch_neurovault_collection against a fake NeuroVault served on 127.0.0.1 (never the network)."""

import http.server
import json
import threading
from functools import partial

import numpy as np
import pytest

from nimare_dask.datasets.fetchers import FetchError
from nimare_dask.datasets.neurovault import fetch_neurovault_collection
from nimare_dask.generate import coarse_grid, create_image_studyset
from nimare_dask.studyset.images import image_matrix


@pytest.fixture(scope="module")
def mirror(tmp_path_factory):
    """A folder laid out as NeuroVault (API pages + media files) and an http server on it."""
    root = tmp_path_factory.mktemp("nv")
    truth, ss = create_image_studyset(
        n_studies=1,
        n_analyses_per_study=2,
        image_types=("t", "z"),
        seed=5,
        target=coarse_grid(2),
        out_dir=root / "sim",
    )
    media = root / "media" / "images" / "77"
    media.mkdir(parents=True)
    results = []
    for k, aid in enumerate(ss.ids):
        for imtype, map_type in (("t", "T map"), ("z", "Z map")):
            src = ss.get_images(imtype, ids=[aid])[0]
            name = f"{aid}_{imtype}.nii.gz"
            (media / name).write_bytes(open(src, "rb").read())
            results.append(
                {
                    "id": 100 + len(results),
                    "name": f"contrast{k}",
                    "map_type": map_type,
                    "analysis_level": "group",
                    "number_of_subjects": int(ss.sample_sizes[k]),
                    "file": f"https://neurovault.org/media/images/77/{name}",
                }
            )
    results.append(
        {
            "id": 999,
            "name": "subject map",
            "map_type": "Z map",
            "analysis_level": "single-subject",
            "number_of_subjects": 1,
            "file": "https://neurovault.org/media/images/77/none.nii.gz",
        }
    )
    api = root / "api" / "collections" / "77" / "images"
    api.mkdir(parents=True)
    hits = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def do_GET(self):
            hits.append(self.path)
            if self.path.startswith("/api/collections/77/images/"):
                page = 2 if "page=2" in self.path else 1
                body = {
                    "count": len(results),
                    "results": results[:3] if page == 1 else results[3:],
                    "next": "https://neurovault.org/api/collections/77/images/?format=json&page=2"
                    if page == 1
                    else None,
                }
                data = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                return
            super().do_GET()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), partial(Handler, directory=str(root))
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield {"url": f"http://127.0.0.1:{server.server_port}", "ss": ss, "hits": hits, "media": media}
    server.shutdown()


def test_fetch_collection_images_cache_and_checksums(tmp_path, mirror):
    ss = mirror["ss"]
    out = fetch_neurovault_collection(77, data_dir=tmp_path, base_url=mirror["url"], target=ss.grid)
    assert list(out.ids) == ["study-77-contrast0", "study-77-contrast1"]
    np.testing.assert_array_equal(out.sample_sizes, ss.sample_sizes)
    for imtype in ("t", "z"):  # the same maps as the originals
        np.testing.assert_array_equal(
            image_matrix(out, imtype).compute(), image_matrix(ss, imtype).compute()
        )
    folder = tmp_path / "neurovault" / "collection-77"
    manifest = json.loads((folder / "manifest.json").read_text())
    assert len(manifest) == 4 and all(len(v["sha256"]) == 64 for v in manifest.values())
    n_hits = len(mirror["hits"])
    again = fetch_neurovault_collection(
        77, data_dir=tmp_path, base_url=mirror["url"], target=ss.grid
    )
    assert len(mirror["hits"]) == n_hits  # listing and files reused from the cache
    assert again.get_images("z") == out.get_images("z")
    # a corrupted cached file fails its checksum and is fetched again
    victim = next(folder.glob("*_id-100_*"))
    victim.write_bytes(b"garbage")
    fetch_neurovault_collection(77, data_dir=tmp_path, base_url=mirror["url"], target=ss.grid)
    assert len(mirror["hits"]) == n_hits + 1
    np.testing.assert_array_equal(image_matrix(out, "t").compute(), image_matrix(ss, "t").compute())


def test_fetch_filters_and_errors(tmp_path, mirror):
    only_z = fetch_neurovault_collection(
        77,
        data_dir=tmp_path,
        base_url=mirror["url"],
        image_types=["z"],
        contrasts={"first": "contrast0"},
        target=mirror["ss"].grid,
    )
    assert list(only_z.ids) == ["study-77-first"]
    assert only_z.images.columns.tolist()[-1] == "z" and "t" not in only_z.images
    with pytest.raises(ValueError, match="No images were found for contrast nope"):
        fetch_neurovault_collection(
            77, data_dir=tmp_path, base_url=mirror["url"], contrasts={"nope": "zzz"}
        )
    with pytest.raises(FetchError, match="could not download"):
        fetch_neurovault_collection(78, data_dir=tmp_path, base_url=mirror["url"])
