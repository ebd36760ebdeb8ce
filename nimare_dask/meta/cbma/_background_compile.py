"""Compile a job's numba kernels ahead of use, in helper processes, into numba's disk cache.

Every kernel is ``@njit(cache=True)``: once compiled it is loaded from numba's cache (a few ms),
but the first run after an install compiles them all (~10 s of one core for the ALE job, most of
it on the critical path: each kernel is compiled when the job first reaches it, and numba
compiles one function at a time per process). :func:`start_background_compile` forks helper
processes that compile the kernels a job will need, in the order it needs them, into the same
cache, while the job itself imports, reads its data, starts its cluster and fits:

* a kernel the job reaches after a helper finished it is loaded from the cache;
* one a helper is compiling right then is waited for (then loaded), never compiled twice;
* one no helper has started yet is compiled by the job itself, and the helpers skip it.

The coordination is one shared array of task states (pending, taken by a helper, done, failed,
taken by the job) and a proxy around each listed kernel's numba cache in the job's process
(:class:`_WaitingCache`), so callers (and the kernels' callers inside other jitted functions)
are unchanged. Results are the cached code numba would have compiled itself: identical.

Nothing starts unless it is safe and useful: on Linux (``fork``), with numba's JIT and cache
enabled, only from a single-threaded process (a fork must not copy a lock another thread
holds), and with as many helpers as the machine has idle CPUs (at most 4; none on a busy
machine, where they would only take CPU from the job: each helper also compiles numba's own
array helpers again). Helpers that fail or die only mean the job compiles that kernel itself. A
warm cache makes the helpers load and exit within a fraction of a second.
"""

from __future__ import annotations

import importlib
import logging
import math
import multiprocessing
import os
import re
import sys
import threading
import time

__all__ = ["JOBS", "BackgroundCompile", "start_background_compile"]

#: Kernels called from Python by each job, with the argument types the job passes, by stage of
#: the job. Callees compile (and are cached) with their callers.
JOBS: dict[str, tuple[tuple[str, str, str], ...]] = {
    # nimare-dask ale: ALE fit, Monte Carlo FWE (voxel + cluster level), Jackknife. Within each
    # stage the longest compile comes first (the job compiles a short one itself if it gets
    # there first).
    "ale": (
        (
            "nimare_dask.kernels._numba",
            "tabulate_block",
            "array(int64, 2d), array(int64, 1d), array(int64, 1d), int64, array(int32, 1d), "
            "array(int64, 1d), array(int64, 2d), array(int64, 1d), readonly array(int64, 1d), "
            "readonly array(int64, 2d), array(int64, 2d), array(float64, 1d), array(int64, 1d), "
            "array(float32, 1d), int64",
        ),
        (
            "nimare_dask.stats.nulls",
            "_ale_null_loop",
            "array(float64, 1d), array(int64, 2d), float64, array(float64, 1d), float64, int64, "
            "float64, array(int64, 1d)",
        ),
        ("nimare_dask.stats.nulls", "_nearest_bins", "array(float32, 1d), float64, int64"),
        ("nimare_dask.stats.nulls", "_zero_outputs", "array(float64, 1d), float64, int64"),
        (
            "nimare_dask.meta.cbma._mc_numba",
            "ale_accumulate",
            "array(int64, 2d), array(int64, 1d), array(int64, 1d), array(int64, 2d), "
            "array(int64, 1d), array(float32, 1d), array(int64, 1d), array(int64, 2d), int64, "
            "array(int64, 1d), array(float64, 1d), array(float32, 1d), array(int64, 1d), "
            "array(uint64, 2d), array(int64, 1d)",
        ),
        (
            "nimare_dask.meta.cbma._mc_numba",
            "ale_supra",
            "array(float64, 1d), array(int64, 1d), float64, readonly array(int32, 2d), "
            "array(int32, 1d), array(int64, 1d), array(float64, 1d)",
        ),
        (
            "nimare_dask.meta.cbma._mc_numba",
            "ale_gather",
            "array(float64, 1d), array(int64, 2d), array(float64, 1d)",
        ),
        (
            "nimare_dask.kernels._numba",
            "csr_block",
            "array(int64, 2d), array(int64, 1d), array(int64, 1d), int64, int64, "
            "array(float32, 1d), array(int64, 1d), array(int64, 2d), array(int64, 1d), "
            "readonly array(int64, 1d), readonly array(int64, 2d), int64, float32, "
            "array(int64, 2d)",
        ),
        (
            "nimare_dask.kernels._numba",
            "reduce_block",
            "array(int64, 2d), array(int64, 1d), array(int64, 1d), array(float64, 1d), int64, "
            "int64, array(float32, 1d), array(int64, 1d), array(int64, 2d), array(int64, 1d), "
            "readonly array(int64, 1d), readonly array(int64, 2d), int64, float32, "
            "array(int64, 2d)",
        ),
        ("nimare_dask.stats.clusters", "_supra", "array(float32, 1d), float64, bool"),
    ),
}

