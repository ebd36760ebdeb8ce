"""Which studies and features a decoder uses, as sparse label-indicator matrices.

NiMARE 0.22.1's conventions (``decode/base.py``), vectorised:

* only the analyses that have every input the decoder declares take part
  (:func:`analyses_with_inputs`, NiMARE's ``_collect_inputs(drop_invalid=True)``): at least one
  focus (coordinate-based decoders), an annotation record (every decoder) and, for
  :class:`~nimare_dask.decode.continuous.CorrelationDistributionDecoder`, an image of the target
  type. An analysis *without an annotation record* is one whose labels are all missing (NaN);
  a label value of 0 is a value, so an annotated analysis carrying none of the labels still
  counts (it is one of "the rest" of every feature), as in NiMARE;
* ``feature_group`` selects the labels starting with ``<group>__`` (the trailing ``__`` is
  added when missing); ``features`` may then be given with or without that prefix;
* a feature is kept if at least one analysis has a value ``>= frequency_threshold``;
* a study "has" a feature when its value is ``>= frequency_threshold`` (NaN never does).

The indicator is a scipy CSR matrix (analyses x features) of ``int8`` ones, so a whole
database (NeuroQuery: 13,459 x 7,547) costs a few MB.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import dask
import dask.array as da
import numpy as np
import pandas as pd
import scipy.sparse as sp

from nimare_dask.meta.base import _describing_fit
from nimare_dask.studyset import Studyset, open_studyset

__all__ = [
    "LabelDatabase",
    "nimare_fit",
    "analyses_with_inputs",
    "annotated_analyses",
    "candidate_features",
    "database_from_frames",
    "database_from_studyset",
    "label_indicator",
    "studies_with_foci",
]

_ID_COLUMNS = ("id", "study_id", "contrast_id")
LGR = logging.getLogger(__name__)


def nimare_fit(fit):
    """Give a decoder's ``fit(studyset, drop_invalid)`` NiMARE's ``dataset=`` keyword.

    The estimators' wrapper (:func:`nimare_dask.meta.base._describing_fit`): ``dataset=`` is
    passed on as ``studyset`` (both at once is a ``TypeError``). The MA-map keyword it also
    refuses (``ma_maps``) is not in NiMARE's decoders' signatures, so it is left out of this
    one's.

    Parameters
    ----------
    fit : callable
        The decoder's ``fit(self, studyset, drop_invalid=True)``.

    Returns
    -------
    callable
        The wrapped method.
    """
    wrapped = _describing_fit(fit)
    sig = wrapped.__signature__
    wrapped.__signature__ = sig.replace(
        parameters=[p for p in sig.parameters.values() if p.name != "ma_maps"]
    )
    return wrapped


def annotated_analyses(studyset: Studyset) -> np.ndarray:
    """Which analyses have an annotation record: at least one label value that is not NaN.

    NiMARE 0.22.1 (``nimare/studyset/requirements.py``, ``Labels.validity``) counts an analysis
    as annotated when any annotation stores an entry for it, whatever the value (0 included);
    an analysis with no entry at all is invalid input to every decoder and is dropped. Here a
    missing entry is NaN, so an analysis is unannotated when all its labels (every label of the
    studyset, not only the requested features) are NaN; an entry not stored in a sparse matrix
    is 0, a value.

    Parameters
    ----------
    studyset : Studyset

    Returns
    -------
    numpy.ndarray
        Boolean, aligned with ``studyset.ids`` (eager; a store's dense labels are read once,
        in blocks). All False when the studyset has no annotations.
    """
    ann = studyset.annotation_matrix
    n = len(studyset)
    if ann is None or not ann.shape[1]:
        return np.zeros(n, dtype=bool)
    vals = ann.values
    if sp.issparse(vals):
        csr = sp.csr_matrix(vals)
        rows = np.repeat(np.arange(n), np.diff(csr.indptr))
        nan_per_row = np.bincount(rows[np.isnan(csr.data)], minlength=n)
        return nan_per_row < csr.shape[1]
    if isinstance(vals, da.Array):
        (all_nan,) = dask.compute(da.isnan(vals).all(axis=1))
        return ~np.asarray(all_nan, dtype=bool)
    return ~np.isnan(np.asarray(vals, dtype=np.float32)).all(axis=1)


def analyses_with_inputs(
    studyset: Studyset,
    *,
    foci: bool = True,
    labels: bool = True,
    image_type: str | None = None,
    drop_invalid: bool = True,
    what: str = "decoder",
) -> Studyset:
    """The analyses that have every input an algorithm needs (NiMARE's ``drop_invalid``).

    The one place where decoders (and workflows such as MACM, with ``labels=False``) decide
    which analyses take part, as NiMARE 0.22.1's ``_collect_inputs``: an analysis is valid when
    it has at least one focus (``foci``), an annotation record (``labels``,
    :func:`annotated_analyses`) and an image of ``image_type``; the others are ignored, or
    raise with ``drop_invalid=False``.

    Parameters
    ----------
    studyset : Studyset
    foci : bool
        Require at least one focus (coordinate-based algorithms).
    labels : bool
        Require an annotation record (decoders).
    image_type : str, optional
        Require an image of this type (``"z"``...).
    drop_invalid : bool
        Ignore invalid analyses (True, NiMARE's default) or raise naming them (False).
    what : str
        Who asks, for messages.

    Returns
    -------
    Studyset
        ``studyset`` itself when every analysis is valid, else a slice (which has no store).

    Raises
    ------
    ValueError
        No analysis is valid, or some are invalid and ``drop_invalid`` is False.
    """
    n = len(studyset)
    reasons: list[tuple[str, np.ndarray]] = []
    if foci:
        reasons.append(("no foci", np.asarray(studyset.foci_counts()) > 0))
    if labels:
        if studyset.annotation_matrix is None:
            raise ValueError(f"the studyset has no annotations; the {what} needs labels")
        reasons.append(("no annotation record (every label missing)", annotated_analyses(studyset)))
    if image_type is not None:
        from nimare_dask.studyset.images import has_image

        reasons.append((f"no {image_type!r} image", np.asarray(has_image(studyset, image_type))))
    valid = np.ones(n, dtype=bool)
    for _, ok in reasons:
        valid &= ok
    if n and valid.all():
        return studyset
    ids = np.asarray(studyset.ids)
    detail = "; ".join(
        f"{(~ok).sum()} with {why} (e.g. {list(ids[~ok][:5])})"
        for why, ok in reasons
        if not ok.all()
    )
    if not valid.any():
        raise ValueError(
            f"no analysis has the inputs the {what} needs: {detail or 'empty studyset'}"
        )
    if not drop_invalid:
        raise ValueError(
            f"{(~valid).sum()} of {n} analyses lack inputs the {what} needs ({detail}); pass "
            "drop_invalid=True to ignore them"
        )
    LGR.info("%s: ignoring %d of %d analyses: %s", what, (~valid).sum(), n, detail)
    return studyset.slice(ids[valid])


def studies_with_foci(studyset: Studyset) -> Studyset:
    """The analyses that have at least one focus (NiMARE drops the others).

    Parameters
    ----------
    studyset : Studyset

    Returns
    -------
    Studyset
        ``analyses_with_inputs(studyset, labels=False)``.
    """
    return analyses_with_inputs(studyset, labels=False)


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


def database_from_studyset(
    studyset,
    feature_group,
    features,
    frequency_threshold,
    drop_invalid: bool = True,
    what: str = "decoder",
) -> LabelDatabase:
    """A :class:`LabelDatabase` of a studyset's (or a store path's) analyses with foci and
    annotations (:func:`analyses_with_inputs`)."""
    if isinstance(studyset, str | Path):
        studyset = open_studyset(studyset)
    if not isinstance(studyset, Studyset):
        raise TypeError(f"expected a Studyset or a store path; got {type(studyset).__name__}")
    ss = analyses_with_inputs(studyset, drop_invalid=drop_invalid, what=what)
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
