"""NiMARE's ``nimare.nimads`` path: ``from nimare_dask.nimads import Studyset`` works.

:class:`~nimare_dask.studyset.core.Studyset` reads NIMADS JSON (path or dict, optionally with a
NIMADS annotation), NiMARE's legacy Dataset JSON, NeuroStore parquet studyset folders and our
Zarr stores. NiMARE's module-level readers and writers are here with its signatures; its
column-store internals (``ColumnStore``, ``View``, the ``*Block`` classes) have no counterpart
(our Studyset holds pandas tables and dask arrays instead).
"""

from __future__ import annotations

from pathlib import Path

from nimare_dask.studyset.core import Studyset
from nimare_dask.studyset.nimads import write_nimads as _write_nimads
from nimare_dask.studyset.parquet import write_parquet as _write_parquet

__all__ = [
    "Studyset",
    "from_nimads",
    "from_parquet",
    "to_nimads_dict",
    "write_nimads",
    "write_parquet",
]


def _sorted_only(canonical_order: bool) -> None:
    if not canonical_order:
        raise ValueError(
            "canonical_order=False is not supported: a nimare_dask Studyset always orders its "
            "analyses by id (the order every array and store uses)"
        )


def from_parquet(
    directory: str | Path, *, load_annotations: bool = True, canonical_order: bool = True
) -> Studyset:
    """Read a NeuroStore parquet studyset folder (NiMARE's ``nimads.from_parquet``).

    Parameters
    ----------
    directory : str or Path
        The folder (with its ``manifest.json``).
    load_annotations : bool, default=True
        False drops the annotations (labels).
    canonical_order : bool, default=True
        Only True: analyses are always ordered by id.

    Returns
    -------
    Studyset
        Foci, metadata and annotations in memory; images referenced by path.
    """
    _sorted_only(canonical_order)
    ss = Studyset(Path(directory))
    if not load_annotations:
        ss = Studyset.from_tables(**{**ss._tables(), "annotations": None}, harmonize=False)
    return ss


def from_nimads(source, *, canonical_order: bool = True, annotations=None) -> Studyset:
    """Read a NIMADS studyset (dict or JSON path), as NiMARE's ``nimads.from_nimads``.

    Parameters
    ----------
    source : dict, str or Path
        The NIMADS studyset.
    canonical_order : bool, default=True
        Only True: analyses are always ordered by id.
    annotations : dict, str or Path, optional
        A NIMADS annotation to attach.

    Returns
    -------
    Studyset
    """
    _sorted_only(canonical_order)
    return Studyset(source, annotations=annotations)


def to_nimads_dict(
    store: Studyset,
    analysis_rows=None,
    *,
    include_annotations: bool = True,
    order_by_source: bool = True,
    basepath=None,
) -> dict:
    """The NIMADS dict of a Studyset (NiMARE's ``nimads.to_nimads_dict``).

    Parameters
    ----------
    store : Studyset
        The studyset.
    analysis_rows : None
        Only None (all analyses); slice the Studyset first to export fewer.
    include_annotations : bool, default=True
        False leaves the analyses' ``annotations`` out.
    order_by_source, basepath
        Accepted with NiMARE's defaults only (our export is ordered by id, paths absolute).

    Returns
    -------
    dict
    """
    if analysis_rows is not None:
        raise ValueError("analysis_rows is not supported: use store.slice(ids) first")
    if not order_by_source or basepath is not None:
        raise ValueError("order_by_source=False and basepath are not supported")
    data = store.to_dict()
    if not include_annotations:
        for study in data.get("studies", []):
            for analysis in study.get("analyses", []):
                analysis.pop("annotations", None)
    return data


def write_nimads(store: Studyset, path: str | Path, analysis_rows=None, **kwargs) -> Path:
    """Write a Studyset as NIMADS JSON, atomically (NiMARE's ``nimads.write_nimads``).

    Parameters
    ----------
    store : Studyset
        The studyset.
    path : str or Path
        The JSON file.
    analysis_rows : None
        Only None (all analyses).
    **kwargs
        None accepted (NiMARE forwards them to ``to_nimads_dict``): a clear error names them.

    Returns
    -------
    Path
    """
    if analysis_rows is not None or kwargs:
        raise ValueError(
            f"unsupported arguments {sorted(kwargs) + (['analysis_rows'] if analysis_rows is not None else [])}: "
            "slice the Studyset first"
        )
    return _write_nimads(store, path)


def write_parquet(store: Studyset, directory: str | Path) -> Path:
    """Write a NeuroStore parquet studyset folder (NiMARE's ``nimads.write_parquet``).

    Parameters
    ----------
    store : Studyset
        The studyset.
    directory : str or Path
        The folder to create (refused if it exists).

    Returns
    -------
    Path
    """
    return _write_parquet(store, directory)
