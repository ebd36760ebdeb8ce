"""Decode unthresholded brain maps by correlating them with per-feature meta-analytic maps.

:class:`CorrelationDecoder` follows NiMARE 0.22.1 (``nimare.decode.continuous``): one
meta-analytic map per feature (term, topic) of a database, then Pearson r between an image and
every map. The difference is how the maps are made: for MKDAChi2 (the default) and
MKDADensity they are computed for all features at once as blocked sparse linear algebra over
the whole database (:mod:`nimare_dask.decode.featuremaps`), persisted in the studyset's store
and reused; :meth:`CorrelationDecoder.transform` then reads them once, chunk by chunk.
"""

from __future__ import annotations

import copy
import hashlib
import logging
import shutil
import tempfile
import weakref
from collections.abc import Sequence
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import scipy.sparse as sp
import xarray as xr

from nimare_dask import storage
from nimare_dask.decode.distribution import CorrelationDistributionDecoder
from nimare_dask.decode.featuremaps import (
    ALGORITHM_VERSION,
    DENSITY_TARGETS,
    PAIRWISE_TARGETS,
    FeatureMaps,
    blocked_feature_maps,
    resolve_chunks,
)
from nimare_dask.decode.featurestore import (
    open_feature_maps,
    provenance_key,
    stored_maps,
    write_feature_maps,
)
from nimare_dask.decode.selection import (
    analyses_with_inputs,
    candidate_features,
    label_indicator,
    nimare_fit,
)
from nimare_dask.kernels import MKDAKernel
from nimare_dask.meta.base import CBMAEstimator, PairwiseCBMAEstimator, compute
from nimare_dask.meta.cbma import MKDAChi2, MKDADensity
from nimare_dask.results import MetaResult
from nimare_dask.results.metaresult import object_info
from nimare_dask.space import Grid, get_grid
from nimare_dask.studyset import Studyset, open_studyset

__all__ = ["CorrelationDecoder", "CorrelationDistributionDecoder"]

LGR = logging.getLogger(__name__)


def _blocked_kind(estimator, target: str) -> str | None:
    """ "pairwise" / "density" when the blocked path computes this map, else None."""
    if isinstance(estimator, MKDAChi2) and target in PAIRWISE_TARGETS:
        return "pairwise"
    if (
        isinstance(estimator, MKDADensity)
        and type(estimator.kernel) is MKDAKernel
        and getattr(estimator, "weighting", None) in (None, "uniform")
        and target in DENSITY_TARGETS
    ):
        return "density"
    return None


