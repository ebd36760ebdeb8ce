"""``nimare-dask macm``: meta-analytic connectivity modelling of a seed over a database."""

from __future__ import annotations

import argparse
import time


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
    p.add_argument("--radius", type=float, default=10.0, help="radius for --coords (mm, 10)")
    p.add_argument("--fwhm", type=float, default=None, help="fixed kernel FWHM (mm)")
    p.add_argument("--n-iters", type=int, default=10000, help="Monte Carlo iterations")
    p.add_argument("--v-thr", type=float, default=0.001, help="cluster-forming p")
    p.add_argument("--no-fwe", action="store_true", help="skip the Monte Carlo correction")
    p.add_argument("--output-dir", default="nimare_dask_macm", help="output folder")
    p.add_argument("--prefix", default="", help="file-name prefix")
    p.add_argument("--random-state", type=int, default=None, help="seed of the Monte Carlo null")
    p.add_argument("--scheduler", default=None, help="address of an existing Dask scheduler")
    p.add_argument("--n-workers", type=int, default=None, help="local threads (default: all)")
    p.add_argument("--report", action=argparse.BooleanOptionalAction, default=True)
    return p


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from nimare_dask.cli.ale import _print_outputs
    from nimare_dask.cli.cluster import dask_client
    from nimare_dask.cli.inputs import load_studyset
    from nimare_dask.correct import FWECorrector
    from nimare_dask.meta import ALE
    from nimare_dask.reports import save_outputs
    from nimare_dask.workflows import macm

    ss = load_studyset(args.database)
    has_n = bool(np.isfinite(ss.sample_sizes).any())
    fwhm = args.fwhm if args.fwhm else (None if has_n else 10.0)
    if fwhm is None and not np.isfinite(ss.sample_sizes).all():
        raise ValueError("some experiments lack a sample size: pass --fwhm")
    est = ALE(kernel__fwhm=fwhm) if fwhm else ALE()
    corrector = None
    if not args.no_fwe:
        corrector = FWECorrector(
            method="montecarlo",
            n_iters=args.n_iters,
            voxel_thresh=args.v_thr,
            random_state=args.random_state,
        )
    roi = args.mask if args.mask else (np.array([args.coords]), args.radius)
    t0 = time.perf_counter()
    with dask_client(args.scheduler, args.n_workers):
        result = macm(ss, roi, estimator=est, corrector=corrector)
    n_sel = len(result.tables["selected_studies"])
    print(f"{n_sel} of {len(ss)} experiments have a focus in the seed")
    files = save_outputs(result, args.output_dir, args.prefix, report=args.report)
    _print_outputs({"macm": files}, __import__("pathlib").Path(args.output_dir))
    print(f"done in {time.perf_counter() - t0:.1f} s")
    return 0
