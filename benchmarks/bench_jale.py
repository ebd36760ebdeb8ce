"""Benchmark: ALE with voxel-, cluster- and TFCE-level Monte Carlo FWE, nimare_dask vs JALE 0.2.10.

Issue 14's benchmark: a main-effect ALE of the pain studyset (``tests/data/jale/pain_sheet.csv``,
JALE's experiment-sheet form of NiMARE's 21 NIDM pain studies) with vFWE, cFWE (cluster-forming
p < 0.001) and TFCE FWE from random-foci Monte Carlo nulls, JALE's predictive cutoffs **off**.

* **JALE** runs in its own environment (``--jale-python``, e.g. a venv made with
  ``python3 -m venv /work/jale-venv && /work/jale-venv/bin/pip install jale==0.2.10``; never
  installed next to nimare_dask). This file is run there as a worker (``--_jale-worker``; it then
  imports only JALE and the standard library). The worker loads the project as ``jale`` does
  (``load_config`` -> ``load_dataframes`` -> ``compile_experiments(["+all"])``) and calls
  ``jale.core.analyses.main_effect.main_effect`` with ``tfce_enabled=True``,
  ``cutoff_predict_enabled=False``, ``gm_masking=True``, ``nprocesses=--n-cores``; the per-
  experiment contribution step that ``jale`` runs afterwards is not timed (no counterpart here).
  JALE's Monte Carlo phase (its ``joblib.Parallel`` call) is timed apart, so a run with fewer
  iterations (``--jale-iters``) is **extrapolated linearly** to ``--iters``: total = fixed part +
  Monte Carlo part x iters / jale-iters (printed as such). JALE draws unseeded random foci.
* **nimare_dask** (a fresh subprocess): ``read_jale_sheet`` + ``ALE`` +
  ``FWECorrector("montecarlo", n_iters=--iters, tfce=True, voxel_thresh=0.001)`` with
  ``n_cores=--n-cores``, timed after a warm-up on four studies (numba caches; its time is
  printed too). ``--our-mask jale`` (default, the fair comparison): our grid is JALE's grey-
  matter mask (``Grey10.nii`` > 0.1, the voxels JALE samples random foci from and keeps in its
  ALE map), ``mask_coverage="brain"`` on it; ``--our-mask brain``: our 2 mm MNI brain mask with
  ``mask_coverage="gm"`` (MNI152 GM probability > 0.1), our sets compared inside JALE's mask.

Agreement: Dice of the vFWE-, cFWE- and TFCE-significant voxel sets (JALE's thresholded maps
``Results/MainEffect/Volumes/<name>_{vFWE,cFWE,tfce}.nii``, ours ``p < 0.05`` of the FWE maps),
the number of clusters (6-connectivity, as JALE's ``ndimage.label``) and their peaks (max z),
each JALE peak matched to our nearest, and the three thresholds (95th percentiles of the nulls).

Usage::

    python benchmarks/bench_jale.py --jale-python /work/jale-venv/bin/python --jale-iters 300

The JSON record goes to ``--out`` (default ``benchmarks/results/bench_jale.json``).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SHEET = HERE.parent / "tests" / "data" / "jale" / "pain_sheet.csv"
NAME = "pain_all"
SUFFIX = "_corr-FWE_method-montecarlo"
OUR_SIG = {
    "vFWE": f"p_level-voxel{SUFFIX}",
    "cFWE": f"p_desc-size_level-cluster{SUFFIX}",
    "TFCE": f"p_desc-tfce_level-voxel{SUFFIX}",
}
OUR_NULL = {
    "vFWE": "values_level-voxel_corr-fwe_method-montecarlo",
    "cFWE": "values_desc-size_level-cluster_corr-fwe_method-montecarlo",
    "TFCE": "values_desc-tfce_level-voxel_corr-fwe_method-montecarlo",
}
JALE_VOL = {"vFWE": "vFWE", "cFWE": "cFWE", "TFCE": "tfce"}


def _cpu_children() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def _cpu_self() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def _uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


# ---------------------------------------------------------------------------- JALE side
_CONFIG = """project:
  analysis_info: "analysis_info.csv"
  experiment_info: "experiment_info.csv"
