"""Benchmark: the main job's first run after install (numba compiles) vs a warm run (issue 13).

Runs ``nimare-dask ale --sample pain --n-iters N --random-state 0`` twice, each in a fresh
subprocess, with ``NUMBA_CACHE_DIR`` pointing to one new, empty temporary folder:

* **first run**: nothing cached, every numba function the job needs is compiled (what a user
  sees right after ``pip install``);
* **warm run**: the same cache folder, now full: functions are loaded from it.

Each run starts the job's background compilation first
(:func:`nimare_dask.meta.cbma._background_compile.start_background_compile`, what
``nimare-dask ale`` does: helper processes compile the kernels into the cache while the job
starts); ``--no-background`` measures compilation on first use only.

It prints both wall times (the whole subprocess: interpreter start, imports, job, report), their
ratio, and, per jitted function and signature, the time numba spent compiling it *in the job's
process* (``self``: excluding the callees it compiled on the way), loading it from the cache and
writing it to the cache, measured by wrapping numba's compiler and cache in the subprocess (a few
microseconds per compilation; functions called only from other jitted functions count as their
own rows); with background compilation, which kernels the helpers compiled and how long the job
waited for them. The machine's other load moves these figures by seconds: ``--repeat`` runs
several pairs (each with a new cache) and reports the median ratio.

Usage::

    python benchmarks/bench_compile.py                 # 10,000 iterations (the README's job)
    python benchmarks/bench_compile.py --repeat 3 --no-background
    python benchmarks/bench_compile.py --n-iters 1000 --top 25 --json out.json

``NUMBA_*`` variables of the calling environment are passed on except ``NUMBA_CACHE_DIR``
(``NUMBA_DISABLE_JIT`` would make the benchmark meaningless and is refused).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve()


# ------------------------------------------------------------------------------ child process
def _install_profiler() -> list[dict]:
    """Wrap numba's compiler and cache; returns the list the records are appended to."""
    import threading
    from time import perf_counter

    from numba.core import caching, dispatcher

    records: list[dict] = []
    local = threading.local()

    def _name(py_func) -> str:
        return f"{py_func.__module__}.{py_func.__qualname__}"

    compile_orig = dispatcher._FunctionCompiler.compile

    def compile_timed(self, args, return_type):
        stack = local.__dict__.setdefault("stack", [])
        depth = len(stack)
        stack.append(0.0)
        t0 = perf_counter()
        try:
            return compile_orig(self, args, return_type)
        finally:
            total = perf_counter() - t0
            nested = stack.pop()
            if stack:
                stack[-1] += total
            records.append(
                {
                    "name": _name(self.py_func),
                    "sig": ", ".join(str(a) for a in args),
                    "kind": "compile",
                    "self_s": total - nested,
                    "total_s": total,
                    "depth": depth,
                    "thread": threading.current_thread().name,
                    "t": t0,
                }
            )

    def _cache_wrapper(orig, kind):
        def timed(self, sig, *rest):
            stack = local.__dict__.setdefault("stack", [])
            t0 = perf_counter()
            out = orig(self, sig, *rest)
            dt = perf_counter() - t0
            if stack:  # a callee loaded while its caller compiles: not the caller's own time
                stack[-1] += dt
            if kind == "load" and out is None:
                kind_ = "miss"
            else:
                kind_ = kind
            records.append(
                {
                    "name": str(getattr(self, "_name", "?")),
                    "sig": str(sig),
                    "kind": kind_,
                    "self_s": dt,
                    "total_s": dt,
                }
            )
            return out

        return timed

    dispatcher._FunctionCompiler.compile = compile_timed
    caching.Cache.load_overload = _cache_wrapper(caching.Cache.load_overload, "load")
    caching.Cache.save_overload = _cache_wrapper(caching.Cache.save_overload, "save")
    return records


def _child(out: str, argv: list[str], background: bool, helpers: int | None) -> None:
    t0 = time.perf_counter()
    t_wall0 = time.time()
    records = _install_profiler()
    t_numba = time.perf_counter() - t0
    handle = None
    if background:  # what ``nimare-dask ale`` does first (a no-op if it does it itself)
        from nimare_dask.meta.cbma._background_compile import start_background_compile

        handle = start_background_compile("ale", n_helpers=helpers)
    from nimare_dask.cli.main import main

    t1 = time.perf_counter()
    rc = main(argv)
    wall = time.perf_counter() - t1
    info = {"rc": rc, "job_s": wall, "numba_import_s": t_numba, "t_start": t0, "records": records}
    if handle is not None:
        info["background"] = {
            "states": handle.states(),
            "waited_s": handle.waited_s,
            "n_waits": handle.n_waits,
            "started": handle.started,
            "timeline": handle.timeline(),
            "waits": handle.waits,
            "wall_start": t_wall0,
        }
    Path(out).write_text(json.dumps(info))


# ----------------------------------------------------------------------------- parent process
def _run(
    cache: Path, n_iters: int, work: Path, tag: str, background: bool, helpers: int | None
) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"}
    env["NUMBA_CACHE_DIR"] = str(cache)
    env["NIMARE_DASK_BACKGROUND_COMPILE"] = "1" if background else "0"
    out = work / f"{tag}.json"
    argv = [
        "ale", "--sample", "pain", "--n-iters", str(n_iters), "--random-state", "0",
        "--output-dir", str(work / f"out-{tag}"),
    ]  # fmt: skip
    cmd = [sys.executable, str(HERE), "--child", str(out)]
    cmd += ["--no-background"] if not background else []
    cmd += ["--helpers", str(helpers)] if helpers is not None else []
    cmd += ["--", *argv]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout + proc.stderr)
        raise SystemExit(f"{tag} run failed (exit {proc.returncode})")
    info = json.loads(out.read_text())
    info["wall_s"] = wall
    return info


