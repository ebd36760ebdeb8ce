"""The Corrector base class: dispatch to an estimator's own correction or a generic one.

A corrector never mutates the result it is given: :meth:`Corrector.transform` returns a new
:class:`~nimare_dask.results.MetaResult` with the corrected maps added under names ending in
``_corr-<FWE|FDR>_method-<method>`` (NiMARE's grammar, made by
:func:`~nimare_dask.results.naming.add_correction`).

Dispatch follows NiMARE: when the result's estimator has a method
``correct_<fwe|fdr>_<method>(result, **kwargs)``, it is used (it knows the null model); otherwise
the corrector's generic implementation is used (Bonferroni, Benjamini-Hochberg/-Yekutieli),
which works on every uncorrected ``p`` map of any result.

A result reopened from its store has no estimator object. For a method that only the
estimator provides (Monte Carlo FWE), the estimator the result records is rebuilt and refitted
on the inputs stored with the result (:func:`~nimare_dask.meta.rebuild.refit_estimator`); an
error says what is missing when the store does not keep them.
"""

from __future__ import annotations

import inspect as _inspect
from collections.abc import Callable
from typing import Any, ClassVar

import dask
import numpy as np

from nimare_dask.results import Correction, MetaResult
from nimare_dask.results.naming import add_correction
from nimare_dask.stats.transforms import P_FLOOR_FLOAT32, nlogp_to_logp, nlogp_to_p, nlogp_to_z

__all__ = ["Corrector"]

_LN10 = float(np.log(10.0))
_P_FLOOR_FLOAT64 = float(np.nextafter(0.0, 1.0))


def _accepted_keywords(func: Callable) -> set[str] | None:
    """Keyword names ``func`` accepts after its first (result) argument; None for ``**kw``."""
    try:
        sig = _inspect.signature(func)
    except (TypeError, ValueError):
        return None
    params = list(sig.parameters.values())
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return None
    if params and params[0].kind in (params[0].POSITIONAL_ONLY, params[0].POSITIONAL_OR_KEYWORD):
        params = params[1:]  # the result, passed positionally
    return {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}


def _suffixed(name: str, corr: str, method: str) -> str:
    try:
        return add_correction(name, corr, method)
    except ValueError:
        # Not in the grammar (or already corrected): append as NiMARE does.
        return f"{name}_corr-{corr}_method-{method}"


