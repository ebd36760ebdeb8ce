"""Benchmark: IBMA estimators, nimare_dask vs NiMARE 0.22.1, side by side, in one process.

Simulated image studysets (:func:`nimare_dask.generate.create_image_studyset`: beta, varcope,
t, z; studies with two analyses each, so the dependence model is active; sample sizes 20-60;
a missing slab in 20 % of the analyses) at ``--n-images`` images on the 2 mm MNI grid
(``--coarse F`` keeps every F-th voxel per axis for a quick run). For each estimator the
``fit`` is timed (images on disk, cold: both packages read the NIfTI files inside ``fit``),
best of ``--repeats``; then PermutedOLS with Monte Carlo FWE (``--n-iters``). Ratios are
NiMARE time / nimare_dask time.

Each size runs nimare_dask first, then NiMARE; the peak RSS printed after nimare_dask's part is
nimare_dask's own (for the first size; ``--no-nimare`` to measure ours alone). Where NiMARE would
take too long it runs on less and the time is **extrapolated linearly** (and marked ``~``):
its FWE timed at ``--nimare-iters`` and a quarter of that (the line through both timings,
fixed cost plus cost per iteration, evaluated at ``--n-iters``), its likelihood estimators on
every ``--nimare-likelihood-coarse``-th voxel per axis of the mask (scaled by voxel count), and
only ``--nimare-estimators``.

Usage::

    python benchmarks/bench_ibma.py                                   # 21 and 500 images
    python benchmarks/bench_ibma.py --n-images 21 --coarse 2 --n-iters 1000
    python benchmarks/bench_ibma.py --estimators DerSimonianLaird PermutedOLS
    python benchmarks/bench_ibma.py --n-images 21 --n-iters 10000 --nimare-iters 500
    python benchmarks/bench_ibma.py --n-images 2000 --no-nimare --estimators PermutedOLS

The benchmark imports nimare (the oracle); the package itself never does.
"""

from __future__ import annotations

import argparse
import logging
import os
import resource
import tempfile
import time
import warnings

import numpy as np

ESTIMATORS = (
    "Fishers",
    "Stouffers",
    "WeightedLeastSquares",
    "DerSimonianLaird",
    "Hedges",
    "FixedEffectsHedges",
    "VarianceBasedLikelihood",
    "SampleSizeBasedLikelihood",
    "PermutedOLS",
)


