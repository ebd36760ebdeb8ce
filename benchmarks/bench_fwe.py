"""Benchmark: Monte Carlo FWE correction, nimare_dask vs NiMARE 0.22.1, side by side (issue 4).

Cases (each run in its own fresh subprocess, so peak RSS is per run):

* ``pain``: ALE + voxel- and cluster-level Monte Carlo FWE (cluster-forming p < 0.001) on the 21
  NIDM pain studies.
* ``nback``: the same on the 500 n-back analyses of NiMARE's
  ``nback_vs_flanker_studyset_2026-07`` parquet release (FWHM 10 mm: the release has almost no
  sample sizes; needs pyarrow). Our Studyset is built from NiMARE's frames: same foci.
* ``subtraction``: ALESubtraction n-back (500) vs flanker (406), label permutations; ours
  voxel- and cluster-level, NiMARE voxel-level only (``vfwe_only=True``, its cheapest mode).
* ``macm``: amygdala MACM on Neurosynth v7: the studies with a focus in NiMARE's
  ``amygdala_roi.nii.gz``, ALE (FWHM 10 mm) + cluster-level FWE. Our store is built with
  ``nimare-dask ingest neurosynth --base-url <data>/neurosynth-v7`` (cached in ``--work``).
* ``scaling``: ours on a ``distributed.LocalCluster`` (threads) with 1 and 2 workers: speed-up
  and identical null.
* ``memory``: our peak RSS with ``--iters`` and ten times as many iterations.

NiMARE runs far fewer iterations (``--nimare-iters``) and its time per iteration is
**extrapolated** linearly to ours (the output says so); its fit is timed apart and added. Ours is
timed in full: ``fit`` + ``FWECorrector(method="montecarlo").transform``, after a warm-up on a
few studies (numba caches load, NiMARE's too). Both use the same 2 cores (NiMARE
``n_cores=2``).

Usage::

    python benchmarks/bench_fwe.py --case pain            # 10,000 iterations
    python benchmarks/bench_fwe.py --case pain nback subtraction --iters 10000
    python benchmarks/bench_fwe.py --case macm --iters 1000 --nimare-iters 3
    python benchmarks/bench_fwe.py --case scaling memory

The benchmark imports nimare (the oracle); the package itself never does.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import subprocess
import sys
import time
import warnings
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_DATA = HERE.parents[1] / "shared" / "data"
DEFAULT_WORK = HERE / ".cache"
CASES = ("pain", "nback", "subtraction", "macm", "scaling", "memory")
NIMARE_ITERS = {"pain": 200, "nback": 20, "subtraction": 20, "macm": 2}
SUFFIX = "_corr-FWE_method-montecarlo"


def _nimare_dir() -> Path:
    """NiMARE's package folder, located without importing nimare (it would inflate our RSS)."""
    import importlib.util

    spec = importlib.util.find_spec("nimare")
    if spec is None or spec.origin is None:
        raise SystemExit("NiMARE (the oracle) is not installed")
    return Path(spec.origin).parent


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # kB on Linux


def _quiet() -> None:
    logging.disable(logging.WARNING)
    warnings.simplefilter("ignore")


# ---------------------------------------------------------------------------- inputs
def _nback_flanker_nimare():
    from nimare.studyset import Studyset as NiMAREStudyset

    nss = NiMAREStudyset(str(_nimare_dir() / "resources" / "nback_vs_flanker_studyset_2026-07"))
    meta = nss.metadata
    return tuple(
        nss.slice(sorted(meta.loc[meta["comparison_task"] == task, "id"]))
        for task in ("n-back", "flanker")
    )


def _prepare_nback_flanker(work: Path) -> list[Path]:
    """Our copies of the two task groups, built from NiMARE's frames (same foci), as NIMADS."""
    from nimare_dask import Studyset

    paths = []
    for task, sub in zip(("nback", "flanker"), _nback_flanker_nimare(), strict=True):
        path = work / f"{task}.json"
        if not path.exists():
            coords = sub.coordinates
            analyses = coords[["id", "study_id", "contrast_id"]].drop_duplicates("id")
            points = coords[["id", "x", "y", "z"]].assign(space="MNI")  # already in MNI
            Studyset.from_tables(analyses, points, source_name=task).to_nimads(path)
        paths.append(path)
    return paths


