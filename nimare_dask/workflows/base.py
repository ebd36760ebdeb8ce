"""NiMARE 0.22.1's workflow classes (``nimare.workflows.base``): the shared machinery.

A workflow holds an estimator, a corrector and diagnostics given as objects, classes or
NiMARE's strings (``"ale"``, ``"montecarlo"``, ``"jackknife"``...). ``fit`` runs the estimator,
the corrector, then every diagnostic on the corrected ``z`` maps NiMARE picks, and with
``output_dir`` writes the maps, the tables, ``boilerplate.txt`` and ``references.bib``.

Settings the workflow fans out (``n_cores``; the diagnostics' ``target_threshold`` =
``voxel_thresh`` and ``cluster_threshold``) are applied to objects passed in only where they
still hold their constructor default, as NiMARE does; the caller's object is copied, never
modified.
"""

from __future__ import annotations

import copy
import inspect
import itertools
import logging
from pathlib import Path
from typing import Any

from nimare_dask.correct import Corrector, FDRCorrector, FWECorrector
from nimare_dask.diagnostics import FocusCounter, Jackknife
from nimare_dask.meta.base import CBMAEstimator, PairwiseCBMAEstimator
from nimare_dask.results import MetaResult

__all__ = ["Workflow", "check_input", "write_outputs"]

LGR = logging.getLogger(__name__)


def _str_to_class(name: str):
    from nimare_dask.meta import cbma

    table = {
        "ale": cbma.ALE,
        "scale": cbma.SCALE,
        "mkdadensity": cbma.MKDADensity,
        "kda": cbma.KDA,
        "mkdachi2": cbma.MKDAChi2,
        "alesubtraction": cbma.ALESubtraction,
        "montecarlo": FWECorrector,
        "bonferroni": FWECorrector,
        "fdr": FDRCorrector,
        "jackknife": Jackknife,
        "focuscounter": FocusCounter,
    }
    if name in table:
        return table[name]
    from nimare_dask.meta import ibma  # IBMA estimators: imported only when named

    ibma_names = {
        "stouffers": "Stouffers",
        "fishers": "Fishers",
        "permutedols": "PermutedOLS",
        "wleastsquares": "WeightedLeastSquares",
        "dersimonianlaird": "DerSimonianLaird",
        "hedges": "Hedges",
        "samplesizebl": "SampleSizeBasedLikelihood",
        "variancebl": "VarianceBasedLikelihood",
    }
    return getattr(ibma, ibma_names[name])


def _init_defaults(cls) -> dict[str, Any]:
    """Constructor parameters named anywhere in the class's MRO, with their defaults."""
    out: dict[str, Any] = {}
    for klass in reversed(inspect.getmro(cls)):
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        for name, p in inspect.signature(init).parameters.items():
            if name != "self" and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL):
                out[name] = p.default
    return out


def _params(obj) -> dict[str, Any]:
    get = getattr(obj, "get_params", None)
    if get is None:
        return {}
    try:
        return dict(get(deep=False))
    except TypeError:
        return dict(get())


def _rebuild(obj, changes: dict[str, Any]):
    """A copy of ``obj`` with ``changes`` (``set_params`` when it has one, else rebuilt)."""
    if hasattr(obj, "set_params"):
        return copy.deepcopy(obj).set_params(**changes)
    params = _params(obj)
    params.update(changes)
    if params.get("target_threshold") is not None:
        params.pop("voxel_thresh", None)  # the deprecated alias, already folded in
    accepted = _init_defaults(type(obj))
    return type(obj)(**{k: v for k, v in params.items() if k in accepted})


