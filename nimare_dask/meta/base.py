"""Estimator base classes: sklearn-style parameters, kernel configuration, input checks.

An estimator's ``__init__`` only stores its arguments. ``fit`` normalises the input studyset
(an in-memory :class:`~nimare_dask.studyset.Studyset`, a studyset opened from a store, or the
path of a store), builds every lazy piece the result needs, computes them in one
``dask.compute`` and wraps the numbers in a :class:`~nimare_dask.results.MetaResult`.

``kernel__<param>=value`` keyword arguments configure the estimator's kernel (NiMARE's
shorthand); ``kernel_transformer=`` is accepted as an alias of ``kernel=``; any other unknown
keyword raises ``TypeError``.
"""

from __future__ import annotations

import copy
import functools
import inspect
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import dask
import numpy as np
from dask.base import tokenize

from nimare_dask.space import Grid, get_grid
from nimare_dask.studyset import Studyset, open_studyset

__all__ = ["CBMAEstimator", "Estimator", "PairwiseCBMAEstimator", "compute"]

LGR = logging.getLogger(__name__)


def _active_distributed_client():
    try:
        from distributed import default_client

        return default_client()
    except (ImportError, ValueError):
        return None


def _identity(x):
    return x


def _as_delayed(obj: Any) -> Any:
    """A Delayed for any dask collection (xarray objects by their dask data)."""
    import xarray as xr
    from dask.delayed import Delayed

    if isinstance(obj, xr.DataArray):
        obj = obj.data
    if isinstance(obj, Delayed) or not dask.is_dask_collection(obj):
        return obj
    return dask.delayed(_identity, pure=True)(obj, dask_key_name=f"finalize-{tokenize(obj)}")


def compute(*objs: Any, n_cores: int | None = None) -> tuple:
    """``dask.compute`` with the user's scheduler, or a local thread pool of ``n_cores``.

    An active ``distributed.Client`` or a scheduler set with ``dask.config.set(scheduler=...)``
    always wins; otherwise a graph of a few tasks (a single chunk) runs in the calling thread
    and ``n_cores`` sizes the local threaded scheduler.

    Parameters
    ----------
    *objs
        Dask collections (or plain values, returned as they are).
    n_cores : int, optional
        Threads for the local scheduler (None or <= 0: dask's default, all cores).

    Returns
    -------
    tuple
        The computed values, in order (eager).

    Notes
    -----
    Every collection is wrapped in a ``dask.delayed`` first: with dask 2026.8,
    ``dask.compute`` given a mix of arrays and delayed objects returns them grouped by type, not
    in the order given.
    """
    objs = tuple(_as_delayed(o) for o in objs)
    if dask.config.get("scheduler", None) is not None or _active_distributed_client() is not None:
        return dask.compute(*objs)
    n_keys = sum(len(o.__dask_graph__()) for o in objs if hasattr(o, "__dask_graph__"))
    if n_keys <= _SYNC_MAX_KEYS:  # nothing to run in parallel: skip the thread hand-offs
        return dask.compute(*objs, scheduler="sync")
    if n_cores is None or n_cores <= 0:
        return dask.compute(*objs)
    return dask.compute(*objs, scheduler="threads", num_workers=int(n_cores))


#: Graphs this small (one chunk and its combine step) run in the calling thread.
_SYNC_MAX_KEYS = 4


#: NiMARE's ``Estimator`` keywords every CBMA estimator accepts through ``**kwargs``, with
#: their defaults. ``generate_description=False`` leaves the result's description (and its
#: references) empty, as NiMARE. ``memory`` / ``memory_level`` (NiMARE's joblib caching of
#: kernel maps) have no effect here: kernel maps are cached as derived arrays of the
#: studyset store (``nimare_dask.kernels.cache``), whatever these say.
NIMARE_KEYWORDS: Mapping[str, Any] = {
    "generate_description": True,
    "memory": None,
    "memory_level": 0,
}


