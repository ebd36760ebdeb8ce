"""Sleuth reader/writer: parity with NiMARE 0.22.1 and documented behaviour on odd input."""

from __future__ import annotations

import warnings
from pathlib import Path

import nimare.io as nimare_io
import numpy as np
import pandas as pd
import pytest

from nimare_dask import Studyset
from nimare_dask.io import (
    EmptyExperimentWarning,
    FociOutsideMaskWarning,
    SleuthError,
    convert_sleuth_to_studyset,
    read_sleuth,
    write_sleuth,
)
from nimare_dask.io.sleuth import split_study_info
from nimare_dask.space import tal2mni

DATA = Path(__file__).parent / "data"

# Coordinates are compared at 1e-6 mm: both sides apply the same Lancaster matrix in float64,
# so only rounding differences (~1e-13 mm) are expected.
ATOL_MM = 1e-6


def _oracle(files):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return nimare_io.convert_sleuth_to_studyset(files)


def _assert_same(ours, theirs):
    assert list(ours.ids) == list(theirs.ids)
    oc, tc = ours.coordinates, theirs.coordinates
    assert list(oc["id"]) == list(tc["id"])
    np.testing.assert_allclose(
        oc[["x", "y", "z"]].to_numpy(float), tc[["x", "y", "z"]].to_numpy(float), atol=ATOL_MM
    )
    # sample sizes are whole numbers of subjects: exact
    np.testing.assert_array_equal(ours.sample_sizes, np.asarray(theirs.sample_sizes(), float))
    ours_meta = ours.metadata.set_index("id")["sample_sizes"]
    theirs_meta = theirs.metadata.set_index("id")["sample_sizes"]
    for aid in ours.ids:
        assert list(ours_meta[aid]) == list(theirs_meta[aid])


@pytest.mark.parametrize(
    "names",
    [
        ["test_sleuth_file.txt"],
        ["test_sleuth_file2.txt"],  # Talairach, mixed tabs/spaces
        ["test_sleuth_file.txt", "test_sleuth_file2.txt"],  # merged, MNI + TAL
    ],
)
def test_matches_nimare_on_its_test_files(nimare_test_data, names):
    files = [str(nimare_test_data / n) for n in names]
    _assert_same(read_sleuth(files), _oracle(files))


@pytest.mark.parametrize(
    "name", ["semantic_knowledge_children.txt", "semantic_relatedness_children.txt"]
)
def test_matches_nimare_on_semantic_files(nimare_resources, name):
    path = str(nimare_resources / name)
    with pytest.warns(FociOutsideMaskWarning, match=name):  # a few foci just off the mask
        ours = convert_sleuth_to_studyset(path)
    _assert_same(ours, _oracle(path))
    assert len(ours) in (21, 16)


def test_matches_nimare_on_sample_file():
    """GingerALE-style sample: Talairach, CRLF, multi-line header, tabs and spaces."""
    path = DATA / "sleuth_sample_tal.txt"
    ours = read_sleuth(path)
    _assert_same(ours, _oracle(str(path)))
    assert "Kim et al., 2014-Emotional faces > neutral faces (healthy adults)" in ours.ids


def test_talairach_foci_converted(nimare_test_data):
    ss = read_sleuth(nimare_test_data / "test_sleuth_file2.txt")
    raw = np.array([[-18, -58, -24]], float)  # first focus as written (TAL)
    np.testing.assert_allclose(ss.xyz()[:1], tal2mni(raw), atol=ATOL_MM)
    assert set(ss.coordinates["space"]) == {"TAL"}


@pytest.mark.parametrize(
    "name", ["test_sleuth_file3.txt", "test_sleuth_file4.txt", "test_sleuth_file5.txt"]
)
def test_errors_where_nimare_errors(nimare_test_data, name):
    path = str(nimare_test_data / name)
    with pytest.raises(ValueError):
        _oracle(path)
    with pytest.raises(SleuthError) as err:  # SleuthError is a ValueError, as NiMARE's
        read_sleuth(path)
    assert name in str(err.value) and "line" in str(err.value)


