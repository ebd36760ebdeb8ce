"""Corrections never change their estimator: two at once from two threads are safe.

Run settings of a Monte Carlo correction (seed, threads, progress bar, block size) travel as
arguments; the estimator's ``random_state``, ``n_cores``, ``progress`` (and ALESubtraction's
fitted permutations) are never set and restored around a run, which two threads or two Dask
tasks correcting the same estimator would race on. Each concurrent correction must equal the
same correction run alone.
"""

from __future__ import annotations

import warnings
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from nimare_dask.correct import FWECorrector
from nimare_dask.diagnostics import Jackknife
from nimare_dask.meta.cbma import ALE, ALESubtraction, MKDAChi2

ATTRS = ("random_state", "n_cores", "progress")


def _settings(est) -> dict:
    return {a: getattr(est, a) for a in ATTRS if hasattr(est, a)}


def _corrected(out) -> dict:
    maps = {n: out.get_map(n, "array") for n in out.maps_names if "_corr-" in n}
    nulls = {k: np.asarray(v) for k, v in out.null_distributions.items()}
    seeds = {k: t["random_state"].iloc[0] for k, t in out.tables.items() if "montecarlo" in k}
    return {"maps": maps, "nulls": nulls, "seeds": seeds}


def _assert_same(a: dict, b: dict) -> None:
    assert a["maps"].keys() == b["maps"].keys() and a["maps"]
    for name in a["maps"]:
        np.testing.assert_array_equal(a["maps"][name], b["maps"][name], err_msg=name)
    assert a["nulls"].keys() == b["nulls"].keys()
    for name in a["nulls"]:
        np.testing.assert_array_equal(a["nulls"][name], b["nulls"][name], err_msg=name)
    assert a["seeds"] == b["seeds"]


def _two_at_once(result, correctors) -> list:
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = [pool.submit(c.transform, result) for c in correctors]
        return [f.result() for f in futures]


@pytest.fixture(scope="module")
def halves(pain_studyset):
    ids = list(pain_studyset.ids)
    return pain_studyset.slice(ids[:11]), pain_studyset.slice(ids[11:])


def _check(est, result, correctors):
    before = _settings(est)
    alone = [_corrected(c.transform(result)) for c in correctors]
    assert alone[0]["nulls"] and any(
        not np.array_equal(alone[0]["nulls"][k], alone[1]["nulls"][k]) for k in alone[0]["nulls"]
    )  # different seeds: different nulls (the test would be empty otherwise)
    together = [_corrected(out) for out in _two_at_once(result, correctors)]
    for a, b in zip(alone, together, strict=True):
        _assert_same(a, b)
    assert _settings(est) == before


def _correctors(n_iters: int, **kw) -> list:
    # run settings differ from the estimator's: they must reach the run, not the estimator
    return [
        FWECorrector(
            "montecarlo", n_iters=n_iters, random_state=seed, n_cores=1, progress=False, **kw
        )
        for seed in (1, 2)
    ]


def test_ale_corrections_from_two_threads(pain_studyset):
    est = ALE(random_state=7, n_cores=2, progress=True)
    result = est.fit(pain_studyset)
    _check(est, result, _correctors(12))


def test_alesubtraction_corrections_from_two_threads(halves):
    est = ALESubtraction(n_iters=8, random_state=3, n_cores=2, progress=False)
    result = est.fit(*halves)
    fitted = est._perm_
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "recomputing the permutations"
        _check(est, result, _correctors(8))
    # recomputed permutations (other seeds) never replace the fit's
    assert est._perm_ is fitted and est._perm_["random_state"] == 3


def test_mkdachi2_corrections_from_two_threads(halves):
    est = MKDAChi2(random_state=5, n_cores=2, progress=False)
    result = est.fit(*halves)
    _check(est, result, _correctors(8))


def test_jackknife_keeps_nothing_on_itself(pain_studyset):
    """Jackknife passes the studysets along instead of keeping them on ``self``."""
    result = ALE().fit(pain_studyset)
    jk = Jackknife("z", target_threshold=3.1)
    before = dict(vars(jk))
    alone = jk.transform(result, studyset=pain_studyset)
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = [pool.submit(jk.transform, result, studyset=pain_studyset) for _ in range(2)]
        outs = [f.result() for f in futures]
    assert vars(jk) == before
    name = "z_diag-Jackknife_tab-counts_tail-positive"
    assert len(alone.tables[name].columns) > 1  # clusters found
    for out in outs:
        assert out.tables.keys() == alone.tables.keys()
        for key, table in alone.tables.items():
            assert out.tables[key].equals(table), key
