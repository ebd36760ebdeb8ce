"""Studyset selection and queries with NiMARE 0.22.1's names and semantics.

:class:`StudysetQueries` is mixed into :class:`~nimare_dask.studyset.core.Studyset`; it only uses
the Studyset's tables (``_analyses``, ``_points``, ``_metadata``, ``_annotations``, ``_images``,
``_texts``) and ``_take``. Every ``get_*_by_*`` method returns full ``"<study>-<contrast>"``
analysis ids, as NiMARE 0.22.1 does.
"""

from __future__ import annotations

import operator
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import nibabel as nib
import numpy as np
import pandas as pd
import scipy.sparse as sp

from nimare_dask.space import Grid

if TYPE_CHECKING:
    from nimare_dask.studyset.core import Studyset

__all__ = ["StudysetQueries", "UnknownIdError", "UnknownLabelError"]


class UnknownIdError(KeyError, ValueError):
    """An id names no analysis (NiMARE raises ``ValueError``; ``KeyError`` kept for ours)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class UnknownLabelError(KeyError, ValueError):
    """A label names no annotation column (NiMARE raises ``ValueError``)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


#: ``filter_metadata`` operators (NiMARE's names).
_OPS = {
    "==": operator.eq,
    "eq": operator.eq,
    "!=": operator.ne,
    "ne": operator.ne,
    ">": operator.gt,
    "gt": operator.gt,
    ">=": operator.ge,
    "ge": operator.ge,
    "<": operator.lt,
    "lt": operator.lt,
    "<=": operator.le,
    "le": operator.le,
    "in": lambda series, value: series.isin(value),
    "contains": lambda series, value: series.astype(str).str.contains(value, na=False),
}
_ID_COLS = ("id", "study_id", "contrast_id")


def _as_list(ids) -> list[str]:
    if isinstance(ids, str):
        return [ids]
    return [str(i) for i in np.atleast_1d(np.asarray(list(ids), dtype=object))]


