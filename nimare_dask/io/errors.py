"""Exceptions and warnings raised by the file readers, and the checks they share.

Every reader names the file (and, where there is one, the line and the study) in its messages,
says what is wrong and what was expected.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING

import numpy as np

from nimare_dask.studyset.core import StudysetError

if TYPE_CHECKING:
    from nimare_dask.studyset.core import Studyset

__all__ = [
    "SleuthError",
    "NeurosynthError",
    "FociOutsideMaskWarning",
    "EmptyExperimentWarning",
    "UnmatchedFociWarning",
    "warn_foci_outside_mask",
]


class SleuthError(StudysetError):
    """A Sleuth (GingerALE) text file is malformed; the message names file and line."""


class NeurosynthError(StudysetError):
    """Neurosynth/NeuroQuery database files are malformed or do not match each other."""


class FociOutsideMaskWarning(UserWarning):
    """Some foci fall outside the brain mask (or the grid); they are kept.

    Kernels ignore such foci where they fall outside the grid, and foci just outside the mask
    still contribute to in-mask voxels near them, as in NiMARE.
    """


class EmptyExperimentWarning(UserWarning):
    """An experiment (analysis) had no foci and was dropped."""


class UnmatchedFociWarning(UserWarning):
    """Foci whose study is not in the metadata file were dropped (NiMARE drops them silently)."""


def _list_ids(ids, limit: int = 10) -> str:
    ids = list(ids)
    shown = ", ".join(repr(str(i)) for i in ids[:limit])
    return shown + (f" ... (+{len(ids) - limit} more)" if len(ids) > limit else "")


def warn_foci_outside_mask(ss: Studyset, source_name: str, stacklevel: int = 3) -> int:
    """Warn (:class:`FociOutsideMaskWarning`) about foci outside the studyset's brain mask.

    Parameters
    ----------
    ss : Studyset
        The freshly read studyset.
    source_name : str
        The file(s) it came from, named in the message.
    stacklevel : int
        Passed to :func:`warnings.warn`.

    Returns
    -------
    int
        The number of foci outside the mask (0: no warning).
    """
    if int(ss.foci_counts().sum()) == 0:
        return 0
    vox = ss.focus_voxels()
    outside = vox < 0
    n_out = int(outside.sum())
    if n_out:
        ids = ss.ids[np.unique(ss.focus_rows()[outside])]
        n_grid = int((~ss.grid.in_grid(ss.ijk())).sum())
        warnings.warn(
            f"{source_name}: {n_out} foci in {len(ids)} analyses lie outside the brain mask of "
            f"grid {ss.grid.name!r} ({n_grid} of them outside the grid itself); they are kept. "
            f"Analyses: {_list_ids(ids)}",
            FociOutsideMaskWarning,
            stacklevel=stacklevel,
        )
    return n_out
