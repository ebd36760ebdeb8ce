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
        # local-cluster options are refused with an existing cluster (issue #10)
        (
            ["ale", "--sample", "pain", "--scheduler", "tcp://127.0.0.1:1", "--n-workers", "2"],
            "--n-workers sets the threads of the local cluster and cannot be used with --scheduler",
        ),
        (
            ["ale", "--sample", "pain", "--scheduler-file", "s.json", "--n-workers", "2"],
            "cannot be used with --scheduler-file",
        ),
        (
            ["decode", "s.zarr", "m.nii.gz", "--scheduler-file", "s.json", "--n-workers", "1"],
            "cannot be used with --scheduler-file",
        ),
        (
            ["macm", "db.zarr", "--coords", "0", "0", "0", "--scheduler", "tcp://h:1"]
            + ["--dashboard-address", ":0"],
            "--dashboard-address applies to the local cluster",
        ),
        (["ale", "--sample", "pain", "--n-workers", "0"], "--n-workers must be positive"),
        # no option silently ignored (issue #13)
        (["ale", "--sample", "pain", "--fwhm", "0"], "--fwhm must be a positive width"),
        (["ale", "--sample", "pain", "--fwhm", "-8"], "--fwhm must be a positive width"),
        (["macm", "db.zarr", "--coords", "0", "0", "0", "--fwhm", "0"], "--fwhm must be"),
        (["macm", "db.zarr", "--mask", "m.nii.gz", "--radius", "6"], "--radius applies"),
        (
            ["macm", "db.zarr", "--coords", "0", "0", "0", "--no-fwe", "--n-iters", "5"],
            "--n-iters set the Monte Carlo correction that --no-fwe skips",
        ),
        (["ingest", "neurosynth", "--tfidf"], "--tfidf converts NeuroQuery's count matrices"),
        (["convert", "a.txt", "-o", "x.json", "--tfidf"], "--features and --tfidf apply"),
        (
            ["decode", "s.zarr", "m.nii.gz", "--storage-option", "anon=true"],
            "--storage-option applies to fsspec URLs",
        ),
        (
            ["decode", "s3://bucket/s.zarr", "m.nii.gz", "--storage-option", "anon"],
            "--storage-option expects KEY=VALUE",
        ),
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
    captured = capsys.readouterr()
    printed = captured.out
    assert "outputs in" in printed and "report" in printed
    # the local cluster's dashboard is on the loopback interface only (issue #10)
    assert "dask: local cluster, 1 threads; dashboard: http://127.0.0.1:" in captured.err
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
    # `pip install -e ".[test]"` installs it: a missing entry point is a packaging bug
    assert exe.exists(), f"the nimare-dask console script is missing from {exe.parent}"
    out = subprocess.run([str(exe), "ale", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "--n-iters" in out.stdout


def test_scheduler_and_scheduler_file_are_mutually_exclusive(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["ale", "--sample", "pain", "--scheduler", "tcp://h:1", "--scheduler-file", "s.json"])
    assert exc.value.code == 2
    assert "not allowed with argument --scheduler" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["ale", "macm", "decode"])
def test_every_dask_subcommand_takes_a_scheduler_file(command, capsys):
    with pytest.raises(SystemExit):
        main([command, "--help"])
    text = capsys.readouterr().out
    for flag in ("--scheduler ADDRESS", "--scheduler-file PATH", "--n-workers", "--dashboard"):
        assert flag in text, flag


def _listening(pid: int) -> set:
    import psutil

    conns = psutil.Process(pid).net_connections(kind="inet")
    return {(c.laddr.ip, c.laddr.port) for c in conns if c.status == psutil.CONN_LISTEN}


def test_local_cluster_listens_on_loopback_only(capsys):
    import os

    from nimare_dask.cli.cluster import dask_client

    before = _listening(os.getpid())
    with dask_client(n_workers=1) as client:
        opened = _listening(os.getpid()) - before
        assert client.submit(sum, [1, 2]).result() == 3
        port = client.scheduler_info()["services"]["dashboard"]
        # the scheduler talks in-process: no socket; the dashboards listen on 127.0.0.1
        assert client.scheduler.address.startswith("inproc://")
    assert opened and {ip for ip, _ in opened} == {"127.0.0.1"}, opened
    assert ("127.0.0.1", port) in opened
    err = capsys.readouterr().err
    assert f"dashboard: http://127.0.0.1:{port}/status" in err


def test_scheduler_file_wait_fails_clearly(tmp_path, capsys):
    import dask

    with dask.config.set({"distributed.comm.timeouts.connect": "0.3s"}):
        argv = ["ale", "--sample", "pain", "--n-iters", "5", "--output-dir", str(tmp_path)]
        assert main([*argv, "--scheduler-file", str(tmp_path / "none.json")]) == 2
    err = capsys.readouterr().err
    assert "none.json does not exist" in err and "dask scheduler --scheduler-file" in err


def test_ale_on_a_cluster_from_a_scheduler_file(tmp_path, capsys):
    """A real ``dask scheduler --scheduler-file`` and ``dask worker`` (as on an HPC system)."""
    from distributed import Client

    sched_file = tmp_path / "sched.json"
    (tmp_path / "scheduler").mkdir()
    (tmp_path / "worker").mkdir()
    dask_cli = [sys.executable, "-m", "dask"]
    procs = []
    try:
        procs.append(
            subprocess.Popen(
                [*dask_cli, "scheduler", "--scheduler-file", str(sched_file)]
                + ["--host", "127.0.0.1", "--port", "0", "--dashboard-address", "127.0.0.1:0"],
                cwd=tmp_path / "scheduler",
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
        procs.append(
            subprocess.Popen(
                [*dask_cli, "worker", "--scheduler-file", str(sched_file), "--nthreads", "1"]
                + ["--no-nanny", "--no-dashboard", "--local-directory", str(tmp_path / "worker")],
                cwd=tmp_path / "worker",
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
        # the worker must have joined, or the job would wait for one
        with Client(scheduler_file=str(sched_file), timeout=60) as probe:
            probe.wait_for_workers(1, timeout=60)
            address = probe.scheduler.address
        out = tmp_path / "out"
        argv = ["ale", "--sample", "pain", "--n-iters", "20", "--random-state", "3"]
        argv += ["--output-dir", str(out), "--diagnostics", "none", "--no-report"]
        assert main([*argv, "--scheduler-file", str(sched_file)]) == 0
        err = capsys.readouterr().err
        assert f"dask: {address}, 1 threads" in err
        assert "install the same versions" not in err  # client, scheduler, worker all match
        assert address.startswith("tcp://127.0.0.1:")
        # the same numbers as on the local cluster (the null does not depend on the cluster)
        local = tmp_path / "local"
        argv[argv.index(str(out))] = str(local)
        assert main([*argv, "--n-workers", "1"]) == 0
        name = "z_desc-size_level-cluster_corr-FWE_method-montecarlo.nii.gz"
        np.testing.assert_array_equal(
            np.asarray(nib.load(out / name).dataobj), np.asarray(nib.load(local / name).dataobj)
        )
    finally:
        for proc in reversed(procs):
            proc.terminate()
        for proc in reversed(procs):
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)


def test_verbose_configures_debug_logging_and_default_is_info(tmp_path, capsys, monkeypatch):
    import importlib
    import logging

    logger = logging.getLogger("nimare_dask")
    handlers, level = list(logger.handlers), logger.level
    sample = _sample_path("pain")
    assert main(["convert", sample, "-o", str(tmp_path / "a.json"), "--verbose"]) == 0
    err = capsys.readouterr().err
    assert "DEBUG nimare_dask.cli: nimare_dask " in err and "'command': 'convert'" in err
    assert main(["convert", sample, "-o", str(tmp_path / "b.json")]) == 0
    assert "DEBUG" not in capsys.readouterr().err

    # info messages of the package are shown by default, one line each; debug ones are not
    def emits_info(args):
        logging.getLogger("nimare_dask.meta.test").info("hello %s", "there")
        logging.getLogger("nimare_dask.meta.test").debug("hidden")
        return 0

    monkeypatch.setattr(importlib.import_module("nimare_dask.cli.convert"), "run", emits_info)
    assert main(["convert", sample, "-o", "x.json"]) == 0
    err = capsys.readouterr().err
    assert "info: hello there" in err and "hidden" not in err
    assert main(["convert", sample, "-o", "x.json", "--verbose"]) == 0
    assert "DEBUG nimare_dask.meta.test: hidden" in capsys.readouterr().err
    # main() undoes its logging set-up (it also runs in-process)
    assert logger.handlers == handlers and logger.level == level


def test_storage_options_parse_and_reach_fsspec(tmp_path, capsys, monkeypatch):
    from nimare_dask.cli.inputs import parse_storage_options

    opts = parse_storage_options(
        ["anon=true", "client_kwargs.endpoint_url=http://minio:9000", "block_size=1024", "p=x"]
    )
    assert opts == {
        "anon": True,
        "client_kwargs": {"endpoint_url": "http://minio:9000"},
        "block_size": 1024,
        "p": "x",
    }
    # a real fsspec URL round trip, with the options passed through as storage_options
    import nimare_dask
    from nimare_dask.studyset import Studyset

    seen = []
    for owner, name in ((nimare_dask, "open_studyset"), (Studyset, "to_zarr")):
        original = getattr(owner, name)

        def spy(*args, _original=original, _name=name, **kwargs):
            seen.append((_name, kwargs))
            return _original(*args, **kwargs)

        monkeypatch.setattr(owner, name, spy)
    url = f"memory://cli-{tmp_path.name}/pain.zarr"
    opt = ["--storage-option", "skip_instance_cache=true"]
    assert main(["convert", _sample_path("pain"), "-o", url, *opt]) == 0
    assert main(["convert", url, "-o", str(tmp_path / "pain.json"), *opt]) == 0
    assert len(json.loads((tmp_path / "pain.json").read_text())["studies"]) == 21
    assert seen == [
        ("to_zarr", {"overwrite": False, "skip_instance_cache": True}),
        ("open_studyset", {"skip_instance_cache": True}),
    ]


def test_ale_cli_predictive_and_stability(tmp_path):
    # the predicted cutoffs replace the Monte Carlo null (no --n-iters needed for the
    # correction); --stability leave_1_out adds one replicate per experiment (21 on pain)
    out = tmp_path / "o"
    args = ["ale", "--sample", "pain", "--correction", "predictive", "--stability",
            "leave_1_out", "--n-iters", "20", "--random-state", "0", "--diagnostics", "none",
            "--no-report", "--output-dir", str(out), "--n-workers", "1"]  # fmt: skip
    assert main(args) == 0
    target = "z_desc-size_level-cluster_corr-FWE_method-predictive"
    summary = pd.read_csv(out / f"{target}_diag-ResampledStability_tab-summary.tsv", sep="\t")
    assert summary.loc[0, "n_resamples"] == 21 and summary.loc[0, "target_n"] == 20
    stab = nib.load(out / f"{target}_diag-ResampledStability.nii.gz").get_fdata()
    assert 0 <= stab.min() and stab.max() <= 1 and stab.max() > 0
    assert (out / "logp_level-voxel_corr-FWE_method-predictive.nii.gz").exists()
    assert "predicted" in (out / "boilerplate.txt").read_text()
    # both need one group
    two = ["ale", "--sample", "pain", "--file2", str(out / "input_studyset.json"),
           "--correction", "predictive", "--output-dir", str(out / "x")]  # fmt: skip
    assert main(two) == 2
