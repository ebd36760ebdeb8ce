"""Every write of nimare_dask goes through here: locations, versioned stores, atomic commits.

A **location** is a local folder or an fsspec URL (``s3://``, ``gs://``, ``memory://``, ...)
together with its ``storage_options`` (endpoint, credentials...), which are used for every
operation on it: existence checks, reads, writes, clean-up, and the Zarr stores handed to
xarray and to Dask tasks. A :class:`Location` pickles to its URL and options, never to an open
connection, so a worker rebuilds its own filesystem object.

A **versioned store** is the commit protocol that makes a write atomic on object stores too,
where a "rename" is a copy and a delete. Layout::

    <location>/
        nimare_dask.json          the pointer: the only object a reader trusts (written last)
        v20261206T153000123456-1a2b3c4d/   one complete Zarr v3 group per version
        v20261206T160000000000-5e6f7a8b/   ...

A writer builds a new version under its own prefix, then publishes it by writing the small
pointer object (one ``PUT`` on an object store, one ``os.replace`` on disk, both atomic). A
reader reads the pointer, then only that version's prefix, so it sees the old version or the new
one, never a half one. A writer killed mid-write leaves an unreferenced prefix that the next
commit to the same location deletes. The version the pointer replaced is kept until the commit
after (a reader that opened it lazily can finish), older ones are deleted. Concurrent writers:
a commit re-reads the pointer and refuses to publish over a version it did not start from
(:class:`StoreConflictError`), or keeps the other writer's version when asked to.

Why not a transactional store such as icechunk: it would add a Rust extension and its own
repository format (readers would need icechunk too, not just Zarr), for transactions and
history we do not need beyond "old or new, never half": every nimare_dask write creates a whole
array group once (stores, cached MA maps, decoder maps, results) and never edits one in place.
The pointer protocol gives that with plain Zarr and one extra small object (``storage/README.md``).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import shutil
import threading
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

__all__ = [
    "POINTER",
    "DerivedArrays",
    "Location",
    "StoreConflictError",
    "StoreError",
    "Transaction",
    "VersionedStore",
    "is_url",
    "workers_can_reach",
]

#: Name of the pointer object of a versioned store.
POINTER = "nimare_dask.json"
#: Version of the pointer protocol (a store layout of format version >= 2 uses it).
PROTOCOL_VERSION = 1


class StoreError(OSError):
    """A store is missing, unreadable, of another format, or would be overwritten."""


class StoreConflictError(StoreError):
    """Another writer published a version of the same store while this one was writing."""


def is_url(loc: str | os.PathLike) -> bool:
    """True for an fsspec URL (``s3://...``), False for a local path or ``file://`` URL."""
    s = str(loc)
    return "://" in s and not s.startswith("file://")


def _local_path(loc: str) -> Path:
    s = str(loc)
    if s.startswith("file://"):
        s = s[len("file://") :]
    return Path(s).expanduser().resolve()


#: Protocols whose first path component is a bucket that must exist before a write.
_BUCKET_PROTOCOLS = frozenset({"s3", "s3a", "gs", "gcs", "az", "abfs", "abfss"})

_FS_CACHE: dict[tuple[str, str], Any] = {}
_FS_LOCK = threading.Lock()


def _filesystem(url: str, storage_options: Mapping[str, Any]):
    """The fsspec filesystem of ``url`` with ``storage_options``, one per process and options."""
    import fsspec

    protocol = url.split("://", 1)[0]
    key = (protocol, json.dumps(dict(storage_options), sort_keys=True, default=str))
    with _FS_LOCK:
        fs = _FS_CACHE.get(key)
        if fs is None:
            fs = fsspec.filesystem(protocol, **dict(storage_options))
            _FS_CACHE[key] = fs
    return fs


def _describe(err: BaseException) -> str:
    text = str(err) or type(err).__name__
    return f"{type(err).__name__}: {text}"


class Location:
    """A local folder or fsspec URL with the ``storage_options`` used for every access.

    Parameters
    ----------
    path_or_url : str or Path
        Local path (``file://`` accepted) or fsspec URL.
    storage_options : mapping, optional
        fsspec options (endpoint, credentials, ...); ignored for local paths (an error if
        given for one, as nothing would use them).
    """

    def __init__(
        self, path_or_url: str | os.PathLike, storage_options: Mapping[str, Any] | None = None
    ):
        if isinstance(path_or_url, Location):
            storage_options = storage_options or path_or_url.storage_options
            path_or_url = path_or_url.url
        opts = dict(storage_options or {})
        if is_url(path_or_url):
            self.url = str(path_or_url).rstrip("/")
        else:
            if opts:
                raise ValueError(
                    f"storage_options {sorted(opts)} were given for the local path "
                    f"{path_or_url}; they apply to URLs (s3://, gs://, ...) only"
                )
            self.url = str(_local_path(str(path_or_url)))
        self.storage_options = opts

    # -------------------------------------------------------------- identity and pickling
    def __reduce__(self):
        return (Location, (self.url, self.storage_options))

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, Location)
            and other.url == self.url
            and other.storage_options == self.storage_options
        )

    def __hash__(self) -> int:
        return hash(self.url)

    def __repr__(self) -> str:
        return f"Location({self.url!r})"

    def __str__(self) -> str:
        return self.url

    @property
    def is_local(self) -> bool:
        """True for a folder on this machine's filesystem."""
        return not is_url(self.url)

    def join(self, *parts: str) -> Location:
        """The location ``self/part/...`` with the same options."""
        tail = "/".join(p.strip("/") for p in parts if p)
        return Location(f"{self.url}/{tail}" if tail else self.url, self.storage_options)

    @property
    def name(self) -> str:
        """The last path component."""
        return self.url.rstrip("/").rsplit("/", 1)[-1]

    # -------------------------------------------------------------- filesystem access
    @property
    def fs(self):
        """The fsspec filesystem (cached per process and options; URLs only)."""
        return _filesystem(self.url, self.storage_options)

    @property
    def _fs_path(self) -> str:
        return self.url.split("://", 1)[1]

    @contextlib.contextmanager
    def _guard(self, what: str) -> Iterator[None]:
        """Turn a backend failure into a :class:`StoreError` naming the URL and the step.

        A missing object while reading is passed through as ``FileNotFoundError``: callers
        decide what it means.
        """
        try:
            yield
        except StoreError:
            raise
        except FileNotFoundError:
            if what.startswith("read") or what.startswith("list"):
                raise
            raise StoreError(f"{self.url}: {what} failed (not found)") from None
        except Exception as err:
            raise StoreError(f"{self.url}: {what} failed ({_describe(err)})") from err

    def exists(self, name: str | None = None) -> bool:
        """True if the location (or ``name`` inside it) exists."""
        target = self.join(name) if name else self
        if target.is_local:
            return Path(target.url).exists()
        with self._guard("checking existence"):
            return bool(target.fs.exists(target._fs_path))

    def read_bytes(self, name: str) -> bytes | None:
        """The bytes of object ``name`` inside the location, or None if it does not exist."""
        target = self.join(name)
        if target.is_local:
            try:
                return Path(target.url).read_bytes()
            except FileNotFoundError:
                return None
        try:
            with self._guard("reading " + name):
                return target.fs.cat_file(target._fs_path)
        except FileNotFoundError:
            return None

    def write_bytes(self, name: str, data: bytes) -> None:
        """Write object ``name`` atomically (readers see the old bytes or the new ones)."""
        target = self.join(name)
        if target.is_local:
            path = Path(target.url)
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")
            try:
                with open(tmp, "wb") as f:
                    f.write(data)
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(tmp, path)
            finally:
                tmp.unlink(missing_ok=True)
            return
        with self._guard("writing " + name):
            target.fs.pipe_file(target._fs_path, data)  # one PUT: atomic on object stores

    def list_dirs(self) -> list[str]:
        """Names of the sub-folders (prefixes) directly inside the location."""
        if self.is_local:
            p = Path(self.url)
            return sorted(c.name for c in p.iterdir() if c.is_dir()) if p.is_dir() else []
        try:
            with self._guard("listing"):
                entries = self.fs.ls(self._fs_path, detail=True, refresh=True)
        except FileNotFoundError:
            return []
        return sorted(
            e["name"].rstrip("/").rsplit("/", 1)[-1]
            for e in entries
            if e.get("type") == "directory"
        )

    def remove(self) -> None:
        """Delete the location and everything under it (no error if absent)."""
        if self.is_local:
            p = Path(self.url)
            if p.is_dir():
                shutil.rmtree(p, ignore_errors=True)
            elif p.exists():
                p.unlink()
            return
        try:
            with self._guard("reading before deleting"):
                self.fs.rm(self._fs_path, recursive=True)
        except FileNotFoundError:
            pass

    def check_bucket(self) -> None:
        """For object-store URLs: raise a :class:`StoreError` naming a missing bucket."""
        if self.is_local or self.url.split("://", 1)[0] not in _BUCKET_PROTOCOLS:
            return
        bucket = self._fs_path.split("/", 1)[0]
        with self._guard("opening the bucket or container"):
            found = self.fs.exists(bucket)
        if not found:
            raise StoreError(f"{self.url}: the bucket or container {bucket!r} does not exist")

    # -------------------------------------------------------------- zarr
    def zarr_store(self, read_only: bool = False):
        """A Zarr v3 store object rooted here (LocalStore or FsspecStore), picklable."""
        from zarr.storage import FsspecStore, LocalStore

        if self.is_local:
            if not read_only:
                Path(self.url).mkdir(parents=True, exist_ok=True)
            return LocalStore(self.url, read_only=read_only)
        return FsspecStore.from_url(
            self.url, storage_options=self.storage_options or None, read_only=read_only
        )