def _describing_fit(fit):
    """Wrap a subclass's ``fit`` with NiMARE's keywords.

    * ``generate_description=False`` (constructor) empties the result's description;
    * ``dataset=`` / ``dataset1=`` / ``dataset2=`` name the studysets as NiMARE does;
    * ``drop_invalid=True`` is what our estimators do (analyses without foci are dropped);
      ``drop_invalid=False`` is refused when an analysis has no foci;
    * ``ma_maps`` / ``ma_maps1`` / ``ma_maps2`` (NiMARE's precomputed MA maps) must be None:
      MA maps are computed from the foci (and cached in the studyset's store).
    """
    sig = inspect.signature(fit)
    names = list(sig.parameters)
    pairwise = "studyset2" in sig.parameters
    data_names = ("studyset1", "studyset2") if pairwise else ("studyset",)
    nimare_data = ("dataset1", "dataset2") if pairwise else ("dataset",)
    ma_names = ("ma_maps1", "ma_maps2") if pairwise else ("ma_maps",)

    own_drop = "drop_invalid" in sig.parameters  # the subclass handles it itself

    @functools.wraps(fit)
    def wrapped(self, *args, **kwargs):
        drop_invalid = True if own_drop else kwargs.pop("drop_invalid", True)
        for ours, theirs in zip(data_names, nimare_data, strict=True):
            if theirs in kwargs and theirs not in sig.parameters:
                if ours in kwargs:
                    raise TypeError(f"pass {ours}= or {theirs}=, not both")
                kwargs[ours] = kwargs.pop(theirs)
        for name in ma_names:
            if name not in sig.parameters and kwargs.pop(name, None) is not None:
                raise TypeError(
                    f"{type(self).__name__}.fit: {name}= (precomputed MA maps) is not supported; "
                    "MA maps are computed from the studyset's foci (and cached in its store)"
                )
        if not isinstance(drop_invalid, bool | np.bool_):
            raise TypeError(f"drop_invalid must be True or False, got {drop_invalid!r}")
        if not drop_invalid:
            bound = sig.bind_partial(self, *args, **kwargs).arguments
            for name in data_names:
                ss = bound.get(name)
                counts = ss.foci_counts() if isinstance(ss, Studyset) else None
                if counts is not None and (counts == 0).any():
                    raise ValueError(
                        f"drop_invalid=False: analyses without foci {list(ss.ids[counts == 0][:5])}"
                        " would be kept by NiMARE; nimare_dask drops them (they add nothing to "
                        "the maps). Remove them or pass drop_invalid=True."
                    )
        result = fit(self, *args, **kwargs)
        if not getattr(self, "generate_description", True) and hasattr(result, "description"):
            result.description = ""
            result.references = ""
        return result

    extra = [
        inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY, default=None)
        for n in (*nimare_data, *ma_names)
        if n not in names
    ]
    params = [p for p in sig.parameters.values() if p.kind != p.VAR_KEYWORD]
    varkw = [p for p in sig.parameters.values() if p.kind == p.VAR_KEYWORD]
    keyword = (
        []
        if own_drop
        else [inspect.Parameter("drop_invalid", inspect.Parameter.KEYWORD_ONLY, default=True)]
    )
    wrapped.__signature__ = sig.replace(parameters=[*params, *keyword, *extra, *varkw])
    wrapped._describes = True
    return wrapped


