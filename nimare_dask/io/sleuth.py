"""Sleuth (GingerALE / BrainMap) text files: read into a Studyset, write back.

Format (as GingerALE writes it, and as NiMARE 0.22.1 reads it)::

    // Reference=MNI
    // Smith et al., 2010: Faces > Houses
    // Subjects=24
    -42   -58   -12
    40    -60   -10

    // Jones 2012; Condition B
    // Subjects=18
    ...

* The first non-blank line is ``// Reference=MNI`` or ``// Reference=Talairach`` (also ``TAL``;
  case-insensitive, spaces allowed around ``=``). Talairach foci are converted to MNI with
  Lancaster's icbm_other transform.
* One experiment is a run of ``//`` header lines ending with ``// Subjects=N`` and followed by
  its coordinate lines (three numbers separated by tabs or spaces). Blank lines separate
  experiments.
* The header text (all header lines before ``Subjects``, joined by spaces) is split into study
  and contrast names as NiMARE does: on the first ``;`` or ``:`` after a four-digit year, else on
  the first ``;``, else on the first ``:``, else the contrast is ``"analysis_1"``. The analysis
  id is ``"<study>-<contrast>"``.
* ``//`` lines between ``Subjects`` and the first coordinate (for example ``// DOI=...``, which
  NiMARE's own Sleuth writer emits) are kept as metadata (``Key=Value``) of that experiment.

Behaviour on bad input (NiMARE differs where noted):

* missing or unknown ``Reference``, a header without ``Subjects``, a non-numeric, NaN, infinite
  or wrong-length coordinate line, coordinates before any header, an empty or binary file:
  :class:`~nimare_dask.io.errors.SleuthError` naming file and line;
* an experiment with no foci: dropped with an
  :class:`~nimare_dask.io.errors.EmptyExperimentWarning` (NiMARE fails with an unrelated
  error or silently merges it into the next header);
* two experiments with the same id, in one file or across files: ``SleuthError`` naming both
  places (NiMARE silently keeps the last one);
* foci outside the brain mask: kept, with a
  :class:`~nimare_dask.io.errors.FociOutsideMaskWarning` naming the analyses;
* a non-UTF-8 text file (e.g. Windows-1252 author names) is read as Latin-1 with a
  :class:`UnicodeWarning` (NiMARE fails).
"""

from __future__ import annotations

import os
import re
import tempfile
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from nimare_dask.io.errors import EmptyExperimentWarning, SleuthError, warn_foci_outside_mask
from nimare_dask.space import Grid, mni2tal
from nimare_dask.studyset.core import Studyset

__all__ = [
    "read_sleuth",
    "convert_sleuth_to_studyset",
    "write_sleuth",
    "split_study_info",
]

_REFERENCE = re.compile(r"^//\s*reference\s*=\s*(.*?)\s*$", re.IGNORECASE)
_SUBJECTS = re.compile(r"^//\s*subjects\s*[=:]\s*(.*?)\s*$", re.IGNORECASE)
_KEY_VALUE = re.compile(r"^\s*([A-Za-z][\w ]*?)\s*=\s*(.*?)\s*$")
_YEAR = re.compile(r"(19|20)\d{2}")
_SPACES = {"mni": "MNI", "tal": "TAL", "talairach": "TAL"}
#: Header keys written by NiMARE's Sleuth exporter, mapped to metadata field names.
_META_KEYS = {
    "pubmedid": "pmid",
    "doi": "doi",
    "authors": "authors",
    "year": "year",
    "publication": "journal",
}
# C0 control characters that never occur in a text file (tab, LF, VT, FF, CR are allowed).
_BINARY_BYTES = bytes(range(0, 9)) + bytes(range(14, 32))


@dataclass
class _Experiment:
    file: str
    line: int  # first header line
    name_lines: list[str] = field(default_factory=list)
    subjects: int | None = None
    pending: list[tuple[int, str]] = field(default_factory=list)
    meta: dict = field(default_factory=dict)
    xyz: list[tuple[float, float, float]] = field(default_factory=list)

    @property
    def name(self) -> str:
        return " ".join(self.name_lines)


def split_study_info(study_info: str) -> tuple[str, str]:
    """Split a Sleuth header into (study name, contrast name), as NiMARE 0.22.1 does.

    Parameters
    ----------
    study_info : str
        The header text (header lines without ``//``, joined by single spaces).

    Returns
    -------
    tuple of str
        ``(study, contrast)``; the contrast is ``"analysis_1"`` when there is no separator.
    """
    study_info = study_info.strip()
    if not study_info:
        return "", "analysis_1"
    year = _YEAR.search(study_info)
    if year is not None:
        found = [i for i in (study_info.find(s, year.end()) for s in ";:") if i != -1]
        if found:
            cut = min(found)
            left, right = study_info[:cut].strip(), study_info[cut + 1 :].strip()
            return left or study_info, right or "analysis_1"
    for sep in ";:":
        if sep in study_info:
            left, _, right = study_info.partition(sep)
            return left.strip() or study_info, right.strip() or "analysis_1"
    return study_info, "analysis_1"


