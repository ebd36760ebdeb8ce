"""``nimare-dask ingest``: build a studyset store from Neurosynth/NeuroQuery release files."""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from nimare_dask.cli.inputs import add_storage_option_argument

DATABASES = {
    "neurosynth": {"version": "7", "vocab": "LDA50", "source": "abstract", "type": None},
    "neuroquery": {
        "version": "1",
        "vocab": "neuroquery7547",
        "source": "abstract",
        "type": None,
    },
}


def default_storage_dir() -> Path:
    """``storage/`` of the checkout when run from one, else ``$NIMARE_DASK_STORAGE`` or cwd."""
    env = os.environ.get("NIMARE_DASK_STORAGE")
    if env:
        return Path(env)
    import nimare_dask

    root = Path(nimare_dask.__file__).resolve().parents[1]
    if (root / "storage" / "README.md").exists() and (root / "pyproject.toml").exists():
        return root / "storage"
    return Path.cwd()


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "ingest",
        help="fetch a database's release files and build a Zarr studyset store",
        description=(
            "Download (or reuse) the public release files of Neurosynth or NeuroQuery, check their "
            "checksums, convert them to a Studyset and write it as a Zarr store (atomically)."
        ),
    )
    p.add_argument("database", choices=sorted(DATABASES))
    p.add_argument("--version", dest="db_version", default=None, help="database version")
    p.add_argument("--vocab", default=None, help="feature vocabulary (e.g. LDA50, terms)")
    p.add_argument("--source", default=None, help="feature source (abstract, title, keywords)")
    p.add_argument("--type", dest="feature_type", default=None, help="feature type (weight, count)")
    p.add_argument(
        "--tfidf",
        action="store_true",
        help="NeuroQuery only: TF-IDF from the raw counts (Neurosynth's 'terms' vocabulary "
        "already is TF-IDF)",
    )
    p.add_argument("--data-dir", default=None, help="where release files are cached")
    p.add_argument(
        "--base-url",
        default=None,
        help="mirror to download from (URL or local folder; default: the public repository)",
    )
    p.add_argument(
        "-o", "--output", default=None, help="store path or fsspec URL (default: storage/<db>.zarr)"
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing store")
    add_storage_option_argument(p, "the output store")
    return p


def run(args: argparse.Namespace) -> int:
    from nimare_dask import datasets, io
    from nimare_dask.cli.inputs import storage_options

    if args.tfidf and args.database != "neuroquery":
        raise ValueError(
            f"--tfidf converts NeuroQuery's count matrices; {args.database} releases have no "
            "counts (its 'terms' vocabulary is already TF-IDF: --vocab terms)"
        )
    store_opts = storage_options(args, args.output)
    opts = dict(DATABASES[args.database])
    for key, val in (
        ("version", args.db_version),
        ("vocab", args.vocab),
        ("source", args.source),
        ("type", args.feature_type),
    ):
        if val is not None:
            opts[key] = val
    t0 = time.perf_counter()
    fetch = (
        datasets.fetch_neurosynth if args.database == "neurosynth" else datasets.fetch_neuroquery
    )
    files = fetch(data_dir=args.data_dir, base_url=args.base_url, **opts)
    print(f"release files in {Path(files['coordinates']).parent}")
    if args.database == "neurosynth":
        ss = io.convert_neurosynth_to_studyset(
            files["coordinates"], files["metadata"], annotations_files=files["features"]
        )
    else:
        ss = io.convert_neuroquery_to_studyset(
            files["coordinates"],
            files["metadata"],
            annotations_files=files["features"],
            tfidf=args.tfidf,
        )
    out = args.output or str(
        default_storage_dir() / f"{args.database}-v{opts['version']}-{opts['vocab']}.zarr"
    )
    ss.to_zarr(out, overwrite=args.overwrite, **store_opts)
    print(f"{ss}")
    print(f"store written to {out} in {time.perf_counter() - t0:.1f} s")
    return 0