def check_input(obj, base: type | tuple, options: tuple[str, ...], **settings: Any):
    """An estimator / corrector / diagnostic from an object, a class or NiMARE's string.

    Parameters
    ----------
    obj : object, class or str
    base : type or tuple of types
        What ``obj`` must be an instance (or subclass) of.
    options : tuple of str
        The strings accepted.
    **settings
        Workflow settings: passed to a class's constructor where it accepts them; applied to
        an object only where it still holds its constructor default.

    Returns
    -------
    object
        A new object (the caller's is never modified).
    """
    if isinstance(obj, str):
        if obj not in options:
            raise ValueError(f'"{obj}" of kind string must be {", ".join(options)}')
        name, obj = obj, _str_to_class(obj)
        if obj is FWECorrector:
            settings = {**settings, "method": name}
    if isinstance(obj, type):
        if not issubclass(obj, base):
            raise ValueError(f"{obj.__name__} is not a {_names(base)}")
        accepted = _init_defaults(obj)
        return obj(**{k: v for k, v in settings.items() if k in accepted})
    if not isinstance(obj, base):
        raise ValueError(f"{type(obj).__name__} is not a {_names(base)}")
    defaults = _init_defaults(type(obj))
    current = _params(obj)
    unset = {
        k: v
        for k, v in settings.items()
        if k in defaults and k in current and _same(current[k], defaults[k])
    }
    if unset:
        LGR.info("Applying workflow settings to %s: %s", type(obj).__name__, unset)
        return _rebuild(obj, unset)
    return copy.deepcopy(obj)


def _same(a, b) -> bool:
    if a is b:
        return True
    try:
        return bool(a == b)
    except (TypeError, ValueError):
        return False


def _names(base) -> str:
    bases = base if isinstance(base, tuple) else (base,)
    return " or ".join(b.__name__ for b in bases)


def write_outputs(result: MetaResult, output_dir: str | Path, prefix: str = "") -> list[Path]:
    """NiMARE's workflow outputs: every map (NIfTI), every table (TSV), ``boilerplate.txt``
    and ``references.bib``.

    Returns
    -------
    list of Path
        The files written.
    """
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = result.save_maps(output_dir=out, prefix=prefix)
    files += result.save_tables(output_dir=out, prefix=prefix)
    from nimare_dask.storage import Location

    loc = Location(str(out))
    loc.write_bytes(f"{prefix}boilerplate.txt", result.description_.encode())
    loc.write_bytes(f"{prefix}references.bib", result.bibtex_.encode())
    return files + [out / f"{prefix}boilerplate.txt", out / f"{prefix}references.bib"]


