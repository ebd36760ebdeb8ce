"""JALE's experiment and analysis sheets: read into a Studyset, select by tag algebra.

JALE (Jülich's Python ALE, 0.2.10) describes a project with two tables (Excel ``.xlsx`` or
CSV):

* the **experiment sheet**: a header row, then one row per focus with the columns
  ``article, subjects, x, y, z, space`` (by position, whatever the header says) followed by
  any number of tag columns;
* the **analysis sheet** (no header): one analysis per row, ``type, name, condition, ...``
  where the type is ``M`` (main effect), ``P<n>`` (probabilistic ALE on subsamples of ``n``
  experiments), ``C`` (contrast of this row's selection with the next row's) or ``B`` /
  ``B<n>`` (balanced contrast, optionally of ``n`` experiments per subsample); the next row of
  a contrast has an empty first cell.

Experiment rows are grouped as JALE does (``jale/core/utils/input.py``):

* fully empty rows are dropped; a row with only one or two filled cells is an error;
* when every row names its article, the rows of one article *with the same tags* form one
  experiment (all rows of one article with ``pool_experiments=True``), wherever they are;
* when some rows leave the article empty, an experiment is a row naming its article followed
  by the rows without one; subjects, space and tags come from that first row;
* tags are the non-empty cells of the tag columns of a row, lower-cased and stripped; a cell is
  one tag (spaces inside it are kept).

The conditions of an analysis are JALE's tag algebra (``compile_experiments``): ``+tag`` keeps
the experiments carrying the tag (several ``+tag`` are intersected), ``?`` replaces the ``+``
selections so far by their union, ``-tag`` removes the experiments carrying the tag, ``+all``
keeps every experiment. Here it is evaluated on the studyset's (experiments x tags) label
matrix with boolean column operations.

Stricter than JALE (which exits or silently continues): every problem raises
:class:`JaleSheetError` naming the file, the row as the spreadsheet shows it (the header is
row 1 of the experiment sheet) and what is wrong: a missing column, a non-numeric coordinate,
an unknown coordinate space (JALE treats anything but ``TAL`` as MNI), missing subjects,
coordinates before the first article, an unknown tag, a ``$mask`` (ROI) condition, an unknown
analysis type. Experiments sharing an article raise a :class:`DependentExperimentsWarning`
(JALE logs the same warning).
"""

from __future__ import annotations

import csv
import io
import os
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from nimare_dask.io.errors import warn_foci_outside_mask
from nimare_dask.space import Grid, normalize_space
from nimare_dask.studyset.core import Annotations, Studyset, StudysetError

__all__ = [
    "DependentExperimentsWarning",
    "JaleAnalysis",
    "JaleSheetError",
    "parse_jale_analyses",
    "read_jale_analyses",
    "read_jale_sheet",
    "select_experiments",
    "tag_matrix",
]

_COLUMNS = ("article", "subjects", "x", "y", "z", "space")
_EXCEL = (".xlsx", ".xlsm")
_ALL = "all"

#: Lancaster's tal2icbm_spm (MNI as normalised by SPM -> Talairach), as JALE applies it.
_ICBM_SPM = np.array(
    [
        [0.9254, 0.0024, -0.0118, -1.0207],
        [-0.0048, 0.9316, -0.0871, -1.7667],
        [0.0152, 0.0883, 0.8924, 4.0926],
        [0.0, 0.0, 0.0, 1.0],
    ]
)


class JaleSheetError(StudysetError):
    """A JALE experiment or analysis sheet is malformed; the message names file and row."""


class DependentExperimentsWarning(UserWarning):
    """Several experiments come from one article (JALE's independence warning)."""


