"""IBMAEstimator: NiMARE's image-based meta-analysis estimators on an (analysis x voxel) array.

``fit(studyset)`` reads each required image type as a lazy ``(n_analyses, n_voxels)`` float32
Dask array over the grid's in-mask voxels (:func:`nimare_dask.studyset.images.image_matrix`),
chunked by voxels with every analysis in a chunk, and builds one graph:

1. per voxel chunk, which images have a usable value anywhere and (Fishers/Stouffers) the
   pairwise sums of the empirical null correlation;
2. one small task combining them: images with no usable voxel are dropped (as NiMARE), group
   codes, the null correlation;
3. per voxel chunk, the fit: columns are grouped into liberal-mask bags by validity pattern
   (:mod:`nimare_dask.meta.ibma.bags`) and each bag is fitted as array expressions over its voxels.

Everything runs in one ``dask.compute``; the maps come back 1-D over the grid's voxels in a
:class:`~nimare_dask.results.MetaResult`. Voxel chunking never changes a number: a voxel's
result depends only on its bag's images, its own values and the global step 2.
"""

from __future__ import annotations

import inspect
import logging
import uuid
from pathlib import Path
from typing import Any

import dask
import dask.array as da
import numpy as np

from nimare_dask import __version__
from nimare_dask.meta.base import Estimator, compute
from nimare_dask.meta.ibma._nullcorr import chunk_sums, null_correlation
from nimare_dask.meta.ibma.bags import MIN_STUDIES, iter_bags, usable
from nimare_dask.space import Grid, get_grid
from nimare_dask.studyset import Studyset, open_studyset
from nimare_dask.studyset.core import studyset_or_dataset

__all__ = ["IBMAEstimator"]

LGR = logging.getLogger(__name__)

_TOOL = (
    f"nimare_dask {__version__}, a reimplementation of NiMARE \\citep{{salo2023nimare}} on "
    "Dask and Zarr"
)
#: Varcope values at or below this (or non-finite) are unusable (NiMARE, float32 inputs).
MIN_VARCOPE = float(1.0 / np.sqrt(np.finfo(np.float32).max))
#: Default voxels per chunk: about 8M float64 values per input array in a chunk.
_VALUES_PER_CHUNK = 2**23
_BASE_PARAMS = ("aggressive_mask", "memory", "memory_level", "generate_description", "mask",
                "groupby", "voxel_chunk_size")  # fmt: skip


def _image_matrix(studyset: Studyset, imtype: str, chunks, resample_kwargs) -> da.Array:
    """Lazy ``(n_analyses, n_voxels)`` float32 image array (NaN where an image is missing)."""
    try:
        from nimare_dask.studyset.images import image_matrix
    except ImportError:  # until the studyset's image store exists: read the NIfTI files
        image_matrix = _read_image_matrix
    return image_matrix(studyset, imtype, chunks=chunks, resample_kwargs=resample_kwargs)


def _has_image(studyset: Studyset, imtype: str) -> np.ndarray:
    try:
        from nimare_dask.studyset.images import has_image
    except ImportError:
        return np.array([p is not None for p in studyset.get_images(imtype)], dtype=bool)
    return np.asarray(has_image(studyset, imtype), dtype=bool)


def _load_one(path, grid: Grid, resample_kwargs: dict) -> np.ndarray:
    import nibabel as nib

    if path is None:
        return np.full(grid.n_voxels, np.nan, dtype=np.float32)
    try:
        img = nib.load(str(path))
    except Exception as err:
        raise ValueError(f"cannot read image {path}: {err}") from err
    if img.shape[:3] != grid.shape or not np.allclose(img.affine, grid.affine):
        from nilearn.image import resample_to_img

        img = resample_to_img(img, grid.mask_image(), **resample_kwargs)
    data = np.asarray(img.dataobj, dtype=np.float32)
    if data.ndim != 3:
        raise ValueError(f"image {path} must be 3-D, got shape {data.shape}")
    return data[grid.mask]


