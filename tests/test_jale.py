"""JALE's experiment/analysis sheets, tag algebra and analysis runner.

Oracles: the sheet contents and tag selections are derived by hand from the small CSV files in
``tests/data/jale`` (the expected experiments are written out below); JALE's Talairach
transform is its published matrix (inverted here by ``numpy.linalg.solve``); the main-effect
maps of a run are compared with NiMARE 0.22.1's ALE on the same experiments, and probabilistic
ALE with NiMARE's ResampledStability (subsample policy, same seed).
"""

from __future__ import annotations

import argparse
import csv
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from nimare_dask.io.errors import FociOutsideMaskWarning
from nimare_dask.io.jale import (
    DependentExperimentsWarning,
    JaleAnalysis,
    JaleSheetError,
    parse_jale_analyses,
    read_jale_analyses,
    read_jale_sheet,
    select_experiments,
)
from nimare_dask.workflows import jale as W

DATA = Path(__file__).parent / "data" / "jale"
FILLED = DATA / "experiments_filled.csv"
BLOCK = DATA / "experiments_block.csv"
PAIN = DATA / "pain_sheet.csv"
N_ITERS = 50  # smallest cluster-level FWE p is 1/50 < 0.05: significant clusters exist
SEED = 5


def _read(path, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DependentExperimentsWarning)
        warnings.simplefilter("ignore", FociOutsideMaskWarning)  # pain: as the Sleuth reader
        return read_jale_sheet(path, **kw)


@pytest.fixture(scope="module")
def filled():
    return _read(FILLED)


# ------------------------------------------------------------------------- sheet parsing
def test_filled_layout(filled):
    # every row names its article: rows of one article with the same tags form an experiment
    # (Smith's rows 2-3 share tags after lower-casing/stripping; row 4 differs), the empty
    # row 5 is dropped, Lee's empty tag cells give no tag
    expected = {
        "Jones 2005-row6": (20, ["fast", "gonogo", "low"], [6, 7]),
        "Kim 2012-row10": (9, ["gonogo", "high"], [10]),
        "Lee 2010-row8": (15, ["stroop"], [8, 9]),
        "Smith 2001-row2": (12, ["high", "stroop"], [2, 3]),
        "Smith 2001-row4": (12, ["low", "stroop"], [4]),
    }
    assert list(filled.ids) == list(expected)
    meta = filled.metadata.set_index("id")
    for aid, (n, tags, rows) in expected.items():
        assert meta.at[aid, "tags"] == tags and meta.at[aid, "rows"] == rows
        assert meta.at[aid, "sample_sizes"] == [n]
    assert filled.labels == ["fast", "gonogo", "high", "low", "stroop"]
    np.testing.assert_array_equal(filled.foci_counts(), [2, 1, 2, 2, 1])
    ann = filled.annotation_matrix
    assert ann.columns(["stroop"])[:, 0].tolist() == [0, 0, 1, 1, 1]


def test_tal_transform(filled):
    # JALE's tal2icbm_spm: solve M @ mni = tal with Lancaster's icbm_spm matrix, round
    m = np.array(
        [
            [0.9254, 0.0024, -0.0118, -1.0207],
            [-0.0048, 0.9316, -0.0871, -1.7667],
            [0.0152, 0.0883, 0.8924, 4.0926],
            [0, 0, 0, 1],
        ]
    )
    tal = np.array([[10, 10, 40], [-10, 12, 44]], dtype=float)
    want = np.round(np.linalg.solve(m, np.c_[tal, np.ones(2)].T).T[:, :3])
    got = filled.coordinates.query("id == 'Jones 2005-row6'")[["x", "y", "z"]].to_numpy()
    np.testing.assert_array_equal(got, want)
    assert set(filled.coordinates.query("id == 'Jones 2005-row6'")["space"]) == {"TAL"}
    nimare_utils = pytest.importorskip("nimare.utils")
    other = _read(FILLED, tal_transform="nimare")
    got = other.coordinates.query("id == 'Jones 2005-row6'")[["x", "y", "z"]].to_numpy()
    np.testing.assert_allclose(got, nimare_utils.tal2mni(tal), atol=1e-9)  # float rounding


