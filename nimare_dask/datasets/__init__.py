"""Fetchers for the public coordinate databases (Neurosynth, NeuroQuery)."""

from nimare_dask.datasets.fetchers import (
    FetchError,
    UnverifiedDownloadWarning,
    fetch_neuroquery,
    fetch_neurosynth,
    get_data_dir,
)

__all__ = [
    "FetchError",
    "UnverifiedDownloadWarning",
    "fetch_neuroquery",
    "fetch_neurosynth",
    "get_data_dir",
]
