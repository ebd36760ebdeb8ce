"""``nimare-dask ale``: ALE with Monte Carlo FWE (and subtraction with ``--file2``)."""

from __future__ import annotations

import argparse
import time
from importlib import resources
from pathlib import Path

from nimare_dask.cli.cluster import add_cluster_arguments

SAMPLES = {"pain": "pain_sleuth.txt"}


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "ale",
        help="ALE meta-analysis of Sleuth files with voxel- and cluster-level Monte Carlo FWE",
        description=(
            "ALE of one or more Sleuth files (merged) with voxel- and cluster-level family-wise "
            "error correction by Monte Carlo simulation; with --file2, a subtraction analysis "
            "between the two groups. Writes NIfTI maps, tables, cluster tables, methods text "
            "with references, and an HTML report."
        ),
    )
    p.add_argument("sleuth_files", nargs="*", metavar="SLEUTH_FILE", help="group 1 Sleuth files")
    p.add_argument(
        "--sample",
        choices=sorted(SAMPLES),
        help="use a sample shipped with the package instead of files (pain: 21 experiments)",
    )
    p.add_argument("--file2", nargs="+", metavar="SLEUTH_FILE", help="group 2 (subtraction)")
    p.add_argument("--n-iters", type=int, default=10000, help="Monte Carlo iterations (10000)")
    p.add_argument(
        "--v-thr", type=float, default=0.001, help="cluster-forming threshold, uncorrected p"
    )
    p.add_argument(
        "--fwhm",
        type=float,
        default=None,
        help="fixed kernel FWHM in mm, > 0 (default: from each experiment's sample size)",
    )
    p.add_argument("--output-dir", default="nimare_dask_output", help="output folder")
    p.add_argument("--prefix", default="", help="file-name prefix")
    p.add_argument("--random-state", type=int, default=None, help="seed (reproducible runs)")
    p.add_argument(
        "--diagnostics",
        choices=["jackknife", "focuscounter", "none"],
        default="jackknife",
        help="per-study contributions to significant clusters",
    )
    p.add_argument(
        "--report", action=argparse.BooleanOptionalAction, default=True, help="HTML report"
    )
    p.add_argument(
        "--gingerale-contrast",
        action="store_true",
        help="with --file2: also GingerALE's contrast (restricted to significant main effects) "
        "and the conjunction map",
    )
    p.add_argument(
        "--tfce",
        action="store_true",
        help="also threshold-free cluster enhancement of the z map (E=0.5, H=2, dh=max/100, "
        "6-connectivity, as JALE) with voxel-level FWE from the same Monte Carlo iterations",
    )
    p.add_argument(
        "--correction",
        choices=("montecarlo", "predictive"),
        default="montecarlo",
        help="FWE correction: Monte Carlo (--n-iters iterations) or NiMARE's predicted "
        "vFWE/cFWE cutoffs (needs pip install 'nimare_dask[predictive]'; one group)",
    )
    p.add_argument(
        "--stability",
        choices=("leave_1_out", "subsample"),
        default=None,
        help="also ResampledStability: the share of replicates (leave one experiment out, or "
        "random subsamples) in which each voxel survives cluster-level FWE (one group)",
    )
    p.add_argument(
        "--stability-resamples", type=int, default=None, help="replicates for --stability subsample"
    )
    add_cluster_arguments(p)
    return p


def _sample_path(name: str) -> str:
    ref = resources.files("nimare_dask.resources") / "data" / SAMPLES[name]
    return str(ref)


def run(args: argparse.Namespace) -> int:
    from nimare_dask.meta.cbma._background_compile import start_background_compile

    # idle cores compile the numba kernels into numba's cache while the job starts (a no-op on
    # a busy machine, from a multi-threaded process, or with NIMARE_DASK_BACKGROUND_COMPILE=0)
    start_background_compile("ale")
    from nimare_dask.cli.cluster import cluster_options, dask_client
    from nimare_dask.io import read_sleuth
    from nimare_dask.workflows.cbma import ale_contrast_workflow, ale_workflow

    files = list(args.sleuth_files)
    if args.sample:
        files.append(_sample_path(args.sample))
    if not files:
        raise ValueError("give at least one Sleuth file (or --sample pain)")
    if args.n_iters < 1:
        raise ValueError(f"--n-iters must be positive, got {args.n_iters}")
    if not 0 < args.v_thr < 1:
        raise ValueError(f"--v-thr must be a p-value in (0, 1), got {args.v_thr}")
    if args.fwhm is not None and not args.fwhm > 0:
        raise ValueError(
            f"--fwhm must be a positive width in mm, got {args.fwhm}; leave it out to derive "
            "each experiment's kernel from its sample size"
        )
    if args.gingerale_contrast and not args.file2:
        raise ValueError("--gingerale-contrast needs --file2")
    for flag, used in (
        ("--tfce", args.tfce),
        ("--correction predictive", args.correction == "predictive"),
        ("--stability", args.stability is not None),
    ):
        if used and args.file2:
            raise ValueError(f"{flag} applies to a one-group ALE; leave out --file2")
    if args.stability_resamples is not None and args.stability != "subsample":
        raise ValueError("--stability-resamples needs --stability subsample")
    cluster = cluster_options(args)
    ss1 = read_sleuth(files if len(files) > 1 else files[0])
    ss2 = None
    if args.file2:
        ss2 = read_sleuth(args.file2 if len(args.file2) > 1 else args.file2[0])
    print(f"group 1: {ss1}")
    if ss2 is not None:
        print(f"group 2: {ss2}")
    t0 = time.perf_counter()
    common = {
        "n_iters": args.n_iters,
        "voxel_thresh": args.v_thr,
        "fwhm": args.fwhm,
        "random_state": args.random_state,
        "diagnostics": args.diagnostics,
        "output_dir": args.output_dir,
        "prefix": args.prefix,
        "report": args.report,
    }
    with dask_client(**cluster):
        if ss2 is None:
            out = ale_workflow(
                ss1,
                tfce=args.tfce,
                correction=args.correction,
                stability=args.stability,
                stability_resamples=args.stability_resamples,
                **common,
            )
        else:
            out = ale_contrast_workflow(
                ss1, ss2, gingerale_contrast=args.gingerale_contrast, **common
            )
    elapsed = time.perf_counter() - t0
    _print_outputs(out.files, Path(args.output_dir))
    print(f"done in {elapsed:.1f} s")
    return 0


def _print_outputs(files: dict, output_dir: Path) -> None:
    print(f"outputs in {output_dir.resolve()}:")
    for name, manifest in files.items():
        maps = manifest.get("maps", [])
        print(f"  [{name}] {len(maps)} maps (NIfTI), {len(manifest.get('tables', []))} tables")
        for key in ("cluster_tables",):
            for path in manifest.get(key, []):
                print(f"    cluster table: {path}")
        for key in ("boilerplate", "references", "report", "result_store", "input_studyset"):
            if manifest.get(key):
                print(f"    {key}: {manifest[key]}")
