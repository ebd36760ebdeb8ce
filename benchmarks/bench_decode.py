"""Benchmark: whole-database CorrelationDecoder, nimare_dask vs NiMARE 0.22.1, side by side.

Cases (each measurement runs in its own fresh subprocess, so peak RSS is per run):

* ``neurosynth``: Neurosynth v7 (14,371 studies), all 50 LDA topics, MKDAChi2 association maps
  (the decodable ones: topics carried by every study are dropped, as in NiMARE).
* ``neuroquery``: NeuroQuery v1 (13,459 studies), all 7,547 terms, TF-IDF of the abstract
  counts, frequency threshold 0.001 (every term some abstract uses).
* ``transform``: decoding one map against every stored NeuroQuery feature map.
* ``memory``: the path a NiMARE user takes: NeuroQuery v1 read into an in-memory studyset (no
  store), ``CorrelationDecoder().fit(studyset)`` on all terms (TF-IDF), then ``transform`` of one
  map, in one process: time of each step and the peak RSS of the whole process (reading the
  files included). The maps (7 GB) go to a temporary store, not to RAM.

Ours: the studyset is ingested into a Zarr store first (not timed); ``fit`` computes every
feature map in one blocked pass and writes them into the store; ``transform`` reads them back
once. NiMARE: a fit on a few features, timed in two parts (the shared MA-map set-up and the
per-feature meta-analyses) and extrapolated linearly to every feature; its transform is timed on
a subset of the maps and extrapolated linearly in time and memory. NiMARE reads the NeuroQuery
counts (a term is "present" at count >= 1, the same studies as TF-IDF >= 0.001).

Usage::

    python benchmarks/bench_decode.py                       # all cases
    python benchmarks/bench_decode.py --case neurosynth --nimare-features 3
    python benchmarks/bench_decode.py --data ../shared/data --workdir /tmp/bench_decode

The benchmark imports nimare (the oracle); the package itself never does.
"""

from __future__ import annotations

import argparse
import json
import logging
import resource
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_DATA = HERE.parents[1] / "shared" / "data"
CASES = ("neurosynth", "neuroquery", "transform", "memory")
NS = "data-neurosynth_version-7_"
NQ = "data-neuroquery_version-1_"


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # kB on Linux


def _quiet() -> None:
    logging.disable(logging.WARNING)
    warnings.simplefilter("ignore")


def _files(db: str, data: Path) -> dict:
    if db == "neurosynth":
        folder = data / "neurosynth-v7"
        return {
            "coordinates": folder / f"{NS}coordinates.tsv.gz",
            "metadata": folder / f"{NS}metadata.tsv.gz",
            "features": folder / f"{NS}vocab-LDA50_source-abstract_type-weight_features.npz",
            "vocabulary": folder / f"{NS}vocab-LDA50_vocabulary.txt",
        }
    folder = data / "neuroquery-v1"
    return {
        "coordinates": folder / f"{NQ}coordinates.tsv.gz",
        "metadata": folder / f"{NQ}metadata.tsv.gz",
        "features": folder / f"{NQ}vocab-neuroquery7547_source-abstract_type-count_features.npz",
        "vocabulary": folder / f"{NQ}vocab-neuroquery7547_vocabulary.txt",
    }


# ---------------------------------------------------------------------------- ours
def _ingest(db: str, data: Path, store: Path) -> dict:
    from nimare_dask.io import convert_neuroquery_to_studyset, convert_neurosynth_to_studyset

    f = _files(db, data)
    t0 = time.perf_counter()
    convert = (
        convert_neurosynth_to_studyset if db == "neurosynth" else convert_neuroquery_to_studyset
    )
    ann = {"features": str(f["features"]), "vocabulary": str(f["vocabulary"])}
    ss = convert(f["coordinates"], f["metadata"], ann, tfidf=db == "neuroquery")
    ss.to_zarr(store, overwrite=True)
    return {"seconds": time.perf_counter() - t0, "n_analyses": len(ss), "n_labels": len(ss.labels)}


