"""Reading whatever studyset a user points the CLI at."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_storage_option_argument(p: argparse.ArgumentParser, what: str) -> None:
    """``--storage-option KEY=VALUE`` (repeatable): fsspec options for ``what`` when a URL."""
    p.add_argument(
        "--storage-option",
        dest="storage_option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help=f"fsspec storage option for {what} when it is a URL (s3://, gs://, ...); repeat "
        "for several. VALUE is JSON when it parses (true, 3, {...}), else a string; a dotted "
        "KEY nests (client_kwargs.endpoint_url=http://minio:9000)",
    )


def parse_storage_options(items: list[str] | None) -> dict:
    """``["anon=true", "client_kwargs.region_name=eu-west-1"]`` -> fsspec ``storage_options``."""
    out: dict = {}
    for item in items or []:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--storage-option expects KEY=VALUE, got {item!r}")
        try:
            value = json.loads(raw)
        except ValueError:
            value = raw
        *parents, leaf = key.strip().split(".")
        node = out
        for name in parents:
            node = node.setdefault(name, {})
            if not isinstance(node, dict):
                raise ValueError(f"--storage-option {item!r}: {name!r} is already a value")
        node[leaf] = value
    return out


def storage_options(args: argparse.Namespace, *locations: str | None) -> dict:
    """The parsed ``--storage-option`` values; an error if given but no location is a URL."""
    opts = parse_storage_options(getattr(args, "storage_option", None))
    if opts and not any(loc and "://" in str(loc) for loc in locations):
        shown = ", ".join(str(loc) for loc in locations if loc)
        raise ValueError(
            f"--storage-option applies to fsspec URLs (s3://bucket/x.zarr, gs://...), but no "
            f"location is one: {shown}"
        )
    return opts


def load_studyset(location: str, storage_options: dict | None = None):
    """A Studyset from a store (a folder or URL), NIMADS/legacy JSON or Sleuth.

    ``storage_options`` go to fsspec when ``location`` is a URL.
    """
    from nimare_dask import Studyset, open_studyset
    from nimare_dask.io import read_sleuth

    path = Path(location)
    if "://" in location:
        return open_studyset(location, **(storage_options or {}))
    if path.is_dir():  # a store or a NeuroStore parquet studyset (else a clear error)
        return Studyset(path)
    if not path.exists():
        raise FileNotFoundError(f"no such file or store: {location}")
    if path.suffix.lower() in (".json", ".gz"):
        return Studyset(path)
    return read_sleuth(path)
