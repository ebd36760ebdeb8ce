"""BalancedALESubtraction building blocks against NiMARE 0.22.1: the subset schedule.

The schedule decides which subsamples the per-group probability maps average over; NiMARE's
``generate_subset_schedule`` is the oracle, for leave-one-out, exhaustive and seeded schedules
(the seeded one replays NiMARE's legacy generator, so it is identical too).
"""

from __future__ import annotations

import numpy as np
import pytest

from nimare_dask.meta.cbma.balanced import EXHAUSTIVE_LIMIT, resolve_target_n, subset_schedule


def _nimare_schedule(*args, **kwargs):
    from nimare.meta.cbma.utils import generate_subset_schedule

    return generate_subset_schedule(*args, **kwargs)


@pytest.mark.parametrize(
    "total_n,target_n,n_samples,seed",
    [
        (21, 20, 2500, 0),  # leave-one-out
        (10, 4, 2500, 3),  # exhaustive: C(10, 4) = 210
        (9, 9, 2500, 1),  # one subset: everything
        (21, 10, 2500, 7),  # seeded: C(21, 10) = 352,716 > 2,500
        (30, 5, 300, 123),  # seeded, small
        (12, 6, 924, 5),  # n_samples == C(12, 6): exhaustive
        (12, 6, 900, 5),  # one short of exhaustive: seeded
    ],
)
def test_schedule_identical_to_nimare(total_n, target_n, n_samples, seed):
    ours = subset_schedule(
        total_n, target_n, n_samples, random_state=seed, exhaustive_limit=EXHAUSTIVE_LIMIT
    )
    theirs = _nimare_schedule(
        total_n, target_n, n_samples=n_samples, random_state=seed, exhaustive_limit=10000
    )
    assert len(ours) == len(theirs)
    for a, b in zip(ours, theirs, strict=True):
        np.testing.assert_array_equal(a, b)
        assert a.dtype == np.int32


def test_schedule_errors():
    with pytest.raises(ValueError, match="target_n must be between"):
        subset_schedule(5, 6)
    with pytest.raises(ValueError, match="exceed exhaustive_limit"):
        subset_schedule(30, 10)


def test_target_n():
    assert resolve_target_n(21, 14, None) == 14
    assert resolve_target_n(21, 14, 10) == 10
    with pytest.raises(ValueError, match="smaller group size"):
        resolve_target_n(21, 14, 15)
    with pytest.raises(TypeError, match="integer"):
        resolve_target_n(21, 14, 2.5)