def _read_image_matrix(studyset, imtype, *, chunks=None, resample_kwargs=None) -> da.Array:
    grid = studyset.grid
    kwargs = {"clip": True, "interpolation": "linear", "copy_header": True}
    kwargs.update(resample_kwargs or {})
    rows = [
        da.from_delayed(
            dask.delayed(_load_one, pure=True)(p, grid, kwargs),
            shape=(grid.n_voxels,),
            dtype=np.float32,
        )
        for p in studyset.get_images(imtype)
    ]
    return da.stack(rows)


def _group_codes(labels: list) -> np.ndarray:
    """Integer codes of hashable labels, ordered by ``str`` as NiMARE orders them."""
    order = {lab: i for i, lab in enumerate(sorted(set(labels), key=str))}
    return np.array([order[lab] for lab in labels], dtype=np.int64)


def _hashable(value):
    if isinstance(value, list | tuple | np.ndarray):
        return tuple(np.asarray(value).ravel().tolist())
    return value


class IBMAEstimator(Estimator):
    """Base of the image-based estimators (NiMARE's ``IBMAEstimator``).

    Parameters
    ----------
    aggressive_mask : bool, default=False
        True: analyse only voxels valid (finite, non-zero) in every image. False: the liberal
        mask, one fit per bag of voxels valid in the same images; bags with fewer than two
        images are dropped and bags whose images all come from one group are NaN.
    memory, memory_level
        Accepted for NiMARE compatibility; no effect (nothing is cached between fits).
    generate_description : bool, default=True
        Write the methods text.
    mask : str, Grid, image or path, optional
        Analysis mask (keyword only; default: the studyset's grid).
    groupby : None, str, array-like or False, optional
        Dependent images: None groups by study, a str names a metadata field, an array gives
        one label per analysis (in ``studyset.ids`` order), False treats every image as
        independent.
    voxel_chunk_size : int, optional
        Voxels per chunk (keyword only; default about 8M values per input array and chunk).
        Never changes a number.
    **kwargs
        ``resample__<name>`` for nilearn's ``resample_to_img`` (default ``clip=True,
        interpolation="linear"``); anything else raises ``TypeError``.
    """

    #: Image types read, in the order ``_fit_bag`` receives them.
    _image_types: tuple[str, ...] = ()
    #: Fits in which the empirical null correlation is read (Fishers, Stouffers).
    _requires_corr = False
    #: Output map names, in order.
    _map_names: tuple[str, ...] = ()

    def __init__(
        self,
        aggressive_mask: bool = False,
        memory: Any = None,
        memory_level: int = 0,
        generate_description: bool = True,
        *,
        mask: Any = None,
        groupby: Any = None,
        voxel_chunk_size: int | None = None,
        **kwargs: Any,
    ) -> None:
        self.aggressive_mask = aggressive_mask
        self.memory = memory
        self.memory_level = memory_level
        self.generate_description = generate_description
        self.mask = mask
        self.groupby = groupby
        self.voxel_chunk_size = voxel_chunk_size
        for name in ("resample", "memory_limit"):
            if name in kwargs:
                raise TypeError(
                    f"{name} was removed in NiMARE 0.2.0; pass 'resample__<name>' to control "
                    "how images on another grid are resampled"
                )
        unknown = sorted(k for k in kwargs if not k.startswith("resample__"))
        if unknown:
            raise TypeError(
                f"{type(self).__name__} got unexpected keyword argument(s): "
                f"{', '.join(map(repr, unknown))}. Resampling arguments must be prefixed with "
                "'resample__'."
            )
        self.resample_kwargs = {k[len("resample__") :]: v for k, v in kwargs.items()}

    # ------------------------------------------------------------------ params
    @classmethod
    def _param_names(cls) -> list[str]:
        names = []
        for klass in cls.__mro__:
            if klass is IBMAEstimator:
                break
            if "__init__" in vars(klass):
                sig = inspect.signature(klass.__init__)
                names += [
                    p.name
                    for p in sig.parameters.values()
                    if p.name != "self" and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)
                ]
        return list(dict.fromkeys(names + list(_BASE_PARAMS)))

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """Parameters, with ``resample__<name>`` entries for the resampling keywords."""
        out = {name: getattr(self, name) for name in self._param_names()}
        out.update({f"resample__{k}": v for k, v in self.resample_kwargs.items()})
        return out

    def set_params(self, **params: Any) -> IBMAEstimator:
        """Set parameters (``resample__<name>`` included); unknown names raise ``TypeError``."""
        for key, value in params.items():
            if key.startswith("resample__"):
                self.resample_kwargs[key[len("resample__") :]] = value
            elif key in self._param_names():
                setattr(self, key, value)
            else:
                raise TypeError(f"{type(self).__name__} has no parameter {key!r}")
        return self

    # ------------------------------------------------------------------ hooks
    def _check_params(self) -> None:
        """Validate parameters at fit time (subclasses extend)."""
        if not isinstance(self.aggressive_mask, bool | np.bool_):
            raise TypeError(f"aggressive_mask must be a bool, got {self.aggressive_mask!r}")

    def _needs_sample_sizes(self) -> bool:
        return False

    def _validity(self, blocks: list[np.ndarray]) -> np.ndarray:
        """Usable entries: finite and non-zero in every input (varcope also above a floor)."""
        valid = np.ones(blocks[0].shape, dtype=bool)
        for imtype, block in zip(self._image_types, blocks, strict=True):
            valid &= usable(block)
            if imtype == "varcope":
                valid &= block > MIN_VARCOPE
        return valid

    def _fit_bag(self, arrays, rows, codes, ctx) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def _description(self, n_images: int) -> str:
        return ""

    def _tables(self) -> dict:
        return {}

    # ------------------------------------------------------------------ inputs
    def _prepare(self, studyset: Any) -> Studyset:
        if isinstance(studyset, str | Path):
            studyset = open_studyset(studyset)
        if not isinstance(studyset, Studyset):
            raise TypeError(
                f"{type(self).__name__}.fit expects a nimare_dask Studyset (or the path of a "
                f"studyset store); got {type(studyset).__name__}"
            )
        grid = studyset.grid if self.mask is None else get_grid(self.mask)
        if not grid.same_as(studyset.grid):
            store = getattr(studyset, "store", None)
            studyset = studyset.with_grid(grid)
            studyset.store = store
        return studyset

    def _usable_analyses(self, studyset: Studyset) -> np.ndarray:
        ok = np.ones(len(studyset), dtype=bool)
        for imtype in self._image_types:
            ok &= _has_image(studyset, imtype)
        if self._needs_sample_sizes():
            ok &= np.isfinite(studyset.sample_sizes) & (studyset.sample_sizes > 0)
        if isinstance(self.groupby, str):
            values = studyset.get_metadata(field=self.groupby)
            ok &= np.array([v is not None and not _isna(v) for v in values], dtype=bool)
        return ok

    def _labels(self, studyset: Studyset, full_ids: np.ndarray) -> list:
        if self.groupby is None:
            return list(studyset.analyses["study_id"].astype(str))
        if self.groupby is False:
            return list(studyset.ids)
        if isinstance(self.groupby, str):
            return [_hashable(v) for v in studyset.get_metadata(field=self.groupby)]
        labels = [_hashable(v) for v in np.asarray(self.groupby, dtype=object).ravel()]
        if len(labels) == len(full_ids):
            pos = {i: k for k, i in enumerate(full_ids)}
            return [labels[pos[i]] for i in studyset.ids]
        if len(labels) != len(studyset):
            raise ValueError(
                f"groupby must contain one label per image: expected {len(full_ids)}, got "
                f"{len(labels)}."
            )
        return labels

    # ------------------------------------------------------------------ fit
    def fit(self, studyset: Any = None, drop_invalid: bool = True, *, dataset: Any = None):
        """Fit the estimator to the images of ``studyset``.

        Parameters
        ----------
        studyset : Studyset or path
            Analyses with the images (and sample sizes) the estimator needs.
        dataset : Studyset or path, optional
            NiMARE's name for ``studyset``.
        drop_invalid : bool, default=True
            Drop analyses lacking a required image or sample size (NiMARE's default); False
            raises instead.

        Returns
        -------
        MetaResult
            Maps 1-D over the grid's voxels (computed: one ``dask.compute``).
        """
        from nimare_dask.results import MetaResult

        studyset = studyset_or_dataset(studyset, dataset, f"{type(self).__name__}.fit")
        if not isinstance(drop_invalid, bool | np.bool_):
            raise TypeError(f"drop_invalid must be True or False, got {drop_invalid!r}")
        self._check_params()
        studyset = self._prepare(studyset)
        full_ids = studyset.ids
        ok = self._usable_analyses(studyset)
        if ok.sum() < MIN_STUDIES:
            required = ", ".join(repr(t) for t in self._image_types)
            extra = " and sample sizes" if self._needs_sample_sizes() else ""
            raise ValueError(
                f"{type(self).__name__} needs at least {MIN_STUDIES} analyses, but "
                f"{int(ok.sum())} of the {len(studyset)} submitted have the required inputs "
                f"(images {required}{extra}). One analysis has no independent replication to "
                "estimate a variance from, so every output map would be NaN."
            )
        if not ok.all():
            if not drop_invalid:
                raise ValueError(
                    f"{type(self).__name__}: analyses lacking required inputs: "
                    f"{', '.join(full_ids[~ok][:20])}"
                )
            LGR.warning(
                "%s: dropping %d analyses lacking required inputs: %s",
                type(self).__name__,
                int((~ok).sum()),
                ", ".join(full_ids[~ok][:20]),
            )
            studyset = studyset.slice(full_ids[ok])
        labels = self._labels(studyset, full_ids)
        grid = studyset.grid
        n_images = len(studyset)
        size = self.voxel_chunk_size or max(1024, _VALUES_PER_CHUNK // max(n_images, 1))
        size = min(int(size), grid.n_voxels)
        arrays = [
            _image_matrix(studyset, t, (n_images, size), self.resample_kwargs).rechunk(
                (n_images, size)
            )
            for t in self._image_types
        ]
        token = uuid.uuid4().hex[:12]
        blocks = [a.to_delayed().ravel() for a in arrays]
        n_chunks = len(blocks[0])
        stats = [
            dask.delayed(_chunk_stats, pure=True)(
                self, [b[c] for b in blocks], dask_key_name=f"ibma-stats-{c}-{token}"
            )
            for c in range(n_chunks)
        ]
        ctx = dask.delayed(_make_context, pure=True)(
            self,
            stats,
            labels,
            list(studyset.ids),
            studyset.sample_sizes,
            dask_key_name=f"ibma-context-{token}",
        )
        fits = [
            dask.delayed(_fit_chunk, pure=True)(
                self, [b[c] for b in blocks], ctx, dask_key_name=f"ibma-fit-{c}-{token}"
            )
            for c in range(n_chunks)
        ]
        ctx_v, *fits_v = compute(ctx, *fits)
        maps = {name: np.concatenate([f["maps"][name] for f in fits_v]) for name in self._map_names}
        skipped = set().union(*(f["skipped"] for f in fits_v)) if fits_v else set()
        if ctx_v["dropped"]:
            LGR.warning(
                "Dropping %d of %d image(s) with no voxel holding a usable value in every "
                "required input: %s.",
                len(ctx_v["dropped"]),
                n_images,
                ", ".join(ctx_v["dropped"]),
            )
        if skipped:
            LGR.warning(
                "Skipped %d set(s) of voxels whose valid images all come from a single group; "
                "those voxels are NaN.",
                len(skipped),
            )
        self.studyset_ = studyset
        self.inputs_ = {
            "studyset": studyset,
            "id": studyset.ids,
            "arrays": arrays,
            "context": ctx_v,
            "labels": labels,
        }
        description = (
            self._description(int(ctx_v["keep"].sum())) if self.generate_description else ""
        )
        return MetaResult(
            estimator=self,
            grid=grid,
            maps=maps,
            tables=self._tables(),
            description=description,
        )

    fit._describes = True  # handles drop_invalid, dataset= and the description itself


def _isna(value) -> bool:
    try:
        return bool(np.all(np.isnan(np.asarray(value, dtype=float))))
    except (TypeError, ValueError):
        return False


def _chunk_stats(est: IBMAEstimator, blocks: list[np.ndarray]) -> dict:
    valid = est._validity(blocks)
    out = {"any": valid.any(axis=1)}
    if est._requires_corr:
        out["corr"] = chunk_sums(blocks[0], usable(blocks[0]))
    return out


def _make_context(
    est: IBMAEstimator, stats: list[dict], labels: list, ids: list, sample_sizes: np.ndarray
) -> dict:
    keep = np.logical_or.reduce([s["any"] for s in stats])
    if not keep.any():
        raise ValueError(
            f"None of the {len(ids)} images have a voxel with a usable value in every required "
            f"input, so there is nothing to meta-analyse: {', '.join(ids)}."
        )
    kept = np.flatnonzero(keep)
    lab = [labels[i] for i in kept]
    if est.groupby is False:
        lab = [ids[i] for i in kept]
    codes = np.full(len(ids), -1, dtype=np.int64)
    codes[kept] = _group_codes(lab)
    has_dependence = np.unique(codes[kept]).size < kept.size
    corr = None
    if est._requires_corr and has_dependence:
        parts = tuple(sum(s["corr"][j] for s in stats)[np.ix_(kept, kept)] for j in range(4))
        sub = null_correlation(parts, codes[kept])
        if sub is not None:
            corr = np.full((len(ids), len(ids)), np.nan)
            corr[np.ix_(kept, kept)] = sub
        else:
            LGR.warning(
                "No two images have two voxels both are valid at, so the null correlation "
                "cannot be estimated; p-values may be anti-conservative."
            )
    # blocks for sign flips: groups when any group holds two images, else one per image
    blocks = codes.copy() if has_dependence else np.full(len(ids), -1, dtype=np.int64)
    if not has_dependence:
        blocks[kept] = np.arange(kept.size)
    n = np.asarray(sample_sizes, dtype=float)
    return {
        "keep": keep,
        "sample_sizes": n,
        "codes": codes,
        "blocks": blocks,
        "n_blocks": int(blocks.max()) + 1,
        "has_dependence": bool(has_dependence),
        "corr": corr,
        "dropped": [ids[i] for i in np.flatnonzero(~keep)],
        "ids": list(ids),
    }


def _fit_chunk(est: IBMAEstimator, blocks: list[np.ndarray], ctx: dict) -> dict:
    n_vox = blocks[0].shape[1]
    out = {name: np.full(n_vox, np.nan) for name in est._map_names}
    skipped: set[bytes] = set()
    valid = est._validity(blocks) & ctx["keep"][:, None]
    if est.aggressive_mask:
        kept = np.flatnonzero(ctx["keep"])
        cols = np.flatnonzero(valid[kept].all(axis=0))
        bags = [(b"all", kept, cols)] if cols.size and kept.size >= MIN_STUDIES else []
    else:
        bags = iter_bags(valid)
    for key, rows, cols in bags:
        codes = ctx["codes"][rows]
        if np.unique(codes).size < MIN_STUDIES:
            skipped.add(key)
            continue
        arrays = [np.asarray(b[rows][:, cols], dtype=np.float64) for b in blocks]
        res = est._fit_bag(arrays, rows, codes, ctx)
        if res is None:
            skipped.add(key)
            continue
        for name in est._map_names:
            out[name][cols] = res[name]
    return {"maps": out, "skipped": skipped}