_PENDING, _HELPER, _DONE, _FAILED, _JOB = 0, 1, 2, 3, 4
#: Longest wait for a kernel a helper is compiling before the job compiles it itself.
_WAIT_S = 300.0
#: Most helper processes (each holds a compiler: ~200 MB while it works).
_MAX_HELPERS = 4
_ARRAY = re.compile(r"(readonly )?array\((\w+), (\d)d\)")
_ACTIVE: BackgroundCompile | None = None
LGR = logging.getLogger(__name__)
_ACTIVE_LOCK = threading.Lock()


def parse_signature(text: str) -> tuple:
    """Argument types from ``"array(int64, 2d), readonly array(int32, 1d), float64, bool"``.

    Arrays are C-contiguous.
    """
    from numba import types

    out = []
    for item in re.split(r",\s*(?![^()]*\))", text):
        item = item.strip()
        m = _ARRAY.fullmatch(item)
        if m:
            dtype = getattr(types, m.group(2))
            out.append(types.Array(dtype, int(m.group(3)), "C", readonly=bool(m.group(1))))
        else:
            out.append(getattr(types, "boolean" if item == "bool" else item))
    return tuple(out)


def _tasks(job: str) -> list[tuple]:
    """``(dispatcher, argument types)`` of a job's kernels, in order."""
    out = []
    for module, name, sig in JOBS[job]:
        out.append((getattr(importlib.import_module(module), name), parse_signature(sig)))
    return out


