"""Benchmark: IBMA estimators, nimare_dask vs NiMARE 0.22.1, side by side, in one process.

Simulated image studysets (:func:`nimare_dask.generate.create_image_studyset`: beta, varcope,
t, z; studies with two analyses each, so the dependence model is active; sample sizes 20-60;
a missing slab in 20 % of the analyses) at ``--n-images`` images on the 2 mm MNI grid
(``--coarse F`` keeps every F-th voxel per axis for a quick run). For each estimator the
``fit`` is timed (images on disk, cold: both packages read the NIfTI files inside ``fit``),
best of ``--repeats``; then PermutedOLS with Monte Carlo FWE (``--n-iters``). Ratios are
NiMARE time / nimare_dask time. Peak RSS of the process is printed at the end.

Usage::

    python benchmarks/bench_ibma.py                                   # 21 and 500 images
    python benchmarks/bench_ibma.py --n-images 21 --coarse 2 --n-iters 1000
    python benchmarks/bench_ibma.py --estimators DerSimonianLaird PermutedOLS

The benchmark imports nimare (the oracle); the package itself never does.
"""

from __future__ import annotations

import argparse
import logging
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-images", type=int, nargs="+", default=[21, 500])
    parser.add_argument("--estimators", nargs="+", default=list(ESTIMATORS))
    parser.add_argument("--coarse", type=int, default=1, help="keep every F-th voxel per axis")
    parser.add_argument("--n-iters", type=int, default=10000, help="PermutedOLS FWE iterations")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-nimare-likelihood", action="store_true",
                        help="do not run NiMARE's likelihood estimators (slow)")  # fmt: skip
    args = parser.parse_args()

    import nimare.correct as ncorrect
    import nimare.meta.ibma as nibma
    from nimare.dataset import Dataset

    from nimare_dask.correct import FWECorrector
    from nimare_dask.generate import coarse_grid, create_image_studyset
    from nimare_dask.meta import ibma

    logging.disable(logging.WARNING)
    warnings.simplefilter("ignore")
    target = "mni152_2mm" if args.coarse == 1 else coarse_grid(args.coarse)
    print(f"{'images':>6} {'estimator':<26} {'nimare_dask s':>13} {'NiMARE s':>10} {'ratio':>7}")
    for n_images in args.n_images:
        truth, ss = create_image_studyset(
            n_studies=max(1, n_images // 2),
            n_analyses_per_study=2,
            sample_size=(20, 60),
            missing_fraction=0.2,
            image_types=("beta", "varcope", "t", "z"),
            out_dir=tempfile.mkdtemp(prefix="bench_ibma-"),
            seed=args.seed,
            target=target,
        )
        dset = Dataset(truth["dataset_json"], target="mni152_2mm", mask=truth["mask"])
        for name in args.estimators:
            t_ours, res = _best(
                lambda name=name, ss=ss: getattr(ibma, name)().fit(ss), args.repeats
            )
            if args.skip_nimare_likelihood and "Likelihood" in name:
                t_ref = np.nan
            else:
                t_ref, _ = _best(
                    lambda name=name, m=truth["mask"], d=dset: getattr(nibma, name)(mask=m).fit(d),
                    args.repeats,
                )
            print(f"{n_images:>6} {name:<26} {t_ours:>13.3f} {t_ref:>10.3f} {t_ref / t_ours:>7.1f}")
        est = ibma.PermutedOLS()
        res = est.fit(ss)
        t0 = time.perf_counter()
        FWECorrector(method="montecarlo", n_iters=args.n_iters).transform(res)
        t_ours = time.perf_counter() - t0
        nest = nibma.PermutedOLS(mask=truth["mask"])
        nres = nest.fit(dset)
        t0 = time.perf_counter()
        ncorrect.FWECorrector(method="montecarlo", n_iters=args.n_iters).transform(nres)
        t_ref = time.perf_counter() - t0
        label = f"PermutedOLS FWE x{args.n_iters}"
        print(f"{n_images:>6} {label:<26} {t_ours:>13.3f} {t_ref:>10.3f} {t_ref / t_ours:>7.1f}")
        print(f"{'':>6} ({res.grid.n_voxels} voxels)")
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    print(f"peak RSS of the process (both packages): {rss:.2f} GB")


if __name__ == "__main__":
    main()