def test_block_layout():
    ss = _read(BLOCK)
    # rows without an article continue the experiment above; only its first row's subjects,
    # space and tags count (row 4's "ignored" is not a tag); the blank line 7 keeps row 8's
    # number; Smith's second block is a second experiment
    meta = ss.metadata.set_index("id")
    assert list(ss.ids) == ["Jones 2005-row5", "Smith 2001-row2", "Smith 2001-row8"]
    assert meta.at["Smith 2001-row2", "rows"] == [2, 3, 4]
    assert meta.at["Smith 2001-row2", "tags"] == ["high", "stroop"]
    assert "ignored" not in ss.labels
    np.testing.assert_array_equal(ss.sample_sizes, [20, 12, 8])


def test_pool_experiments_and_dependence_warning():
    with pytest.warns(DependentExperimentsWarning, match="Smith 2001"):
        read_jale_sheet(FILLED)
    pooled = _read(FILLED, pool_experiments=True)
    meta = pooled.metadata.set_index("id")
    assert meta.at["Smith 2001-row2", "rows"] == [2, 3, 4]
    assert meta.at["Smith 2001-row2", "tags"] == ["high", "stroop"]  # first row's tags
    assert len(pooled) == 4


def test_excel_same_as_csv(tmp_path, filled):
    openpyxl = pytest.importorskip("openpyxl")
    book = openpyxl.Workbook()
    sheet = book.active
    with open(FILLED, newline="") as f:
        for row in csv.reader(f):
            sheet.append([_num(c) for c in row])
    book.save(tmp_path / "sheet.xlsx")
    ss = _read(tmp_path / "sheet.xlsx")
    assert list(ss.ids) == list(filled.ids)
    pd.testing.assert_frame_equal(ss.coordinates, filled.coordinates)
    assert ss.metadata["tags"].tolist() == filled.metadata["tags"].tolist()


def _num(cell: str):
    try:
        return int(cell)
    except ValueError:
        return cell or None


def test_excel_without_openpyxl(tmp_path, monkeypatch):
    path = tmp_path / "sheet.xlsx"
    path.write_bytes(b"PK")
    monkeypatch.setitem(sys.modules, "openpyxl", None)
    with pytest.raises(ImportError, match="openpyxl"):
        read_jale_sheet(path)


HEADER = "Article,Subjects,x,y,z,Space,Tag\n"


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("Article,Subjects,x,y,z\nA,10,1,2,3\n", "expected at least 6"),
        (HEADER + "A,10,1,2,3,MNI,t\nA,10,1,two,3,MNI,t\n", r"row 3: coordinate y is 'two'"),
        (HEADER + "A,10,1,2,3,MNI,t\nA,10,1,2,,MNI,t\n", "row 3: coordinate z is an empty"),
        (
            HEADER + "A,10,1,2,3,MNI,t\nB,10,1,2,3,Paxinos,t\n",
            r"row 3: coordinate space is 'Paxinos'",
        ),
        (HEADER + "A,,1,2,3,MNI,t\n", "row 2: subjects missing for article 'A'"),
        (HEADER + "A,0,1,2,3,MNI,t\n", "row 2: subjects is 0"),
        (HEADER + "A,ten,1,2,3,MNI,t\n", "row 2: subjects is 'ten'"),
        (HEADER + "A,10,1,2,3,MNI,t\n\n,,7,,,,\n", r"row\(s\) 4: only one or two"),
        (HEADER + ",,1,2,3,,\nA,10,1,2,3,MNI,t\n", "row 2: coordinates before the first row"),
        (HEADER, "no experiment rows"),
        ("", "empty"),
    ],
)
def test_sheet_errors(tmp_path, text, match):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(JaleSheetError, match=match) as info:
        read_jale_sheet(path)
    assert str(path) in str(info.value)


def test_unsupported_format(tmp_path):
    path = tmp_path / "sheet.ods"
    path.write_text("x")
    with pytest.raises(JaleSheetError, match="unsupported sheet format"):
        read_jale_sheet(path)
    with pytest.raises(FileNotFoundError):
        read_jale_sheet(tmp_path / "missing.csv")


