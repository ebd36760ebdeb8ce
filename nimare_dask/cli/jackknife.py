"""``nimare-dask jackknife``: per-study contributions to the clusters of a saved result."""

from __future__ import annotations

import argparse

from nimare_dask.cli.inputs import add_storage_option_argument


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "jackknife",
        help="Jackknife (or FocusCounter) on a result saved by 'nimare-dask ale'",
        description=(
            "Reopen a result (<output-dir>/<prefix>result.zarr written by 'nimare-dask ale') "
            "and its input studyset, and write each study's contribution to each cluster."
        ),
    )
    p.add_argument("result", help="saved result (…/result.zarr)")
    p.add_argument(
        "studyset",
        nargs="?",
        default=None,
        help=(
            "the studyset the result was fit on (Sleuth, JSON or store); default: the one "
            "stored with the result"
        ),
    )
    p.add_argument(
        "--target-image",
        default="z_desc-size_level-cluster_corr-FWE_method-montecarlo",
        help="map whose clusters are diagnosed",
    )
    p.add_argument("--threshold", type=float, default=1.6448536269514722, help="map threshold")
    p.add_argument("--focuscounter", action="store_true", help="count foci instead")
    p.add_argument("--output-dir", default=".", help="where the tables go")
    p.add_argument("--prefix", default="", help="file-name prefix")
    add_storage_option_argument(p, "the result or studyset store")
    return p


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from nimare_dask.cli.inputs import load_studyset, storage_options
    from nimare_dask.diagnostics import FocusCounter, Jackknife
    from nimare_dask.meta.rebuild import estimator_from_info
    from nimare_dask.results import open_result

    locations = [args.result] + ([args.studyset] if args.studyset else [])
    opts = storage_options(args, *locations)
    result = open_result(args.result, **(opts if "://" in args.result else {}))
    if args.target_image not in result.maps:
        raise ValueError(
            f"{args.result} has no map {args.target_image!r}; maps: {sorted(result.maps)}"
        )
    if result.estimator is None:
        # the one mechanism that rebuilds a saved result's estimator (also used by correctors)
        result.estimator = estimator_from_info(result.estimator_info, mask=result.grid)
    ss = load_studyset(args.studyset, opts) if args.studyset else None
    if ss is None and not result.get_inputs(estimator=False):
        raise ValueError(
            f"{args.result} does not store the studyset it was fit on (written before inputs "
            "were kept, or with inputs=False); give it: nimare-dask jackknife RESULT STUDYSET"
        )
    cls = FocusCounter if args.focuscounter else Jackknife
    diag = cls(target_image=args.target_image, target_threshold=args.threshold)
    out = diag.transform(result, studyset=ss)
    new = [name for name in out.tables if name not in result.tables]
    paths = out.save_tables(args.output_dir, prefix=args.prefix, names=new)
    for path in paths:
        print(f"table: {Path(path).resolve()}")
    return 0
