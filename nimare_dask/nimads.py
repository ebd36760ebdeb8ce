"""NiMARE's ``nimare.nimads`` path: ``from nimare_dask.nimads import Studyset`` works.

:class:`~nimare_dask.studyset.core.Studyset` reads NIMADS JSON (path or dict, optionally with a
NIMADS annotation) and NiMARE's legacy Dataset JSON. NiMARE's other ``nimare.nimads`` names (its
column-store internals: ``ColumnStore``, ``View``, ``from_parquet``, ...) have no counterpart.
"""

from nimare_dask.studyset.core import Studyset

__all__ = ["Studyset"]
