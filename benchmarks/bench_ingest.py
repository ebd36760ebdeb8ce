"""Benchmark: ingest the whole Neurosynth v7 database (+ LDA50 topics) and query the store.

Each step runs in a fresh Python process, so its wall time and peak resident memory (from
``resource.getrusage``) are its own:

1. ``ours``: ``convert_neurosynth_to_studyset`` + ``Studyset.to_zarr`` (a Zarr v3 store);
2. ``nimare``: NiMARE 0.22.1's ``convert_neurosynth_to_studyset`` on the same files (the
   oracle; skipped with ``--skip-nimare``);
3. ``query``: ``open_studyset`` on the store, then ``get_studies_by_mask`` with NiMARE's
   366-voxel amygdala ROI (first call, then a repeat).

Usage::

    python benchmarks/bench_ingest.py [--data ../shared/data/neurosynth-v7] [--skip-nimare]

Without ``--data`` the files are fetched with :func:`nimare_dask.datasets.fetch_neurosynth`
(from ``$NIMARE_DASK_BASE_URL`` or the public repository) unless ``../shared/data`` exists.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

NS = "data-neurosynth_version-7"
LDA = f"{NS}_vocab-LDA50_source-abstract_type-weight_features.npz"
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "neurosynth-v7"


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _files(data: Path) -> tuple[str, str, dict]:
    return (
        str(data / f"{NS}_coordinates.tsv.gz"),
        str(data / f"{NS}_metadata.tsv.gz"),
        {"features": str(data / LDA), "vocabulary": str(data / f"{NS}_vocab-LDA50_vocabulary.txt")},
    )


def step_ours(data: Path, store: Path) -> dict:
    from nimare_dask.io import convert_neurosynth_to_studyset

    base = _peak_rss_mb()
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # unknown-space and outside-mask notices
        ss = convert_neurosynth_to_studyset(*_files(data))
    t1 = time.perf_counter()
    ss.to_zarr(store, overwrite=True)
    t2 = time.perf_counter()
    return {
        "read_s": t1 - t0,
        "write_s": t2 - t1,
        "seconds": t2 - t0,
        "peak_rss_mb": _peak_rss_mb(),
        "rss_after_imports_mb": base,
        "n_analyses": len(ss),
        "n_foci": int(ss.foci_counts().sum()),
        "n_labels": len(ss.labels),
    }


def step_nimare(data: Path) -> dict:
    from nimare.io import convert_neurosynth_to_studyset

    base = _peak_rss_mb()
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ss = convert_neurosynth_to_studyset(*_files(data))
    t1 = time.perf_counter()
    return {
        "seconds": t1 - t0,
        "peak_rss_mb": _peak_rss_mb(),
        "rss_after_imports_mb": base,
        "n_analyses": len(ss.ids),
        "n_foci": int(len(ss.coordinates)),
    }


def step_query(store: Path, roi: Path) -> dict:
    from nimare_dask import open_studyset

    t0 = time.perf_counter()
    ss = open_studyset(store)
    t1 = time.perf_counter()
    hits = ss.get_studies_by_mask(roi)
    t2 = time.perf_counter()
    again = ss.get_studies_by_mask(roi)
    t3 = time.perf_counter()
    assert hits == again
    return {
        "open_s": t1 - t0,
        "mask_first_s": t2 - t1,
        "mask_repeat_s": t3 - t2,
        "seconds": t2 - t0,
        "n_hits": len(hits),
        "peak_rss_mb": _peak_rss_mb(),
    }


def _run(step: str, **kw) -> dict:
    cmd = [sys.executable, __file__, "--step", step] + [
        f"--{k}={v}" for k, v in kw.items() if v is not None
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"step {step} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _resolve_data(arg: str | None) -> Path:
    if arg:
        return Path(arg)
    if SHARED.exists():
        return SHARED
    from nimare_dask.datasets import fetch_neurosynth

    return Path(fetch_neurosynth(vocab="LDA50")["coordinates"]).parent


def _roi() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("nimare")
    if spec is None or spec.origin is None:
        raise SystemExit("the query step uses NiMARE's tests/data/amygdala_roi.nii.gz")
    return Path(spec.origin).parent / "tests" / "data" / "amygdala_roi.nii.gz"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", help="folder holding the Neurosynth v7 files")
    p.add_argument("--store", help="where to write the Zarr store (default: a temp folder)")
    p.add_argument("--skip-nimare", action="store_true", help="do not run NiMARE's converter")
    p.add_argument("--step", choices=["ours", "nimare", "query"], help=argparse.SUPPRESS)
    p.add_argument("--roi", help=argparse.SUPPRESS)
    args = p.parse_args()

    if args.step == "ours":
        print(json.dumps(step_ours(Path(args.data), Path(args.store))))
        return
    if args.step == "nimare":
        print(json.dumps(step_nimare(Path(args.data))))
        return
    if args.step == "query":
        print(json.dumps(step_query(Path(args.store), Path(args.roi))))
        return

    data = _resolve_data(args.data)
    with tempfile.TemporaryDirectory() as tmp:
        store = Path(args.store) if args.store else Path(tmp) / "neurosynth-v7.zarr"
        ours = _run("ours", data=data, store=store)
        query = _run("query", store=store, roi=_roi())
        theirs = None if args.skip_nimare else _run("nimare", data=data)
        size_mb = sum(f.stat().st_size for f in store.rglob("*") if f.is_file()) / 2**20

    print(
        f"Neurosynth v7 + LDA50: {ours['n_analyses']:,} studies, {ours['n_foci']:,} foci, "
        f"{ours['n_labels']} labels; store {size_mb:.1f} MiB; {os.cpu_count()} CPUs"
    )
    rows = [
        ("nimare_dask read (convert_neurosynth_to_studyset)", ours["read_s"], None),
        ("nimare_dask write store (to_zarr)", ours["write_s"], None),
        ("nimare_dask ingest total", ours["seconds"], ours["peak_rss_mb"]),
    ]
    if theirs is not None:
        rows.append(
            ("NiMARE convert_neurosynth_to_studyset", theirs["seconds"], theirs["peak_rss_mb"])
        )
    rows += [
        ("open_studyset(store)", query["open_s"], None),
        (
            f"get_studies_by_mask(amygdala, 366 vox) -> {query['n_hits']} hits",
            query["mask_first_s"],
            None,
        ),
        ("get_studies_by_mask, repeated", query["mask_repeat_s"], None),
        ("open + first mask query", query["seconds"], query["peak_rss_mb"]),
    ]
    width = max(len(r[0]) for r in rows)
    print(f"{'step':<{width}}  {'seconds':>8}  {'peak RSS MiB':>12}")
    for name, sec, rss in rows:
        print(f"{name:<{width}}  {sec:8.2f}  {'' if rss is None else f'{rss:12.0f}':>12}")
    if theirs is not None:
        print(
            f"speed-up of ingest (read + store) over NiMARE's read alone: "
            f"{theirs['seconds'] / ours['seconds']:.1f}x; peak memory ratio "
            f"{theirs['peak_rss_mb'] / ours['peak_rss_mb']:.1f}x"
        )


if __name__ == "__main__":
    main()
