"""Fetch a NeuroVault collection's statistical maps (cached, checksummed) as a Studyset.

The image list comes from the collection's API, ``<base_url>/api/collections/<id>/images/``
(paginated; ``next`` links are followed). Group-level maps whose ``map_type`` has an image type
(NiMARE's ``DEFAULT_MAP_TYPE_CONVERSION``: T map -> t, Z map -> z, p map -> p, variance ->
varcope, univariate/multivariate-beta map -> beta) are downloaded into
``<data_dir>/neurovault/collection-<id>/``, named as NiMARE names them
(``collection-<id>_id-<image id>_<file name>``).

Caching: the image list is saved as ``images.json`` and reused (``overwrite=True`` asks the
API again); every downloaded file's SHA-256 and source URL are recorded in ``manifest.json``.
A cached file is reused only when its SHA-256 matches the manifest; otherwise it is fetched
again. Downloads are written aside and moved into place, so an interrupted run never leaves a
truncated file under the final name. NeuroVault publishes no checksums, so the first download
is trusted and later reuse is verified against it.

A mirror: with ``base_url`` set, file URLs that start with the public NeuroVault address are
rewritten to the mirror (an offline copy serves the API JSON and the files under the same
paths).
"""

from __future__ import annotations

import collections
import json
import os
import re
import shutil
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

from nimare_dask.datasets.fetchers import FetchError, _digest, _part, get_data_dir
from nimare_dask.studyset.core import Studyset

__all__ = ["DEFAULT_MAP_TYPE_CONVERSION", "NEUROVAULT_URL", "fetch_neurovault_collection"]

NEUROVAULT_URL = "https://neurovault.org"
#: NeuroVault ``map_type`` -> image type (NiMARE 0.22.1's ``io.DEFAULT_MAP_TYPE_CONVERSION``).
DEFAULT_MAP_TYPE_CONVERSION = {
    "T map": "t",
    "variance": "varcope",
    "univariate-beta map": "beta",
    "multivariate-beta map": "beta",
    "Z map": "z",
    "p map": "p",
    "P map (given null hypothesis)": "p",
}


def _get(url: str, timeout: float = 60) -> bytes:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.read()
    except Exception as err:  # urllib's URLError, HTTPError, timeouts
        raise FetchError(f"could not download {url} ({type(err).__name__}: {err})") from None


def _listing(collection_id: int, base: str, folder: Path, overwrite: bool) -> list[dict]:
    cached = folder / "images.json"
    if cached.is_file() and not overwrite:
        return json.loads(cached.read_text())
    url = f"{base}/api/collections/{collection_id}/images/?format=json"
    results: list[dict] = []
    seen = set()
    while url and url not in seen:
        seen.add(url)
        try:
            page = json.loads(_get(url))
        except ValueError as err:
            raise FetchError(f"{url}: the NeuroVault API returned invalid JSON ({err})") from None
        if "Not found" in str(page.get("detail", "")):
            raise FetchError(
                f"NeuroVault collection {collection_id} not found at {base} (it may not exist, "
                "be private, or the id may be an image's)"
            )
        if not isinstance(page.get("results"), list):
            raise FetchError(f"{url}: the NeuroVault API response has no 'results' list")
        results.extend(page["results"])
        url = page.get("next")
        if url:
            url = _mirror(url, base)
    tmp = _part(cached)
    tmp.write_text(json.dumps(results, indent=1))
    os.replace(tmp, cached)
    return results


def _mirror(url: str, base: str) -> str:
    if base.rstrip("/") != NEUROVAULT_URL and url.startswith(NEUROVAULT_URL):
        return base.rstrip("/") + url[len(NEUROVAULT_URL) :]
    return url


def _download(url: str, dest: Path, manifest: dict, overwrite: bool) -> None:
    entry = manifest.get(dest.name)
    if dest.exists() and not overwrite and entry is not None:
        if _digest(dest, "sha256") == entry["sha256"]:
            return
    tmp = _part(dest)
    try:
        try:
            with urllib.request.urlopen(url, timeout=60) as resp, open(tmp, "wb") as f:
                shutil.copyfileobj(resp, f)
        except Exception as err:
            raise FetchError(f"could not download {url} ({type(err).__name__}: {err})") from None
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    manifest[dest.name] = {"sha256": _digest(dest, "sha256"), "url": url}


