"""What Jackknife and FocusCounter share: target clusters, tails, tables, the result they return.

Follows NiMARE 0.22.1's ``Diagnostics.transform`` (``NIMARE_FACTS.md`` sections 1.13 and 2.14):

* clusters are those of :func:`~nimare_dask.diagnostics.clusters.clusters_table` on the
  target map at ``target_threshold`` (0 when None) with ``cluster_threshold``; the map is
  two-sided when the estimator has a ``two_sided`` attribute set, otherwise when the target
  has negative values;
* for a corrected cluster-level target (``..._level-cluster_corr-...``) the table's peaks come
  from the uncorrected map it was made from (``z`` for
  ``z_desc-size_level-cluster_corr-FWE_method-montecarlo``), restricted to the clusters;
* tables ``<target>_tab-clust`` (IDs ``PositiveTail 1``, subpeaks ``PositiveTail 1a`` ...) and
  ``<target>_diag-<Name>_tab-counts_tail-<positive|negative>`` (column ``id`` then one column
  per cluster of that tail's label map); two tails of a one-sample estimator are merged into
  one ``<target>_diag-<Name>_tab-counts`` table; maps ``label_<target minus its first
  entity>_tail-<tail>``;
* pairwise estimators: the positive tail is explained by group 1's analyses, the negative tail
  by group 2's (only with ``display_second_group=True`` when both tails have clusters).

Differences from NiMARE: ``transform`` returns a new result and leaves its input alone; where
no cluster exists the counts table has only the ``id`` column (NiMARE stores ``None``) and the
label map is all zeros (NiMARE stores ``None``); label maps are int32 (NiMARE: float32).
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from nimare_dask.diagnostics.clusters import clusters_table
from nimare_dask.meta.base import PairwiseCBMAEstimator
from nimare_dask.results import MetaResult
from nimare_dask.studyset import Studyset

__all__ = ["Diagnostics", "TailContext"]

LGR = logging.getLogger(__name__)

POSITIVE = "PositiveTail"
NEGATIVE = "NegativeTail"
_TAIL_OF = {POSITIVE: "positive", NEGATIVE: "negative"}
_LABEL_OF = {"positive": POSITIVE, "negative": NEGATIVE}

#: Maps whose values the jackknife compares, in NiMARE's order of preference.
VALUE_MAPS = ("stat", "est", "stat_desc-group1MinusGroup2", "z_desc-association", "z")


@dataclass
class TailContext:
    """One tail's clusters and the analyses that explain them.

    Attributes
    ----------
    sign : str
        ``"PositiveTail"`` or ``"NegativeTail"``.
    labels : numpy.ndarray
        (n_voxels,) int32 label map (0 outside clusters).
    cluster_ids : list of int
        Labels present, ascending.
    group : int
        0 for a one-sample estimator, 1 or 2 for the group of a pairwise estimator.
    studyset : Studyset
        The analyses explaining this tail (as the estimator used them).
    """

    sign: str
    labels: np.ndarray
    cluster_ids: list[int]
    group: int
    studyset: Studyset

    @property
    def columns(self) -> list[str]:
        """Counts-table column names of the clusters."""
        return [f"{self.sign} {c}" for c in self.cluster_ids]

    @property
    def voxel_groups(self) -> list[np.ndarray]:
        """In-mask voxel indices of each cluster (ascending), in ``cluster_ids`` order."""
        order = np.argsort(self.labels, kind="stable")
        sorted_labels = self.labels[order]
        out = []
        for c in self.cluster_ids:
            lo, hi = np.searchsorted(sorted_labels, [c, c + 1])
            out.append(order[lo:hi])
        return out


def _strip_size_mass(name: str) -> str:
    """Drop a cluster ``size``/``mass`` description (``z_desc-size`` -> ``z``)."""
    if "_desc-" not in name:
        return name
    head, rest = name.split("_desc-", 1)
    desc, sep, tail = rest.partition("_")
    suffix = f"_{tail}" if sep else ""
    if desc in {"size", "mass"}:
        return head + suffix
    for word in ("Size", "Mass", "size", "mass"):
        if desc.endswith(word):
            desc = desc[: -len(word)]
            break
    return f"{head}_desc-{desc}{suffix}" if desc else head + suffix


def peak_map_name(target_image: str) -> str:
    """The uncorrected map a corrected (cluster- or voxel-level) map was made from.

    Parameters
    ----------
    target_image : str
        E.g. ``z_desc-size_level-cluster_corr-FWE_method-montecarlo``.

    Returns
    -------
    str
        E.g. ``z``.
    """
    base = target_image.split("_corr-", 1)[0].replace("_level-cluster", "")
    base = base.replace("_level-voxel", "")
    return _strip_size_mass(base)


def _is_corrected_cluster_map(name: str) -> bool:
    return "_level-cluster" in name and "_corr-" in name


def _is_ibma(est) -> bool:
    from nimare_dask.meta.ibma import IBMAEstimator

    return isinstance(est, IBMAEstimator)


def _ibma_studyset(result: MetaResult, studyset, studyset2) -> Studyset:
    """The analyses an image-based estimator used (NiMARE: ``estimator.inputs_["id"]``).

    Given a studyset, the estimator's own selection is applied to it (its mask, analyses
    with every required image and sample size); else the result's inputs (``set_inputs``,
    stored with a reopened result) or, as NiMARE's diagnostics do, the live estimator's
    last fit. Images the fit dropped for holding no usable voxel are left out (known while
    the live estimator's last fit is the result's), as NiMARE leaves them out of
    ``inputs_["id"]``.
    """
    est = result.estimator
    if studyset2 is not None:
        raise ValueError(f"{type(est).__name__} is a one-sample estimator: studyset2 is unused")
    if studyset is None:
        known = result.get_inputs(estimator=True)
        studyset = known.get("studyset")
        if studyset is None:
            raise ValueError(
                f"{type(est).__name__} result: the diagnostics need the studyset the result "
                "was fitted on; pass transform(result, studyset=...)"
            )
    inputs = getattr(est, "inputs_", None) or {}
    dropped: list = []
    if inputs.get("studyset") is result.get_inputs(estimator=False).get("studyset", studyset):
        # the live estimator's last fit made this result: the images it dropped
        dropped = list((inputs.get("context") or {}).get("dropped", []))
    studyset = est._prepare(studyset)
    ok = est._usable_analyses(studyset)
    if dropped:
        ok &= ~np.isin(studyset.ids, dropped)
    if not ok.all():
        studyset = studyset.slice(studyset.ids[ok])
    if not studyset.grid.same_as(result.grid):
        raise ValueError(
            "the studyset's grid differs from the result's grid; pass the studyset the "
            "result was fitted on"
        )
    return studyset


class Diagnostics:
    """Base class of :class:`~nimare_dask.diagnostics.Jackknife` and ``FocusCounter``.

    Parameters
    ----------
    target_image : str
        Map whose clusters are characterised.
    voxel_thresh : float, optional
        Deprecated alias of ``target_threshold`` (as in NiMARE; gives a FutureWarning).
    cluster_threshold : int, optional
        Minimum cluster size in voxels.
    display_second_group : bool
        Pairwise estimators: also explain the negative tail with group 2's analyses.
    n_cores : int, optional
        Threads of the local scheduler when no Dask scheduler is configured.
    target_threshold : float, optional
        Threshold of ``target_image`` defining the clusters (None: 0). For a cluster-level
        corrected z map, 1.645 keeps clusters with one-sided FWE p < 0.05.
    """

    def __init__(
        self,
        target_image: str = "z_desc-size_level-cluster_corr-FWE_method-montecarlo",
        voxel_thresh: float | None = None,
        cluster_threshold: int | None = None,
        display_second_group: bool = False,
        n_cores: int | None = None,
        target_threshold: float | None = None,
    ) -> None:
        if target_threshold is not None and voxel_thresh is not None:
            raise ValueError("pass only one of target_threshold and the deprecated voxel_thresh")
        if voxel_thresh is not None:
            warnings.warn(
                "voxel_thresh is deprecated for diagnostics; use target_threshold",
                FutureWarning,
                stacklevel=2,
            )
            target_threshold = voxel_thresh
        self.target_image = target_image
        self.voxel_thresh = voxel_thresh
        self.target_threshold = target_threshold
        self.cluster_threshold = cluster_threshold
        self.display_second_group = display_second_group
        self.n_cores = n_cores

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """The constructor's parameters.

        Returns
        -------
        dict
        """
        return {
            "target_image": self.target_image,
            "voxel_thresh": self.voxel_thresh,
            "cluster_threshold": self.cluster_threshold,
            "display_second_group": self.display_second_group,
            "n_cores": self.n_cores,
            "target_threshold": self.target_threshold,
        }

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"

    # ------------------------------------------------------------------ subclass hook
    def _contributions(
        self,
        result: MetaResult,
        contexts: list[TailContext],
        value_map: str | None,
        studysets: tuple,
    ) -> list[np.ndarray]:  # pragma: no cover - overridden
        """One (n_analyses, n_clusters) array per tail context.

        ``studysets`` is ``(studyset, studyset2)`` as the estimator used them (``studyset2``
        None for one-sample estimators): passed along, never kept on ``self``, so one
        diagnostic may run on several results at once.
        """
        raise NotImplementedError

    #: Whether the subclass compares a value map (Jackknife) or not (FocusCounter).
    _needs_value_map = True

    def _check_result(self, result: MetaResult) -> None:
        """Refuse a result this diagnostic cannot characterise (subclasses extend)."""

    # ------------------------------------------------------------------ inputs
    @staticmethod
    def _studysets(result: MetaResult, studyset, studyset2) -> tuple:
        """The studysets the result was fitted on: given, else the result's own inputs (given
        with ``set_inputs`` or stored with a reopened result; not the live estimator's, which
        may have been fitted again since)."""
        est = result.estimator
        if _is_ibma(est):
            return _ibma_studyset(result, studyset, studyset2), None
        pairwise = isinstance(est, PairwiseCBMAEstimator)
        known = result.get_inputs(estimator=False) if studyset is None or studyset2 is None else {}
        if pairwise:
            s1 = studyset if studyset is not None else known.get("studyset1")
            s2 = studyset2 if studyset2 is not None else known.get("studyset2")
            missing = s1 is None or s2 is None
        else:
            s1 = studyset if studyset is not None else known.get("studyset")
            s2 = None
            missing = s1 is None
        if missing:
            need = "studyset=..., studyset2=..." if pairwise else "studyset=..."
            raise ValueError(
                f"{type(est).__name__} result: the diagnostics need the studyset(s) the result "
                f"was fitted on; pass transform(result, {need})"
            )
        prepare = getattr(est, "_prepare", None)
        if callable(prepare):
            # the analyses the estimator used (those with foci), on the estimator's grid
            s1 = prepare(s1, "studyset1" if pairwise else "studyset")
            if s2 is not None:
                s2 = prepare(s2, "studyset2")
        for ss in (s1, s2):
            if ss is not None and not ss.grid.same_as(result.grid):
                raise ValueError(
                    "the studyset's grid differs from the result's grid; pass the studyset "
                    "the result was fitted on"
                )
        return s1, s2

    @staticmethod
    def _value_map(result: MetaResult) -> str:
        for name in VALUE_MAPS:
            if name in result.maps_names:
                return name
        raise ValueError(
            f"no map for per-cluster contributions: expected one of {VALUE_MAPS}; the result "
            f"has {', '.join(sorted(result.maps_names))}"
        )

    # ------------------------------------------------------------------ main
    def transform(
        self,
        result: MetaResult,
        studyset: Studyset | None = None,
        studyset2: Studyset | None = None,
    ) -> MetaResult:
        """Characterise each cluster of ``target_image`` by the analyses behind it.

        Parameters
        ----------
        result : MetaResult
            A coordinate- or image-based meta-analysis result.
        studyset : Studyset, optional
            The studyset ``result`` was fitted on (group 1 for pairwise estimators); default:
            the result's own input (given with
            :meth:`~nimare_dask.results.MetaResult.set_inputs`, or stored with a reopened
            result; for an image-based result also the estimator's last fit, as NiMARE).
        studyset2 : Studyset, optional
            Pairwise estimators: group 2 (default: the result's ``studyset2`` input).

        Returns
        -------
        MetaResult
            A copy of ``result`` with the cluster table, the counts table(s) and label map(s)
            added, and this diagnostic appended to ``diagnostics`` (eager).
        """
        if not isinstance(result, MetaResult):
            raise TypeError(f"{type(self).__name__}.transform needs a MetaResult")
        if self.target_image not in result.maps_names:
            raise ValueError(
                f"target image {self.target_image!r} is not in the result; available maps: "
                f"{', '.join(result.maps_names)}"
            )
        est = result.estimator
        self._check_result(result)
        pairwise = isinstance(est, PairwiseCBMAEstimator)
        grid = result.grid
        target = np.asarray(result.get_map(self.target_image, return_type="array"))
        two_sided = getattr(est, "two_sided", None)
        if two_sided is None:
            two_sided = bool((np.nan_to_num(target) < 0).any())
        threshold = 0 if self.target_threshold is None else self.target_threshold
        cthr = 0 if self.cluster_threshold is None else int(self.cluster_threshold)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            found = clusters_table(target, grid, threshold, cthr, bool(two_sided))
        table = found.table
        if not table.empty and _is_corrected_cluster_map(self.target_image):
            peak_name = peak_map_name(self.target_image)
            if peak_name not in result.maps_names or "_level-cluster" in peak_name:
                raise ValueError(
                    f"the cluster table's peaks come from {peak_name!r} (the uncorrected map of "
                    f"{self.target_image!r}), which is not in the result; available maps: "
                    f"{', '.join(sorted(result.maps_names))}"
                )
            support = np.zeros(grid.n_voxels, dtype=bool)
            for lm in found.label_maps:
                support |= lm > 0
            peak_vals = np.nan_to_num(result.get_map(peak_name, return_type="array"))
            masked = np.where(support, peak_vals, 0).astype(np.float32)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                table = clusters_table(
                    masked, grid, 0, 0, bool(two_sided) or bool((masked < 0).any())
                ).table
        n_clusters = len(table)
        if n_clusters:
            LGR.info("%d clusters found", n_clusters)
            table = table.astype({"Cluster ID": "str"})
            table["Cluster ID"] = [
                f"{POSITIVE if stat > 0 else NEGATIVE} {cid}"
                for cid, stat in zip(table["Cluster ID"], table["Peak Stat"], strict=True)
            ]
        else:
            LGR.warning("no clusters found in %s", self.target_image)

        name = type(self).__name__
        rest = "_".join(self.target_image.split("_")[1:])
        image_name = f"_{rest}" if rest else ""
        clust_name = f"{self.target_image}_tab-clust"
        counts_name = f"{self.target_image}_diag-{name}_tab-counts"

        # tails of the label maps
        if len(found.label_maps) == 2:
            tails = ["positive", "negative"]
        elif len(found.label_maps) == 1:
            stats = table["Peak Stat"].astype(float)
            has_pos, has_neg = bool((stats > 0).any()), bool((stats < 0).any())
            if has_neg and not has_pos:
                tails = ["negative"]
            else:
                if has_pos and has_neg:
                    LGR.warning("mixed-sign clusters in one label map; assuming positive tail")
                tails = ["positive"]
        else:
            tails = ["positive"]
        label_names = [f"label{image_name}_tail-{t}" for t in tails]

        out = result.copy()
        out.tables[clust_name] = table
        if not found.label_maps:
            try:
                ids = list(self._studysets(result, studyset, studyset2)[0].ids)
            except ValueError:  # no studyset at hand: nothing to count anyway
                ids = []
            out.tables[f"{counts_name}_tail-{tails[0]}"] = pd.DataFrame({"id": ids})
            out.add_maps({label_names[0]: np.zeros(grid.n_voxels, dtype=np.int32)})
            out.diagnostics.append(self)
            return out

        out.add_maps(dict(zip(label_names, found.label_maps, strict=True)))
        s1, s2 = self._studysets(result, studyset, studyset2)
        if pairwise:
            if len(found.label_maps) == 2:
                pairs = [(POSITIVE, 0, 1, s1)]
                if self.display_second_group:
                    pairs.append((NEGATIVE, 1, 2, s2))
            else:
                positive = tails[0] == "positive"
                pairs = [(_LABEL_OF[tails[0]], 0, 1 if positive else 2, s1 if positive else s2)]
        else:
            pairs = [(_LABEL_OF[t], i, 0, s1) for i, t in enumerate(tails)]
        contexts = []
        for sign, i_map, group, ss in pairs:
            labels = found.label_maps[i_map]
            ids = np.unique(labels[labels > 0]).astype(int).tolist()
            contexts.append(TailContext(sign, labels, ids, group, ss))

        value_map = self._value_map(result) if self._needs_value_map else None
        values = self._contributions(result, contexts, value_map, (s1, s2))
        tables = []
        for ctx, vals in zip(contexts, values, strict=True):
            frame = pd.DataFrame(vals, columns=ctx.columns)
            frame.insert(0, "id", list(ctx.studyset.ids))
            tables.append(frame)
        if not pairwise and len(tables) == 2:
            merged = tables[0].merge(tables[1], how="outer").fillna(0)
            out.tables[counts_name] = merged
        else:
            for ctx, frame in zip(contexts, tables, strict=True):
                out.tables[f"{counts_name}_tail-{_TAIL_OF[ctx.sign]}"] = frame
        out.diagnostics.append(self)
        return out
