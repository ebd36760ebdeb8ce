"""The methods paragraph reads as a paper's: articles, no repeated counts, printed numbers.

On the pain ALE with a Monte Carlo FWE correction and on an MKDAChi2 result (with its own
label-permutation FWE): "an ALE kernel", "an ALE value", "an MKDA kernel" (never "a(n)"), each
input's foci, experiments and participants stated once, no sentence twice, thresholds to 4
significant digits, p-values as 0.001, FWHMs in mm with 2 decimals, no exponents.
"""

from __future__ import annotations

import re

import pytest

from nimare_dask.correct import FWECorrector
from nimare_dask.meta.cbma import ALE, KDA, SCALE, ALESubtraction, MKDAChi2, MKDADensity
from nimare_dask.meta.text import an, inputs_sentence, p_text, sig
from nimare_dask.reports import methods_text


def _sentences(text: str) -> list[str]:
    return [s.strip() for s in re.split(r"(?<=[.;])\s+(?=[A-Z])", text) if s.strip()]


def _common_checks(text: str) -> None:
    assert "a(n)" not in text
    assert not re.search(r"\ba (ALE|MKDA|FWE|[AEIOU]\w*)\b", text), text
    assert not re.search(r"\d[eE][-+]?\d", text), "no exponent notation"
    sentences = _sentences(text)
    repeated = {s for s in sentences if sentences.count(s) > 1}
    assert not repeated, repeated
    for mm in re.findall(r"(\d+(?:\.\d+)?) mm", text):
        assert len(mm.split(".")[1]) <= 2 if "." in mm else True, mm


@pytest.fixture(scope="module")
def ale_text(pain_studyset):
    res = ALE(progress=False).fit(pain_studyset)
    res = FWECorrector("montecarlo", n_iters=20, random_state=0, progress=False).transform(res)
    return methods_text(res, pain_studyset), res


def test_ale_montecarlo_text(ale_text, pain_studyset):
    text, res = ale_text
    _common_checks(text)
    assert "using an ALE kernel" in text
    assert "voxels with an ALE value above" in text
    # the input is described once (the report's fuller sentence replaces the estimator's)
    assert len(re.findall(r"\b267 foci\b", text)) == 1
    assert len(re.findall(r"\b334 participants\b", text)) == 1
    assert "21 studies, 21 analyses (experiments) and 267 foci" in text
    assert "included 267 foci from 21 experiments" not in text
    # the kernel text sits with the input sentence, before the correction
    assert text.index("distinct FWHMs") < text.index("Family-wise error")
    assert "9.24 mm (N = 20, 2 experiments)" in text
    # the cluster-forming threshold as printed: 4 significant digits, and its p-value
    thr = re.search(r"an ALE value above ([0-9.]+),", text).group(1)
    assert len(thr.replace("0.", "", 1).lstrip("0")) <= 4, thr
    assert float(thr) == pytest.approx(float(res.estimator.summarystat_threshold(0.001)), rel=1e-3)
    assert "uncorrected p < 0.001 " in text
    assert "in each of 20 iterations" in text
    assert text.count("random seed was 0") == 1
    assert "z_level-voxel_corr-FWE_method-montecarlo is significant at z > 1.645" in text


def test_mkdachi2_text(halves):
    ss1, ss2 = halves
    res = MKDAChi2(progress=False).fit(ss1, ss2)
    plain = methods_text(res, ss1, ss2)
    _common_checks(plain)
    assert "using an MKDA kernel" in plain
    assert "The MKDA kernel modelled each focus as a sphere of radius 10 mm with value 1." in plain
    for ss, which in ((ss1, "first input dataset (group 1)"), (ss2, "second input dataset")):
        n_foci = int(ss.foci_counts().sum())
        assert len(re.findall(rf"\b{n_foci} foci\b", plain)) == 1
        assert f"The {which}" in plain
    assert "random seed" not in plain and "Monte Carlo" not in plain  # nothing ran at random

    corrected = FWECorrector("montecarlo", n_iters=10, progress=False).transform(res)
    text = methods_text(corrected, ss1, ss2)
    _common_checks(text)
    chi2 = re.search(r"chi-square above ([0-9.]+), i\.e\. p < ([0-9.]+)\)", text)
    assert chi2 is not None, text
    assert chi2.group(1) == "10.83" and chi2.group(2) == "0.001"
    assert "permutation i was seeded with i" in text


@pytest.fixture(scope="module")
def halves(pain_studyset):
    ids = list(pain_studyset.ids)
    return pain_studyset.slice(ids[:10]), pain_studyset.slice(ids[10:])


def test_every_estimator_writes_its_article(pain_studyset, halves):
    texts = {
        "ALE": ALE(kernel__fwhm=10).fit(pain_studyset).description,
        "MKDA": MKDADensity().fit(pain_studyset).description,
        "KDA": KDA().fit(pain_studyset).description,
        "SUB": ALESubtraction(n_iters=4, progress=False).fit(*halves).description,
        "SCALE": SCALE(
            pain_studyset.grid.voxel_xyz[:500], n_iters=4, random_state=0, progress=False
        )
        .fit(pain_studyset)
        .description,
    }
    assert "using an ALE kernel" in texts["ALE"]
    assert "using an MKDA kernel" in texts["MKDA"]
    assert "using a KDA kernel" in texts["KDA"]
    assert "using an ALE kernel" in texts["SUB"] and "using an ALE kernel" in texts["SCALE"]
    assert "The first input dataset (group 1) included" in texts["SUB"]
    for text in texts.values():
        assert "a(n)" not in text


def test_text_helpers(pain_studyset):
    assert sig(0.0108836) == "0.01088" and sig(12.3456) == "12.35" and sig(3.0) == "3"
    assert p_text(0.001) == "0.001" and p_text(1e-5) == "0.00001" and p_text(0.05) == "0.05"
    assert [an(w) for w in ("ALE", "MKDA", "KDA", "SCALE", "ALE value", "uncorrected")] == [
        "an ALE",
        "an MKDA",
        "a KDA",
        "a SCALE",
        "an ALE value",
        "an uncorrected",
    ]
    assert (
        inputs_sentence(pain_studyset) == "The input dataset included 267 foci from 21 experiments."
    )
