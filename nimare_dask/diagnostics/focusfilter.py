"""FocusFilter: drop the foci that fall outside a mask (NiMARE's ``diagnostics.FocusFilter``)."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from nimare_dask.space import Grid, get_grid
from nimare_dask.studyset.core import Studyset, studyset_or_dataset

__all__ = ["FocusFilter"]

LGR = logging.getLogger(__name__)


def _as_grid(mask: Any) -> Grid:
    """A Grid from a template name, Grid, mask image or path, or a nilearn masker."""
    for attr in ("mask_img_", "mask_img"):
        img = getattr(mask, attr, None)
        if img is not None and not isinstance(mask, Grid):
            return get_grid(img)
    return get_grid(mask)


class FocusFilter:
    """Remove the foci outside a mask; keep every analysis.

    Parameters
    ----------
    mask : str, Grid, image, path or nilearn masker, optional
        The mask (None: the studyset's own grid, given to :meth:`transform`).

    Notes
    -----
    As NiMARE 0.22.1: each focus (in the studyset's MNI space) is projected to the mask's voxel
    grid with ``mm2vox`` rounding and kept when it lands inside the grid on a mask voxel.
    Analyses left without foci are kept (a collection may hold analyses with images only).
    """

    def __init__(self, mask: Any = None) -> None:
        self.mask = mask
        self.masker = None if mask is None else _as_grid(mask)

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """Constructor parameters.

        Parameters
        ----------
        deep : bool, default=True
            NiMARE's (scikit-learn's) keyword; the only parameter, ``mask``, has no
            parameters of its own, so both values give the same dict.

        Returns
        -------
        dict
        """
        return {"mask": None if self.masker is None else self.masker.name}

    def transform(self, studyset: Studyset | None = None, *, dataset=None) -> Studyset:
        """Filter the foci of ``studyset``.

        Parameters
        ----------
        studyset : Studyset
            The collection to filter (a store path is opened).
        dataset : Studyset, optional
            NiMARE's name of ``studyset`` (give one of the two).

        Returns
        -------
        Studyset
            A new studyset, on the same grid, with the foci inside the mask (eager).
        """
        studyset = studyset_or_dataset(studyset, dataset, "FocusFilter.transform")
        if not isinstance(studyset, Studyset):
            from nimare_dask.studyset import open_studyset

            if isinstance(studyset, str) or hasattr(studyset, "__fspath__"):
                studyset = open_studyset(studyset)
            else:
                raise TypeError(
                    f"FocusFilter.transform needs a Studyset, not {type(studyset).__name__}"
                )
        grid = self.masker or studyset.grid
        keep = grid.mm_to_voxel(studyset.xyz()) >= 0
        LGR.info(f"{int((~keep).sum())}/{len(keep)} coordinates fall outside of the mask.")
        tables = studyset._tables()
        points = tables["points"][keep].reset_index(drop=True)
        analyses = tables["analyses"]
        if "sample_size" in analyses.columns:  # recomputed from the metadata
            analyses = analyses.drop(columns=["sample_size"])
        out = Studyset.from_tables(
            analyses,
            points,
            tables["metadata"],
            tables["annotations"],
            tables["images"],
            tables["texts"],
            target=studyset.grid,
            harmonize=False,
        )
        if not np.array_equal(np.asarray(out.ids), np.asarray(studyset.ids)):  # pragma: no cover
            raise RuntimeError("FocusFilter changed the analyses of the studyset")
        return out
