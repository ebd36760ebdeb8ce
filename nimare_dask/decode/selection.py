"""Which studies and features a decoder uses, as sparse label-indicator matrices.

NiMARE 0.22.1's conventions (``decode/base.py``), vectorised:

* only analyses with at least one focus take part (NiMARE's ``drop_invalid`` keeps the
  analyses with coordinates and annotations);
* ``feature_group`` selects the labels starting with ``<group>__`` (the trailing ``__`` is
  added when missing); ``features`` may then be given with or without that prefix;
* a feature is kept if at least one analysis has a value ``>= frequency_threshold``;
* a study "has" a feature when its value is ``>= frequency_threshold`` (NaN never does).

The indicator is a scipy CSR matrix (analyses x features) of ``int8`` ones, so a whole
database (NeuroQuery: 13,459 x 7,547) costs a few MB.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from nimare_dask.studyset import Studyset, open_studyset

__all__ = [
    "LabelDatabase",
    "candidate_features",
    "database_from_frames",
    "database_from_studyset",
    "label_indicator",
    "studies_with_foci",
]

_ID_COLUMNS = ("id", "study_id", "contrast_id")


def studies_with_foci(studyset: Studyset) -> Studyset:
    """The analyses that have at least one focus (NiMARE drops the others).

    Parameters
    ----------
    studyset : Studyset

    Returns
    -------
    Studyset
        ``studyset`` itself when every analysis has foci, else a slice (which has no store).
    """
    counts = studyset.foci_counts()
    if len(studyset) and (counts > 0).all():
        return studyset
    if not (counts > 0).any():
        raise ValueError("the studyset has no analyses with foci; nothing to decode")
    return studyset.slice(studyset.ids[counts > 0])


def candidate_features(
    labels: Sequence[str], feature_group: str | None = None, features: Sequence[str] | None = None
) -> list[str]:
    """The labels a decoder considers, before the frequency filter (NiMARE's order).

    Parameters
    ----------
    labels : sequence of str
        The studyset's annotation labels.
    feature_group : str, optional
        Label prefix (``"terms_abstract_tfidf"`` or ``"terms_abstract_tfidf__"``).
    features : sequence of str, optional
        Requested labels. With ``feature_group`` they may omit the prefix.

    Returns
    -------
    list of str
        Full label names: in the annotation order with ``feature_group``, else in the order
        given by ``features`` (or all labels).

    Raises
    ------
    KeyError
        A requested feature (without ``feature_group``) is not an annotation label.
    ValueError
        Nothing matches.
    """
    labels = list(labels)
    if feature_group is not None:
        group = feature_group if feature_group.endswith("__") else f"{feature_group}__"
        names = [lab for lab in labels if lab.startswith(group)]
        if features is not None:
            requested = {str(f) for f in _as_list(features)}
            names = [n for n in names if n in requested or n[len(group) :] in requested]
        if not names:
            raise ValueError(
                f"no annotation label matches feature_group={feature_group!r}"
                + (f" and features={list(_as_list(features))[:5]}" if features is not None else "")
                + f"; labels look like {labels[:3]}"
            )
        return names
    if features is None:
        return [lab for lab in labels if lab not in _ID_COLUMNS]
    names = [str(f) for f in _as_list(features) if str(f) not in _ID_COLUMNS]
    known = set(labels)
    missing = [n for n in names if n not in known]
    if missing:
        raise KeyError(
            f"unknown feature(s) {missing[:5]}: not annotation labels of this studyset "
            f"(labels look like {labels[:3]}; pass feature_group= to use short names)"
        )
    return names


def _as_list(values) -> list:
    return [values] if isinstance(values, str) else list(values)


def label_indicator(
    studyset: Studyset, names: Sequence[str], frequency_threshold: float = 0.001
) -> sp.csr_matrix:
    """Which analyses carry which features: ``values >= frequency_threshold``.

    Parameters
    ----------
    studyset : Studyset
        With annotations.
    names : sequence of str
        Labels (columns of the result, in this order).
    frequency_threshold : float
        Values at or above it count as "has the feature". With a threshold <= 0 every
        annotation entry, stored or not, can qualify and the indicator is built densely.

    Returns
    -------
    scipy.sparse.csr_matrix
        (n_analyses, len(names)) ``int8`` ones, sorted indices, no stored zeros (eager).
    """
    ann = studyset.annotation_matrix
    if ann is None:
        raise ValueError("the studyset has no annotations; decoders need labels")
    pos = ann.label_positions(list(names))
    thr = float(frequency_threshold)
    if ann.is_sparse and thr > 0:
        sub = sp.csr_matrix(ann.values[:, pos])
        keep = sub.data >= thr
        out = sp.csr_matrix(
            (keep.astype(np.int8), sub.indices, sub.indptr), shape=sub.shape, dtype=np.int8
        )
        out.eliminate_zeros()
    else:
        vals = ann.values[:, pos]
        vals = vals.toarray() if sp.issparse(vals) else np.asarray(vals)
        with np.errstate(invalid="ignore"):
            out = sp.csr_matrix((vals >= thr).astype(np.int8))
    out.sort_indices()
    return out


# ---------------------------------------------------------------------------------- inputs
class LabelDatabase:
    """The discrete decoders' database: rows (analysis ids), their label indicators and focus
    counts, and which analyses have foci."""

    def __init__(
        self,
        ids: np.ndarray,
        indicator: sp.csr_matrix,
        features: list[str],
        n_foci: np.ndarray,
        coord_ids: np.ndarray,
        n_foci_total: int | None = None,
    ):
        self.ids = np.asarray(ids, dtype=object)
        self.indicator = sp.csr_matrix(indicator, dtype=np.int64)
        self.features = list(features)
        self.n_foci = np.asarray(n_foci, dtype=np.int64)
        self.coord_ids = np.asarray(coord_ids, dtype=object)
        #: every focus of the coordinates table (NiMARE's ``n_foci_in_database``)
        self.n_foci_total = int(self.n_foci.sum() if n_foci_total is None else n_foci_total)
        self._index = pd.Index(self.ids)

    def rows(self, ids, what: str) -> np.ndarray:
        ids = [str(i) for i in ([ids] if isinstance(ids, str) else list(ids))]
        pos = self._index.get_indexer(ids)
        if (pos < 0).any():
            missing = [i for i, p in zip(ids, pos, strict=True) if p < 0]
            raise KeyError(
                f"{what}: unknown analysis id(s) {missing[:10]} (decoders use the analyses "
                "that have foci and annotations)"
            )
        return pos

    def subset_features(self, keep: np.ndarray) -> LabelDatabase:
        cols = np.flatnonzero(keep)
        return LabelDatabase(
            self.ids,
            self.indicator[:, cols],
            [self.features[c] for c in cols],
            self.n_foci,
            self.coord_ids,
            self.n_foci_total,
        )


def database_from_studyset(studyset, feature_group, features, frequency_threshold) -> LabelDatabase:
    """A :class:`LabelDatabase` of the analyses with foci of a studyset (or a store path)."""
    if isinstance(studyset, str | Path):
        studyset = open_studyset(studyset)
    if not isinstance(studyset, Studyset):
        raise TypeError(f"expected a Studyset or a store path; got {type(studyset).__name__}")
    ss = studies_with_foci(studyset)
    names = candidate_features(ss.labels, feature_group, features)
    ind = label_indicator(ss, names, frequency_threshold)
    return LabelDatabase(ss.ids, ind, names, ss.foci_counts(), ss.ids)


def database_from_frames(
    coordinates: pd.DataFrame,
    annotations: pd.DataFrame,
    feature_group,
    features,
    frequency_threshold,
) -> LabelDatabase:
    """NiMARE's function-form inputs: a coordinates table and an annotations table."""
    for name, frame in (("coordinates", coordinates), ("annotations", annotations)):
        if not isinstance(frame, pd.DataFrame) or "id" not in frame:
            raise TypeError(f"{name} must be a DataFrame with an 'id' column")
    labels = [c for c in annotations.columns if c not in ("id", "study_id", "contrast_id")]
    names = candidate_features(labels, feature_group, features)
    sub = annotations[names]
    thr = float(frequency_threshold)
    if thr > 0 and len(names) and all(isinstance(t, pd.SparseDtype) for t in sub.dtypes):
        vals = sp.csr_matrix(sub.sparse.to_coo())
        keep = vals.data >= thr
        ind = sp.csr_matrix((keep.astype(np.int8), vals.indices, vals.indptr), shape=vals.shape)
        ind.eliminate_zeros()
    else:
        with np.errstate(invalid="ignore"):
            ind = sp.csr_matrix((sub.to_numpy(dtype=float) >= thr).astype(np.int8))
    ann_ids = annotations["id"].astype(str).to_numpy()
    coord_ids = coordinates["id"].astype(str)
    n_foci = coord_ids.value_counts().reindex(ann_ids, fill_value=0).to_numpy()
    return LabelDatabase(
        ann_ids, ind, names, n_foci, np.unique(coord_ids.to_numpy()), n_foci_total=len(coord_ids)
    )