parameters:
  pool_experiments: False
  tfce_enabled: True
  gm_masking: True
  bin_steps: 0.0001
  cutoff_predict_enabled: False
  significance_threshold: 0.05
  cluster_forming_threshold: 0.001
  monte_carlo_iterations: {iters}
  subsample_n: 2500
  contrast_permutations: 10000
  contrast_correction_method: "cFWE"
  difference_iterations: 1000
  nprocesses: {n_cores}
clustering_parameters:
  max_clusters: 10
  subsample_fraction: 0.9
  sampling_iterations: 1000
  null_iterations: 5000
  correlation_type: "spearman"
  clustering_method: "hierarchical"
  linkage_method: "complete"
  use_pooled_std: False
"""


def write_jale_project(folder: Path, iters: int, n_cores: int) -> Path:
    """A fresh JALE project: the pain sheet, one ``M`` row over ``+all``, predictive cutoffs off."""
    if folder.exists():
        shutil.rmtree(folder)  # JALE reuses any result it finds: start clean
    folder.mkdir(parents=True)
    shutil.copy(SHEET, folder / "experiment_info.csv")
    (folder / "analysis_info.csv").write_text(f"M,{NAME},+all\n")
    config = folder / "config.yml"
    config.write_text(_CONFIG.format(iters=iters, n_cores=n_cores))
    return config


def jale_worker(config: Path) -> dict:
    """Run in JALE's environment: its main effect with the Monte Carlo phase timed apart."""
    import logging
    import pickle

    import jale.core.analyses.main_effect as me
    import numpy as np
    from jale.core.utils.compile_experiments import compile_experiments
    from jale.core.utils.input import check_params, load_config, load_dataframes
    from joblib.externals.loky import get_reusable_executor

    logging.basicConfig(level=logging.WARNING)
    t0, c0 = time.perf_counter(), _cpu_self() + _cpu_children()
    mc = {}

    class TimedParallel(me.Parallel):
        """JALE's ``joblib.Parallel`` of Monte Carlo iterations, timed (wall and CPU, workers
        included: they are shut down, hence reaped, before the CPU clock is read)."""

        def __call__(self, iterable):
            w, c = time.perf_counter(), _cpu_self() + _cpu_children()
            out = super().__call__(iterable)
            get_reusable_executor().shutdown(wait=True)
            mc["wall_s"] = time.perf_counter() - w
            mc["cpu_s"] = _cpu_self() + _cpu_children() - c
            return out

    me.Parallel = TimedParallel
    project = config.parent
    cfg = load_config(config)
    params = check_params(cfg["parameters"])
    exp_all_df, tasks, _ = load_dataframes(project, cfg)
    exp_idxs, _, _ = compile_experiments(["+all"], tasks)
    exp_df = exp_all_df.loc[exp_idxs].reset_index(drop=True)
    me.main_effect(
        project,
        exp_df,
        NAME,
        tfce_enabled=params["tfce_enabled"],
        cutoff_predict_enabled=params["cutoff_predict_enabled"],
        gm_masking=params["gm_masking"],
        bin_steps=params["bin_steps"],
        cluster_forming_threshold=params["cluster_forming_threshold"],
        monte_carlo_iterations=params["monte_carlo_iterations"],
        nprocesses=params["nprocesses"],
    )
    get_reusable_executor().shutdown(wait=True)
    total_wall = time.perf_counter() - t0
    total_cpu = _cpu_self() + _cpu_children() - c0
    res = project / "Results" / "MainEffect"
    with open(res / "NullDistributions" / f"{NAME}_montecarlo.pickle", "rb") as f:
        vfwe_null, cfwe_null, tfce_null = pickle.load(f)
    return {
        "n_experiments": int(exp_df.shape[0]),
        "n_foci": int(exp_df.NumberOfFoci.sum()),
        "iters": int(params["monte_carlo_iterations"]),
        "total_wall_s": total_wall,
        "total_cpu_s": total_cpu,
        "mc_wall_s": mc["wall_s"],
        "mc_cpu_s": mc["cpu_s"],
        "thresholds": {
            "vFWE": float(np.percentile(vfwe_null, 95)),
            "cFWE": float(np.percentile(cfwe_null, 95)),
            "TFCE": float(np.percentile(tfce_null, 95)),
        },
        "volumes": str(res / "Volumes"),
    }


def jale_mask_path(jale_python: str) -> Path:
    code = "from importlib.resources import files; print(files('jale.assets.mask') / 'Grey10.nii')"
    out = subprocess.run([jale_python, "-c", code], capture_output=True, text=True, check=True)
    return Path(out.stdout.strip())


