"""Benchmark the MA kernels on the whole Neurosynth v7 database (14,371 studies, 507,891 foci).

MKDA r=10 on the MNI152 2 mm grid (228,483 voxels), each case in a fresh subprocess so that
its peak memory is its own:

* ``dense-chunked``: the lazy dense MA maps (float32, ~64 MB chunks), summed over studies
  chunk by chunk (``transform(...).sum("analysis")``): the path without fused reductions;
* ``summary``: the fused numba reduction (``transform(..., return_type="summary")``), which
  never builds a dense block;
* ``sparse``: the numba CSR builder (``return_type="sparse"``);
* ``max``: per-study maximum (``max_values``);
* NiMARE 0.22.1 on two subsets (``--subset`` and 4x as many studies): ``MKDAKernel.transform``
  as ``sparse`` and ``summary_array``, extrapolated to the whole database with the power law
  fitted to the two sizes (NiMARE's ``summary_array`` loops over studies x all foci).

Peak memory is the subprocess's high-water resident set (``ru_maxrss``) minus its resident
set just before the measured call (the loaded studyset, numba compiled, one warm-up call on a
small slice). Times are wall-clock seconds of one call, on the local threaded scheduler.

Usage::

    python benchmarks/bench_kernels.py [--data ../shared/data] [--subset 1000]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
CASES = ("dense-chunked", "summary", "sparse", "max", "nimare-sparse", "nimare-summary")


def _rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        pages = int(fh.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: kB


def load_neurosynth(data: Path, n: int | None = None):
    """Neurosynth v7 as a nimare_dask Studyset (one analysis "1" per study, TAL -> MNI)."""
    import pandas as pd

    from nimare_dask import Studyset

    folder = data / "neurosynth-v7"
    meta = pd.read_table(folder / "data-neurosynth_version-7_metadata.tsv.gz", dtype={"id": str})
    coords = pd.read_table(
        folder / "data-neurosynth_version-7_coordinates.tsv.gz", dtype={"id": str}
    )
    if n is not None:
        keep = set(meta["id"].iloc[:: max(1, len(meta) // n)][:n])
        meta = meta[meta["id"].isin(keep)]
        coords = coords[coords["id"].isin(keep)]
    space = dict(zip(meta["id"], meta["space"], strict=True))
    analyses = pd.DataFrame({"study_id": meta["id"], "contrast_id": "1"})
    points = pd.DataFrame(
        {
            "id": coords["id"] + "-1",
            "x": coords["x"],
            "y": coords["y"],
            "z": coords["z"],
            "space": coords["id"].map(space),
        }
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # UNKNOWN-space foci are kept as MNI
        return Studyset.from_tables(analyses, points, source_name="neurosynth-v7")


def run_case(case: str, data: Path, subset: int) -> dict:
    """Run one case in this process and return its measurements."""
    from nimare_dask.kernels import MKDAKernel

    kernel = MKDAKernel(r=10)
    if case.startswith("nimare"):
        from nimare.meta.kernel import MKDAKernel as NiMAREMKDA
        from nimare.utils import get_masker, get_template

        ss = load_neurosynth(data, subset or None)  # subset 0: the whole database
        frame = ss.coordinates[["id", "x", "y", "z"]]
        masker = get_masker(get_template("mni152_2mm", mask="brain"))
        rtype = "sparse" if case == "nimare-sparse" else "summary_array"
        NiMAREMKDA(r=10).transform(frame.iloc[:200], masker=masker, return_type=rtype)  # warm
        before = _rss_mb()
        t0 = time.perf_counter()
        out = NiMAREMKDA(r=10).transform(frame, masker=masker, return_type=rtype)
        seconds = time.perf_counter() - t0
        check = float(out.sum())
    else:
        ss = load_neurosynth(data)
        small = ss.slice(ss.ids[:50])  # warm-up: numba compilation is not measured
        kernel.transform(small, return_type="summary").compute()
        kernel.transform(small, return_type="sparse")
        kernel.max_values(small)
        kernel.transform(small).sum("analysis").compute()
        before = _rss_mb()
        t0 = time.perf_counter()
        if case == "dense-chunked":
            out = kernel.transform(ss).sum("analysis", dtype=np.float64).values
        elif case == "summary":
            out = kernel.transform(ss, return_type="summary").values
        elif case == "sparse":
            out = kernel.transform(ss, return_type="sparse")
        elif case == "max":
            out = kernel.max_values(ss)
        else:
            raise ValueError(case)
        seconds = time.perf_counter() - t0
        check = float(out.sum())
    return {
        "case": case,
        "n_studies": len(ss),
        "n_foci": int(len(ss.coordinates)),
        "seconds": seconds,
        "peak_extra_mb": max(0.0, _peak_mb() - before),
        "check_sum": check,
    }


def _run_sub(case: str, data: Path, subset: int) -> dict | None:
    cmd = [sys.executable, __file__, "--one", case, "--data", str(data), "--subset", str(subset)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode:
        print(f"{case}: failed\n{proc.stderr[-2000:]}")
        return None
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _show(name: str, res: dict) -> None:
    print(
        f"{name:22s} {res['n_studies']:6d} studies {res['seconds']:8.2f} s  "
        f"peak +{res['peak_extra_mb']:7.0f} MB  (check {res['check_sum']:.6g})"
    )


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--subset", type=int, default=500, help="studies for NiMARE (and 4x)")
    parser.add_argument("--cases", nargs="*", default=list(CASES))
    parser.add_argument(
        "--no-nimare-full",
        dest="nimare_full",
        action="store_false",
        help="skip NiMARE on the whole database (measured besides the extrapolation)",
    )
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: run one case, print JSON
    args = parser.parse_args(argv)
    if args.one:
        print(json.dumps(run_case(args.one, args.data, args.subset)))
        return
    if not (args.data / "neurosynth-v7").exists():
        sys.exit(f"Neurosynth v7 not found under {args.data}; pass --data")
    print(f"# MKDA r=10, MNI152 2 mm; {os.cpu_count()} CPUs; each case in a fresh process")
    results = {}
    for case in args.cases:
        if not case.startswith("nimare"):
            res = _run_sub(case, args.data, args.subset)
            if res:
                results[case] = res
                _show(case, res)
            continue
        # NiMARE on two subset sizes; extrapolate with the fitted power law t ~ n^alpha
        # (its summary_array loops over studies x all foci, so it is not linear)
        small = _run_sub(case, args.data, args.subset)
        large = _run_sub(case, args.data, 4 * args.subset)
        if not (small and large):
            continue
        _show(case, small)
        _show(case, large)
        full = results.get("summary", {}).get("n_studies", 14371)
        alpha = np.log(large["seconds"] / small["seconds"]) / np.log(
            large["n_studies"] / small["n_studies"]
        )
        alpha = float(np.clip(alpha, 1.0, 2.0))
        large["extrapolated_s"] = large["seconds"] * (full / large["n_studies"]) ** alpha
        results[case] = large
        if args.nimare_full:
            whole = _run_sub(case, args.data, 0)
            if whole:
                _show(case, whole)
                large["measured_full_s"] = whole["seconds"]
        print(
            f"{case:22s} extrapolated to {full} studies (alpha={alpha:.2f}): "
            f"{large['extrapolated_s']:.1f} s"
        )
    print("# ratios (time; >1 means the second is faster)")
    pairs = [
        ("dense-chunked", "summary", "seconds"),
        ("nimare-summary", "summary", "extrapolated_s"),
        ("nimare-sparse", "sparse", "extrapolated_s"),
    ]
    for slow, fast, key in pairs:
        if slow in results and fast in results:
            ratio = results[slow].get(key, results[slow]["seconds"]) / results[fast]["seconds"]
            line = f"{slow} / {fast}: {ratio:.1f}x"
            if "measured_full_s" in results[slow]:
                measured = results[slow]["measured_full_s"] / results[fast]["seconds"]
                line += f" extrapolated, {measured:.1f}x measured on the whole database"
            print(line)
    if "dense-chunked" in results and "summary" in results:
        d, s = results["dense-chunked"], results["summary"]
        print(
            f"peak memory dense-chunked / summary: "
            f"{d['peak_extra_mb']:.0f} MB / {s['peak_extra_mb']:.0f} MB"
        )


if __name__ == "__main__":
    main()
