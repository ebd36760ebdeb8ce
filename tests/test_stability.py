"""ResampledStability on ALE against NiMARE 0.22.1 (pain studyset).

With the same ``random_state`` NiMARE's CBMA stability is deterministic (its replicate schedule
and its Monte Carlo cluster null come from ``RandomState(random_state)``), and so is ours, which
follows the same streams: the stability maps must be identical, as must the cluster-size
threshold (captured from NiMARE's ``np.percentile`` call). A few Monte Carlo iterations keep
NiMARE's run short; exactness does not depend on their number.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from nimare_dask.diagnostics import ResampledStability
from nimare_dask.diagnostics import stability as S
from nimare_dask.meta.cbma import ALE, KDA

N_ITERS = 20
MAP = "z_diag-ResampledStability"


@pytest.fixture(scope="module")
def ours(pain_studyset):
    return ALE(progress=False).fit(pain_studyset)


@pytest.fixture(scope="module")
def nimare_ale(pain_json):
    from nimare.meta.cbma import ALE as NALE
    from nimare.studyset import Studyset as NSS

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return NALE().fit(NSS(str(pain_json)))


def _nimare(nimare_ale, monkeypatch, fixed=None, **kw):
    """NiMARE's stability map and the cluster threshold it used (``fixed``: forced)."""
    from nimare.correct import FWECorrector as NFWE
    from nimare.diagnostics import ResampledStability as NRS

    seen = []
    real = np.percentile

    def percentile(a, q, *args, **kwargs):
        value = real(a, q, *args, **kwargs) if fixed is None else float(fixed)
        seen.append(value)
        return value

    res = nimare_ale.copy()
    res.corrector = NFWE("montecarlo", n_iters=N_ITERS if fixed is None else 1)
    with monkeypatch.context() as m:
        m.setattr(np, "percentile", percentile)
        out = NRS("z", **kw).transform(res)
    return out, seen[-1]


def _table(out):
    return out.tables[f"{MAP}_tab-summary"]


@pytest.mark.parametrize(
    "kw",
    [
        {"resampling_policy": "leave_1_out", "random_state": 3},
        {"resampling_policy": "subsample", "target_n": 15, "n_resamples": 12, "random_state": 7},
    ],
    ids=["leave_1_out", "subsample"],
)
def test_equal_to_nimare(ours, nimare_ale, monkeypatch, kw):
    ref, threshold = _nimare(nimare_ale, monkeypatch, **kw)
    out = ResampledStability("z", n_iters=N_ITERS, **kw).transform(ours)
    a = out.get_map(MAP, "array")
    b = np.asarray(ref.maps[MAP])
    assert a.dtype == b.dtype == np.float32
    # fractions of integer counts over the same replicates: identical
    np.testing.assert_array_equal(a, b)
    assert (a > 0).sum() > 1000 and len(np.unique(a)) > 5  # not a trivial map
    assert _table(out)["cluster_size_threshold"].iloc[0] == threshold
    nimare_cols = list(_table(ref).columns)
    assert list(_table(out).columns[: len(nimare_cols)]) == nimare_cols
    assert _table(out)[nimare_cols].astype(str).equals(_table(ref)[nimare_cols].astype(str))


def test_fixed_cluster_threshold(ours, nimare_ale, monkeypatch):
    # no Monte Carlo here; NiMARE (which ignores cluster_threshold for CBMA) forced to it
    ref, _ = _nimare(nimare_ale, monkeypatch, fixed=40, resampling_policy="leave_1_out")
    out = ResampledStability("z", "leave_1_out", cluster_threshold=40).transform(ours)
    np.testing.assert_array_equal(out.get_map(MAP, "array"), np.asarray(ref.maps[MAP]))
    assert _table(out)["n_iters"].iloc[0] == 0
    assert "larger than 40 voxels" in out.description


def test_same_for_any_blocking_and_scheduler(ours, monkeypatch):
    kw = {"resampling_policy": "subsample", "target_n": 18, "n_resamples": 9, "n_iters": 13}
    base = ResampledStability("z", random_state=11, n_cores=1, **kw).transform(ours)
    monkeypatch.setattr(S, "_ITERS_PER_BLOCK", 4)
    monkeypatch.setattr(S, "_REPLICATES_PER_BLOCK", 2)
    again = ResampledStability("z", random_state=11, n_cores=2, **kw).transform(ours)
    np.testing.assert_array_equal(base.get_map(MAP, "array"), again.get_map(MAP, "array"))
    assert (
        _table(again)["cluster_size_threshold"].iloc[0]
        == (_table(base)["cluster_size_threshold"].iloc[0])
    )
    # random_state=None: a fresh seed, recorded; rerunning with it reproduces the map
    fresh = ResampledStability("z", **kw).transform(ours)
    seed = int(_table(fresh)["seed_used"].iloc[0])
    assert _table(fresh)["random_state"].iloc[0] is None
    rerun = ResampledStability("z", random_state=seed, **kw).transform(ours)
    np.testing.assert_array_equal(fresh.get_map(MAP, "array"), rerun.get_map(MAP, "array"))


def test_schedule_as_nimare():
    from nimare.meta.cbma.utils import generate_subset_schedule, resolve_subset_size

    for policy, k, target_n in [("leave_1_out", None, None), ("leave_k_out", 2, None)]:
        assert S.resolve_subset_size(policy, 9, k, target_n) == resolve_subset_size(
            policy, 9, k=k, target_n=target_n
        )
    for total, target, n, seed in [(9, 8, None, 0), (9, 7, None, 0), (30, 20, 50, 4)]:
        ours = S.subset_schedule(total, target, n, seed)
        ref = generate_subset_schedule(total, target, n_samples=n, random_state=seed)
        assert len(ours) == len(ref)
        for a, b in zip(ours, ref, strict=True):
            np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="too many"):
        S.subset_schedule(30, 20)


def test_errors(ours, pain_studyset):
    with pytest.raises(ValueError, match="requires k"):
        ResampledStability("z", "leave_k_out").transform(ours)
    with pytest.raises(ValueError, match="resampling_policy"):
        ResampledStability("z", "bootstrap")
    with pytest.raises(ValueError, match="mask_coverage"):
        ResampledStability("z", mask_coverage="wm")
    with pytest.raises(NotImplementedError, match="ALE"):
        ResampledStability("z").transform(KDA(progress=False).fit(pain_studyset))
