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
    p.add_argument("studyset", help="the studyset the result was fit on (Sleuth or JSON)")
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
    from nimare_dask.results import open_result

    opts = storage_options(args, args.result, args.studyset)
    result = open_result(args.result, **(opts if "://" in args.result else {}))
    if args.target_image not in result.maps:
        raise ValueError(
            f"{args.result} has no map {args.target_image!r}; maps: {sorted(result.maps)}"
        )
    if result.estimator is None:
        result.estimator = _rebuild_estimator(result.estimator_info)
    ss = load_studyset(args.studyset, opts)
    cls = FocusCounter if args.focuscounter else Jackknife
    diag = cls(target_image=args.target_image, target_threshold=args.threshold)
    out = diag.transform(result, studyset=ss)
    new = [name for name in out.tables if name not in result.tables]
    paths = out.save_tables(args.output_dir, prefix=args.prefix, names=new)
    for path in paths:
        print(f"table: {Path(path).resolve()}")
    return 0


def _rebuild_estimator(info: dict):
    """The estimator a saved result records (class and parameters; never unpickled)."""
    from nimare_dask import meta
    from nimare_dask.meta import kernel as kernels

    if not info or not hasattr(meta, str(info.get("class"))):
        raise ValueError(f"the saved result does not record a known estimator: {info!r}")
    params = dict(info.get("params") or {})
    kernel = params.pop("kernel", None)
    params = {k: v for k, v in params.items() if not k.startswith("kernel__")}
    if isinstance(kernel, dict) and hasattr(kernels, str(kernel.get("class"))):
        params["kernel"] = getattr(kernels, kernel["class"])(**(kernel.get("params") or {}))
    cls = getattr(meta, info["class"])
    accepted = set(cls().get_params(deep=False))
    return cls(**{k: v for k, v in params.items() if k in accepted})
