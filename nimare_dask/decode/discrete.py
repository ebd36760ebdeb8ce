"""Decode a set of studies (or an ROI) into labels, vectorised over every feature.

NiMARE 0.22.1's discrete decoders (``nimare.decode.discrete``) with sparse label matrices:

* :class:`NeurosynthDecoder` / :func:`neurosynth_decode`: Neurosynth's forward (one-way
  chi-square of the selected studies' label counts against the average label) and reverse
  (two-way chi-square of label x selection) inference;
* :class:`BrainMapDecoder` / :func:`brainmap_decode`: forward inference from the binomial upper
  tail over foci, reverse inference by the two-way chi-square;
* :class:`ROIAssociationDecoder`: Pearson r across studies between each label and the studies'
  mean MA value inside an ROI.

Columns, index names, multiple-comparison corrections (``"bh"``, ``"by"``, ``"bonferroni"``
in log space) and edge rules follow NiMARE, with one deliberate difference: where a two-way
table has a zero margin (a label carried by every study, or an empty selection) the chi-square
is 0 (p = 1), not NiMARE's 2.0 (see :func:`nimare_dask.stats.chi2.two_way_counts`).

The decoding formulas (``neurosynth_decode``, ``brainmap_decode``, ``_resolve_min_studies``):
Adapted from NiMARE 0.22.1 (https://github.com/neurostuff/NiMARE), MIT License, Copyright (c) 2018 NiMARE developers (``nimare/decode/discrete.py``).
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy.stats import binom

from nimare_dask.decode.selection import (
    LabelDatabase,
    analyses_with_inputs,
    candidate_features,
    database_from_frames,
    database_from_studyset,
    nimare_fit,
)
from nimare_dask.kernels import KernelTransformer, MKDAKernel
from nimare_dask.space import Grid, get_grid
from nimare_dask.stats.chi2 import chi2_to_nlogp, one_way, two_way
from nimare_dask.stats.multiple import neglnp_bonferroni, neglnp_fdr
from nimare_dask.stats.transforms import nlogp_to_z
from nimare_dask.studyset import Studyset, open_studyset

__all__ = [
    "BrainMapDecoder",
    "NeurosynthDecoder",
    "ROIAssociationDecoder",
    "brainmap_decode",
    "neurosynth_decode",
]

LGR = logging.getLogger(__name__)

_P_MIN_FLOAT64 = float(np.nextafter(0.0, 1.0))
_CORRECTIONS = (None, "bh", "by", "bonferroni")


def _selection(db: LabelDatabase, ids, ids2):
    sel = db.rows(ids, "ids")
    if ids2 is None:
        chosen = set(np.asarray([str(i) for i in ([ids] if isinstance(ids, str) else ids)]))
        rest = sorted(set(db.coord_ids) - chosen)
        unsel = db.rows(rest, "unselected")
    else:
        unsel = db.rows(ids2, "ids2")
    return sel, unsel


def _correct(nlogp: np.ndarray, correction) -> np.ndarray:
    if correction is None:
        return nlogp
    if correction in ("bh", "by"):
        return neglnp_fdr(nlogp, method=correction)
    if correction == "bonferroni":
        return neglnp_bonferroni(nlogp)
    raise ValueError("Argument 'correction' must be one of None, 'bh', 'by', or 'bonferroni'.")


def _p_from_nlogp(nlogp: np.ndarray) -> np.ndarray:
    return np.clip(np.exp(-nlogp), _P_MIN_FLOAT64, 1.0)


def _resolve_min_studies(min_studies, n_studies):
    # Adapted from NiMARE 0.22.1 (https://github.com/neurostuff/NiMARE), MIT License, Copyright (c) 2018 NiMARE developers
    if min_studies is None:
        return 0
    if isinstance(min_studies, float) and 0 < min_studies < 1:
        return min_studies * n_studies
    if min_studies < 0:
        raise ValueError(f"min_studies must be non-negative; got {min_studies}.")
    return min_studies


def _col_sums(ind: sp.csr_matrix, rows: np.ndarray) -> np.ndarray:
    if len(rows) == 0:
        return np.zeros(ind.shape[1], dtype=np.int64)
    return np.asarray(ind[rows].sum(axis=0), dtype=np.int64).ravel()


def _cells(n_sel_term, n_sel_noterm, n_unsel_term, n_unsel_noterm) -> np.ndarray:
    """(F, 2, 2) contingency tables in NiMARE's layout."""
    return np.array(
        [[n_sel_term, n_sel_noterm], [n_unsel_term, n_unsel_noterm]], dtype=np.float64
    ).T


