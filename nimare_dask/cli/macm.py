"""``nimare-dask macm``: meta-analytic connectivity modelling of a seed over a database."""

from __future__ import annotations

import argparse
import time

from nimare_dask.cli.cluster import add_cluster_arguments
from nimare_dask.cli.inputs import add_storage_option_argument


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "macm",
        help="MACM: ALE of the experiments reporting a focus in a seed region",
        description=(
            "Select the experiments of a database (a store built by 'nimare-dask ingest', a "
            "NIMADS/legacy JSON or a Sleuth file) with at least one focus in a seed mask, or "
            "within --radius mm of seed coordinates, and run ALE with Monte Carlo FWE on them."
        ),
    )
    p.add_argument("database", help="studyset store (folder or URL), NIMADS JSON or Sleuth file")
    seed = p.add_mutually_exclusive_group(required=True)
    seed.add_argument("--mask", help="seed mask image (NIfTI, any grid)")
    seed.add_argument("--coords", nargs=3, type=float, metavar=("X", "Y", "Z"), help="seed (mm)")
    p.add_argument("--radius", type=float, default=None, help="radius for --coords (mm, 10)")
    p.add_argument(
        "--fwhm",
        type=float,
        default=None,
        help="fixed kernel FWHM in mm, > 0 (default: from the sample sizes, else 10)",
    )
    p.add_argument("--n-iters", type=int, default=None, help="Monte Carlo iterations (10000)")
    p.add_argument("--v-thr", type=float, default=None, help="cluster-forming p (0.001)")
    p.add_argument("--no-fwe", action="store_true", help="skip the Monte Carlo correction")
    p.add_argument("--output-dir", default="nimare_dask_macm", help="output folder")
    p.add_argument("--prefix", default="", help="file-name prefix")
    p.add_argument("--random-state", type=int, default=None, help="seed of the Monte Carlo null")
    p.add_argument("--report", action=argparse.BooleanOptionalAction, default=True)
    add_storage_option_argument(p, "the database store")
    add_cluster_arguments(p)
    return p


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from nimare_dask.cli.ale import _print_outputs
    from nimare_dask.cli.cluster import cluster_options, dask_client
    from nimare_dask.cli.inputs import load_studyset, storage_options
    from nimare_dask.correct import FWECorrector
    from nimare_dask.meta import ALE
    from nimare_dask.reports import save_outputs
    from nimare_dask.workflows import macm

    if args.fwhm is not None and not args.fwhm > 0:
        raise ValueError(
            f"--fwhm must be a positive width in mm, got {args.fwhm}; leave it out to derive "
            "the kernel from the sample sizes"
        )
    if args.radius is not None and args.mask:
        raise ValueError("--radius applies to --coords, not to --mask")
    if args.radius is not None and not args.radius > 0:
        raise ValueError(f"--radius must be positive, got {args.radius}")
    radius = 10.0 if args.radius is None else args.radius
    fwe_options = {"--n-iters": args.n_iters, "--v-thr": args.v_thr}
    fwe_options["--random-state"] = args.random_state
    given = [name for name, val in fwe_options.items() if val is not None]
    if args.no_fwe and given:
        raise ValueError(f"{', '.join(given)} set the Monte Carlo correction that --no-fwe skips")
    n_iters = 10000 if args.n_iters is None else args.n_iters
    v_thr = 0.001 if args.v_thr is None else args.v_thr
    if n_iters < 1:
        raise ValueError(f"--n-iters must be positive, got {n_iters}")
    if not 0 < v_thr < 1:
        raise ValueError(f"--v-thr must be a p-value in (0, 1), got {v_thr}")
    opts = storage_options(args, args.database)
    cluster = cluster_options(args)
    ss = load_studyset(args.database, opts)
    has_n = bool(np.isfinite(ss.sample_sizes).any())
    fwhm = args.fwhm if args.fwhm is not None else (None if has_n else 10.0)
    if fwhm is None and not np.isfinite(ss.sample_sizes).all():
        raise ValueError("some experiments lack a sample size: pass --fwhm")
    est = ALE(kernel__fwhm=fwhm) if fwhm else ALE()
    corrector = None
    if not args.no_fwe:
        corrector = FWECorrector(
            method="montecarlo",
            n_iters=n_iters,
            voxel_thresh=v_thr,
            random_state=args.random_state,
        )
    roi = args.mask if args.mask else (np.array([args.coords]), radius)
    t0 = time.perf_counter()
    with dask_client(**cluster):
        result = macm(ss, roi, estimator=est, corrector=corrector)
    n_sel = len(result.tables["selected_studies"])
    print(f"{n_sel} of {len(ss)} experiments have a focus in the seed")
    files = save_outputs(result, args.output_dir, args.prefix, report=args.report)
    _print_outputs({"macm": files}, __import__("pathlib").Path(args.output_dir))
    print(f"done in {time.perf_counter() - t0:.1f} s")
    return 0