def _summary(records: list[dict]) -> dict[str, dict]:
    by: dict[str, dict] = {}
    for r in records:
        key = f"{r['name']}({r['sig']})" if r["kind"] == "compile" else r["name"]
        if r["kind"] != "compile":
            continue
        row = by.setdefault(key, {"compile_s": 0.0, "n": 0})
        row["compile_s"] += r["self_s"]
        row["n"] += 1
    return by


def _totals(records: list[dict]) -> dict[str, float]:
    out = {"compile": 0.0, "load": 0.0, "save": 0.0, "miss": 0.0}
    n = dict.fromkeys(out, 0)
    for r in records:
        out[r["kind"]] += r["self_s"]
        n[r["kind"]] += 1
    return {**{f"{k}_s": v for k, v in out.items()}, **{f"n_{k}": v for k, v in n.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n-iters", type=int, default=10000, help="Monte Carlo iterations")
    parser.add_argument("--top", type=int, default=15, help="compile costs listed")
    parser.add_argument(
        "--repeat", type=int, default=1, help="pairs of runs, each with a new cache (median)"
    )
    parser.add_argument("--json", help="also write the measurements to this file")
    parser.add_argument(
        "--no-background",
        action="store_true",
        help="compile on first use only (no helper processes; NIMARE_DASK_BACKGROUND_COMPILE=0)",
    )
    parser.add_argument(
        "--helpers",
        type=int,
        help="helper processes (default: as the job picks them, from the idle CPUs)",
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args, rest = parser.parse_known_args()
    if args.child:
        _child(args.child, [a for a in rest if a != "--"], not args.no_background, args.helpers)
        return
    if os.environ.get("NUMBA_DISABLE_JIT", "0") not in ("", "0"):
        raise SystemExit("NUMBA_DISABLE_JIT is set: nothing would be compiled")
    pairs = []
    for rep in range(max(1, args.repeat)):
        with tempfile.TemporaryDirectory(prefix="bench-compile-") as tmp:
            work = Path(tmp)
            cache = work / "numba-cache"
            cache.mkdir()
            bg = not args.no_background
            first = _run(cache, args.n_iters, work, "first", bg, args.helpers)
            warm = _run(cache, args.n_iters, work, "warm", bg, args.helpers)
            n_files = sum(1 for _ in cache.rglob("*.nbc"))
        pairs.append((first["wall_s"] / warm["wall_s"], first, warm))
        if args.repeat > 1:
            print(
                f"pair {rep + 1}: first {first['wall_s']:.1f} s, warm {warm['wall_s']:.1f} s, "
                f"ratio {pairs[-1][0]:.2f}",
                flush=True,
            )
    pairs.sort(key=lambda p: p[0])
    ratio, first, warm = pairs[len(pairs) // 2]
    print(f"main job: nimare-dask ale --sample pain --n-iters {args.n_iters} --random-state 0")
    print(f"  cache dir: fresh temporary folder ({n_files} compiled signatures after both runs)")
    for tag, info in (("first run (empty cache)", first), ("warm run (same cache)", warm)):
        t = _totals(info["records"])
        print(
            f"  {tag:<24} {info['wall_s']:6.1f} s wall (job {info['job_s']:5.1f} s); "
            f"compiled {t['n_compile']} signatures in {t['compile_s']:.1f} s, "
            f"cache loads {t['n_load']} in {t['load_s']:.2f} s, saves {t['n_save']} in "
            f"{t['save_s']:.2f} s"
        )
    print(f"  ratio first / warm: {ratio:.2f}" + (" (median pair)" if len(pairs) > 1 else ""))
    bg = first.get("background")
    if bg:
        done = sorted(k.rsplit(".", 1)[-1] for k, v in bg["states"].items() if v == "done")
        mine = sorted(k.rsplit(".", 1)[-1] for k, v in bg["states"].items() if v == "job")
        print(
            f"  first run, background compile: helpers compiled {done}; the job compiled "
            f"{mine} itself and waited {bg['waited_s']:.1f} s for helpers ({bg['n_waits']} waits)"
        )
    elif not args.no_background:
        print(
            "  background compile did not start (no idle CPU, or see start_background_compile): "
            "the job compiled on first use"
        )
    rows = sorted(_summary(first["records"]).items(), key=lambda kv: -kv[1]["compile_s"])
    print(f"top compile costs of the first run (self time, {len(rows)} signatures):")
    for key, row in rows[: args.top]:
        print(f"  {row['compile_s']:6.2f} s  {key}")
    warm_rows = _summary(warm["records"])
    if warm_rows:
        print(f"compiled again in the warm run (not cached): {sorted(warm_rows)}")
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {
                    "n_iters": args.n_iters,
                    "ratio": ratio,
                    "ratios": [p[0] for p in pairs],
                    "first": first,
                    "warm": warm,
                },
                indent=1,
            )
        )


if __name__ == "__main__":
    main()
