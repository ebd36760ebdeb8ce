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

import numpy as np
import scipy.sparse as sp

from nimare_dask.studyset import Studyset

__all__ = ["candidate_features", "label_indicator", "studies_with_foci"]

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