def _prepare_neurosynth_store(work: Path, data: Path) -> Path:
    store = work / "neurosynth-v7.zarr"
    if not store.exists():
        cmd = [
            sys.executable, "-m", "nimare_dask.cli.main", "ingest", "neurosynth",
            "--base-url", str(data / "neurosynth-v7"), "-o", str(store),
        ]  # fmt: skip
        subprocess.run(cmd, check=True, capture_output=True, text=True)
    return store


def _amygdala_roi() -> Path:
    return _nimare_dir() / "tests" / "data" / "amygdala_roi.nii.gz"


def _inputs(case: str, impl: str, work: Path, data: Path):
    """(estimator factory, fit args) for a case."""
    if impl == "ours":
        from nimare_dask import Studyset, open_studyset
        from nimare_dask.meta.cbma import ALE, ALESubtraction
    else:
        from nimare.meta.cbma import ALE, ALESubtraction
        from nimare.studyset import Studyset
    if case == "pain":
        path = _nimare_dir() / "resources" / "nidm_pain_studyset.json"
        ss = Studyset(path) if impl == "ours" else Studyset(str(path))
        return ALE, (ss,)
    if case in ("nback", "subtraction"):
        if impl == "ours":
            groups = tuple(Studyset(p) for p in (work / "nback.json", work / "flanker.json"))
        else:
            groups = _nback_flanker_nimare()
        if case == "nback":
            return (lambda **kw: ALE(kernel__fwhm=10, **kw)), groups[:1]
        return (lambda **kw: ALESubtraction(kernel__fwhm=10, **kw)), groups
    # macm
    if impl == "ours":
        ss = open_studyset(work / "neurosynth-v7.zarr")
        ids = ss.get_studies_by_mask(str(_amygdala_roi()))
        return (lambda **kw: ALE(kernel__fwhm=10, **kw)), (ss.slice(ids),)
    from nimare.io import convert_neurosynth_to_studyset

    folder = data / "neurosynth-v7"
    prefix = "data-neurosynth_version-7_"
    ss = convert_neurosynth_to_studyset(
        str(folder / f"{prefix}coordinates.tsv.gz"), str(folder / f"{prefix}metadata.tsv.gz")
    )
    ids = ss.get_studies_by_mask(str(_amygdala_roi()))
    return (lambda **kw: ALE(kernel__fwhm=10, **kw)), (ss.slice(ids),)


def _n_foci(impl: str, studysets) -> list[int]:
    if impl == "ours":
        return [int(s.foci_counts().sum()) for s in studysets]
    return [int(len(s.coordinates)) for s in studysets]


def _warm_up(make, args, impl: str) -> None:
    """A tiny fit and correction: numba caches load (ours and NiMARE's) before timing."""
    few = [s.slice(list(s.ids)[:4]) for s in args]
    kw = {"progress": False} if impl == "ours" else {}
    if len(args) == 2:
        make(n_iters=2, **kw).fit(*few)
        return
    res = make(**kw).fit(*few)
    if impl == "ours":
        from nimare_dask.correct import FWECorrector

        FWECorrector(method="montecarlo", n_iters=2).transform(res)
    else:
        from nimare.correct import FWECorrector

        FWECorrector(method="montecarlo", n_iters=2, n_cores=2).transform(res)


