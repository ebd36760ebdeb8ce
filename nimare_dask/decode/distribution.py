"""Decode an unthresholded image by correlating it with every study's own image.

:class:`CorrelationDistributionDecoder` follows NiMARE 0.22.1
(``nimare.decode.continuous.CorrelationDistributionDecoder``): for each feature, the Pearson r
of the image with the ``target_image`` map of every study carrying the feature, Fisher z
transformed (``arctanh``); the table gives their mean and (population) standard deviation per
feature.

NiMARE keeps one (studies x voxels) array per feature in memory, so a study carrying several
features is held several times. Here the studies' maps stay where they are (image files or a
store's arrays, :func:`nimare_dask.studyset.images.image_matrix`): :meth:`transform` reads each
study's map once, block by block (the decoder's ``decode-correlate`` / ``decode-pearson``
tasks of :func:`nimare_dask.decode.correlate.pearson_r`), giving one r per study; the
per-feature means and standard deviations are then sparse sums over the label indicator.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from nimare_dask.decode.correlate import pearson_r
from nimare_dask.decode.selection import (
    analyses_with_inputs,
    candidate_features,
    label_indicator,
    nimare_fit,
)
from nimare_dask.results import MetaResult
from nimare_dask.studyset import Studyset, open_studyset

__all__ = ["CorrelationDistributionDecoder", "feature_distribution"]

LGR = logging.getLogger(__name__)


def feature_distribution(indicator: sp.spmatrix, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and population standard deviation of ``z`` over each feature's studies.

    Parameters
    ----------
    indicator : scipy.sparse matrix
        (n_studies, n_features); non-zero where a study carries a feature.
    z : (n_studies,) array
        One value per study (Fisher z of its correlation with the image).

    Returns
    -------
    mean, std : numpy.ndarray
        (n_features,) float64 (eager); two-pass, as ``np.mean`` / ``np.std`` of each feature's
        values. NaN for a feature without studies.
    """
    csc = sp.csc_matrix(indicator)
    csc.sort_indices()
    n_feat = csc.shape[1]
    counts = np.diff(csc.indptr)
    owner = np.repeat(np.arange(n_feat), counts)
    vals = np.asarray(z, dtype=np.float64)[csc.indices]
    with np.errstate(divide="ignore", invalid="ignore"):
        mean = np.bincount(owner, vals, minlength=n_feat) / counts
        dev = vals - mean[owner]
        std = np.sqrt(np.bincount(owner, dev * dev, minlength=n_feat) / counts)
    return mean, std


