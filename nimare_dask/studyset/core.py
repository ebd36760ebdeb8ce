"""The Studyset: analyses, foci, metadata, annotations, images and texts.

A Studyset is a small set of aligned tables plus a :class:`~nimare_dask.space.Grid`:

* ``analyses``: one row per analysis (``id`` = ``"<study_id>-<contrast_id>"``), sorted by id;
* ``points``: one row per focus (``id``, ``x``, ``y``, ``z`` in MNI mm after space
  harmonisation, ``space`` = the space the focus was reported in), grouped by analysis;
* ``metadata``: free-form per-analysis fields (``sample_sizes``, ``authors``, ...);
* annotations: an (analysis x label) weight matrix, dense or scipy-sparse;
* ``images``: long table ``id, type, path`` (absolute paths or URLs);
* ``texts``: long table ``id, type, text``.

Studysets are immutable: selection methods return new Studysets. The tables are cheap to
slice; the per-focus grid indices are computed once per grid and cached.
"""

from __future__ import annotations

import hashlib
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from nimare_dask.space import Grid, get_grid, normalize_space, tal2mni
from nimare_dask.studyset.annotations import Annotations, StudysetError
from nimare_dask.studyset.persistence import StudysetPersistence
from nimare_dask.studyset.queries import StudysetQueries

__all__ = ["Studyset", "Annotations", "StudysetError", "UnknownSpaceWarning"]


class UnknownSpaceWarning(UserWarning):
    """Foci reported in an unknown coordinate space were kept as MNI."""


def _validate_ids(analyses: pd.DataFrame, source_name: str = "studyset") -> None:
    dup = analyses["id"][analyses["id"].duplicated()]
    if len(dup):
        raise StudysetError(
            f"{source_name}: duplicated analysis ids: {sorted(set(dup))[:10]} "
            "(each study's analyses need distinct ids)"
        )


