"""Monte Carlo correction of a result reopened from its store.

A result's store keeps its estimator (class and parameters) and its inputs (the studysets it
was fitted on, as studyset stores under ``inputs/``). ``FWECorrector("montecarlo")`` on the
reopened result rebuilds the estimator, refits it on the stored inputs and corrects: the same
maps and nulls as correcting the live result. Without stored inputs the error says what is
missing and how to give it.
"""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

from nimare_dask.cli import main
from nimare_dask.correct import FWECorrector
from nimare_dask.meta.cbma import ALE, ALESubtraction, MKDAChi2
from nimare_dask.meta.rebuild import MissingInputsError, estimator_from_info
from nimare_dask.results import open_result
from nimare_dask.storage import POINTER

SUFFIX = "_corr-FWE_method-montecarlo"


def _corrector(**kw):
    return FWECorrector("montecarlo", random_state=0, progress=False, **kw)


def _assert_same_correction(live, back) -> None:
    names = [n for n in live.maps_names if n.endswith(SUFFIX)]
    assert names and set(names) <= set(back.maps_names)
    for name in names:
        np.testing.assert_array_equal(
            back.get_map(name, "array"), live.get_map(name, "array"), err_msg=name
        )
    assert live.null_distributions.keys() == back.null_distributions.keys()
    for key, value in live.null_distributions.items():
        np.testing.assert_array_equal(
            np.asarray(back.null_distributions[key]), np.asarray(value), err_msg=key
        )
    table = "montecarlo" + SUFFIX
    assert back.tables[table]["random_state"].iloc[0] == live.tables[table]["random_state"].iloc[0]


@pytest.fixture(scope="module")
def pain_ale(pain_studyset):
    return ALE(progress=False).fit(pain_studyset)


def test_reopened_ale_corrects_like_the_live_result(tmp_path, pain_studyset, pain_ale):
    pain_ale.to_zarr(tmp_path / "ale.zarr")
    back = open_result(tmp_path / "ale.zarr")
    assert back.estimator is None
    stored = back.get_inputs()["studyset"]
    assert list(stored.ids) == list(pain_studyset.ids)
    np.testing.assert_array_equal(stored.coordinates, pain_studyset.coordinates)
    live = _corrector(n_iters=50).transform(pain_ale)
    again = _corrector(n_iters=50).transform(back)
    _assert_same_correction(live, again)
    assert type(again.estimator) is ALE  # rebuilt, refitted
    # the corrected result can be saved and reopened again, inputs included
    again.to_zarr(tmp_path / "corrected.zarr")
    twice = open_result(tmp_path / "corrected.zarr")
    assert "studyset" in twice.get_inputs()
    assert f"z_desc-size_level-cluster{SUFFIX}" in twice.maps_names


def test_without_stored_inputs_the_error_says_what_and_how(tmp_path, pain_studyset, pain_ale):
    pain_ale.to_zarr(tmp_path / "bare.zarr", inputs=False)
    back = open_result(tmp_path / "bare.zarr")
    assert back.get_inputs() == {}
    with pytest.raises(MissingInputsError, match="does not keep 'studyset'") as err:
        _corrector(n_iters=10).transform(back)
    message = str(err.value)
    assert "FWECorrector(method='montecarlo')" in message and "ALE" in message
    assert "result.set_inputs(studyset=" in message
    # giving the input as the message says makes it work
    back.set_inputs(studyset=pain_studyset)
    _assert_same_correction(
        _corrector(n_iters=10).transform(pain_ale), _corrector(n_iters=10).transform(back)
    )
    # generic corrections never needed the estimator
    bare = open_result(tmp_path / "bare.zarr")
    assert "p_corr-FWE_method-bonferroni" in FWECorrector("bonferroni").transform(bare).maps_names


def test_an_older_result_without_the_inputs_entry_still_opens(tmp_path, pain_ale):
    """Format-2 results written before inputs were kept have no ``inputs`` entry."""
    path = tmp_path / "old.zarr"
    pain_ale.to_zarr(path, inputs=False)
    pointer = json.loads((path / POINTER).read_text())
    del pointer["info"]["inputs"]
    (path / POINTER).write_text(json.dumps(pointer))
    back = open_result(path)
    np.testing.assert_array_equal(back.get_map("z", "array"), pain_ale.get_map("z", "array"))
    with pytest.raises(MissingInputsError, match="set_inputs"):
        _corrector(n_iters=10).transform(back)


def test_refit_must_reproduce_the_result(tmp_path, pain_studyset, pain_ale):
    pain_ale.to_zarr(tmp_path / "r.zarr", inputs=False)
    back = open_result(tmp_path / "r.zarr")
    back.set_inputs(studyset=pain_studyset.slice(pain_studyset.ids[:10]))
    with pytest.raises(ValueError, match="does not reproduce"):
        _corrector(n_iters=10).transform(back)


@pytest.fixture(scope="module")
def halves(pain_studyset):
    ids = list(pain_studyset.ids)
    return pain_studyset.slice(ids[:11]), pain_studyset.slice(ids[11:])


def test_reopened_pairwise_results(tmp_path, halves):
    sub = ALESubtraction(n_iters=8, random_state=1, progress=False).fit(*halves)
    chi2 = MKDAChi2(random_state=1, progress=False).fit(*halves)
    for name, res, kw in (("sub", sub, {"n_iters": 8}), ("chi2", chi2, {"n_iters": 8})):
        res.to_zarr(tmp_path / f"{name}.zarr")
        back = open_result(tmp_path / f"{name}.zarr")
        assert set(back.get_inputs()) == {"studyset1", "studyset2"}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # recomputed permutations
            _assert_same_correction(
                _corrector(**kw).transform(res), _corrector(**kw).transform(back)
            )


def test_estimator_from_info_round_trips(pain_ale):
    est = estimator_from_info(pain_ale.estimator_info)
    assert type(est) is ALE and est.get_params()["kernel__fwhm"] is None
    with pytest.raises(ValueError, match="known estimator"):
        estimator_from_info({"class": "NotAnEstimator", "params": {}})


def test_cli_jackknife_uses_the_stored_studyset(tmp_path, capsys, pain_ale):
    pain_ale.to_zarr(tmp_path / "ale.zarr")
    args = ["jackknife", str(tmp_path / "ale.zarr"), "--target-image", "z", "--threshold", "3.1"]
    assert main([*args, "--output-dir", str(tmp_path / "jk")]) == 0
    assert list((tmp_path / "jk").glob("*Jackknife*.tsv"))
    pain_ale.to_zarr(tmp_path / "bare.zarr", inputs=False)
    capsys.readouterr()
    assert main(["jackknife", str(tmp_path / "bare.zarr"), "--target-image", "z"]) != 0
    assert "does not store the studyset" in capsys.readouterr().err