# ---------------------------------------------------------------------------- tag algebra
# experiments (sorted ids): Jones {fast,gonogo,low}, Kim {gonogo,high}, Lee {stroop},
# Smith2 {high,stroop}, Smith4 {low,stroop}
@pytest.mark.parametrize(
    ("conditions", "expected"),
    [
        ("+stroop", [0, 0, 1, 1, 1]),
        ("+stroop +high", [0, 0, 0, 1, 0]),
        ("+STROOP +High", [0, 0, 0, 1, 0]),  # JALE lower-cases the tags
        ("+stroop +gonogo ?", [1, 1, 1, 1, 1]),
        ("+stroop +gonogo ? -low", [0, 1, 1, 1, 0]),
        ("+all -stroop", [1, 1, 0, 0, 0]),
        ("+high +stroop ? +low", [0, 0, 0, 0, 1]),  # (high or stroop) and low
        (["+low", "-fast", "-high"], [0, 0, 0, 0, 1]),
    ],
)
def test_selection(filled, conditions, expected):
    np.testing.assert_array_equal(
        select_experiments(filled, conditions), np.asarray(expected, bool)
    )


@pytest.mark.parametrize(
    ("conditions", "match"),
    [
        ("+stroop +gonogo", "bad tag combination"),
        ("+unknown", "no experiments found for tag 'unknown'"),
        ("-low", "no \\+tag condition"),
        ("? +low", "'\\?' needs \\+tag"),
        ("+stroop $roi.nii", "ROI masks"),
        ("+stroop -stroop", "excluded"),
        ("stroop", "must start with"),
    ],
)
def test_selection_errors(filled, conditions, match):
    with pytest.raises(JaleSheetError, match=match):
        select_experiments(filled, conditions, where="analysis 'x' (row 3)")


def test_analysis_sheet():
    got = read_jale_analyses(DATA / "analyses.csv")
    want = [
        JaleAnalysis("main", "all_experiments", ("+all",), row=1),
        JaleAnalysis("main", "stroop_high", ("+stroop", "+high"), row=2),
        JaleAnalysis(
            "main", "stroop_or_gonogo_not_low", ("+stroop", "+gonogo", "?", "-low"), row=3
        ),
        JaleAnalysis("contrast", "stroop", ("+stroop",), "gonogo", ("+gonogo",), row=5),
        JaleAnalysis("probabilistic", "stroop_prob", ("+stroop",), target_n=3, row=7),
        JaleAnalysis("balanced", "stroop", ("+stroop",), "gonogo", ("+gonogo",), row=8),
    ]
    assert got == want
    assert got[3].label == "stroop_vs_gonogo"


@pytest.mark.parametrize(
    ("rows", "match"),
    [
        ([["X", "a", "+t"]], "row 1: unknown analysis type 'X'"),
        ([["P", "a", "+t"]], "needs its N"),
        ([["M5", "a", "+t"]], "takes no number"),
        ([["M", "a", "+t"], ["C", "b", "+t"]], "row 2: a C contrast needs the next row"),
        ([["M", "a", "+t"], [None, "b", "+t"]], "row 2: no analysis type"),
        ([["M", None, "+t"]], "analysis name missing"),
        ([["M", "a/b", "+t"]], "cannot name a folder"),
        ([["M", "a"]], "no conditions"),
        ([["Cluster", "a", "+t"]], "not supported"),
        ([["B", "a", "+t"], [None, "a", "+u"]], "different names"),
        ([[None, None]], "no analyses"),
    ],
)
def test_analysis_sheet_errors(rows, match):
    with pytest.raises(JaleSheetError, match=match):
        parse_jale_analyses(rows, source="ana.csv")


def test_name_reused_with_other_conditions(filled):
    rows = [["M", "a", "+stroop"], ["C", "a", "+gonogo"], [None, "b", "+low"]]
    with pytest.raises(JaleSheetError, match="already used"):
        W.run_jale_analyses(filled, rows)


def test_balanced_row_runs_balanced_subtraction(pain, tmp_path):
    # a B row runs BalancedALESubtraction on the two selections with JALE's subsample-size rule
    # (no number given): min(floor(mean(min(n), 17)), min(n) - 2)
    rows = [["B", "large", "+large"], [None, "small", "+pain", "-large"]]
    out = W.run_jale_analyses(
        pain, rows, tmp_path, n_iters=5, n_subsamples=4, difference_iterations=3,
        random_state=SEED, n_cores=1, diagnostics="none",
    )  # fmt: skip
    n1, n2 = (len(out.selections[k]) for k in ("large", "small"))
    target = W.balanced_target_n(n1, n2)
    assert target == min(int(np.floor(np.mean([min(n1, n2), 17]))), min(n1, n2) - 2)
    ((kind, label),) = out.results
    assert kind == "balanced"
    res = out.results[(kind, label)]
    assert res.estimator.target_n == target
    for name in ("stat_desc-conjunction", "prob_desc-group1", "prob_desc-group2"):
        assert name in res.maps
    assert out.summary.loc[0, "status"] == f"B{target}"
    assert (tmp_path / "BalancedContrast" / label).is_dir()