def _contrast_id(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.+]+", "_", name).strip("_") or "contrast"


def fetch_neurovault_collection(
    collection_id: int | str,
    data_dir: str | os.PathLike | None = None,
    base_url: str = NEUROVAULT_URL,
    image_types: list[str] | None = None,
    contrasts: dict[str, str] | None = None,
    map_type_conversion: dict[str, str] | None = None,
    overwrite: bool = False,
    target="mni152_2mm",
) -> Studyset:
    """Download a NeuroVault collection's group-level maps and return them as a Studyset.

    Parameters
    ----------
    collection_id : int or str
        The collection (``https://neurovault.org/collections/<id>/``).
    data_dir : str or Path, optional
        Cache root (default as :func:`~nimare_dask.datasets.get_data_dir`).
    base_url : str
        The NeuroVault server or a mirror of it.
    image_types : list of str, optional
        Keep only these image types (e.g. ``["z", "t"]``); default all mapped types.
    contrasts : dict, optional
        ``{contrast name: regular expression}`` (NiMARE's ``contrasts``): images whose name
        matches (``re.match``) form that contrast. Default: one contrast per image name.
    map_type_conversion : dict, optional
        ``map_type -> image type`` (default :data:`DEFAULT_MAP_TYPE_CONVERSION`).
    overwrite : bool
        Ask the API again and download every file again.
    target : str or Grid
        The Studyset's grid.

    Returns
    -------
    Studyset
        Study ``study-<collection_id>``, one analysis per contrast, absolute image paths,
        ``sample_sizes`` = the modal ``number_of_subjects`` of the contrast's images.

    Raises
    ------
    FetchError
        The API or a file cannot be reached, or the collection does not exist.
    ValueError
        No image matches (naming the contrast or the types asked for).
    """
    conversion = DEFAULT_MAP_TYPE_CONVERSION if map_type_conversion is None else map_type_conversion
    base = str(base_url).rstrip("/")
    if urlparse(base).scheme not in ("http", "https"):
        raise ValueError(f"base_url must be an http(s) URL, got {base_url!r}")
    folder = get_data_dir(data_dir) / "neurovault" / f"collection-{collection_id}"
    folder.mkdir(parents=True, exist_ok=True)
    images = _listing(collection_id, base, folder, overwrite)
    manifest_path = folder / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}

    groups: dict[str, list[tuple[str, dict]]] = collections.defaultdict(list)
    for img in images:
        imtype = conversion.get(img.get("map_type"))
        if imtype is None or img.get("analysis_level") != "group":
            continue
        if image_types is not None and imtype not in image_types:
            continue
        name = str(img.get("name", ""))
        if contrasts is None:
            groups[_contrast_id(name)].append((imtype, img))
        else:
            for cname, regex in contrasts.items():
                if re.match(regex, name):
                    groups[cname].append((imtype, img))
    if contrasts is not None:
        for cname, regex in contrasts.items():
            if not groups.get(cname):
                raise ValueError(
                    f"No images were found for contrast {cname}. Please check the contrast "
                    f"regular expression: {regex}"
                )
    if not groups:
        raise ValueError(
            f"collection {collection_id} has no group-level maps of types "
            f"{image_types or sorted(set(conversion.values()))}"
        )
    study = f"study-{collection_id}"
    source_contrasts = {}
    try:
        for cname, members in groups.items():
            paths, sizes = {}, []
            for imtype, img in members:
                url = _mirror(str(img["file"]), base)
                dest = (
                    folder
                    / f"collection-{collection_id}_id-{img['id']}_{Path(urlparse(url).path).name}"
                )
                _download(url, dest, manifest, overwrite)
                paths.setdefault(imtype, str(dest.resolve()))  # NiMARE keeps the first
                if img.get("number_of_subjects") is not None:
                    sizes.append(img["number_of_subjects"])
            meta = {}
            if sizes:
                meta["sample_sizes"] = [collections.Counter(sizes).most_common(1)[0][0]]
            source_contrasts[cname] = {"images": paths, "metadata": meta}
    finally:
        tmp = _part(manifest_path)
        tmp.write_text(json.dumps(manifest, indent=1, sort_keys=True))
        os.replace(tmp, manifest_path)
    return Studyset({study: {"contrasts": source_contrasts}}, target=target)
