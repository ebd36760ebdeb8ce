"""Benchmark: CBMA estimators, nimare_dask vs NiMARE 0.22.1, side by side.

Cases (each package runs in its own fresh subprocess, so peak RSS is per run):

* ``pain``: ALE (approximate null) on the 21 NIDM pain studies (sample-size kernels).
* ``nback``: ALE (approximate null, FWHM 10 mm: the release has almost no sample sizes) on the
  500 n-back analyses of NiMARE's ``nback_vs_flanker_studyset_2026-07`` parquet release
  (needs pyarrow; our Studyset is built from NiMARE's frames, so both see the same foci).
* ``neurosynth``: MKDAChi2 on the whole Neurosynth v7 database (14,371 studies), studies with
  LDA50 topic weight >= 0.05 versus the rest (``--topic``, default the working-memory topic).

Timed: ``fit`` only (loading excluded), after a warm-up fit on a few studies (numba JIT caches,
NiMARE's too); for pain, whose fits take well under a second, after a full warm-up fit and as the
best of three fits, for both packages. Usage::

    python benchmarks/bench_cbma.py                      # all cases
    python benchmarks/bench_cbma.py --case pain nback
    python benchmarks/bench_cbma.py --data ../shared/data --topic 9_memory_working_wm

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
CASES = ("pain", "nback", "neurosynth")


def _nimare_resources() -> Path:
    """NiMARE's bundled data, located without importing nimare (it would inflate our RSS)."""
    import importlib.util

    spec = importlib.util.find_spec("nimare")
    if spec is None or spec.origin is None:
        raise SystemExit("NiMARE (the oracle) is not installed")
    return Path(spec.origin).parent / "resources"


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # kB on Linux


# ---------------------------------------------------------------------------- inputs
def _pain(impl: str):
    path = _nimare_resources() / "nidm_pain_studyset.json"
    if impl == "ours":
        from nimare_dask import Studyset

        return Studyset(path)
    from nimare.studyset import Studyset

    return Studyset(str(path))


def _nback_nimare():
    from nimare.studyset import Studyset as NiMAREStudyset

    nss = NiMAREStudyset(str(_nimare_resources() / "nback_vs_flanker_studyset_2026-07"))
    meta = nss.metadata
    return nss.slice(sorted(meta.loc[meta["comparison_task"] == "n-back", "id"]))


def _prepare_nback(folder: Path) -> Path:
    """Our copy of the 500 n-back analyses, built from NiMARE's frames (same foci), as NIMADS.

    Runs in its own process, so that the timed worker does not import nimare.
    """
    from nimare_dask import Studyset

    coords = _nback_nimare().coordinates
    analyses = coords[["id", "study_id", "contrast_id"]].drop_duplicates("id")
    # NiMARE's frames are already in the target (MNI) space
    points = coords[["id", "x", "y", "z"]].assign(space="MNI")
    ss = Studyset.from_tables(analyses, points, source_name="nback")
    return ss.to_nimads(folder / "nback500.json")


def _nback(impl: str, prepared: Path | None):
    if impl == "nimare":
        return _nback_nimare()
    from nimare_dask import Studyset

    return Studyset(prepared)


def _neurosynth(impl: str, data: Path, topic: str, threshold: float = 0.05):
    folder = data / "neurosynth-v7"
    prefix = "data-neurosynth_version-7_"
    coords = folder / f"{prefix}coordinates.tsv.gz"
    meta = folder / f"{prefix}metadata.tsv.gz"
    features = folder / f"{prefix}vocab-LDA50_source-abstract_type-weight_features.npz"
    vocab = folder / f"{prefix}vocab-LDA50_vocabulary.txt"
    if impl == "ours":
        from nimare_dask.io import convert_neurosynth_to_studyset
    else:
        from nimare.io import convert_neurosynth_to_studyset
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ss = convert_neurosynth_to_studyset(
            str(coords),
            str(meta),
            annotations_files=[{"features": str(features), "vocabulary": str(vocab)}],
        )
    labels = [lab for lab in ss.get_labels() if lab.endswith("__" + topic)]
    if len(labels) != 1:
        raise SystemExit(f"topic {topic!r} not found among the LDA50 labels")
    selected = sorted(ss.get_studies_by_label(labels, label_threshold=threshold))
    rest = sorted(set(ss.ids) - set(selected))
    return ss.slice(selected), ss.slice(rest)


