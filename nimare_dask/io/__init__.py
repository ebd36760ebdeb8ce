"""Readers and writers: Sleuth, Neurosynth/NeuroQuery, NIMADS and NiMARE's legacy JSON.

Names follow :mod:`nimare.io` (0.22.1) so scripts port by changing the import. Every reader
returns a :class:`~nimare_dask.studyset.core.Studyset` (foci in MNI mm) and raises a
:class:`~nimare_dask.studyset.core.StudysetError` subclass naming the file (and line or study)
on malformed input.
"""

from __future__ import annotations

import os
from pathlib import Path

from nimare_dask.io.errors import (
    EmptyExperimentWarning,
    FociOutsideMaskWarning,
    NeurosynthError,
    SleuthError,
    UnmatchedFociWarning,
)
from nimare_dask.io.jale import (
    DependentExperimentsWarning,
    JaleSheetError,
    read_jale_analyses,
    read_jale_sheet,
    select_experiments,
)
from nimare_dask.io.neurosynth import (
    convert_neuroquery_to_studyset,
    convert_neurosynth_to_studyset,
    tfidf_transform,
)
from nimare_dask.io.nimads_compat import (
    convert_nimads_to_sleuth,
    convert_sleuth_to_nimads_dict,
    load_nimads,
)
from nimare_dask.io.sleuth import convert_sleuth_to_studyset, read_sleuth, write_sleuth
from nimare_dask.space import Grid, mni2tal, tal2mni
from nimare_dask.studyset.core import Studyset, StudysetError, UnknownSpaceWarning
from nimare_dask.studyset.nimads import write_nimads as _write_nimads

__all__ = [
    "DependentExperimentsWarning",
    "JaleSheetError",
    "read_jale_analyses",
    "read_jale_sheet",
    "select_experiments",
    "convert_sleuth_to_studyset",
    "read_sleuth",
    "write_sleuth",
    "convert_neurosynth_to_studyset",
    "convert_neuroquery_to_studyset",
    "convert_dataset_to_studyset",
    "convert_nimads_to_sleuth",
    "convert_sleuth_to_nimads_dict",
    "load_nimads",
    "write_nimads",
    "tfidf_transform",
    "tal2mni",
    "mni2tal",
    "SleuthError",
    "NeurosynthError",
    "StudysetError",
    "FociOutsideMaskWarning",
    "EmptyExperimentWarning",
    "UnmatchedFociWarning",
    "UnknownSpaceWarning",
]


def convert_dataset_to_studyset(
    dataset: str | os.PathLike | dict,
    target: str | Grid = "mni152_2mm",
    *,
    studyset_id: str = "nimads_from_dataset",
    studyset_name: str = "",
    out_file: str | os.PathLike | None = None,
) -> Studyset:
    """Read a NiMARE legacy Dataset (JSON path or dict ``{study: {"contrasts": ...}}``).

    Parameters
    ----------
    dataset : str, Path or dict
        The legacy JSON file or its parsed dict (NiMARE's deprecated ``Dataset`` object is
        not provided; its JSON is what this reads).
    target : str or Grid, default="mni152_2mm"
        The voxel grid.
    studyset_id, studyset_name : str
        The studyset's identifier and name (NiMARE's defaults), kept in ``Studyset.info``
        (``"id"``, ``"name"``) and written by ``to_parquet`` and to ``out_file``.
    out_file : str or Path, optional
        Also write the studyset as NIMADS JSON there (atomically), with this id and name,
        as NiMARE does.

    Returns
    -------
    Studyset
        Eager tables; TAL foci converted to MNI.
    """
    ss = Studyset(dataset, target=target)
    ss.info.update(id=studyset_id, name=studyset_name)
    if out_file is not None:
        import json

        from nimare_dask.storage import Location
        from nimare_dask.studyset.nimads import tables_to_nimads

        out = Path(out_file)
        data = tables_to_nimads(ss, studyset_id=studyset_id, name=studyset_name)
        Location(out.parent).write_bytes(out.name, json.dumps(data, indent=2).encode())
    return ss


def write_nimads(studyset: Studyset, path: str | os.PathLike) -> Path:
    """Write a Studyset as NIMADS JSON, atomically (foci in MNI).

    Returns
    -------
    Path
        The written file.
    """
    return _write_nimads(studyset, path)