def _new_version() -> str:
    now = _dt.datetime.now(_dt.UTC)
    return f"v{now:%Y%m%dT%H%M%S%f}-{uuid.uuid4().hex[:8]}"


def _is_version(name: str) -> bool:
    return name.startswith("v") and "-" in name and name[1:9].isdigit()


class VersionedStore:
    """A location holding versions of one Zarr group, published by a pointer object.

    Parameters
    ----------
    location : Location, str or Path
    kind : str
        The format name recorded in the pointer (``"nimare_dask.studyset"``, ...); opening a
        store of another kind is an error.
    format_version : int
        This library's format version of ``kind``; a pointer with a newer one is refused.
    storage_options : mapping, optional
        Used when ``location`` is a string.
    """

    def __init__(
        self,
        location: Location | str | os.PathLike,
        kind: str,
        format_version: int,
        storage_options: Mapping[str, Any] | None = None,
    ):
        self.location = (
            location if isinstance(location, Location) else Location(location, storage_options)
        )
        self.kind = kind
        self.format_version = int(format_version)

    def __repr__(self) -> str:
        return f"VersionedStore({self.location.url!r}, {self.kind!r})"

    # -------------------------------------------------------------- reading
    def pointer(self) -> dict | None:
        """The published pointer (a dict), or None when nothing was ever committed here."""
        raw = self.location.read_bytes(POINTER)
        if raw is None:
            return None
        try:
            info = json.loads(raw)
        except ValueError as err:
            raise StoreError(f"{self.location.url}/{POINTER} is not valid JSON: {err}") from None
        return info

    def current(self) -> tuple[Location, dict]:
        """The published version's location and pointer.

        Raises
        ------
        StoreError
            Nothing published (missing, or an interrupted first write), a store written by an
            older nimare_dask (format version 1, before the pointer protocol), a store of
            another kind, or of a newer format version.
        """
        info = self.pointer()
        loc = self.location.url
        if info is None:
            if self.location.exists("zarr.json"):
                raise StoreError(
                    f"{loc} was written by an older nimare_dask (store format version 1, "
                    f"without the {POINTER} pointer this version publishes stores with); "
                    "write it again with this version (e.g. `nimare-dask ingest` or "
                    "Studyset.to_zarr / MetaResult.to_zarr)"
                )
            self.location.check_bucket()
            if self.location.exists():
                raise StoreError(
                    f"{loc} holds no published {self.kind} (no {POINTER}: not a nimare_dask "
                    "store, or its first write was interrupted)"
                )
            raise StoreError(f"no {self.kind} store at {loc}")
        if info.get("kind") != self.kind:
            raise StoreError(f"{loc} holds a {info.get('kind')!r}, not a {self.kind!r}")
        fv = int(info.get("format_version", -1))
        if fv > self.format_version:
            raise StoreError(
                f"{loc} has {self.kind} format version {fv}, newer than this nimare_dask "
                f"understands ({self.format_version}); upgrade nimare_dask"
            )
        return self.location.join(info["version"]), info

    def exists(self) -> bool:
        """True if a version has been published here."""
        return self.pointer() is not None

    # -------------------------------------------------------------- writing
    @contextlib.contextmanager
    def transaction(
        self, *, overwrite: bool = False, on_conflict: str = "raise"
    ) -> Iterator[Transaction]:
        """Write a new version; it is published only by :meth:`Transaction.commit`.

        Parameters
        ----------
        overwrite : bool
            Replace a published version; without it an existing store raises
            :class:`StoreError` before anything is written.
        on_conflict : {"raise", "keep"}
            What a commit does when another writer published meanwhile: raise
            :class:`StoreConflictError`, or keep the other version and drop this one.

        Yields
        ------
        Transaction
            Write under ``tx.location`` (``tx.zarr_store()``), then ``tx.commit(attrs)``. An
            exception inside the block deletes the new version; the published one is untouched.
        """
        if on_conflict not in ("raise", "keep"):
            raise ValueError("on_conflict must be 'raise' or 'keep'")
        before = self.pointer()
        if before is not None and not overwrite:
            raise StoreError(
                f"{self.location.url} already exists; pass overwrite=True to replace it"
            )
        if before is None:
            self.location.check_bucket()  # fail early, naming the URL, on a missing bucket
        tx = Transaction(self, before, on_conflict)
        try:
            yield tx
        except BaseException:
            tx.abort()
            raise
        if not tx.committed:
            tx.abort()

    def _collect_garbage(self, keep: set[str]) -> None:
        for name in self.location.list_dirs():
            if _is_version(name) and name not in keep:
                self.location.join(name).remove()

    def delete(self) -> None:
        """Remove the store: the pointer first (readers stop seeing it), then every version."""
        if self.location.is_local:
            Path(self.location.join(POINTER).url).unlink(missing_ok=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                self.location.join(POINTER).remove()
        self.location.remove()


class Transaction:
    """One write of a :class:`VersionedStore` (see :meth:`VersionedStore.transaction`)."""

    def __init__(self, store: VersionedStore, before: dict | None, on_conflict: str):
        self.store = store
        self.before = before
        self.on_conflict = on_conflict
        self.version = _new_version()
        #: Where the new version is written.
        self.location = store.location.join(self.version)
        self.committed = False
        self.kept_other = False

    def zarr_store(self):
        """The Zarr store of the new version (writable, picklable)."""
        return self.location.zarr_store(read_only=False)

    def commit(self, attrs: Mapping[str, Any] | None = None) -> dict:
        """Publish the new version: the pointer object is written last.

        Parameters
        ----------
        attrs : mapping, optional
            JSON-able description kept in the pointer (``info``), readable without opening
            the version.

        Returns
        -------
        dict
            The pointer now published (the other writer's, with ``on_conflict="keep"``).
        """
        from nimare_dask._version import __version__

        now = self.store.pointer()
        if (now or {}).get("version") != (self.before or {}).get("version"):
            if self.on_conflict == "keep" and now is not None:
                self.abort()
                self.kept_other = True
                self.committed = True
                return now
            self.abort()
            raise StoreConflictError(
                f"{self.store.location.url} was written by another writer while this one was "
                f"writing (version {now and now.get('version')}); nothing of this write was "
                "published"
            )
        pointer = {
            "kind": self.store.kind,
            "format_version": self.store.format_version,
            "protocol_version": PROTOCOL_VERSION,
            "version": self.version,
            "previous": (self.before or {}).get("version"),
            "committed": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
            "library_version": __version__,
            "info": json.loads(json.dumps(dict(attrs or {}), default=_json_default)),
        }
        self.store.location.write_bytes(POINTER, json.dumps(pointer, indent=1).encode())
        self.committed = True
        keep = {self.version}
        if pointer["previous"]:
            keep.add(pointer["previous"])
        with contextlib.suppress(StoreError):  # clean-up is best effort; the commit stands
            self.store._collect_garbage(keep)
        return pointer

    def abort(self) -> None:
        """Delete what this transaction wrote (best effort)."""
        with contextlib.suppress(Exception):
            self.location.remove()


def _json_default(o: Any) -> Any:
    import numpy as np

    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)