def test_non_path_input_is_a_value_error():
    with pytest.raises(ValueError):
        read_sleuth(5)


# NiMARE's own parametrised header cases (tests/test_io.py), plus the fallbacks.
HEADERS = [
    (["Smith et al., 2010: Condition A"], "Smith et al., 2010", "Condition A"),
    (["Smith et al., 2010; Condition A"], "Smith et al., 2010", "Condition A"),
    (
        ["Journal of Neuroscience: Methods Smith et al., 2010; Condition A"],
        "Journal of Neuroscience: Methods Smith et al., 2010",
        "Condition A",
    ),
    (["StudyName; ExperimentName"], "StudyName", "ExperimentName"),
    (["StudyName Only"], "StudyName Only", "analysis_1"),
    (["Smith et al.", "2010; Condition A"], "Smith et al. 2010", "Condition A"),
    (["A: b; c"], "A: b", "c"),  # no year: first ';' wins over an earlier ':'
    (["Smith 2010 x: y; z"], "Smith 2010 x", "y; z"),  # after a year: the first of ; and :
    (["Smith 2010:"], "Smith 2010", "analysis_1"),
]


@pytest.mark.parametrize("lines,study,contrast", HEADERS)
def test_header_split_matches_nimare(tmp_path, lines, study, contrast):
    path = tmp_path / "h.txt"
    path.write_text(
        "\n".join(["// Reference = MNI", *[f"// {x}" for x in lines], "// Subjects = 10", "0 0 0"])
    )
    theirs = nimare_io.convert_sleuth_to_dict(str(path))
    assert list(theirs) == [study] and list(theirs[study]["contrasts"]) == [contrast]
    ss = read_sleuth(path)
    assert list(ss.ids) == [f"{study}-{contrast}"]
    assert split_study_info(" ".join(lines)) == (study, contrast)


def test_lenient_spelling_crlf_and_blank_lines(tmp_path):
    path = tmp_path / "x.txt"
    path.write_bytes(
        b"\xef\xbb\xbf//reference = talairach\r\n\r\n//  Smith 2010: A\r\n//SUBJECTS= 12\r\n"
        b"1 2 3\r\n\r\n4\t5\t6\r\n\r\n\r\n// Jones 2011: B\r\n// Subjects=7\r\n7 8 9\r\n"
    )
    ss = read_sleuth(path)
    assert list(ss.ids) == ["Jones 2011-B", "Smith 2010-A"]
    assert ss.foci_counts().tolist() == [1, 2]  # a blank line inside a coordinate list is fine
    np.testing.assert_array_equal(ss.sample_sizes, [7, 12])
    np.testing.assert_allclose(ss.xyz()[0], tal2mni(np.array([7.0, 8, 9]))[0], atol=ATOL_MM)


def test_metadata_lines_after_subjects(tmp_path):
    """NiMARE's own Sleuth writer puts '//DOI=' lines after Subjects; NiMARE cannot read them."""
    path = tmp_path / "m.txt"
    path.write_text(
        "//Reference=MNI\n//Smith 2010: A\n//Subjects=12\n//DOI=10.1/xyz\n//PubMedId=123\n1\t2\t3\n"
    )
    ss = read_sleuth(path)
    meta = ss.metadata.iloc[0]
    assert meta["doi"] == "10.1/xyz" and meta["pmid"] == "123"
    with pytest.raises(ValueError):
        nimare_io.convert_sleuth_to_dict(str(path))


