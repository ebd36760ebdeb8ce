"""NiMARE's ``nimare.dataset`` path. Its deprecated ``Dataset`` class is not provided.

NiMARE 0.22.1 deprecates ``Dataset`` and removes it in 1.0. Use :class:`nimare_dask.Studyset`,
which also reads NiMARE's legacy Dataset JSON (``nimare_dask.Studyset("dataset.json")``, or
:func:`nimare_dask.io.convert_dataset_to_studyset`). ``from nimare_dask.dataset import Dataset``
and ``nimare_dask.dataset.Dataset`` raise :class:`DatasetNotProvidedError` (an
:class:`ImportError`, so the message survives ``from ... import``) saying so.
"""

__all__ = ["DatasetNotProvidedError"]

_MESSAGE = (
    "nimare_dask does not provide NiMARE's deprecated Dataset class (NiMARE removes it in 1.0). "
    "Use nimare_dask.Studyset instead: it reads NIMADS JSON and NiMARE's legacy Dataset JSON "
    "too, e.g. nimare_dask.Studyset('dataset.json') or "
    "nimare_dask.io.convert_dataset_to_studyset('dataset.json')."
)


class DatasetNotProvidedError(ImportError):
    """Raised for ``nimare_dask.dataset.Dataset``: use :class:`nimare_dask.Studyset`."""


def __getattr__(name: str):
    if name == "Dataset":
        raise DatasetNotProvidedError(_MESSAGE, name="nimare_dask.dataset")
    raise AttributeError(f"module 'nimare_dask.dataset' has no attribute {name!r}")
