"""p/z/logp conversions and log-space Bonferroni/FDR against NiMARE 0.22.1 and by hand.

Our ``nlogp`` is ``-ln p`` (never negative); NiMARE's is ``ln p``, so every comparison negates.
"""

import nimare.stats as nimare_stats
import nimare.transforms as nimare_transforms
import nimare.utils as nimare_utils
import numpy as np
import pytest
from _parity import assert_within_ulp
from scipy import stats

from nimare_dask.stats import (
    clip_p,
    nlogp_to_logp,
    nlogp_to_p,
    nlogp_to_z,
    p_to_logp,
    p_to_z,
    z_to_nlogp,
    z_to_p,
)
from nimare_dask.stats import neglnp_bonferroni as nlogp_bonferroni
from nimare_dask.stats import neglnp_fdr as nlogp_fdr

Z_VALUES = np.concatenate(
    [np.linspace(-40, 40, 8001), [0.0, -0.0, 1e-12, -1e-12, 14.1, 37.5, 38.0, 38.5, 39.0, 100.0]]
)
P_VALUES = np.concatenate(
    [
        10.0 ** -np.linspace(0, 300, 3001),
        [1.0, 0.5, 0.5, 0.7, 0.99, 1e-310, 5e-324, 0.0, 1.4e-45, 1e-46],
    ]
)


@pytest.mark.parametrize("tail", ["two", "one"])
def test_z_to_nlogp_matches_nimare(tail):
    ours = z_to_nlogp(Z_VALUES, tail=tail)
    theirs = -nimare_transforms.z_to_nlogp(Z_VALUES, tail=tail)
    assert np.all(ours >= 0)
    # Relative 1e-13: both are exact to a few ulp in double precision (log_ndtr vs log(erfc)).
    np.testing.assert_allclose(ours, theirs, rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("tail", ["two", "one"])
def test_z_to_p_matches_nimare(tail):
    ours = z_to_p(Z_VALUES, tail=tail)
    theirs = nimare_transforms.z_to_p(Z_VALUES, tail=tail)
    # Relative 1e-12: exp() of logs that agree to ~1e-15 absolute at |ln p| up to ~800.
    np.testing.assert_allclose(ours, theirs, rtol=1e-12)
    assert ours.min() > 0  # floored at the smallest double, as NiMARE


@pytest.mark.parametrize("tail", ["two", "one"])
def test_p_to_z_matches_nimare(tail):
    ours = p_to_z(P_VALUES, tail=tail)
    theirs = nimare_transforms.p_to_z(P_VALUES, tail=tail)
    # Same formula (inverse normal in log space) on the same clipped input: exact to 1e-12.
    np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=1e-12)
    if tail == "one":
        # One-tailed z is floored at 0: p > 0.5 gives 0.
        assert np.all(ours[P_VALUES >= 0.5] == 0)
    # The float64 floor bounds p_to_z near 38.5.
    assert 38 < ours.max() < 39


@pytest.mark.parametrize("tail", ["two", "one"])
def test_nlogp_to_z_matches_nimare_and_is_unbounded(tail):
    nlogp = np.concatenate([np.linspace(0, 5000, 5001), [1e-17, np.log(2)]])
    ours = nlogp_to_z(nlogp, tail=tail)
    theirs = nimare_transforms.nlogp_to_z(-nlogp, tail=tail)
    np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=1e-12)
    assert ours[-3] > 99  # -ln p = 5000 is z ~ 100, far beyond any float p
    assert nlogp_to_z(0.0, tail=tail) == 0.0 and not np.signbit(nlogp_to_z(0.0, tail=tail))


def test_round_trips_by_hand():
    z = np.array([0.5, 1.0, 1.959963984540054, 3.090232306167813, 10.0, 30.0])
    # Two-tailed p of 1.96 is 0.05; one-tailed p of 3.09 is 0.001 (standard normal tables).
    np.testing.assert_allclose(z_to_p(z[2]), 0.05, rtol=1e-12)
    np.testing.assert_allclose(z_to_p(z[3], tail="one"), 0.001, rtol=1e-12)
    for tail in ("one", "two"):
        np.testing.assert_allclose(nlogp_to_z(z_to_nlogp(z, tail), tail), z, rtol=1e-12)
    np.testing.assert_allclose(z_to_nlogp(z, "one"), -stats.norm.logsf(z), rtol=1e-13)