def test_reads_nimare_exported_sleuth(tmp_path, pain_json, pain_studyset):
    nimare_io.convert_nimads_to_sleuth(str(pain_json), tmp_path, decimal_precision=3)
    with pytest.warns(FociOutsideMaskWarning, match="pain_01.nidm-1"):
        ss = read_sleuth(tmp_path / "nimads_sleuth_file.txt")
    assert len(ss) == len(pain_studyset)
    # written with 3 decimals: agree to half a unit in the last place
    np.testing.assert_allclose(
        np.sort(ss.xyz(), axis=0), np.sort(pain_studyset.xyz(), axis=0), atol=5e-4 + 1e-9
    )


def test_empty_experiment_is_dropped_with_warning(tmp_path):
    path = tmp_path / "e.txt"
    path.write_text(
        "// Reference=MNI\n// A 2010: x\n// Subjects=5\n\n// B 2011: y\n"
        "// Subjects=6\n1 2 3\n// C 2012: z\n// Subjects=7\n"
    )
    with pytest.warns(EmptyExperimentWarning) as rec:
        ss = read_sleuth(path)
    assert list(ss.ids) == ["B 2011-y"]
    msgs = [str(w.message) for w in rec]
    assert any("line 2" in m and "A 2010: x" in m for m in msgs)
    assert any("line 8" in m and "C 2012: z" in m for m in msgs)


def test_duplicate_across_files_names_both(tmp_path):
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    a.write_text("// Reference=MNI\n// S 2010: x\n// Subjects=5\n1 2 3\n")
    b.write_text("// Reference=TAL\n\n// S 2010: x\n// Subjects=9\n4 5 6\n")
    with pytest.raises(SleuthError, match=r"b\.txt, line 3.*a\.txt, line 2"):
        read_sleuth([a, b])


@pytest.mark.parametrize("space", ["MNI", "TAL"])
def test_write_read_round_trip(tmp_path, nimare_test_data, space):
    src = read_sleuth(
        [nimare_test_data / "test_sleuth_file.txt", nimare_test_data / "test_sleuth_file2.txt"]
    )
    out = write_sleuth(src, tmp_path / "out.txt", space=space, decimal_precision=6)
    back = read_sleuth(out)
    assert list(back.ids) == list(src.ids)
    np.testing.assert_array_equal(back.sample_sizes, src.sample_sizes)
    # 6 decimals written; TAL adds a matrix round trip (~1e-13): half a unit in the 6th place
    np.testing.assert_allclose(back.xyz(), src.xyz(), atol=5e-7 + 1e-9)
    assert out.read_text().splitlines()[0] == f"// Reference={space}"
    assert not list(tmp_path.glob(".*tmp"))  # atomic write left nothing behind
    # NiMARE reads what we write, with the same ids
    assert list(_oracle(str(out)).ids) == list(src.ids)


def test_write_requires_sample_sizes(tmp_path):
    analyses = pd.DataFrame({"study_id": ["s1", "s2"], "contrast_id": ["1", "1"]})
    points = pd.DataFrame({"id": ["s1-1", "s2-1"], "x": [0, 2], "y": [0, 2], "z": [0, 2]})
    meta = pd.DataFrame({"id": ["s1-1", "s2-1"], "sample_sizes": [[10], None]})
    ss = Studyset.from_tables(analyses, points, meta)
    with pytest.raises(SleuthError, match=r"x\.txt.*without a sample size \['s2-1'\]"):
        write_sleuth(ss, tmp_path / "x.txt")
    assert not (tmp_path / "x.txt").exists()


def test_write_skips_analyses_without_foci(tmp_path):
    analyses = pd.DataFrame({"study_id": ["s1", "s2"], "contrast_id": ["1", "1"]})
    points = pd.DataFrame({"id": ["s1-1"], "x": [0.0], "y": [0.0], "z": [0.0]})
    meta = pd.DataFrame({"id": ["s1-1", "s2-1"], "sample_sizes": [[10], [12]]})
    ss = Studyset.from_tables(analyses, points, meta)
    with pytest.warns(EmptyExperimentWarning, match="s2-1"):
        out = write_sleuth(ss, tmp_path / "x.txt")
    assert list(read_sleuth(out).ids) == ["s1-1"]