class Studyset(StudysetQueries, StudysetPersistence):
    """A collection of studies and their analyses, coordinates, annotations and images.

    Parameters
    ----------
    source : str, Path, dict or Studyset, optional
        A NIMADS studyset (dict or JSON path), a NiMARE legacy Dataset JSON (dict or path, with
        ``contrasts``), a NeuroStore parquet studyset folder (NiMARE 0.22.1's release format),
        a studyset store (folder or URL written by :meth:`to_zarr`, opened lazily), or another
        Studyset (copied). ``None`` gives an empty Studyset. A folder that is neither a parquet
        studyset nor a store raises :class:`StudysetError` naming it.
    target : str or Grid, default="mni152_2mm"
        The voxel grid; foci are harmonised to MNI space.
    mask : str, Path, image or Grid, optional
        A mask on the target space that defines the voxel grid (NiMARE's parameter); default:
        the target's brain mask.
    annotations : dict or path, optional
        A NIMADS annotation (``{"notes": [...]}``) to attach to a NIMADS source.
    basepath : str or Path, optional
        Relative image paths are resolved against this folder (default: the JSON file's folder).

    Notes
    -----
    Talairach foci are converted with :func:`~nimare_dask.space.tal2mni`. Foci in an unknown
    space are kept unchanged (treated as MNI) and a :class:`UnknownSpaceWarning` names the
    analyses, unlike NiMARE, which only logs it.
    """

    def __init__(
        self,
        source: str | Path | dict | Studyset | None = None,
        target: str | Grid = "mni152_2mm",
        mask=None,
        annotations: dict | str | Path | None = None,
        basepath: str | Path | None = None,
    ):
        from nimare_dask.studyset.nimads import _is_folder, open_folder, tables_from_source

        grid = get_grid(target) if mask is None else get_grid(mask)
        if isinstance(source, Studyset):
            self._set_tables(**source._tables(), grid=grid)
            self._image_arrays = source._image_arrays
            return
        if _is_folder(source):  # a parquet release or a store (NiMARE: Studyset(folder))
            if annotations is not None:
                raise StudysetError(
                    f"{source}: annotations= applies to a NIMADS source; a folder carries its own"
                )
            # a store opens on the grid it was written on unless target/mask name another
            default = mask is None and isinstance(target, str) and target == "mni152_2mm"
            opened = open_folder(source, target=None if default else grid, basepath=basepath)
            self.__dict__.update(opened.__dict__)
            return
        tables = tables_from_source(source, annotations=annotations, basepath=basepath)
        self._set_tables(**tables, grid=grid)

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_tables(
        cls,
        analyses: pd.DataFrame,
        points: pd.DataFrame | None = None,
        metadata: pd.DataFrame | None = None,
        annotations: Annotations | None = None,
        images: pd.DataFrame | None = None,
        texts: pd.DataFrame | None = None,
        *,
        target: str | Grid = "mni152_2mm",
        harmonize: bool = True,
        source_name: str = "studyset",
    ) -> Studyset:
        """Build a Studyset from tables (the constructor every reader uses).

        Parameters
        ----------
        analyses : DataFrame
            Columns ``study_id``, ``contrast_id`` (``id`` is derived as
            ``"<study_id>-<contrast_id>"`` when absent); optional ``study_name``,
            ``analysis_name``.
        points : DataFrame, optional
            Columns ``id``, ``x``, ``y``, ``z`` and ``space`` (as reported: MNI, TAL,
            Talairach, UNKNOWN...). With ``harmonize=True`` TAL foci are converted to MNI.
        metadata : DataFrame, optional
            Column ``id`` plus any fields; ``sample_sizes`` (list or number) or
            ``sample_size`` give the per-analysis sample size (mean of the list).
        annotations : Annotations, optional
            Rows aligned with ``analyses`` (same order as given).
        images, texts : DataFrame, optional
            Long tables ``id, type, path`` and ``id, type, text``.
        target : str or Grid
            The voxel grid.
        harmonize : bool
            Convert TAL foci to MNI (False when ``points`` already are, e.g. from a store).
        source_name : str
            Named in warnings and errors (a file name).

        Returns
        -------
        Studyset
        """
        analyses = analyses.copy()
        for col in ("study_id", "contrast_id"):
            if col not in analyses:
                raise StudysetError(f"{source_name}: analyses table lacks column {col!r}")
            analyses[col] = analyses[col].astype(str)
        if "id" not in analyses:
            analyses["id"] = analyses["study_id"] + "-" + analyses["contrast_id"]
        analyses["id"] = analyses["id"].astype(str)
        _validate_ids(analyses, source_name)
        for col in ("study_name", "analysis_name"):
            if col not in analyses:
                analyses[col] = ""
        order = np.argsort(analyses["id"].to_numpy(), kind="stable")
        analyses = analyses.iloc[order].reset_index(drop=True)
        if annotations is not None:
            if annotations.shape[0] != len(order):
                raise StudysetError(
                    f"{source_name}: annotations have {annotations.shape[0]} rows but there are "
                    f"{len(order)} analyses"
                )
            annotations = annotations.take(order)

        if points is None:
            points = pd.DataFrame(columns=["id", "x", "y", "z", "space"])
        points = points.copy()
        if "space" not in points:
            points["space"] = "MNI"
        points["id"] = points["id"].astype(str)
        # vectorised membership test (a Python set over 500k foci takes ~1 s)
        unknown_ids = set(points.loc[~points["id"].isin(analyses["id"]), "id"])
        if unknown_ids:
            raise StudysetError(
                f"{source_name}: foci refer to unknown analyses {sorted(unknown_ids)[:5]}"
            )
        xyz = np.array(points[["x", "y", "z"]].to_numpy(dtype=float), copy=True)
        bad = ~np.isfinite(xyz).all(axis=1)
        if bad.any():
            ids = sorted(set(points.loc[bad, "id"]))
            raise StudysetError(
                f"{source_name}: {int(bad.sum())} focus/foci with missing or non-finite "
                f"coordinates in analyses {ids[:5]}; expected three finite numbers (x, y, z)"
            )
        # normalise each distinct label once (a per-focus map takes ~1 s on 500k foci)
        codes, labels = pd.factorize(points["space"].astype(object), use_na_sentinel=False)
        canon = np.array([normalize_space(lab) for lab in labels], dtype=object)
        space = pd.Series(canon[codes], index=points.index, dtype=object)
        if harmonize:
            is_tal = (space == "TAL").to_numpy()
            if is_tal.any():
                xyz[is_tal] = tal2mni(xyz[is_tal])
            unknown = (space == "UNKNOWN").to_numpy()
            if unknown.any():
                ids = sorted(set(points.loc[unknown, "id"]))
                warnings.warn(
                    f"{source_name}: {int(unknown.sum())} foci in {len(ids)} analyses have an "
                    f"unknown coordinate space and were kept as MNI: {ids[:10]}"
                    + (" ..." if len(ids) > 10 else ""),
                    UnknownSpaceWarning,
                    stacklevel=2,
                )
        points = pd.DataFrame(
            {
                "id": points["id"].to_numpy(),
                "x": xyz[:, 0],
                "y": xyz[:, 1],
                "z": xyz[:, 2],
                "space": space.to_numpy(),
            }
        )
        row = pd.Series(np.arange(len(analyses)), index=analyses["id"].to_numpy())
        points["_row"] = row.loc[points["id"]].to_numpy()
        points = points.sort_values("_row", kind="stable").drop(columns="_row")
        points = points.reset_index(drop=True)

        if metadata is None:
            metadata = pd.DataFrame({"id": analyses["id"]})
        metadata = metadata.copy()
        metadata["id"] = metadata["id"].astype(str)
        if metadata["id"].duplicated().any():
            raise StudysetError(f"{source_name}: metadata has duplicated ids")
        metadata = analyses[["id"]].merge(metadata, on="id", how="left")
        analyses["sample_size"] = _sample_sizes(metadata, analyses, source_name)

        images = _long_table(images, ["id", "type", "path"])
        texts = _long_table(texts, ["id", "type", "text"])
        obj = cls.__new__(cls)
        obj._set_tables(analyses, points, metadata, annotations, images, texts, get_grid(target))
        return obj

    def _set_tables(self, analyses, points, metadata, annotations, images, texts, grid):
        self._analyses = analyses
        # points, metadata and annotations: the table, or a zero-argument callable producing it
        # (a store reads each on first use, so opening one reads only the analyses table)
        self._points_src = points
        self._metadata_src = metadata
        self._annotations_src = annotations
        self._images = images
        self._texts = texts
        self._grid = grid
        self._cache: dict[str, Any] = {}
        #: The opened :class:`~nimare_dask.studyset.store.StudysetStore`, if any.
        self.store = None
        #: Source description (a parquet manifest's ``id``, ``name``, ``annotation_id``).
        self.info: dict = {}
        #: Image arrays (stored or derived, :class:`~nimare_dask.studyset.images.ImageArrays`)
        #: looked up by analysis id, so selections and copies share them; ignored on another grid.
        self._image_arrays = None

    @property
    def _metadata(self) -> pd.DataFrame:
        if callable(self._metadata_src):
            self._metadata_src = self._metadata_src()
        return self._metadata_src

    @property
    def _points(self) -> pd.DataFrame:
        if callable(self._points_src):
            self._points_src = self._points_src()
        return self._points_src

    @property
    def _annotations(self) -> Annotations | None:
        if callable(self._annotations_src):
            self._annotations_src = self._annotations_src()
        return self._annotations_src

    def _tables(self) -> dict:
        return {
            "analyses": self._analyses,
            "points": self._points,
            "metadata": self._metadata,
            "annotations": self._annotations,
            "images": self._images,
            "texts": self._texts,
        }

    # ------------------------------------------------------------------ basic properties
    def __len__(self) -> int:
        return len(self._analyses)

    def __repr__(self) -> str:
        n_lab = 0 if self._annotations is None else len(self._annotations.labels)
        return (
            f"Studyset({len(self)} analyses, {self.study_ids.size} studies, "
            f"{len(self._points)} foci, {n_lab} labels, grid={self._grid.name})"
        )

    @property
    def grid(self) -> Grid:
        """The voxel grid (mask, affine, indexing)."""
        return self._grid

    @property
    def masker(self) -> Grid:
        """Alias of :attr:`grid` for NiMARE users."""
        return self._grid

    @property
    def ids(self) -> np.ndarray:
        """Analysis ids (``"<study>-<contrast>"``), sorted."""
        return self._analyses["id"].to_numpy()

    @property
    def study_ids(self) -> np.ndarray:
        """Unique study ids, sorted."""
        return np.unique(self._analyses["study_id"].to_numpy())

    @property
    def analyses(self) -> pd.DataFrame:
        """One row per analysis: id, study_id, contrast_id, names, sample_size, n_foci."""
        out = self._analyses.copy()
        out["n_foci"] = self.foci_counts()
        return out

    @property
    def coordinates(self) -> pd.DataFrame:
        """Foci: ``id, study_id, contrast_id, x, y, z, space`` (x, y, z in MNI mm)."""
        p = self._points
        info = self._analyses.set_index("id")[["study_id", "contrast_id"]]
        out = pd.DataFrame(
            {
                "id": p["id"].to_numpy(),
                "study_id": info["study_id"].reindex(p["id"]).to_numpy(),
                "contrast_id": info["contrast_id"].reindex(p["id"]).to_numpy(),
                "x": p["x"].to_numpy(),
                "y": p["y"].to_numpy(),
                "z": p["z"].to_numpy(),
                "space": p["space"].to_numpy(),
            }
        )
        return out

    @property
    def metadata(self) -> pd.DataFrame:
        """Per-analysis metadata with ``id, study_id, contrast_id`` and ``sample_size``."""
        base = self._analyses[["id", "study_id", "contrast_id", "study_name", "analysis_name"]]
        meta = self._metadata.drop(columns=[c for c in base.columns if c != "id"], errors="ignore")
        out = base.merge(meta, on="id", how="left")
        out["sample_size"] = self._analyses["sample_size"].to_numpy()
        return out

    @property
    def annotation_matrix(self) -> Annotations | None:
        """The (analysis x label) :class:`Annotations` (None when there are none)."""
        return self._annotations

    @property
    def labels(self) -> list[str]:
        """Annotation label names."""
        return [] if self._annotations is None else list(self._annotations.labels)

    @property
    def space(self) -> str:
        """The target space name (NiMARE's ``space``), e.g. ``"mni152_2mm"``."""
        return self._grid.name

    @property
    def annotations_df(self) -> pd.DataFrame:
        """NiMARE 0.22.1's name for :attr:`annotations` (the label weights as a frame)."""
        return self.annotations

    @property
    def annotations(self) -> pd.DataFrame:
        """Annotations as a DataFrame ``id, study_id, contrast_id, <labels>``.

        Sparse annotations give pandas sparse columns (no dense copy of a big database).
        """
        base = self._analyses[["id", "study_id", "contrast_id"]].reset_index(drop=True)
        if self._annotations is None:
            return base
        a = self._annotations
        if a.is_sparse:
            frame = pd.DataFrame.sparse.from_spmatrix(a.values, columns=a.labels)
        else:
            frame = pd.DataFrame(np.asarray(a.values), columns=a.labels)
        return pd.concat([base, frame], axis=1)

    @property
    def images(self) -> pd.DataFrame:
        """Images as a wide DataFrame ``id, study_id, contrast_id, <type>...`` (paths)."""
        base = self._analyses[["id", "study_id", "contrast_id"]]
        if self._images.empty:
            return base.copy()
        wide = self._images.drop_duplicates(["id", "type"]).pivot(
            index="id", columns="type", values="path"
        )
        wide.columns.name = None
        return base.merge(wide.reset_index(), on="id", how="left")

    @property
    def texts(self) -> pd.DataFrame:
        """Texts as a wide DataFrame ``id, study_id, contrast_id, <type>...``."""
        base = self._analyses[["id", "study_id", "contrast_id"]]
        if self._texts.empty:
            return base.copy()
        wide = self._texts.drop_duplicates(["id", "type"]).pivot(
            index="id", columns="type", values="text"
        )
        wide.columns.name = None
        return base.merge(wide.reset_index(), on="id", how="left")

    @property
    def sample_sizes(self) -> np.ndarray:
        """Per-analysis sample size (float; NaN when unknown), aligned with :attr:`ids`."""
        return self._analyses["sample_size"].to_numpy(dtype=float)

    @property
    def fingerprint(self) -> str:
        """Hash of ids, foci (to 1e-4 mm) and sample sizes: what MA maps depend on."""
        if "fingerprint" not in self._cache:
            h = hashlib.sha256()
            h.update("\x00".join(self.ids).encode())
            h.update(np.round(self._points[["x", "y", "z"]].to_numpy(float), 4).tobytes())
            h.update(self.foci_counts().astype(np.int64).tobytes())
            h.update(np.nan_to_num(self.sample_sizes, nan=-1.0).tobytes())
            self._cache["fingerprint"] = h.hexdigest()[:16]
        return self._cache["fingerprint"]

    # ------------------------------------------------------------------ array blocks
    def foci_counts(self) -> np.ndarray:
        """Number of foci per analysis (aligned with :attr:`ids`)."""
        if "counts" not in self._cache:
            row = self.focus_rows()
            self._cache["counts"] = np.bincount(row, minlength=len(self)).astype(np.int64)
        return self._cache["counts"]

    def focus_rows(self) -> np.ndarray:
        """For each focus, the row (position in :attr:`ids`) of its analysis."""
        if "rows" not in self._cache:
            row = pd.Series(np.arange(len(self)), index=self.ids)
            self._cache["rows"] = row.reindex(self._points["id"]).to_numpy(dtype=np.int64)
        return self._cache["rows"]

    def focus_offsets(self) -> np.ndarray:
        """CSR-style offsets: foci of analysis r are rows ``offsets[r]:offsets[r+1]``."""
        return np.concatenate([[0], np.cumsum(self.foci_counts())])

    def xyz(self) -> np.ndarray:
        """(n_foci, 3) float64 MNI coordinates in analysis order."""
        return self._points[["x", "y", "z"]].to_numpy(dtype=float)

    def ijk(self, grid: Grid | None = None) -> np.ndarray:
        """(n_foci, 3) int64 grid indices (NiMARE's mm2vox rounding), cached per grid."""
        grid = grid or self._grid
        key = f"ijk-{grid.fingerprint}"
        if key not in self._cache:
            self._cache[key] = grid.mm_to_ijk(self.xyz())
        return self._cache[key]

    def focus_voxels(self, grid: Grid | None = None) -> np.ndarray:
        """In-mask voxel index of each focus (-1 for foci outside the mask or grid)."""
        grid = grid or self._grid
        key = f"vox-{grid.fingerprint}"
        if key not in self._cache:
            self._cache[key] = grid.ijk_to_voxel(self.ijk(grid))
        return self._cache[key]

    # ------------------------------------------------------------------ selection
    def _take(self, pos: np.ndarray) -> Studyset:
        keep = self.ids[pos]
        analyses = self._analyses.iloc[pos].reset_index(drop=True)
        point_mask = np.isin(self.focus_rows(), pos)
        points = self._points[point_mask].reset_index(drop=True)
        metadata = self._metadata.iloc[pos].reset_index(drop=True)
        annotations = None if self._annotations is None else self._annotations.take(pos)
        images = self._images[self._images["id"].isin(keep)].reset_index(drop=True)
        texts = self._texts[self._texts["id"].isin(keep)].reset_index(drop=True)
        obj = Studyset.__new__(Studyset)
        obj._set_tables(analyses, points, metadata, annotations, images, texts, self._grid)
        obj.info = dict(self.info)
        obj._image_arrays = self._image_arrays
        return obj

    def with_grid(self, target: str | Grid) -> Studyset:
        """The same studyset on another voxel grid."""
        obj = Studyset.__new__(Studyset)
        obj._set_tables(**self._tables(), grid=get_grid(target))
        obj._image_arrays = self._image_arrays  # used again only if the grid is the same
        return obj

    def merge(self, right: Studyset) -> Studyset:
        """Combine two studysets with disjoint analysis ids (NiMARE's ``merge(right)``)."""
        other = right
        overlap = set(self.ids) & set(other.ids)
        if overlap:
            raise StudysetError(f"cannot merge: duplicated analysis ids {sorted(overlap)[:10]}")
        ann = Annotations.concat([self._annotations, other._annotations], [len(self), len(other)])
        return Studyset.from_tables(
            pd.concat([self._analyses, other._analyses], ignore_index=True).drop(
                columns=["sample_size"]
            ),
            pd.concat([self._points, other._points], ignore_index=True),
            pd.concat([self._metadata, other._metadata], ignore_index=True),
            ann,
            pd.concat([self._images, other._images], ignore_index=True),
            pd.concat([self._texts, other._texts], ignore_index=True),
            target=self._grid,
            harmonize=False,
        )


