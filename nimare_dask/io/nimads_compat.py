"""NiMARE 0.22.1's NIMADS <-> Sleuth converters and ``load_nimads``, on this package's readers.

* :func:`convert_sleuth_to_nimads_dict`: Sleuth file(s) -> the NIMADS dict NiMARE builds (same
  studies, analyses, order, points and ``sample_sizes``), read by
  :func:`~nimare_dask.io.sleuth.read_sleuth`.
* :func:`convert_nimads_to_sleuth`: a NIMADS studyset (path, dict or :class:`Studyset`) ->
  Sleuth file(s) as NiMARE writes them: one ``nimads_sleuth_file.txt``, or one file per
  annotation value (``include_true.txt``, ``default.txt``, ...).
* :func:`load_nimads`: a NIMADS studyset (path, dict or Studyset) with an optional NIMADS
  annotation -> :class:`Studyset`.

Where these differ from NiMARE (each in the function's notes): our readers' stricter checks
(:mod:`nimare_dask.io.sleuth`: duplicated experiments, empty experiments, malformed lines are
errors or warnings that NiMARE does not give) apply; ``convert_nimads_to_sleuth(...,
target="TAL")`` writes Talairach coordinates, where NiMARE 0.22.1 writes the MNI ones under a
``//Reference=TAL`` header.
"""

from __future__ import annotations

import math
import os
import warnings
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from nimare_dask.io.errors import FociOutsideMaskWarning
from nimare_dask.io.sleuth import _as_paths, _parse_file, read_sleuth, split_study_info
from nimare_dask.space import Grid, mni2tal
from nimare_dask.studyset.core import Studyset, StudysetError
from nimare_dask.studyset.nimads import _load_json, _nimads_annotation

__all__ = ["convert_nimads_to_sleuth", "convert_sleuth_to_nimads_dict", "load_nimads"]

_ID_COLUMNS = ("id", "study_id", "contrast_id", "study_name", "analysis_name", "sample_size")