class DerivedArrays:
    """Derived arrays (MA maps, decoder maps...) kept under ``<root>/derived/<kind>/<key>``.

    Each entry is a :class:`VersionedStore` of its own. A studyset store keeps its derived
    arrays this way; so does any folder or URL given for them when there is no studyset store
    (e.g. a decoder's ``maps_store``), or a temporary folder.

    Parameters
    ----------
    root : Location, str or Path
    storage_options : mapping, optional
        Used when ``root`` is a string.
    """

    def __init__(
        self, root: Location | str | os.PathLike, storage_options: Mapping[str, Any] | None = None
    ):
        self.root = root if isinstance(root, Location) else Location(root, storage_options)
        #: The root's URL or path (as :attr:`StudysetStore.location`).
        self.location = self.root.url

    def derived(self, kind: str, key: str, format_version: int = 1) -> VersionedStore:
        """The versioned store of one derived array."""
        return VersionedStore(
            self.root.join("derived", kind, key), f"nimare_dask.{kind}", format_version
        )

    def derived_keys(self, kind: str) -> list[str]:
        """Keys of the derived arrays of one kind that hold a published version."""
        folder = self.root.join("derived", kind)
        return [k for k in folder.list_dirs() if self.derived(kind, k).exists()]

    def __repr__(self) -> str:
        return f"DerivedArrays({self.location!r})"


