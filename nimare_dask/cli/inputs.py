"""Reading whatever studyset a user points the CLI at."""

from __future__ import annotations

from pathlib import Path


def load_studyset(location: str):
    """A Studyset from a store (folder/URL with ``zarr.json``), NIMADS/legacy JSON or Sleuth."""
    from nimare_dask import Studyset, open_studyset
    from nimare_dask.io import read_sleuth

    path = Path(location)
    if "://" in location or (path.is_dir() and (path / "zarr.json").exists()):
        return open_studyset(location)
    if not path.exists():
        raise FileNotFoundError(f"no such file or store: {location}")
    if path.suffix.lower() in (".json", ".gz"):
        return Studyset(path)
    return read_sleuth(path)
