"""The PermutedOLS null kernel against a one-sample t test written out in numpy.

For sign vector ``s`` and group means ``c`` (groups x voxels), the permuted statistic of a
voxel is the one-sample t of ``s * c``: mean / (sd / sqrt(m)), sd with ddof 1; the null value of
an iteration is its maximum over voxels (of |t| when two-sided). The kernel tabulates partial
sums per chunk of groups and screens voxels before computing t exactly, so it must give this
maximum to float64 rounding, and the same bits however voxels and iterations are split.
"""

from __future__ import annotations

import numpy as np
import pytest

from nimare_dask.meta.ibma._permute_numba import chunk_layout, ols_block_max, sign_patterns


def _reference_max(signs, c, two_sided):
    m = c.shape[0]
    y = signs[:, :, None] * c[None]  # iterations x groups x voxels
    mean = y.mean(axis=1)
    sd = y.std(axis=1, ddof=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = mean / (sd / np.sqrt(m))
    t = np.abs(t) if two_sided else t
    return np.where(np.isfinite(t), t, -np.inf).max(axis=1)


def _kernel_max(signs, c, two_sided):
    m = c.shape[0]
    starts, sizes = chunk_layout(m)
    out = np.full(len(signs), -np.inf)
    mss = m * (c**2).sum(axis=0)
    ols_block_max(sign_patterns(signs, starts, sizes), c, mss, m, starts, sizes, two_sided, out)
    return out


@pytest.mark.parametrize("m", [2, 3, 7, 10, 13, 40])
@pytest.mark.parametrize("two_sided", [True, False])
def test_kernel_gives_the_max_t_of_every_sign_flip(m, two_sided):
    rng = np.random.default_rng(m)
    c = rng.normal(size=(m, 600))
    c[:, :3] = 1.0  # degenerate voxels: every flip of identical values has sd 0 or t undefined
    signs = rng.choice((-1.0, 1.0), size=(120, m))
    got = _kernel_max(signs, np.ascontiguousarray(c), two_sided)
    want = _reference_max(signs, c, two_sided)
    # The kernel forms the squared deviations as sum(c^2) - (sum(s c))^2 / m (as an OLS fit
    # does) where the reference centres first: with sd = mean / t, that difference loses about
    # log10(t^2) digits, so the relative error bound is float64 eps * t^2 (plus the rounding of
    # sums of m terms grouped differently, 1e-12)
    bound = (1e-12 + 4e-16 * want**2) * np.abs(want)
    assert np.all(np.abs(got - want) <= bound), np.max(np.abs(got - want) / bound)


def test_kernel_bits_do_not_depend_on_how_work_is_split():
    rng = np.random.default_rng(5)
    m = 13
    c = rng.normal(size=(m, 1000))
    signs = rng.choice((-1.0, 1.0), size=(200, m))
    whole = _kernel_max(signs, c, True)
    starts, sizes = chunk_layout(m)
    split = np.full(200, -np.inf)
    for a, b in ((0, 333), (333, 334), (334, 1000)):
        part = np.ascontiguousarray(c[:, a:b])
        mss = m * (part**2).sum(axis=0)
        for i0, i1 in ((0, 17), (17, 200)):
            o = split[i0:i1].copy()
            ols_block_max(sign_patterns(signs[i0:i1], starts, sizes), part, mss, m, starts,
                          sizes, True, o)  # fmt: skip
            split[i0:i1] = o
    np.testing.assert_array_equal(whole, split)
