"""Per-analysis weights of coordinate-based meta-analyses (NiMARE's ``StudyWeights``).

The weighting scheme of Wager et al. (2009): each contrast is weighted by ``delta_c *
sqrt(N_c)``, ``delta_c`` a discount of contrasts analysed with a fixed-effects model. The
weights :class:`StudyWeights` returns are relative; the estimator rescales them over the
analyses it fits (:func:`normalize_weights`), so they sum to the number of analyses.

Parameters, defaults, errors and warnings follow NiMARE 0.22.1's
``nimare/meta/cbma/weights.py`` (MIT licence, Copyright (c) 2018 NiMARE developers; adapted
from that file): the per-analysis quantities are read from a :class:`~nimare_dask.Studyset`'s
metadata table instead of a NiMARE collection.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import pandas as pd

from nimare_dask.studyset.images import sample_size_lists

__all__ = [
    "DEFAULT_FIXED_EFFECTS_LABELS",
    "StudyWeights",
    "normalize_weights",
    "resolve_weighting",
]

LGR = logging.getLogger(__name__)

#: Values of the ``inference_field`` metadata that mark a fixed-effects study-level model.
DEFAULT_FIXED_EFFECTS_LABELS = ("fixed", "ffx", "fixed-effects", "fixed effects", "fe")

_TRANSFORMS = {
    "sqrt": np.sqrt,
    "linear": lambda n: n,
    "none": np.ones_like,
}
_REDUCERS = {"mean": np.mean, "sum": np.sum, "min": np.min, "max": np.max}


class StudyWeights:
    r"""Relative weights of the analyses (contrasts) entering a meta-analysis.

    :math:`w_c \propto \delta_c \sqrt{N_c}` (Wager et al., 2009), rescaled by the estimator
    over the analyses it fits (``MKDADensity(weighting=StudyWeights(...))``).

    Parameters
    ----------
    source : {"sample_size", "uniform"}, dict or array-like
        ``"sample_size"`` reads each analysis's ``sample_sizes`` (or ``sample_size``)
        metadata; ``"uniform"`` gives every analysis weight 1; a dict maps analysis id to
        weight; an array gives one weight per analysis in the order of the estimator's
        studyset (``studyset.ids``). Explicit values bypass ``transform`` and ``reduce``.
    transform : {"sqrt", "linear", "none"}
        Function of the sample size: ``"sqrt"`` (the published method), ``"linear"`` (N) or
        ``"none"`` (a constant).
    reduce : {"mean", "sum", "min", "max"}
        How an analysis's list of sample sizes (one per group) becomes one number.
    inference_field : str, optional
        Metadata field naming each analysis's study-level inference model; analyses whose
        value is one of ``fixed_effects_labels`` are multiplied by ``fixed_effects_discount``.
        None: no analysis is discounted.
    fixed_effects_discount : float
        The discount :math:`\delta` of fixed-effects analyses (positive, finite; 0.75 as
        Wager et al. 2009).
    fixed_effects_labels : tuple of str
        Values of ``inference_field`` marking a fixed-effects model (compared
        case-insensitively after stripping whitespace).
    on_missing : {"raise", "impute"}
        Analyses whose weight is missing, zero or negative: ``"raise"`` names them in a
        ``ValueError``; ``"impute"`` gives them the mean of the valid weights (logged as a
        warning, as CANlab's MATLAB code).

    Attributes
    ----------
    n_fixed_effects_ : int
        Analyses the last :meth:`raw_weights` discounted.
    n_imputed_ : int
        Analyses the last :meth:`raw_weights` imputed a weight for.
    """

    def __init__(
        self,
        source: str | Mapping | Iterable[float] = "sample_size",
        transform: str = "sqrt",
        reduce: str = "mean",
        inference_field: str | None = None,
        fixed_effects_discount: float = 0.75,
        fixed_effects_labels: Iterable[str] = DEFAULT_FIXED_EFFECTS_LABELS,
        on_missing: str = "raise",
    ) -> None:
        if isinstance(source, str) and source not in ("sample_size", "uniform"):
            raise ValueError(
                f"Invalid source '{source}'. Use 'sample_size', 'uniform', a mapping of "
                "study ID to weight, or an array of weights."
            )
        if transform not in _TRANSFORMS:
            raise ValueError(
                f"Invalid transform '{transform}'. Must be one of {sorted(_TRANSFORMS)}."
            )
        if reduce not in _REDUCERS:
            raise ValueError(
                f"Invalid reduce '{reduce}'. Must be one of 'mean', 'sum', 'min', 'max'."
            )
        if on_missing not in ("impute", "raise"):
            raise ValueError(f"Invalid on_missing '{on_missing}'. Must be 'impute' or 'raise'.")
        if not np.isfinite(fixed_effects_discount) or fixed_effects_discount <= 0:
            raise ValueError("fixed_effects_discount must be a positive, finite number.")
        self.source = source
        self.transform = transform
        self.reduce = reduce
        self.inference_field = inference_field
        self.fixed_effects_discount = fixed_effects_discount
        self.fixed_effects_labels = tuple(fixed_effects_labels)
        self.on_missing = on_missing
        self.n_fixed_effects_ = 0
        self.n_imputed_ = 0

    def __repr__(self) -> str:
        return f"StudyWeights({', '.join(f'{k}={v!r}' for k, v in self.get_params().items())})"

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """The constructor's parameters (NiMARE's ``get_params``).

        Parameters
        ----------
        deep : bool
            Unused (no nested parameters); kept for NiMARE's signature.

        Returns
        -------
        dict
        """
        return {
            "source": self.source,
            "transform": self.transform,
            "reduce": self.reduce,
            "inference_field": self.inference_field,
            "fixed_effects_discount": self.fixed_effects_discount,
            "fixed_effects_labels": self.fixed_effects_labels,
            "on_missing": self.on_missing,
        }

    def set_params(self, **params) -> StudyWeights:
        """Set constructor parameters (validated as by the constructor); returns ``self``.

        Parameters
        ----------
        **params
            Any of the constructor's parameters.

        Returns
        -------
        StudyWeights
        """
        unknown = sorted(set(params) - set(self.get_params()))
        if unknown:
            raise ValueError(f"Invalid parameters {unknown} for StudyWeights")
        self.__init__(**{**self.get_params(), **params})
        return self

    def raw_weights(self, dataset, ids: Iterable[str] | None = None) -> pd.Series:
        """One unnormalised, strictly positive weight per analysis (eager).

        Parameters
        ----------
        dataset : Studyset
            The studyset the estimator fits (NiMARE's name of the argument).
        ids : iterable of str, optional
            Analysis ids to weight (default: ``dataset.ids``).

        Returns
        -------
        pandas.Series
            float64 weights indexed by analysis id, in the order of ``ids``.
        """
        ids = [str(i) for i in (dataset.ids if ids is None else ids)]
        if not ids:
            raise ValueError("Cannot compute weights for an empty set of study IDs.")
        weights = self._base_weights(dataset, ids)
        weights = weights * self._discounts(dataset, ids)
        return self._resolve_missing(weights)

    def _base_weights(self, dataset, ids: list[str]) -> pd.Series:
        if isinstance(self.source, str) and self.source == "uniform":
            return pd.Series(1.0, index=ids, dtype=float)
        if not isinstance(self.source, str):
            return self._explicit_weights(ids)
        sizes = self._sample_sizes(dataset, ids)
        # a non-positive size is handled with the missing ones (NiMARE's rule)
        sizes = sizes.where(sizes > 0)
        transformed = _TRANSFORMS[self.transform](sizes.to_numpy(dtype=float))
        return pd.Series(transformed, index=ids, dtype=float)

    def _explicit_weights(self, ids: list[str]) -> pd.Series:
        if isinstance(self.source, Mapping):
            return pd.Series(dict(self.source), dtype=float).reindex(ids)
        values = np.asarray(self.source, dtype=float).ravel()
        if values.size != len(ids):
            raise ValueError(
                f"Received {values.size} weights for {len(ids)} studies. Pass a mapping of "
                "study ID to weight if the collection's ordering is not known."
            )
        return pd.Series(values, index=ids, dtype=float)

    def _sample_sizes(self, dataset, ids: list[str]) -> pd.Series:
        """Per analysis, its list of sample sizes reduced to one number (NaN when none)."""
        columns = set(dataset._metadata.columns)
        if not columns & {"sample_sizes", "sample_size"}:
            raise ValueError(
                "Sample-size weighting was requested, but the collection has no "
                "'sample_sizes' or 'sample_size' metadata. Populate it, or pass explicit "
                "weights via StudyWeights(source=...)."
            )
        reducer = _REDUCERS[self.reduce]
        lists = dict(zip(dataset.ids, sample_size_lists(dataset), strict=True))
        values = [
            np.nan if not lists.get(i) else float(reducer(np.asarray(lists[i], dtype=float)))
            for i in ids
        ]
        return pd.Series(values, index=ids, dtype=float)

    def _discounts(self, dataset, ids: list[str]) -> pd.Series:
        """Per analysis the fixed-effects discount, or 1."""
        self.n_fixed_effects_ = 0
        if self.inference_field is None:
            return pd.Series(1.0, index=ids, dtype=float)
        meta = dataset.metadata
        available = [c for c in dataset.get_metadata()]
        if self.inference_field not in available:
            raise ValueError(
                f"inference_field '{self.inference_field}' is not a metadata field of this "
                f"collection. Available fields: {', '.join(sorted(available))}."
            )
        raw = meta.set_index("id")[self.inference_field].reindex(ids).to_numpy(dtype=object)
        labels = {label.strip().lower() for label in self.fixed_effects_labels}
        labelled = np.array([not _is_missing(v) for v in raw], dtype=bool)
        fixed = np.array(
            [ok and str(v).strip().lower() in labels for v, ok in zip(raw, labelled, strict=True)],
            dtype=bool,
        )
        discounts = np.where(fixed, float(self.fixed_effects_discount), 1.0)
        n_discounted = int(np.sum(discounts != 1.0))
        self.n_fixed_effects_ = n_discounted
        n_labelled = int(labelled.sum())
        if n_labelled < len(ids):
            LGR.warning(
                f"Field '{self.inference_field}' is set for {n_labelled} of {len(ids)} "
                "contrasts. The unlabelled contrasts are treated as random-effects and are "
                "not discounted, which weights them above any contrast that is."
            )
        LGR.info(
            f"Discounting {n_discounted} fixed-effects contrasts by {self.fixed_effects_discount}."
        )
        return pd.Series(discounts, index=ids)

    def _resolve_missing(self, weights: pd.Series) -> pd.Series:
        """Impute or refuse weights that are missing, zero or negative."""
        values = weights.to_numpy(dtype=float)
        invalid = ~np.isfinite(values) | ~(values > 0)
        self.n_imputed_ = 0
        if not invalid.any():
            return weights
        missing_ids = list(weights.index[invalid])
        if invalid.all():
            raise ValueError(
                "No contrast has a usable weight. Check the collection's sample-size metadata."
            )
        n_missing = len(missing_ids)
        subject = "contrast has" if n_missing == 1 else "contrasts have"
        if self.on_missing == "raise":
            shown = ", ".join(str(i) for i in missing_ids[:25])
            suffix = f", ... (+{n_missing - 25} more)" if n_missing > 25 else ""
            raise ValueError(
                f"{n_missing} {subject} a missing or non-positive weight: {shown}{suffix}. "
                "Populate their sample sizes, or pass StudyWeights(on_missing='impute') to "
                "give them the mean weight."
            )
        self.n_imputed_ = n_missing
        imputed = float(np.mean(values[~invalid]))
        weights = weights.copy()
        weights[invalid] = imputed
        shown = ", ".join(str(i) for i in missing_ids[:5])
        suffix = f", ... (+{n_missing - 5} more)" if n_missing > 5 else ""
        LGR.warning(
            f"{n_missing} {subject} a missing or non-positive weight ({shown}{suffix}); "
            f"imputing the mean weight of the remaining {int((~invalid).sum())} "
            f"({imputed:.4g})."
        )
        return weights


def _is_missing(value) -> bool:
    if value is None:
        return True
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):  # lists and other containers are values
        return False


def resolve_weighting(weighting) -> StudyWeights | None:
    """A :class:`StudyWeights` (or None) from an estimator's ``weighting`` argument.

    Parameters
    ----------
    weighting : None, {"sample_size", "uniform"} or StudyWeights

    Returns
    -------
    StudyWeights or None
    """
    if weighting is None or isinstance(weighting, StudyWeights):
        return weighting
    if isinstance(weighting, str):
        if weighting in ("sample_size", "uniform"):
            return StudyWeights(source=weighting)
        raise ValueError(
            f"Invalid weighting '{weighting}'. Use None, 'sample_size', or a StudyWeights instance."
        )
    raise TypeError(
        f"weighting must be None, a string, or a StudyWeights instance, not {type(weighting)}."
    )


def normalize_weights(raw_weights, n_studies: int) -> np.ndarray:
    """Rescale relative weights to sum to ``n_studies`` (all exactly 1 when they are equal).

    Parameters
    ----------
    raw_weights : array-like
        Positive weights.
    n_studies : int
        The number of analyses fitted.

    Returns
    -------
    numpy.ndarray
        float64 weights.
    """
    weights = np.asarray(raw_weights, dtype=np.float64).ravel()
    total = weights.sum()
    if not np.isfinite(total) or total <= 0:
        raise ValueError("Study weights must sum to a positive, finite number.")
    if np.all(weights == weights[0]):
        # equal weights: exactly the unweighted analysis
        return np.ones_like(weights)
    return n_studies * weights / total


# ---------------------------------------------------------------- estimator helpers
def study_weights_of(weighting) -> StudyWeights | None:
    """The :class:`StudyWeights` of a ``weighting`` argument (None for dict/array weights)."""
    if isinstance(weighting, str | StudyWeights):
        return resolve_weighting(weighting)
    return None


def weighting_raw(weighting, studyset, study_weights) -> np.ndarray | None:
    """Unnormalised per-analysis weights aligned with ``studyset.ids`` (None: unweighted)."""
    if weighting is None:
        return None
    if study_weights is not None:
        return study_weights.raw_weights(studyset, studyset.ids).to_numpy(dtype=np.float64)
    if isinstance(weighting, Mapping):
        missing = [i for i in studyset.ids if i not in weighting]
        if missing:
            raise ValueError(f"MKDADensity: no weight for analyses {missing[:25]}")
        raw = np.array([float(weighting[i]) for i in studyset.ids])
    else:
        raw = np.asarray(weighting, dtype=np.float64).ravel()
        if raw.size != len(studyset):
            raise ValueError(
                f"MKDADensity: got {raw.size} weights for {len(studyset)} analyses (after "
                "dropping analyses without foci); pass a dict {analysis id: weight} instead"
            )
    if not (np.isfinite(raw) & (raw > 0)).all():
        raise ValueError("MKDADensity: weights must be positive finite numbers")
    return raw


def weighting_text(weighting, study_weights, weights: np.ndarray, n: int) -> str:
    """The weighting sentence of the methods text (NiMARE's, empty when unweighted)."""
    if weighting is None or np.all(weights == 1):
        return ""
    ess = weights.sum() ** 2 / np.sum(weights**2)  # Kish's effective sample size
    if study_weights is None or not (
        isinstance(study_weights.source, str) and study_weights.source == "sample_size"
    ):
        how = "a user-supplied weight"
    else:
        how = {
            "sqrt": "the square root of its sample size",
            "linear": "its sample size",
            "none": "a constant",
        }[study_weights.transform] + " (Wager et al., 2009)"
    text = f"Each study contrast map was weighted by {how}"
    if study_weights is not None and study_weights.inference_field is not None:
        k = study_weights.n_fixed_effects_
        text += (
            f", with {k} fixed-effects {'contrast' if k == 1 else 'contrasts'} discounted by a "
            f"factor of {study_weights.fixed_effects_discount}"
        )
    text += (
        f". Weights were normalized across the {n} contrasts, giving an effective sample size "
        f"of {ess:.1f} contrasts"
    )
    k = 0 if study_weights is None else study_weights.n_imputed_
    if k:
        text += (
            f"; {k} {'contrast was' if k == 1 else 'contrasts were'} given the mean weight of "
            "the rest, having no usable weight of their own"
        )
    return text + ". "
