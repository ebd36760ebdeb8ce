"""Download the Neurosynth and NeuroQuery database files (checksummed, cached, resumable).

Where files go: ``data_dir`` if given, else the environment variable ``NIMARE_DASK_DATA``,
else ``pooch.os_cache("nimare_dask")``; each database in its own sub-folder (``neurosynth/``,
``neuroquery/``).

Where they come from: ``base_url`` if given, else the environment variable
``NIMARE_DASK_BASE_URL``, else the public repositories at the commits NiMARE pins (see
:mod:`nimare_dask.datasets.registry`). A base may be an ``http(s)://`` URL, a ``file://`` URL
or a plain local folder (a mirror, or a copy of the files for offline machines); either way
every file is verified against its pinned checksum (SHA-256, or for a few large files the git
blob id of the pinned commit; see :mod:`nimare_dask.datasets.registry`) before it is used. A
file without a pinned checksum is never downloaded (:class:`FetchError`).

A file already in ``data_dir`` is reused when its checksum matches; a corrupt or partial one is
fetched again. Downloads are written aside and moved into place, so an interrupted run never
leaves a truncated file under the final name.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import unquote, urlparse
from urllib.request import url2pathname

from nimare_dask.datasets.registry import BASE_URLS, FEATURE_SETS, checksum, database_files

__all__ = [
    "fetch_neurosynth",
    "fetch_neuroquery",
    "get_data_dir",
    "FetchError",
]

DATA_ENV = "NIMARE_DASK_DATA"
BASE_URL_ENV = "NIMARE_DASK_BASE_URL"


class FetchError(OSError):
    """A file could not be obtained (offline, missing at the source, a wrong checksum, or no
    pinned checksum to verify it against)."""


def get_data_dir(data_dir: str | os.PathLike | None = None) -> Path:
    """The folder downloads go to: the argument, ``$NIMARE_DASK_DATA``, or pooch's OS cache.

    Returns
    -------
    Path
    """
    if data_dir is not None:
        return Path(data_dir).expanduser()
    env = os.environ.get(DATA_ENV)
    if env:
        return Path(env).expanduser()
    import pooch

    return Path(pooch.os_cache("nimare_dask"))


def _base(base_url: str | os.PathLike | None, database: str) -> str:
    if base_url is not None:
        return str(base_url)
    return os.environ.get(BASE_URL_ENV) or BASE_URLS[database]


def _local_folder(base: str) -> Path | None:
    """The local folder a base designates (``file://`` URL or plain path), else None."""
    if base.startswith("file://"):
        parsed = urlparse(base)
        return Path(url2pathname(unquote(parsed.path)))
    if "://" in base:
        return None
    return Path(base).expanduser()


def _digest(path: Path, algorithm: str) -> str:
    """``sha256`` of the file, or ``git-blob-sha1``: git's object id of it as a blob."""
    if algorithm == "sha256":
        h = hashlib.sha256()
    elif algorithm == "git-blob-sha1":
        h = hashlib.sha1(usedforsecurity=False)
        h.update(b"blob %d\0" % path.stat().st_size)
    else:
        raise ValueError(f"unknown checksum algorithm {algorithm!r}")
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _pinned(name: str) -> tuple[str, str]:
    try:
        return checksum(name)
    except KeyError:
        raise FetchError(
            f"{name}: no checksum is pinned for this file, so it cannot be verified and is not "
            "fetched"
        ) from None


def _verify(path: Path, name: str, source: str) -> None:
    algorithm, known = _pinned(name)
    got = _digest(path, algorithm)
    if got != known:
        raise FetchError(
            f"{source}: checksum mismatch ({algorithm} {got}, expected {known}); the source "
            "copy is corrupt or a different version"
        )


def _part(dest: Path) -> Path:
    """A temporary name beside ``dest`` (hidden, unique) for a file being written."""
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    os.close(fd)
    return Path(tmp)


def _copy_local(src: Path, dest: Path, base: str) -> None:
    if not src.is_file():
        raise FetchError(
            f"{src} not found: the base {base!r} (base_url or ${BASE_URL_ENV}) must hold the "
            f"file {src.name}"
        )
    tmp = _part(dest)
    try:
        shutil.copyfile(src, tmp)
        _verify(tmp, dest.name, str(src))
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


def _download(url: str, dest: Path) -> None:
    import pooch

    downloader = pooch.HTTPDownloader(progressbar=False, timeout=60)
    tmp = _part(dest)
    tmp.unlink()  # pooch would keep an existing file
    try:
        try:
            # verified below against the pinned checksum, whatever its algorithm
            pooch.retrieve(
                url, known_hash=None, fname=tmp.name, path=dest.parent, downloader=downloader
            )
        except Exception as err:  # requests' connection/HTTP errors, timeouts
            raise FetchError(
                f"could not download {url} ({type(err).__name__}: {err}). If this machine is "
                f"offline, copy the files into a folder and set {BASE_URL_ENV}=/that/folder "
                "(or pass base_url=)"
            ) from None
        _verify(tmp, dest.name, url)
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


def _fetch_file(name: str, base: str, folder: Path, overwrite: bool) -> str:
    dest = folder / name
    algorithm, known = _pinned(name)
    if dest.exists() and overwrite:
        dest.unlink()
    if dest.exists() and _digest(dest, algorithm) == known:
        return str(dest)
    local = _local_folder(base)
    if local is not None:
        _copy_local(local / name, dest, base)
    else:
        _download(base.rstrip("/") + "/" + name, dest)
    return str(dest)


def _as_list(value, name: str) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, str):
        return [value]
    if isinstance(value, Sequence):
        return [str(v) for v in value]
    raise TypeError(f"{name} must be a string or a list of strings, got {value!r}")