def _read_text(path: Path) -> str:
    if not path.exists():
        raise FileNotFoundError(f"Sleuth file not found: {path}")
    if path.is_dir():
        raise SleuthError(f"{path}: is a folder, expected a Sleuth text file")
    raw = path.read_bytes()
    if not raw.strip():
        raise SleuthError(
            f"{path}: empty file; expected a first line '// Reference=MNI' (or Talairach) "
            "followed by experiments"
        )
    if raw.translate(None, _BINARY_BYTES) != raw:
        raise SleuthError(
            f"{path}: contains binary data (control bytes), not a Sleuth text file; expected "
            "plain text starting with '// Reference=MNI'"
        )
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        warnings.warn(
            f"{path}, line {line}: not valid UTF-8; read as Latin-1 (Windows-1252 files from "
            "GingerALE are common). Check the experiment names.",
            UnicodeWarning,
            stacklevel=4,
        )
        return raw.decode("latin-1")


def _parse_subjects(value: str, where: str) -> int:
    try:
        f = float(value)
    except ValueError:
        f = np.nan
    if not np.isfinite(f) or f <= 0 or not float(f).is_integer():
        raise SleuthError(
            f"{where}: invalid sample size {value!r}; expected '// Subjects=N' with N a "
            "positive whole number"
        )
    return int(f)


def _parse_coordinate(line: str, where: str, exp: _Experiment) -> tuple[float, float, float]:
    parts = line.split()
    if len(parts) != 3:
        hint = " (commas are not separators in Sleuth files)" if "," in line else ""
        raise SleuthError(
            f"{where}: expected three numbers 'x y z' separated by tabs or spaces in experiment "
            f"{exp.name!r}, found {len(parts)} value(s): {line!r}{hint}"
        )
    try:
        xyz = tuple(float(p) for p in parts)
    except ValueError:
        bad = next(p for p in parts if not _is_float(p))
        raise SleuthError(
            f"{where}: non-numeric coordinate {bad!r} in experiment {exp.name!r}: {line!r}; "
            "expected three numbers 'x y z'"
        ) from None
    if not all(np.isfinite(xyz)):
        raise SleuthError(
            f"{where}: NaN or infinite coordinate in experiment {exp.name!r}: {line!r}; "
            "expected three finite numbers"
        )
    return xyz  # type: ignore[return-value]


def _is_float(s: str) -> bool:
    try:
        float(s)
    except ValueError:
        return False
    return True


def _finish(exp: _Experiment, out: list[_Experiment]) -> None:
    if exp.subjects is None:
        raise SleuthError(
            f"{exp.file}, line {exp.line}: the header of experiment {exp.name!r} has no "
            "'// Subjects=N' line; expected it as the last header line, before the coordinates"
        )
    if not exp.xyz:
        if exp.pending:
            line, text = exp.pending[0]
            raise SleuthError(
                f"{exp.file}, line {line}: header {text!r} has no '// Subjects=N' line and no "
                "coordinates; expected '// Subjects=N' followed by 'x y z' lines"
            )
        warnings.warn(
            f"{exp.file}, line {exp.line}: experiment {exp.name!r} has no foci; it was dropped",
            EmptyExperimentWarning,
            stacklevel=4,
        )
        return
    out.append(exp)