# ------------------------------------------------------------------------------ reading
def _rows_of(path: Path) -> list[list]:
    """Every row of the sheet's first worksheet / the CSV, blank rows kept (row numbers)."""
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    suffix = path.suffix.lower()
    if suffix in _EXCEL:
        try:
            import openpyxl
        except ImportError:
            raise ImportError(
                f"{path}: reading Excel sheets needs openpyxl (pip install openpyxl, or the "
                "'jale' extra: pip install 'nimare_dask[jale]'); or save the sheet as CSV"
            ) from None
        try:
            book = openpyxl.load_workbook(path, read_only=True, data_only=True)
            try:
                return [list(r) for r in book.worksheets[0].iter_rows(values_only=True)]
            finally:
                book.close()
        except Exception as err:  # a corrupt workbook: name the file
            raise JaleSheetError(f"{path}: not a readable Excel workbook ({err})") from err
    if suffix in (".csv", ".tsv"):
        try:
            text = path.read_text(encoding="utf-8-sig")
        except UnicodeDecodeError:
            text = path.read_text(encoding="latin-1")
        try:
            return [
                list(r)
                for r in csv.reader(io.StringIO(text), delimiter="\t" if suffix == ".tsv" else ",")
            ]
        except csv.Error as err:
            raise JaleSheetError(f"{path}: not a readable CSV file ({err})") from err
    if suffix == ".xls":
        raise JaleSheetError(f"{path}: old Excel .xls files are not read; save as .xlsx or CSV")
    raise JaleSheetError(f"{path}: unsupported sheet format {suffix!r}; expected .xlsx or .csv")


def _read_table(path: Path, header: int | None) -> pd.DataFrame:
    """The sheet as an object DataFrame indexed by spreadsheet row (1-based); text cells
    stripped, empty and whitespace-only cells NaN; the header row (``header=0``) as columns."""
    rows = _rows_of(path)
    if not rows:
        raise JaleSheetError(f"{path}: the file is empty")
    width = max(len(r) for r in rows)
    cells = [
        [(v.strip() or np.nan) if isinstance(v, str) else (np.nan if v is None else v) for v in r]
        + [np.nan] * (width - len(r))
        for r in rows
    ]
    df = pd.DataFrame(cells, dtype=object, index=np.arange(1, len(cells) + 1))
    if header is not None:
        df.columns = [str(c) for c in df.iloc[0]]
        df = df.iloc[1:]
    # trailing columns with neither header nor values (ragged CSV rows, Excel formatting)
    while (
        df.shape[1]
        and df.iloc[:, -1].isna().all()
        and str(df.columns[-1]) in ("nan", str(df.shape[1] - 1))
    ):
        df = df.iloc[:, :-1]
    return df


def _cell_text(value) -> str:
    """A cell as text: integral numbers without ``.0`` (an Excel tag 1 reads as 1.0)."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def _number(value, path: Path, row: int, column: str) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError):
        out = np.nan
    if not np.isfinite(out):
        shown = "an empty cell" if pd.isna(value) else repr(value)
        raise JaleSheetError(f"{path}, row {row}: {column} is {shown}; expected a number")
    return out


def _tal_to_mni_spm(xyz: np.ndarray) -> np.ndarray:
    """JALE's ``tal2icbm_spm``: inverse icbm_spm transform, rounded to whole mm."""
    # Adapted from JALE 0.2.10 (https://github.com/juaml/JALE, jale/core/utils/tal2icbm_spm.py),
    # MIT License, Copyright (c) Lennart Frahm
    inv = np.linalg.inv(_ICBM_SPM)
    return np.round(xyz @ inv[:3, :3].T + inv[:3, 3])


@dataclass
class _Experiment:
    article: str
    first_row: int
    subjects: object
    space: object
    tags: tuple[str, ...]
    rows: list[int] = field(default_factory=list)