class Estimator:
    """Base of every estimator: parameters in the sklearn style.

    Subclasses list their parameters in ``__init__``'s signature and store each one in an
    attribute of the same name. :meth:`get_params` reads them back; :meth:`set_params` sets
    them, including ``kernel__<param>`` for the kernel's own parameters.
    """

    #: Keyword arguments that ``__init__`` accepts under another name (NiMARE's spelling).
    _aliases: Mapping[str, str] = {}
    #: NiMARE keywords (:data:`NIMARE_KEYWORDS`) this class accepts through ``**kwargs``.
    _nimare_keywords: tuple[str, ...] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        fit = cls.__dict__.get("fit")
        if fit is not None and not getattr(fit, "_describes", False):
            cls.fit = _describing_fit(fit)

    @classmethod
    def _param_names(cls) -> list[str]:
        sig = inspect.signature(cls.__init__)
        names = [
            p.name
            for p in sig.parameters.values()
            if p.name != "self" and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)
        ]
        return names + [k for k in cls._nimare_keywords if k not in names]

    def _init_nimare_keywords(self, kwargs: dict) -> None:
        """Pop NiMARE's ``generate_description`` / ``memory`` / ``memory_level`` from kwargs."""
        for key in self._nimare_keywords:
            if key in inspect.signature(type(self).__init__).parameters:
                continue
            value = kwargs.pop(key, NIMARE_KEYWORDS[key])
            if key == "generate_description" and not isinstance(value, bool | np.bool_):
                raise TypeError(f"generate_description must be True or False, got {value!r}")
            if key == "memory_level" and not isinstance(value, int | np.integer):
                raise TypeError(f"memory_level must be an int, got {value!r}")
            setattr(self, key, value)

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """The estimator's parameters.

        Parameters
        ----------
        deep : bool
            Also list the kernel's parameters as ``kernel__<param>``.

        Returns
        -------
        dict
        """
        out = {name: getattr(self, name, NIMARE_KEYWORDS.get(name)) for name in self._param_names()}
        kernel = out.get("kernel")
        if deep and kernel is not None and hasattr(kernel, "get_params"):
            for key, value in kernel.get_params().items():
                out[f"kernel__{key}"] = value
        return out

    def set_params(self, **params: Any) -> Estimator:
        """Set parameters (``kernel__<param>`` sets the kernel's); unknown names raise.

        Returns
        -------
        Estimator
            ``self``.
        """
        names = set(self._param_names())
        kernel_params = {}
        for key, value in params.items():
            key = self._aliases.get(key, key)
            if key.startswith("kernel__") and "kernel" in names:
                kernel_params[key[len("kernel__") :]] = value
            elif key in names:
                setattr(self, key, value)
            else:
                raise TypeError(
                    f"{type(self).__name__} has no parameter {key!r}; "
                    f"valid parameters: {sorted(names)} and kernel__<param>"
                )
        if kernel_params:
            kernel = copy.deepcopy(self.kernel)
            _set_kernel_params(kernel, kernel_params, type(self).__name__)
            self.kernel = kernel
        return self

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self.get_params(deep=False).items())
        return f"{type(self).__name__}({params})"


def _build_kernel(kernel: Any, default_cls: type, kernel_kwargs: dict, owner: str):
    """The kernel object an estimator stores: an instance (copied if kwargs modify it)."""
    if kernel is None:
        kernel = default_cls
    if isinstance(kernel, type):
        try:
            return kernel(**kernel_kwargs)
        except TypeError as err:
            raise TypeError(
                f"{owner}: invalid kernel__ argument(s) for {kernel.__name__}: {err}"
            ) from None
    if kernel_kwargs:
        kernel = copy.deepcopy(kernel)
        _set_kernel_params(kernel, kernel_kwargs, owner)
    return kernel


def _set_kernel_params(kernel: Any, params: dict, owner: str) -> None:
    """``kernel.set_params``; an unknown parameter name raises ``TypeError``."""
    names = set(kernel.get_params()) if hasattr(kernel, "get_params") else set()
    unknown = sorted(set(params) - names)
    if unknown:
        raise TypeError(
            f"{owner}: {type(kernel).__name__} has no parameter(s) {unknown} "
            f"(got kernel__{unknown[0]}); valid: {sorted(names)}"
        )
    kernel.set_params(**params)


def _split_kwargs(owner: str, kwargs: dict) -> dict:
    """Keep ``kernel__*`` keyword arguments (prefix removed); any other one raises."""
    kernel_kwargs = {}
    for key, value in kwargs.items():
        if key.startswith("kernel__"):
            kernel_kwargs[key[len("kernel__") :]] = value
        else:
            raise TypeError(f"{owner}() got an unexpected keyword argument {key!r}")
    return kernel_kwargs


