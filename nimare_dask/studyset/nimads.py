"""NIMADS dicts (and NiMARE's legacy Dataset dicts) <-> Studyset tables.

NIMADS is the Studyset's own schema, so parsing it lives with the data model; the other file
formats (Sleuth, Neurosynth, NeuroQuery) live in :mod:`nimare_dask.io`.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from nimare_dask.studyset.core import Annotations, StudysetError

if TYPE_CHECKING:
    from nimare_dask.studyset.core import Studyset

_IMAGE_KEY_SPACE = "space"


def _load_json(source: str | Path, what: str) -> dict:
    path = Path(source)
    if not path.exists():
        raise FileNotFoundError(f"{what} file not found: {path}")
    raw = path.read_bytes()
    if path.suffix == ".gz":
        import gzip

        raw = gzip.decompress(raw)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise StudysetError(f"{path}: not a UTF-8 text file (binary data?): {err}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise StudysetError(
            f"{path}: invalid JSON at line {err.lineno}, column {err.colno}: {err.msg}"
        ) from None


def _is_url(s: str) -> bool:
    return "://" in s


def _resolve(path: Any, basepath: Path | None) -> str | None:
    if path is None or (isinstance(path, float) and math.isnan(path)) or path == "":
        return None
    path = str(path)
    if _is_url(path) or basepath is None or os.path.isabs(path):
        return path
    return str((basepath / path).resolve())


def tables_from_source(
    source: str | Path | dict | None,
    *,
    annotations: dict | str | Path | None = None,
    basepath: str | Path | None = None,
) -> dict:
    """Parse a NIMADS or legacy-Dataset source into the tables of :meth:`Studyset.from_tables`.

    Returns
    -------
    dict
        ``analyses, points, metadata, annotations, images, texts`` (not yet harmonised).
    """
    from nimare_dask.studyset.core import Studyset

    name = "studyset"
    if source is None:
        source = {"id": "empty", "name": "", "studies": []}
    if isinstance(source, str | Path):
        name = str(source)
        if basepath is None:
            basepath = Path(source).resolve().parent
        source = _load_json(source, "studyset")
    if not isinstance(source, dict):
        raise StudysetError(f"{name}: expected a JSON object, got {type(source).__name__}")
    basepath = Path(basepath) if basepath is not None else None
    if "studies" in source:
        tables = nimads_to_tables(source, name=name, basepath=basepath)
    elif all(isinstance(v, dict) and "contrasts" in v for v in source.values()) and source:
        tables = dataset_to_tables(source, name=name, basepath=basepath)
    else:
        raise StudysetError(
            f"{name}: not a NIMADS studyset (no 'studies' list) nor a NiMARE Dataset "
            "(study -> {'contrasts': ...})"
        )
    if annotations is not None:
        if isinstance(annotations, str | Path):
            annotations = _load_json(annotations, "annotation")
        tables["annotations"] = _nimads_annotation(annotations, tables["analyses"], name)
    ss = Studyset.from_tables(**tables, source_name=name)
    return ss._tables()


def open_folder(source: str | Path, *, target=None, basepath: str | Path | None = None):
    """A Studyset from a folder or URL: a NeuroStore parquet studyset or a nimare_dask store.

    Parameters
    ----------
    source : str or Path
        A parquet release folder (``studies.parquet``, ``analyses.parquet``, ...), or a store
        folder or fsspec URL written by :meth:`Studyset.to_zarr`.
    target : str or Grid, optional
        The voxel grid.
    basepath : str or Path, optional
        Relative image references of a parquet studyset are resolved against it.

    Returns
    -------
    Studyset
        A store is opened lazily (``.store`` set); a parquet studyset is read.
    """
    from nimare_dask.studyset.core import Studyset
    from nimare_dask.studyset.parquet import is_parquet_studyset, read_parquet_tables
    from nimare_dask.studyset.store import StoreError, open_studyset

    if is_parquet_studyset(source):
        tables = read_parquet_tables(source, basepath=basepath)
        info = tables.pop("info")
        ss = Studyset.from_tables(**tables, target=target or "mni152_2mm", source_name=str(source))
        ss.info = info
        return ss
    try:
        return open_studyset(source, target=target)
    except StoreError as err:
        raise StudysetError(
            f"{source}: neither a NeuroStore parquet studyset (a folder with studies.parquet "
            "and analyses.parquet, as NiMARE 0.22.1 writes) nor a nimare_dask studyset store "
            f"(written by Studyset.to_zarr; {err})"
        ) from None


def _is_folder(source) -> bool:
    return isinstance(source, str | os.PathLike) and (_is_url(str(source)) or Path(source).is_dir())


def _require(obj: dict, key: str, where: str) -> Any:
    if not isinstance(obj, dict) or key not in obj:
        raise StudysetError(f"{where}: missing required field {key!r}")
    return obj[key]


def nimads_to_tables(data: dict, *, name: str = "studyset", basepath: Path | None = None) -> dict:
    """NIMADS studyset dict -> raw tables (see :func:`tables_from_source`)."""
    studies = _require(data, "studies", name)
    if not isinstance(studies, list):
        raise StudysetError(f"{name}: 'studies' must be a list")
    a_rows, p_rows, m_rows, i_rows, t_rows, ann_rows = [], [], [], [], [], []
    for s_i, study in enumerate(studies):
        where = f"{name}: studies[{s_i}]"
        sid = str(_require(study, "id", where))
        where = f"{name}: study {sid!r}"
        s_meta = study.get("metadata") or {}
        if not isinstance(s_meta, dict):
            raise StudysetError(f"{where}: 'metadata' must be an object")
        for a_i, analysis in enumerate(study.get("analyses") or []):
            aid = str(_require(analysis, "id", f"{where} analyses[{a_i}]"))
            full = f"{sid}-{aid}"
            a_where = f"{name}: analysis {full!r}"
            a_rows.append(
                {
                    "id": full,
                    "study_id": sid,
                    "contrast_id": aid,
                    "study_name": study.get("name") or "",
                    "analysis_name": analysis.get("name") or "",
                }
            )
            a_meta = analysis.get("metadata") or {}
            if not isinstance(a_meta, dict):
                raise StudysetError(f"{a_where}: 'metadata' must be an object")
            meta = {
                "id": full,
                "authors": study.get("authors"),
                "journal": study.get("publication"),
                "year": study.get("year"),
                "doi": study.get("doi"),
                "pmid": study.get("pmid"),
            }
            meta.update(
                {k: v for k, v in s_meta.items() if k not in ("sample_size", "sample_sizes")}
            )
            meta.update(
                {k: v for k, v in a_meta.items() if k not in ("sample_size", "sample_sizes")}
            )
            meta["sample_sizes"] = _first_sample_sizes(
                [
                    ("sample_sizes", a_meta.get("sample_sizes")),
                    ("sample_size", a_meta.get("sample_size")),
                    ("sample_sizes", s_meta.get("sample_sizes")),
                    ("sample_size", s_meta.get("sample_size")),
                ]
            )
            m_rows.append(meta)
            for p_i, point in enumerate(analysis.get("points") or []):
                coords = _require(point, "coordinates", f"{a_where} points[{p_i}]")
                if not isinstance(coords, list | tuple) or len(coords) != 3:
                    raise StudysetError(
                        f"{a_where} points[{p_i}]: 'coordinates' must be [x, y, z], got {coords!r}"
                    )
                try:
                    x, y, z = (float(c) if c is not None else np.nan for c in coords)
                except (TypeError, ValueError):
                    raise StudysetError(
                        f"{a_where} points[{p_i}]: non-numeric coordinates {coords!r}"
                    ) from None
                p_rows.append({"id": full, "x": x, "y": y, "z": z, "space": point.get("space")})
            for img in analysis.get("images") or []:
                if not isinstance(img, dict):
                    continue
                path = img.get("url") or img.get("filename")
                i_rows.append(
                    {"id": full, "type": img.get("value_type"), "path": _resolve(path, basepath)}
                )
            texts = analysis.get("texts") or {}
            for key, val in texts.items() if isinstance(texts, dict) else []:
                t_rows.append({"id": full, "type": key, "text": val})
            ann = analysis.get("annotations")
            if isinstance(ann, dict) and ann:
                ann_rows.append((full, ann))
    analyses = pd.DataFrame(
        a_rows, columns=["id", "study_id", "contrast_id", "study_name", "analysis_name"]
    )
    points = pd.DataFrame(p_rows, columns=["id", "x", "y", "z", "space"])
    metadata = pd.DataFrame(m_rows) if m_rows else pd.DataFrame({"id": []})
    annotations = _annotations_from_rows(ann_rows, analyses) if ann_rows else None
    return {
        "analyses": analyses,
        "points": points,
        "metadata": metadata,
        "annotations": annotations,
        "images": pd.DataFrame(i_rows, columns=["id", "type", "path"]),
        "texts": pd.DataFrame(t_rows, columns=["id", "type", "text"]),
    }


def _first_sample_sizes(candidates) -> list | None:
    """NiMARE's priority: analysis sample_sizes, analysis sample_size, then the study's."""
    for key, raw in candidates:
        vals = _coerce_sizes(raw) if key == "sample_sizes" else _coerce_sizes([raw])
        if vals:
            return vals
    return None


def _coerce_sizes(raw) -> list | None:
    if raw is None:
        return None
    if not isinstance(raw, list | tuple | np.ndarray):
        raw = [raw]
    out = []
    for v in raw:
        try:
            f = float(v)
        except (TypeError, ValueError):
            return None
        if not math.isfinite(f):
            return None
        out.append(int(f) if f.is_integer() else f)
    return out or None


def _annotations_from_rows(rows, analyses: pd.DataFrame) -> Annotations:
    labels: dict[str, None] = {}
    for _, ann in rows:
        for k in ann:
            labels.setdefault(str(k), None)
    label_list = list(labels)
    index = {lab: i for i, lab in enumerate(label_list)}
    pos = {aid: i for i, aid in enumerate(analyses["id"])}
    # an analysis without an annotation record is NaN throughout (decoders drop it, as NiMARE's
    # Labels.validity does); a label missing from an existing record is 0
    values = np.full((len(analyses), len(label_list)), np.nan, dtype=np.float32)
    for aid, ann in rows:
        if ann:
            values[pos[aid]] = 0.0
        for k, v in ann.items():
            values[pos[aid], index[str(k)]] = _as_weight(v)
    return Annotations(values, label_list)


def _as_weight(v) -> float:
    if isinstance(v, bool):
        return float(v)
    try:
        return float(v)
    except (TypeError, ValueError):
        return np.nan


def _nimads_annotation(annotation: dict, analyses: pd.DataFrame, name: str) -> Annotations:
    notes = _require(annotation, "notes", f"{name}: annotation")
    by_analysis = {}
    for n_i, note in enumerate(notes):
        aid = _require(note, "analysis", f"{name}: annotation notes[{n_i}]")
        by_analysis[str(aid)] = note.get("note") or {}
    contrast_to_full = dict(zip(analyses["contrast_id"], analyses["id"], strict=False))
    rows = [(contrast_to_full[a], n) for a, n in by_analysis.items() if a in contrast_to_full]
    return (
        _annotations_from_rows(rows, analyses)
        if rows
        else Annotations(np.zeros((len(analyses), 0), np.float32), [])
    )


def dataset_to_tables(data: dict, *, name: str = "dataset", basepath: Path | None = None) -> dict:
    """NiMARE legacy Dataset dict (study -> contrasts) -> raw tables."""
    a_rows, p_rows, m_rows, i_rows, t_rows, ann_rows = [], [], [], [], [], []
    for sid, study in data.items():
        contrasts = study.get("contrasts") or {}
        if not isinstance(contrasts, dict):
            raise StudysetError(f"{name}: study {sid!r}: 'contrasts' must be an object")
        for cid, con in contrasts.items():
            full = f"{sid}-{cid}"
            where = f"{name}: analysis {full!r}"
            a_rows.append({"id": full, "study_id": str(sid), "contrast_id": str(cid)})
            meta = {"id": full}
            for key in ("authors", "journal", "title", "year"):
                if key in study:
                    meta[key] = study[key]
            meta.update(con.get("metadata") or {})
            m_rows.append(meta)
            coords = con.get("coords")
            if coords:
                xs, ys, zs = (coords.get(k) or [] for k in ("x", "y", "z"))
                if not (len(xs) == len(ys) == len(zs)):
                    raise StudysetError(
                        f"{where}: coords x/y/z have different lengths "
                        f"({len(xs)}, {len(ys)}, {len(zs)})"
                    )
                for x, y, z in zip(xs, ys, zs, strict=True):
                    p_rows.append(
                        {
                            "id": full,
                            "x": _num(x, where),
                            "y": _num(y, where),
                            "z": _num(z, where),
                            "space": coords.get("space"),
                        }
                    )
            for key, path in (con.get("images") or {}).items():
                if key == _IMAGE_KEY_SPACE or path is None:
                    continue
                i_rows.append({"id": full, "type": key, "path": _resolve(path, basepath)})
            for key, val in (con.get("text") or {}).items():
                t_rows.append({"id": full, "type": key, "text": val})
            labels = con.get("labels")
            if labels:
                ann_rows.append((full, labels))
    analyses = pd.DataFrame(a_rows, columns=["id", "study_id", "contrast_id"])
    return {
        "analyses": analyses,
        "points": pd.DataFrame(p_rows, columns=["id", "x", "y", "z", "space"]),
        "metadata": pd.DataFrame(m_rows) if m_rows else pd.DataFrame({"id": []}),
        "annotations": _annotations_from_rows(ann_rows, analyses) if ann_rows else None,
        "images": pd.DataFrame(i_rows, columns=["id", "type", "path"]),
        "texts": pd.DataFrame(t_rows, columns=["id", "type", "text"]),
    }


def _num(v, where: str) -> float:
    if v is None:
        return np.nan
    try:
        return float(v)
    except (TypeError, ValueError):
        raise StudysetError(f"{where}: non-numeric coordinate {v!r}") from None


def _jsonable(v):
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, np.ndarray):
        return v.tolist()
    if isinstance(v, float) and math.isnan(v):
        return None
    return v


def tables_to_nimads(ss: Studyset, studyset_id: str = "nimare_dask", name: str = "") -> dict:
    """A Studyset as a NIMADS dict (foci in MNI, as harmonised)."""
    meta = ss._metadata.set_index("id")
    coords = ss._points
    by_id_points = {k: g for k, g in coords.groupby("id", sort=False)}
    imgs = {k: g for k, g in ss._images.groupby("id", sort=False)}
    texts = {k: g for k, g in ss._texts.groupby("id", sort=False)}
    ann = ss._annotations
    ann_values = None if ann is None else (ann.values if ann.is_sparse else np.asarray(ann.values))
    studies: dict[str, dict] = {}
    for row_i, a in enumerate(ss._analyses.itertuples(index=False)):
        study = studies.setdefault(
            a.study_id,
            {"id": a.study_id, "name": a.study_name or "", "metadata": {}, "analyses": []},
        )
        m = {k: _jsonable(v) for k, v in meta.loc[a.id].items()} if a.id in meta.index else {}
        m = {k: v for k, v in m.items() if v is not None and not (isinstance(v, list) and not v)}
        pts = by_id_points.get(a.id)
        analysis = {
            "id": a.contrast_id,
            "name": a.analysis_name or "",
            "metadata": m,
            "points": []
            if pts is None
            else [
                {"space": "MNI", "coordinates": [float(x), float(y), float(z)]}
                for x, y, z in pts[["x", "y", "z"]].to_numpy()
            ],
            "images": []
            if a.id not in imgs
            else [{"url": p, "value_type": t} for t, p in imgs[a.id][["type", "path"]].to_numpy()],
        }
        if a.id in texts:
            analysis["texts"] = dict(texts[a.id][["type", "text"]].to_numpy().tolist())
        if ann is not None:
            vals = ann_values[row_i]
            vals = vals.toarray().ravel() if hasattr(vals, "toarray") else np.asarray(vals)
            if ann.labels and not np.isnan(vals).all():  # all NaN: unannotated, no record
                nz = np.flatnonzero(~np.isnan(vals) & (vals != 0))
                # an annotated all-zero analysis keeps a record: NiMARE drops analyses without
                analysis["annotations"] = {ann.labels[j]: float(vals[j]) for j in nz} or {
                    ann.labels[0]: 0.0
                }
        study["analyses"].append(analysis)
    return {"id": studyset_id, "name": name, "studies": list(studies.values())}


def write_nimads(ss: Studyset, path: str | Path) -> Path:
    """Write a Studyset as NIMADS JSON, atomically (temp file, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(tables_to_nimads(ss), f, indent=1)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
