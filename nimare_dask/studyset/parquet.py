"""NeuroStore parquet studysets (NiMARE 0.22.1's release format) <-> Studyset tables.

A release is a folder of parquet tables joined on the analysis id ``"<study>-<contrast>"``::

    studyset.json        manifest: format "nimare-studyset-parquet", version 1, id, name,
                         tables, annotations [{"id": ...}]
    studies.parquet      study_id, name, description, authors, publication
    analyses.parquet     id, study_id, contrast_id, name
    coordinates.parquet  id, study_id, contrast_id, x, y, z, space, kind, <point values>
    metadata.parquet     id, study_id, contrast_id, <fields> (sample_sizes: list of int)
    images.parquet       id, study_id, contrast_id, <type>__source, space
    texts.parquet        id, study_id, contrast_id, <text type>
    annotations.parquet  id, study_id, contrast_id, <label> (numbers, strings or nulls)

Reading follows NiMARE's ``nimare.studyset.io.parquet.from_parquet``: the folder is a release
when ``studies.parquet`` and ``analyses.parquet`` exist; foci, metadata, images, texts and
annotations whose id names no analysis are dropped; an annotation label's weights are its
numeric non-zero values (strings and nulls are not weights, as in NiMARE's label matrix), and
every annotation column is a label. Writing produces the same tables and manifest as NiMARE's
``write_parquet``, each file written atomically and the manifest last.

pyarrow is needed for both directions (``pip install pyarrow``).
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import scipy.sparse as sp

from nimare_dask.studyset.core import Annotations, StudysetError

if TYPE_CHECKING:
    from nimare_dask.studyset.core import Studyset

__all__ = ["PARQUET_FORMAT", "is_parquet_studyset", "read_parquet_tables", "write_parquet"]

#: The manifest's ``format`` value (NiMARE 0.22.1).
PARQUET_FORMAT = "nimare-studyset-parquet"
_ID_COLS = ("id", "study_id", "contrast_id")
_TABLES = ("studies", "analyses", "coordinates", "images", "metadata", "texts", "annotations")


def _pyarrow():
    try:
        import pyarrow
        import pyarrow.parquet
    except ImportError as err:  # environment dependent
        raise ImportError(
            "reading or writing a NeuroStore parquet studyset needs pyarrow "
            "(python -m pip install pyarrow)"
        ) from err
    return pyarrow


def is_parquet_studyset(path: str | Path) -> bool:
    """True when ``path`` is a folder holding a parquet studyset (NiMARE's test).

    Parameters
    ----------
    path : str or Path

    Returns
    -------
    bool
        ``studies.parquet`` and ``analyses.parquet`` exist in the folder.
    """
    p = Path(path)
    return p.is_dir() and (p / "studies.parquet").is_file() and (p / "analyses.parquet").is_file()


def _read(folder: Path, name: str):
    path = folder / f"{name}.parquet"
    if not path.exists():
        return None
    pa = _pyarrow()
    try:
        return pa.parquet.read_table(path)
    except (pa.ArrowInvalid, OSError) as err:
        raise StudysetError(f"{path}: not a readable parquet table: {err}") from None


def _strings(table, column: str, where: str) -> np.ndarray:
    if column not in table.schema.names:
        raise StudysetError(f"{where}: missing required column {column!r}")
    return np.asarray(table.column(column).to_pylist(), dtype=object)


def _valid(values: np.ndarray) -> np.ndarray:
    return np.array([v is not None and not (isinstance(v, float) and v != v) for v in values])


def read_parquet_tables(folder: str | Path, *, basepath: str | Path | None = None) -> dict:
    """Read a parquet studyset folder into the tables of ``Studyset.from_tables``.

    Parameters
    ----------
    folder : str or Path
        The release folder.
    basepath : str or Path, optional
        Relative image references are resolved against it (kept as written when None, as
        NiMARE does for a parquet source without ``basepath``).

    Returns
    -------
    dict
        ``analyses, points, metadata, annotations, images, texts`` (foci not yet
        harmonised) and ``info`` (``id``, ``name``, ``annotation_id`` from the manifest).
    """
    folder = Path(folder)
    if not is_parquet_studyset(folder):
        raise StudysetError(
            f"{folder}: not a parquet studyset (expected studies.parquet and analyses.parquet)"
        )
    manifest: dict = {}
    if (folder / "studyset.json").exists():
        try:
            manifest = json.loads((folder / "studyset.json").read_text())
        except json.JSONDecodeError as err:
            raise StudysetError(f"{folder / 'studyset.json'}: invalid JSON: {err}") from None
    studies_t, analyses_t = _read(folder, "studies"), _read(folder, "analyses")
    where = str(folder / "analyses.parquet")
    a_id = _strings(analyses_t, "id", where).astype(str)
    a_study = _strings(analyses_t, "study_id", where).astype(str)
    names = (
        _strings(analyses_t, "name", where)
        if "name" in analyses_t.schema.names
        else np.full(len(a_id), "", dtype=object)
    )
    s_key = _strings(studies_t, "study_id", str(folder / "studies.parquet")).astype(str)
    s_name = (
        pd.Series(studies_t.column("name").to_pylist(), index=s_key)
        if "name" in studies_t.schema.names
        else pd.Series("", index=s_key, dtype=object)
    )
    s_name = s_name[~s_name.index.duplicated()]
    analyses = pd.DataFrame(
        {
            "id": a_id,
            "study_id": a_study,
            "contrast_id": _strings(analyses_t, "contrast_id", where).astype(str),
            "study_name": s_name.reindex(a_study).fillna("").to_numpy(dtype=object),
            "analysis_name": pd.Series(names, dtype=object).fillna("").to_numpy(),
        }
    )
    known = pd.Index(a_id)

    coords_t = _read(folder, "coordinates")
    if coords_t is not None and coords_t.num_rows:
        c_where = str(folder / "coordinates.parquet")
        c_id = _strings(coords_t, "id", c_where).astype(str)
        xyz = {
            ax: np.asarray(coords_t.column(ax).to_numpy(zero_copy_only=False), dtype=float)
            if ax in coords_t.schema.names
            else None
            for ax in ("x", "y", "z")
        }
        missing = [ax for ax, v in xyz.items() if v is None]
        if missing:
            raise StudysetError(f"{c_where}: missing required column(s) {missing}")
        space = (
            _strings(coords_t, "space", c_where)
            if "space" in coords_t.schema.names
            else np.full(len(c_id), None, dtype=object)
        )
        keep = known.get_indexer(c_id) >= 0
        points = pd.DataFrame(
            {
                "id": c_id[keep],
                "x": xyz["x"][keep],
                "y": xyz["y"][keep],
                "z": xyz["z"][keep],
                "space": space[keep],
            }
        )
    else:
        points = pd.DataFrame(columns=["id", "x", "y", "z", "space"])

    metadata = _frame(folder, "metadata", known)
    metadata = metadata.drop(columns=["study_id", "contrast_id"], errors="ignore")

    images = _long_images(_read(folder, "images"), known, basepath)
    texts_frame = _frame(folder, "texts", known)
    texts = texts_frame.drop(columns=["study_id", "contrast_id"], errors="ignore").melt(
        id_vars="id", var_name="type", value_name="text"
    )
    texts = texts[_valid(texts["text"].to_numpy(dtype=object))].reset_index(drop=True)

    annotations = _annotations(_read(folder, "annotations"), a_id)
    declared = [a.get("id") for a in (manifest.get("annotations") or []) if isinstance(a, dict)]
    return {
        "analyses": analyses,
        "points": points,
        "metadata": metadata,
        "annotations": annotations,
        "images": images,
        "texts": texts,
        "info": {
            "id": manifest.get("id"),
            "name": manifest.get("name", ""),
            "annotation_id": next((d for d in declared if d), "release"),
        },
    }


def _frame(folder: Path, name: str, known: pd.Index) -> pd.DataFrame:
    table = _read(folder, name)
    if table is None or table.num_rows == 0:
        return pd.DataFrame({"id": pd.Series(dtype=object)})
    ids = _strings(table, "id", str(folder / f"{name}.parquet")).astype(str)
    cols = {"id": ids}
    for col in table.schema.names:
        if col in _ID_COLS:
            continue
        values = table.column(col).to_pylist()
        cols[col] = pd.Series(values, dtype=object).to_numpy()
    frame = pd.DataFrame(cols)
    frame = frame[known.get_indexer(ids) >= 0]
    if frame["id"].duplicated().any():
        dup = frame.loc[frame["id"].duplicated(), "id"].tolist()[:5]
        raise StudysetError(f"{folder / (name + '.parquet')}: duplicated analysis ids {dup}")
    return frame.reset_index(drop=True)


def _long_images(table, known: pd.Index, basepath) -> pd.DataFrame:
    from nimare_dask.studyset.nimads import _resolve

    rows = []
    if table is not None and table.num_rows:
        ids = np.asarray(table.column("id").to_pylist(), dtype=object).astype(str)
        ok = known.get_indexer(ids) >= 0
        base = Path(basepath) if basepath is not None else None
        # releases name images "<type>__source"; NiMARE 0.22.1's own to_parquet writes
        # "<type>" + "<type>__relative" instead (and its reader then finds no images): read the
        # relative references of such a folder rather than dropping them
        suffix = "__source"
        if not any(c.endswith(suffix) for c in table.schema.names):
            suffix = "__relative"
        for col in table.schema.names:
            if not col.endswith(suffix):
                continue
            imtype = col[: -len(suffix)]
            values = np.asarray(table.column(col).to_pylist(), dtype=object)
            for aid, ref in zip(ids[ok & _valid(values)], values[ok & _valid(values)], strict=True):
                rows.append({"id": aid, "type": imtype, "path": _resolve(ref, base)})
    return pd.DataFrame(rows, columns=["id", "type", "path"])


def _annotations(table, a_id: np.ndarray) -> Annotations | None:
    """Every non-id column is a label; its numeric, finite, non-zero values are weights."""
    if table is None:
        return None
    ids = np.asarray(table.column("id").to_pylist(), dtype=object).astype(str)
    rows_of = pd.Index(a_id).get_indexer(ids)
    labels = sorted(c for c in table.schema.names if c not in _ID_COLS)
    r_acc, c_acc, v_acc = [], [], []
    for j, label in enumerate(labels):
        col = table.column(label)
        if not (_is_numeric(col.type)):
            continue  # strings and nulls are notes, not weights (NiMARE's label matrix)
        vals = np.asarray(col.to_numpy(zero_copy_only=False), dtype=float)
        keep = (rows_of >= 0) & np.isfinite(vals) & (vals != 0)
        r_acc.append(rows_of[keep])
        c_acc.append(np.full(int(keep.sum()), j))
        v_acc.append(vals[keep])
    shape = (len(a_id), len(labels))
    if r_acc:
        m = sp.csr_matrix(
            (np.concatenate(v_acc), (np.concatenate(r_acc), np.concatenate(c_acc))),
            shape=shape,
            dtype=np.float32,
        )
    else:
        m = sp.csr_matrix(shape, dtype=np.float32)
    return Annotations(m, labels)


def _is_numeric(dtype) -> bool:
    pa = _pyarrow()
    t = pa.types
    return t.is_integer(dtype) or t.is_floating(dtype) or t.is_boolean(dtype)


# ---------------------------------------------------------------------------------- writing
def _write_table(loc, name: str, frame: pd.DataFrame) -> str:
    pa = _pyarrow()
    buf = io.BytesIO()
    table = pa.Table.from_pandas(frame, preserve_index=False)
    pa.parquet.write_table(table, buf)
    loc.write_bytes(f"{name}.parquet", buf.getvalue())
    return f"{name}.parquet"


def write_parquet(
    ss: Studyset,
    directory: str | Path,
    *,
    studyset_id: str | None = None,
    name: str = "",
    annotation_id: str = "nimare_dask",
    overwrite: bool = False,
) -> Path:
    """Write a Studyset as a NeuroStore parquet studyset (NiMARE's ``to_parquet`` layout).

    Parameters
    ----------
    ss : Studyset
    directory : str or Path
        The release folder (created if absent).
    studyset_id, name : str, optional
        The manifest's ``id`` and ``name``.
    annotation_id : str
        The manifest's annotation id (when the studyset has annotations).
    overwrite : bool
        Write into a folder that already holds files; otherwise that is an error.

    Returns
    -------
    Path
        ``directory``. Coordinates are written as harmonised (MNI mm), with the space each
        focus was reported in; each table is written atomically, ``studyset.json`` last.
    """
    from nimare_dask.storage import Location

    directory = Path(directory)
    if directory.exists() and any(directory.iterdir()) and not overwrite:
        raise FileExistsError(f"{directory} already contains files; pass overwrite=True")
    directory.mkdir(parents=True, exist_ok=True)
    loc = Location(str(directory))
    a = ss._analyses
    base = a[["id", "study_id", "contrast_id"]].reset_index(drop=True)
    studies = a.drop_duplicates("study_id")[["study_id", "study_name"]].rename(
        columns={"study_name": "name"}
    )
    meta_by_id = ss._metadata.set_index("id")
    for col in ("description", "authors", "publication"):
        src = {"publication": "journal"}.get(col, col)
        if src in meta_by_id:
            first = meta_by_id[src].reindex(a["id"]).to_numpy(dtype=object)
            studies[col] = pd.Series(first, index=a.index).loc[studies.index].to_numpy()
        else:
            studies[col] = None
    frames = {
        "studies": studies.reset_index(drop=True),
        "analyses": base.assign(name=a["analysis_name"].to_numpy(dtype=object)),
        "coordinates": _coordinates_frame(ss),
        "images": _wide(base, ss._images, "path", suffix="__source").assign(space=None),
        "metadata": base.merge(_metadata_frame(ss), on="id", how="left"),
        "texts": _wide(base, ss._texts, "text"),
    }
    if ss._annotations is not None:
        frames["annotations"] = _annotation_frame(ss, base)
    written = {key: _write_table(loc, key, frame) for key, frame in frames.items()}
    manifest = {
        "format": PARQUET_FORMAT,
        "version": 1,
        "id": studyset_id,
        "name": name,
        "tables": written,
        "annotations": [{"id": annotation_id}] if "annotations" in frames else [],
    }
    loc.write_bytes("studyset.json", json.dumps(manifest, indent=2).encode())
    return directory


def _coordinates_frame(ss: Studyset) -> pd.DataFrame:
    """Foci as harmonised: TAL foci were converted, so they are written as MNI."""
    coords = ss.coordinates
    space = coords["space"].to_numpy(dtype=object)
    coords["space"] = np.where(space == "UNKNOWN", "UNKNOWN", "MNI")
    coords["kind"] = None
    return coords


def _metadata_frame(ss: Studyset) -> pd.DataFrame:
    meta = ss._metadata.copy()
    for col in meta.columns:
        if meta[col].dtype == object:  # parquet needs one type per column: lists stay lists
            meta[col] = meta[col].map(_plain)
    return meta


def _plain(v):
    if isinstance(v, np.ndarray):
        return v.tolist()
    if isinstance(v, np.generic):
        return v.item()
    return v


def _wide(base: pd.DataFrame, long: pd.DataFrame, value: str, suffix: str = "") -> pd.DataFrame:
    if long.empty:
        return base.copy()
    wide = long.drop_duplicates(["id", "type"]).pivot(index="id", columns="type", values=value)
    wide.columns = [f"{c}{suffix}" for c in wide.columns]
    return base.merge(wide.reset_index(), on="id", how="left")


def _annotation_frame(ss: Studyset, base: pd.DataFrame) -> pd.DataFrame:
    ann = ss._annotations
    values = ann.values
    dense = values.toarray() if sp.issparse(values) else np.asarray(values, dtype=np.float32)
    dense = dense.astype(float)
    dense[dense == 0] = np.nan  # absent weights are nulls, as in NiMARE's releases
    frame = pd.DataFrame(dense, columns=ann.labels)
    return pd.concat([base, frame], axis=1)
