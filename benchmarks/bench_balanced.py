"""BalancedALESubtraction side by side with NiMARE 0.22.1: n-back vs flanker.

NiMARE's bundled ``nback_vs_flanker_studyset_2026-07`` (500 n-back and 406 flanker analyses)
has no sample sizes, which NiMARE's balanced subtraction needs; both sides read the same NIMADS
export with seeded sample sizes (10-40). Defaults are NiMARE's (n_subsamples=2500,
difference_iterations=1000, n_iters=1000: days for NiMARE); ``--n1/--n2`` (first analyses of
each task) and the ``--n-subsamples/--difference-iterations/--n-iters`` flags reduce it.

    python benchmarks/bench_balanced.py --n1 60 --n2 40 --n-subsamples 20 \\
        --difference-iterations 50 --n-iters 20

Prints wall and CPU seconds of each fit, the ratio, the machine's load average and map
agreement (correlations; the random parts differ by Monte Carlo error).
"""

from __future__ import annotations

import argparse
import os
import time
import warnings

import numpy as np


def _split(n1: int | None, n2: int | None, seed: int = 0):
    from pathlib import Path

    import nimare
    from nimare.studyset import Studyset as NiStudyset

    folder = Path(nimare.__file__).parent / "resources/nback_vs_flanker_studyset_2026-07"
    d = NiStudyset(str(folder)).to_dict()
    rng = np.random.default_rng(seed)
    tasks: dict[str, list] = {"n-back": [], "flanker": []}
    for st in d["studies"]:
        for a in st["analyses"]:
            a["metadata"]["sample_sizes"] = [int(rng.integers(10, 41))]
            tasks[a["metadata"]["comparison_task"]].append((st["id"], a["id"]))
    out = []
    for task, n in (("n-back", n1), ("flanker", n2)):
        keep = set(tasks[task][:n] if n else tasks[task])
        g = {k: v for k, v in d.items() if k != "studies"}
        g["studies"] = [
            {**st, "analyses": [a for a in st["analyses"] if (st["id"], a["id"]) in keep]}
            for st in d["studies"]
        ]
        g["studies"] = [st for st in g["studies"] if st["analyses"]]
        out.append(g)
    return out


def _timed(fn):
    w, c = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - w, time.process_time() - c


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n1", type=int, default=None, help="n-back analyses (default: all 500)")
    ap.add_argument("--n2", type=int, default=None, help="flanker analyses (default: all 406)")
    ap.add_argument("--n-subsamples", type=int, default=2500)
    ap.add_argument("--difference-iterations", type=int, default=1000)
    ap.add_argument("--n-iters", type=int, default=1000)
    ap.add_argument("--n-cores", type=int, default=None, help="our threads (default: all)")
    ap.add_argument("--skip-nimare", action="store_true")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    d1, d2 = _split(args.n1, args.n2)
    kw = dict(
        n_subsamples=args.n_subsamples,
        difference_iterations=args.difference_iterations,
        n_iters=args.n_iters,
        random_state=args.seed,
    )
    from nimare_dask import Studyset
    from nimare_dask.meta.cbma import BalancedALESubtraction

    s1, s2 = Studyset(d1), Studyset(d2)
    print(f"groups: {len(s1)} n-back, {len(s2)} flanker analyses; {kw}")
    print(f"load average before: {os.getloadavg()}; cpus: {os.cpu_count()}")
    # warm-up (numba compilation, grey-matter prior) on a tiny problem
    BalancedALESubtraction(
        n_subsamples=2, difference_iterations=2, n_iters=2, progress=False, random_state=0
    ).fit(s1.slice(s1.ids[:3]), s2.slice(s2.ids[:3]))
    est = BalancedALESubtraction(progress=False, n_cores=args.n_cores, **kw)
    ours, w, c = _timed(lambda: est.fit(s1, s2))
    print(f"nimare_dask: wall {w:.1f} s, cpu {c:.1f} s, load {os.getloadavg()[0]:.2f}")
    if args.skip_nimare:
        return
    from nimare.meta.cbma import BalancedALESubtraction as NiBalanced
    from nimare.studyset import Studyset as NiStudyset

    n1, n2 = NiStudyset(d1), NiStudyset(d2)
    ni, nw, nc = _timed(lambda: NiBalanced(**kw).fit(n1, n2))
    print(f"NiMARE:      wall {nw:.1f} s, cpu {nc:.1f} s, load {os.getloadavg()[0]:.2f}")
    print(f"ratio NiMARE / nimare_dask: wall {nw / w:.1f}x, cpu {nc / c:.1f}x")
    for name in sorted(ni.maps):
        a = np.asarray(ours.get_map(name, return_type="array"), dtype=float)
        b = np.asarray(ni.get_map(name, return_type="array"), dtype=float)
        r = np.corrcoef(a, b)[0, 1] if a.std() > 0 and b.std() > 0 else float("nan")
        print(f"  {name:40s} corr {r:.4f}  max ours {a.max():.4g} nimare {b.max():.4g}")


if __name__ == "__main__":
    main()