def _fetch(database, data_dir, version, vocab, source, type_, overwrite, base_url) -> dict:
    version = str(version)
    versions = FEATURE_SETS[database]
    if version not in versions:
        raise ValueError(f"unknown {database} version {version!r}; available: {sorted(versions)}")
    available = versions[version]
    wanted = [_as_list(v, n) for v, n in ((vocab, "vocab"), (source, "source"), (type_, "type"))]
    combos = [c for c in available if all(w is None or c[i] in w for i, w in enumerate(wanted))]
    if not combos:
        options = ", ".join("/".join(c) for c in available)
        raise ValueError(
            f"no {database} version {version} feature files match vocab={vocab!r}, "
            f"source={source!r}, type={type_!r}; available vocab/source/type: {options}"
        )
    names = database_files(database, version, combos)
    folder = get_data_dir(data_dir) / database
    folder.mkdir(parents=True, exist_ok=True)
    base = _base(base_url, database)
    wanted_files = [names["coordinates"], names["metadata"]] + list(
        itertools.chain.from_iterable(f.values() for f in names["features"])
    )
    for name in wanted_files:  # refuse before downloading anything
        _pinned(name)
    paths = {}
    for name in dict.fromkeys(wanted_files):  # each file once, in order
        paths[name] = _fetch_file(name, base, folder, overwrite)
    return {
        "coordinates": paths[names["coordinates"]],
        "metadata": paths[names["metadata"]],
        "features": [{k: paths[v] for k, v in f.items()} for f in names["features"]],
    }


def fetch_neurosynth(
    data_dir: str | os.PathLike | None = None,
    version: str | int = "7",
    vocab: str | Sequence[str] | None = "LDA50",
    source: str | Sequence[str] | None = "abstract",
    type: str | Sequence[str] | None = None,  # NiMARE's keyword name
    overwrite: bool = False,
    base_url: str | os.PathLike | None = None,
) -> dict:
    """Download (or reuse) the Neurosynth database files.

    Parameters
    ----------
    data_dir : str or Path, optional
        Cache folder (default ``$NIMARE_DASK_DATA`` or the OS cache); files go to
        ``<data_dir>/neurosynth/``.
    version : str, default="7"
        Neurosynth version (3 to 7).
    vocab, source, type : str or list of str, optional
        Feature sets to fetch (``None``: any). Version 7 offers ``terms/abstract/tfidf`` and
        ``LDA50|LDA100|LDA200|LDA400/abstract/weight``; the default ``type=None`` takes the
        type the vocabulary comes in (``weight`` for LDA50), so ``vocab="terms"`` alone works.
    overwrite : bool
        Fetch again even if a verified copy exists.
    base_url : str or Path, optional
        Where to fetch from: a URL, ``file://`` URL or local folder (default
        ``$NIMARE_DASK_BASE_URL``, else the public repository).

    Returns
    -------
    dict
        Local paths: ``{"coordinates": str, "metadata": str, "features": [{"features": str,
        "vocabulary": str, ...}]}``, ready for
        :func:`nimare_dask.io.convert_neurosynth_to_studyset`.

    Raises
    ------
    FetchError
        Offline, a missing source file, or a checksum mismatch (the message names the URL).
    """
    return _fetch("neurosynth", data_dir, version, vocab, source, type, overwrite, base_url)


def fetch_neuroquery(
    data_dir: str | os.PathLike | None = None,
    version: str | int = "1",
    vocab: str | Sequence[str] | None = "neuroquery7547",
    source: str | Sequence[str] | None = "abstract",
    type: str | Sequence[str] | None = "count",  # NiMARE's keyword name
    overwrite: bool = False,
    base_url: str | os.PathLike | None = None,
) -> dict:
    """Download (or reuse) the NeuroQuery database files.

    Parameters
    ----------
    data_dir : str or Path, optional
        Cache folder; files go to ``<data_dir>/neuroquery/``.
    version : str, default="1"
        NeuroQuery version.
    vocab, source, type : str or list of str, optional
        Feature sets (``None``: all): ``neuroquery7547`` or ``neuroquery156521`` with source
        ``abstract|body|keywords|title`` and type ``count``, or
        ``neuroquery6308/combined/tfidf``.
    overwrite : bool
        Fetch again even if a verified copy exists.
    base_url : str or Path, optional
        URL, ``file://`` URL or local folder to fetch from.

    Returns
    -------
    dict
        Local paths, as :func:`fetch_neurosynth`; pass them to
        :func:`nimare_dask.io.convert_neuroquery_to_studyset`.

    Raises
    ------
    FetchError
        Offline, a missing source file, or a checksum mismatch.
    """
    return _fetch("neuroquery", data_dir, version, vocab, source, type, overwrite, base_url)