class Workflow:
    """Base of NiMARE's estimator -> corrector -> diagnostics workflows.

    Parameters
    ----------
    estimator : estimator object, class or str, optional
        Default: the workflow's (ALE for :class:`CBMAWorkflow`).
    corrector : Corrector, class or str, optional
        ``"montecarlo"``, ``"fdr"`` or ``"bonferroni"``; default: the workflow's.
    diagnostics : diagnostic, class, str or list of them, optional
        ``"jackknife"`` or ``"focuscounter"``; default: Jackknife.
    voxel_thresh : float or None, default=1.65
        The diagnostics' ``target_threshold`` (clusters are target values above it).
    cluster_threshold : int or None, default=10
        The diagnostics' minimum cluster size in voxels.
    output_dir : str or Path, optional
        Where to write maps, tables, ``boilerplate.txt`` and ``references.bib``.
    n_cores : int, default=1
        Threads of the local scheduler for every step left at its default (no effect when a
        Dask scheduler or ``distributed.Client`` is active: that one runs the graphs).
    """

    _estm_base: type | tuple = CBMAEstimator
    _estm_options: tuple[str, ...] = ()
    _corr_options: tuple[str, ...] = ("montecarlo", "fdr", "bonferroni")
    _diag_options: tuple[str, ...] = ("jackknife", "focuscounter")
    _mcc_method = "montecarlo"
    _estm_default = "ale"
    _corr_default = FWECorrector
    _diag_default = Jackknife

    def __init__(
        self,
        estimator=None,
        corrector=None,
        diagnostics=None,
        voxel_thresh: float | None = 1.65,
        cluster_threshold: int | None = 10,
        output_dir: str | Path | None = None,
        n_cores: int = 1,
    ):
        self.voxel_thresh = voxel_thresh
        self.cluster_threshold = cluster_threshold
        self.output_dir = output_dir
        self.n_cores = n_cores
        run = {"n_cores": n_cores}
        est = self._estm_default if estimator is None else estimator
        options = self._estm_options + ((est,) if est == self._estm_default else ())
        self.estimator = check_input(est, self._estm_base, options, **run)
        if corrector is None:
            self.corrector = self._corr_default(
                method=self._mcc_method, **_accepted(self._corr_default, run)
            )
        else:
            self.corrector = check_input(corrector, Corrector, self._corr_options, **run)
        diag_settings = {
            "target_threshold": voxel_thresh,
            "cluster_threshold": cluster_threshold,
            **run,
        }
        if diagnostics is None:
            diagnostics = [self._diag_default]
        elif not isinstance(diagnostics, list | tuple):
            diagnostics = [diagnostics]
        self.diagnostics = [
            check_input(d, (Jackknife, FocusCounter), self._diag_options, **diag_settings)
            for d in diagnostics
        ]
        pairwise = isinstance(self.estimator, PairwiseCBMAEstimator)
        if pairwise != (self._estm_base is PairwiseCBMAEstimator) and self._checks_pairwise:
            raise AttributeError(
                f'"{type(self).__name__}" does not work with '
                f"{'pairwise' if pairwise else 'one-sample'} estimators."
            )

    _checks_pairwise = True

    def get_params(self, deep: bool = False) -> dict[str, Any]:
        """The workflow's settings and components."""
        return {
            "estimator": self.estimator,
            "corrector": self.corrector,
            "diagnostics": self.diagnostics,
            "voxel_thresh": self.voxel_thresh,
            "cluster_threshold": self.cluster_threshold,
            "output_dir": self.output_dir,
            "n_cores": self.n_cores,
        }

    def _diagnostic_targets(self, corr: MetaResult) -> list[str]:
        """The corrected z maps NiMARE 0.22.1 runs the diagnostics on."""
        method = getattr(self.corrector, "method", None)
        names = [n for n in corr.maps_names if n.startswith("z_") and "_corr-" in n]
        if isinstance(corr.estimator, PairwiseCBMAEstimator):
            if method != "montecarlo":
                return [n for n in names if "_desc-" in n]
            mass = ("_desc-associationMass", "_desc-group1MinusGroup2Mass")
            picked = [n for n in names if any(lab in n for lab in mass)]
            if not picked:
                voxel = ("_desc-association_level-voxel", "_desc-group1MinusGroup2_level-voxel")
                picked = [n for n in names if any(lab in n for lab in voxel)]
            return picked
        if method == "montecarlo":
            return [n for n in names if "_desc-mass" in n]
        return names

    def _transform(self, result: MetaResult, inputs: dict) -> MetaResult:
        corr = self.corrector.transform(result)
        for target, diag in itertools.product(self._diagnostic_targets(corr), self.diagnostics):
            corr = _rebuild(diag, {"target_image": target}).transform(corr, **inputs)
        if self.output_dir is not None:
            write_outputs(corr, self.output_dir)
        return corr


def _accepted(cls, settings: dict) -> dict:
    accepted = _init_defaults(cls)
    return {k: v for k, v in settings.items() if k in accepted}


def check_drop_invalid(drop_invalid: bool, *studysets) -> None:
    """NiMARE's ``drop_invalid``: True drops analyses without foci (what our estimators do);
    False is refused when an analysis has no foci (NiMARE would keep it)."""
    if drop_invalid:
        return
    for ss in studysets:
        counts = ss.foci_counts() if hasattr(ss, "foci_counts") else None
        if counts is not None and (counts == 0).any():
            ids = list(ss.ids[counts == 0][:5])
            raise ValueError(
                f"drop_invalid=False: analyses without foci {ids} would be kept by NiMARE; "
                "nimare_dask always drops them (they add nothing to a CBMA map). Remove them "
                "or pass drop_invalid=True."
            )