def _idle_cpus() -> int:
    """CPUs of this process left over by the machine's load (1-minute average, whole CPUs)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):
        load = 0.0
    return cpus - math.floor(load)


def _usable(tasks) -> bool:
    from numba.core import config

    if config.DISABLE_JIT or not sys.platform.startswith("linux"):
        return False
    if "fork" not in multiprocessing.get_all_start_methods():
        return False
    if threading.active_count() != 1:  # forking would copy locks other threads may hold
        return False
    # caching on for every kernel (a NullCache would make the helpers' work invisible)
    return all(type(getattr(d, "_cache", None)).__name__ == "FunctionCache" for d, _ in tasks)


def _helper(k, tasks, states, owners, times, lock) -> None:
    """Helper ``k``: take the first pending task, compile it (into the cache), repeat."""
    while True:
        with lock:
            todo = [i for i in range(len(tasks)) if states[i] == _PENDING]
            if not todo:
                return
            i = todo[0]
            states[i] = _HELPER
            owners[i] = k
        times[2 * i] = time.time()
        disp, sig = tasks[i]
        try:
            disp.compile(sig)
        except BaseException:  # the job compiles it itself
            states[i] = _FAILED
        else:
            states[i] = _DONE
        times[2 * i + 1] = time.time()


class _WaitingCache:
    """Proxy of a dispatcher's numba cache in the job's process (see the module notes)."""

    def __init__(self, inner, owner: BackgroundCompile, index: dict):
        self._inner = inner
        self._owner = owner
        self._index = index  # argument types -> task number

    def __getattr__(self, name):
        return getattr(self._inner, name)

    def load_overload(self, sig, target_context):
        cres = self._inner.load_overload(sig, target_context)
        if cres is not None:
            return cres
        from numba.core.sigutils import normalize_signature

        i = self._index.get(tuple(normalize_signature(sig)[0]))
        if i is None or not self._owner.wait_for(i):
            return None  # not a listed kernel, or ours to compile
        return self._inner.load_overload(sig, target_context)


class BackgroundCompile:
    """Helper processes compiling a job's kernels (see :func:`start_background_compile`)."""

    def __init__(self, job: str, tasks: list[tuple], n_helpers: int):
        from numba.core.registry import cpu_target

        # numba's registries, loaded once here (the job needs them anyway), not in every helper
        cpu_target.typing_context.refresh()
        cpu_target.target_context.refresh()
        ctx = multiprocessing.get_context("fork")
        self.job = job
        self.tasks = tasks
        self._states = ctx.Array("b", len(tasks), lock=False)
        self._owners = ctx.Array("b", len(tasks), lock=False)
        self._times = ctx.Array("d", 2 * len(tasks), lock=False)  # helper start, end
        self.started = time.time()
        #: ``(task, start, seconds)`` of each wait of the job for a helper.
        self.waits: list[tuple[str, float, float]] = []
        self._lock = ctx.Lock()
        #: Seconds the job waited for helpers, and the number of waits.
        self.waited_s = 0.0
        self.n_waits = 0
        self._procs = [
            ctx.Process(
                target=_helper,
                args=(k, tasks, self._states, self._owners, self._times, self._lock),
                name=f"nimare-dask-compile-{k}",
                daemon=True,
            )
            for k in range(n_helpers)
        ]
        # the children must not flush output the job buffered before the fork a second time
        sys.stdout.flush()
        sys.stderr.flush()
        for proc in self._procs:
            proc.start()
        self._wrapped = []
        by_disp: dict[int, dict] = {}
        for i, (disp, sig) in enumerate(tasks):
            by_disp.setdefault(id(disp), {})[sig] = i
        for disp, _ in tasks:
            index = by_disp.pop(id(disp), None)
            if index is not None:
                self._wrapped.append((disp, disp._cache))
                disp._cache = _WaitingCache(disp._cache, self, index)

    def wait_for(self, i: int) -> bool:
        """True once a helper has compiled task ``i``; False if the job should compile it."""
        with self._lock:
            state = self._states[i]
            if state == _PENDING:
                self._states[i] = _JOB
                return False
        if state != _HELPER:
            return state == _DONE
        t0 = time.monotonic()
        t_wall = time.time()
        self.n_waits += 1
        try:
            while self._states[i] == _HELPER:
                proc = self._procs[self._owners[i]]
                if time.monotonic() - t0 > _WAIT_S or not proc.is_alive():
                    return False
                time.sleep(0.002)
            return self._states[i] == _DONE
        finally:
            self.waited_s += time.monotonic() - t0
            self.waits.append((self._name(i), t_wall, time.monotonic() - t0))

    def _name(self, i: int) -> str:
        disp = self.tasks[i][0]
        return f"{disp.py_func.__module__}.{disp.py_func.__name__}"

    def states(self) -> dict[str, str]:
        """Each task's state (``"pending"``, ``"helper"``, ``"done"``, ``"failed"``, ``"job"``)."""
        names = ("pending", "helper", "done", "failed", "job")
        return {self._name(i): names[self._states[i]] for i in range(len(self.tasks))}

    def timeline(self) -> list[dict]:
        """Per task: state, helper, and the helper's start and end (``time.time()``)."""
        names = ("pending", "helper", "done", "failed", "job")
        return [
            {
                "task": self._name(i),
                "state": names[self._states[i]],
                "helper": int(self._owners[i]),
                "start": self._times[2 * i],
                "end": self._times[2 * i + 1],
            }
            for i in range(len(self.tasks))
        ]

    def close(self) -> None:
        """Stop the helpers (if still running) and restore the kernels' caches."""
        for proc in self._procs:
            if proc.is_alive():
                proc.terminate()
            proc.join(timeout=5)
        for disp, cache in self._wrapped:
            disp._cache = cache
        self._wrapped = []


def start_background_compile(job: str = "ale", n_helpers: int | None = None):
    """Start compiling the numba kernels of ``job`` in helper processes (once per process).

    Call it first thing in a job's entry point (before the data are read and the cluster is
    started): the helpers compile while the job gets ready, and the job loads the compiled code
    from numba's cache instead of compiling it on its critical path.

    Parameters
    ----------
    job : str
        A key of :data:`JOBS`.
    n_helpers : int, optional
        Helper processes. Default: the CPUs left idle by the machine's load (the 1-minute load
        average), at most 4: on a busy machine the helpers would only take CPU from the job.

    Returns
    -------
    BackgroundCompile or None
        None when nothing was started (not Linux, JIT or cache off, other threads running, no
        idle CPU, ``NIMARE_DASK_BACKGROUND_COMPILE=0``, or already started in this process).
    """
    global _ACTIVE
    if job not in JOBS:
        raise ValueError(f"unknown job {job!r}; choose from {sorted(JOBS)}")
    if os.environ.get("NIMARE_DASK_BACKGROUND_COMPILE", "1") == "0":
        return None
    with _ACTIVE_LOCK:
        if _ACTIVE is not None:
            return None
        tasks = _tasks(job)
        if not _usable(tasks):
            return None
        n = _idle_cpus() if n_helpers is None else int(n_helpers)
        n = min(n, _MAX_HELPERS, len(tasks))
        if n < 1:
            return None
        _ACTIVE = BackgroundCompile(job, tasks, n)
        LGR.debug("compiling the %d numba kernels of %r in %d helper processes", len(tasks), job, n)
        return _ACTIVE