# ---------------------------------------------------------------------------- our side
def _jale_grid(mask_path: Path):
    import nibabel as nib
    import numpy as np

    from nimare_dask.space import Grid

    img = nib.load(str(mask_path))
    return Grid(mask=np.asarray(img.dataobj) > 0.1, affine=img.affine, name="jale-grey10")


def ours_worker(iters: int, n_cores: int, our_mask: str, mask_path: Path, out_dir: Path) -> dict:
    """Fit + FWE (voxel, cluster, TFCE) in this fresh process; maps written as NIfTI."""
    import logging
    import warnings

    import numpy as np

    from nimare_dask.correct import FWECorrector
    from nimare_dask.io.jale import read_jale_sheet
    from nimare_dask.meta.cbma import ALE

    logging.disable(logging.WARNING)
    warnings.simplefilter("ignore")
    if our_mask == "jale":
        target, coverage = _jale_grid(mask_path), "brain"
    else:
        target, coverage = "mni152_2mm", "gm"

    def run(n: int, ss):
        est = ALE(mask_coverage=coverage, random_state=1, n_cores=n_cores, progress=False)
        res = est.fit(ss)
        corr = FWECorrector("montecarlo", n_iters=n, tfce=True, voxel_thresh=0.001)
        return corr.transform(res)

    w = time.perf_counter()
    few = read_jale_sheet(SHEET, target=target)
    run(2, few.slice(list(few.ids)[:4]))  # warm-up: numba caches, imports
    warm = time.perf_counter() - w

    t0, c0 = time.perf_counter(), time.process_time()
    ss = read_jale_sheet(SHEET, target=target)
    res = run(iters, ss)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in ("stat", "z", *OUR_SIG.values(), f"stat_desc-tfce{SUFFIX}"):
        res.get_map(name).to_filename(str(out_dir / f"{name}.nii.gz"))
    thresholds = {
        k: float(np.percentile(res.null_distributions[v], 95)) for k, v in OUR_NULL.items()
    }
    return {
        "n_experiments": len(ss),
        "n_foci": int(ss.foci_counts().sum()),
        "iters": iters,
        "warmup_wall_s": warm,
        "total_wall_s": wall,
        "total_cpu_s": cpu,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
        "thresholds": thresholds,
        "mask": our_mask,
        "n_voxels": int(res.grid.n_voxels),
        "maps": str(out_dir),
    }


# ---------------------------------------------------------------------------- agreement
def _clusters(sig, z, affine) -> list[dict]:
    """Clusters of a boolean volume (6-connectivity, as JALE's ``ndimage.label``), largest first,
    with the mm coordinate of each one's maximum z."""
    import numpy as np
    from scipy import ndimage

    labels, n = ndimage.label(sig)
    out = []
    for lab in range(1, n + 1):
        idx = np.argwhere(labels == lab)
        peak = idx[np.argmax(z[tuple(idx.T)])]
        xyz = affine[:3, :3] @ peak + affine[:3, 3]
        out.append({"size": int(len(idx)), "peak_mm": [float(v) for v in xyz]})
    return sorted(out, key=lambda c: -c["size"])


