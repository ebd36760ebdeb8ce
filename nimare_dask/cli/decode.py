"""``nimare-dask decode``: correlate a brain map with every feature map of a database."""

from __future__ import annotations

import argparse
import time

from nimare_dask.cli.cluster import add_cluster_arguments
from nimare_dask.cli.inputs import add_storage_option_argument


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "decode",
        help="decode a brain map against a whole database (CorrelationDecoder)",
        description=(
            "Fit (once; the feature maps are stored in the database's store and reused) one "
            "MKDAChi2 association map per annotation label, then print the labels whose maps "
            "correlate best with the image."
        ),
    )
    p.add_argument(
        "store", help="studyset store built by 'nimare-dask ingest' (folder or fsspec URL)"
    )
    p.add_argument("image", help="NIfTI image to decode")
    p.add_argument("--feature-group", default=None, help="label prefix (e.g. LDA50_abstract)")
    p.add_argument("--frequency-threshold", type=float, default=0.001)
    p.add_argument("--top", type=int, default=20, help="how many labels to print")
    p.add_argument("--output", default=None, help="write all correlations to this TSV")
    add_storage_option_argument(p, "the store")
    add_cluster_arguments(p)
    return p


def run(args: argparse.Namespace) -> int:
    from nimare_dask import open_studyset
    from nimare_dask.cli.cluster import cluster_options, dask_client
    from nimare_dask.cli.inputs import storage_options
    from nimare_dask.decode import CorrelationDecoder

    opts = storage_options(args, args.store)
    cluster = cluster_options(args)
    t0 = time.perf_counter()
    with dask_client(**cluster):
        ss = open_studyset(args.store, **opts)
        dec = CorrelationDecoder(
            feature_group=args.feature_group, frequency_threshold=args.frequency_threshold
        ).fit(ss)
        table = dec.transform(args.image)
    table = table.sort_values("r", ascending=False)
    print(table.head(args.top).to_string())
    if args.output:
        table.to_csv(args.output, sep="\t")
        print(f"all {len(table)} correlations written to {args.output}")
    print(f"done in {time.perf_counter() - t0:.1f} s")
    return 0