def _best(fn, repeats: int) -> tuple[float, object]:
    best, out = np.inf, None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def _rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def _sub_mask(mask_path: str, factor: int, out_path: str) -> tuple[str, float]:
    """The mask keeping every ``factor``-th voxel per axis, and the kept fraction."""
    import nibabel as nib

    img = nib.load(mask_path)
    full = np.asarray(img.dataobj) > 0
    keep = np.zeros_like(full)
    keep[::factor, ::factor, ::factor] = full[::factor, ::factor, ::factor]
    nib.save(nib.Nifti1Image(keep.astype(np.uint8), img.affine), out_path)
    return out_path, keep.sum() / full.sum()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-images", type=int, nargs="+", default=[21, 500])
    parser.add_argument("--estimators", nargs="+", default=list(ESTIMATORS))
    parser.add_argument("--coarse", type=int, default=1, help="keep every F-th voxel per axis")
    parser.add_argument("--n-iters", type=int, default=10000, help="PermutedOLS FWE iterations")
    parser.add_argument("--nimare-iters", type=int, default=None,
                        help="NiMARE FWE iterations (default --n-iters), extrapolated")  # fmt: skip
    parser.add_argument("--nimare-estimators", nargs="+", default=None,
                        help="estimators NiMARE runs (default: all of --estimators)")  # fmt: skip
    parser.add_argument("--nimare-likelihood-coarse", type=int, default=1,
                        help="NiMARE likelihood fits on every F-th voxel, extrapolated")  # fmt: skip
    parser.add_argument("--no-nimare", action="store_true", help="time nimare_dask only")
    parser.add_argument("--n-cores", type=int, default=1, help="threads for the FWE null")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-nimare-likelihood", action="store_true",
                        help="do not run NiMARE's likelihood estimators (slow)")  # fmt: skip
    args = parser.parse_args()

    from nimare_dask.correct import FWECorrector
    from nimare_dask.generate import coarse_grid, create_image_studyset
    from nimare_dask.meta import ibma

    logging.disable(logging.WARNING)
    warnings.simplefilter("ignore")
    target = "mni152_2mm" if args.coarse == 1 else coarse_grid(args.coarse)
    threads = {k: os.environ.get(k, "unset") for k in ("OMP_NUM_THREADS", "NUMBA_NUM_THREADS")}
    print(f"threads: {threads}; FWE n_cores={args.n_cores}; load avg {os.getloadavg()}")
    nimare_ests = args.nimare_estimators or args.estimators
    n_ref_iters = args.nimare_iters or args.n_iters
    fwe_label = f"PermutedOLS FWE x{args.n_iters}"
    for n_images in args.n_images:
        t0 = time.perf_counter()
        types = ("beta",) if args.estimators == ["PermutedOLS"] else ("beta", "varcope", "t", "z")
        truth, ss = create_image_studyset(
            n_studies=max(1, n_images // 2),
            n_analyses_per_study=2,
            sample_size=(20, 60),
            missing_fraction=0.2,
            image_types=types,
            out_dir=tempfile.mkdtemp(prefix="bench_ibma-"),
            seed=args.seed,
            target=target,
        )
        print(f"[{n_images} images simulated in {time.perf_counter() - t0:.0f} s]")
        ours: dict[str, float] = {}
        n_vox = None
        for name in args.estimators:
            t, res = _best(lambda name=name, ss=ss: getattr(ibma, name)().fit(ss), args.repeats)
            ours[name], n_vox = t, res.grid.n_voxels
            print(f"[nimare_dask {name}: {t:.3f} s]", flush=True)
        if "PermutedOLS" in args.estimators:
            res = ibma.PermutedOLS(n_jobs=args.n_cores).fit(ss)
            t0 = time.perf_counter()
            FWECorrector(method="montecarlo", n_iters=args.n_iters).transform(res)
            ours[fwe_label] = time.perf_counter() - t0
            print(f"[nimare_dask {fwe_label}: {ours[fwe_label]:.3f} s]", flush=True)
        print(f"[nimare_dask peak RSS after {n_images} images: {_rss_gb():.2f} GB]", flush=True)
        ref: dict[str, tuple[float, str]] = {}
        if not args.no_nimare:
            ref = _run_nimare(args, truth, nimare_ests, n_ref_iters, fwe_label)
        print(
            f"{'images':>6} {'estimator':<26} {'nimare_dask s':>13} {'NiMARE s':>11} {'ratio':>7}"
        )
        for name, t in ours.items():
            t_ref, note = ref.get(name, (np.nan, ""))
            print(f"{n_images:>6} {name:<26} {t:>13.3f} {note:>1}{t_ref:>10.3f} {t_ref / t:>7.1f}")
        print(f"{'':>6} ({n_vox} voxels; {'~' if ref else ''} = extrapolated, see --help)")
    print(f"peak RSS of the process ({'nimare_dask only' if args.no_nimare else 'both'}): "
          f"{_rss_gb():.2f} GB")  # fmt: skip


def _run_nimare(args, truth, estimators, n_ref_iters: int, fwe_label: str) -> dict:
    """NiMARE's times (seconds, '~' when extrapolated) for the same studyset."""
    import nimare.correct as ncorrect
    import nimare.meta.ibma as nibma
    from nimare.dataset import Dataset

    dset = Dataset(truth["dataset_json"], target="mni152_2mm", mask=truth["mask"])
    out: dict[str, tuple[float, str]] = {}
    for name in estimators:
        if name not in ESTIMATORS:
            continue
        mask, scale = truth["mask"], 1.0
        if "Likelihood" in name:
            if args.skip_nimare_likelihood:
                continue
            if args.nimare_likelihood_coarse > 1:
                mask, frac = _sub_mask(
                    truth["mask"],
                    args.nimare_likelihood_coarse,
                    tempfile.mktemp(suffix="_submask.nii.gz"),
                )
                scale = 1.0 / frac
        t, _ = _best(
            lambda name=name, m=mask, d=dset: getattr(nibma, name)(mask=m).fit(d), args.repeats
        )
        out[name] = (t * scale, "~" if scale != 1.0 else "")
    if "PermutedOLS" in estimators:
        nres = nibma.PermutedOLS(mask=truth["mask"]).fit(dset)
        counts = sorted({max(1, n_ref_iters // 4), n_ref_iters})
        times = []
        for n in counts:
            t0 = time.perf_counter()
            ncorrect.FWECorrector(method="montecarlo", n_iters=n).transform(nres)
            times.append(time.perf_counter() - t0)
        if counts[-1] == args.n_iters:
            out[fwe_label] = (times[-1], "")
        else:  # a line through the two timings: fixed cost + cost per iteration
            slope = (times[-1] - times[0]) / max(counts[-1] - counts[0], 1)
            slope = slope if len(counts) > 1 else times[0] / counts[0]
            out[fwe_label] = (times[-1] + slope * (args.n_iters - counts[-1]), "~")
            print(
                f"[NiMARE FWE timed at {counts} iterations: {[round(t, 3) for t in times]} s; "
                f"extrapolated linearly to {args.n_iters}]"
            )
    return out


if __name__ == "__main__":
    main()