def _missing(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    if isinstance(value, str) and not value.strip():
        return True
    if isinstance(value, np.generic):
        return _missing(value.item())
    return False


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return [_plain(v) for v in value.tolist()]
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


# ------------------------------------------------------------------------------- load_nimads
def load_nimads(
    studyset: str | os.PathLike | dict | Studyset,
    annotation: str | os.PathLike | dict | None = None,
    target: str | Grid = "mni152_2mm",
) -> Studyset:
    """Load a NIMADS studyset (JSON path, dict or Studyset), optionally with an annotation.

    Parameters
    ----------
    studyset : str, Path, dict or Studyset
        The studyset. NiMARE's legacy Dataset JSON is read too.
    annotation : str, Path or dict, optional
        A NIMADS annotation (``{"notes": [{"analysis": ..., "note": {...}}, ...]}``). Its notes
        become the Studyset's annotation matrix (replacing inline annotations; numbers and
        booleans as weights, other values as NaN).
    target : str or Grid, default="mni152_2mm"
        The voxel grid (not in NiMARE's signature; a Studyset passed in keeps its own grid).

    Returns
    -------
    Studyset
        Eager tables.

    Raises
    ------
    ValueError
        ``studyset`` is none of the above (as NiMARE).
    """
    if isinstance(studyset, Studyset):
        if not annotation:
            return studyset
        if isinstance(annotation, str | os.PathLike):
            annotation = _load_json(annotation, "annotation")
        tables = dict(studyset._tables())
        tables["annotations"] = _nimads_annotation(annotation, tables["analyses"], "annotation")
        return Studyset.from_tables(**tables, target=studyset.grid, harmonize=False)
    if not isinstance(studyset, dict | str | os.PathLike):
        raise ValueError(
            "studyset must be: a dictionary, a path to a json file, or studyset object"
        )
    return Studyset(studyset, target=target, annotations=annotation or None)


# ---------------------------------------------------------------------- Sleuth -> NIMADS dict
def _sleuth_target_converts(target: Any) -> bool:
    """NiMARE's reading of ``target``: any 'tal', 'ale' or 'mni' converts to MNI; else raw."""
    try:
        tgt = str(target).lower()
    except Exception:
        tgt = "mni"
    return "tal" in tgt or "ale" in tgt or "mni" in tgt


def convert_sleuth_to_nimads_dict(
    text_file: str | os.PathLike | Sequence[str | os.PathLike],
    *,
    target: str | None = None,
    studyset_id: str | None = None,
    studyset_name: str = "",
) -> dict[str, Any]:
    """Convert Sleuth text file(s) to a NIMADS studyset dict (NiMARE's layout and order).

    Parameters
    ----------
    text_file : str, Path or sequence of them
        Sleuth file(s); several are merged.
    target : str, optional
        ``None`` (default): coordinates stay as written, each point labelled with its file's
        space (``"MNI"`` or ``"TAL"``). Any string containing ``"tal"``, ``"ale"`` or ``"mni"``
        (``"MNI"``, ``"TAL"``, ``"ale_2mm"``, ``"mni152_2mm"``...): coordinates in MNI
        (Talairach converted), labelled ``"MNI"``. Any other string: as ``None`` (NiMARE).
    studyset_id : str, optional
        The dict's ``"id"`` (``None`` stays ``None``, as NiMARE).
    studyset_name : str
        The dict's ``"name"``.

    Returns
    -------
    dict
        ``{"id", "name", "studies": [{"id", "name", "authors", "publication", "metadata",
        "analyses": [{"id", "name", "conditions", "weights", "images", "points",
        "metadata": {"sample_sizes": [N], ...}}]}]}``, studies and analyses in the order of the
        sorted analysis ids ``"<study>-<contrast>"``.

    Notes
    -----
    Parsed by :func:`~nimare_dask.io.sleuth.read_sleuth`, so its checks apply (NiMARE differs):
    a duplicated experiment is an error (NiMARE keeps the last), an experiment without foci is
    dropped with a warning, and ``// Key=Value`` lines after ``Subjects`` (NiMARE's own Sleuth
    writer emits ``// DOI=...``, which NiMARE's reader rejects) become analysis metadata
    (``Authors`` and ``Publication`` also fill the study's ``authors`` and ``publication``).
    """
    paths = _as_paths(text_file)
    with warnings.catch_warnings():
        # a dict has no voxel grid: whether foci fall in a brain mask is not its business
        warnings.simplefilter("ignore", FociOutsideMaskWarning)
        ss = read_sleuth(paths)
    convert = _sleuth_target_converts(target)
    raw: dict[str, tuple[str, list]] = {}
    if not convert:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # read_sleuth has already warned
            for path in paths:
                space, experiments = _parse_file(path)
                for exp in experiments:
                    study, contrast = split_study_info(exp.name)
                    raw[f"{study}-{contrast}"] = (space, exp.xyz)

    meta = ss.metadata
    extra_cols = [c for c in meta.columns if c not in _ID_COLUMNS]
    xyz = ss.xyz()
    offsets = ss.focus_offsets()
    studies: dict[str, dict] = {}
    for r, a in enumerate(ss.analyses.itertuples(index=False)):
        study = studies.setdefault(
            a.study_id,
            {
                "id": a.study_id,
                "name": a.study_id,
                "authors": "",
                "publication": "",
                "metadata": {},
                "analyses": [],
            },
        )
        md = {c: meta.at[r, c] for c in extra_cols}
        md = {k: _plain(v) for k, v in md.items() if not _missing(v)}
        if isinstance(md.get("authors"), str):
            study["authors"] = md["authors"]
        if isinstance(md.get("journal"), str):
            study["publication"] = md["journal"]
        if convert:
            points = [
                {"space": "MNI", "coordinates": [float(x), float(y), float(z)]}
                for x, y, z in xyz[offsets[r] : offsets[r + 1]]
            ]
        else:
            space, coords = raw[a.id]
            points = [
                {"space": space, "coordinates": [float(x), float(y), float(z)]}
                for x, y, z in coords
            ]
        study["analyses"].append(
            {
                "id": a.contrast_id,
                "name": a.contrast_id,
                "conditions": [{"name": "default", "description": ""}],
                "weights": [1.0],
                "images": [],
                "points": points,
                "metadata": md,
            }
        )
    return {"id": studyset_id, "name": studyset_name, "studies": list(studies.values())}


# ---------------------------------------------------------------------- NIMADS -> Sleuth files
def _normalise_sleuth_target(target: Any) -> str:
    try:
        tgt = str(target).lower()
    except Exception:
        tgt = "mni"
    if tgt in ("mni", "mni152_2mm", "ale_2mm", "mni152"):
        return "MNI"
    if "tal" in tgt:
        return "TAL"
    return "MNI"


def _raw_inline_notes(source: dict) -> dict[str, dict]:
    """Inline ``annotations`` of each analysis of a NIMADS dict, by analysis id."""
    notes = {}
    for study in source.get("studies") or []:
        for analysis in study.get("analyses") or []:
            ann = analysis.get("annotations")
            if isinstance(ann, dict) and ann:
                notes[f"{study.get('id')}-{analysis.get('id')}"] = dict(ann)
    return notes


def _payload_notes(payload: dict, analyses: pd.DataFrame) -> dict[str, dict]:
    """Notes of a NIMADS annotation, matched by (study, analysis), else by a unique analysis."""
    if not isinstance(payload, dict):
        raise StudysetError(f"annotation must be a NIMADS annotation dict, got {type(payload)}")
    by_pair = {(s, c): i for i, s, c in analyses[["id", "study_id", "contrast_id"]].to_numpy()}
    by_contrast = analyses.groupby("contrast_id")["id"].agg(list).to_dict()
    notes = {}
    for note in payload.get("notes") or []:
        if not isinstance(note, dict):
            continue
        contrast = str(note.get("analysis"))
        if note.get("study") is not None:
            aid = by_pair.get((str(note["study"]), contrast))
        else:
            ids = by_contrast.get(contrast, [])
            aid = ids[0] if len(ids) == 1 else None
        if aid is not None and isinstance(note.get("note"), dict):
            notes[aid] = dict(note["note"])
    return notes


def _matrix_notes(ss: Studyset) -> dict[str, dict]:
    """A Studyset's annotation matrix as notes: numbers (integral ones as int)."""
    ann = ss.annotation_matrix
    notes: dict[str, dict] = {}
    if ann is None:
        return notes

    def number(v: float):
        v = float(np.float32(v))
        return int(v) if v.is_integer() else float(repr(np.float32(v)))

    ids = ss.ids
    if ann.is_sparse:
        coo = ann.values.tocoo()
        for r, c, v in zip(coo.row, coo.col, coo.data, strict=True):
            if np.isfinite(v):
                notes.setdefault(ids[r], {})[ann.labels[c]] = number(v)
    else:
        values = np.asarray(ann.values)
        for r in range(values.shape[0]):
            row = {ann.labels[c]: number(v) for c, v in enumerate(values[r]) if np.isfinite(v)}
            if row:
                notes[ids[r]] = row
    return notes


def _analysis_lines(
    a: pd.Series,
    meta_row: dict,
    xyz: np.ndarray,
    target: str,
    decimal_precision: int,
    export_metadata,
) -> list[str]:
    """One analysis block as NiMARE's ``_write_analysis`` writes it (empty if no foci)."""
    if len(xyz) == 0:
        return []
    study_name = a["study_name"] or f"Study_{a['study_id']}"
    analysis_name = a["analysis_name"] or f"Analysis_{a['contrast_id']}"
    authors = meta_row.get("authors")
    authors = authors if isinstance(authors, str) and authors else ""
    label = (
        f"{authors} ({study_name}): {analysis_name}"
        if authors
        else f"{study_name}: {analysis_name}"
    )
    lines = [f"//{label}"]
    sizes = meta_row.get("sample_sizes")
    if isinstance(sizes, list | tuple | np.ndarray) and len(sizes):
        size = min(sizes)
        if size:
            lines.append(f"//Subjects={_plain(size)}")

    def field(*keys):
        for k in keys:
            v = _plain(meta_row.get(k))
            if not _missing(v) and not (isinstance(v, list | tuple) and not v):
                # a year or PMID in a column with gaps is a float (2005.0): write 2005
                return int(v) if isinstance(v, float) and v.is_integer() else v
        return None

    comments = []
    if authors and "authors" in export_metadata:
        comments.append(f"Authors={authors}")
    publication = field("journal", "publication")
    if publication and "publication" in export_metadata:
        comments.append(f"Publication={publication}")
    year = field("year")
    if year and "year" in export_metadata:
        comments.append(f"Year={year}")
    doi = field("doi")
    if doi and "doi" in export_metadata:
        comments.append(f"DOI={doi}")
    pmid = field("pmid")
    if pmid and "pmid" in export_metadata:
        comments.append(f"PubMedId={pmid}")
    aff = field("affiliations", "institutions", "institution")
    if aff and "affiliations" in export_metadata:
        comments.append(f"Affiliations={aff}")
    lines.extend(f"//{c}" for c in comments)

    coords = np.array(xyz, dtype=float)
    if target == "TAL":
        # Stored foci are MNI (Talairach converted on reading, unknown spaces taken as MNI).
        coords = mni2tal(coords)
    p = decimal_precision
    lines.extend(f"{x:.{p}f}\t{y:.{p}f}\t{z:.{p}f}" for x, y, z in coords)
    lines.append("")
    return lines


def convert_nimads_to_sleuth(
    studyset: str | os.PathLike | dict | Studyset,
    output_dir: str | os.PathLike,
    target: str = "MNI",
    decimal_precision: int | None = 2,
    annotation: str | os.PathLike | dict | None = None,
    export_metadata: list[str] | None = None,
    *,
    annotation_columns: Sequence[str] | None = None,
    annotation_values: dict[str, Sequence[Any]] | None = None,
    split_booleans: bool | None = True,
) -> list[Path]:
    """Write a NIMADS studyset as Sleuth text file(s), as NiMARE's ``convert_nimads_to_sleuth``.

    Parameters
    ----------
    studyset : str, Path, dict or Studyset
        The studyset (NIMADS JSON path or dict, or a Studyset).
    output_dir : str or Path
        Output folder (created).
    target : str, default="MNI"
        ``"MNI"`` or ``"TAL"`` (also ``"ale_2mm"``, ``"mni152_2mm"``, ``"Talairach"``...;
        unknown strings mean MNI).
    decimal_precision : int, default=2
        Decimals of the coordinates.
    annotation : str, Path or dict, optional
        A NIMADS annotation: write one file per annotation value. Inline annotations of the
        studyset's analyses take precedence (NiMARE uses the first annotation set).
    export_metadata : list of {"authors", "publication", "year", "doi", "pmid", "affiliations"}
        Metadata written as ``//Key=Value`` comments (default ``["doi", "pmid"]``).
    annotation_columns : list of str, optional
        Split only on these annotation keys.
    annotation_values : dict, optional
        Keep only these values per key.
    split_booleans : bool, default=True
        Booleans give ``key_true`` / ``key_false`` files.

    Returns
    -------
    list of Path
        The files written (NiMARE returns ``None``): ``nimads_sleuth_file.txt`` without
        annotations; else ``<key>_<value>.txt`` per group and ``default.txt`` for unannotated
        analyses.

    Raises
    ------
    StudysetError
        Unreadable studyset or annotation, negative ``decimal_precision``, an annotation
        without labels (NiMARE raises its ``InvalidStudysetError`` in the same cases).

    Notes
    -----
    Studies are written in order of study id, analyses in order of analysis id, analyses
    without foci skipped; the header is ``//<authors> (<study name>): <analysis name>`` (without
    authors when there are none), then ``//Subjects=<smallest sample size>``. With
    ``target="MNI"`` the coordinates are the studyset's MNI foci (Talairach ones converted, those
    in an unknown space as written), as NiMARE writes them.

    Differences from NiMARE: with ``target="TAL"`` we write the foci converted to Talairach
    (:func:`~nimare_dask.space.mni2tal`; Talairach foci therefore go MNI and back, 1e-13 mm);
    NiMARE 0.22.1 writes the MNI coordinates unchanged under its ``//Reference=TAL`` header (its
    loaded points are labelled ``mni152_2mm``, so its conversion never runs), which a reader
    would convert a second time. Metadata comes from the analysis' metadata, which
    includes the study's (an analysis-level ``doi`` wins over the study's); a Studyset passed
    as an object splits on its annotation matrix, whose values are numbers (booleans become
    ``key_1`` / ``key_0``).
    """
    if export_metadata is None:
        export_metadata = ["doi", "pmid"]
    if decimal_precision is None or decimal_precision < 0:
        raise StudysetError("decimal_precision must be non-negative")
    target_norm = _normalise_sleuth_target(target)
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)

    raw_source = None
    try:
        if isinstance(studyset, Studyset):
            ss = studyset
        else:
            raw_source = studyset
            if isinstance(raw_source, str | os.PathLike):
                raw_source = _load_json(raw_source, "studyset")
            ss = load_nimads(raw_source)
    except (StudysetError, OSError, ValueError) as err:
        raise StudysetError(f"Failed to load studyset: {err}") from err

    if raw_source is not None and isinstance(raw_source, dict):
        notes = _raw_inline_notes(raw_source)
        has_annotations = bool(notes)
    else:
        notes = _matrix_notes(ss)
        has_annotations = ss.annotation_matrix is not None
    if not has_annotations and annotation:
        try:
            payload = annotation
            if isinstance(payload, str | os.PathLike):
                payload = _load_json(payload, "annotation")
            notes = _payload_notes(payload, ss.analyses)
        except (StudysetError, OSError, ValueError) as err:
            raise StudysetError(f"Failed to load annotation: {err}") from err
        has_annotations = True
    if has_annotations and not any(notes.values()):
        raise StudysetError("Annotation is missing notes")

    analyses = ss.analyses
    meta = ss.metadata.set_index("id")
    xyz = ss.xyz()
    offsets = ss.focus_offsets()
    order = sorted(
        range(len(analyses)),
        key=lambda r: (analyses.at[r, "study_id"], analyses.at[r, "contrast_id"]),
    )

    def block(r: int) -> list[str]:
        aid = analyses.at[r, "id"]
        sl = slice(offsets[r], offsets[r + 1])
        return _analysis_lines(
            analyses.iloc[r],
            meta.loc[aid].to_dict(),
            xyz[sl],
            target_norm,
            decimal_precision,
            export_metadata,
        )

    groups: dict[str, list[int]] = defaultdict(list)
    if not has_annotations:
        groups["nimads_sleuth_file"] = order
    else:
        allowed = None if annotation_columns is None else set(annotation_columns)
        for r in order:
            note = notes.get(analyses.at[r, "id"])
            if not note:
                groups["default"].append(r)
                continue
            keyvals = list(note.items())
            if allowed is not None:
                keyvals = [(k, v) for k, v in keyvals if k in allowed]
            for key, value in sorted(keyvals, key=lambda kv: (kv[0], str(kv[1]))):
                if annotation_values and key in annotation_values:
                    if value not in annotation_values[key]:
                        continue
                if isinstance(value, bool) and split_booleans:
                    name = f"{key}_{str(value).lower()}"
                else:
                    name = f"{key}_{value}"
                groups[name].append(r)

    written = []
    for name in sorted(groups):
        fname = name
        if has_annotations:  # NiMARE's file-name sanitising (a later group may overwrite)
            fname = "".join(c for c in name if c.isalnum() or c in "._-").rstrip()
            fname = fname or "unnamed_group"
        lines = [f"//Reference={target_norm}"]
        for r in groups[name]:
            lines.extend(block(r))
        path = output_dir / f"{fname}.txt"
        with open(path, "w", encoding="utf-8", newline="\n") as f:
            f.write("\n".join(lines) + "\n")
        if path not in written:
            written.append(path)
    return written