def _warm_up() -> None:
    """JIT-compile (or load cached) numba kernels on a tiny problem."""
    import numpy as np

    from nimare_dask import Studyset
    from nimare_dask.decode import CorrelationDecoder
    from nimare_dask.studyset import Annotations

    ss = Studyset(_nimare_resources() / "nidm_pain_studyset.json")
    vals = np.zeros((len(ss), 2), np.float32)
    vals[:8, 0] = vals[5:12, 1] = 0.5
    ss = Studyset.from_tables(
        ss.analyses[["id", "study_id", "contrast_id"]],
        ss.coordinates[["id", "x", "y", "z"]].assign(space="MNI"),
        annotations=Annotations(vals, ["a", "b"]),
    )
    CorrelationDecoder().fit(ss).transform(np.arange(ss.grid.n_voxels, dtype=float))


def _ours_fit(store: Path) -> dict:
    from nimare_dask import open_studyset
    from nimare_dask.decode import CorrelationDecoder

    _warm_up()
    ss = open_studyset(store)
    t0 = time.perf_counter()
    dec = CorrelationDecoder().fit(ss)
    elapsed = time.perf_counter() - t0
    return {
        "seconds": elapsed,
        "peak_rss_mb": _peak_rss_mb(),
        "n_features": len(dec.features_),
        "n_analyses": len(ss),
    }


