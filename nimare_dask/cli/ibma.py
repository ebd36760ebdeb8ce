"""``nimare-dask ibma``: image-based meta-analysis of a studyset's images."""

from __future__ import annotations

import argparse
import json

from nimare_dask.cli.inputs import add_storage_option_argument

_ESTIMATORS = (
    "DerSimonianLaird",
    "Fishers",
    "FixedEffectsHedges",
    "Hedges",
    "PermutedOLS",
    "SampleSizeBasedLikelihood",
    "Stouffers",
    "VarianceBasedLikelihood",
    "WeightedLeastSquares",
)
_CORRECTIONS = ("none", "fwe-bonferroni", "fwe-montecarlo", "fdr-indep", "fdr-negcorr")


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "ibma",
        help="image-based meta-analysis (DerSimonianLaird, Stouffers, PermutedOLS, ...)",
        description=(
            "Fit one of NiMARE's image-based estimators to the images of a studyset (NIMADS or "
            "legacy Dataset JSON with image paths, or a studyset store) and write its maps, "
            "tables, cluster tables, methods text with references and an HTML report. Example: nimare-dask ibma studyset.json --estimator "
            "PermutedOLS --correction fwe-montecarlo --n-iters 10000 --output-dir out/"
        ),
    )
    p.add_argument("studyset", help="studyset JSON (NIMADS or NiMARE Dataset) or store")
    p.add_argument("--estimator", choices=_ESTIMATORS, default="DerSimonianLaird")
    p.add_argument("--correction", choices=_CORRECTIONS, default="none")
    p.add_argument("--n-iters", type=int, default=None, help="Monte Carlo FWE iterations")
    p.add_argument("--random-state", type=int, default=None, help="seed of the FWE null")
    p.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="estimator parameter (value parsed as JSON when it can be, e.g. "
        "--param weight_scheme=collapse --param two_sided=false); repeatable",
    )
    p.add_argument(
        "--diagnostics",
        choices=("none", "jackknife"),
        default="none",
        help="jackknife: each analysis's contribution to the clusters of every corrected z map "
        "(the uncorrected z map without --correction), as NiMARE's IBMAWorkflow",
    )
    p.add_argument(
        "--target-threshold",
        type=float,
        default=1.65,
        help="|z| threshold defining the jackknife's clusters (NiMARE's voxel_thresh, 1.65)",
    )
    p.add_argument(
        "--cluster-threshold",
        type=int,
        default=10,
        help="minimum cluster size in voxels for the jackknife (NiMARE's default, 10)",
    )
    p.add_argument(
        "--report", action=argparse.BooleanOptionalAction, default=True, help="HTML report"
    )
    p.add_argument("--mask", default=None, help="analysis mask image (default: the studyset's)")
    p.add_argument("--output-dir", default=".", help="where the outputs go")
    p.add_argument("--prefix", default="", help="file-name prefix")
    add_storage_option_argument(p, "the studyset store")
    return p


def _params(items: list[str]) -> dict:
    out = {}
    for item in items:
        if "=" not in item:
            raise ValueError(f"--param expects KEY=VALUE, got {item!r}")
        key, value = item.split("=", 1)
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from nimare_dask.cli.inputs import load_studyset, storage_options
    from nimare_dask.correct import FDRCorrector, FWECorrector
    from nimare_dask.meta import ibma

    opts = storage_options(args, args.studyset)
    ss = load_studyset(args.studyset, opts)
    params = _params(args.param)
    if args.mask is not None:
        params["mask"] = args.mask
    est = getattr(ibma, args.estimator)(**params)
    result = est.fit(ss)
    if args.correction != "none":
        kind, method = args.correction.split("-", 1)
        if kind == "fwe":
            kwargs = {"n_iters": args.n_iters} if method == "montecarlo" else {}
            if method == "montecarlo" and args.random_state is not None:
                kwargs["random_state"] = args.random_state
            result = FWECorrector(method=method, **kwargs).transform(result)
        else:
            result = FDRCorrector(method=method).transform(result)
    if args.diagnostics == "jackknife":
        from nimare_dask.diagnostics import Jackknife

        names = result.maps_names
        targets = [n for n in names if n.startswith("z_") and "_corr-" in n] or ["z"]
        for target in targets:
            result = Jackknife(
                target_image=target,
                target_threshold=args.target_threshold,
                cluster_threshold=args.cluster_threshold,
            ).transform(result, studyset=ss)
    from nimare_dask.reports import save_outputs

    out = Path(args.output_dir)
    written = save_outputs(result, out, prefix=args.prefix, studyset=ss, report=args.report)
    print(
        f"{args.estimator}: {len(written['maps'])} maps, {len(written['tables'])} tables, "
        f"{len(written['cluster_tables'])} cluster tables written to {out}"
    )
    return 0