# ---------------------------------------------------------------------------- workers
def _worker(case: str, impl: str, n_iters: int, work: Path, data: Path) -> dict:
    _quiet()
    make, args = _inputs(case, impl, work, data)
    _warm_up(make, args, impl)
    out = {"n_analyses": [len(s.ids) for s in args], "n_foci": _n_foci(impl, args)}
    if impl == "ours":
        from nimare_dask.correct import FWECorrector

        t0 = time.perf_counter()
        if case == "subtraction":
            est = make(n_iters=n_iters, vfwe_only=False, random_state=1, progress=False)
            res = est.fit(*args)
            t_fit = time.perf_counter() - t0
            res = FWECorrector(method="montecarlo").transform(res)  # reuses the fit's nulls
            out["what"] = "voxel+cluster"
        else:
            est = make(random_state=1, progress=False)
            res = est.fit(*args)
            t_fit = time.perf_counter() - t0
            res = FWECorrector(method="montecarlo", n_iters=n_iters).transform(res)
            out["what"] = "voxel+cluster"
        total = time.perf_counter() - t0
        name = (
            f"z_desc-group1MinusGroup2Size_level-cluster{SUFFIX}"
            if case == "subtraction"
            else f"z_desc-size_level-cluster{SUFFIX}"
        )
        out.update(
            seconds=total,
            fit_s=t_fit,
            per_iter_s=(total - t_fit) / n_iters if case != "subtraction" else total / n_iters,
            n_iters=n_iters,
            extrapolated=False,
            n_sig_voxels=int((res.get_map(name, return_type="array") > 1.6449).sum()),
        )
    else:
        from nimare.correct import FWECorrector

        t0 = time.perf_counter()
        if case == "subtraction":
            est = make(n_iters=n_iters, vfwe_only=True, n_cores=2)
            est.fit(*args)  # the fit runs the permutations
            t_perm = time.perf_counter() - t0
            out.update(fit_s=0.0, per_iter_s=t_perm / n_iters, what="voxel only")
        else:
            est = make()
            res = est.fit(*args)
            t_fit = time.perf_counter() - t0
            t1 = time.perf_counter()
            FWECorrector(method="montecarlo", n_iters=n_iters, n_cores=2).transform(res)
            out.update(
                fit_s=t_fit, per_iter_s=(time.perf_counter() - t1) / n_iters, what="voxel+cluster"
            )
        out.update(n_iters=n_iters, extrapolated=True)
    out["peak_rss_mb"] = _peak_rss_mb()
    return out


def _scaling_worker(n_iters: int) -> dict:
    """Ours on a threads LocalCluster with 1 then 2 workers (1 thread each)."""
    import numpy as np
    from distributed import Client, LocalCluster

    from nimare_dask import Studyset
    from nimare_dask.meta.cbma import ALE

    _quiet()
    ss = Studyset(_nimare_dir() / "resources" / "nidm_pain_studyset.json")
    est = ALE(random_state=1, progress=False)
    res = est.fit(ss)
    est.correct_fwe_montecarlo(res, n_iters=4)  # warm-up
    out = {}
    nulls = {}
    for n_workers in (1, 2):
        with (
            LocalCluster(
                n_workers=n_workers, threads_per_worker=1, processes=False, dashboard_address=":0"
            ) as cluster,
            Client(cluster),
        ):
            t0 = time.perf_counter()
            est.correct_fwe_montecarlo(res, n_iters=n_iters, block_size=50)
            out[f"seconds_{n_workers}"] = time.perf_counter() - t0
            mc = est.montecarlo_["correct_fwe_montecarlo"]
            nulls[n_workers] = {k: mc[k] for k in ("max_stat", "max_size", "max_mass")}
    out["identical"] = all(np.array_equal(nulls[1][k], nulls[2][k]) for k in nulls[1])
    out["speedup"] = out["seconds_1"] / out["seconds_2"]
    return out


def _memory_worker(n_iters: int) -> dict:
    from nimare_dask import Studyset
    from nimare_dask.correct import FWECorrector
    from nimare_dask.meta.cbma import ALE

    _quiet()
    ss = Studyset(_nimare_dir() / "resources" / "nidm_pain_studyset.json")
    res = ALE(random_state=1, progress=False).fit(ss)
    t0 = time.perf_counter()
    FWECorrector(method="montecarlo", n_iters=n_iters).transform(res)
    return {"seconds": time.perf_counter() - t0, "peak_rss_mb": _peak_rss_mb()}


# ---------------------------------------------------------------------------- driver
def _run(*worker_args: str) -> dict:
    cmd = [sys.executable, __file__, "--worker", *worker_args]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        tail = out.stderr.strip().splitlines()[-1] if out.stderr.strip() else "failed"
        return {"error": tail}
    return json.loads(out.stdout.strip().splitlines()[-1])


