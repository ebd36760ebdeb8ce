"""StudyWeights and ALESubtraction(low_memory=) against NiMARE 0.22.1 (the oracle).

The studyset is NiMARE's pain studyset, edited so that every option matters: a ``model``
metadata field (FFX / random / unset for a third of the analyses each), two sample sizes for
one analysis (``reduce``), none for another (``on_missing``).

Tolerances: raw weights are the same float64 operations (sqrt, products, a mean) on the same
numbers, compared to 1e-12 relative. Weighted MKDA maps: the statistic is a float64 weighted
sum taken in another order, the null is the same weighted Poisson-binomial on the same grid;
maps are float32, hence rtol 1e-6 (the tolerance of tests/test_meta_mkda.py).
"""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest

from nimare_dask import Studyset
from nimare_dask.meta import StudyWeights as MetaStudyWeights
from nimare_dask.meta.cbma import ALESubtraction, MKDADensity, StudyWeights
from nimare_dask.meta.cbma.weights import normalize_weights, resolve_weighting

pytest.importorskip("nimare")

RTOL_MAPS = 1e-6  # float32 maps (module docstring)
RTOL_WEIGHTS = 1e-12  # the same float64 arithmetic


@pytest.fixture(scope="module")
def edited(pain_json, tmp_path_factory):
    """(ours, NiMARE's) studysets of the edited pain studyset (module docstring)."""
    from nimare.studyset import Studyset as NiMAREStudyset

    data = json.loads(pain_json.read_text())
    for i, study in enumerate(data["studies"]):
        meta = study["analyses"][0]["metadata"]
        if i % 3 == 0:
            meta["model"] = " FFX"  # labels are stripped and lower-cased
        elif i % 3 == 1:
            meta["model"] = "random"
        if i == 4:
            meta["sample_sizes"] = [9, 21]
        if i == 7:
            del meta["sample_sizes"]
    path = tmp_path_factory.mktemp("weights") / "pain_edited.json"
    path.write_text(json.dumps(data))
    return Studyset(path), NiMAREStudyset(str(path))


def _pair(cls_kwargs):
    from nimare.meta.cbma import StudyWeights as NiMAREStudyWeights

    return StudyWeights(**cls_kwargs), NiMAREStudyWeights(**cls_kwargs)


CASES = {
    "impute": {"on_missing": "impute"},
    "linear-max": {"transform": "linear", "reduce": "max", "on_missing": "impute"},
    "sum-min": {"reduce": "min", "on_missing": "impute", "inference_field": "model"},
    "none-ffx": {"transform": "none", "inference_field": "model"},
    "discount-labels": {
        "reduce": "sum",
        "on_missing": "impute",
        "inference_field": "model",
        "fixed_effects_discount": 0.5,
        "fixed_effects_labels": ("ffx",),
    },
    "uniform": {"source": "uniform", "inference_field": "model"},
}


def _explicit(ss):
    values = np.linspace(1.0, 3.0, len(ss))
    return {
        "dict": {"source": dict(zip(ss.ids, values, strict=True))},
        "array": {"source": values, "inference_field": "model"},
    }


def _assert_maps(ours, ref):
    for name in ("stat", "p", "z", "logp"):
        a = ours.get_map(name, return_type="array")
        b = np.asarray(ref.get_map(name, return_type="array"), dtype=np.float32)
        np.testing.assert_allclose(a, b, rtol=RTOL_MAPS, atol=0, equal_nan=True, err_msg=name)


@pytest.mark.parametrize("case", [*CASES, "dict", "array"])
def test_mkda_density_study_weights_parity(edited, case):
    from nimare.meta.cbma import MKDADensity as NiMAREMKDADensity

    ss, nss = edited
    kwargs = CASES.get(case) or _explicit(ss)[case]
    ours_w, their_w = _pair(kwargs)
    raw = ours_w.raw_weights(ss, ss.ids)
    expected = their_w.raw_weights(nss, nss.ids)
    assert list(raw.index) == list(expected.index)
    np.testing.assert_allclose(raw.to_numpy(), expected.to_numpy(), rtol=RTOL_WEIGHTS)
    assert (ours_w.n_fixed_effects_, ours_w.n_imputed_) == (
        their_w.n_fixed_effects_,
        their_w.n_imputed_,
    )
    ours = MKDADensity(weighting=ours_w).fit(ss)
    ref = NiMAREMKDADensity(weighting=their_w).fit(nss)
    _assert_maps(ours, ref)
    np.testing.assert_allclose(
        ours.estimator.weight_vec_, np.ravel(ref.estimator.weight_vec_), rtol=RTOL_WEIGHTS
    )
    np.testing.assert_allclose(
        ours.null_distributions["histogram_bins"],
        ref.estimator.null_distributions_["histogram_bins"],
        rtol=RTOL_WEIGHTS,
    )