def _group(df: pd.DataFrame, tags: list[tuple], pool: bool) -> list[_Experiment]:
    """Rows -> experiments, JALE's two layouts (``concat_coordinates``)."""
    rows = df.index.to_numpy()
    experiments: dict[tuple, _Experiment] = {}
    out: list[_Experiment] = []
    if df["article"].notna().all():  # every row names its article
        for pos, r in enumerate(rows):
            article = _cell_text(df.at[r, "article"])
            key = (article,) if pool else (article, tags[pos])
            exp = experiments.get(key)
            if exp is None:
                exp = _Experiment(article, r, np.nan, np.nan, tags[pos])
                experiments[key] = exp
                out.append(exp)
            exp.rows.append(r)
            # groupby().first(): the first non-empty value of the group
            for col in ("subjects", "space"):
                if pd.isna(getattr(exp, col)) and not pd.isna(df.at[r, col]):
                    setattr(exp, col, df.at[r, col])
        return out
    exp = None
    for pos, r in enumerate(rows):
        if not pd.isna(df.at[r, "article"]):
            article = _cell_text(df.at[r, "article"])
            exp = _Experiment(article, r, df.at[r, "subjects"], df.at[r, "space"], tags[pos])
            out.append(exp)
        elif exp is None:
            raise JaleSheetError(
                f"row {r}: coordinates before the first row naming an article; expected the "
                "first row of each experiment to give its article"
            )
        exp.rows.append(r)
    return out