class CBMAEstimator(Estimator):
    """Base of the coordinate-based estimators (one-sample: ALE, MKDADensity, KDA, SCALE).

    Parameters
    ----------
    kernel : kernel object or class, optional
        The kernel (default: the estimator's own, configured by ``kernel__*``).
    mask : str, Grid, nibabel image or path, optional
        Analysis mask (default: the studyset's grid).
    random_state : int, optional
        Seed of every random step.
    n_cores : int, optional
        Threads of the local scheduler when no Dask scheduler is configured (no effect when a
        Dask scheduler or ``distributed.Client`` is active: that one runs the graph).
    generate_description : bool, default=True
        NiMARE's keyword: False leaves the result's methods description empty.
    memory, memory_level
        NiMARE's joblib-caching keywords, accepted for ported scripts; no effect here (kernel
        maps are cached in the studyset store, see :mod:`nimare_dask.kernels.cache`).
    """

    _default_kernel: type | None = None
    _aliases = {"kernel_transformer": "kernel"}
    _nimare_keywords = tuple(NIMARE_KEYWORDS)

    def _init_kernel(self, kernel, kwargs: dict) -> None:
        self._init_nimare_keywords(kwargs)
        if "kernel_transformer" in kwargs:
            if kernel is not None:
                raise TypeError("pass either kernel= or kernel_transformer=, not both")
            kernel = kwargs.pop("kernel_transformer")
        kernel_kwargs = _split_kwargs(type(self).__name__, kwargs)
        self.kernel = _build_kernel(
            kernel, self._default_kernel, kernel_kwargs, type(self).__name__
        )

    def _check_mask_coverage(self) -> str:
        coverage = getattr(self, "mask_coverage", "brain")
        if coverage not in ("brain", "gm"):
            raise ValueError(
                f"{type(self).__name__}: mask_coverage must be 'brain' or 'gm'; got {coverage!r}"
            )
        return coverage

    def _coverage_pool(self, grid: Grid) -> np.ndarray | None:
        """Grid indices random foci are drawn from (None: every in-mask voxel, the default)."""
        coverage = self._check_mask_coverage()
        if coverage == "brain":
            return None
        return np.ascontiguousarray(grid.voxel_ijk[grid.coverage(coverage)], dtype=np.int64)

    def _coverage_text(self) -> str:
        """How random foci were placed, for methods texts."""
        if getattr(self, "mask_coverage", "brain") == "gm":
            return "random grey-matter voxels (MNI152 grey-matter probability > 0.1)"
        return "random in-mask voxels"

    # ------------------------------------------------------------------ input handling
    def _grid(self, studyset: Studyset) -> Grid:
        mask = getattr(self, "mask", None)
        return studyset.grid if mask is None else get_grid(mask)

    def _prepare(self, studyset: Any, label: str = "studyset") -> Studyset:
        """Normalise the input: open a store path, apply the mask, drop analyses without foci.

        Analyses without foci carry no information and are dropped, as NiMARE does
        (``drop_invalid=True``); foci outside the mask are kept (they contribute nothing).
        """
        self._check_mask_coverage()
        if isinstance(studyset, str | Path):
            studyset = open_studyset(studyset)
        if not isinstance(studyset, Studyset):
            raise TypeError(
                f"{type(self).__name__}.fit expects a nimare_dask Studyset (or the path of a "
                f"studyset store) for {label}; got {type(studyset).__name__}"
            )
        grid = self._grid(studyset)
        if not grid.same_as(studyset.grid):
            store = studyset.store
            studyset = studyset.with_grid(grid)
            studyset.store = store
        counts = studyset.foci_counts()
        if len(studyset) == 0 or not (counts > 0).any():
            raise ValueError(f"{type(self).__name__}: {label} has no analyses with foci")
        if (counts == 0).any():
            LGR.info(
                "%s: dropping %d analyses without foci from %s",
                type(self).__name__,
                int((counts == 0).sum()),
                label,
            )
            studyset = studyset.slice(studyset.ids[counts > 0])
        return studyset

    def _check_sample_sizes(self, studyset: Studyset, label: str = "studyset") -> None:
        """ALE kernels without a fixed width need every analysis's sample size."""
        kernel = self.kernel
        if getattr(kernel, "fwhm", 1) is not None or getattr(kernel, "sample_size", 1) is not None:
            return
        missing = studyset.ids[~np.isfinite(studyset.sample_sizes)]
        if missing.size:
            shown = ", ".join(missing[:25]) + (
                f", ... (+{missing.size - 25} more)" if missing.size > 25 else ""
            )
            raise ValueError(
                f"{type(self).__name__}: the ALE kernel needs each analysis's sample size, but "
                f"{missing.size} analyses in {label} have none: {shown}. Add 'sample_sizes' to "
                "their metadata, or fix the kernel width (kernel__fwhm=... or "
                "kernel__sample_size=...)."
            )

    def _compute(self, *objs: Any) -> tuple:
        return compute(*objs, n_cores=getattr(self, "n_cores", None))

    def _kernel_name(self) -> str:
        return type(self.kernel).__name__.replace("Kernel", "")

    def _kernel_description(self) -> str:
        for attr in ("description", "_generate_description"):
            fn = getattr(self.kernel, attr, None)
            if callable(fn):
                try:
                    return str(fn())
                except Exception:  # a kernel that cannot describe itself is not an error
                    return ""
        return ""


class PairwiseCBMAEstimator(CBMAEstimator):
    """Base of the two-group estimators (MKDAChi2, ALESubtraction)."""