# ---------------------------------------------------------------------------------- neurosynth
def _neurosynth(db: LabelDatabase, ids, ids2, prior, correction, min_studies) -> pd.DataFrame:
    # Adapted from NiMARE 0.22.1 (https://github.com/neurostuff/NiMARE), MIT License, Copyright (c) 2018 NiMARE developers
    # (``neurosynth_decode``), vectorised over labels
    if correction not in _CORRECTIONS:
        raise ValueError("Argument 'correction' must be one of None, 'bh', 'by', or 'bonferroni'.")
    sel, unsel = _selection(db, ids, ids2)
    n_selected, n_unselected = len(sel), len(unsel)
    n_selected_term = _col_sums(db.indicator, sel)
    n_unselected_term = _col_sums(db.indicator, unsel)
    n_term = n_selected_term + n_unselected_term
    features = db.features
    keep = n_term >= _resolve_min_studies(min_studies, n_selected + n_unselected)
    if not np.any(keep):
        raise ValueError(
            f"No labels reach min_studies={min_studies}; all {len(features)} labels were excluded."
        )
    if not np.all(keep):
        LGR.info("Excluding %d labels below min_studies=%s", int((~keep).sum()), min_studies)
        features = [f for f, k in zip(features, keep, strict=True) if k]
        n_selected_term = n_selected_term[keep]
        n_unselected_term = n_unselected_term[keep]
        n_term = n_term[keep]
    n_selected_noterm = n_selected - n_selected_term
    n_unselected_noterm = n_unselected - n_unselected_term
    n_noterm = n_selected_noterm + n_unselected_noterm
    with np.errstate(divide="ignore", invalid="ignore"):
        p_term = n_term / (n_term + n_noterm)
        p_selected_g_term = n_selected_term / n_term
        p_selected_g_noterm = n_selected_noterm / n_noterm
    if prior is None:
        prior = p_term
    chi2_fi = one_way(n_selected_term, n_selected)
    nlogp_fi = chi2_to_nlogp(chi2_fi, 1)
    sign_fi = np.sign(n_selected_term - np.mean(n_selected_term)).ravel()
    cells = _cells(n_selected_term, n_selected_noterm, n_unselected_term, n_unselected_noterm)
    chi2_ri = two_way(cells)
    nlogp_ri = chi2_to_nlogp(chi2_ri, 1)
    sign_ri = np.sign(p_selected_g_term - p_selected_g_noterm).ravel()
    nlogp_corr_fi = _correct(nlogp_fi, correction)
    nlogp_corr_ri = _correct(nlogp_ri, correction)
    with np.errstate(divide="ignore", invalid="ignore"):
        prob_forward = prior * p_selected_g_term + (1 - prior) * p_selected_g_noterm
        prob_reverse = p_selected_g_term * prior / prob_forward
    out = pd.DataFrame(
        {
            "pForward": _p_from_nlogp(nlogp_corr_fi),
            "zForward": nlogp_to_z(nlogp_corr_fi, "two") * sign_fi,
            "probForward": prob_forward,
            "pReverse": _p_from_nlogp(nlogp_corr_ri),
            "zReverse": nlogp_to_z(nlogp_corr_ri, "two") * sign_ri,
            "probReverse": prob_reverse,
        },
        index=pd.Index(features, name="Term"),
    )
    return out.astype(np.float64)