def agreement(jale_volumes: Path, ours_maps: Path, mask_path: Path) -> dict:
    """Dice, clusters and peaks of JALE's and our significant sets, inside JALE's GM mask."""
    import nibabel as nib
    import numpy as np
    from nibabel.orientations import io_orientation, ornt_transform

    gm_img = nib.load(str(mask_path))
    gm = np.asarray(gm_img.dataobj) > 0.1
    affine = gm_img.affine

    def jale_vol(stem: str):
        for name in (f"{NAME}_{stem}.nii", f"{NAME}_{stem}_empty.nii"):
            if (jale_volumes / name).exists():
                return np.asarray(nib.load(str(jale_volumes / name)).dataobj, dtype=np.float64)
        raise FileNotFoundError(f"JALE wrote no {NAME}_{stem}.nii in {jale_volumes}")

    def our_vol(name: str):
        img = nib.load(str(ours_maps / f"{name}.nii.gz"))
        # our MNI mask is RAS, JALE's grid LAS: the same voxels, axes flipped (exact)
        img = img.as_reoriented(ornt_transform(io_orientation(img.affine), io_orientation(affine)))
        if img.shape != gm.shape or not np.allclose(img.affine, affine):
            raise ValueError(f"our {name} map is not on JALE's grid: {img.shape} {img.affine}")
        return np.asarray(img.dataobj, dtype=np.float64), np.asarray(img.dataobj) != 0

    z_j = jale_vol("z")
    z_o, _ = our_vol("z")
    out = {
        "z_corr_in_gm": float(np.corrcoef(z_j[gm], z_o[gm])[0, 1]),
        "ale_corr_in_gm": float(np.corrcoef(jale_vol("ale")[gm], our_vol("stat")[0][gm])[0, 1]),
    }
    for kind, name in OUR_SIG.items():
        sig_j = (jale_vol(JALE_VOL[kind]) != 0) & gm
        p, inside = our_vol(name)
        sig_o = inside & (p < 0.05) & gm  # p maps are 0 outside our mask: `inside` guards it
        inter = int((sig_j & sig_o).sum())
        tot = int(sig_j.sum() + sig_o.sum())
        cl_j, cl_o = _clusters(sig_j, z_j, affine), _clusters(sig_o, z_o, affine)
        match = []
        for c in cl_j:
            if cl_o:
                d = [float(np.linalg.norm(np.subtract(c["peak_mm"], o["peak_mm"]))) for o in cl_o]
                match.append(min(d))
        out[kind] = {
            "dice": 2 * inter / tot if tot else 1.0,
            "n_voxels_jale": int(sig_j.sum()),
            "n_voxels_ours": int(sig_o.sum()),
            "n_clusters_jale": len(cl_j),
            "n_clusters_ours": len(cl_o),
            "clusters_jale": cl_j,
            "clusters_ours": cl_o,
            "peak_distance_mm": match,
        }
    return out


# ---------------------------------------------------------------------------- driver
def _run_json(cmd: list[str], label: str, log: Path) -> tuple[dict, float, float]:
    """Run a worker; return its JSON (last stdout line), wall and CPU (its process tree)."""
    c0, w0 = _cpu_children(), time.perf_counter()
    with open(log, "w") as err:
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=err, text=True)
    wall, cpu = time.perf_counter() - w0, _cpu_children() - c0
    if proc.returncode != 0:
        raise SystemExit(f"{label} worker failed (rc {proc.returncode}); see {log}")
    return json.loads(proc.stdout.strip().splitlines()[-1]), wall, cpu


def _print_report(rec: dict) -> None:
    o, j, a = rec["ours"], rec["jale"], rec["agreement"]
    n, nj = o["iters"], j["iters"]
    print(f"pain studyset: {o['n_experiments']} experiments, {o['n_foci']} foci; ALE + vFWE, cFWE")
    print(f"(cluster-forming p < 0.001), TFCE; {rec['n_cores']} cores each; mask: {o['mask']}")
    print(f"load before: {rec['uptime_before']}")
    print(f"load after:  {rec['uptime_after']}")
    print(
        f"ours  {n:>6} iters: wall {o['total_wall_s']:8.1f} s  CPU {o['total_cpu_s']:8.1f} s"
        f"  (warm-up {o['warmup_wall_s']:.1f} s apart; peak RSS {o['peak_rss_mb']:.0f} MB)"
    )
    print(
        f"JALE  {nj:>6} iters: wall {j['total_wall_s']:8.1f} s  CPU {j['total_cpu_s']:8.1f} s"
        f"  (Monte Carlo {j['mc_wall_s']:.1f} s wall, {j['mc_cpu_s']:.1f} s CPU; process tree "
        f"{j['tree_wall_s']:.1f} s wall with start-up)"
    )
    e = rec["jale_extrapolated"]
    tag = "EXTRAPOLATED linearly from" if nj != n else "measured at"
    print(
        f"JALE  {n:>6} iters: wall {e['wall_s']:8.1f} s  CPU {e['cpu_s']:8.1f} s  ({tag} "
        f"{nj} iterations: fixed part + Monte Carlo part x {n}/{nj})"
    )
    print(f"ratio (JALE / ours): wall {rec['ratio_wall']:.1f}x, CPU {rec['ratio_cpu']:.1f}x")
    print(f"agreement inside JALE's GM mask: corr(z) {a['z_corr_in_gm']:.4f}, "
          f"corr(ALE) {a['ale_corr_in_gm']:.4f}")  # fmt: skip
    for kind in OUR_SIG:
        k = a[kind]
        dist = ", ".join(f"{d:.1f}" for d in k["peak_distance_mm"])
        print(
            f"  {kind:5} Dice {k['dice']:.3f}  voxels JALE {k['n_voxels_jale']} / ours "
            f"{k['n_voxels_ours']}  clusters {k['n_clusters_jale']} / {k['n_clusters_ours']}"
            f"  threshold JALE {j['thresholds'][kind]:.6g} / ours {o['thresholds'][kind]:.6g}"
            f"  peak distances (mm) [{dist}]"
        )
    for kind in OUR_SIG:
        for who in ("jale", "ours"):
            cl = a[kind][f"clusters_{who}"]
            txt = "; ".join(f"{c['size']} @ {tuple(round(v) for v in c['peak_mm'])}" for c in cl)
            print(f"  {kind:5} {who:4} clusters: {txt}")


