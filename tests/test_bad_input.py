"""Malformed inputs (tests/data/bad, described in its README): each fails with a clear error, or
warns visibly, and the message names the file (and the line or the study where there is one).
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import pytest

from nimare_dask.io import (
    EmptyExperimentWarning,
    FociOutsideMaskWarning,
    NeurosynthError,
    SleuthError,
    StudysetError,
    UnknownSpaceWarning,
    convert_dataset_to_studyset,
    convert_neurosynth_to_studyset,
    load_nimads,
    read_sleuth,
)

BAD = Path(__file__).parent / "data" / "bad"
FEAT = "data-bad_version-1_vocab-{}_source-abstract_type-tfidf_features.npz"


def _sleuth(*names):
    return lambda: read_sleuth([BAD / n for n in names] if len(names) > 1 else BAD / names[0])


def _nimads(name):
    return lambda: load_nimads(BAD / name)


def _legacy(name):
    return lambda: convert_dataset_to_studyset(BAD / name)


def _ns(coords="ns_coordinates.tsv", meta="ns_metadata.tsv", feats=None):
    return lambda: convert_neurosynth_to_studyset(
        BAD / coords, BAD / meta, None if feats is None else BAD / FEAT.format(feats)
    )


# (case id, reader, exception, file named in the message, further regexes the message matches)
ERRORS = [
    (
        "sleuth-missing-reference",
        _sleuth("sleuth_missing_reference.txt"),
        SleuthError,
        "sleuth_missing_reference.txt",
        [r"line 1\b", "missing Reference", "Reference=MNI"],
    ),
    (
        "sleuth-unknown-reference",
        _sleuth("sleuth_unknown_reference.txt"),
        SleuthError,
        "sleuth_unknown_reference.txt",
        [r"line 1\b", "'Dog'", "MNI, TAL or Talairach"],
    ),
    (
        "sleuth-no-subjects",
        _sleuth("sleuth_no_subjects.txt"),
        SleuthError,
        "sleuth_no_subjects.txt",
        [r"line 2\b", "Smith et al., 2010: Faces", "Subjects=N", r"line 3\b"],
    ),
    (
        "sleuth-header-no-subjects-at-end",
        _sleuth("sleuth_header_no_subjects_eof.txt"),
        SleuthError,
        "sleuth_header_no_subjects_eof.txt",
        [r"line 7\b", "Jones 2012", "Subjects"],
    ),
    (
        "sleuth-bad-subjects",
        _sleuth("sleuth_bad_subjects.txt"),
        SleuthError,
        "sleuth_bad_subjects.txt",
        [r"line 3\b", "'twelve'", "positive whole number"],
    ),
    (
        "sleuth-subjects-without-name",
        _sleuth("sleuth_subjects_without_name.txt"),
        SleuthError,
        "sleuth_subjects_without_name.txt",
        [r"line 2\b", "without an experiment name"],
    ),
    (
        "sleuth-non-numeric",
        _sleuth("sleuth_non_numeric.txt"),
        SleuthError,
        "sleuth_non_numeric.txt",
        [r"line 6\b", "non-numeric", "'dog'", "Faces > Houses"],
    ),
    (
        "sleuth-wrong-length",
        _sleuth("sleuth_wrong_length.txt"),
        SleuthError,
        "sleuth_wrong_length.txt",
        [r"line 6\b", "three numbers", "found 2"],
    ),
    (
        "sleuth-nan",
        _sleuth("sleuth_nan_coordinate.txt"),
        SleuthError,
        "sleuth_nan_coordinate.txt",
        [r"line 6\b", "NaN", "Faces > Houses"],
    ),
    (
        "sleuth-duplicated-experiment",
        _sleuth("sleuth_duplicated_experiment.txt"),
        SleuthError,
        "sleuth_duplicated_experiment.txt",
        [r"line 7\b", r"line 2\b", "duplicated experiment"],
    ),
    (
        "sleuth-duplicate-across-files",
        _sleuth("sleuth_duplicate_across_a.txt", "sleuth_duplicate_across_b.txt"),
        SleuthError,
        "sleuth_duplicate_across_b.txt",
        ["sleuth_duplicate_across_a.txt", "duplicated"],
    ),
    ("sleuth-empty", _sleuth("sleuth_empty.txt"), SleuthError, "sleuth_empty.txt", ["empty file"]),
    (
        "sleuth-blank-lines-only",
        _sleuth("sleuth_blank_lines_only.txt"),
        SleuthError,
        "sleuth_blank_lines_only.txt",
        ["empty file"],
    ),
    (
        "sleuth-binary",
        _sleuth("sleuth_binary.txt"),
        SleuthError,
        "sleuth_binary.txt",
        ["binary data"],
    ),
    (
        "sleuth-coordinates-before-header",
        _sleuth("sleuth_coordinates_before_header.txt"),
        SleuthError,
        "sleuth_coordinates_before_header.txt",
        [r"line 2\b", "before any"],
    ),
    (
        "sleuth-second-reference",
        _sleuth("sleuth_second_reference.txt"),
        SleuthError,
        "sleuth_second_reference.txt",
        [r"line 7\b", "second Reference"],
    ),
    (
        "sleuth-reference-only",
        _sleuth("sleuth_reference_only.txt"),
        SleuthError,
        "sleuth_reference_only.txt",
        ["no experiments"],
    ),
    ("sleuth-missing-file", _sleuth("no_such_file.txt"), FileNotFoundError, "no_such_file.txt", []),
    (
        "nimads-missing-studies",
        _nimads("nimads_missing_studies.json"),
        StudysetError,
        "nimads_missing_studies.json",
        ["'studies'"],
    ),
    (
        "nimads-study-missing-id",
        _nimads("nimads_study_missing_id.json"),
        StudysetError,
        "nimads_study_missing_id.json",
        [r"studies\[0\]", "'id'"],
    ),
    (
        "nimads-point-missing-coordinates",
        _nimads("nimads_point_missing_coordinates.json"),
        StudysetError,
        "nimads_point_missing_coordinates.json",
        ["'s1-a1'", r"points\[1\]", "'coordinates'"],
    ),
    (
        "nimads-point-bad-coordinates",
        _nimads("nimads_point_bad_coordinates.json"),
        StudysetError,
        "nimads_point_bad_coordinates.json",
        ["'s1-a1'", r"\[x, y, z\]"],
    ),
    (
        "nimads-nan-coordinates",
        _nimads("nimads_nan_coordinates.json"),
        StudysetError,
        "nimads_nan_coordinates.json",
        ["'s1-a1'", "non-finite"],
    ),
    (
        "nimads-duplicated-ids",
        _nimads("nimads_duplicated_analysis_ids.json"),
        StudysetError,
        "nimads_duplicated_analysis_ids.json",
        ["duplicated analysis ids", "'s1-a1'"],
    ),
    (
        "nimads-truncated",
        _nimads("nimads_truncated.json"),
        StudysetError,
        "nimads_truncated.json",
        ["invalid JSON", r"line \d+"],
    ),
    (
        "nimads-binary",
        _nimads("nimads_binary.json"),
        StudysetError,
        "nimads_binary.json",
        ["not a UTF-8"],
    ),
    (
        "nimads-not-an-object",
        _nimads("nimads_not_an_object.json"),
        StudysetError,
        "nimads_not_an_object.json",
        ["JSON object"],
    ),
    (
        "legacy-coords-length-mismatch",
        _legacy("legacy_coords_length_mismatch.json"),
        StudysetError,
        "legacy_coords_length_mismatch.json",
        ["'pain_01-1'", "different lengths"],
    ),
    (
        "legacy-non-numeric",
        _legacy("legacy_non_numeric.json"),
        StudysetError,
        "legacy_non_numeric.json",
        ["'pain_02-1'", "'left'"],
    ),
    (
        "ns-features-rows-mismatch",
        _ns(feats="rows"),
        NeurosynthError,
        FEAT.format("rows"),
        ["4 rows", "ns_metadata.tsv", "3 studies"],
    ),
    (
        "ns-vocabulary-columns-mismatch",
        _ns(feats="cols"),
        NeurosynthError,
        FEAT.format("cols"),
        ["3 columns", "vocab-cols_vocabulary.txt", "2 terms"],
    ),
    (
        "ns-features-junk",
        _ns(feats="junk"),
        NeurosynthError,
        FEAT.format("junk"),
        ["not a scipy sparse"],
    ),
    (
        "ns-coordinates-missing-column",
        _ns(coords="ns_coordinates_missing_column.tsv"),
        NeurosynthError,
        "ns_coordinates_missing_column.tsv",
        [r"\['z'\]"],
    ),
    (
        "ns-coordinates-non-numeric",
        _ns(coords="ns_coordinates_non_numeric.tsv"),
        NeurosynthError,
        "ns_coordinates_non_numeric.tsv",
        [r"line 3\b", "'five'", "'102'"],
    ),
    (
        "ns-coordinates-nan",
        _ns(coords="ns_coordinates_nan.tsv"),
        NeurosynthError,
        "ns_coordinates_nan.tsv",
        [r"line\(s\) \[3\]", "'102'", "non-finite"],
    ),
    (
        "ns-coordinates-binary",
        _ns(coords="ns_coordinates_binary.tsv.gz"),
        NeurosynthError,
        "ns_coordinates_binary.tsv.gz",
        ["cannot read"],
    ),
    (
        "ns-metadata-duplicated-ids",
        _ns(meta="ns_metadata_duplicated_ids.tsv"),
        NeurosynthError,
        "ns_metadata_duplicated_ids.tsv",
        [r"line\(s\) \[4\]", "'101'"],
    ),
    (
        "ns-metadata-empty",
        _ns(meta="ns_metadata_empty.tsv"),
        NeurosynthError,
        "ns_metadata_empty.tsv",
        ["empty"],
    ),
]


@pytest.mark.parametrize(
    "reader,exc,fname,patterns", [c[1:] for c in ERRORS], ids=[c[0] for c in ERRORS]
)
def test_error_names_file_and_place(reader, exc, fname, patterns):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # only the error matters here
        with pytest.raises(exc) as err:
            reader()
    msg = str(err.value)
    assert fname in msg
    for pattern in patterns:
        assert re.search(pattern, msg), f"{pattern!r} not in {msg!r}"


# Inputs that are read, with a visible warning naming the file and the analyses concerned.
WARNINGS = [
    (
        "sleuth-empty-experiment",
        _sleuth("sleuth_empty_experiment.txt"),
        EmptyExperimentWarning,
        "sleuth_empty_experiment.txt",
        [r"line 2\b", "Empty 2011: No foci", "dropped"],
        1,
    ),
    (
        "sleuth-outside-mask",
        _sleuth("sleuth_outside_mask.txt"),
        FociOutsideMaskWarning,
        "sleuth_outside_mask.txt",
        ["1 foci", "'Far 2015-Outside'", "kept"],
        2,
    ),
    (
        "sleuth-latin1",
        _sleuth("sleuth_latin1.txt"),
        UnicodeWarning,
        "sleuth_latin1.txt",
        [r"line 2\b", "Latin-1"],
        1,
    ),
    (
        "nimads-unknown-space",
        _nimads("nimads_unknown_space.json"),
        UnknownSpaceWarning,
        "nimads_unknown_space.json",
        ["'mystery-a1'", "kept as MNI"],
        2,
    ),
    (
        "ns-unknown-space",
        _ns(),
        UnknownSpaceWarning,
        "ns_coordinates.tsv",
        ["'103-1'", "kept as MNI"],
        3,
    ),
]


@pytest.mark.parametrize(
    "reader,category,fname,patterns,n_analyses",
    [c[1:] for c in WARNINGS],
    ids=[c[0] for c in WARNINGS],
)
def test_warning_names_file_and_studies(reader, category, fname, patterns, n_analyses):
    with pytest.warns(category) as rec:
        ss = reader()
    msg = " | ".join(str(w.message) for w in rec if issubclass(w.category, category))
    assert fname in msg
    for pattern in patterns:
        assert re.search(pattern, msg), f"{pattern!r} not in {msg!r}"
    assert len(ss) == n_analyses  # the input was still read


def test_latin1_names_survive():
    with pytest.warns(UnicodeWarning):
        ss = read_sleuth(BAD / "sleuth_latin1.txt")
    assert list(ss.ids) == ["M\xfcller et al., 2009-Faces"]


def test_there_are_enough_bad_inputs():
    assert len([p for p in BAD.iterdir() if p.name != "README.md"]) >= 20
    assert len(ERRORS) + len(WARNINGS) >= 20
