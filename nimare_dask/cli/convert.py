"""``nimare-dask convert``: Sleuth <-> NIMADS JSON, and any studyset -> Zarr store."""

from __future__ import annotations

import argparse
from pathlib import Path

from nimare_dask.cli.inputs import add_storage_option_argument


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "convert",
        help="convert between Sleuth, NIMADS JSON and Zarr stores",
        description=(
            "Read Sleuth text files, NIMADS/legacy JSON, a store, or Neurosynth/NeuroQuery release "
            "files (--coordinates/--metadata/--features) and write the output format chosen by "
            "the output's extension: .txt (Sleuth), .json (NIMADS), .zarr (store)."
        ),
    )
    p.add_argument("inputs", nargs="*", help="input files (several Sleuth files are merged)")
    p.add_argument("-o", "--output", required=True, help="output path (.txt, .json or .zarr)")
    p.add_argument("--coordinates", help="Neurosynth/NeuroQuery coordinates.tsv.gz")
    p.add_argument("--metadata", help="Neurosynth/NeuroQuery metadata.tsv.gz")
    p.add_argument("--features", nargs="*", default=None, help="features .npz files")
    p.add_argument("--database", choices=["neurosynth", "neuroquery"], default="neurosynth")
    p.add_argument(
        "--tfidf", action="store_true", help="with --coordinates: TF-IDF from count matrices"
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing store")
    add_storage_option_argument(p, "the input or output store")
    return p


def run(args: argparse.Namespace) -> int:
    from nimare_dask import io
    from nimare_dask.cli.inputs import load_studyset, storage_options

    opts = storage_options(args, args.output, *args.inputs)
    if (args.features is not None or args.tfidf) and not args.coordinates:
        raise ValueError("--features and --tfidf apply to --coordinates/--metadata release files")
    if args.coordinates or args.metadata:
        if not (args.coordinates and args.metadata):
            raise ValueError("--coordinates and --metadata go together")
        if args.database == "neurosynth":
            ss = io.convert_neurosynth_to_studyset(
                args.coordinates, args.metadata, annotations_files=args.features, tfidf=args.tfidf
            )
        else:
            ss = io.convert_neuroquery_to_studyset(
                args.coordinates, args.metadata, annotations_files=args.features, tfidf=args.tfidf
            )
    elif not args.inputs:
        raise ValueError("give input files, or --coordinates and --metadata")
    elif all(Path(f).suffix.lower() == ".txt" for f in args.inputs):
        ss = io.read_sleuth(args.inputs if len(args.inputs) > 1 else args.inputs[0])
    elif len(args.inputs) == 1:
        ss = load_studyset(args.inputs[0], opts)
    else:
        raise ValueError("several inputs can only be Sleuth .txt files (they are merged)")
    out = args.output
    suffix = Path(out.rstrip("/")).suffix.lower()
    if suffix == ".txt":
        io.write_sleuth(ss, out)
    elif suffix == ".json":
        ss.to_nimads(out)
    elif suffix == ".zarr" or "://" in out:
        ss.to_zarr(out, overwrite=args.overwrite, **(opts if "://" in out else {}))
    else:
        raise ValueError(f"unknown output format {suffix!r}: use .txt, .json or .zarr")
    print(f"{ss}\nwritten to {out}")
    return 0