def neurosynth_decode(
    coordinates,
    annotations=None,
    ids=None,
    ids2=None,
    feature_group: str | None = None,
    features: Sequence[str] | None = None,
    frequency_threshold: float = 0.001,
    prior: float | None = 0.5,
    u: float = 0.05,
    correction: str | None = "bh",
    min_studies: int | float = 1,
) -> pd.DataFrame:
    """Neurosynth's discrete decoding of a set of studies (vectorised over all labels).

    Parameters
    ----------
    coordinates : Studyset or pandas.DataFrame
        A Studyset (then ``annotations`` is None), or NiMARE's coordinates table (column
        ``id``, one row per focus).
    annotations : pandas.DataFrame, optional
        NiMARE's annotations table (``id`` plus one column per label; pandas sparse columns
        are kept sparse). Not used with a Studyset.
    ids : list of str
        The selected analyses.
    ids2 : list of str, optional
        The comparison analyses (default: every other analysis with foci).
    feature_group, features, frequency_threshold
        Which labels, and the value at or above which a study carries a label.
    prior : float or None
        Prior of a label for ``probForward``/``probReverse`` (None: each label's base rate).
    u : float
        Accepted for NiMARE compatibility; unused (no thresholding).
    correction : {None, "bh", "by", "bonferroni"}
        Correction of both p columns across labels (default Benjamini-Hochberg).
    min_studies : int or float
        Drop labels carried by fewer studies (a float in (0, 1) is a fraction of the
        selected plus comparison studies).

    Returns
    -------
    pandas.DataFrame
        Index ``Term``; columns ``pForward, zForward, probForward, pReverse, zReverse,
        probReverse`` (float64, eager).
    """
    if ids is None:
        raise TypeError("neurosynth_decode() needs ids (the selected analyses)")
    if isinstance(coordinates, Studyset | str | Path):
        db = database_from_studyset(coordinates, feature_group, features, frequency_threshold)
    else:
        db = database_from_frames(
            coordinates, annotations, feature_group, features, frequency_threshold
        )
    return _neurosynth(db, ids, ids2, prior, correction, min_studies)


# ---------------------------------------------------------------------------------- brainmap
def _brainmap(db: LabelDatabase, ids, ids2, correction) -> pd.DataFrame:
    # Adapted from NiMARE 0.22.1 (https://github.com/neurostuff/NiMARE), MIT License, Copyright (c) 2018 NiMARE developers
    # (``brainmap_decode``), vectorised over labels
    if correction not in _CORRECTIONS:
        raise ValueError("Argument 'correction' must be one of None, 'bh', 'by', or 'bonferroni'.")
    sel, unsel = _selection(db, ids, ids2)
    ind = db.indicator
    n_selected, n_unselected = len(sel), len(unsel)
    n_exps_across_terms = int(ind.sum())
    n_selected_term = _col_sums(ind, sel)
    n_unselected_term = _col_sums(ind, unsel)
    n_selected_noterm = n_selected - n_selected_term
    n_unselected_noterm = n_unselected - n_unselected_term
    n_term = n_selected_term + n_unselected_term
    n_foci_in_database = db.n_foci_total
    # foci of the studies carrying / not carrying each term, over the whole database
    n_term_foci = np.asarray(ind.T @ db.n_foci, dtype=np.float64).ravel()
    n_noterm_foci = float(db.n_foci.sum()) - n_term_foci
    with np.errstate(divide="ignore", invalid="ignore"):
        p_term = n_term / n_exps_across_terms
        p_selected = n_selected / n_foci_in_database
        p_selected_g_term = n_selected_term / n_term_foci
        l_selected_g_term = p_selected_g_term / p_selected
        p_selected_g_noterm = n_selected_noterm / n_noterm_foci
        p_term_g_selected = p_selected_g_term * p_term / p_selected
        p_term_g_selected = p_term_g_selected / np.nansum(p_term_g_selected)
    nlogp_fi = -binom.logsf(k=n_selected_term - 1, n=n_term_foci, p=p_selected)
    cells = _cells(n_selected_term, n_selected_noterm, n_unselected_term, n_unselected_noterm)
    chi2_ri = two_way(cells)
    nlogp_ri = chi2_to_nlogp(chi2_ri, 1)
    sign_ri = np.sign(p_selected_g_term - p_selected_g_noterm).ravel()
    few = n_selected_term < 5
    nlogp_fi = np.where(few, 0.0, np.maximum(nlogp_fi, 0.0))
    nlogp_ri = np.where(few, 0.0, nlogp_ri)
    nlogp_corr_fi = _correct(nlogp_fi, correction)
    nlogp_corr_ri = _correct(nlogp_ri, correction)
    out = pd.DataFrame(
        {
            "pForward": _p_from_nlogp(nlogp_corr_fi),
            "zForward": nlogp_to_z(nlogp_corr_fi, "one"),
            "likelihoodForward": l_selected_g_term,
            "pReverse": _p_from_nlogp(nlogp_corr_ri),
            "zReverse": nlogp_to_z(nlogp_corr_ri, "two") * sign_ri,
            "probReverse": p_term_g_selected,
        },
        index=pd.Index(db.features, name="Term"),
    )
    return out.astype(np.float64)