def read_jale_sheet(
    path: str | os.PathLike,
    *,
    pool_experiments: bool = False,
    tal_transform: str = "jale",
    target: str | Grid = "mni152_2mm",
) -> Studyset:
    """Read a JALE experiment sheet (Excel or CSV) into a Studyset with tags as labels.

    Parameters
    ----------
    path : str or Path
        ``.xlsx`` (needs openpyxl), ``.csv`` or ``.tsv``: a header row, then the columns
        ``article, subjects, x, y, z, space`` (by position) and any tag columns.
    pool_experiments : bool
        JALE's option: all rows of one article form one experiment (tags of its first row),
        when every row names its article.
    tal_transform : {"jale", "nimare"}
        Talairach foci to MNI: JALE's inverse ``icbm_spm`` transform rounded to whole mm, or
        the inverse ``icbm_other`` transform NiMARE and the Sleuth reader use.
    target : str or Grid
        The voxel grid.

    Returns
    -------
    Studyset
        Eager. One analysis per experiment, id ``"<article>-row<first row>"``; metadata
        ``sample_sizes`` (``[subjects]``), ``article``, ``tags`` (list) and ``rows`` (the
        spreadsheet rows of its foci); annotations: one 0/1 label per tag (labels are the
        lower-cased tags, sorted).

    Raises
    ------
    JaleSheetError
        On malformed input (file, row and problem named).
    """
    path = Path(path)
    if tal_transform not in ("jale", "nimare"):
        raise ValueError(f"tal_transform must be 'jale' or 'nimare'; got {tal_transform!r}")
    df = _read_table(path, header=0)
    if df.shape[1] < len(_COLUMNS):
        raise JaleSheetError(
            f"{path}: {df.shape[1]} column(s) ({', '.join(map(str, df.columns))}); expected at "
            f"least {len(_COLUMNS)}: {', '.join(_COLUMNS)}, then tag columns"
        )
    df.columns = list(_COLUMNS) + [f"tag{i}" for i in range(df.shape[1] - len(_COLUMNS))]
    filled = df.notna().sum(axis=1)
    df = df[filled > 0]
    if df.empty:
        raise JaleSheetError(f"{path}: no experiment rows below the header")
    few = df.index[(df.notna().sum(axis=1) <= 2).to_numpy()]
    if len(few):
        raise JaleSheetError(
            f"{path}, row(s) {', '.join(map(str, few[:10]))}: only one or two filled cells; "
            "expected a focus (x, y, z) per row"
        )
    xyz = np.empty((len(df), 3))
    for j, col in enumerate("xyz"):
        for i, (r, v) in enumerate(df[col].items()):
            xyz[i, j] = _number(v, path, r, f"coordinate {col}")
    tag_cols = df.columns[len(_COLUMNS) :]
    tags = [
        tuple(_cell_text(v).lower() for v in row if not pd.isna(v))
        for row in df[tag_cols].itertuples(index=False)
    ]
    try:
        experiments = _group(df, tags, pool_experiments)
    except JaleSheetError as err:
        raise JaleSheetError(f"{path}, {err}") from None

    a_rows, m_rows, p_ids, p_xyz, p_space = [], [], [], [], []
    pos_of_row = pd.Series(np.arange(len(df)), index=df.index)
    for exp in experiments:
        r = exp.first_row
        if pd.isna(exp.subjects):
            raise JaleSheetError(
                f"{path}, row {r}: subjects missing for article {exp.article!r}; expected the "
                "number of subjects of the experiment"
            )
        n = _number(exp.subjects, path, r, "subjects")
        if n <= 0:
            raise JaleSheetError(f"{path}, row {r}: subjects is {n:g}; expected a positive number")
        space = normalize_space(exp.space)
        if space == "UNKNOWN":
            shown = "empty" if pd.isna(exp.space) else repr(exp.space)
            raise JaleSheetError(
                f"{path}, row {r}: coordinate space is {shown} (article {exp.article!r}); "
                "expected MNI or TAL"
            )
        aid = f"{exp.article}-row{r}"
        a_rows.append({"study_id": exp.article, "contrast_id": f"row{r}", "id": aid})
        a_rows[-1].update(study_name=exp.article, analysis_name=f"row{r}")
        m_rows.append(
            {
                "id": aid,
                "sample_sizes": [n],
                "article": exp.article,
                "tags": sorted(set(exp.tags)),
                "rows": list(exp.rows),
            }
        )
        coords = xyz[pos_of_row.loc[exp.rows].to_numpy()]
        if space == "TAL" and tal_transform == "jale":
            coords = _tal_to_mni_spm(coords)
        p_ids.extend([aid] * len(coords))
        p_xyz.append(coords)
        p_space.extend([space] * len(coords))
    labels = sorted({t for m in m_rows for t in m["tags"]})
    col = {t: j for j, t in enumerate(labels)}
    values = np.zeros((len(m_rows), len(labels)), dtype=np.float32)
    for i, m in enumerate(m_rows):
        values[i, [col[t] for t in m["tags"]]] = 1.0
    all_xyz = np.concatenate(p_xyz)
    points = pd.DataFrame(
        {"id": p_ids, "x": all_xyz[:, 0], "y": all_xyz[:, 1], "z": all_xyz[:, 2], "space": p_space}
    )
    ss = Studyset.from_tables(
        pd.DataFrame(a_rows),
        points,
        pd.DataFrame(m_rows),
        Annotations(values, labels),
        target=target,
        harmonize=tal_transform == "nimare",
        source_name=str(path),
    )
    ss.info = {"source": str(path), "format": "jale", "pool_experiments": pool_experiments}
    articles = pd.Series([m["article"] for m in m_rows])
    repeated = sorted(set(articles[articles.duplicated()]))
    if repeated:
        warnings.warn(
            f"{path}: {len(repeated)} article(s) contribute several experiments: "
            f"{repeated[:10]}; check that they are independent (JALE's pool_experiments=True "
            "merges them)",
            DependentExperimentsWarning,
            stacklevel=2,
        )
    warn_foci_outside_mask(ss, str(path))
    return ss


# --------------------------------------------------------------------------- analyses
@dataclass(frozen=True)
class JaleAnalysis:
    """One analysis of a JALE analysis sheet.

    Attributes
    ----------
    kind : {"main", "probabilistic", "contrast", "balanced"}
    name : str
        The (first) analysis name (JALE's column 2).
    conditions : tuple of str
        Tag algebra of the (first) selection.
    name2, conditions2 : str, tuple of str
        The second group of a contrast (``None`` / ``()`` otherwise).
    target_n : int, optional
        ``P<n>`` / ``B<n>``.
    row : int
        The sheet row (1-based), for messages.
    """

    kind: str
    name: str
    conditions: tuple[str, ...]
    name2: str | None = None
    conditions2: tuple[str, ...] = ()
    target_n: int | None = None
    row: int = 0

    @property
    def label(self) -> str:
        """A folder/file name: the name, or ``<name>_vs_<name2>`` for contrasts."""
        return self.name if self.name2 is None else f"{self.name}_vs_{self.name2}"