def _parse_file(path: Path) -> tuple[str, list[_Experiment]]:
    """Parse one Sleuth file into its reference space and experiments."""
    text = _read_text(path)
    lines = re.split(r"\r\n|\n|\r", text)
    fname = str(path)
    space = None
    experiments: list[_Experiment] = []
    cur: _Experiment | None = None
    for lineno, raw in enumerate(lines, start=1):
        line = raw.strip()
        if not line:
            continue
        where = f"{fname}, line {lineno}"
        ref = _REFERENCE.match(line)
        if space is None:
            if ref is None:
                raise SleuthError(
                    f"{where}: missing Reference line; expected the first line to be "
                    f"'// Reference=MNI' or '// Reference=Talairach', found {line!r}"
                )
            value = ref.group(1).replace(" ", "")
            space = _SPACES.get(value.lower())
            if space is None:
                raise SleuthError(
                    f"{where}: unknown Reference space {value!r}; expected MNI, TAL or Talairach"
                )
            continue
        if ref is not None:
            raise SleuthError(
                f"{where}: a second Reference line; a Sleuth file has one, on its first line "
                "(to combine files in different spaces, pass a list of files)"
            )
        if line.startswith("//"):
            if cur is None or cur.xyz:
                if cur is not None:
                    _finish(cur, experiments)
                cur = _Experiment(file=fname, line=lineno)
            subj = _SUBJECTS.match(line)
            if subj is not None:
                if cur.subjects is not None:  # previous experiment ended without foci
                    pending = cur.pending
                    cur.pending = []
                    _finish(cur, experiments)
                    cur = _Experiment(file=fname, line=pending[0][0] if pending else lineno)
                    cur.name_lines = [t for _, t in pending]
                if not cur.name_lines:
                    raise SleuthError(
                        f"{where}: 'Subjects' line without an experiment name before it; "
                        "expected a header like '// Study 2010: Experiment' first"
                    )
                cur.subjects = _parse_subjects(subj.group(1), where)
            else:
                body = line.replace("//", "").strip()
                if cur.subjects is None:
                    cur.name_lines.append(body)
                else:
                    cur.pending.append((lineno, body))
            continue
        # A coordinate line.
        if cur is None:
            raise SleuthError(
                f"{where}: coordinates before any experiment header; expected "
                "'// Study: Experiment' and '// Subjects=N' lines first"
            )
        if cur.subjects is None:
            raise SleuthError(
                f"{fname}, line {cur.line}: the header of experiment {cur.name!r} has no "
                f"'// Subjects=N' line before its coordinates (line {lineno}); expected it as "
                "the last header line"
            )
        if cur.pending:
            for _, body in cur.pending:
                kv = _KEY_VALUE.match(body)
                if kv is not None:
                    key = kv.group(1).strip()
                    cur.meta[_META_KEYS.get(key.lower().replace(" ", ""), key)] = kv.group(2)
                else:
                    cur.meta.setdefault("comments", []).append(body)
            cur.pending = []
        cur.xyz.append(_parse_coordinate(line, where, cur))
    if space is None:
        raise SleuthError(f"{fname}: no Reference line; expected '// Reference=MNI' first")
    if cur is not None:
        _finish(cur, experiments)
    if not experiments:
        raise SleuthError(
            f"{fname}: no experiments with foci; expected '// Study: Experiment', "
            "'// Subjects=N' and 'x y z' lines after the Reference line"
        )
    return space, experiments


def _as_paths(path_or_paths) -> list[Path]:
    if isinstance(path_or_paths, str | os.PathLike):
        return [Path(path_or_paths)]
    if isinstance(path_or_paths, Sequence) and not isinstance(path_or_paths, bytes):
        paths = [Path(p) for p in path_or_paths if isinstance(p, str | os.PathLike)]
        if len(paths) == len(path_or_paths) and paths:
            return paths
    raise SleuthError(
        f"expected a Sleuth file path or a non-empty list of paths, got {path_or_paths!r}"
    )


def read_sleuth(
    path_or_paths: str | os.PathLike | Sequence[str | os.PathLike],
    target: str | Grid = "mni152_2mm",
) -> Studyset:
    """Read one or several Sleuth text files into a Studyset.

    Parameters
    ----------
    path_or_paths : str, Path or list of them
        Sleuth file(s). Several files are merged (each with its own Reference space); analysis
        ids must be unique across them.
    target : str or Grid, default="mni152_2mm"
        The voxel grid (``"ale_2mm"`` is the same 2 mm MNI152 grid).

    Returns
    -------
    Studyset
        Eager tables; foci in MNI mm; metadata ``sample_sizes = [N]``.

    Raises
    ------
    SleuthError
        On malformed input (the message names file and line).
    FileNotFoundError
        If a file does not exist.
    """
    paths = _as_paths(path_or_paths)
    seen: dict[str, _Experiment] = {}
    a_rows, p_ids, p_xyz, p_space, m_rows = [], [], [], [], []
    for path in paths:
        space, experiments = _parse_file(path)
        for exp in experiments:
            study, contrast = split_study_info(exp.name)
            aid = f"{study}-{contrast}"
            if aid in seen:
                first = seen[aid]
                raise SleuthError(
                    f"{exp.file}, line {exp.line}: duplicated experiment {exp.name!r} (analysis "
                    f"id {aid!r}), already defined at {first.file}, line {first.line}; expected "
                    "unique 'Study: Experiment' headers"
                )
            seen[aid] = exp
            a_rows.append(
                {
                    "id": aid,
                    "study_id": study,
                    "contrast_id": contrast,
                    "study_name": study,
                    "analysis_name": contrast,
                }
            )
            m_rows.append({"id": aid, "sample_sizes": [exp.subjects], **exp.meta})
            p_ids.extend([aid] * len(exp.xyz))
            p_xyz.extend(exp.xyz)
            p_space.extend([space] * len(exp.xyz))
    xyz = np.asarray(p_xyz, dtype=float).reshape(-1, 3)
    points = pd.DataFrame(
        {"id": p_ids, "x": xyz[:, 0], "y": xyz[:, 1], "z": xyz[:, 2], "space": p_space}
    )
    name = ", ".join(str(p) for p in paths)
    ss = Studyset.from_tables(
        pd.DataFrame(a_rows), points, pd.DataFrame(m_rows), target=target, source_name=name
    )
    warn_foci_outside_mask(ss, name)
    return ss