def main(argv: list[str] | None = None) -> dict | None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--jale-python", help="python of JALE's own environment")
    ap.add_argument("--iters", type=int, default=10000, help="our iterations (target of both)")
    ap.add_argument("--jale-iters", type=int, default=None, help="JALE's (default --iters)")
    ap.add_argument("--n-cores", type=int, default=2, help="our threads = JALE's nprocesses")
    ap.add_argument("--our-mask", choices=("jale", "brain"), default="jale")
    ap.add_argument("--work", type=Path, default=HERE / ".cache" / "jale")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "bench_jale.json")
    ap.add_argument("--_jale-worker", dest="jale_worker", type=Path, help=argparse.SUPPRESS)
    ap.add_argument(
        "--_ours-worker", dest="ours_worker", action="store_true", help=argparse.SUPPRESS
    )
    ap.add_argument("--_mask", dest="mask", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.jale_worker is not None:
        print(json.dumps(jale_worker(args.jale_worker)))
        return None
    if args.ours_worker:
        out = ours_worker(args.iters, args.n_cores, args.our_mask, args.mask, args.work / "ours")
        print(json.dumps(out))
        return None
    if not args.jale_python:
        ap.error("--jale-python (the python of JALE's own environment) is required")
    jale_iters = args.jale_iters or args.iters
    args.work.mkdir(parents=True, exist_ok=True)
    env_note = {k: os.environ.get(k) for k in ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS")}
    mask_path = jale_mask_path(args.jale_python)
    rec: dict = {"n_cores": args.n_cores, "env": env_note, "uptime_before": _uptime()}
    print(f"load before: {rec['uptime_before']}", flush=True)

    me = Path(__file__).resolve()
    cmd = [sys.executable, str(me), "--_ours-worker", "--iters", str(args.iters),
           "--n-cores", str(args.n_cores), "--our-mask", args.our_mask, "--work", str(args.work),
           "--_mask", str(mask_path)]  # fmt: skip
    ours, ow, oc = _run_json(cmd, "nimare_dask", args.work / "ours.log")
    ours.update(tree_wall_s=ow, tree_cpu_s=oc)
    print(f"ours done: {ours['total_wall_s']:.1f} s wall; {_uptime()}", flush=True)

    config = write_jale_project(args.work / "jale_project", jale_iters, args.n_cores)
    cmd = [args.jale_python, str(me), "--_jale-worker", str(config)]
    jale, jw, jc = _run_json(cmd, "JALE", args.work / "jale.log")
    jale.update(tree_wall_s=jw, tree_cpu_s=jc)
    rec["uptime_after"] = _uptime()
    scale = args.iters / jale["iters"]
    ext = {
        "wall_s": jale["total_wall_s"] + jale["mc_wall_s"] * (scale - 1),
        "cpu_s": jale["total_cpu_s"] + jale["mc_cpu_s"] * (scale - 1),
        "extrapolated": jale["iters"] != args.iters,
    }
    rec.update(
        ours=ours,
        jale=jale,
        jale_extrapolated=ext,
        ratio_wall=ext["wall_s"] / ours["total_wall_s"],
        ratio_cpu=ext["cpu_s"] / ours["total_cpu_s"],
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(rec, indent=1))  # timings kept even if the comparison fails
    rec["agreement"] = agreement(Path(jale["volumes"]), Path(ours["maps"]), mask_path)
    _print_report(rec)
    args.out.write_text(json.dumps(rec, indent=1))
    print(f"record: {args.out}")
    return rec


if __name__ == "__main__":
    main()