# ---------------------------------------------------------------------------- worker
def _worker(case: str, impl: str, data: Path, topic: str, prepared: Path | None) -> dict:
    logging.disable(logging.WARNING)
    warnings.simplefilter("ignore")
    if impl == "ours":
        from nimare_dask.meta.cbma import ALE, MKDAChi2
    else:
        from nimare.meta.cbma import ALE, MKDAChi2
    if case == "pain":
        ss = _pain(impl)
        make = ALE
    elif case == "nback":
        ss = _nback(impl, prepared)

        def make():
            return ALE(kernel__fwhm=10)

    else:
        ss = _neurosynth(impl, data, topic)
        make = MKDAChi2
    pair = isinstance(ss, tuple)
    # warm-up fits (JIT compilation, kernel caches; NiMARE's too), then the timed fits: the
    # best of three for inputs fitted in well under a second (pain), one otherwise
    if pair:
        few = [s.slice(list(s.ids)[:5]) for s in ss]
        make().fit(*few)
    else:
        make().fit(ss.slice(list(ss.ids)[:5]))
    repeats = 3 if case == "pain" else 1
    if repeats > 1:
        make().fit(ss)
    elapsed = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = make().fit(*ss) if pair else make().fit(ss)
        elapsed = min(elapsed, time.perf_counter() - t0)
    name = "z_desc-association" if pair else "z"
    zmax = float(abs(result.get_map(name, return_type="array")).max())
    n = [len(s) for s in ss] if pair else [len(ss)]
    return {"seconds": elapsed, "peak_rss_mb": _peak_rss_mb(), "n_analyses": n, "zmax": zmax}


def _run(case: str, impl: str, data: Path, topic: str, prepared: Path | None) -> dict:
    cmd = [sys.executable, __file__, "--worker", case, impl, "--data", str(data), "--topic", topic]
    if prepared is not None:
        cmd += ["--prepared", str(prepared)]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        return {"error": out.stderr.strip().splitlines()[-1] if out.stderr else "failed"}
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--case", nargs="+", choices=CASES, default=list(CASES))
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--topic", default="9_memory_working_wm")
    parser.add_argument("--worker", nargs=2, metavar=("CASE", "IMPL"), help=argparse.SUPPRESS)
    parser.add_argument("--prepared", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--prepare", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(_worker(*args.worker, args.data, args.topic, args.prepared)))
        return 0
    if args.prepare:
        logging.disable(logging.WARNING)
        warnings.simplefilter("ignore")
        print(_prepare_nback(args.prepare))
        return 0
    tmp = tempfile.TemporaryDirectory(prefix="bench_cbma_")
    header = f"{'case':<11} {'impl':<7} {'n':>13} {'fit s':>8} {'peak MB':>8} {'|z| max':>8}"
    print(header)
    print("-" * len(header))
    for case in args.case:
        if case == "neurosynth" and not (args.data / "neurosynth-v7").exists():
            print(f"{case:<11} skipped: {args.data / 'neurosynth-v7'} not found")
            continue
        prepared = None
        if case == "nback":
            out = subprocess.run(
                [sys.executable, __file__, "--prepare", tmp.name], capture_output=True, text=True
            )
            if out.returncode != 0:
                print(f"{case:<11} preparation failed: {out.stderr.strip()[-300:]}")
                continue
            prepared = Path(out.stdout.strip().splitlines()[-1])
        res = {
            impl: _run(case, impl, args.data, args.topic, prepared) for impl in ("ours", "nimare")
        }
        for impl, r in res.items():
            if "error" in r:
                print(f"{case:<11} {impl:<7} error: {r['error']}")
                continue
            n = "/".join(str(k) for k in r["n_analyses"])
            print(
                f"{case:<11} {impl:<7} {n:>13} {r['seconds']:>8.3f} {r['peak_rss_mb']:>8.0f} "
                f"{r['zmax']:>8.3f}"
            )
        if all("seconds" in r for r in res.values()):
            speed = res["nimare"]["seconds"] / res["ours"]["seconds"]
            mem = res["nimare"]["peak_rss_mb"] / res["ours"]["peak_rss_mb"]
            print(f"{case:<11} ratio   NiMARE/ours: time x{speed:.1f}, peak memory x{mem:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