def _ours_transform(store: Path) -> dict:
    from nimare_dask.decode import CorrelationDecoder

    _warm_up()
    dec = CorrelationDecoder.from_store(store)
    img = dec.maps_.get_map(dec.features_[len(dec.features_) // 2])
    t0 = time.perf_counter()
    r = dec.transform(img)
    elapsed = time.perf_counter() - t0
    return {
        "seconds": elapsed,
        "peak_rss_mb": _peak_rss_mb(),
        "n_features": len(r),
        "r_max": float(r["r"].max()),
    }


def _ours_in_memory(data: Path) -> dict:
    """NeuroQuery in memory (no store): fit all terms, then transform one map."""
    from nimare_dask.decode import CorrelationDecoder
    from nimare_dask.io import convert_neuroquery_to_studyset

    _warm_up()
    f = _files("neuroquery", data)
    t0 = time.perf_counter()
    ann = {"features": str(f["features"]), "vocabulary": str(f["vocabulary"])}
    ss = convert_neuroquery_to_studyset(f["coordinates"], f["metadata"], ann, tfidf=True)
    read_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    dec = CorrelationDecoder().fit(ss)
    fit_s = time.perf_counter() - t0
    img = dec.maps_.get_map(dec.features_[len(dec.features_) // 2])
    t0 = time.perf_counter()
    r = dec.transform(img)
    transform_s = time.perf_counter() - t0
    return {
        "seconds": fit_s,
        "read_s": read_s,
        "transform_s": transform_s,
        "peak_rss_mb": _peak_rss_mb(),
        "n_features": len(r),
        "maps_lazy": bool(dec.maps_.is_lazy),
    }


# ---------------------------------------------------------------------------- NiMARE
def _nimare_resources() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("nimare")
    if spec is None or spec.origin is None:
        raise SystemExit("NiMARE (the oracle) is not installed")
    return Path(spec.origin).parent / "resources"


def _nimare_studyset(db: str, data: Path):
    from nimare.io import convert_neurosynth_to_studyset

    f = _files(db, data)
    ann = [{"features": str(f["features"]), "vocabulary": str(f["vocabulary"])}]
    return convert_neurosynth_to_studyset(str(f["coordinates"]), str(f["metadata"]), ann)


def _decodable(ss, pairwise: bool = True) -> list[str]:
    ann = ss.annotations_df
    labels = [c for c in ann.columns if "__" in c]
    counts = (ann[labels] >= 0.001).sum(axis=0)
    keep = (counts > 0) & (counts < len(ann)) if pairwise else counts > 0
    return [lab for lab, k in zip(labels, keep, strict=True) if k]


def _nimare_fit(db: str, data: Path, k: int) -> dict:
    import numpy as np
    from nimare.decode.continuous import CorrelationDecoder

    ss = _nimare_studyset(db, data)
    features = _decodable(ss)
    # a spread of frequencies: every (len/k)-th decodable feature
    picks = [features[i] for i in np.linspace(0, len(features) - 1, k).astype(int)]
    dec = CorrelationDecoder(features=picks)
    timing = {}
    original = dec._precompute_meta_estimator_maps

    def timed(dataset):
        t = time.perf_counter()
        original(dataset)
        timing["setup"] = time.perf_counter() - t

    dec._precompute_meta_estimator_maps = timed
    t0 = time.perf_counter()
    dec.fit(ss)
    total = time.perf_counter() - t0
    per_feature = (total - timing.get("setup", 0.0)) / k
    n_all = len(features)
    return {
        "seconds": total,
        "setup_seconds": timing.get("setup", 0.0),
        "per_feature_seconds": per_feature,
        "extrapolated_seconds": total + per_feature * (n_all - k),
        "peak_rss_mb": _peak_rss_mb(),
        "n_features": n_all,
        "n_measured": k,
    }


def _nimare_transform(store: Path, k: int) -> dict:
    """NiMARE's transform on k of our stored maps, extrapolated to all of them."""
    import numpy as np
    from nimare.decode.continuous import CorrelationDecoder
    from nimare.results import MetaResult

    from nimare_dask.decode import open_feature_maps
    from nimare_dask.space import get_grid

    maps = open_feature_maps(store)
    n_all = maps.n_features
    names = maps.features[:k]
    values = np.asarray(maps.maps[:k].values, dtype=np.float32)
    grid = get_grid()
    img = grid.to_image(values[k // 2])
    dec = CorrelationDecoder()
    base_rss = _peak_rss_mb()
    dec.results_ = MetaResult(
        dec, mask=grid.mask_image(), maps={n: v for n, v in zip(names, values, strict=True)}
    )
    del values
    t0 = time.perf_counter()
    dec.transform(img)
    elapsed = time.perf_counter() - t0
    extra_mb = max(0.0, _peak_rss_mb() - base_rss)
    return {
        "seconds": elapsed,
        "extrapolated_seconds": elapsed * n_all / k,
        "peak_rss_mb": _peak_rss_mb(),
        "extrapolated_peak_rss_mb": base_rss + extra_mb * n_all / k,
        "n_features": n_all,
        "n_measured": k,
    }


# ---------------------------------------------------------------------------- driver
def _worker(args) -> dict:
    _quiet()
    what, db = args.worker
    if what == "ingest":
        return _ingest(db, args.data, args.store)
    if what == "ours-fit":
        return _ours_fit(args.store)
    if what == "ours-transform":
        return _ours_transform(args.store)
    if what == "ours-memory":
        return _ours_in_memory(args.data)
    if what == "nimare-fit":
        return _nimare_fit(db, args.data, args.nimare_features)
    if what == "nimare-transform":
        return _nimare_transform(args.store, args.nimare_maps)
    raise SystemExit(f"unknown worker {what}")


def _run(what: str, db: str, args, store: Path) -> dict:
    cmd = [
        sys.executable, __file__, "--worker", what, db, "--data", str(args.data),
        "--store", str(store), "--nimare-features", str(args.nimare_features),
        "--nimare-maps", str(args.nimare_maps),
    ]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        tail = out.stderr.strip().splitlines()[-1] if out.stderr.strip() else "failed"
        return {"error": f"{tail} (exit {out.returncode})"}
    return json.loads(out.stdout.strip().splitlines()[-1])


def _line(case: str, impl: str, r: dict, extra: str = "") -> str:
    if "error" in r:
        return f"{case:<11} {impl:<7} error: {r['error']}"
    n = r.get("n_features", "")
    return (
        f"{case:<11} {impl:<7} {n:>9} {r['seconds']:>9.2f} {r['peak_rss_mb']:>9.0f}  {extra}"
    ).rstrip()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--case", nargs="+", choices=CASES, default=list(CASES))
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--workdir", type=Path, default=None, help="where stores are built")
    parser.add_argument("--nimare-features", type=int, default=3)
    parser.add_argument("--nimare-maps", type=int, default=100)
    parser.add_argument("--no-nimare", action="store_true", help="only time nimare_dask")
    parser.add_argument("--worker", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--store", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(_worker(args)))
        return 0
    tmp = None
    if args.workdir is None:
        tmp = tempfile.TemporaryDirectory(prefix="bench_decode_")
        args.workdir = Path(tmp.name)
    args.workdir.mkdir(parents=True, exist_ok=True)
    header = f"{'case':<11} {'impl':<7} {'features':>9} {'seconds':>9} {'peak MB':>9}  notes"
    print(header)
    print("-" * len(header))
    stores = {}
    for case in args.case:
        db = "neurosynth" if case == "neurosynth" else "neuroquery"
        if case == "memory":
            ours = _run("ours-memory", db, args, args.workdir / "unused.zarr")
            if "error" in ours:
                print(_line(case, "ours", ours))
                continue
            print(
                _line(
                    case,
                    "ours",
                    ours,
                    f"in-memory studyset (read {ours['read_s']:.1f} s), fit all terms; "
                    f"transform {ours['transform_s']:.2f} s; peak = whole process; "
                    f"maps {'in a temporary store' if ours['maps_lazy'] else 'in RAM'}",
                )
            )
            continue
        store = args.workdir / f"{db}.zarr"
        if db not in stores:
            ing = _run("ingest", db, args, store)
            if "error" in ing:
                print(f"{case:<11} ingest  error: {ing['error']}")
                continue
            print(f"{db:<11} ingest  {ing['n_labels']:>9} {ing['seconds']:>9.2f}  "
                  f"{ing['n_analyses']} analyses -> {store}")  # fmt: skip
            stores[db] = store
            if case == "transform":  # needs the maps: fit first
                fit = _run("ours-fit", db, args, store)
                print(_line(db, "ours", fit, "(fit, to have maps to read)"))
        if case in ("neurosynth", "neuroquery"):
            ours = _run("ours-fit", db, args, store)
            print(_line(case, "ours", ours, "fit: all features, maps written to the store"))
            if args.no_nimare:
                continue
            ref = _run("nimare-fit", db, args, store)
            if "error" in ref:
                print(_line(case, "NiMARE", ref))
                continue
            print(
                _line(
                    case,
                    "NiMARE",
                    ref,
                    f"{ref['n_measured']} features measured: set-up {ref['setup_seconds']:.1f} s "
                    f"+ {ref['per_feature_seconds']:.2f} s/feature -> "
                    f"{ref['extrapolated_seconds']:.0f} s for all {ref['n_features']}",
                )
            )
            if "seconds" in ours:
                speed = ref["extrapolated_seconds"] / ours["seconds"]
                mem = ref["peak_rss_mb"] / ours["peak_rss_mb"]
                print(f"{case:<11} ratio   NiMARE/ours: time x{speed:.0f} (extrapolated), "
                      f"peak memory x{mem:.1f} (NiMARE measured on {ref['n_measured']} "
                      "features)")  # fmt: skip
        else:
            ours = _run("ours-transform", db, args, store)
            print(_line(case, "ours", ours, "one map vs every stored map"))
            if args.no_nimare:
                continue
            ref = _run("nimare-transform", db, args, store)
            if "error" in ref:
                print(_line(case, "NiMARE", ref))
                continue
            print(
                _line(
                    case,
                    "NiMARE",
                    ref,
                    f"{ref['n_measured']} maps measured -> {ref['extrapolated_seconds']:.1f} s, "
                    f"{ref['extrapolated_peak_rss_mb']:.0f} MB for all {ref['n_features']}",
                )
            )
            if "seconds" in ours:
                speed = ref["extrapolated_seconds"] / ours["seconds"]
                mem = ref["extrapolated_peak_rss_mb"] / ours["peak_rss_mb"]
                print(f"{case:<11} ratio   NiMARE/ours: time x{speed:.1f}, peak memory "
                      f"x{mem:.1f} (extrapolated)")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
