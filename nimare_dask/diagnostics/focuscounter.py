"""FocusCounter: how many of each analysis's foci fall in each cluster.

NiMARE 0.22.1 counts a focus towards a cluster when a cluster voxel lies less than one voxel
from the focus's (rounded) grid index; with integer indices that is the focus's own voxel
(``NIMARE_FACTS.md`` section 2.14). Foci outside the grid or the mask count for no cluster.
"""

from __future__ import annotations

import numpy as np

from nimare_dask.diagnostics.base import Diagnostics, TailContext
from nimare_dask.results import MetaResult

__all__ = ["FocusCounter"]


class FocusCounter(Diagnostics):
    """Number of foci of each analysis inside each cluster (NiMARE's FocusCounter).

    Parameters
    ----------
    target_image : str
        Map whose clusters are characterised (default: the cluster-size FWE z map).
    voxel_thresh : float, optional
        Deprecated alias of ``target_threshold``.
    cluster_threshold : int, optional
        Minimum cluster size in voxels.
    display_second_group : bool
        Pairwise estimators: also count group 2's foci in the negative tail's clusters.
    n_cores : int, optional
        Unused (kept for NiMARE's signature).
    target_threshold : float, optional
        Threshold of ``target_image`` (None: 0).

    Notes
    -----
    Coordinate-based results only: an image-based result raises ``ValueError`` (NiMARE does
    the same when the target map has a cluster; here always, before any work).
    ``transform(result, studyset=None, studyset2=None)`` adds ``<target>_tab-clust``,
    ``<target>_diag-FocusCounter_tab-counts_tail-<tail>`` (column ``id`` then one integer
    column per cluster) and ``label_<...>_tail-<tail>``.
    """

    _needs_value_map = False

    def _check_result(self, result: MetaResult) -> None:
        from nimare_dask.diagnostics.base import _is_ibma

        if _is_ibma(result.estimator):
            # NiMARE 0.22.1 raises the same ValueError, but only once a cluster is found
            raise ValueError(
                "FocusCounter only works for coordinate-based meta-analyses: "
                f"{type(result.estimator).__name__} is image-based (it has no foci to count). "
                "Use Jackknife for image-based results."
            )

    def _contributions(
        self,
        result: MetaResult,
        contexts: list[TailContext],
        value_map: str | None,
        studysets: tuple,
    ) -> list[np.ndarray]:
        grid = result.grid
        out = []
        for ctx in contexts:
            ss = ctx.studyset
            vox = ss.focus_voxels(grid)
            rows = ss.focus_rows()
            counts = np.zeros((len(ss), len(ctx.cluster_ids)), dtype=np.int64)
            inside = vox >= 0
            labels = np.zeros(len(vox), dtype=np.int64)
            labels[inside] = ctx.labels[vox[inside]]
            col_of = np.full(int(ctx.labels.max(initial=0)) + 1, -1, dtype=np.int64)
            col_of[np.asarray(ctx.cluster_ids, dtype=np.int64)] = np.arange(len(ctx.cluster_ids))
            cols = col_of[labels]
            hit = cols >= 0
            np.add.at(counts, (rows[hit], cols[hit]), 1)
            out.append(counts)
        return out