# ------------------------------------------------------------------------- who writes
_REACH_CACHE: dict[tuple[str, str], bool] = {}


def _probe_reads(path: str, token: str) -> bool:  # runs on a worker
    try:
        return Path(path).read_text() == token
    except OSError:
        return False


def workers_can_reach(location: Location) -> bool:
    """Whether the Dask workers can write to ``location`` themselves.

    True without a distributed client (the threaded scheduler runs in this process), and for
    object-store URLs. For ``memory://`` it is True only when the workers live in this
    process. For a local path with a distributed client, the client writes a probe file beside
    the destination and every worker must read it back (a shared filesystem); the answer is
    cached per scheduler and folder. When False, callers compute on the workers and write from
    the client, chunk by chunk.
    """
    try:
        from distributed import get_client

        client = get_client()
    except (ImportError, ValueError):
        return True
    if not location.is_local:
        if location.url.startswith("memory://"):
            return all(_same_process(addr) for addr in client.scheduler_info()["workers"])
        return True
    folder = Path(location.url).parent
    key = (client.scheduler.address, str(folder))
    if key not in _REACH_CACHE:
        folder.mkdir(parents=True, exist_ok=True)
        token = uuid.uuid4().hex
        probe = folder / f".nimare_dask-probe-{token[:8]}"
        probe.write_text(token)
        try:
            answers = client.run(_probe_reads, str(probe), token)
            _REACH_CACHE[key] = bool(answers) and all(answers.values())
        finally:
            probe.unlink(missing_ok=True)
    return _REACH_CACHE[key]


