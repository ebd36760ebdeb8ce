"""Pure array math: p/z/logp conversions, multiple-comparison corrections, nulls, tests.

The lowest layer: numpy in, numpy out; nothing here imports another nimare_dask module.
"""

from nimare_dask.stats.multiple import nlogp_bonferroni, nlogp_fdr
from nimare_dask.stats.transforms import (
    clip_p,
    nlogp_to_logp,
    nlogp_to_p,
    nlogp_to_z,
    p_to_logp,
    p_to_z,
    z_to_nlogp,
    z_to_p,
)

__all__ = [
    "clip_p",
    "nlogp_bonferroni",
    "nlogp_fdr",
    "nlogp_to_logp",
    "nlogp_to_p",
    "nlogp_to_z",
    "p_to_logp",
    "p_to_z",
    "z_to_nlogp",
    "z_to_p",
]