def test_balanced_target_n():
    # JALE: min(floor(mean(min(n), 17)), min(n) - 2)
    assert W.balanced_target_n(10, 30) == 8  # min(13, 8)
    assert W.balanced_target_n(40, 30) == 23  # min(23, 28)


def test_tag_contributions(filled):
    counts = pd.DataFrame(
        {
            "id": ["Kim 2012-row10", "Lee 2010-row8", "Smith 2001-row2"],
            "PositiveTail 1": [0.2, 0.0, 0.6],
            "PositiveTail 2": [0.5, 0.5, np.nan],
        }
    )
    t = W.tag_contributions(counts, filled).set_index(["cluster", "tag"])
    # tags of Kim {gonogo, high}, Lee {stroop}, Smith2 {high, stroop}; fast/low absent
    assert set(t.index.get_level_values("tag")) == {"gonogo", "high", "stroop"}
    c1 = t.loc["PositiveTail 1"]
    assert c1.loc["high", "contribution"] == pytest.approx(0.8)
    assert c1.loc["high", "percent"] == pytest.approx(100.0)
    assert c1.loc["stroop", "percent"] == pytest.approx(75.0)  # 0.6 / 0.8
    assert c1.loc["stroop", "n_experiments"] == 2 and c1.loc["stroop", "n_contributing"] == 1
    c2 = t.loc["PositiveTail 2"]
    assert c2.loc["gonogo", "percent"] == pytest.approx(50.0)  # NaN counts as 0
    assert c2.loc["high", "contribution"] == pytest.approx(0.5)


# ------------------------------------------------------------------------ runs on pain
@pytest.fixture(scope="module")
def pain():
    return _read(PAIN)


@pytest.fixture(scope="module")
def pain_run(pain, tmp_path_factory):
    out = tmp_path_factory.mktemp("jale")
    rows = [
        ["M", "pain_odd", "+pain", "+odd"],
        ["C", "pain_large", "+large"],
        [None, "pain_small", "+pain", "-large"],
        ["P18", "pain_prob", "+all"],
    ]
    res = W.run_jale_analyses(
        pain,
        rows,
        out,
        n_iters=N_ITERS,
        contrast_iters=20,
        n_subsamples=8,
        random_state=SEED,
        n_cores=1,
    )
    return res, out


def _nimare_ids(ids):
    return [i.split("-row")[0] + ".nidm-1" for i in ids]


def test_main_effects_equal_nimare(pain_run, pain_json):
    from nimare.meta.cbma import ALE as NALE
    from nimare.studyset import Studyset as NSS

    res, out = pain_run
    # odd = pain_01, 03, ..., 21 (hand-assigned tags of the sheet)
    want = [f"pain_{i:02d}.nidm-1" for i in range(1, 22, 2)]
    assert _nimare_ids(res.selections["pain_odd"]) == want
    assert len(res.selections["pain_small"]) == 12 and len(res.selections["pain_large"]) == 9
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        nss = NSS(str(pain_json))
        for name in ("pain_odd", "pain_large"):
            ref = NALE().fit(nss.slice(_nimare_ids(res.selections[name])))
            ours = res.results[("main", name)]
            for m in ("stat", "p", "z", "logp"):
                a = ours.get_map(m, "array")
                b = np.asarray(ref.get_map(m, return_type="array"), dtype=np.float32)
                # as tests/test_meta_ale.py: ALE within 1e-8 (float32 ulps of a float64 sum in
                # another order), p/z/logp at float32 precision
                tol = {"atol": 1e-8, "rtol": 0} if m == "stat" else {"atol": 0, "rtol": 1e-6}
                np.testing.assert_allclose(a, b, err_msg=f"{name} {m}", **tol)


