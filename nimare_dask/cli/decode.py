"""``nimare-dask decode``: correlate a brain map with every feature map of a database."""

from __future__ import annotations

import argparse
import time

from nimare_dask.cli.cluster import add_cluster_arguments
from nimare_dask.cli.inputs import add_storage_option_argument


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "decode",
        help="decode a brain map against a whole database (CorrelationDecoder or "
        "CorrelationDistributionDecoder)",
        description=(
            "Fit (once; the feature maps are stored in the database's store and reused) one "
            "MKDAChi2 association map per annotation label, then print the labels whose maps "
            "correlate best with the image."
        ),
    )
    p.add_argument(
        "store",
        help="studyset store built by 'nimare-dask ingest' (folder or fsspec URL); with "
        "--decoder distribution also a NIMADS JSON or parquet studyset with study images",
    )
    p.add_argument("image", help="NIfTI image to decode")
    p.add_argument("--feature-group", default=None, help="label prefix (e.g. LDA50_abstract)")
    p.add_argument("--frequency-threshold", type=float, default=0.001)
    p.add_argument("--features", nargs="+", default=None, help="only these labels (full names)")
    p.add_argument(
        "--decoder",
        choices=("correlation", "distribution"),
        default="correlation",
        help="correlation: one MKDAChi2 map per label (CorrelationDecoder); distribution: "
        "mean and std of arctanh(r) with the study images of each label "
        "(CorrelationDistributionDecoder)",
    )
    p.add_argument(
        "--target-image",
        default="z",
        help="study image type the distribution decoder correlates with (default z)",
    )
    p.add_argument("--top", type=int, default=20, help="how many labels to print")
    p.add_argument("--output", default=None, help="write all correlations to this TSV")
    add_storage_option_argument(p, "the store")
    add_cluster_arguments(p)
    return p


def run(args: argparse.Namespace) -> int:
    from nimare_dask.cli.cluster import cluster_options, dask_client
    from nimare_dask.cli.inputs import load_studyset, storage_options
    from nimare_dask.decode import CorrelationDecoder, CorrelationDistributionDecoder

    if args.decoder == "correlation" and args.target_image != "z":
        raise ValueError("--target-image applies to --decoder distribution")
    opts = storage_options(args, args.store)
    cluster = cluster_options(args)
    t0 = time.perf_counter()
    with dask_client(**cluster):
        ss = load_studyset(args.store, opts)
        common = {
            "feature_group": args.feature_group,
            "frequency_threshold": args.frequency_threshold,
            "features": args.features,
        }
        if args.decoder == "distribution":
            dec = CorrelationDistributionDecoder(target_image=args.target_image, **common)
        else:
            dec = CorrelationDecoder(**common)
        table = dec.fit(ss).transform(args.image)
    table = table.sort_values("r" if args.decoder == "correlation" else "mean", ascending=False)
    print(table.head(args.top).to_string())
    if args.output:
        table.to_csv(args.output, sep="\t")
        print(f"all {len(table)} correlations written to {args.output}")
    print(f"done in {time.perf_counter() - t0:.1f} s")
    return 0