def brainmap_decode(
    coordinates,
    annotations=None,
    ids=None,
    ids2=None,
    feature_group: str | None = None,
    features: Sequence[str] | None = None,
    frequency_threshold: float = 0.001,
    u: float = 0.05,
    correction: str | None = "bh",
) -> pd.DataFrame:
    """BrainMap's discrete decoding of a set of studies (vectorised over all labels).

    Parameters
    ----------
    coordinates : Studyset or pandas.DataFrame
        A Studyset (then ``annotations`` is None), or NiMARE's coordinates table.
    annotations : pandas.DataFrame, optional
        NiMARE's annotations table (with a Studyset: not used).
    ids : list of str
        The selected analyses.
    ids2 : list of str, optional
        The comparison analyses (default: every other analysis with foci).
    feature_group, features, frequency_threshold
        Which labels, and the value at or above which a study carries a label.
    u : float
        Accepted for NiMARE compatibility; unused.
    correction : {None, "bh", "by", "bonferroni"}
        Correction of both p columns across labels.

    Returns
    -------
    pandas.DataFrame
        Index ``Term``; columns ``pForward, zForward, likelihoodForward, pReverse, zReverse,
        probReverse`` (float64, eager). Labels carried by fewer than 5 selected studies get
        p = 1 in both tests.
    """
    if ids is None:
        raise TypeError("brainmap_decode() needs ids (the selected analyses)")
    if isinstance(coordinates, Studyset | str | Path):
        db = database_from_studyset(coordinates, feature_group, features, frequency_threshold)
    else:
        db = database_from_frames(
            coordinates, annotations, feature_group, features, frequency_threshold
        )
    return _brainmap(db, ids, ids2, correction)


# ---------------------------------------------------------------------------------- classes
class _DiscreteDecoder:
    """fit(studyset) keeps the analyses with foci and the labels that some study carries."""

    @nimare_fit
    def fit(self, studyset, drop_invalid: bool = True):
        """Keep the analyses with foci and the labels at least one of them carries.

        Parameters
        ----------
        studyset : Studyset, str or Path
            The database (or a store path).
        drop_invalid : bool
            Ignore analyses without foci or without an annotation record (NiMARE's default;
            :func:`~nimare_dask.decode.selection.analyses_with_inputs`). With False they raise.

        Returns
        -------
        self
        """
        db = database_from_studyset(
            studyset,
            self.feature_group,
            self.features,
            self.frequency_threshold,
            drop_invalid=drop_invalid,
            what=type(self).__name__,
        )
        counts = np.asarray(db.indicator.getnnz(axis=0))
        keep = counts > 0
        if not keep.any():
            raise ValueError("No features identified in the input Studyset.")
        self._db = db.subset_features(keep)
        self.features_ = self._db.features
        return self

    def _check_fitted(self):
        if not hasattr(self, "_db"):
            raise AttributeError(f"This {type(self).__name__} is not fitted yet; call fit()")