def studyset_or_dataset(studyset, dataset, where: str):
    """The one input given as ``studyset`` or under NiMARE's name ``dataset``.

    Parameters
    ----------
    studyset, dataset : object or None
        The two spellings of the same argument; exactly one must be given.
    where : str
        The caller, named in errors (``"FocusFilter.transform"``).

    Returns
    -------
    object
        The input given.
    """
    if dataset is not None:
        if studyset is not None:
            raise TypeError(f"{where}: pass studyset= or dataset=, not both")
        return dataset
    if studyset is None:
        raise TypeError(f"{where}: a studyset (NiMARE: dataset) is required")
    return studyset


def _long_table(df: pd.DataFrame | None, columns: list[str]) -> pd.DataFrame:
    if df is None or len(df) == 0:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in columns})
    df = df[columns].copy()
    df["id"] = df["id"].astype(str)
    return df.reset_index(drop=True)


def _reduce_sample_size(value) -> float:
    if value is None:
        return np.nan
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            return np.nan
    arr = np.asarray(value, dtype=object).ravel()
    vals = []
    for v in arr:
        if v is None:
            continue
        try:
            f = float(v)
        except (TypeError, ValueError):
            continue
        if np.isfinite(f):
            vals.append(f)
    return float(np.mean(vals)) if vals else np.nan


def _sample_sizes(metadata: pd.DataFrame, analyses: pd.DataFrame, source_name: str) -> np.ndarray:
    """One sample size per analysis: mean of ``sample_sizes``, falling back to ``sample_size``."""
    out = np.full(len(metadata), np.nan)
    for field in ("sample_size", "sample_sizes"):  # later wins: sample_sizes first priority
        if field in metadata:
            vals = np.array([_reduce_sample_size(v) for v in metadata[field]])
            out = np.where(np.isfinite(vals), vals, out)
    bad = np.isfinite(out) & (out <= 0)
    if bad.any():
        ids = analyses["id"].to_numpy()[bad]
        raise StudysetError(
            f"{source_name}: non-positive sample size in analyses {list(ids[:5])}; "
            "expected a positive number of subjects"
        )
    return out