def test_p_to_logp_clip_and_nlogp_helpers():
    ours = p_to_logp(P_VALUES)
    theirs = nimare_utils._p_to_logp_values(P_VALUES)
    assert ours.dtype == np.float32
    # same float32 clip then log10. NiMARE's is numpy's float32 log10: up to 2 ulps from the
    # correctly rounded value, in other places on AVX-512, AVX2 and baseline code (measured)
    assert_within_ulp(ours, theirs, maxulp=2, err_msg="p_to_logp")
    assert ours.max() == pytest.approx(44.85, abs=0.01) and ours.min() == 0
    c = clip_p(np.array([0.0, 1e-50, 0.3, 2.0, np.nan]))
    assert c[0] == c[1] == np.nextafter(np.float32(0), np.float32(1))
    assert c[2] == 0.3 and c[3] == 1.0 and np.isnan(c[4])
    nlogp = np.array([0.0, np.log(10.0) * 3, 5000.0, np.nan])
    np.testing.assert_allclose(nlogp_to_logp(nlogp)[:3], [0, 3, 5000 / np.log(10)], rtol=1e-6)
    # divided by ln(10) and cast to float32; NiMARE's ln(10) is numpy's log (tests/_parity.py)
    assert_within_ulp(
        nlogp_to_logp(nlogp), nimare_utils._nlogp_to_logp_values(-nlogp), err_msg="nlogp_to_logp"
    )
    p = nlogp_to_p(nlogp)
    assert p.dtype == np.float32 and p[2] == np.float32(1.4e-45) and np.isnan(p[3])


def test_negative_nlogp_rejected():
    # ln p (NiMARE's sign) instead of -ln p must fail loudly, not silently give z = 0.
    with pytest.raises(ValueError, match="never negative"):
        nlogp_to_z(np.array([-3.0]))
    with pytest.raises(ValueError, match="never negative"):
        nlogp_bonferroni(np.array([-3.0]))
    with pytest.raises(ValueError, match="tail"):
        z_to_p(1.0, tail="left")


def _uncorrected(seed=0):
    rng = np.random.default_rng(seed)
    p = rng.uniform(size=4000) ** 6
    p[:15] = 1e-300  # far tail
    p[20:40] = p[40]  # ties
    p[50:70] = np.nan  # unevaluated tests
    p[70] = 1.0
    return -np.log(p)


def test_bonferroni_matches_nimare():
    nlogp = _uncorrected()
    ours = nlogp_bonferroni(nlogp)
    theirs = -nimare_stats.nlogp_bonferroni(-nlogp)
    np.testing.assert_array_equal(np.isnan(ours), np.isnan(theirs))
    # Same closed form, -ln p - ln m floored at 0: equal to rounding (1e-12 absolute).
    np.testing.assert_allclose(ours, theirs, atol=1e-12, equal_nan=True)
    # By hand: p * m capped at 1.
    m = nlogp.size
    p = np.exp(-nlogp)
    np.testing.assert_allclose(np.exp(-ours), np.minimum(p * m, 1), rtol=1e-12, equal_nan=True)
    # An explicit m smaller than the number of evaluated tests is an error.
    with pytest.raises(ValueError, match="smaller"):
        nlogp_bonferroni(nlogp, m=10)


@pytest.mark.parametrize("method", ["bh", "by"])
def test_fdr_matches_nimare(method):
    nlogp = _uncorrected(1)
    ours = nlogp_fdr(nlogp, method=method)
    theirs = -nimare_stats.nlogp_fdr(-nlogp, method=method)
    np.testing.assert_array_equal(np.isnan(ours), np.isnan(theirs))
    # Step-up in log space on both sides; differences are rounding of ln(m/i) (<1e-12).
    np.testing.assert_allclose(ours, theirs, atol=1e-12, equal_nan=True)


def test_fdr_by_hand():
    # BH on four p-values, m = 5 with one NaN counted as a test (conservative, like R).
    p = np.array([0.01, 0.04, 0.03, np.nan, 0.5])
    q = np.exp(-nlogp_fdr(-np.log(p)))
    # sorted: 0.01 (i=1), 0.03 (2), 0.04 (3), 0.5 (4); raw p*m/i = 0.05, 0.075, 0.0667, 0.625
    # monotone envelope from the top: 0.05, 0.0667, 0.0667, 0.625
    np.testing.assert_allclose(q[[0, 2, 1, 4]], [0.05, 0.2 / 3, 0.2 / 3, 0.625], rtol=1e-12)
    assert np.isnan(q[3])
    # BY multiplies by c(m) = 1 + 1/2 + ... + 1/5 before capping at 1.
    c = sum(1 / k for k in range(1, 6))
    q_by = np.exp(-nlogp_fdr(-np.log(p), method="by"))
    np.testing.assert_allclose(q_by[0], min(0.05 * c, 1), rtol=1e-12)
    with pytest.raises(ValueError, match="method"):
        nlogp_fdr(np.zeros(3), method="holm")
