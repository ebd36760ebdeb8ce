"""Benchmark: amygdala MACM on Neurosynth v7, nimare_dask vs NiMARE 0.22.1, side by side.

Select the experiments with a focus in the amygdala ROI NiMARE ships in its test data
(1,404 of 14,371), then ALE on them (fixed FWHM 10 mm: Neurosynth has no sample sizes).
Timed: selection + ALE fit (loading the database excluded), each package in a fresh
subprocess after a warm-up fit on a few studies, so peak RSS is per run. With
``--fwe-iters N`` the cluster-level Monte Carlo FWE correction (voxel threshold 0.001) is timed
too, for each package whose ALE supports it.

Usage::

    python benchmarks/bench_macm.py
    python benchmarks/bench_macm.py --seeds 4      # also: 4 coordinate seeds in one graph
    python benchmarks/bench_macm.py --fwe-iters 10000

The benchmark imports nimare (the oracle); the package itself never does.
"""

from __future__ import annotations

import argparse
import json
import logging
import resource
import subprocess
import sys
import time
import warnings
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_DATA = HERE.parents[1] / "shared" / "data"
NS = "data-neurosynth_version-7_"
FWHM = 10.0
#: Coordinate seeds for the many-seeds case (left/right amygdala, left/right insula).
SEEDS = [(-24.0, -4.0, -20.0), (24.0, -4.0, -20.0), (-38.0, 4.0, 2.0), (38.0, 4.0, 2.0)]


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _load(impl: str, data: Path):
    folder = data / "neurosynth-v7"
    coords, meta = folder / f"{NS}coordinates.tsv.gz", folder / f"{NS}metadata.tsv.gz"
    if impl == "ours":
        from nimare_dask.io import convert_neurosynth_to_studyset

        return convert_neurosynth_to_studyset(coords, meta)
    from nimare.io import convert_neurosynth_to_studyset

    return convert_neurosynth_to_studyset(str(coords), str(meta))


def _worker(impl: str, data: Path, fwe_iters: int, n_seeds: int) -> dict:
    logging.disable(logging.WARNING)
    warnings.simplefilter("ignore")
    import numpy as np

    from nimare_dask.workflows import amygdala_roi

    roi = amygdala_roi()
    ss = _load(impl, data)
    out: dict = {}
    if impl == "ours":
        from nimare_dask.correct import FWECorrector
        from nimare_dask.meta.cbma import ALE
        from nimare_dask.workflows import macm

        ALE(kernel__fwhm=FWHM).fit(ss.slice(list(ss.ids)[:5]))  # warm-up (numba caches)
        t0 = time.perf_counter()
        res = macm(ss, roi, estimator=ALE(kernel__fwhm=FWHM))
        out["seconds"] = time.perf_counter() - t0
        out["n_selected"] = int(len(res.tables["selected_studies"]))
        out["zmax"] = float(res.get_map("z", "array").max())
        out["peak_rss_mb"] = _peak_rss_mb()
        if fwe_iters and hasattr(ALE, "correct_fwe_montecarlo"):
            corr = FWECorrector(method="montecarlo", n_iters=fwe_iters, voxel_thresh=0.001)
            t0 = time.perf_counter()
            corr.transform(res)
            out["fwe_seconds"] = time.perf_counter() - t0
            out["fwe_peak_rss_mb"] = _peak_rss_mb()
        if n_seeds:
            seeds = [np.array([s]) for s in SEEDS[:n_seeds]]
            t0 = time.perf_counter()
            many = macm(ss, seeds, r=6, estimator=ALE(kernel__fwhm=FWHM))
            out["seeds_seconds"] = time.perf_counter() - t0
            out["seeds_selected"] = [len(m.tables["selected_studies"]) for m in many]
            out["seeds_peak_rss_mb"] = _peak_rss_mb()
        return out
    from nimare.correct import FWECorrector
    from nimare.meta.cbma import ALE

    ALE(kernel__fwhm=FWHM).fit(ss.slice(list(ss.ids)[:5]))
    t0 = time.perf_counter()
    ids = ss.get_studies_by_mask(roi)
    res = ALE(kernel__fwhm=FWHM).fit(ss.slice(ids))
    out["seconds"] = time.perf_counter() - t0
    out["n_selected"] = len(ids)
    out["zmax"] = float(res.get_map("z", return_type="array").max())
    out["peak_rss_mb"] = _peak_rss_mb()
    if fwe_iters:
        corr = FWECorrector(method="montecarlo", n_iters=fwe_iters, voxel_thresh=0.001)
        t0 = time.perf_counter()
        corr.transform(res)
        out["fwe_seconds"] = time.perf_counter() - t0
        out["fwe_peak_rss_mb"] = _peak_rss_mb()
    return out


def _run(impl: str, args) -> dict:
    cmd = [
        sys.executable, __file__, "--worker", impl, "--data", str(args.data),
        "--fwe-iters", str(args.fwe_iters), "--seeds", str(args.seeds),
    ]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        tail = out.stderr.strip().splitlines()[-1] if out.stderr.strip() else "failed"
        return {"error": f"{tail} (exit {out.returncode})"}
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--fwe-iters", type=int, default=0)
    parser.add_argument("--seeds", type=int, default=0, choices=range(0, len(SEEDS) + 1))
    parser.add_argument("--no-nimare", action="store_true")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(_worker(args.worker, args.data, args.fwe_iters, args.seeds)))
        return 0
    if not (args.data / "neurosynth-v7").exists():
        print(f"skipped: {args.data / 'neurosynth-v7'} not found")
        return 0
    header = f"{'step':<22} {'impl':<7} {'selected':>9} {'seconds':>9} {'peak MB':>9}  notes"
    print(header)
    print("-" * len(header))
    impls = ("ours",) if args.no_nimare else ("ours", "nimare")
    res = {impl: _run(impl, args) for impl in impls}
    for impl, r in res.items():
        if "error" in r:
            print(f"{'selection + ALE':<22} {impl:<7} error: {r['error']}")
            continue
        print(f"{'selection + ALE':<22} {impl:<7} {r['n_selected']:>9} {r['seconds']:>9.2f} "
              f"{r['peak_rss_mb']:>9.0f}  z max {r['zmax']:.2f}")  # fmt: skip
        if "fwe_seconds" in r:
            print(f"{'FWE montecarlo':<22} {impl:<7} {'':>9} {r['fwe_seconds']:>9.2f} "
                  f"{r['fwe_peak_rss_mb']:>9.0f}  {args.fwe_iters} iterations")  # fmt: skip
        elif args.fwe_iters:
            print(f"{'FWE montecarlo':<22} {impl:<7} not available for this ALE yet")
        if "seeds_seconds" in r:
            sel = "/".join(map(str, r["seeds_selected"]))
            print(f"{f'{args.seeds} seeds, one graph':<22} {impl:<7} {sel:>9} "
                  f"{r['seeds_seconds']:>9.2f} {r['seeds_peak_rss_mb']:>9.0f}")  # fmt: skip
    if all("seconds" in r for r in res.values()) and len(res) == 2:
        speed = res["nimare"]["seconds"] / res["ours"]["seconds"]
        mem = res["nimare"]["peak_rss_mb"] / res["ours"]["peak_rss_mb"]
        print(f"ratio NiMARE/ours (selection + ALE): time x{speed:.1f}, peak memory x{mem:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
