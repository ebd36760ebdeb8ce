"""``nimare-dask jale``: the analyses of a JALE project (experiment sheet + analysis sheet)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from nimare_dask.cli.cluster import add_cluster_arguments


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "jale",
        help="run a JALE project: tagged experiment sheet + analysis list (M, P<n>, C, B)",
        description=(
            "Read a JALE experiment sheet (.xlsx or .csv: article, subjects, x, y, z, space, "
            "then tag columns) and a JALE analysis sheet (rows 'M name +tag ...', 'P17 name "
            "...', 'C name ...' followed by the second group's row, 'B[17] name ...'; +tag and, "
            "-tag not, ? or) and run every analysis: ALE main effects with Monte Carlo FWE and "
            "per-experiment and per-tag contributions, contrasts, probabilistic ALE. Writes "
            "<output-dir>/<MainEffect|Contrast|Probabilistic|BalancedContrast>/<name>/ and "
            "analyses.tsv."
        ),
    )
    p.add_argument("experiments", metavar="EXPERIMENT_SHEET", help="JALE experiment sheet")
    p.add_argument("analyses", metavar="ANALYSIS_SHEET", help="JALE analysis sheet")
    p.add_argument("--output-dir", default="nimare_dask_jale", help="output folder")
    p.add_argument("--n-iters", type=int, default=5000, help="Monte Carlo iterations (JALE's 5000)")
    p.add_argument(
        "--v-thr", type=float, default=0.001, help="cluster-forming threshold, uncorrected p"
    )
    p.add_argument("--tfce", action="store_true", help="also TFCE FWE on main effects")
    p.add_argument(
        "--contrast",
        choices=["jale", "nimare"],
        default="jale",
        help="C rows: each direction restricted to its significant main effect, plus the "
        "conjunction (jale, default), or whole-brain subtraction (nimare)",
    )
    p.add_argument(
        "--contrast-iters", type=int, default=10000, help="label permutations of C rows (10000)"
    )
    p.add_argument(
        "--subsample-n", type=int, default=2500, help="subsamples of P and B rows (2500)"
    )
    p.add_argument(
        "--difference-iterations", type=int, default=1000, help="B rows' iterations (1000)"
    )
    p.add_argument(
        "--pool-experiments",
        action="store_true",
        help="merge all rows of one article into one experiment (JALE's pool_experiments)",
    )
    p.add_argument(
        "--tal-transform",
        choices=["jale", "nimare"],
        default="jale",
        help="Talairach to MNI: JALE's icbm_spm (rounded) or NiMARE's icbm_other",
    )
    p.add_argument(
        "--mask-coverage",
        choices=["gm", "brain"],
        default="gm",
        help="where Monte Carlo random foci fall (gm: grey matter, as JALE)",
    )
    p.add_argument(
        "--diagnostics",
        choices=["jackknife", "focuscounter", "none"],
        default="jackknife",
        help="per-experiment (and per-tag) contributions to main-effect clusters",
    )
    p.add_argument("--random-state", type=int, default=None, help="seed (reproducible runs)")
    p.add_argument(
        "--report", action=argparse.BooleanOptionalAction, default=False, help="HTML reports"
    )
    add_cluster_arguments(p)
    return p


def run(args: argparse.Namespace) -> int:
    from nimare_dask.cli.cluster import cluster_options, dask_client
    from nimare_dask.io.jale import read_jale_analyses, read_jale_sheet
    from nimare_dask.workflows.jale import run_jale_analyses

    for opt in ("n_iters", "contrast_iters", "subsample_n", "difference_iterations"):
        if getattr(args, opt) < 1:
            flag = "--" + opt.replace("_", "-")
            raise ValueError(f"{flag} must be positive, got {getattr(args, opt)}")
    if not 0 < args.v_thr < 1:
        raise ValueError(f"--v-thr must be a p-value in (0, 1), got {args.v_thr}")
    cluster = cluster_options(args)
    ss = read_jale_sheet(
        args.experiments, pool_experiments=args.pool_experiments, tal_transform=args.tal_transform
    )
    analyses = read_jale_analyses(args.analyses)
    print(f"experiments: {ss}; tags: {', '.join(ss.labels) or 'none'}")
    print(f"analyses: {len(analyses)} ({', '.join(a.label for a in analyses)})")
    t0 = time.perf_counter()
    with dask_client(**cluster):
        try:
            out = run_jale_analyses(
                ss,
                analyses,
                args.output_dir,
                n_iters=args.n_iters,
                voxel_thresh=args.v_thr,
                tfce=args.tfce,
                contrast=args.contrast,
                contrast_iters=args.contrast_iters,
                n_subsamples=args.subsample_n,
                difference_iterations=args.difference_iterations,
                diagnostics=args.diagnostics,
                mask_coverage=args.mask_coverage,
                random_state=args.random_state,
                report=args.report,
            )
        except NotImplementedError as err:  # balanced contrasts without the estimator
            raise ValueError(str(err)) from None
    elapsed = time.perf_counter() - t0
    print(f"outputs in {Path(args.output_dir).resolve()}:")
    for row in out.summary.itertuples(index=False):
        print(f"  [{row.kind}] {row.analysis}: {row.status}")
    print(f"done in {elapsed:.1f} s")
    return 0
