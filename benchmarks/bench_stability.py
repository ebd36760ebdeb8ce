"""Benchmark: ResampledStability (ALE, pain studyset), nimare_dask vs NiMARE 0.22.1, side by side.

Both run the same analysis with the same seed: leave-one-out (21 replicates) on the 21 NIDM
pain studies, the Monte Carlo cluster-size threshold from ``--iters`` random-foci datasets
(NiMARE reads the iterations from the result's corrector), and must give identical maps (the
script checks). Each package runs in its own fresh subprocess (peak RSS per run); ours after a
warm-up on a few iterations (numba caches load; NiMARE's numba too). NiMARE runs with
``n_cores=--cores`` (its replicate loop; its Monte Carlo loop is serial), ours on a local thread
pool of ``--cores``.

Usage::

    python benchmarks/bench_stability.py --iters 500 --cores 2

The benchmark imports nimare (the oracle); the package itself never does.
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

MAP = "z_diag-ResampledStability"


def _pain() -> str:
    import importlib.util

    spec = importlib.util.find_spec("nimare")
    return str(Path(spec.origin).parent / "resources" / "nidm_pain_studyset.json")


def _ours(iters: int, cores: int, out: str) -> dict:
    import numpy as np

    from nimare_dask.diagnostics import ResampledStability
    from nimare_dask.meta.cbma import ALE
    from nimare_dask.studyset import Studyset

    res = ALE(progress=False).fit(Studyset(_pain()))
    ResampledStability("z", "leave_1_out", random_state=0, n_iters=3, n_cores=cores).transform(
        res
    )  # warm-up
    t0 = time.perf_counter()
    c0 = time.process_time()
    res = ALE(progress=False).fit(Studyset(_pain()))
    st = ResampledStability(
        "z", "leave_1_out", random_state=0, n_iters=iters, n_cores=cores
    ).transform(res)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    np.save(out, st.get_map(MAP, "array"))
    thr = float(st.tables[f"{MAP}_tab-summary"]["cluster_size_threshold"].iloc[0])
    return {"wall_s": wall, "cpu_s": cpu, "threshold": thr}


def _nimare(iters: int, cores: int, out: str) -> dict:
    import numpy as np
    from nimare.correct import FWECorrector
    from nimare.diagnostics import ResampledStability
    from nimare.meta.cbma import ALE
    from nimare.studyset import Studyset

    t0 = time.perf_counter()
    c0 = time.process_time()
    res = ALE().fit(Studyset(_pain()))
    res.corrector = FWECorrector("montecarlo", n_iters=iters)
    st = ResampledStability("z", "leave_1_out", random_state=0, n_cores=cores).transform(res)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    np.save(out, np.asarray(st.maps[MAP]))
    return {"wall_s": wall, "cpu_s": cpu}


def _child(which: str, iters: int, cores: int, out: str) -> None:
    warnings.simplefilter("ignore")
    info = (_ours if which == "ours" else _nimare)(iters, cores, out)
    info["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(info))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--iters", type=int, default=500)
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--child", choices=("ours", "nimare"))
    ap.add_argument("--out", default="")
    args = ap.parse_args()
    if args.child:
        _child(args.child, args.iters, args.cores, args.out)
        return
    import tempfile

    import numpy as np

    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for which in ("nimare", "ours"):
            out = os.path.join(tmp, f"{which}.npy")
            cmd = [sys.executable, __file__, "--child", which, "--iters", str(args.iters)]
            cmd += ["--cores", str(args.cores), "--out", out]
            proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
            results[which] = json.loads(proc.stdout.strip().splitlines()[-1])
            results[which]["map"] = np.load(out)
    same = bool(np.array_equal(results["ours"].pop("map"), results["nimare"].pop("map")))
    load = os.getloadavg()[0]
    print(f"ResampledStability, pain leave-one-out, {args.iters} Monte Carlo iterations")
    print(f"load average (1 min) at the end: {load:.2f} on {os.cpu_count()} cores")
    for which in ("nimare", "ours"):
        r = results[which]
        print(
            f"  {which:7s} wall {r['wall_s']:8.2f} s  cpu {r['cpu_s']:8.2f} s  "
            f"peak RSS {r['peak_rss_mb']:7.0f} MB"
        )
    ratio = results["nimare"]["wall_s"] / results["ours"]["wall_s"]
    print(f"  wall-time ratio NiMARE / ours: {ratio:.1f}x; identical maps: {same}")
    print(f"  cluster-size threshold: {results['ours']['threshold']:g} voxels")


if __name__ == "__main__":
    main()
