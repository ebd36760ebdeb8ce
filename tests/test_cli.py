"""The ``nimare-dask`` command line end to end: every subcommand, outputs and error paths."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from nimare_dask.cli import main
from nimare_dask.cli.ale import _sample_path

COMMANDS = ["ale", "macm", "decode", "ingest", "convert", "jackknife"]


@pytest.mark.parametrize("command", COMMANDS)
def test_every_subcommand_has_help(command, capsys):
    with pytest.raises(SystemExit) as exc:
        main([command, "--help"])
    assert exc.value.code == 0
    assert "usage: nimare-dask " + command in capsys.readouterr().out


def test_entry_point_is_installed():
    out = subprocess.run(
        [sys.executable, "-m", "nimare_dask.cli.main", "--version"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.startswith("nimare_dask ")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["ale"], "at least one Sleuth file"),
        (["ale", "/no/such/file.txt"], "not found"),
        (["ale", "--sample", "pain", "--n-iters", "0"], "--n-iters must be positive"),
        (["ale", "--sample", "pain", "--v-thr", "2"], "--v-thr must be a p-value"),
        (["ale", "--sample", "pain", "--gingerale-contrast"], "needs --file2"),
        (["convert", "-o", "x.json"], "give input files"),
        (["convert", "a.json", "b.json", "-o", "x.json"], "several inputs"),
        (["macm", "/no/store", "--coords", "0", "0", "0"], "no such file or store"),
    ],
)
def test_bad_input_prints_one_line_and_exits_2(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0] and "Traceback" not in err[0]


def test_bad_sleuth_names_file_and_line(tmp_path, capsys):
    bad = tmp_path / "bad.txt"
    bad.write_text("// Reference=MNI\n// Study: A\n// Subjects=10\n1 2 dog\n")
    assert main(["ale", str(bad), "--n-iters", "5"]) == 2
    err = capsys.readouterr().err
    assert "bad.txt" in err and "line 4" in err


def test_convert_round_trips_sleuth_json_and_store(tmp_path, capsys):
    sample = _sample_path("pain")
    assert main(["convert", sample, "-o", str(tmp_path / "pain.json")]) == 0
    assert main(["convert", str(tmp_path / "pain.json"), "-o", str(tmp_path / "pain.txt")]) == 0
    assert main(["convert", str(tmp_path / "pain.txt"), "-o", str(tmp_path / "pain.zarr")]) == 0
    from nimare_dask import open_studyset
    from nimare_dask.io import read_sleuth

    a, b = read_sleuth(sample), open_studyset(tmp_path / "pain.zarr")
    assert list(a.ids) == list(b.ids)
    # Sleuth export writes 2 decimals; the sample's foci are whole millimetres
    np.testing.assert_allclose(a.xyz(), b.xyz(), atol=1e-9)
    data = json.loads((tmp_path / "pain.json").read_text())
    assert len(data["studies"]) == 21


@pytest.mark.database
def test_ingest_and_decode_from_local_mirror(tmp_path, shared_data, capsys):
    store = tmp_path / "ns.zarr"
    argv = [
        "ingest",
        "neurosynth",
        "--base-url",
        str(shared_data / "neurosynth-v7"),
        "--data-dir",
        str(tmp_path / "cache"),
        "-o",
        str(store),
    ]
    assert main(argv) == 0
    assert "14371 analyses" in capsys.readouterr().out
    assert main(argv) == 2  # refuses to overwrite
    assert "overwrite" in capsys.readouterr().err
    # decode a map against the stored database (feature maps built once, then reused)
    from nimare_dask.workflows import amygdala_roi

    roi = tmp_path / "amygdala.nii.gz"
    nib.save(amygdala_roi(), roi)
    tsv = tmp_path / "decoded.tsv"
    assert main(["decode", str(store), str(roi), "--top", "5", "--output", str(tsv)]) == 0
    decoded = pd.read_csv(tsv, sep="\t", index_col=0)
    assert len(decoded) >= 40 and decoded["r"].between(-1, 1).all()
    # MACM around the left amygdala (no FWE, to stay quick)
    out = tmp_path / "macm"
    argv = [
        "macm",
        str(store),
        "--coords",
        "-24",
        "-4",
        "-18",
        "--radius",
        "6",
        "--no-fwe",
        "--output-dir",
        str(out),
        "--no-report",
        "--n-workers",
        "1",
    ]
    assert main(argv) == 0
    assert "experiments have a focus in the seed" in capsys.readouterr().out
    assert (out / "z.nii.gz").exists() and (out / "selected_studies.tsv").exists()


def _run_ale(tmp_path, extra=()):
    out = tmp_path / "out"
    argv = ["ale", "--sample", "pain", "--n-iters", "40", "--random-state", "7"]
    argv += ["--output-dir", str(out), "--n-workers", "1", *extra]
    assert main(argv) == 0
    return out


def test_ale_sample_end_to_end_outputs(tmp_path, capsys):
    out = _run_ale(tmp_path)
    printed = capsys.readouterr().out
    assert "outputs in" in printed and "report" in printed
    names = {p.name for p in out.iterdir()}
    for m in (
        "stat",
        "p",
        "z",
        "logp",
        "z_level-voxel_corr-FWE_method-montecarlo",
        "z_desc-size_level-cluster_corr-FWE_method-montecarlo",
        "logp_desc-mass_level-cluster_corr-FWE_method-montecarlo",
    ):
        assert f"{m}.nii.gz" in names, m
    for f in (
        "boilerplate.txt",
        "references.bib",
        "report.html",
        "result.zarr",
        "input_studyset.json",
    ):
        assert f in names, f
    img = nib.load(out / "z.nii.gz")
    assert img.shape == (91, 109, 91)
    np.testing.assert_array_equal(np.diag(img.affine), [2, 2, 2, 1])
    clusters = [p for p in out.iterdir() if p.name.endswith("_tab-clusters.tsv")]
    assert clusters
    table = pd.read_csv(clusters[0], sep="\t")
    cols = {
        "Cluster ID",
        "p",
        "Size (voxels)",
        "Size (mm3)",
        "Peak Stat",
        "Peak X",
        "Center of Mass X",
        "Representative X",
        "Peak Label",
        "Atlas Overlap",
    }
    assert cols <= set(table.columns)
    assert (table["p"] > 0).all() and (table["p"] <= 1).all()
    text = (out / "boilerplate.txt").read_text()
    assert "40" in text and "0.001" in text
    # jackknife on the saved result
    assert (
        main(
            [
                "jackknife",
                str(out / "result.zarr"),
                str(out / "input_studyset.json"),
                "--output-dir",
                str(tmp_path / "jk"),
                "--target-image",
                "z",
                "--threshold",
                "3.1",
            ]
        )
        == 0
    )
    assert list((tmp_path / "jk").glob("*Jackknife*.tsv"))


def test_ale_is_reproducible_with_a_seed(tmp_path):
    a = _run_ale(tmp_path / "a")
    b = _run_ale(tmp_path / "b")
    name = "z_desc-size_level-cluster_corr-FWE_method-montecarlo.nii.gz"
    np.testing.assert_array_equal(
        np.asarray(nib.load(a / name).dataobj), np.asarray(nib.load(b / name).dataobj)
    )


def test_ale_subtraction_with_gingerale_contrast(tmp_path):
    from nimare_dask.io import read_sleuth, write_sleuth

    ss = read_sleuth(_sample_path("pain"))
    write_sleuth(ss.slice(ss.ids[:11]), tmp_path / "g1.txt")
    write_sleuth(ss.slice(ss.ids[11:]), tmp_path / "g2.txt")
    out = tmp_path / "sub"
    argv = [
        "ale",
        str(tmp_path / "g1.txt"),
        "--file2",
        str(tmp_path / "g2.txt"),
        "--n-iters",
        "30",
        "--random-state",
        "1",
        "--output-dir",
        str(out),
        "--n-workers",
        "1",
        "--gingerale-contrast",
        "--diagnostics",
        "none",
        "--no-report",
    ]
    assert main(argv) == 0
    names = {p.name for p in out.iterdir()}
    assert "subtraction_z_desc-group1MinusGroup2.nii.gz" in names
    assert "contrast_stat_desc-conjunction.nii.gz" in names
    assert any(n.startswith("group1_") for n in names) and any(
        n.startswith("group2_") for n in names
    )


def test_console_script_runs(tmp_path):
    exe = Path(sys.executable).parent / "nimare-dask"
    if not exe.exists():
        pytest.skip("console script not installed in this environment")
    out = subprocess.run([str(exe), "ale", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "--n-iters" in out.stdout