class StudysetQueries:
    """Selection and query methods (mixed into Studyset)."""

    # ------------------------------------------------------------------ selection
    def _positions(self, ids: Iterable[str], *, allow_short: bool = True) -> np.ndarray:
        """Rows of full ids (or short analysis ids, which may select several); sorted."""
        ids = _as_list(ids)
        if not ids:
            return np.zeros(0, dtype=np.int64)
        full = pd.Index(self.ids)
        pos = full.get_indexer(ids)
        rows = [pos[pos >= 0]]
        missing = [i for i, p in zip(ids, pos, strict=True) if p < 0]
        if missing and allow_short:
            short = self._analyses["contrast_id"].to_numpy(dtype=str)
            hit = np.isin(short, missing)
            rows.append(np.flatnonzero(hit))
            missing = [m for m in missing if m not in set(short[hit])]
        if missing:
            raise UnknownIdError(
                f"no analysis in this studyset matches: {missing[:10]}; analyses are matched on "
                "their full '<study id>-<analysis id>' id (Studyset.ids) or the analysis id alone"
            )
        return np.unique(np.concatenate(rows)).astype(np.int64)

    def slice(
        self,
        ids: str | Iterable[str] | None = None,
        *,
        analyses: Iterable[str] | None = None,
        filter_level: str = "analysis",
    ) -> Studyset:
        """A new Studyset with only the named analyses (NiMARE's ``slice``).

        Parameters
        ----------
        ids : str or iterable of str
            Full analysis ids (``"<study>-<contrast>"``) or analysis ids alone (a short id
            shared by several studies selects all of them); study ids with
            ``filter_level="study"``. An id naming nothing raises :class:`UnknownIdError`
            (a ``ValueError`` as in NiMARE, and a ``KeyError``); an empty list is not an error.
        analyses : iterable of str, optional
            Alias of ``ids``.
        filter_level : {"analysis", "study"}
            What ``ids`` names.

        Returns
        -------
        Studyset
            Sorted by id, whatever the order of ``ids``.
        """
        if ids is None and analyses is not None:
            ids = analyses
        elif ids is None:
            raise TypeError("slice() requires 'ids'")
        if filter_level == "study":
            return self.filter_study_ids(ids)
        if filter_level != "analysis":
            raise ValueError(f"filter_level must be 'analysis' or 'study', got {filter_level!r}")
        return self._take(self._positions(ids))

    def filter_ids(self, ids: str | Iterable[str]) -> Studyset:
        """Keep the named analyses (full or short ids); an unknown id raises."""
        return self._take(self._positions(ids))

    def filter_study_ids(self, study_ids: str | Iterable[str]) -> Studyset:
        """Keep the analyses of the named studies; an unknown study id raises."""
        wanted = _as_list(study_ids)
        have = self._analyses["study_id"].to_numpy(dtype=str)
        missing = sorted(set(wanted) - set(have))
        if missing:
            raise UnknownIdError(f"no study in this studyset matches: {missing[:10]}")
        return self._take(np.flatnonzero(np.isin(have, wanted)))

    def exclude_study_ids(self, study_ids: str | Iterable[str]) -> Studyset:
        """Drop the analyses of the named studies (unknown ids are not an error)."""
        have = self._analyses["study_id"].to_numpy(dtype=str)
        return self._take(np.flatnonzero(~np.isin(have, _as_list(study_ids))))

    def select_analyses(self, mask) -> Studyset:
        """Keep the analyses a boolean mask (or an array of positions) selects."""
        mask = np.asarray(mask)
        if mask.dtype == bool:
            if mask.shape != (len(self),):
                raise ValueError(f"mask has shape {mask.shape}, expected ({len(self)},)")
            return self._take(np.flatnonzero(mask))
        return self._take(np.unique(mask.astype(np.int64)))

    def filter_annotations(
        self,
        labels: str | Sequence[str],
        threshold: float = 0.001,
        match: str = "all",
        annotation: str | None = None,
    ) -> Studyset:
        """Keep analyses whose label weights reach ``threshold`` (``match`` "all" or "any")."""
        if match not in ("all", "any"):
            raise ValueError("match must be 'all' or 'any'")
        masks = self._label_masks(labels, threshold, annotation)
        return self.select_analyses(masks.all(axis=0) if match == "all" else masks.any(axis=0))

    def filter_metadata(self, field: str, op: str, value: Any) -> Studyset:
        """Keep analyses whose metadata ``field`` satisfies ``op value`` (NiMARE's operators)."""
        frame = self.metadata
        if field not in frame.columns:
            raise ValueError(f"Unknown metadata field: {field}")
        if op not in _OPS:
            raise ValueError(f"Unsupported metadata operator: {op}; one of {sorted(_OPS)}")
        keep = _OPS[op](frame[field], value)
        if not isinstance(keep, pd.Series):
            keep = pd.Series(keep, index=frame.index)
        return self.select_analyses(keep.fillna(False).to_numpy(dtype=bool))

    def copy(self) -> Studyset:
        """A new handle on the same (immutable) tables."""
        return self._take(np.arange(len(self)))

    def update_path(self, new_path: str | Path) -> Studyset:
        """Resolve relative image paths against ``new_path`` (NiMARE's ``update_path``).

        Returns
        -------
        Studyset
            A new Studyset; absolute paths and URLs are unchanged.
        """
        import os

        out = self.copy()
        base = Path(new_path).resolve()
        paths = out._images["path"].astype(object)
        rel = paths.map(lambda p: isinstance(p, str) and "://" not in p and not os.path.isabs(p))
        out._images = out._images.copy()
        out._images.loc[rel, "path"] = [str(base / p) for p in paths[rel]]
        return out

    # ------------------------------------------------------------------ labels
    def _check_annotation(self, annotation: str | None) -> None:
        if annotation is None:
            return
        known = self.info.get("annotation_id")
        if annotation != known:
            raise KeyError(
                f"unknown annotation {annotation!r}: this studyset carries one annotation "
                f"set ({known!r}); pass annotation=None"
            )

    def _label_masks(self, labels, threshold: float, annotation: str | None = None) -> np.ndarray:
        if isinstance(labels, str):
            labels = [labels]
        elif not isinstance(labels, list | tuple | np.ndarray | pd.Index):
            raise ValueError(f"Argument 'labels' cannot be {type(labels)}")
        self._check_annotation(annotation)
        if self._annotations is None:
            raise UnknownLabelError(f"this studyset has no annotations; cannot select by {labels}")
        missing = [lab for lab in labels if lab not in set(self._annotations.labels)]
        if missing:
            raise UnknownLabelError(f"Missing label(s): {missing[:10]}")
        vals = self._annotations.columns(list(labels))  # absent weights are 0
        return (vals >= threshold).T

    def get_labels(self, ids: Iterable[str] | None = None) -> list[str]:
        """Annotation labels; with ``ids``, those with a non-zero weight in these analyses."""
        if self._annotations is None:
            return []
        if ids is None:
            return list(self._annotations.labels)
        sub = self._annotations.values[self._positions(ids)]
        nz = (sub != 0).sum(axis=0)
        present = np.asarray(nz).ravel() > 0
        return [lab for lab, keep in zip(self._annotations.labels, present, strict=True) if keep]

    def get_studies_by_label(
        self,
        labels: str | Sequence[str] | None = None,
        label_threshold: float = 0.001,
        annotation: str | None = None,
    ) -> list[str]:
        """Analyses whose weight is >= ``label_threshold`` for every given label.

        Returns
        -------
        list of str
            Full analysis ids.
        """
        keep = self._label_masks(labels, label_threshold, annotation).all(axis=0)
        return list(self.ids[keep])

    def get_analyses_by_label(
        self,
        labels: str | Sequence[str] | None = None,
        label_threshold: float = 0.001,
        annotation: str | None = None,
    ) -> list[str]:
        """Same as :meth:`get_studies_by_label` (NiMARE 0.22.1 returns full ids from both)."""
        return self.get_studies_by_label(labels, label_threshold, annotation)

    # ------------------------------------------------------------------ space
    def get_studies_by_mask(self, mask: nib.Nifti1Image | str | Path | Grid) -> list[str]:
        """Analyses with at least one focus inside a mask image (value > 0).

        Foci are projected onto the mask's own grid with NiMARE's rounding; foci outside the
        mask's grid are ignored (as NiMARE's Studyset does).

        Returns
        -------
        list of str
            Full analysis ids.
        """
        mgrid = mask if isinstance(mask, Grid) else Grid.from_mask(mask)
        vox = mgrid.mm_to_voxel(self.xyz()) if len(self._points) else np.zeros(0, int)
        hit_rows = np.unique(self.focus_rows()[vox >= 0])
        return list(self.ids[hit_rows])

    def get_analyses_by_mask(self, mask: nib.Nifti1Image | str | Path | Grid) -> list[str]:
        """Same as :meth:`get_studies_by_mask`."""
        return self.get_studies_by_mask(mask)

    def get_studies_by_coordinate(self, xyz, r: float = 20) -> list[str]:
        """Analyses with a focus within ``r`` mm (Euclidean, inclusive) of any query point.

        Returns
        -------
        list of str
            Full analysis ids.
        """
        from scipy.spatial import cKDTree

        xyz = np.atleast_2d(np.asarray(xyz, dtype=float))
        if len(self._points) == 0:
            return []
        tree = cKDTree(self.xyz())
        hits = tree.query_ball_point(xyz, r=r + 1e-9)
        foci = np.unique(np.concatenate([np.asarray(h, dtype=np.int64) for h in hits]))
        rows = np.unique(self.focus_rows()[foci])
        return list(self.ids[rows])

    def get_analyses_by_coordinate(self, xyz, r: float | None = None, n: int | None = None):
        """Analyses near one point: foci within ``r`` mm, or owning the ``n`` nearest foci.

        Exactly one of ``r`` and ``n`` is given. With ``n``, the analyses owning the ``n``
        nearest *foci* are returned (de-duplicated, so possibly fewer than ``n``), as NiMARE.

        Returns
        -------
        list of str
            Full analysis ids, in studyset order.
        """
        if (r is None) == (n is None):
            raise ValueError("Exactly one of r or n must be provided.")
        xyz = np.asarray(xyz, dtype=float).ravel()
        if xyz.shape != (3,):
            raise ValueError("xyz must be a 1 x 3 array-like object.")
        if len(self._points) == 0:
            return []
        dist = np.sqrt(((self.xyz() - xyz) ** 2).sum(axis=1))
        rows = self.focus_rows()
        hit = rows[dist <= r] if r is not None else rows[np.argsort(dist, kind="stable")[:n]]
        return list(self.ids[np.unique(hit)])

    # ------------------------------------------------------------------ fields
    def _field(self, frame: pd.DataFrame, field: str | None, what: str):
        available = [c for c in frame.columns if c not in _ID_COLS]
        if field is None:
            return available
        if field not in available:
            raise ValueError(f"{field} not found in {what}.\nAvailable: {', '.join(available)}")
        return frame[field].tolist()

    def get_metadata(self, field: str | None = None, ids: Iterable[str] | None = None):
        """Metadata field names (``field=None``), or one field's values in studyset order.

        Parameters
        ----------
        field : str, optional
            A metadata column (``sample_size`` is ours: the per-analysis mean sample size).
        ids : iterable of str, optional
            Restrict to these analyses (full or short ids).
        """
        frame = self.metadata if ids is None else self.slice(ids).metadata
        return self._field(frame, field, "metadata")

    def get_texts(self, text_type: str | None = None, ids: Iterable[str] | None = None):
        """Text types (``text_type=None``), or one type's texts (None where missing)."""
        frame = self.texts if ids is None else self.slice(ids).texts
        out = self._field(frame, text_type, "texts")
        return out if text_type is None else [None if pd.isna(v) else v for v in out]

    def get_images(
        self, imtype: str | None = None, ids: Iterable[str] | None = None, policy: str = "first"
    ):
        """Image types present (``imtype=None``), or one type's path per analysis.

        Parameters
        ----------
        imtype : str, optional
        ids : iterable of str, optional
        policy : {"first"}
            One image per analysis and type: the first listed (NiMARE's default; the only
            policy that gives one path per analysis).

        Returns
        -------
        list
            Sorted types, or paths in studyset order (None where an analysis has none).
        """
        if policy != "first":
            raise ValueError(f"policy={policy!r}: get_images returns one path per analysis")
        if imtype is None:
            return sorted({t for t in self._images["type"] if isinstance(t, str) and t})
        frame = self.images if ids is None else self.slice(ids).images
        if imtype not in frame:
            return [None] * len(frame)
        return [None if pd.isna(v) else v for v in frame[imtype]]

    def get_analyses_by_metadata(self, key: str, value: Any = None) -> dict[str, dict]:
        """``{full analysis id: {key: value}}`` for analyses carrying ``key`` (= ``value``)."""
        meta = self.metadata
        if key not in meta:
            return {}
        out = {}
        for aid, found in zip(meta["id"], meta[key], strict=True):
            if _missing(found):
                continue
            if value is None or _equal(found, value):
                out[str(aid)] = {key: found}
        return out

    def get_analyses_by_annotations(self, key: str, value: Any = None) -> dict[str, dict]:
        """``{full analysis id: {label: weight}}`` for analyses with a non-zero ``key`` weight.

        ``key`` may also name the annotation set (then every analysis with any weight).
        """
        ann = self._annotations
        if ann is None:
            return {}
        if key == self.info.get("annotation_id"):
            notes = self.get_annotations()
            full = dict(zip(self._analyses["contrast_id"], self.ids, strict=True))
            return {full[k]: {key: v} for k, v in notes.items() if v and value in (None, v)}
        if key not in set(ann.labels):
            return {}
        col = ann.columns([key])[:, 0]
        return {
            str(aid): {key: float(w)}
            for aid, w in zip(self.ids, col, strict=True)
            if w != 0 and (value is None or w == value)
        }

    def get_annotations(self, analyses: Iterable[str] | None = None) -> dict[str, dict]:
        """``{analysis id alone: {label: weight}}`` (non-zero weights), as NiMARE keys it."""
        rows = np.arange(len(self)) if analyses is None else self._positions(analyses)
        ann = self._annotations
        short = self._analyses["contrast_id"].to_numpy(dtype=str)
        if ann is None:
            return {short[r]: {} for r in rows}
        values = ann.values
        sub = values[rows]
        sub = sp.csr_matrix(sub) if not sp.issparse(sub) else sub.tocsr()
        out = {}
        for k, r in enumerate(rows):
            lo, hi = sub.indptr[k], sub.indptr[k + 1]
            out[short[r]] = {
                ann.labels[j]: float(v)
                for j, v in zip(sub.indices[lo:hi], sub.data[lo:hi], strict=True)
            }
        return out

    def get_points(self, analyses: Iterable[str] | None = None) -> dict[str, list[dict]]:
        """``{analysis id alone: [{"coordinates": [x, y, z], "space": ..., "kind": ""}]}``.

        Coordinates are MNI mm as harmonised; ``space`` is the space reported in the source.
        """
        rows = np.arange(len(self)) if analyses is None else self._positions(analyses)
        short = self._analyses["contrast_id"].to_numpy(dtype=str)
        offsets = self.focus_offsets()
        xyz = self.xyz()
        space = self._points["space"].to_numpy(dtype=object)
        return {
            short[r]: [
                {"coordinates": xyz[i].tolist(), "space": space[i], "kind": ""}
                for i in range(offsets[r], offsets[r + 1])
            ]
            for r in rows
        }


def _missing(v) -> bool:
    if v is None:
        return True
    return isinstance(v, float) and v != v


def _equal(a, b) -> bool:
    try:
        return bool(a == b)
    except ValueError:  # arrays
        return bool(np.array_equal(np.asarray(a), np.asarray(b)))