def test_contributions_and_files(pain_run, pain):
    res, out = pain_run
    result = res.results[("main", "pain_odd")]
    stem = f"{W.CLUSTER_TARGET}_diag-Jackknife"
    counts = result.tables[f"{stem}_tab-counts_tail-positive"]
    tags = result.tables[f"{stem}_tab-tags_tail-positive"]
    clusters = [c for c in counts.columns if c != "id"]
    assert clusters  # 50 iterations leave significant clusters
    for c in clusters:
        part = tags[tags["cluster"] == c].set_index("tag")
        # every selected experiment carries "pain" and "odd", none "even"
        assert part.loc["pain", "contribution"] == pytest.approx(counts[c].sum())
        assert part.loc["odd", "percent"] == pytest.approx(100.0)
        assert "even" not in part.index and part.loc["pain", "n_experiments"] == 11
    summary = pd.read_csv(out / "analyses.tsv", sep="\t")
    assert summary["analysis"].tolist() == [
        "pain_odd",
        "pain_large",
        "pain_small",
        "pain_large_vs_pain_small",
        "pain_prob",
    ]
    assert summary["n_experiments"].iloc[:3].tolist() == [11, 9, 12]
    folder = out / "MainEffect" / "pain_odd"
    assert (folder / f"pain_odd_{W.CLUSTER_TARGET}.nii.gz").exists()
    assert (folder / f"pain_odd_{stem}_tab-tags_tail-positive.tsv").exists()
    assert (out / "Probabilistic" / "pain_prob" / f"pain_prob_{W.PROB_MAP}.nii.gz").exists()
    exp = pd.read_csv(folder / "pain_odd_experiments.tsv", sep="\t")
    assert exp["n_foci"].sum() == int(pain.slice(res.selections["pain_odd"]).foci_counts().sum())


def test_contrast_restricted(pain_run):
    res, _ = pain_run
    con = res.results[("contrast", "pain_large_vs_pain_small")]
    sig = [
        np.asarray(res.results[("main", n)].get_map(W.CLUSTER_TARGET, "array")) > W.Z_05
        for n in ("pain_large", "pain_small")
    ]
    z = np.asarray(con.get_map("z_desc-group1MinusGroup2", "array"))
    # one-sided tests only inside each group's significant main effect
    assert np.all(z[~(sig[0] | sig[1])] == 0)
    conj = np.asarray(con.get_map("stat_desc-conjunction", "array"))
    assert np.all(conj[~(sig[0] & sig[1])] == 0) and (conj > 0).sum() == (sig[0] & sig[1]).sum()


def test_probabilistic_equals_nimare_stability(pain_run, pain_json):
    from nimare.correct import FWECorrector as NFWE
    from nimare.diagnostics import ResampledStability as NRS
    from nimare.meta.cbma import ALE as NALE
    from nimare.studyset import Studyset as NSS

    res, _ = pain_run
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = NALE().fit(NSS(str(pain_json)))
        ref.corrector = NFWE("montecarlo", n_iters=N_ITERS)
        ref = NRS(
            "z", "subsample", target_n=18, n_resamples=8, random_state=SEED, mask_coverage="gm"
        ).transform(ref)
    a = res.results[("probabilistic", "pain_prob")].get_map(W.PROB_MAP, "array")
    b = np.asarray(ref.maps["z_diag-ResampledStability"])
    # fractions of integer counts over the same subsets and the same Monte Carlo stream
    np.testing.assert_array_equal(a, b)
    assert (a > 0).sum() > 1000 and len(np.unique(a)) > 2  # not a trivial map


def test_probabilistic_ale_errors(pain):
    with pytest.raises(ValueError, match="between 1 and the 21"):
        W.probabilistic_ale(pain, 30)
    with pytest.raises(JaleSheetError, match="P30 asks for subsamples of 30"):
        W.run_jale_analyses(pain, [["P30", "p", "+all"]])


def test_cli(tmp_path):
    from nimare_dask.cli import jale as cli

    parser = argparse.ArgumentParser()
    cli.add_parser(parser.add_subparsers())
    ana = tmp_path / "ana.csv"
    ana.write_text("M,pain_even,+even\n")
    args = parser.parse_args(
        ["jale", str(PAIN), str(ana), "--output-dir", str(tmp_path / "o"), "--n-iters", "20",
         "--random-state", "1", "--n-workers", "1", "--diagnostics", "none"]
    )  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert cli.run(args) == 0
    summary = pd.read_csv(tmp_path / "o" / "analyses.tsv", sep="\t")
    assert summary["analysis"].tolist() == ["pain_even"] and summary["n_experiments"][0] == 10
    args.n_iters = 0
    with pytest.raises(ValueError, match="--n-iters must be positive"):
        cli.run(args)
