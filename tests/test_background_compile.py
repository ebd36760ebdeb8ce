"""Background compilation of a job's numba kernels (``nimare_dask.meta.cbma._background_compile``).

* the signatures listed for the ``ale`` job are the ones the job calls (a changed dtype at a
  call site would leave the helpers compiling code nobody uses);
* helpers compile into numba's cache, and the job loads their code instead of compiling it:
  checked in a subprocess with a fresh ``NUMBA_CACHE_DIR``, on two small kernels.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import warnings
from importlib import resources

import pytest
from numba import types

from nimare_dask.meta.cbma import _background_compile as bc


def test_parse_signature():
    sig = bc.parse_signature("array(int64, 2d), readonly array(int32, 1d), float64, bool, int64")
    assert sig == (
        types.Array(types.int64, 2, "C"),
        types.Array(types.int32, 1, "C", readonly=True),
        types.float64,
        types.boolean,
        types.int64,
    )


def test_unknown_job():
    with pytest.raises(ValueError, match="unknown job"):
        bc.start_background_compile("nope")


def test_ale_job_signatures_are_the_ones_it_calls():
    """Every kernel signature listed for ``nimare-dask ale`` is compiled (or loaded) by the job."""
    from nimare_dask.io import read_sleuth
    from nimare_dask.workflows.cbma import ale_workflow

    sample = resources.files("nimare_dask.resources") / "data" / "pain_sleuth.txt"
    with warnings.catch_warnings():  # foci outside the mask, as the CLI warns
        warnings.simplefilter("ignore")
        studyset = read_sleuth(str(sample))
    out = ale_workflow(studyset, n_iters=100, random_state=0, n_cores=1, report=False)
    assert out.results["ale"].tables  # Jackknife ran: its kernels are listed too
    unused = [
        f"{disp.py_func.__name__}{sig}"
        for disp, sig in bc._tasks("ale")
        if sig not in disp.overloads
    ]
    assert not unused, f"listed for the ale job but not called with these types: {unused}"


_CHILD = textwrap.dedent(
    """
    import json
    import numpy as np
    from nimare_dask.meta.cbma import _background_compile as bc
    from nimare_dask.stats import nulls

    bc.JOBS["tiny"] = (
        ("nimare_dask.stats.nulls", "_zero_outputs", "array(float64, 1d), float64, int64"),
        ("nimare_dask.stats.nulls", "_nearest_bins", "array(float32, 1d), float64, int64"),
    )
    handle = bc.start_background_compile("tiny", n_helpers=2)
    assert handle is not None
    assert bc.start_background_compile("tiny") is None  # once per process
    for proc in handle._procs:
        proc.join(120)
    zero = nulls._zero_outputs(np.arange(5.0) / 4, 4.0, 5)
    near = nulls._nearest_bins(np.array([0.1, 0.5, 2.0], np.float32), 4.0, 5)
    print(json.dumps({
        "states": handle.states(),
        "misses": [sum(d._cache_misses.values()) for d, _ in handle.tasks],
        "hits": [sum(d._cache_hits.values()) for d, _ in handle.tasks],
        "zero": zero.tolist(),
        "near": near.tolist(),
    }))
    handle.close()
    """
)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="helpers are forked (Linux)")
def test_helpers_compile_into_the_cache(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("NUMBA_")}
    env["NUMBA_CACHE_DIR"] = str(tmp_path / "numba-cache")
    env.pop("NIMARE_DASK_BACKGROUND_COMPILE", None)
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD], env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout.strip().splitlines()[-1])
    assert set(info["states"].values()) == {"done"}, info
    # the job loaded the helpers' code from the cache: nothing compiled in its process
    assert info["misses"] == [0, 0] and info["hits"] == [1, 1], info
    assert info["zero"] == [0, 1, 2, 3, 4]
    assert info["near"] == [0, 2, 4]
    assert any((tmp_path / "numba-cache").rglob("*.nbi"))


def test_not_started_when_disabled_or_busy(monkeypatch):
    monkeypatch.setenv("NIMARE_DASK_BACKGROUND_COMPILE", "0")
    assert bc.start_background_compile("ale") is None
    monkeypatch.setenv("NIMARE_DASK_BACKGROUND_COMPILE", "1")
    monkeypatch.setattr(bc, "_idle_cpus", lambda: 0)  # every CPU busy: no helper
    assert bc.start_background_compile("ale") is None
    assert bc._ACTIVE is None
