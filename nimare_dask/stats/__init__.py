"""Pure array math: p/z/logp conversions, multiple-comparison corrections, nulls, tests.

The lowest layer: numpy in, numpy out; nothing here imports another nimare_dask module.

The names of NiMARE 0.22.1's ``nimare.stats`` (``null_to_p``, ``nullhist_to_p``, ``one_way``,
``two_way``, ``two_way_counts``, ``pearson``, ``nlogp_bonferroni``, ``nlogp_fdr``) have NiMARE's
signatures and numbers (:mod:`nimare_dask.stats.nimare_api`); ``nlogp_bonferroni`` and
``nlogp_fdr`` therefore take ``ln(p)``, NiMARE's sign. This package's own ``-ln(p)`` versions are
:func:`neglnp_bonferroni` and :func:`neglnp_fdr`.
"""

from nimare_dask.stats.multiple import neglnp_bonferroni, neglnp_fdr
from nimare_dask.stats.nimare_api import (
    nlogp_bonferroni,
    nlogp_fdr,
    null_to_p,
    nullhist_to_p,
    one_way,
    pearson,
    two_way,
    two_way_counts,
)
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
    "neglnp_bonferroni",
    "neglnp_fdr",
    "nlogp_bonferroni",
    "nlogp_fdr",
    "nlogp_to_logp",
    "nlogp_to_p",
    "nlogp_to_z",
    "null_to_p",
    "nullhist_to_p",
    "one_way",
    "p_to_logp",
    "p_to_z",
    "pearson",
    "two_way",
    "two_way_counts",
    "z_to_nlogp",
    "z_to_p",
]
