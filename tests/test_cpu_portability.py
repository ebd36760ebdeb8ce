"""Same Monte Carlo FWE result whatever the x86-64 CPU: numba code built for the host CPU and
for a generic x86-64 CPU give identical maps and null distributions, bit for bit.

Each configuration runs in its own subprocess with its own fresh ``NUMBA_CACHE_DIR`` (numba's
target CPU is fixed at import and its cache must not hand one run the other's machine code):

* ``host``: numba compiles for this CPU (AVX-512, FMA... whatever it has);
* ``generic``: ``NUMBA_CPU_NAME=generic`` and ``NUMBA_CPU_FEATURES=""`` (baseline x86-64);
* ``baseline``: as ``generic``, and numpy's runtime-dispatched SIMD kernels are switched off
  (``NPY_DISABLE_CPU_FEATURES``: numpy's ``exp``/``log``/``log10`` give other last bits with
  AVX-512, AVX2 or baseline code), so are glibc's FMA/AVX2 variants of ``exp``/``log``
  (``GLIBC_TUNABLES``) and OpenBLAS's CPU-specific kernels (``OPENBLAS_CORETYPE=Nehalem``):
  what an older CPU would run. (Measured on an AVX-512 AMD EPYC: numpy's dispatch alone
  changes the maps listed in ``NUMPY_DISPATCH_DEPENDENT``; the other switches change nothing.)

The pain studyset, ALE and MKDADensity, 200 iterations at ``voxel_thresh=0.001``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

N_ITERS = 200
NULLS = [
    f"values_{level}_corr-fwe_method-montecarlo"
    for level in ("level-voxel", "desc-size_level-cluster", "desc-mass_level-cluster")
]
#: glibc's ifunc variants of exp/log/pow are chosen from these CPU features
GLIBC_NO_FMA = "glibc.cpu.hwcaps=-AVX2,-FMA,-FMA4,-AVX512F"

#: Maps that the ``baseline`` run does not reproduce bit for bit today: they go through numpy's
#: dispatched float64 ``exp`` (the ALE union, ``1 - exp(sum log1p(-MA))``) or ``log``/``log10``
#: (``logp = -log10(p)``), whose last bits depend on the SIMD level numpy picks at run time.
#: They are held to 1 float32 ulp of the map's largest value. Remove names as they are fixed.
NUMPY_DISPATCH_DEPENDENT = {
    "ale/map/stat",
    "ale/map/logp_level-voxel_corr-FWE_method-montecarlo",
    "ale/map/logp_desc-size_level-cluster_corr-FWE_method-montecarlo",
    "ale/map/logp_desc-mass_level-cluster_corr-FWE_method-montecarlo",
    "mkda/map/logp_level-voxel_corr-FWE_method-montecarlo",
    "mkda/map/logp_desc-size_level-cluster_corr-FWE_method-montecarlo",
    "mkda/map/logp_desc-mass_level-cluster_corr-FWE_method-montecarlo",
}


def _numpy_cpu_info() -> tuple[list[str], dict[str, bool]]:
    """numpy's runtime-dispatched SIMD targets and the host's CPU features (private API)."""
    try:
        from numpy._core import _multiarray_umath as mu
    except ImportError:  # numpy < 2
        from numpy.core import _multiarray_umath as mu
    return list(mu.__cpu_dispatch__), dict(mu.__cpu_features__)


def _run(out: str, pain_json: str) -> None:
    """The subprocess: fit, correct, and save every map, null and how the code was built."""
    import numba.core.registry

    from nimare_dask import Studyset
    from nimare_dask.correct import FWECorrector
    from nimare_dask.meta.cbma import ALE, MKDADensity

    studyset = Studyset(pain_json)
    arrays = {}
    for name, est in (("ale", ALE(progress=False)), ("mkda", MKDADensity(progress=False))):
        res = est.fit(studyset)
        corrector = FWECorrector(
            method="montecarlo", n_iters=N_ITERS, voxel_thresh=0.001, random_state=0, n_cores=1
        )
        cres = corrector.transform(res)
        for m in cres.maps_names:
            arrays[f"{name}/map/{m}"] = np.asarray(cres.get_map(m, return_type="array"))
        for k, v in cres.null_distributions.items():
            arrays[f"{name}/null/{k}"] = np.asarray(v)
    codegen = numba.core.registry.cpu_target.target_context.codegen()
    _, cpu, features = codegen.magic_tuple()
    dispatch, found = _numpy_cpu_info()
    info = {
        "info/numba_cpu": np.array(cpu),
        "info/numba_features": np.array(features),
        "info/numpy_dispatch_on": np.array([d for d in dispatch if found.get(d)], dtype=str),
    }
    np.savez(out, **arrays, **info)


def _env(cache: Path, config: str) -> dict[str, str]:
    ours = (
        "NUMBA_CPU_NAME",
        "NUMBA_CPU_FEATURES",
        "NPY_DISABLE_CPU_FEATURES",
        "GLIBC_TUNABLES",
        "OPENBLAS_CORETYPE",
    )
    env = {
        k: v for k, v in os.environ.items() if k not in ours and not k.startswith("NUMBA_DISABLE")
    }
    env["NUMBA_CACHE_DIR"] = str(cache)
    env["PYTHONHASHSEED"] = "0"
    if config in ("generic", "baseline"):
        env["NUMBA_CPU_NAME"] = "generic"
        env["NUMBA_CPU_FEATURES"] = ""
    if config == "baseline":
        dispatch, found = _numpy_cpu_info()
        on = [d for d in dispatch if found.get(d)]
        if on:  # only features this CPU has; numpy refuses to disable unknown ones
            env["NPY_DISABLE_CPU_FEATURES"] = " ".join(on)
        env["GLIBC_TUNABLES"] = GLIBC_NO_FMA
        env["OPENBLAS_CORETYPE"] = "Nehalem"  # SSE4.2 kernels, no AVX/FMA
    return env


@pytest.fixture(scope="module")
def runs(tmp_path_factory, pain_json) -> dict[str, np.lib.npyio.NpzFile]:
    """The three configurations, run side by side (numba compilation dominates, ~20-30 s)."""
    root = tmp_path_factory.mktemp("cpu_portability")
    procs = {}
    for config in ("host", "generic", "baseline"):
        cache = root / f"numba-cache-{config}"
        cache.mkdir()
        out = root / f"{config}.npz"
        procs[config] = (
            subprocess.Popen(
                [sys.executable, __file__, str(out), str(pain_json)],
                env=_env(cache, config),
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            ),
            out,
            cache,
        )
    results = {}
    try:
        for config, (proc, out, cache) in procs.items():
            log, _ = proc.communicate(timeout=600)
            assert proc.returncode == 0, f"{config} run failed:\n{log}"
            assert any(cache.rglob("*.nbi")), f"{config}: numba did not use its own cache dir"
            results[config] = np.load(out)
    finally:
        for proc, _, _ in procs.values():  # a failed or timed-out run leaves none behind
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return results


def _data_keys(npz) -> list[str]:
    return sorted(k for k in npz.files if not k.startswith("info/"))


def _identical(a: np.ndarray, b: np.ndarray) -> bool:
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def test_the_runs_used_the_intended_code(runs):
    assert str(runs["generic"]["info/numba_cpu"]) == "generic"
    assert str(runs["generic"]["info/numba_features"]) == ""
    assert runs["baseline"]["info/numpy_dispatch_on"].size == 0
    assert _data_keys(runs["host"]) == _data_keys(runs["generic"]) == _data_keys(runs["baseline"])
    keys = _data_keys(runs["host"])
    for est in ("ale", "mkda"):
        assert f"{est}/map/p_level-voxel_corr-FWE_method-montecarlo" in keys
        for null in NULLS:  # max stat, max cluster size, max cluster mass
            assert runs["host"][f"{est}/null/{null}"].shape == (N_ITERS,)


def test_generic_cpu_numba_gives_identical_results(runs):
    """Our promise: numba code built for any x86-64 CPU gives the same bits."""
    host, generic = runs["host"], runs["generic"]
    differ = [k for k in _data_keys(host) if not _identical(host[k], generic[k])]
    assert not differ, f"differ between host-CPU and generic numba code: {differ}"


def test_baseline_simd_gives_identical_nulls_and_p_maps(runs):
    """With numpy's and glibc's CPU-specific math switched off too: the nulls, p and z maps
    are identical; the maps listed in NUMPY_DISPATCH_DEPENDENT agree to 1 float32 ulp of their
    largest value (see its comment)."""
    host, base = runs["host"], runs["baseline"]
    differ = []
    for k in _data_keys(host):
        if _identical(host[k], base[k]):
            continue
        if k not in NUMPY_DISPATCH_DEPENDENT:
            differ.append(k)
            continue
        a, b = host[k], base[k]
        assert a.dtype == b.dtype == np.float32 and a.shape == b.shape, k
        tol = np.spacing(np.abs(a).max())
        np.testing.assert_array_less(np.abs(a.astype(np.float64) - b), tol * 1.0001, err_msg=k)
    assert not differ, f"differ between host and baseline SIMD/libm: {differ}"


if __name__ == "__main__":
    _run(sys.argv[1], sys.argv[2])
