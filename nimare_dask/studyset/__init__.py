"""The data model: :class:`Studyset`, its NIMADS schema and its Zarr store.

NiMARE's module-level readers and writers (``from_parquet``, ``write_parquet``,
``write_nimads``, ``to_nimads_dict``, ``from_nimads``) are re-exported here from
:mod:`nimare_dask.nimads`, with NiMARE 0.22.1's signatures (``nimare.studyset`` has them too).
They are loaded on first use: :mod:`nimare_dask.nimads` imports this package.
"""

from nimare_dask.studyset.core import Annotations, Studyset, StudysetError, UnknownSpaceWarning
from nimare_dask.studyset.store import StoreError, StudysetStore, open_studyset

#: NiMARE's ``nimare.studyset`` functions, defined in :mod:`nimare_dask.nimads`.
_NIMADS_FUNCTIONS = (
    "from_nimads",
    "from_parquet",
    "to_nimads_dict",
    "write_nimads",
    "write_parquet",
)

__all__ = [
    "Annotations",
    "Studyset",
    "StudysetError",
    "UnknownSpaceWarning",
    "StoreError",
    "StudysetStore",
    "open_studyset",
    *_NIMADS_FUNCTIONS,
]


def __getattr__(name: str):
    if name in _NIMADS_FUNCTIONS:
        from nimare_dask import nimads

        return getattr(nimads, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