class Corrector:
    """Base class of :class:`~nimare_dask.correct.FWECorrector` and ``FDRCorrector``.

    Subclasses set ``_kind`` (``"fwe"``/``"fdr"``), ``_label`` (``"FWE"``/``"FDR"``),
    ``_methods`` (the methods the constructor accepts), ``_generic`` (method -> name of the
    generic implementation on the corrector) and ``_defaults`` (named parameters forwarded to an
    estimator's correction method; ``None`` means unset, i.e. the method's own default, as in
    NiMARE). A named parameter that is set but that the method receiving it does not take
    raises ``TypeError`` at :meth:`transform` (``n_cores`` excepted: it sizes the scheduler).
    """

    _kind: ClassVar[str] = ""
    _label: ClassVar[str] = ""
    _methods: ClassVar[tuple[str, ...]] = ()
    _generic: ClassVar[dict[str, str]] = {}
    _defaults: ClassVar[dict[str, Any]] = {}
    #: Named parameters that only size the local scheduler: dropped (not an error) when the
    #: correction method does not take them (documented on each corrector).
    _scheduler_only: ClassVar[tuple[str, ...]] = ("n_cores",)
    #: Named parameters a generic method uses itself (FDR's ``alpha``).
    _generic_ok: ClassVar[tuple[str, ...]] = ()

    def __init__(self, method: str, named: dict[str, Any], kwargs: dict[str, Any]) -> None:
        if method not in self._methods:
            raise ValueError(
                f"unsupported {self._label} correction method {method!r}; choose one of "
                f"{', '.join(self._methods)}"
            )
        self.method = method
        for key, value in named.items():
            setattr(self, key, value)
        self._named = dict(named)
        # NiMARE: a None is an unset parameter (the correction method's own default)
        self.parameters = {k: v for k, v in kwargs.items() if v is not None}

    # ------------------------------------------------------------------ info
    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """Constructor parameters (for :attr:`MetaResult.corrector_info`).

        Parameters
        ----------
        deep : bool, default=True
            As NiMARE: also list the parameters of any parameter that has ``get_params``, as
            ``<name>__<param>`` (correctors' parameters are plain values, so this rarely adds
            anything).

        Returns
        -------
        dict
            ``method``, the named parameters and any extra keyword arguments.
        """
        out = {"method": self.method, **self._named, **self.parameters}
        if deep:
            for key, value in list(out.items()):
                if hasattr(value, "get_params") and not isinstance(value, type):
                    out.update((f"{key}__{k}", v) for k, v in value.get_params().items())
        return out

    @property
    def name_suffix(self) -> str:
        """The suffix this corrector appends to map names."""
        return f"_corr-{self._label}_method-{self.method}"

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self.get_params(deep=False).items())
        return f"{type(self).__name__}({params})"

    @classmethod
    def _estimator_methods(cls, estimator: Any) -> list[str]:
        if estimator is None:
            return []
        prefix = f"correct_{cls._kind}_"
        return sorted(
            name[len(prefix) :]
            for name in dir(estimator)
            if name.startswith(prefix) and callable(getattr(estimator, name, None))
        )

    @classmethod
    def inspect(cls, result: MetaResult) -> list[str]:
        """Methods available for this result: generic ones and the estimator's own.

        Parameters
        ----------
        result : MetaResult
            A result (its ``estimator`` decides the estimator-specific methods).

        Returns
        -------
        list of str
            Sorted method names valid for ``method=``.
        """
        estimator = result.estimator
        if estimator is None:  # a reopened result: the methods of the estimator it records
            from nimare_dask.meta.rebuild import estimator_class

            estimator = estimator_class(result.estimator_info)
        return sorted(
            set(cls._generic)
            | set(cls._estimator_methods(estimator))
            | set(cls._own_methods(estimator))
        )

    # ------------------------------------------------------------------ dispatch
    def _estimator_kwargs(self, func: Callable) -> dict[str, Any]:
        accepted = _accepted_keywords(func)
        kwargs: dict[str, Any] = {}
        for key, value in self._named.items():
            if value is None:
                continue
            if accepted is None or key in accepted:
                kwargs[key] = value
            elif key not in self._scheduler_only:
                raise TypeError(
                    f"{type(self).__name__}(method={self.method!r}) was given {key}={value!r}, "
                    f"which {getattr(func, '__qualname__', func)} does not accept"
                )
        unexpected = sorted(set(self.parameters) - (accepted or set(self.parameters)))
        if unexpected:
            raise TypeError(
                f"{type(self).__name__}(method={self.method!r}) was given "
                f"{', '.join(map(repr, unexpected))}, which "
                f"{getattr(func, '__qualname__', func)} does not accept; it accepts "
                f"{', '.join(sorted(accepted or [])) or '(nothing)'}"
            )
        kwargs.update(self.parameters)
        return kwargs

    def _check_generic_kwargs(self) -> None:
        """A generic method takes no keyword: any set parameter is an error (as NiMARE's
        validation of ``correct_<kind>_<method>(nlogp)``), ``n_cores`` and the corrector's own
        ``_generic_ok`` parameters excepted."""
        given = {
            k: v
            for k, v in self._named.items()
            if v is not None and k not in self._scheduler_only and k not in self._generic_ok
        }
        given.update(self.parameters)
        if given:
            raise TypeError(
                f"{type(self).__name__}(method={self.method!r}) does not accept "
                f"{', '.join(f'{k}={v!r}' for k, v in sorted(given.items()))}; these "
                "parameters are for an estimator's own correction method"
            )

    def _own_method(self, result: MetaResult) -> Callable | None:
        """A method this package provides for the result's estimator (neither generic nor on
        the estimator), or None; subclasses override (ALE predictive FWE)."""
        return None

    @classmethod
    def _own_methods(cls, estimator: Any) -> list[str]:
        """Methods :meth:`_own_method` provides for ``estimator`` (an instance or a class)."""
        return []

    def _missing_method(self, result: MetaResult) -> Exception:
        est = type(result.estimator).__name__ if result.estimator is not None else "None"
        return ValueError(
            f"{self._label} method {self.method!r} is not available for estimator {est}; "
            f"available: {', '.join(self.inspect(result))}"
        )

    def transform(self, result: MetaResult) -> MetaResult:
        """Correct ``result`` and return a new result with the corrected maps added.

        Parameters
        ----------
        result : MetaResult
            An uncorrected (or partly corrected) result.

        Returns
        -------
        MetaResult
            A copy of ``result`` plus maps and tables named ``<name>_corr-<X>_method-<m>``, the
            correction's description and references, and ``corrector`` set to this corrector.
            Generic corrections are computed (one ``dask.compute`` for their inputs); an
            estimator's method decides what it returns.
        """
        if not isinstance(result, MetaResult):
            raise TypeError(
                f"{type(self).__name__}.transform needs a MetaResult, not {type(result).__name__}"
            )
        attr = f"correct_{self._kind}_{self.method}"
        if result.estimator is None and self.method not in self._generic:
            result = self._with_refitted_estimator(result, attr)
        est_method = getattr(result.estimator, attr, None) if result.estimator is not None else None
        if not callable(est_method):
            est_method = self._own_method(result)
        if callable(est_method):
            out = Correction.coerce(est_method(result, **self._estimator_kwargs(est_method)))
        elif self.method in self._generic:
            self._check_generic_kwargs()
            out = getattr(self, self._generic[self.method])(result)
        else:
            raise self._missing_method(result)
        return self._attach(result, out)

    def _with_refitted_estimator(self, result: MetaResult, attr: str) -> MetaResult:
        """A reopened result (no estimator object) whose recorded estimator has ``attr``: a
        copy with the estimator rebuilt and refitted on the result's inputs (stored with it,
        or given with ``set_inputs``); a clear error when the inputs are missing."""
        from nimare_dask.meta.rebuild import estimator_class, refit_estimator

        cls = estimator_class(result.estimator_info)
        if cls is None or not (
            callable(getattr(cls, attr, None)) or self.method in self._own_methods(cls)
        ):
            return result
        est = refit_estimator(result, why=f"{type(self).__name__}(method={self.method!r})")
        out = result.copy()
        out.estimator = est
        return out

    def _attach(self, result: MetaResult, out: Correction) -> MetaResult:
        new = result.copy()
        new.add_maps({_suffixed(k, self._label, self.method): v for k, v in out.maps.items()})
        for name, table in out.tables.items():
            new.tables[_suffixed(name, self._label, self.method)] = table
        new.null_distributions.update(out.null_distributions)
        new.add_description(out.description, out.references)
        new.corrector = self
        return new

    # ------------------------------------------------------------------ generic maths
    @staticmethod
    def _p_maps(result: MetaResult) -> list[str]:
        """Uncorrected p maps: ``p`` and ``p_*`` without a ``_corr-`` entity."""
        return [
            n for n in result.maps_names if (n == "p" or n.startswith("p_")) and "_corr-" not in n
        ]

    def _correct_p_maps(
        self, result: MetaResult, correct: Callable[[np.ndarray], np.ndarray]
    ) -> dict[str, np.ndarray]:
        """Apply ``correct`` (``-ln p`` -> ``-ln p_corr``, NaN-free 1-D) to every p map.

        The p, z and logp outputs follow NiMARE: the ``-ln p`` to correct comes from the p map,
        except where p sits at the float32 floor, where the logp map (which has headroom) is
        used; NaN voxels are left out of the correction (and out of the count of tests) and
        stay NaN; z is two-tailed, signed like the uncorrected z.
        """
        p_names = self._p_maps(result)
        if not p_names:
            raise ValueError(
                f"{type(self).__name__}(method={self.method!r}) needs a 'p' map (or 'p_*' maps); "
                f"this result has: {', '.join(result.maps_names) or '(no maps)'}"
            )
        names = result.maps_names
        wanted: dict[str, tuple[str, str | None, str | None]] = {}
        for p_name in p_names:
            z_name, logp_name = "z" + p_name[1:], "logp" + p_name[1:]
            wanted[p_name] = (
                p_name,
                z_name if z_name in names else None,
                logp_name if logp_name in names else None,
            )
        needed = sorted({n for triple in wanted.values() for n in triple if n is not None})
        (arrays,) = dask.compute({n: result.maps[n].data for n in needed})
        corrected: dict[str, np.ndarray] = {}
        for p_name, (_, z_name, logp_name) in wanted.items():
            p = np.asarray(arrays[p_name])
            nlogp = -np.log(np.clip(p.astype(np.float64), _P_FLOOR_FLOAT64, 1.0))
            if logp_name is not None:
                floor = P_FLOOR_FLOAT32 if p.dtype == np.float32 else _P_FLOOR_FLOAT64
                floored = p <= floor
                if floored.any():
                    logp = np.asarray(arrays[logp_name], dtype=np.float64)
                    nlogp = np.where(floored, _LN10 * logp, nlogp)
            evaluated = ~np.isnan(nlogp)
            nlogp_corr = np.full(nlogp.shape, np.nan)
            nlogp_corr[evaluated] = correct(nlogp[evaluated])
            corrected[p_name] = nlogp_to_p(nlogp_corr)
            if z_name is not None:
                sign = np.sign(np.asarray(arrays[z_name]))
                corrected[z_name] = (nlogp_to_z(nlogp_corr, tail="two") * sign).astype(np.float32)
            if logp_name is not None:
                corrected[logp_name] = nlogp_to_logp(nlogp_corr)
        return corrected