def _report(case: str, ours: dict, theirs: dict, n_iters: int) -> None:
    for impl, r in (("ours", ours), ("nimare", theirs)):
        if "error" in r:
            print(f"{case:<12} {impl:<7} error: {r['error']}")
            continue
        total = r["fit_s"] + r["per_iter_s"] * n_iters if r["extrapolated"] else r["seconds"]
        r["total_s"] = total
        note = f"extrapolated from {r['n_iters']} iterations" if r["extrapolated"] else "measured"
        n = "/".join(str(k) for k in r["n_analyses"])
        foci = "/".join(str(k) for k in r["n_foci"])
        print(
            f"{case:<12} {impl:<7} {n:>9} {foci:>11} {r['what']:>14} {total:>10.1f} "
            f"{r['per_iter_s'] * 1e3:>9.2f} {r['peak_rss_mb']:>8.0f}  {note}"
        )
    if "total_s" in ours and "total_s" in theirs:
        print(
            f"{case:<12} ratio   NiMARE/ours at {n_iters} iterations: "
            f"x{theirs['total_s'] / ours['total_s']:.1f}"
        )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--case", nargs="+", choices=CASES, default=["pain"])
    parser.add_argument("--iters", type=int, default=10000, help="our iterations")
    parser.add_argument(
        "--nimare-iters", type=int, default=None, help="NiMARE's (default: per case)"
    )
    parser.add_argument("--skip-nimare", action="store_true")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--work", type=Path, default=DEFAULT_WORK, help="cache of inputs")
    parser.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        kind, *rest = args.worker
        if kind == "scaling":
            result = _scaling_worker(int(rest[0]))
        elif kind == "memory":
            result = _memory_worker(int(rest[0]))
        else:
            impl, n = rest
            result = _worker(kind, impl, int(n), args.work, args.data)
        print(json.dumps(result))
        return 0
    args.work.mkdir(parents=True, exist_ok=True)
    print(f"{os.cpu_count()} cores; our iterations: {args.iters}")
    header = (
        f"{'case':<12} {'impl':<7} {'analyses':>9} {'foci':>11} {'inference':>14} "
        f"{'total s':>10} {'ms/iter':>9} {'peak MB':>8}"
    )
    print(header)
    print("-" * len(header))
    for case in args.case:
        if case == "scaling":
            n = min(args.iters, 4000)
            r = _run("scaling", str(n))
            if "error" in r:
                print(f"scaling      error: {r['error']}")
                continue
            print(
                f"scaling      ours, pain, {n} iterations: 1 worker {r['seconds_1']:.1f} s, "
                f"2 workers {r['seconds_2']:.1f} s, speed-up x{r['speedup']:.2f}, identical null: "
                f"{r['identical']}"
            )
            continue
        if case == "memory":
            rows = {n: _run("memory", str(n)) for n in (args.iters, 10 * args.iters)}
            for n, r in rows.items():
                if "error" in r:
                    print(f"memory       error: {r['error']}")
                    continue
                print(
                    f"memory       ours, pain, {n:>7} iterations: {r['seconds']:7.1f} s, "
                    f"peak RSS {r['peak_rss_mb']:.0f} MB"
                )
            if all("peak_rss_mb" in r for r in rows.values()):
                a, b = (rows[n]["peak_rss_mb"] for n in (args.iters, 10 * args.iters))
                print(f"memory       peak RSS ratio (10x iterations): {b / a:.3f}")
            continue
        if case in ("nback", "subtraction"):
            _prepare_nback_flanker(args.work)
        if case == "macm":
            if not (args.data / "neurosynth-v7").exists():
                print(f"macm         skipped: {args.data / 'neurosynth-v7'} not found")
                continue
            _prepare_neurosynth_store(args.work, args.data)
        ours = _run(case, "ours", str(args.iters))
        n_nimare = args.nimare_iters or NIMARE_ITERS[case]
        theirs = {"error": "skipped"} if args.skip_nimare else _run(case, "nimare", str(n_nimare))
        _report(case, ours, theirs, args.iters)
    return 0


if __name__ == "__main__":
    sys.exit(main())