class NeurosynthDecoder(_DiscreteDecoder):
    """Neurosynth's discrete decoding (Yarkoni et al., 2011), vectorised over labels.

    Parameters
    ----------
    feature_group, features, frequency_threshold
        Which labels (see :class:`~nimare_dask.decode.CorrelationDecoder`).
    prior : float or None
        Prior probability of a label (None: its base rate).
    u : float
        Unused (NiMARE compatibility).
    correction : {None, "bh", "by", "bonferroni"}
        Multiple-comparison correction across labels.
    min_studies : int or float
        Minimum number (or fraction) of studies carrying a label.

    Notes
    -----
    :meth:`transform` returns NiMARE's columns ``pForward, zForward, probForward, pReverse,
    zReverse, probReverse`` (index ``Term``). Prefer the reverse (association) columns to
    characterise a region: the forward test ranks labels largely by how common they are.
    """

    def __init__(
        self,
        feature_group: str | None = None,
        features: Sequence[str] | None = None,
        frequency_threshold: float = 0.001,
        prior: float | None = 0.5,
        u: float = 0.05,
        correction: str | None = "bh",
        min_studies: int | float = 1,
    ):
        self.feature_group = feature_group
        self.features = features
        self.frequency_threshold = frequency_threshold
        self.prior = prior
        self.u = u
        self.correction = correction
        self.min_studies = min_studies

    def transform(self, ids, ids2=None) -> pd.DataFrame:
        """Decode a set of analyses against the others (or ``ids2``).

        Parameters
        ----------
        ids : list of str
            Selected analyses (e.g. those with a focus in an ROI).
        ids2 : list of str, optional
            Comparison analyses (default: the other analyses with foci).

        Returns
        -------
        pandas.DataFrame
            See :func:`neurosynth_decode` (eager).
        """
        self._check_fitted()
        return _neurosynth(self._db, ids, ids2, self.prior, self.correction, self.min_studies)


class BrainMapDecoder(_DiscreteDecoder):
    """BrainMap's discrete decoding (Amft et al., 2015), vectorised over labels.

    Parameters
    ----------
    feature_group, features, frequency_threshold
        Which labels.
    u : float
        Unused (NiMARE compatibility).
    correction : {None, "bh", "by", "bonferroni"}
        Multiple-comparison correction across labels.

    Notes
    -----
    :meth:`transform` returns ``pForward, zForward, likelihoodForward, pReverse, zReverse,
    probReverse`` (index ``Term``), as NiMARE.
    """

    def __init__(
        self,
        feature_group: str | None = None,
        features: Sequence[str] | None = None,
        frequency_threshold: float = 0.001,
        u: float = 0.05,
        correction: str | None = "bh",
    ):
        self.feature_group = feature_group
        self.features = features
        self.frequency_threshold = frequency_threshold
        self.u = u
        self.correction = correction

    def transform(self, ids, ids2=None) -> pd.DataFrame:
        """Decode a set of analyses against the others (or ``ids2``).

        Returns
        -------
        pandas.DataFrame
            See :func:`brainmap_decode` (eager).
        """
        self._check_fitted()
        return _brainmap(self._db, ids, ids2, self.correction)


