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
            "tables and methods text. Example: nimare-dask ibma studyset.json --estimator "
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
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    result.save_maps(out, prefix=args.prefix)
    result.save_tables(out, prefix=args.prefix)
    pre = f"{args.prefix}_" if args.prefix else ""
    (out / f"{pre}boilerplate.txt").write_text(result.description + "\n")
    (out / f"{pre}references.bib").write_text(result.references or "")
    print(f"{args.estimator}: {len(result.maps_names)} maps written to {out}")
    return 0