def convert_sleuth_to_studyset(
    text_file: str | os.PathLike | Sequence[str | os.PathLike],
    target: str | Grid = "ale_2mm",
) -> Studyset:
    """Convert Sleuth text file(s) into a Studyset (NiMARE's name and default target).

    Parameters
    ----------
    text_file : str, Path or list of them
        Sleuth file(s); several are merged.
    target : str or Grid, default="ale_2mm"
        The voxel grid; ``"ale_2mm"`` is the 2 mm MNI152 grid.

    Returns
    -------
    Studyset
        See :func:`read_sleuth`.
    """
    return read_sleuth(text_file, target=target)


def _header_for(study: str, contrast: str) -> str:
    """A header line that :func:`split_study_info` parses back to (study, contrast)."""
    for sep in (": ", "; "):
        header = f"{study}{sep}{contrast}"
        if split_study_info(header) == (study.strip(), contrast.strip()):
            return header
    return f"{study}: {contrast}"


def write_sleuth(
    studyset: Studyset,
    path: str | os.PathLike,
    space: str = "MNI",
    decimal_precision: int = 2,
) -> Path:
    """Write a Studyset as a Sleuth text file, atomically (temporary file, then rename).

    Parameters
    ----------
    studyset : Studyset
        Analyses without foci are skipped; every analysis with foci needs a sample size.
    path : str or Path
        Output file.
    space : {"MNI", "TAL"}
        Coordinate space written (MNI foci are converted with ``mni2tal`` for ``"TAL"``).
    decimal_precision : int
        Decimals of the written coordinates (NiMARE's default, 2).

    Returns
    -------
    Path
        The written file.

    Notes
    -----
    Headers are ``// <study_id>: <contrast_id>`` (``;`` when that parses back better) and
    ``// Subjects=N`` with N the analysis' sample size (the mean of ``sample_sizes``, rounded;
    NiMARE's exporter writes the minimum). Ids that cannot survive a round trip (a study id
    containing ``:`` or ``;`` after a year) are written anyway with a warning.
    """
    canon = _SPACES.get(str(space).strip().lower())
    if canon is None:
        raise ValueError(f"space must be 'MNI' or 'TAL', got {space!r}")
    if decimal_precision < 0:
        raise ValueError("decimal_precision must be >= 0")
    analyses = studyset.analyses
    counts = studyset.foci_counts()
    sizes = studyset.sample_sizes
    missing = analyses["id"][(counts > 0) & ~np.isfinite(sizes)].tolist()
    if missing:
        raise SleuthError(
            f"{path}: cannot write Sleuth: analyses without a sample size {missing[:10]}; "
            "Sleuth needs '// Subjects=N' for every experiment"
        )
    empty = analyses["id"][counts == 0].tolist()
    if empty:
        warnings.warn(
            f"{path}: {len(empty)} analyses without foci were not written: {empty[:10]}",
            EmptyExperimentWarning,
            stacklevel=2,
        )
    xyz = studyset.xyz()
    if canon == "TAL" and len(xyz):
        xyz = mni2tal(xyz)
    offsets = studyset.focus_offsets()
    fmt = f"{{:.{decimal_precision}f}}"
    out = [f"// Reference={canon}"]
    bad_ids = []
    for r, a in enumerate(analyses.itertuples(index=False)):
        if counts[r] == 0:
            continue
        header = _header_for(a.study_id, a.contrast_id)
        if split_study_info(header) != (a.study_id.strip(), a.contrast_id.strip()):
            bad_ids.append(a.id)
        out.append(f"// {header}")
        out.append(f"// Subjects={int(round(sizes[r]))}")
        for x, y, z in xyz[offsets[r] : offsets[r + 1]]:
            out.append("\t".join(fmt.format(v) for v in (x, y, z)))
        out.append("")
    if bad_ids:
        warnings.warn(
            f"{path}: these analysis ids will not read back identically (':' or ';' in the "
            f"study id): {bad_ids[:10]}",
            UserWarning,
            stacklevel=2,
        )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as f:
            f.write("\n".join(out) + "\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