def _same_process(worker_address: str) -> bool:
    return worker_address.startswith("inproc://")


# ------------------------------------------------------------------------- array writes
#: Bytes per batch when the client computes and writes a dask array itself.
CLIENT_BATCH_BYTES = 64 * 2**20


def write_dataset(
    ds,
    location: Location,
    *,
    group: str | None = None,
    encoding: Mapping[str, Any] | None = None,
    compute: Any = None,
) -> None:
    """Write an xarray Dataset as a Zarr v3 group under ``location`` (a new version's prefix).

    Numpy-backed variables are written from this process (nothing goes through a graph);
    dask-backed ones are written chunk by chunk by the tasks that compute them when the workers
    can reach ``location`` (:func:`workers_can_reach`), otherwise computed on the workers in
    batches of about 64 MB and written from here.

    Parameters
    ----------
    ds : xarray.Dataset
    location : Location
    group : str, optional
        Sub-group path.
    encoding : mapping, optional
        xarray encoding (chunks, compressors) per variable.
    compute : callable, optional
        ``compute(*collections)`` to run dask work (default ``dask.compute``).
    """
    import dask
    import dask.array as da
    import numpy as np
    import zarr

    compute = compute or dask.compute
    store = location.zarr_store()
    kw = {"mode": "w", "zarr_format": 3, "consolidated": False, "encoding": dict(encoding or {})}
    if group:
        kw["group"] = group
    lazy = [n for n, v in ds.variables.items() if isinstance(v.data, da.Array)]
    with location._guard("writing " + (group or "arrays")):
        if not lazy:
            ds.to_zarr(store, **kw)
            return
        if workers_can_reach(location):
            delayed = ds.to_zarr(store, compute=False, **kw)
            compute(delayed)
            return
        ds.to_zarr(store, compute=False, **kw)  # metadata and numpy variables only
        root = zarr.open_group(store, mode="r+", zarr_format=3, path=group or "")
        for name in lazy:
            var = ds.variables[name]
            target = root[name]
            rows = target.chunks[0] if target.ndim else 1
            per_row = max(1, int(np.prod(var.shape[1:])) * var.dtype.itemsize)
            step = max(rows, (CLIENT_BATCH_BYTES // (per_row * rows)) * rows)
            for a in range(0, var.shape[0], step):
                (block,) = compute(var.data[a : a + step])
                target[a : a + step] = np.asarray(block)
