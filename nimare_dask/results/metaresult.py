"""MetaResult: the maps, tables and methods text a meta-analysis produces.

Maps are 1-D over the in-mask voxels of a :class:`~nimare_dask.space.Grid` and held in one
:class:`xarray.Dataset` (dim ``voxel``). They may be numpy- or dask-backed: a result built from
lazy arrays stays lazy until :meth:`MetaResult.get_map`, :meth:`MetaResult.save_maps` or
:meth:`MetaResult.compute` is called, and the latter two compute every map they need in a single
``dask.compute``. NIfTI appears only at the edges (:meth:`get_map` with ``return_type="image"``
and :meth:`save_maps`).
"""

from __future__ import annotations

import copy as _copy
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import dask
import dask.array as da
import nibabel as nib
import numpy as np
import pandas as pd
import xarray as xr

from nimare_dask.results.references import merge_bibtex, references_for
from nimare_dask.space import Grid, get_grid
from nimare_dask.stats.transforms import P_FLOOR_FLOAT32

__all__ = ["MetaResult", "object_info"]

_FLOAT32_MAX = float(np.finfo(np.float32).max)


def _jsonable(value: Any) -> Any:
    """Turn parameters (numbers, arrays, nested estimators/kernels) into JSON-able values."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "get_params"):
        return object_info(value)
    return repr(value)


def object_info(obj: Any) -> dict | None:
    """``{"class": name, "params": get_params()}`` of an estimator, kernel or corrector.

    Parameters
    ----------
    obj : object or None
        Anything; ``get_params()`` is used when it exists.

    Returns
    -------
    dict or None
        JSON-able description (``None`` for ``None``).
    """
    if obj is None:
        return None
    params: dict = {}
    get_params = getattr(obj, "get_params", None)
    if callable(get_params):
        try:
            params = dict(get_params())
        except TypeError:
            params = {}
    return {"class": type(obj).__name__, "params": _jsonable(params)}


def _is_p_map(name: str) -> bool:
    return name == "p" or name.startswith("p_")


def _is_logp_map(name: str) -> bool:
    return name.startswith("logp")


def _to_dataarray(name: str, value: Any, n_voxels: int) -> xr.DataArray:
    """Validate one map and return it as a (lazy where it was lazy) float32 DataArray."""
    if not isinstance(name, str) or not name or "/" in name or name.startswith("__"):
        raise ValueError(f"invalid map name {name!r}: a non-empty string without '/'")
    if isinstance(value, xr.DataArray):
        arr = value.data
    elif isinstance(value, da.Array):
        arr = value
    else:
        arr = np.asarray(value)
    if arr.ndim != 1:
        squeezed = [s for s in arr.shape if s != 1]
        if len(squeezed) != 1 and not (arr.size == 1 and n_voxels == 1):
            raise ValueError(f"map {name!r} must be 1-D over voxels, got shape {arr.shape}")
        arr = arr.reshape(-1)
    if arr.shape[0] != n_voxels:
        raise ValueError(
            f"map {name!r} has {arr.shape[0]} values but the grid has {n_voxels} voxels"
        )
    out = xr.DataArray(arr, dims=("voxel",), name=name)
    if np.issubdtype(out.dtype, np.floating) and out.dtype != np.float32:
        out = out.astype(np.float32)
    if np.issubdtype(out.dtype, np.floating):
        # As NiMARE's MetaResult: p maps in the positive float32 range, logp maps finite.
        if _is_p_map(name):
            out = out.clip(np.float32(P_FLOOR_FLOAT32), np.float32(1))
        elif _is_logp_map(name):
            out = out.clip(np.float32(0), np.float32(_FLOAT32_MAX))
    if isinstance(value, xr.DataArray):
        out.attrs.update(value.attrs)
    return out


class MetaResult:
    """Maps, tables, null distributions and methods text of a meta-analysis.

    Parameters
    ----------
    estimator : object, optional
        The estimator that produced the result (kept by reference; its
        ``{"class", "params"}`` is what :meth:`to_zarr` persists).
    grid : Grid, optional
        Voxel grid of the maps (default: the shipped MNI152 2 mm grid).
    maps : dict or xarray.Dataset, optional
        ``{name: 1-D array over grid voxels}``; numpy, dask or DataArray. Stored as given
        (lazy stays lazy); floating maps are cast to float32, ``p``/``p_*`` maps clipped to
        ``[1.4e-45, 1]`` and ``logp*`` maps to ``[0, float32 max]`` (lazily for dask input).
        Integer and boolean maps keep their dtype.
    tables : dict of pandas.DataFrame, optional
        Result tables (cluster tables, decoder outputs, ...).
    description : str
        Methods text with natbib citations (``\\citep{key}``).
    references : str, optional
        BibTeX entries; default: the shipped entries the description cites.
    corrector : object, optional
        The corrector that produced the corrected maps.
    diagnostics : list, optional
        Diagnostics that were run on the result.
    null_distributions : dict of numpy.ndarray, optional
        Null distributions (histograms, max-statistic nulls) keyed by map-style names.
    mask : nilearn masker, mask image or path, or Grid, optional
        NiMARE's parameter: the mask the maps are over (a masker's ``mask_img``); it becomes
        :attr:`grid` (give ``grid`` or ``mask``, or both naming the same grid).

    Attributes
    ----------
    maps : xarray.Dataset
        One variable per map, dim ``voxel``.
    estimator_info, corrector_info : dict or None
        ``{"class": name, "params": {...}}``; for a reopened result these are all that is left
        of the estimator and corrector objects (with the inputs stored beside them, see
        :meth:`get_inputs`, the estimator can be refitted: a Monte Carlo correction of a
        reopened result does so).
    """

    def __init__(
        self,
        estimator: Any = None,
        grid: Grid | None = None,
        maps: Mapping[str, Any] | xr.Dataset | None = None,
        tables: Mapping[str, pd.DataFrame] | None = None,
        description: str = "",
        references: str | None = None,
        corrector: Any = None,
        diagnostics: Iterable[Any] | None = None,
        null_distributions: Mapping[str, Any] | None = None,
        *,
        mask: Any = None,
    ) -> None:
        self.estimator = estimator
        if mask is not None:
            from nimare_dask.kernels.masker import grid_from_masker

            from_mask = grid_from_masker(mask)
            if grid is not None and not get_grid(grid).same_as(from_mask):
                raise ValueError("MetaResult: grid= and mask= name different grids; give one")
            grid = from_mask
        self.grid = get_grid(grid)
        self.maps = xr.Dataset()
        self.add_maps(maps or {})
        self.tables: dict[str, pd.DataFrame] = {}
        for name, table in (tables or {}).items():
            if not isinstance(table, pd.DataFrame):
                raise TypeError(f"table {name!r} must be a pandas DataFrame, not {type(table)}")
            self.tables[str(name)] = table
        self.null_distributions: dict[str, Any] = dict(null_distributions or {})
        self.description = description or ""
        self.references = references if references is not None else references_for(self.description)
        self.corrector = corrector
        self.diagnostics = list(diagnostics or [])
        self._estimator_info: dict | None = None
        self._corrector_info: dict | None = None
        #: Inputs given with :meth:`set_inputs`, opened from the store (see get_inputs), or
        #: those of the fit that made this result (the estimator's ``inputs_`` when the
        #: result is built, so a later fit of the same estimator does not change them).
        fitted = getattr(estimator, "inputs_", None)
        self._inputs: dict[str, Any] = {
            k: v
            for k, v in (fitted.items() if isinstance(fitted, Mapping) else ())
            if k in self.INPUT_NAMES and v is not None
        }
        #: Where a reopened result's store keeps its inputs ({name: (kind, Location)}).
        self._stored_inputs: dict[str, Any] = {}

    # ------------------------------------------------------------------ contents
    def add_maps(self, maps: Mapping[str, Any] | xr.Dataset) -> MetaResult:
        """Add (or replace) maps, with the same validation and casting as the constructor.

        Parameters
        ----------
        maps : dict or xarray.Dataset
            ``{name: 1-D array over grid voxels}``.

        Returns
        -------
        MetaResult
            ``self`` (maps stay lazy where they were lazy).
        """
        items = maps.data_vars.items() if isinstance(maps, xr.Dataset) else maps.items()
        new = {
            str(name): _to_dataarray(str(name), value, self.grid.n_voxels) for name, value in items
        }
        if new:
            self.maps = self.maps.assign(new)
        return self

    def add_description(self, text: str, references: str | None = None) -> MetaResult:
        """Append methods text and the BibTeX entries it cites.

        Parameters
        ----------
        text : str
            Methods text with natbib citations.
        references : str, optional
            Extra BibTeX entries (default: the shipped entries ``text`` cites).

        Returns
        -------
        MetaResult
            ``self``.
        """
        if text:
            self.description = f"{self.description} {text}".strip()
        extra = references if references is not None else references_for(text)
        self.references = merge_bibtex(self.references, extra)
        return self

    @property
    def maps_names(self) -> list[str]:
        """Names of the stored maps, in insertion order."""
        return list(self.maps.data_vars)

    @property
    def estimator_info(self) -> dict | None:
        """``{"class": name, "params": get_params()}`` of the estimator (JSON-able)."""
        if self.estimator is not None:
            return object_info(self.estimator)
        return self._estimator_info

    @property
    def corrector_info(self) -> dict | None:
        """``{"class": name, "params": get_params()}`` of the corrector (JSON-able)."""
        if self.corrector is not None:
            return object_info(self.corrector)
        return self._corrector_info

    # ------------------------------------------------------------------ inputs
    #: Names of the inputs a result may keep: the studyset(s) an estimator was fitted on and
    #: ALESubtraction's inference masks.
    INPUT_NAMES = ("studyset", "studyset1", "studyset2", "mask1", "mask2")

    def set_inputs(self, **inputs: Any) -> MetaResult:
        """Attach the inputs the result was fitted on (used by Monte Carlo corrections and
        diagnostics of a reopened result, and written by :meth:`to_zarr`).

        Parameters
        ----------
        **inputs
            ``studyset=`` (one-sample estimators) or ``studyset1=``, ``studyset2=`` (pairwise
            estimators), as :class:`~nimare_dask.studyset.Studyset`; ``mask1=``, ``mask2=``
            (ALESubtraction's inference masks, boolean arrays over the grid's voxels).

        Returns
        -------
        MetaResult
            ``self``.
        """
        from nimare_dask.studyset import Studyset

        for name, value in inputs.items():
            if name not in self.INPUT_NAMES:
                raise TypeError(f"unknown input {name!r}; inputs are {', '.join(self.INPUT_NAMES)}")
            if name.startswith("studyset") and not isinstance(value, Studyset):
                raise TypeError(f"{name} must be a Studyset, not {type(value).__name__}")
            if name.startswith("mask") and value is not None:
                value = np.asarray(value, dtype=bool).reshape(-1)
                if value.shape[0] != self.grid.n_voxels:
                    raise ValueError(
                        f"{name} has {value.shape[0]} values but the grid has "
                        f"{self.grid.n_voxels} voxels"
                    )
            self._inputs[name] = value
        return self

    def get_inputs(self, estimator: bool = True) -> dict[str, Any]:
        """The inputs the result was fitted on, where known.

        In order of precedence: those given to :meth:`set_inputs`, those of the live
        estimator's last fit (``estimator.inputs_``), those stored with the result
        (:meth:`to_zarr` writes them; a reopened result opens them on first use).

        Parameters
        ----------
        estimator : bool
            Include the live estimator's inputs (those of its *last* fit, which may not be
            this result's if it was fitted again since).

        Returns
        -------
        dict
            ``{name: Studyset or mask}`` (names from :attr:`INPUT_NAMES`); empty when none is
            known. Studysets are opened lazily (foci read on use).
        """
        out: dict[str, Any] = {}
        from_estimator = (getattr(self.estimator, "inputs_", None) or {}) if estimator else {}
        for name in self.INPUT_NAMES:
            if name in getattr(self, "_inputs", {}):
                value = self._inputs[name]
            elif name in from_estimator:
                value = from_estimator[name]
            elif name in getattr(self, "_stored_inputs", {}):
                from nimare_dask.results.store import open_input

                value = open_input(self, name)
                self._inputs[name] = value
            else:
                continue
            if value is not None:
                out[name] = value
        return out

    @property
    def is_lazy(self) -> bool:
        """True while any map is still a dask array."""
        return any(isinstance(v.data, da.Array) for v in self.maps.data_vars.values())

    # NiMARE spellings ------------------------------------------------------------
    @property
    def description_(self) -> str:
        """Alias of :attr:`description` (NiMARE's name)."""
        return self.description

    @property
    def bibtex_(self) -> str:
        """Alias of :attr:`references` (NiMARE's name)."""
        return self.references

    # ------------------------------------------------------------------ access
    def _check_names(self, names: Iterable[str]) -> list[str]:
        names = list(names)
        missing = [n for n in names if n not in self.maps.data_vars]
        if missing:
            raise KeyError(
                f"no map named {', '.join(map(repr, missing))}; available maps: "
                f"{', '.join(self.maps_names) or '(none)'}"
            )
        return names

    def _image(self, values: np.ndarray) -> nib.Nifti1Image:
        values = np.asarray(values)
        if values.dtype == np.bool_:
            values = values.astype(np.uint8)
        if np.issubdtype(values.dtype, np.floating):
            # NiMARE writes NaN (and inf) as 0 when it makes an image.
            values = np.nan_to_num(values, nan=0.0, posinf=0.0, neginf=0.0)
            dtype = np.float32
        elif values.dtype.itemsize > 4:
            # NIfTI tools expect at most 32-bit integers; label maps fit.
            dtype = np.int32
        else:
            dtype = values.dtype
        return self.grid.to_image(values, dtype=dtype)

    def get_map(self, name: str, return_type: str = "image"):
        """Return one map.

        Parameters
        ----------
        name : str
            Map name (see :attr:`maps_names`).
        return_type : {"image", "array", "xarray"}
            ``"image"``: a NIfTI image on the grid (NaN written as 0); ``"array"``: a 1-D numpy
            array over voxels; ``"xarray"``: the stored DataArray.

        Returns
        -------
        nibabel.Nifti1Image, numpy.ndarray or xarray.DataArray
            Image and array are computed (eager); the DataArray is lazy if the map is.

        Raises
        ------
        KeyError
            If there is no such map (the message lists the available ones).
        """
        self._check_names([name])
        if return_type == "xarray":
            return self.maps[name]
        if return_type not in ("image", "array"):
            raise ValueError(
                f'return_type must be "image", "array" or "xarray", not {return_type!r}'
            )
        values = np.asarray(self.maps[name].values)
        if return_type == "array":
            return values
        return self._image(values)

    def compute(self) -> MetaResult:
        """Materialise every lazy map and null distribution in one ``dask.compute``.

        Returns
        -------
        MetaResult
            ``self``, now numpy-backed (eager).
        """
        null_keys = [k for k, v in self.null_distributions.items() if dask.is_dask_collection(v)]
        maps, *nulls = dask.compute(self.maps, *(self.null_distributions[k] for k in null_keys))
        self.maps = maps
        for key, value in zip(null_keys, nulls, strict=True):
            self.null_distributions[key] = np.asarray(value)
        return self

    def copy(self) -> MetaResult:
        """Return a copy: maps, tables and nulls copied, estimator and corrector shared.

        Returns
        -------
        MetaResult
            Lazy maps stay lazy (their graphs are shared, which is safe: dask arrays are
            immutable).
        """
        new = MetaResult.__new__(MetaResult)
        new.__dict__.update(self.__dict__)
        new.maps = self.maps.copy(deep=True)
        new.tables = {k: v.copy() for k, v in self.tables.items()}
        new.null_distributions = {
            k: (v.copy() if isinstance(v, np.ndarray) else _copy.copy(v))
            for k, v in self.null_distributions.items()
        }
        new.diagnostics = list(self.diagnostics)
        new._inputs = dict(getattr(self, "_inputs", {}))
        new._stored_inputs = dict(getattr(self, "_stored_inputs", {}))
        return new

    # ------------------------------------------------------------------ output
    @staticmethod
    def _prefix(prefix: str, prefix_sep: str) -> str:
        if not prefix:
            return ""
        return prefix if prefix.endswith(prefix_sep) else prefix + prefix_sep

    def save_maps(
        self,
        output_dir: str | Path = ".",
        prefix: str = "",
        prefix_sep: str = "_",
        names: Iterable[str] | None = None,
    ) -> list[Path]:
        """Write maps as NIfTI files ``<prefix><sep><name>.nii.gz``.

        Parameters
        ----------
        output_dir : str or Path
            Folder (created if needed).
        prefix : str
            File-name prefix; no separator is added when it is empty.
        prefix_sep : str
            Separator between prefix and map name.
        names : list of str, optional
            Maps to write (default: all).

        Returns
        -------
        list of Path
            The files written. All requested maps are computed in one ``dask.compute``.
        """
        names = self._check_names(self.maps_names if names is None else names)
        out_dir = Path(output_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        start = self._prefix(prefix, prefix_sep)
        (values,) = dask.compute([self.maps[n].data for n in names])
        paths = []
        for name, arr in zip(names, values, strict=True):
            path = out_dir / f"{start}{name}.nii.gz"
            self._image(arr).to_filename(str(path))
            paths.append(path)
        return paths

    def save_tables(
        self,
        output_dir: str | Path = ".",
        prefix: str = "",
        prefix_sep: str = "_",
        names: Iterable[str] | None = None,
    ) -> list[Path]:
        """Write tables as tab-separated files ``<prefix><sep><name>.tsv``.

        The index is written only when it carries information (a named or non-range index),
        so a plain cluster table is written as NiMARE writes it.

        Parameters
        ----------
        output_dir : str or Path
            Folder (created if needed).
        prefix : str
            File-name prefix; no separator is added when it is empty.
        prefix_sep : str
            Separator between prefix and table name.
        names : list of str, optional
            Tables to write (default: all).

        Returns
        -------
        list of Path
            The files written.
        """
        names = list(self.tables) if names is None else list(names)
        missing = [n for n in names if n not in self.tables]
        if missing:
            raise KeyError(
                f"no table named {', '.join(map(repr, missing))}; available tables: "
                f"{', '.join(self.tables) or '(none)'}"
            )
        out_dir = Path(output_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        start = self._prefix(prefix, prefix_sep)
        paths = []
        for name in names:
            table = self.tables[name]
            index = (
                isinstance(table.index, pd.MultiIndex)
                or table.index.name is not None
                or not (
                    isinstance(table.index, pd.RangeIndex)
                    and table.index.start == 0
                    and table.index.step == 1
                )
            )
            path = out_dir / f"{start}{name}.tsv"
            table.to_csv(path, sep="\t", index=index)
            paths.append(path)
        return paths

    def to_zarr(
        self,
        path_or_url: str | Path,
        overwrite: bool = False,
        *,
        inputs: bool = True,
        **storage_options: Any,
    ) -> str:
        """Persist the result as a Zarr v3 group, atomically (see :mod:`.store`).

        Parameters
        ----------
        path_or_url : str or Path
            Destination folder or fsspec URL (``memory://``, ``s3://`` ...).
        overwrite : bool
            Replace an existing result there.
        inputs : bool
            Also store the inputs (:meth:`get_inputs`: the studysets the estimator was
            fitted on), so that the reopened result can be corrected by Monte Carlo or
            diagnosed without them at hand.
        **storage_options
            fsspec options for URLs.

        Returns
        -------
        str
            The location written. Lazy maps are computed while writing (one pass).
        """
        from nimare_dask.results.store import write_result

        return write_result(
            self, path_or_url, overwrite=overwrite, inputs=inputs, **storage_options
        )

    def __repr__(self) -> str:
        est = (self.estimator_info or {}).get("class", "None")
        return (
            f"MetaResult(estimator={est}, grid={self.grid.name!r}, maps={self.maps_names}, "
            f"tables={list(self.tables)}{', lazy' if self.is_lazy else ''})"
        )

    def _info_json(self) -> dict:
        """JSON-able description of everything but the arrays (used by the store)."""
        return {
            "description": self.description,
            "references": self.references,
            "estimator": self.estimator_info,
            "corrector": self.corrector_info,
            "diagnostics": [
                d if isinstance(d, dict) and "class" in d else object_info(d)
                for d in self.diagnostics
            ],
        }