def test_description_and_logged_warnings(edited, caplog):
    ss, _ = edited
    weights = StudyWeights(inference_field="model", on_missing="impute", fixed_effects_discount=0.5)
    with caplog.at_level(logging.WARNING, logger="nimare_dask.meta.cbma.weights"):
        res = MKDADensity(weighting=weights).fit(ss)
    text = " ".join(r.getMessage() for r in caplog.records)
    assert "set for 14 of 21 contrasts" in text  # 7 analyses have no model (i % 3 == 2)
    assert "1 contrast has a missing or non-positive weight (pain_08.nidm-1)" in text
    desc = res.description
    assert "square root of its sample size" in desc
    assert "with 7 fixed-effects contrasts discounted by a factor of 0.5" in desc
    assert "1 contrast was given the mean weight of the rest" in desc
    assert res.estimator.study_weights_ is weights


@pytest.mark.parametrize(
    "kwargs",
    [
        {"source": "sizes"},
        {"transform": "log"},
        {"reduce": "median"},
        {"on_missing": "drop"},
        {"fixed_effects_discount": 0},
        {"fixed_effects_discount": float("nan")},
    ],
)
def test_constructor_errors_as_nimare(kwargs):
    from nimare.meta.cbma import StudyWeights as NiMAREStudyWeights

    with pytest.raises(ValueError) as theirs:
        NiMAREStudyWeights(**kwargs)
    with pytest.raises(ValueError) as ours:
        StudyWeights(**kwargs)
    assert str(ours.value) == str(theirs.value)


def _both_raise(ours_call, their_call, exc=ValueError):
    with pytest.raises(exc) as theirs:
        their_call()
    with pytest.raises(exc) as ours:
        ours_call()
    return str(ours.value), str(theirs.value)


def test_weighting_errors_as_nimare(edited):
    from nimare.meta.cbma import weights as nw

    ss, nss = edited
    # default on_missing="raise": the analysis without a sample size is named
    ours, theirs = _both_raise(
        lambda: StudyWeights().raw_weights(ss, ss.ids),
        lambda: nw.StudyWeights().raw_weights(nss, nss.ids),
    )
    assert ours == theirs and "pain_08.nidm-1" in ours
    with pytest.raises(ValueError, match="pain_08.nidm-1"):
        MKDADensity(weighting="sample_size").fit(ss)
    # unknown field: the same message up to the list of fields (ours has more columns)
    ours, theirs = _both_raise(
        lambda: StudyWeights(inference_field="nope").raw_weights(ss, ss.ids),
        lambda: nw.StudyWeights(inference_field="nope").raw_weights(nss, nss.ids),
    )
    assert ours.split("Available")[0] == theirs.split("Available")[0]
    assert "model" in ours
    # wrong number of explicit weights
    ours, theirs = _both_raise(
        lambda: StudyWeights(source=[1.0, 2.0]).raw_weights(ss, ss.ids),
        lambda: nw.StudyWeights(source=[1.0, 2.0]).raw_weights(nss, nss.ids),
    )
    assert ours == theirs
    # no usable weight at all
    zero = {i: 0.0 for i in ss.ids}
    ours, theirs = _both_raise(
        lambda: StudyWeights(source=zero, on_missing="impute").raw_weights(ss, ss.ids),
        lambda: nw.StudyWeights(source=zero, on_missing="impute").raw_weights(nss, nss.ids),
    )
    assert ours == theirs
    ours, theirs = _both_raise(
        lambda: StudyWeights().raw_weights(ss, []),
        lambda: nw.StudyWeights().raw_weights(nss, []),
    )
    assert ours == theirs
    # the weighting argument
    ours, theirs = _both_raise(
        lambda: resolve_weighting("size"), lambda: nw.resolve_weighting("size")
    )
    assert ours == theirs
    ours, theirs = _both_raise(
        lambda: resolve_weighting(3), lambda: nw.resolve_weighting(3), exc=TypeError
    )
    assert ours == theirs
    for raw in ([0.0, 0.0], [np.inf, 1.0]):
        ours, theirs = _both_raise(
            lambda raw=raw: normalize_weights(raw, 2),
            lambda raw=raw: nw.normalize_weights(raw, 2),
        )
        assert ours == theirs