class ROIAssociationDecoder:
    """Neurosynth's ROI association decoding, vectorised over labels.

    Each analysis's MA map is averaged inside the ROI; r is the Pearson correlation, across
    analyses, between that regressor and each label's values.

    Parameters
    ----------
    masker : str, Path, nibabel image or Grid
        The ROI (any value > 0 is inside).
    kernel_transformer : kernel class or instance
        Default :class:`~nimare_dask.kernels.MKDAKernel` (r = 10 mm).
    feature_group, features
        Which labels.
    **kwargs
        ``kernel__<param>=value`` configure the kernel; anything else raises ``TypeError``.

    Notes
    -----
    Labels with no value > 0 are dropped. :meth:`transform` returns index ``feature``,
    column ``r``.
    """

    def __init__(
        self,
        masker,
        kernel_transformer=MKDAKernel,
        feature_group: str | None = None,
        features: Sequence[str] | None = None,
        **kwargs,
    ):
        kernel_args = {}
        for key, value in kwargs.items():
            if not key.startswith("kernel__"):
                raise TypeError(f"ROIAssociationDecoder() got an unexpected keyword {key!r}")
            kernel_args[key[len("kernel__") :]] = value
        if isinstance(kernel_transformer, type):
            kernel_transformer = kernel_transformer(**kernel_args)
        elif kernel_args:
            kernel_transformer = copy.deepcopy(kernel_transformer)
            kernel_transformer.set_params(**kernel_args)
        if not isinstance(kernel_transformer, KernelTransformer):
            raise TypeError(f"kernel_transformer must be a kernel, not {kernel_transformer!r}")
        self.masker = masker if isinstance(masker, Grid) else get_grid(masker)
        self.kernel_transformer = kernel_transformer
        self.feature_group = feature_group
        self.features = features
        self.frequency_threshold = 0

    @nimare_fit
    def fit(self, studyset, drop_invalid: bool = True) -> ROIAssociationDecoder:
        """Compute each analysis's mean MA value in the ROI.

        Parameters
        ----------
        studyset : Studyset, str or Path
            The database (or a store path).
        drop_invalid : bool
            Ignore analyses without foci or without an annotation record (NiMARE's default;
            :func:`~nimare_dask.decode.selection.analyses_with_inputs`). With False they raise.

        Returns
        -------
        ROIAssociationDecoder
            ``self``, with ``roi_values_`` (per analysis) and ``features_``.
        """
        if isinstance(studyset, str | Path):
            studyset = open_studyset(studyset)
        ss = analyses_with_inputs(studyset, drop_invalid=drop_invalid, what="ROIAssociationDecoder")
        names = candidate_features(ss.labels, self.feature_group, self.features)
        ann = ss.annotation_matrix
        vals = ann.values[:, ann.label_positions(names)]
        vals = sp.csr_matrix(vals if sp.issparse(vals) else np.asarray(vals), dtype=np.float64)
        positive = vals.copy()
        positive.data = (positive.data > 0).astype(np.float64)
        keep = np.asarray(positive.sum(axis=0)).ravel() > 0
        if not keep.any():
            raise ValueError("No features identified in the input Studyset.")
        self.features_ = [n for n, k in zip(names, keep, strict=True) if k]
        self._values = sp.csc_matrix(vals[:, np.flatnonzero(keep)])
        roi_ss = ss.with_grid(self.masker)
        ma = self.kernel_transformer.transform(roi_ss, return_type="sparse")
        sums = np.asarray(ma.sum(axis=1), dtype=np.float64).ravel()
        self.roi_values_ = sums / self.masker.n_voxels
        self.ids_ = ss.ids
        return self

    def transform(self) -> pd.DataFrame:
        """Pearson r between the ROI regressor and every label, across analyses.

        Returns
        -------
        pandas.DataFrame
            Index ``feature``, column ``r`` (eager). NaN where the regressor or a label is
            constant.
        """
        if not hasattr(self, "roi_values_"):
            raise AttributeError("This ROIAssociationDecoder is not fitted yet; call fit()")
        x = self.roi_values_
        n = len(x)
        xc = x - x.mean()
        vals = self._values
        s = np.asarray(vals.sum(axis=0)).ravel()
        ss = np.asarray(vals.multiply(vals).sum(axis=0)).ravel()
        var_a = ss - s * s / n
        cov = np.asarray(vals.T @ xc).ravel()
        with np.errstate(divide="ignore", invalid="ignore"):
            r = cov / (np.sqrt(np.maximum(var_a, 0.0)) * np.sqrt(np.dot(xc, xc)))
        return pd.DataFrame({"r": r}, index=pd.Index(self.features_, name="feature"))
