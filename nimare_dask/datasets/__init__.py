"""Fetchers for the public coordinate databases (Neurosynth, NeuroQuery)."""

from nimare_dask.datasets.fetchers import (
    FetchError,
    fetch_neuroquery,
    fetch_neurosynth,
    get_data_dir,
)

__all__ = [
    "FetchError",
    "fetch_neuroquery",
    "fetch_neurosynth",
    "get_data_dir",
]