def test_no_sample_size_metadata(pain_studyset):
    tabs = pain_studyset._tables()
    bare = Studyset.from_tables(
        tabs["analyses"].drop(columns=["sample_size"]),
        tabs["points"],
        tabs["metadata"][["id"]],
        harmonize=False,
    )
    with pytest.raises(ValueError) as ours:
        StudyWeights().raw_weights(bare, bare.ids)
    # NiMARE's message (its collections always carry the field, so it is not reproduced)
    assert str(ours.value) == (
        "Sample-size weighting was requested, but the collection has no 'sample_sizes' or "
        "'sample_size' metadata. Populate it, or pass explicit weights via "
        "StudyWeights(source=...)."
    )
    # transform="none" needs no sample size (NiMARE: np.ones_like of the missing sizes)
    assert (StudyWeights(transform="none").raw_weights(pain_studyset) == 1).all()


def test_exports_and_params():
    from nimare.meta.cbma import StudyWeights as NiMAREStudyWeights

    assert MetaStudyWeights is StudyWeights
    assert StudyWeights().get_params() == NiMAREStudyWeights().get_params()
    w = StudyWeights().set_params(transform="linear", inference_field="model")
    assert (
        w.get_params()
        == NiMAREStudyWeights(transform="linear", inference_field="model").get_params()
    )
    with pytest.raises(ValueError, match="transform"):
        w.set_params(transform="log")  # validated as by the constructor (NiMARE does not)


def test_ale_subtraction_low_memory(pain_studyset, pain_json):
    from nimare.meta.cbma import ALESubtraction as NiMAREALESubtraction
    from nimare.studyset import Studyset as NiMAREStudyset

    nss = NiMAREStudyset(str(pain_json))
    ids = list(pain_studyset.ids)
    with pytest.raises(ValueError) as theirs:
        NiMAREALESubtraction(low_memory="yes")
    with pytest.raises(ValueError) as ours:
        ALESubtraction(low_memory="yes", n_iters=2, progress=False).fit(
            pain_studyset.slice(ids[:11]), pain_studyset.slice(ids[11:])
        )
    assert str(ours.value) == str(theirs.value)
    # NiMARE's low-memory path (disk-backed chunks) and ours (no effect) give the same maps
    ref = NiMAREALESubtraction(low_memory=True, n_iters=5).fit(
        nss.slice(ids[:11]), nss.slice(ids[11:])
    )
    est = ALESubtraction(low_memory=True, n_iters=5, progress=False)
    assert est.get_params()["low_memory"] is True
    res = est.fit(pain_studyset.slice(ids[:11]), pain_studyset.slice(ids[11:]))
    for name in ("stat_desc-group1MinusGroup2", "stat_desc-group1", "stat_desc-group2"):
        a = res.get_map(name, return_type="array")
        b = np.asarray(ref.get_map(name, return_type="array"), dtype=np.float32)
        # float32 ALE maps and their difference: STAT_ATOL of tests/test_meta_ale.py
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-8, err_msg=name)
    # the permutation p-values (same permutations) are compared in test_fwe_pairwise.py


def test_saved_study_weights_are_rebuilt(pain_studyset):
    """A saved result's parameters (JSON) rebuild the same StudyWeights (refits, reopening)."""
    from nimare_dask.meta.rebuild import estimator_from_info

    weights = StudyWeights(transform="linear", fixed_effects_labels=("ffx",))
    res = MKDADensity(weighting=weights).fit(pain_studyset)
    est = estimator_from_info(json.loads(json.dumps(res.estimator_info)))
    est.fit(pain_studyset)
    assert est.study_weights_.get_params() == weights.get_params()
    np.testing.assert_array_equal(est.weight_vec_, res.estimator.weight_vec_)