_TYPE = re.compile(r"^(M|C|P|B)(\d*)$", re.IGNORECASE)
_BAD_NAME = re.compile(r"[/\\\x00]")


def _check_name(name, where: str) -> str:
    if name is None or (isinstance(name, float) and np.isnan(name)):
        raise JaleSheetError(f"{where}: analysis name missing (column 2)")
    name = _cell_text(name)
    if _BAD_NAME.search(name) or name in (".", ".."):
        raise JaleSheetError(f"{where}: analysis name {name!r} cannot name a folder")
    return name


def _conditions(cells, where: str) -> tuple[str, ...]:
    out = tuple(_cell_text(c) for c in cells if not pd.isna(c))
    if not out:
        raise JaleSheetError(f"{where}: no conditions (columns 3 on: +tag, -tag, ?)")
    return out


def parse_jale_analyses(rows, source: str = "analyses") -> list[JaleAnalysis]:
    """Parse JALE's analysis table (rows of cells, as the sheet holds them).

    Parameters
    ----------
    rows : sequence of sequences
        Each row ``[type, name, condition, ...]``; ``None``/NaN/"" cells are empty. Fully
        empty rows are skipped.
    source : str
        Named in errors (the file).

    Returns
    -------
    list of JaleAnalysis
        In sheet order.
    """
    table = []
    for i, row in enumerate(rows, start=1):
        cells = [np.nan if c is None or (isinstance(c, str) and not c.strip()) else c for c in row]
        cells = [c.strip() if isinstance(c, str) else c for c in cells]
        if any(not pd.isna(c) for c in cells):
            table.append((i, cells + [np.nan] * max(0, 2 - len(cells))))
    out: list[JaleAnalysis] = []
    k = 0
    while k < len(table):
        row, cells = table[k]
        where = f"{source}, row {row}"
        kind = cells[0]
        if pd.isna(kind):
            raise JaleSheetError(
                f"{where}: no analysis type (column 1) and not the second row of a C or B "
                "contrast; expected M, P<n>, C or B[<n>]"
            )
        kind = _cell_text(kind)
        if kind.lower() == "cluster":
            raise JaleSheetError(f"{where}: MA clustering ('Cluster') is not supported")
        m = _TYPE.match(kind)
        if m is None:
            raise JaleSheetError(
                f"{where}: unknown analysis type {kind!r}; expected M, P<n>, C or B[<n>]"
            )
        letter, digits = m.group(1).upper(), m.group(2)
        if digits and letter in "MC":
            raise JaleSheetError(f"{where}: analysis type {kind!r} takes no number")
        target_n = int(digits) if digits else None
        if letter == "P" and target_n is None:
            raise JaleSheetError(f"{where}: probabilistic ALE needs its N, e.g. P17")
        if target_n is not None and target_n < 1:
            raise JaleSheetError(f"{where}: {kind!r}: N must be at least 1")
        name = _check_name(cells[1], where)
        conds = _conditions(cells[2:], where)
        if letter in "MP":
            out.append(
                JaleAnalysis(
                    "main" if letter == "M" else "probabilistic",
                    name,
                    conds,
                    None,
                    (),
                    target_n,
                    row,
                )
            )
            k += 1
            continue
        if k + 1 >= len(table) or not pd.isna(table[k + 1][1][0]):
            raise JaleSheetError(
                f"{where}: a {letter} contrast needs the next row to give the second group "
                "(empty first cell, its name, its conditions)"
            )
        row2, cells2 = table[k + 1]
        where2 = f"{source}, row {row2}"
        name2 = _check_name(cells2[1], where2)
        if name2 == name:
            raise JaleSheetError(f"{where2}: the two groups of a contrast need different names")
        out.append(
            JaleAnalysis(
                "contrast" if letter == "C" else "balanced",
                name,
                conds,
                name2,
                _conditions(cells2[2:], where2),
                target_n,
                row,
            )
        )
        k += 2
    if not out:
        raise JaleSheetError(f"{source}: no analyses")
    return out