class CorrelationDecoder:
    """Decode an unthresholded image by correlating it with per-feature meta-analytic maps.

    Parameters
    ----------
    feature_group : str, optional
        Label prefix (e.g. ``"LDA50_abstract_weight"``); features may then be named without it.
    features : list of str, optional
        Features to use (default: every label of ``feature_group``, or every label).
    frequency_threshold : float
        A study has a feature when its label value is >= this (default 0.001).
    meta_estimator : estimator, optional
        Default :class:`~nimare_dask.meta.cbma.MKDAChi2` (selected studies vs the rest). A
        one-sample estimator (``ALE``, ``MKDADensity``) is fit on the selected studies only.
    target_image : str
        The estimator's map to correlate with (default ``"z_desc-association"``; ``"z"`` for
        one-sample estimators).
    n_cores : int, optional
        Threads of the local scheduler when no Dask scheduler is configured (default: all).
        An active ``distributed.Client`` is always used when there is one.
    chunks : dict, optional
        ``{"analysis": int, "voxel": int, "feature": int}``: analyses per MA task, voxels per
        count/map block and features per stored chunk. Memory per worker thread is about
        ``12 * n_features * voxel`` bytes; the default ``voxel`` keeps one block near 64 MB.
        See :mod:`nimare_dask.decode.featuremaps` for sizing.
    maps_store : str or Path, optional
        Where the feature maps go when the studyset has no store of its own: a folder or an
        fsspec URL (``s3://...``; reachable by the Dask workers, or they are written through
        the client). Default: maps up to ``in_memory_limit`` bytes stay in memory, larger ones
        go to a temporary folder removed with the maps. A studyset opened from a store always
        keeps its maps in that store.
    storage_options : dict, optional
        fsspec options for a ``maps_store`` URL.
    in_memory_limit : int
        Bytes of maps (``4 * n_features * n_voxels``) kept in memory without a store (default
        256 MiB: about 290 features on the 2 mm grid). Memory stays bounded by chunk sizes
        whatever the vocabulary.

    Attributes
    ----------
    features_ : list of str
        The features with a map.
    maps_ : FeatureMaps
        The feature maps (dask-backed when stored).
    results_ : MetaResult
        The maps (one per feature) and, after :meth:`transform`, the table ``"correlation"``.

    Notes
    -----
    As in NiMARE 0.22.1: analyses without foci or without an annotation record (all labels
    missing, NaN; a 0 is a value) are ignored
    (:func:`~nimare_dask.decode.selection.analyses_with_inputs`); a feature is kept if at least one
    analysis has it; with a pairwise estimator a feature carried by every analysis is dropped
    (there is nothing to compare with); the selected studies of a feature are those whose
    value is ``>= frequency_threshold``.

    MKDAChi2 (any of its maps) and MKDADensity (uniform weights, MKDA kernel) are computed for
    all features together by blocked sparse linear algebra (task names ``decode-ma``,
    ``decode-counts``, ``decode-zmaps``), with the same formulas as the estimators. Any other
    estimator (e.g. ALE) is fit once per feature, in sequence (NiMARE's method; each fit is
    itself parallel).

    With a studyset opened from a store (:func:`~nimare_dask.studyset.open_studyset`, or a
    store path given to :meth:`fit`), the maps are written to ``derived/decoder/<key>`` with
    their provenance and a later fit with the same inputs reuses them. Without a store they
    are kept in memory (``4 * n_features * n_voxels`` bytes).

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
        meta_estimator=None,
        target_image: str = "z_desc-association",
        n_cores: int | None = None,
        chunks: dict | None = None,
        maps_store: str | Path | None = None,
        storage_options: dict | None = None,
        in_memory_limit: int = 256 * 2**20,
    ):
        if meta_estimator is None:
            meta_estimator = MKDAChi2()
        if not isinstance(meta_estimator, CBMAEstimator):
            raise TypeError(
                "meta_estimator must be a nimare_dask CBMA estimator (MKDAChi2, ALE, "
                f"MKDADensity, ...); got {type(meta_estimator).__name__}"
            )
        self.feature_group = feature_group
        self.features = features
        self.frequency_threshold = frequency_threshold
        self.meta_estimator = meta_estimator
        self.target_image = target_image
        self.n_cores = n_cores
        self.chunks = chunks
        self.maps_store = maps_store
        self.storage_options = storage_options
        self.in_memory_limit = in_memory_limit

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
            "meta_estimator": self.meta_estimator,
            "target_image": self.target_image,
            "n_cores": self.n_cores,
            "chunks": self.chunks,
            "maps_store": self.maps_store,
            "storage_options": self.storage_options,
            "in_memory_limit": self.in_memory_limit,
        }

    def __repr__(self) -> str:
        return (
            f"CorrelationDecoder(feature_group={self.feature_group!r}, "
            f"frequency_threshold={self.frequency_threshold!r}, "
            f"meta_estimator={type(self.meta_estimator).__name__}, "
            f"target_image={self.target_image!r})"
        )

    @property
    def _is_pairwise(self) -> bool:
        return isinstance(self.meta_estimator, PairwiseCBMAEstimator)

    # ------------------------------------------------------------------ fit
    @nimare_fit
    def fit(self, studyset, drop_invalid: bool = True) -> CorrelationDecoder:
        """Compute (or reuse from the store) one meta-analytic map per feature.

        Parameters
        ----------
        studyset : Studyset, str or Path
            The database: an in-memory studyset, one opened from a store, or a store path.
        drop_invalid : bool
            Ignore analyses without foci or without an annotation record (NiMARE's default;
            :func:`~nimare_dask.decode.selection.analyses_with_inputs`). With False they raise.

        Returns
        -------
        CorrelationDecoder
            ``self``, with :attr:`features_` and :attr:`maps_` (lazy when stored).
        """
        if isinstance(studyset, str | Path):
            studyset = open_studyset(studyset)
        if not isinstance(studyset, Studyset):
            raise TypeError(
                f"CorrelationDecoder.fit expects a Studyset or a store path; got "
                f"{type(studyset).__name__}"
            )
        store = studyset.store
        est = copy.deepcopy(self.meta_estimator)
        mask = getattr(est, "mask", None)
        if mask is not None and not get_grid(mask).same_as(studyset.grid):
            studyset = studyset.with_grid(get_grid(mask))
            store = None  # maps on another grid do not belong in this store's namespace
        ss = analyses_with_inputs(studyset, drop_invalid=drop_invalid, what="CorrelationDecoder")
        names = candidate_features(ss.labels, self.feature_group, self.features)
        indicator = label_indicator(ss, names, self.frequency_threshold)
        counts = np.asarray(indicator.getnnz(axis=0))
        keep = counts > 0
        if self._is_pairwise:
            skipped = np.flatnonzero(counts >= len(ss))
            if skipped.size:
                LGR.info(
                    "Skipping %d features carried by every analysis (nothing to compare): %s",
                    skipped.size,
                    ", ".join(names[i] for i in skipped[:20]),
                )
            keep &= counts < len(ss)
        if not keep.any():
            raise ValueError(
                "no decodable features: none of the requested labels is carried (>= "
                f"{self.frequency_threshold}) by any analysis"
                + (" while leaving others to compare with" if self._is_pairwise else "")
            )
        features = [n for n, k in zip(names, keep, strict=True) if k]
        indicator = sp.csr_matrix(indicator[:, np.flatnonzero(keep)])
        self.features_ = features
        self.n_selected_ = np.asarray(indicator.getnnz(axis=0), dtype=np.int64)
        kind = _blocked_kind(est, self.target_image)
        info = self._provenance(est, ss, studyset, indicator, features, kind)
        key = provenance_key(info)
        self._key = key
        maps = stored_maps(store, key) if store is not None else None
        if maps is not None:
            LGR.info("CorrelationDecoder: reusing stored feature maps %s", maps.location)
        else:
            maps = self._compute_maps(est, ss, indicator, features, kind, info, key, store)
        self.maps_ = maps
        self._results = None
        self._table = None
        return self

    def _provenance(self, est, ss, full, indicator, features, kind) -> dict:
        kernel = getattr(est, "kernel", None)
        lab = hashlib.sha256()
        lab.update(np.asarray(indicator.indptr, np.int64).tobytes())
        lab.update(np.asarray(indicator.indices, np.int64).tobytes())
        lab.update("\x00".join(features).encode())
        est_info = object_info(est)
        for irrelevant in ("n_cores", "chunks"):  # do not change the maps
            est_info["params"].pop(irrelevant, None)
        return {
            "decoder": "CorrelationDecoder",
            "estimator": est_info,
            "kernel": object_info(kernel),
            "target_image": self.target_image,
            "frequency_threshold": float(self.frequency_threshold),
            "feature_group": self.feature_group,
            "labels_fingerprint": lab.hexdigest()[:16],
            "studyset_fingerprint": full.fingerprint,
            "analyses_fingerprint": ss.fingerprint,
            "n_analyses": len(ss),
            "grid": ss.grid.to_attrs(),
            "method": "blocked-counts" if kind else "per-feature-fit",
            "algorithm_version": ALGORITHM_VERSION,
        }

    def _compute_maps(self, est, ss, indicator, features, kind, info, key, store):
        n_vox = ss.grid.n_voxels
        chunks = resolve_chunks(self.chunks, len(features), n_vox)
        n_selected = np.asarray(indicator.getnnz(axis=0), dtype=np.int64)
        if kind is not None:
            arr = blocked_feature_maps(
                ss,
                est.kernel,
                indicator,
                self.target_image,
                kind,
                chunks,
                prior=getattr(est, "prior", None),
            )
            store, scratch = self._maps_destination(store, len(features), n_vox)
            if store is not None:
                maps = write_feature_maps(
                    store, key, arr, features, info, n_selected, chunks, n_cores=self.n_cores
                )
                if scratch is not None:  # the temporary folder lives as long as the maps
                    weakref.finalize(maps, shutil.rmtree, scratch, ignore_errors=True)
                return maps
            (values,) = compute(arr, n_cores=self.n_cores)
            return _in_memory(values, features, ss.grid, info)
        LGR.info(
            "CorrelationDecoder: %s is fit once per feature (%d features)",
            type(est).__name__,
            len(features),
        )
        fit_rows = _FeatureLoop(est, ss, indicator, self.target_image, self._is_pairwise)
        store, scratch = self._maps_destination(store, len(features), n_vox)
        if store is not None:
            maps = write_feature_maps(
                store, key, fit_rows, features, info, n_selected, chunks, n_cores=self.n_cores
            )
            if scratch is not None:
                weakref.finalize(maps, shutil.rmtree, scratch, ignore_errors=True)
            return maps
        return _in_memory(fit_rows(0, len(features)), features, ss.grid, info)

    def _maps_destination(self, store, n_features: int, n_voxels: int):
        """``(store, scratch folder or None)`` for the maps: the studyset's store, the
        ``maps_store``, a temporary folder when they exceed ``in_memory_limit``, else None
        (in memory)."""
        if store is not None:
            return store, None
        if self.maps_store is not None:
            return storage.DerivedArrays(self.maps_store, self.storage_options), None
        if self.storage_options:
            raise ValueError("storage_options were given without a maps_store URL to use them")
        if 4 * n_features * n_voxels <= self.in_memory_limit:
            return None, None
        scratch = tempfile.mkdtemp(prefix="nimare_dask-decoder-maps-")
        LGR.info(
            "CorrelationDecoder: %d feature maps (%.1f GB) exceed in_memory_limit; writing them "
            "to the temporary folder %s (pass maps_store= to keep them)",
            n_features,
            4 * n_features * n_voxels / 1e9,
            scratch,
        )
        return storage.DerivedArrays(scratch), scratch

    # ------------------------------------------------------------------ precomputed maps
    def load_imgs(self, features_imgs, mask=None) -> CorrelationDecoder:
        """Use pre-generated feature maps (NIfTI) instead of fitting.

        Parameters
        ----------
        features_imgs : dict or str or Path
            ``{feature: image or path}``, or a folder of ``*.nii*`` files (the file name
            without extension is the feature name).
        mask : str, Path, Grid or image
            The grid to mask the maps with (required, as in NiMARE).

        Returns
        -------
        CorrelationDecoder
            ``self`` (maps in memory).
        """
        if mask is None:
            raise ValueError("A mask must be provided.")
        grid = get_grid(mask)
        if isinstance(features_imgs, dict):
            items = list(features_imgs.items())
        elif isinstance(features_imgs, str | Path):
            paths = sorted(Path(features_imgs).glob("*.nii*"))
            if not paths:
                raise ValueError(f"no NIfTI images (*.nii, *.nii.gz) in {features_imgs}")
            items = [(p.name.split(".")[0], p) for p in paths]
        else:
            raise ValueError(
                f'"features_imgs" must be a dictionary or a string, not a {type(features_imgs)}.'
            )
        values = np.empty((len(items), grid.n_voxels), dtype=np.float32)
        for i, (_, img) in enumerate(items):
            img = nib.load(str(img)) if isinstance(img, str | Path) else img
            values[i] = np.asarray(grid.to_map(img), dtype=np.float32)
        features = [str(k) for k, _ in items]
        info = {"decoder": "CorrelationDecoder", "source": "load_imgs", "grid": grid.to_attrs()}
        self.features_ = features
        self.maps_ = _in_memory(values, features, grid, info)
        self._results = None
        self._table = None
        return self

    @classmethod
    def from_store(
        cls,
        store_or_path,
        key: str | None = None,
        storage_options: dict | None = None,
        **kwargs,
    ) -> CorrelationDecoder:
        """A decoder on feature maps a previous fit stored (e.g. a lab's shared store).

        Parameters
        ----------
        store_or_path : str, Path, Studyset or StudysetStore
            The store (local folder or fsspec URL) holding ``derived/decoder/<key>``.
        key : str, optional
            Which maps (see :func:`~nimare_dask.decode.list_feature_maps`); optional when the
            store holds one set.
        storage_options : dict, optional
            fsspec options for a URL.
        **kwargs
            Constructor arguments (e.g. ``n_cores``).

        Returns
        -------
        CorrelationDecoder
            Ready for :meth:`transform`; maps stay on disk (lazy).
        """
        maps = open_feature_maps(store_or_path, key, storage_options=storage_options)
        dec = cls(**kwargs)
        info = maps.info
        dec.target_image = info.get("target_image", dec.target_image)
        dec.frequency_threshold = info.get("frequency_threshold", dec.frequency_threshold)
        dec.feature_group = info.get("feature_group", dec.feature_group)
        dec.features_ = maps.features
        dec.maps_ = maps
        dec._results = None
        dec._table = None
        return dec

    # ------------------------------------------------------------------ transform
    def _check_fitted(self) -> None:
        if not hasattr(self, "maps_"):
            raise AttributeError(
                f"This {type(self).__name__} instance is not fitted yet. Call 'fit', "
                "'load_imgs' or 'from_store' before using 'transform'."
            )

    def transform(self, img) -> pd.DataFrame:
        """Pearson r between an image and every feature map (one pass over the maps).

        Parameters
        ----------
        img : nibabel image, path, or 1-D array over the grid's voxels
            The map to decode, in the same space as the database.

        Returns
        -------
        pandas.DataFrame
            Index ``feature``, column ``r`` (eager); also stored as the table
            ``"correlation"`` of :attr:`results_`.
        """
        self._check_fitted()
        out = self.maps_.correlate(img, n_cores=self.n_cores)
        self._table = out
        if self._results is not None:
            self._results.tables["correlation"] = out
        return out

    def top_terms(self, n: int = 10, img=None, ascending: bool = False) -> pd.DataFrame:
        """The features most (or least) correlated with an image.

        Parameters
        ----------
        n : int
            How many.
        img : image, path or array, optional
            Decode this image first; default: the last :meth:`transform`.
        ascending : bool
            True for the most negative correlations.

        Returns
        -------
        pandas.DataFrame
            ``n`` rows sorted by ``r`` (index ``feature``).
        """
        if img is not None:
            self.transform(img)
        if getattr(self, "_table", None) is None:
            raise RuntimeError("call transform(img) first, or pass img=")
        table = self._table.dropna(subset=["r"])
        return table.sort_values("r", ascending=ascending, kind="stable").head(int(n))

    @property
    def results_(self) -> MetaResult:
        """The feature maps as a MetaResult (lazy when stored), with the last correlation."""
        self._check_fitted()
        if self._results is None:
            self._results = self.maps_.to_result(estimator=self)
            if self._table is not None:
                self._results.tables["correlation"] = self._table
        return self._results


def _in_memory(values, features, grid: Grid, info: dict) -> FeatureMaps:
    arr = xr.DataArray(
        np.asarray(values, dtype=np.float32),
        dims=("feature", "voxel"),
        coords={"feature": np.asarray(features, dtype=object)},
        name="maps",
    )
    return FeatureMaps(arr, grid, info)


class _FeatureLoop:
    """Feature maps by fitting the estimator once per feature (rows start:stop)."""

    def __init__(self, estimator, studyset, indicator, target, pairwise):
        self.estimator = estimator
        self.studyset = studyset
        self.indicator = sp.csc_matrix(indicator)
        self.target = target
        self.pairwise = pairwise

    def __call__(self, start: int, stop: int) -> np.ndarray:
        ss = self.studyset
        out = np.empty((stop - start, ss.grid.n_voxels), dtype=np.float32)
        ind = self.indicator
        all_rows = np.arange(len(ss))
        for k, f in enumerate(range(start, stop)):
            rows = np.sort(ind.indices[ind.indptr[f] : ind.indptr[f + 1]])
            est = copy.deepcopy(self.estimator)
            if self.pairwise:
                other = np.setdiff1d(all_rows, rows)
                result = est.fit(ss.slice(ss.ids[rows]), ss.slice(ss.ids[other]))
            else:
                result = est.fit(ss.slice(ss.ids[rows]))
            out[k] = result.get_map(self.target, return_type="array")
        return out
