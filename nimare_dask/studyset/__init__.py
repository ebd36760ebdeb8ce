"""The data model: :class:`Studyset`, its NIMADS schema and its Zarr store."""

from nimare_dask.studyset.core import Annotations, Studyset, StudysetError, UnknownSpaceWarning
from nimare_dask.studyset.store import StoreError, StudysetStore, open_studyset

__all__ = [
    "Annotations",
    "Studyset",
    "StudysetError",
    "UnknownSpaceWarning",
    "StoreError",
    "StudysetStore",
    "open_studyset",
]