def read_jale_analyses(path: str | os.PathLike) -> list[JaleAnalysis]:
    """Read a JALE analysis sheet (``.xlsx`` or ``.csv``, no header row).

    Returns
    -------
    list of JaleAnalysis
        See :func:`parse_jale_analyses`.
    """
    path = Path(path)
    return parse_jale_analyses(_rows_of(path), source=str(path))


# --------------------------------------------------------------------------- selection
def tag_matrix(studyset: Studyset) -> tuple[np.ndarray, list[str]]:
    """The (experiments x tags) boolean matrix of a studyset read by :func:`read_jale_sheet`.

    Returns
    -------
    (numpy.ndarray, list of str)
        bool (n_analyses, n_tags) and the tags (eager).
    """
    ann = studyset.annotation_matrix
    if ann is None or not ann.labels:
        return np.zeros((len(studyset), 0), dtype=bool), []
    return ann.columns(ann.labels) > 0, list(ann.labels)


def select_experiments(
    studyset: Studyset, conditions, *, where: str = "conditions", tags=None
) -> np.ndarray:
    """Experiments selected by JALE's tag algebra, as a boolean mask over the studyset.

    Parameters
    ----------
    studyset : Studyset
        With tags as labels (:func:`read_jale_sheet`).
    conditions : str or sequence of str
        Tokens ``+tag`` (and), ``-tag`` (not), ``?`` (or of the ``+`` selections so far),
        ``+all``. A string is split on whitespace (use a list for tags containing spaces).
        Tags match case-insensitively.
    where : str
        Named in errors (e.g. the analysis and its sheet row).
    tags : (numpy.ndarray, list of str), optional
        A precomputed :func:`tag_matrix`.

    Returns
    -------
    numpy.ndarray
        bool (n_analyses,) (eager).
    """
    if isinstance(conditions, str):
        conditions = conditions.split()
    matrix, labels = tag_matrix(studyset) if tags is None else tags
    col = {t: j for j, t in enumerate(labels)}
    n = len(studyset)

    def column(tag: str, token: str) -> np.ndarray:
        if tag == _ALL and _ALL not in col:
            return np.ones(n, dtype=bool)
        if tag not in col:
            raise JaleSheetError(
                f"{where}: no experiments found for tag {tag!r} (in {token!r}); known tags: "
                f"{', '.join(labels[:20]) or 'none'}{' ...' if len(labels) > 20 else ''}"
            )
        return matrix[:, col[tag]]

    # Adapted from JALE 0.2.10 (https://github.com/juaml/JALE,
    # jale/core/utils/compile_experiments.py), MIT License, Copyright (c) Lennart Frahm
    keep: list[np.ndarray] = []
    drop = np.zeros(n, dtype=bool)
    for token in conditions:
        token = str(token).strip()
        op, tag = token[:1], token[1:].strip().lower()
        if op == "+":
            keep.append(column(tag, token))
        elif op == "-":
            drop |= column(tag, token)
        elif op == "?":
            if not keep:
                raise JaleSheetError(f"{where}: '?' needs +tag conditions before it to combine")
            keep = [np.logical_or.reduce(keep)]
        elif op == "$":
            raise JaleSheetError(f"{where}: ROI masks ({token!r}) are not supported")
        else:
            raise JaleSheetError(
                f"{where}: condition {token!r} must start with + (and), - (not) or ? (or)"
            )
    if not keep:
        raise JaleSheetError(f"{where}: no +tag condition (use +all for every experiment)")
    selected = np.logical_and.reduce(keep)
    if not selected.any():
        raise JaleSheetError(f"{where}: bad tag combination, no experiments found")
    selected = selected & ~drop
    if not selected.any():
        raise JaleSheetError(f"{where}: every selected experiment is excluded by a -tag")
    return selected