class CorrelationDistributionDecoder:
    """Decode an image by correlating it with the study-wise maps of each feature's studies.

    Parameters
    ----------
    feature_group : str, optional
        Label prefix; features may then be named without it.
    features : list of str, optional
        Features to use (default: every label of ``feature_group``, or every label).
    frequency_threshold : float
        A study has a feature when its label value is >= this (default 0.001).
    target_image : str
        The image type of the studies to correlate with (default ``"z"``; ``"con"``...).
    n_cores : int, optional
        Threads of the local scheduler when no Dask scheduler is configured (default: all).
    chunks : (int, int), optional
        ``(analyses, voxels)`` blocks in which the study maps are read (default
        :data:`nimare_dask.studyset.images.DEFAULT_CHUNKS`).

    Attributes
    ----------
    features_ : list of str
        The features decoded (carried by at least one valid analysis).
    n_selected_ : numpy.ndarray
        Studies per feature.
    results_ : MetaResult
        After :meth:`transform`, the table ``"correlation"``.

    Notes
    -----
    As in NiMARE 0.22.1, the analyses used are those with an annotation record and an image of
    ``target_image`` (:func:`~nimare_dask.decode.selection.analyses_with_inputs`; foci are not
    needed), a feature is kept if at least one of them carries it, and ``transform`` returns,
    per feature, the mean and the standard deviation (``ddof=0``) of ``arctanh(r)`` over its
    studies. Study maps are read as :func:`~nimare_dask.studyset.images.image_matrix` reads
    them (resampled with ``clip=True, interpolation="linear"`` when their grid differs);
    unusable values (NaN, inf) count as 0 (NiMARE's masker keeps them, making that study's r
    NaN). NiMARE stores each feature's (studies x voxels) array in ``results_.maps``; here
    :meth:`study_maps` gives them lazily.

    Warnings
    --------
    Correlations of two maps have very large degrees of freedom; do not read significance
    into them.
    """

    def __init__(
        self,
        feature_group: str | None = None,
        features: Sequence[str] | None = None,
        frequency_threshold: float = 0.001,
        target_image: str = "z",
        n_cores: int | None = None,
        chunks: tuple[int, int] | None = None,
    ):
        if not isinstance(target_image, str) or not target_image:
            raise ValueError(
                f"target_image must be an image type such as 'z'; got {target_image!r}"
            )
        self.feature_group = feature_group
        self.features = features
        self.frequency_threshold = frequency_threshold
        self.target_image = target_image
        self.n_cores = n_cores
        self.chunks = chunks

    def get_params(self, deep: bool = True) -> dict:
        """The constructor parameters (scikit-learn style).

        Returns
        -------
        dict
        """
        return {
            "feature_group": self.feature_group,
            "features": self.features,
            "frequency_threshold": self.frequency_threshold,
            "target_image": self.target_image,
            "n_cores": self.n_cores,
            "chunks": self.chunks,
        }

    def __repr__(self) -> str:
        return (
            f"CorrelationDistributionDecoder(feature_group={self.feature_group!r}, "
            f"frequency_threshold={self.frequency_threshold!r}, "
            f"target_image={self.target_image!r})"
        )

    @nimare_fit
    def fit(self, studyset, drop_invalid: bool = True) -> CorrelationDistributionDecoder:
        """Select the analyses and features; no image is read.

        Parameters
        ----------
        studyset : Studyset, str or Path
            With annotations and study images of ``target_image``.
        drop_invalid : bool
            Ignore analyses without an annotation record or without an image of
            ``target_image`` (NiMARE's default); with False they raise.

        Returns
        -------
        CorrelationDistributionDecoder
            ``self``.
        """
        if isinstance(studyset, str | Path):
            studyset = open_studyset(studyset)
        if not isinstance(studyset, Studyset):
            raise TypeError(
                "CorrelationDistributionDecoder.fit expects a Studyset or a store path; got "
                f"{type(studyset).__name__}"
            )
        ss = analyses_with_inputs(
            studyset,
            foci=False,
            image_type=self.target_image,
            drop_invalid=drop_invalid,
            what="CorrelationDistributionDecoder",
        )
        names = candidate_features(ss.labels, self.feature_group, self.features)
        indicator = label_indicator(ss, names, self.frequency_threshold)
        counts = np.asarray(indicator.getnnz(axis=0))
        keep = np.flatnonzero(counts > 0)
        if not keep.size:
            raise ValueError(
                "no decodable features: none of the requested labels is carried (>= "
                f"{self.frequency_threshold}) by an analysis with a {self.target_image!r} image"
            )
        if keep.size < len(names):
            LGR.info("Retaining %d/%d features.", keep.size, len(names))
        indicator = sp.csr_matrix(indicator[:, keep])
        # only the analyses that carry a feature are read by transform
        used = np.flatnonzero(indicator.getnnz(axis=1) > 0)
        self._studyset = ss if used.size == len(ss) else ss.slice(ss.ids[used])
        self._indicator = sp.csr_matrix(indicator[used])
        self.features_ = [names[i] for i in keep]
        self.n_selected_ = counts[keep].astype(np.int64)
        self._table = None
        return self

    def _check_fitted(self) -> None:
        if not hasattr(self, "_indicator"):
            raise AttributeError(
                f"This {type(self).__name__} instance is not fitted yet. Call 'fit' before "
                "using 'transform'."
            )

    def _image_matrix(self):
        from nimare_dask.studyset.images import image_matrix

        arr = image_matrix(self._studyset, self.target_image, chunks=self.chunks)
        return arr.map_blocks(np.nan_to_num, nan=0.0, posinf=0.0, neginf=0.0, dtype=arr.dtype)

    def study_maps(self, feature: str):
        """The ``target_image`` maps of a feature's studies (NiMARE's ``results_.maps[f]``).

        Parameters
        ----------
        feature : str

        Returns
        -------
        dask.array.Array
            (n_selected, n_voxels) float32 (lazy).
        """
        self._check_fitted()
        if feature not in self.features_:
            raise KeyError(f"no feature {feature!r} (features: {self.features_[:5]}...)")
        col = self._indicator[:, self.features_.index(feature)]
        rows = np.sort(sp.csc_matrix(col).indices)
        return self._image_matrix()[rows]

    def transform(self, img) -> pd.DataFrame:
        """Mean and standard deviation of the Fisher z correlations with each feature's studies.

        Parameters
        ----------
        img : nibabel image, path, or 1-D array over the grid's voxels
            The map to decode, in the same space as the studies' maps.

        Returns
        -------
        pandas.DataFrame
            Index ``feature``; columns ``mean`` and ``std`` (eager); also the table
            ``"correlation"`` of :attr:`results_`.
        """
        self._check_fitted()
        r = pearson_r(self._image_matrix(), img, self._studyset.grid, n_cores=self.n_cores)
        with np.errstate(divide="ignore", invalid="ignore"):
            z = np.arctanh(r)
        mean, std = feature_distribution(self._indicator, z)
        out = pd.DataFrame(
            {"mean": mean, "std": std}, index=pd.Index(self.features_, name="feature")
        )
        self._table = out
        return out

    @property
    def results_(self) -> MetaResult:
        """A MetaResult holding the last :meth:`transform` table as ``"correlation"``."""
        self._check_fitted()
        tables = {} if self._table is None else {"correlation": self._table}
        return MetaResult(estimator=self, grid=self._studyset.grid, tables=tables)
