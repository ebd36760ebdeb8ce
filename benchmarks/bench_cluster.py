"""Benchmark: nimare_dask on a real Dask process cluster and an S3 API server (issue 10).

Everything runs on 127.0.0.1 with :mod:`nimare_dask.testing`: ``process_cluster`` (a
``dask scheduler`` and ``dask worker`` processes, each in its own folder, 1 thread per worker)
and ``s3_server`` (moto in server mode, its own process). Cases:

* ``graph``: bytes of task graph the client sends to the scheduler per job. The script wraps
  ``distributed.Client._send_to_scheduler`` and sums, for every ``update-graph`` message, the
  serialized expression (``expr_ser``: its frames plus the msgpack size of its header; distributed's
  own ``pickled_size`` counts the header as its number of keys) and, apart, the rest of the
  message (keys, computation code, annotations). ``Client._scatter`` is wrapped too: data
  scattered to the workers is counted apart (its serialized size, once; broadcast copies noted).
  The largest graph of each job is unpacked to name the objects it holds (distinct objects,
  each pickled alone; shared objects count once). Jobs: ALE fit (pain), ALE + Monte Carlo FWE,
  MKDAChi2 (pain halves), Jackknife, ``MetaResult.to_zarr``, ALE on pain x10 and x100 (same
  foci, new ids: graph size must not grow with data), and on the Neurosynth store (LDA50):
  CorrelationDecoder fit (5 topics) + transform, amygdala MACM (ALE, FWHM 10).
* ``tasks``: scheduler overhead per task: ``client.map`` of a no-op, a dask array of tiny
  chunks, the Monte Carlo engine itself (``run_blocks`` with a no-op block, block size 1) and
  the round trip of one ``submit(...).result()``.
* ``s3``: S3 requests per job, counted from moto's request log (parsed here: method, status;
  checked against ``S3Server.n_requests()`` and against known boto3 calls).
* ``scaling``: ALE Monte Carlo FWE (pain, voxel + cluster level, ``--iters``) on 1 worker and on
  2 workers (1 thread each): wall times, speed-up, identical nulls.
* ``model``: measured model of a 10,000-iteration amygdala MACM (1,404 studies, cluster-level FWE)
  on P cores: per-iteration time on one worker at the engine's block size, per-block overhead
  (case ``tasks``), bytes every worker receives once (the scattered block function), one-off
  setup; wall(P) for P = 1, 2, 16, 64, cross-checked against case ``scaling``.

Timings on a shared 2-core machine are approximate: the load average is printed with each case.
Results are also written to ``benchmarks/results/bench_cluster.json``.

Usage::

    python benchmarks/bench_cluster.py                       # all cases (~4 min on 2 cores)
    python benchmarks/bench_cluster.py --case graph s3
    python benchmarks/bench_cluster.py --case scaling --iters 1000

NiMARE is not imported (its pain studyset file is used when installed, else the packaged Sleuth
copy of the same 21 experiments).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import logging
import math
import os
import pickle
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
from collections import Counter
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
DEFAULT_DATA = HERE.parents[1] / "shared" / "data"
DEFAULT_WORK = HERE / ".cache"
RESULTS = HERE / "results" / "bench_cluster.json"
CASES = ("graph", "tasks", "s3", "scaling", "model")
TOPICS = [
    "10_food_taste_weight",
    "13_fear_threat_smokers",
    "32_pain_somatosensory_stimulation",
    "26_emotional_amygdala_negative",
    "3_cortex_anterior_cingulate",
]
FEATURE_GROUP = "LDA50_abstract_weight"
CLUSTER_Z = "z_desc-size_level-cluster_corr-FWE_method-montecarlo"
GRAPH_TARGET = 1_000_000  # bytes: "< 1 MB per graph"
BANDWIDTH = 1e9  # bytes/s assumed per worker link in the model
MODEL_CORES = (1, 2, 16, 64)
MODEL_ITERS = 10_000


# ---------------------------------------------------------------------------- small helpers
def _quiet() -> None:
    warnings.simplefilter("ignore")
    logging.getLogger("distributed").setLevel(logging.ERROR)
    logging.getLogger("nimare_dask").setLevel(logging.ERROR)


def _kb(n: float) -> str:
    return f"{n / 1e3:,.1f}"


def _load() -> str:
    try:
        return "load avg " + " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "load avg n/a"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _machine() -> list[str]:
    import dask
    import distributed
    import numba

    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    try:
        mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError):
        mem = float("nan")
    try:
        import moto

        moto_v = moto.__version__
    except ImportError:
        moto_v = "not installed"
    import nimare_dask

    return [
        "command: " + " ".join([Path(sys.executable).name, *sys.argv]),
        f"machine: {platform.node()}, {os.cpu_count()} cores ({usable} usable), "
        f"CPU {_cpu_model()}, {mem:.1f} GiB RAM, {platform.system()} {platform.release()}",
        f"python {platform.python_version()}, nimare_dask {nimare_dask.__version__}, "
        f"dask {dask.__version__}, distributed {distributed.__version__}, "
        f"numba {numba.__version__}, numpy {np.__version__}, moto {moto_v}",
        f"started {time.strftime('%Y-%m-%d %H:%M:%S')}, {_load()}",
    ]


def _pain():
    """The 21 NIDM pain experiments: NiMARE's studyset file if installed, else our Sleuth copy."""
    import importlib.util

    import nimare_dask as nd

    spec = importlib.util.find_spec("nimare")
    if spec is not None and spec.origin is not None:
        path = Path(spec.origin).parent / "resources" / "nidm_pain_studyset.json"
        if path.exists():
            return nd.Studyset(path)
    from nimare_dask.io import convert_sleuth_to_studyset

    return convert_sleuth_to_studyset(
        Path(nd.__file__).parent / "resources" / "data" / "pain_sleuth.txt"
    )


def _replicate(ss, k: int):
    """``ss`` k times over (same foci and sample sizes, study ids suffixed ``-r<i>``)."""
    import pandas as pd

    from nimare_dask import Studyset

    analyses, points = ss.analyses, ss.coordinates
    parts_a, parts_p, parts_m = [], [], []
    for i in range(k):
        a = analyses[["study_id", "contrast_id"]].copy()
        a["study_id"] = a["study_id"] + f"-r{i}"
        a["id"] = a["study_id"] + "-" + a["contrast_id"].astype(str)
        new_id = dict(zip(analyses["id"], a["id"], strict=True))
        p = points[["id", "x", "y", "z", "space"]].copy()
        p["id"] = p["id"].map(new_id)
        m = pd.DataFrame({"id": a["id"], "sample_size": analyses["sample_size"].to_numpy()})
        parts_a.append(a)
        parts_p.append(p)
        parts_m.append(m)
    return Studyset.from_tables(
        pd.concat(parts_a, ignore_index=True),
        pd.concat(parts_p, ignore_index=True),
        pd.concat(parts_m, ignore_index=True),
        target=ss.grid,
        harmonize=False,
        source_name=f"pain x{k}",
    )


def _neurosynth_store(work: Path, data: Path) -> Path | None:
    """Neurosynth v7 + LDA50 ingested from ``data`` (built once into ``work``)."""
    store = (work / "neurosynth-v7.zarr").resolve()
    if (store / "nimare_dask.json").exists():
        return store
    if not (data / "neurosynth-v7").exists():
        return None
    work.mkdir(parents=True, exist_ok=True)
    cmd = [
        sys.executable, "-m", "nimare_dask.cli.main", "ingest", "neurosynth",
        "--base-url", str(data / "neurosynth-v7"), "--data-dir", str(work / "neurosynth-release"),
        "-o", str(store), "--overwrite",
    ]  # fmt: skip
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    return store


def _neurosynth_store_or_none(args) -> Path | None:
    try:
        return _neurosynth_store(args.work, args.data)
    except subprocess.CalledProcessError as err:
        print(f"could not build the Neurosynth store: {(err.stderr or '').strip()[-500:]}")
        return None


def _copy_store(store: Path, folder: Path) -> Path:
    """A private copy of the store (decoder maps / MA caches written there, not in the cache)."""
    dst = folder / store.name
    shutil.copytree(store, dst)
    return dst


def _amygdala():
    from nimare_dask.workflows import amygdala_roi

    return amygdala_roi()


@contextlib.contextmanager
def _cluster(folder: Path, n_workers: int):
    """A process cluster (1 thread per worker) and a Client on it, both closed on exit."""
    from distributed import Client

    from nimare_dask.testing import process_cluster

    with process_cluster(folder, n_workers=n_workers, nthreads=1) as pc:
        with Client(pc.address, timeout=60) as client:
            yield pc, client


def _warm_workers(client, block) -> None:
    """Run block iterations [0, 2) on every worker (numba compiles or loads its caches there)."""
    from distributed import wait

    from nimare_dask.montecarlo import SeedInfo
    from nimare_dask.montecarlo.backends import call_block

    fn = client.scatter(block, broadcast=True, hash=False)
    futs = [
        client.submit(call_block, fn, 0, 2, SeedInfo(0, "warm-up"), workers=[w], pure=False)
        for w in client.nthreads()
    ]
    wait(futs)
    for f in futs:
        f.result()
    client.cancel([fn, *futs])


def _warm_estimator(client, ss, make_est) -> None:
    """A small fit + FWE on ``ss`` on the cluster, then block iterations on every worker."""
    from nimare_dask.correct import FWECorrector

    est = make_est()
    res = est.fit(ss)
    FWECorrector(method="montecarlo", n_iters=4, voxel_thresh=0.001, random_state=0).transform(res)
    thr = float(est.summarystat_threshold(0.001))
    _warm_workers(client, est._null_block(est.inputs_["studyset"], "fwe", threshold=thr))


# ---------------------------------------------------------------------------- graph meter
def _header_bytes(header) -> int:
    try:
        import msgpack

        return len(msgpack.dumps(header, default=str))
    except Exception:
        return len(repr(header))


def _obj_bytes(obj) -> int:
    """Size of ``obj`` pickled alone (arrays: their buffer size)."""
    if isinstance(obj, np.ndarray):
        return int(obj.nbytes)
    try:
        import cloudpickle

        return len(cloudpickle.dumps(obj, protocol=5))
    except Exception:
        try:
            return len(pickle.dumps(obj, protocol=5))
        except Exception:
            return -1


def _serialized_bytes(value) -> int:
    from distributed.protocol import serialize
    from distributed.utils import nbytes

    try:
        header, frames = serialize(value, on_error="raise")
        return sum(nbytes(f) for f in frames) + _header_bytes(header)
    except Exception:
        return _obj_bytes(value)


class GraphMeter:
    """Counts what a Client sends: update-graph messages and scattered data (per job)."""

    def __init__(self):
        self.reset()
        self._saved = None

    def reset(self) -> None:
        self.graphs: list[int] = []
        self.other: list[int] = []
        self.scatters: list[tuple[int, int]] = []  # (bytes, copies) per call
        self.scattered: list[tuple[int, str, int]] = []  # (bytes, type, copies) per value
        self.largest = None  # (size, expr_ser)

    def __enter__(self):
        from distributed.client import Client

        meter = self
        send, scatter = Client._send_to_scheduler, Client._scatter

        @functools.wraps(send)
        def _send(client, msg):
            if isinstance(msg, dict) and msg.get("op") == "update-graph":
                with contextlib.suppress(Exception):
                    meter._record_graph(msg)
            return send(client, msg)

        @functools.wraps(scatter)
        async def _scatter(client, data, *args, **kwargs):
            with contextlib.suppress(Exception):
                meter._record_scatter(client, data, kwargs)
            return await scatter(client, data, *args, **kwargs)

        self._saved = (send, scatter)
        Client._send_to_scheduler, Client._scatter = _send, _scatter
        return self

    def __exit__(self, *exc):
        from distributed.client import Client

        if self._saved is not None:
            Client._send_to_scheduler, Client._scatter = self._saved
            self._saved = None
        return False

    def _record_graph(self, msg) -> None:
        from distributed.utils import nbytes

        ser = msg["expr_ser"]
        size = sum(nbytes(f) for f in ser.frames) + _header_bytes(ser.header)
        self.graphs.append(size)
        rest = 0
        for k in ("keys", "code", "annotations", "span_metadata"):
            v = msg.get(k)
            v = getattr(v, "data", v)
            rest += _obj_bytes(v) if v is not None else 0
        self.other.append(rest)
        if self.largest is None or size > self.largest[0]:
            self.largest = (size, ser)

    def _record_scatter(self, client, data, kwargs) -> None:
        if isinstance(data, dict):
            values = list(data.values())
        elif isinstance(data, list | tuple | set | frozenset):
            values = list(data)
        else:
            values = [data]
        sizes = [_serialized_bytes(v) for v in values]
        copies = 1
        if kwargs.get("broadcast"):
            with contextlib.suppress(Exception):
                copies = max(1, len(client._scheduler_identity.get("workers", {})))
        self.scatters.append((sum(sizes), copies))
        for v, b in zip(values, sizes, strict=True):
            self.scattered.append((b, type(v).__module__ + "." + type(v).__qualname__, copies))

    def summary(self) -> dict:
        return {
            "n_graphs": len(self.graphs),
            "graph_bytes": int(sum(self.graphs)),
            "max_graph_bytes": int(max(self.graphs, default=0)),
            "other_msg_bytes": int(sum(self.other)),
            "n_scatters": len(self.scatters),
            "scatter_bytes": int(sum(s for s, _ in self.scatters)),
            "scatter_bytes_with_copies": int(sum(s * c for s, c in self.scatters)),
            "scattered": [
                {"bytes": b, "type": t, "copies": c} for b, t, c in sorted(self.scattered)[::-1]
            ],
        }

    def describe_largest(self, top: int = 5) -> dict:
        """Tasks and the largest distinct objects of the job's largest graph."""
        if self.largest is None:
            return {}
        return describe_graph(self.largest[1], top)


def describe_graph(ser, top: int = 5) -> dict:
    """Unpack a serialized graph: task count, largest tasks, largest distinct objects."""
    from dask._task_spec import Alias, DataNode, GraphNode, Task, TaskRef, convert_legacy_graph
    from dask.utils import key_split
    from distributed.protocol import deserialize

    expr = deserialize(ser.header, ser.frames)
    dsk = convert_legacy_graph(dict(expr.__dask_graph__()))
    objects: dict[int, dict] = {}
    small = (int, float, complex, bool, type(None), np.generic, range, slice)

    def leaf(obj, group: str) -> None:
        oid = id(obj)
        if oid in objects:
            objects[oid]["groups"].add(group)
            objects[oid]["refs"] += 1
            return
        size = _obj_bytes(obj)
        what = type(obj).__module__ + "." + type(obj).__qualname__
        if isinstance(obj, np.ndarray):
            what = f"numpy {obj.dtype}{list(obj.shape)}"
        detail = ""
        attrs = getattr(obj, "__dict__", None)
        if size > 10_000 and isinstance(attrs, dict) and attrs:
            sizes = {k: _obj_bytes(v) for k, v in attrs.items()}
            name = max(sizes, key=sizes.get)
            detail = (
                f"largest attribute .{name}: {type(attrs[name]).__name__} {_kb(sizes[name])} kB"
            )
        objects[oid] = {
            "bytes": size,
            "type": what,
            "detail": detail,
            "groups": {group},
            "refs": 1,
            "obj": obj,  # keeps id() unique while walking
        }

    def walk(obj, group: str, depth: int = 0) -> None:
        if depth > 20 or isinstance(obj, (*small, TaskRef, Alias)):
            return
        if isinstance(obj, str | bytes) and len(obj) < 1000:
            return
        if isinstance(obj, Task):
            walk(obj.func, group, depth + 1)
            for a in obj.args:
                walk(a, group, depth + 1)
            for v in obj.kwargs.values():
                walk(v, group, depth + 1)
        elif isinstance(obj, DataNode):
            walk(obj.value, group, depth + 1)
        elif isinstance(obj, GraphNode):
            return
        elif isinstance(obj, list | tuple | set | frozenset) and len(obj) <= 1000:
            for e in obj:
                walk(e, group, depth + 1)
        elif isinstance(obj, dict) and len(obj) <= 1000:
            for v in obj.values():
                walk(v, group, depth + 1)
        elif isinstance(obj, functools.partial):
            walk(obj.func, group, depth + 1)
            for a in obj.args:
                walk(a, group, depth + 1)
            for v in obj.keywords.values():
                walk(v, group, depth + 1)
        else:
            leaf(obj, group)

    task_sizes = []
    for key, node in dsk.items():
        group = key_split(key)
        walk(node, group)
        if len(dsk) <= 20_000:
            task_sizes.append((_obj_bytes(node), group))
    task_sizes.sort(reverse=True)
    groups = Counter(key_split(k) for k in dsk)
    objs = sorted(objects.values(), key=lambda o: -o["bytes"])[:top]
    return {
        "n_tasks": len(dsk),
        "task_groups": dict(groups.most_common(8)),
        "largest_tasks": [{"bytes": b, "group": g} for b, g in task_sizes[:3]],
        "largest_objects": [
            {
                "bytes": o["bytes"],
                "type": o["type"],
                "detail": o["detail"],
                "groups": sorted(o["groups"])[:4],
                "refs": o["refs"],
            }
            for o in objs
        ],
    }


# ---------------------------------------------------------------------------- S3 request log
_LINE = re.compile(r'"(?:\x1b\[[0-9;]*m)*([A-Z]+) (\S+) HTTP/[0-9.]+(?:\x1b\[[0-9;]*m)*" (\d{3}) ')


class S3Counter:
    """Requests in moto's log, by kind (LIST is a GET with ``list-type``)."""

    def __init__(self, server):
        self.server = server

    def parse(self) -> Counter:
        text = self.server.log.read_text(errors="replace") if self.server.log.exists() else ""
        c: Counter = Counter()
        for m in _LINE.finditer(text):
            method, path, status = m.groups()
            kind = "LIST" if method == "GET" and "list-type=" in path else method
            c[kind] += 1
            c["total"] += 1
            if status[0] in "45":
                c[f"{status[0]}xx"] += 1
                # which names are asked for and absent (object basename, or the listed prefix)
                name = path.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1]
                if "prefix=" in path:
                    name = "LIST " + path.split("prefix=", 1)[1].split("&", 1)[0].rstrip("/")
                    name = name.rsplit("/", 1)[-1] if "/" in name else name
                c[f"absent:{method} {name}"] += 1
        return c

    def snapshot(self) -> tuple[Counter, int]:
        time.sleep(0.3)  # the server logs after it answers
        return self.parse(), self.server.n_requests()

    def check(self) -> str:
        """Known boto3 calls: 3 PUT, 1 GET, 1 HEAD (404), 1 LIST = 6 requests."""
        import boto3
        from botocore.exceptions import ClientError

        opts = self.server.storage_options()
        s3 = boto3.client(
            "s3",
            endpoint_url=opts["client_kwargs"]["endpoint_url"],
            aws_access_key_id=opts["key"],
            aws_secret_access_key=opts["secret"],
            region_name="us-east-1",
        )
        bucket = self.server.make_bucket()
        (c0, n0) = self.snapshot()
        for i in range(3):
            s3.put_object(Bucket=bucket, Key=f"k{i}", Body=b"x")
        s3.get_object(Bucket=bucket, Key="k0")["Body"].read()
        with contextlib.suppress(ClientError):
            s3.head_object(Bucket=bucket, Key="missing")
        s3.list_objects_v2(Bucket=bucket)
        (c1, n1) = self.snapshot()
        mine = c1["total"] - c0["total"]
        return (
            f"request counting check (3 PUT + GET + HEAD 404 + LIST = 6): log parsed here {mine}, "
            f"S3Server.n_requests() {n1 - n0}; 4xx seen {c1['4xx'] - c0['4xx']}"
        )


# ---------------------------------------------------------------------------- case: graph
def case_graph(args) -> dict:
    from nimare_dask import open_studyset
    from nimare_dask.correct import FWECorrector
    from nimare_dask.decode.continuous import CorrelationDecoder
    from nimare_dask.diagnostics import Jackknife
    from nimare_dask.meta.cbma import ALE, MKDAChi2
    from nimare_dask.workflows import macm

    pain = _pain()
    ids = list(pain.ids)
    half = len(ids) // 2
    store = _neurosynth_store_or_none(args)
    rows: list[dict] = []
    out: dict = {"jobs": rows}
    state: dict = {}
    print(f"graph: process cluster, 2 workers x 1 thread; {_load()}")
    with (
        tempfile.TemporaryDirectory(prefix="nd-bench-graph-") as tmp,
        _cluster(Path(tmp) / "cluster", 2) as (_pc, client),
        GraphMeter() as meter,
    ):
        tmp = Path(tmp)
        _warm_estimator(client, pain.slice(ids[:4]), lambda: ALE(progress=False))
        ns_copy = _copy_store(store, tmp) if store is not None else None

        def job(name: str, what: str, fn) -> None:
            meter.reset()
            t0 = time.perf_counter()
            row = {"job": name, "what": what}
            try:
                fn()
            except Exception as err:  # report and go on
                row["error"] = f"{type(err).__name__}: {err}"[:300]
                traceback.print_exc(limit=3)
            row["wall_s"] = time.perf_counter() - t0
            row.update(meter.summary())
            if meter.largest is not None:
                try:
                    row["largest"] = meter.describe_largest()
                except Exception as err:
                    row["largest"] = {"error": f"{type(err).__name__}: {err}"[:200]}
            rows.append(row)

        def fwe(res):
            corr = FWECorrector(
                method="montecarlo", n_iters=args.fwe_iters, voxel_thresh=0.001, random_state=0
            )
            return corr.transform(res)

        def ale_fwe():
            state["cres"] = fwe(ALE(progress=False).fit(pain))

        def jackknife():
            jk = Jackknife(target_image=CLUSTER_Z, target_threshold=1.645)
            jk.transform(state["cres"], studyset=pain)

        job("ALE fit", "pain, 21 exp.", lambda: ALE(progress=False).fit(pain))
        job("ALE + FWE", f"pain, {args.fwe_iters} it.", ale_fwe)
        job(
            "MKDAChi2 fit",
            f"pain {half} vs {len(ids) - half}",
            lambda: MKDAChi2().fit(pain.slice(ids[:half]), pain.slice(ids[half:])),
        )
        job("Jackknife", "on ALE + FWE", jackknife)
        job("to_zarr", "ALE + FWE result", lambda: state["cres"].to_zarr(tmp / "result.zarr"))
        for k in (10, 100):
            big = _replicate(pain, k)
            job(
                f"ALE fit x{k}",
                f"pain x{k}, {len(big)} exp.",
                lambda big=big: ALE(progress=False).fit(big),
            )
        if ns_copy is None:
            print(f"graph: Neurosynth jobs skipped ({args.data / 'neurosynth-v7'} not found)")
        else:
            ns = open_studyset(ns_copy)
            dec = CorrelationDecoder(feature_group=FEATURE_GROUP, features=TOPICS)
            job("Decoder fit", f"Neurosynth {len(ns)}, 5 topics", lambda: dec.fit(ns))
            job("Decoder transform", "amygdala ROI", lambda: dec.transform(_amygdala()))
            job(
                "MACM",
                "amygdala, ALE fwhm 10",
                lambda: macm(ns, _amygdala(), estimator=ALE(kernel__fwhm=10, progress=False)),
            )
    _print_graph(rows)
    return out


def _print_graph(rows: list[dict]) -> None:
    print()
    head = (
        f"{'job':<18} {'data':<27} {'graphs':>6} {'total kB':>10} {'max kB':>9} "
        f"{'tasks':>6} {'other kB':>9} {'scat.':>5} {'scat. kB':>9} {'wall s':>7}  <1MB"
    )
    print(head)
    print("-" * len(head))
    for r in rows:
        tasks = r.get("largest", {}).get("n_tasks", "")
        ok = "yes" if r["max_graph_bytes"] < GRAPH_TARGET else "NO"
        print(
            f"{r['job']:<18} {r['what']:<27} {r['n_graphs']:>6} {_kb(r['graph_bytes']):>10} "
            f"{_kb(r['max_graph_bytes']):>9} {tasks:>6} {_kb(r['other_msg_bytes']):>9} "
            f"{r['n_scatters']:>5} {_kb(r['scatter_bytes']):>9} {r['wall_s']:>7.2f}  {ok}"
            + (f"  ERROR {r['error']}" if "error" in r else "")
        )
    print(
        "graphs: update-graph messages; total/max: serialized expression (frames + header); "
        "tasks: in the largest graph;\nother: keys + code + annotations of the messages; "
        "scat.: client.scatter calls and their payload (once; broadcast copies not counted)."
    )
    by = {r["job"]: r for r in rows}
    sizes = [(j, by[j]["max_graph_bytes"]) for j in ("ALE fit", "ALE fit x10", "ALE fit x100")]
    if all(j in by for j, _ in sizes) and sizes[0][1]:
        print(
            "ALE fit largest graph vs data size: "
            + ", ".join(f"{j} {_kb(s)} kB (x{s / sizes[0][1]:.2f})" for j, s in sizes)
        )
    print("\nscattered values (serialized size; broadcast: copied to every worker):")
    for r in rows:
        if r.get("scattered"):
            items = "; ".join(
                f"{_kb(v['bytes'])} kB {v['type'].rsplit('.', 1)[-1]}"
                + (f" x{v['copies']} workers" if v["copies"] > 1 else "")
                for v in r["scattered"][:4]
            )
            print(f"  {r['job']}: {items}")
    print("\nlargest objects in each job's largest graph (pickled alone; shared ones once):")
    for r in rows:
        info = r.get("largest") or {}
        if "error" in info:
            print(f"  {r['job']}: could not unpack ({info['error']})")
            continue
        objs = [o for o in info.get("largest_objects", []) if o["bytes"] >= 1000]
        if not objs:
            print(f"  {r['job']}: nothing over 1 kB ({info.get('n_tasks', 0)} tasks)")
            continue
        n_show = 5 if r["max_graph_bytes"] >= GRAPH_TARGET else 2
        groups = ", ".join(f"{g} x{n}" for g, n in list(info.get("task_groups", {}).items())[:4])
        print(f"  {r['job']} ({info.get('n_tasks')} tasks: {groups}):")
        for o in objs[:n_show]:
            print(
                f"      {_kb(o['bytes']):>9} kB  {o['type']} in {', '.join(o['groups'])} "
                f"({o['refs']} refs){'; ' + o['detail'] if o['detail'] else ''}"
            )


# ---------------------------------------------------------------------------- case: tasks
def _noop(x=None):
    return x


def _noop_block(start, stop, seed):
    return {"x": np.zeros(stop - start)}


def case_tasks(args) -> dict:
    import dask
    import dask.array as da
    from distributed import wait

    from nimare_dask.montecarlo import run_blocks

    n = args.n_tasks
    out: dict = {"n_tasks": n}
    print(f"tasks: process cluster, 2 workers x 1 thread; {_load()}")
    with (
        tempfile.TemporaryDirectory(prefix="nd-bench-tasks-") as tmp,
        _cluster(Path(tmp) / "cluster", 2) as (_pc, client),
    ):
        client.gather(client.map(_noop, range(200), pure=False))  # warm-up
        t0 = time.perf_counter()
        futs = client.map(_noop, range(n), pure=False)
        client.gather(futs)
        out["map_s"] = time.perf_counter() - t0
        del futs

        x = da.ones(n, chunks=1) + 1
        (xo,) = dask.optimize(x)
        out["array_tasks"] = len(xo.__dask_graph__())
        t0 = time.perf_counter()
        y = x.persist()
        wait(y)
        out["array_s"] = time.perf_counter() - t0
        del y

        t0 = time.perf_counter()
        mc = run_blocks(
            _noop_block, n, 1, random_state=0, progress=False, client=client, name="noop-block"
        )
        out["engine_s"] = time.perf_counter() - t0
        out["engine_blocks"] = mc.n_blocks_computed

        k = 200
        t0 = time.perf_counter()
        for i in range(k):
            client.submit(_noop, i, pure=False).result()
        out["roundtrip_s"] = (time.perf_counter() - t0) / k
    rows = [
        ("client.map no-op", n, out["map_s"]),
        (f"dask.array {n} chunks (+1)", out["array_tasks"], out["array_s"]),
        ("engine run_blocks, block=1", out["engine_blocks"], out["engine_s"]),
        ("submit().result() in turn", 200, out["roundtrip_s"] * 200),
    ]
    print()
    head = f"{'what':<30} {'tasks':>7} {'wall s':>8} {'ms/task':>8}"
    print(head)
    print("-" * len(head))
    for what, k, s in rows:
        print(f"{what:<30} {k:>7} {s:>8.2f} {1e3 * s / max(k, 1):>8.3f}")
    out["per_task_ms"] = {w: 1e3 * s / max(k, 1) for w, k, s in rows}
    out["engine_block_overhead_s"] = out["engine_s"] / max(out["engine_blocks"], 1)
    print(
        "engine: the Monte Carlo engine keeps 2 blocks per worker thread in flight, one submit per "
        "block; its ms/task is the per-block overhead used by case 'model'."
    )
    return out


# ---------------------------------------------------------------------------- case: s3
def case_s3(args) -> dict:
    from nimare_dask import open_studyset
    from nimare_dask.correct import FWECorrector
    from nimare_dask.decode.continuous import CorrelationDecoder
    from nimare_dask.meta.cbma import ALE
    from nimare_dask.results import open_result
    from nimare_dask.testing import s3_server

    pain = _pain()
    store = _neurosynth_store_or_none(args)
    rows: list[dict] = []
    out: dict = {"jobs": rows}
    print(f"s3: moto S3 server + process cluster, 2 workers x 1 thread; {_load()}")
    with (
        tempfile.TemporaryDirectory(prefix="nd-bench-s3-") as tmp,
        s3_server(Path(tmp) / "s3") as server,
        _cluster(Path(tmp) / "cluster", 2) as (_pc, client),
    ):
        counter = S3Counter(server)
        out["check"] = counter.check()
        print(out["check"])
        opts = server.storage_options()
        bucket = server.make_bucket()
        _warm_estimator(client, pain.slice(list(pain.ids)[:4]), lambda: ALE(progress=False))
        state: dict = {}

        def job(name: str, fn) -> None:
            c0, n0 = counter.snapshot()
            t0 = time.perf_counter()
            row = {"job": name}
            try:
                row["result"] = fn() or ""
            except Exception as err:
                row["error"] = f"{type(err).__name__}: {err}"[:300]
                traceback.print_exc(limit=3)
            row["wall_s"] = time.perf_counter() - t0
            c1, n1 = counter.snapshot()
            diff = {k: c1[k] - c0[k] for k in c1 if c1[k] - c0[k]}
            row["requests"] = {k: v for k, v in diff.items() if not k.startswith("absent:")}
            absent = Counter({k[7:]: v for k, v in diff.items() if k.startswith("absent:")})
            row["absent"] = dict(absent.most_common(4))
            row["n_requests_pkg"] = n1 - n0
            rows.append(row)

        pain_url = f"s3://{bucket}/pain.zarr"
        res_url = f"s3://{bucket}/pain-ale.zarr"

        def open_pain():
            state["pain"] = open_studyset(pain_url, storage_options=opts)
            return f"{len(state['pain'])} analyses"

        def ale_fwe():
            res = ALE(progress=False).fit(state["pain"])
            corr = FWECorrector(
                method="montecarlo", n_iters=args.fwe_iters, voxel_thresh=0.001, random_state=0
            )
            state["cres"] = corr.transform(res)

        def open_res():
            state["back"] = open_result(res_url, storage_options=opts)
            return f"{len(state['back'].maps_names)} maps"

        def read_map():
            z = state["back"].get_map("z", return_type="array")
            return f"z max {float(np.max(z)):.2f}"

        job("pain: Studyset.to_zarr", lambda: pain.to_zarr(pain_url, storage_options=opts) and "")
        job("pain: open_studyset", open_pain)
        job(f"pain: ALE + FWE ({args.fwe_iters} it.)", ale_fwe)
        job(
            "pain: result to_zarr",
            lambda: state["cres"].to_zarr(res_url, storage_options=opts) and "",
        )
        job("pain: open_result", open_res)
        job("pain: result get_map('z')", read_map)
        if store is None:
            print(f"s3: Neurosynth jobs skipped ({args.data / 'neurosynth-v7'} not found)")
        else:
            ns_url = f"s3://{bucket}/neurosynth-v7.zarr"
            ns_local = open_studyset(store)

            def open_ns():
                state["ns"] = open_studyset(ns_url, storage_options=opts)
                state["ids"] = state["ns"].get_studies_by_mask(_amygdala())
                return f"{len(state['ns'])} analyses, {len(state['ids'])} in the amygdala"

            def dec_fit():
                state["dec"] = CorrelationDecoder(feature_group=FEATURE_GROUP, features=TOPICS)
                state["dec"].fit(state["ns"])
                return f"{len(state['dec'].features_)} maps"

            def dec_transform():
                r = state["dec"].transform(_amygdala())
                return f"top {r['r'].idxmax()}"

            job(
                "NS: Studyset.to_zarr",
                lambda: ns_local.to_zarr(ns_url, storage_options=opts) and "",
            )
            job("NS: open + by_mask", open_ns)
            job("NS: decoder fit (5)", dec_fit)
            job("NS: decoder transform", dec_transform)
    print()
    kinds = ["GET", "LIST", "HEAD", "PUT", "POST", "DELETE", "4xx", "5xx"]
    head = (
        f"{'job':<28} {'requests':>8} {'pkg':>6} "
        + " ".join(f"{k:>6}" for k in kinds)
        + f" {'wall s':>7}  result"
    )
    print(head)
    print("-" * len(head))
    for r in rows:
        q = r["requests"]
        print(
            f"{r['job']:<28} {q.get('total', 0):>8} {r['n_requests_pkg']:>6} "
            + " ".join(f"{q.get(k, 0):>6}" for k in kinds)
            + f" {r['wall_s']:>7.2f}  {r.get('result', '')}"
            + (f" ERROR {r['error']}" if "error" in r else "")
        )
    print(
        "requests: parsed here from moto's log (every request line, any status); pkg: "
        "S3Server.n_requests() (counts 2xx/3xx/4xx only); LIST = GET ?list-type; 4xx mostly "
        "HEAD/GET of absent keys."
    )
    print("most requested absent keys (4xx) per job:")
    for r in rows:
        if r.get("absent"):
            print(f"  {r['job']}: " + ", ".join(f"{k} x{v}" for k, v in r["absent"].items()))
    return out


# ---------------------------------------------------------------------------- case: scaling
def _mc_info(est) -> dict:
    mc = est.montecarlo_["correct_fwe_montecarlo"]
    return {
        "block_size": int(mc.block_size),
        "n_blocks": int(mc.n_blocks_computed),
        "block_s_mean": float(mc.timing["block_s_mean"]),
        "calibration_s": float(mc.timing["calibration_s"]),
        "mc_wall_s": float(mc.timing["wall_s"]),
        "n_iters": int(mc.n_iters_run),
    }


def case_scaling(args) -> dict:
    from nimare_dask.correct import FWECorrector
    from nimare_dask.meta.cbma import ALE

    n = args.iters
    pain = _pain()
    out: dict = {"n_iters": n}
    nulls = {}
    print(f"scaling: ALE + FWE on pain, {n} iterations, process cluster; {_load()}")
    corr = FWECorrector(method="montecarlo", n_iters=n, voxel_thresh=0.001, random_state=0)
    with (
        tempfile.TemporaryDirectory(prefix="nd-bench-scaling-") as tmp,
        _cluster(Path(tmp) / "cluster", 1) as (pc, client),
    ):
        est = ALE(progress=False)
        res = est.fit(pain)
        thr = float(est.summarystat_threshold(0.001))
        block = est._null_block(pain, "fwe", threshold=thr)
        for n_workers in (1, 2):
            if n_workers == 2:
                pc.start_worker()
                client.wait_for_workers(2, timeout=90)
            _warm_workers(client, block)
            FWECorrector(method="montecarlo", n_iters=8, voxel_thresh=0.001).transform(res)
            t0 = time.perf_counter()
            cres = corr.transform(res)
            wall = time.perf_counter() - t0
            out[f"workers_{n_workers}"] = {"wall_s": wall, **_mc_info(est)}
            nulls[n_workers] = {k: np.asarray(v) for k, v in cres.null_distributions.items()}
            print(f"  {n_workers} worker(s): {wall:.2f} s; {_load()}")
    same = set(nulls[1]) == set(nulls[2]) and all(
        np.array_equal(nulls[1][k], nulls[2][k]) for k in nulls[1]
    )
    t1, t2 = out["workers_1"]["wall_s"], out["workers_2"]["wall_s"]
    out.update(speedup=t1 / t2, identical=bool(same), null_keys=sorted(nulls[1]))
    print()
    head = f"{'workers':>7} {'wall s':>8} {'block':>6} {'blocks':>7} {'s/block':>8} {'ms/iter':>8}"
    print(head)
    print("-" * len(head))
    for w in (1, 2):
        r = out[f"workers_{w}"]
        print(
            f"{w:>7} {r['wall_s']:>8.2f} {r['block_size']:>6} {r['n_blocks']:>7} "
            f"{r['block_s_mean']:>8.3f} {1e3 * r['block_s_mean'] / r['block_size']:>8.3f}"
        )
    print(
        f"speed-up 2 vs 1 worker: x{out['speedup']:.2f} (target >= 1.8); identical nulls "
        f"({len(nulls[1])} entries of result.null_distributions): {same}"
    )
    return out


# ---------------------------------------------------------------------------- case: model
def engine_block_size(
    n_iters: int, slots: int, per_iter: float, calibrated: int | None = None, target: float = 0.5
) -> int:
    """The block size ``MonteCarloRun._calibrate`` picks: about half a second (``calibrated``:
    the size it picked in a measured run), capped so that every slot gets >= 4 blocks."""
    cap = max(1, math.ceil(n_iters / (4 * slots)))
    size = calibrated if calibrated else int(round(target / max(per_iter, 1e-7)))
    return min(max(size, 1), cap)


def model_wall(
    p: int,
    n_iters: int,
    per_iter: float,
    setup: float,
    nbytes: float,
    overhead: float,
    calibrated: int | None = None,
    bandwidth: float = BANDWIDTH,
) -> dict:
    """wall(P) = setup + bytes/bandwidth + calibration + ceil(blocks/P) * block + blocks * o."""
    size = engine_block_size(n_iters, p, per_iter, calibrated)
    n_blocks = math.ceil(n_iters / size)
    terms = {
        "setup": setup,
        "transfer": nbytes / bandwidth,
        "calibration": 5 * per_iter + 2 * overhead,  # blocks [0,1) and [1,5), one at a time
        "compute": math.ceil(n_blocks / p) * size * per_iter,
        "overhead": n_blocks * overhead,
    }
    return {"P": p, "block_size": size, "n_blocks": n_blocks, **terms, "wall": sum(terms.values())}


def _previous(case: str) -> dict | None:
    try:
        return json.loads(RESULTS.read_text()).get(case)
    except (OSError, ValueError):
        return None


def case_model(args, results: dict) -> dict:
    from nimare_dask import open_studyset
    from nimare_dask.correct import FWECorrector
    from nimare_dask.meta.cbma import ALE
    from nimare_dask.workflows import macm

    store = _neurosynth_store_or_none(args)
    if store is None:
        print(f"model: skipped ({args.data / 'neurosynth-v7'} not found)")
        return {}
    tasks = results.get("tasks") or _previous("tasks")
    source_tasks = "this run" if "tasks" in results else "benchmarks/results (earlier run)"
    if not tasks:
        print("model: no 'tasks' measurement yet; measuring a short one (1,000 tasks)")
        sub = argparse.Namespace(**{**vars(args), "n_tasks": 1000})
        tasks = case_tasks(sub)
        source_tasks = "measured now (1,000 tasks)"
    o = float(tasks["engine_block_overhead_s"])
    out: dict = {"overhead_s": o, "overhead_from": source_tasks}
    n = args.model_iters
    print(f"model: amygdala MACM null on 1 worker (1 thread), {n} iterations; {_load()}")
    pain = _pain()
    with (
        tempfile.TemporaryDirectory(prefix="nd-bench-model-") as tmp,
        _cluster(Path(tmp) / "cluster", 1) as (_pc, client),
        GraphMeter() as meter,
    ):
        ns_path = _copy_store(store, Path(tmp))
        _warm_estimator(client, pain.slice(list(pain.ids)[:4]), lambda: ALE(progress=False))
        ns = open_studyset(ns_path)
        roi = _amygdala()
        t0 = time.perf_counter()
        res = macm(ns, roi, estimator=ALE(kernel__fwhm=10, progress=False))
        out["selection_fit_s"] = time.perf_counter() - t0
        out["n_selected"] = int(len(res.tables["selected_studies"]))
        est = res.estimator
        # warm-up of the MACM block itself (2 iterations), then the measured run
        FWECorrector(method="montecarlo", n_iters=2, voxel_thresh=0.001, random_state=1).transform(
            res
        )
        meter.reset()
        t0 = time.perf_counter()
        FWECorrector(method="montecarlo", n_iters=n, voxel_thresh=0.001, random_state=0).transform(
            res
        )
        out["correct_s"] = time.perf_counter() - t0
        mc = _mc_info(est)
        out["mc"] = mc
        out["scatter_bytes"] = max((s for s, _ in meter.scatters), default=0)
        thr = float(est.summarystat_threshold(0.001))
        block = est._null_block(est.inputs_["studyset"], "fwe", threshold=thr)
        out["pickle_bytes"] = _obj_bytes(block)
    per_iter = mc["block_s_mean"] / mc["block_size"]
    one_off_correct = out["correct_s"] - mc["mc_wall_s"]  # threshold + maps
    setup = out["selection_fit_s"] + one_off_correct
    nbytes = max(out["scatter_bytes"], out["pickle_bytes"])
    # the engine's own pick (0.5 s / calibrated time per iteration), unless the short run capped it
    capped = mc["block_size"] >= engine_block_size(n, 1, per_iter, 10**9)
    calibrated = None if capped else mc["block_size"]
    out.update(per_iter_s=per_iter, setup_s=setup, bytes=nbytes, calibrated_block=calibrated)
    print(
        f"\nmeasured on 1 worker: {out['n_selected']} studies selected; selection + ALE fit "
        f"{out['selection_fit_s']:.2f} s; FWE run of {mc['n_iters']} iterations "
        f"{out['correct_s']:.2f} s (engine {mc['mc_wall_s']:.2f} s, of which calibration "
        f"{mc['calibration_s']:.2f} s; threshold + maps {one_off_correct:.2f} s)\n"
        f"  block size {mc['block_size']} (calibrated by the engine{', capped' if capped else ''})"
        f", {mc['n_blocks']} blocks, {mc['block_s_mean']:.3f} s per block -> "
        f"{1e3 * per_iter:.1f} ms per iteration\n"
        f"  block function: scattered {_kb(out['scatter_bytes'])} kB, pickled alone "
        f"{_kb(out['pickle_bytes'])} kB; per-block overhead o = {1e3 * o:.2f} ms (case tasks, "
        f"{source_tasks})"
    )
    print(
        f"\nmodel, {MODEL_ITERS} iterations: wall(P) = setup + bytes / {BANDWIDTH / 1e9:.0f} GB/s "
        "+ calibration (5 iterations, serial) + ceil(blocks / P) x block time + blocks x o\n"
        "  block size: the engine's pick above, capped at ceil(n / 4P); per-iteration time as on "
        "one worker (no memory-bandwidth contention);\n  o is paid serially by the client and "
        "scheduler and assumed not hidden behind compute (an upper bound); bandwidth assumed "
        f"{BANDWIDTH / 1e9:.0f} GB/s per worker"
    )
    table = _print_model(
        [model_wall(p, MODEL_ITERS, per_iter, setup, nbytes, o, calibrated) for p in MODEL_CORES]
    )
    out["model"] = table
    m64 = table[-1]
    terms = {k: m64[k] for k in ("setup", "transfer", "calibration", "compute", "overhead")}
    big = max(terms, key=terms.get)
    size = m64["block_size"]
    cross = size * per_iter / o if o > 0 else float("inf")
    print(
        f"at 64 cores: {big} is the largest term ({terms[big]:.1f} s of {m64['wall']:.1f} s): "
        f"compute {terms['compute']:.1f} s = {math.ceil(m64['n_blocks'] / 64)} rounds of "
        f"{size}-iteration blocks, per-block overhead {terms['overhead']:.1f} s = "
        f"{m64['n_blocks']} blocks x {1e3 * o:.1f} ms, serial setup {terms['setup']:.1f} s; "
        f"speed-up vs 1 core x{table[0]['wall'] / m64['wall']:.1f}.\n"
        f"  The per-block overhead overtakes compute beyond P ~ {cross:.0f} cores at this block "
        f"size (larger blocks push it out: blocks of k iterations give P ~ k x {per_iter:.3f} s / o)."
        f"\n  Transfer: {_kb(nbytes)} kB per worker; even if one link sent all 64 copies: "
        f"{64 * nbytes / BANDWIDTH:.3f} s."
    )
    alt = model_wall(64, MODEL_ITERS, per_iter, setup, nbytes, o)
    if alt["block_size"] != m64["block_size"]:
        alt = model_wall(64, MODEL_ITERS, per_iter, setup, nbytes, o)
        print(
            f"  With the block size from the mean time per iteration instead "
            f"({alt['block_size']} iterations): wall(64) {alt['wall']:.1f} s "
            f"(compute {alt['compute']:.1f} s, overhead {alt['overhead']:.1f} s)."
        )
    out["cross_check"] = _cross_check(results, o)
    return out


def _print_model(table: list[dict]) -> list[dict]:
    head = (
        f"{'P':>3} {'block':>6} {'blocks':>7} {'setup s':>8} {'bytes s':>8} {'calib s':>8} "
        f"{'compute s':>10} {'overhead s':>10} {'wall s':>9} {'wall min':>9}"
    )
    print(head)
    print("-" * len(head))
    for m in table:
        print(
            f"{m['P']:>3} {m['block_size']:>6} {m['n_blocks']:>7} {m['setup']:>8.1f} "
            f"{m['transfer']:>8.3f} {m['calibration']:>8.2f} {m['compute']:>10.1f} "
            f"{m['overhead']:>10.1f} {m['wall']:>9.1f} {m['wall'] / 60:>9.2f}"
        )
    return table


def _cross_check(results: dict, o: float) -> dict:
    """The model's prediction of case scaling's runs (pain), against their measured walls."""
    scaling = results.get("scaling") or _previous("scaling")
    if not scaling or "workers_1" not in scaling:
        print("cross-check: no 'scaling' measurement (run --case scaling first)")
        return {}
    source = "this run" if "scaling" in results else "benchmarks/results (earlier run)"
    w1, w2 = scaling["workers_1"], scaling["workers_2"]
    n = scaling["n_iters"]
    per_iter_1 = w1["block_s_mean"] / w1["block_size"]
    fixed = w1["wall_s"] - w1["mc_wall_s"]  # threshold + maps (serial)
    print(
        f"\ncross-check with case scaling (pain, {n} iterations, {source}): time per iteration "
        f"{1e3 * per_iter_1:.2f} ms and fixed part {fixed:.2f} s from the 1-worker run, the "
        "block size each run used, o as above"
    )
    head = (
        f"{'P':>3} {'block':>6} {'blocks':>7} {'ms/iter':>8} {'model s':>8} {'measured s':>10} "
        f"{'meas/model':>10} {'model*':>8}"
    )
    print(head)
    print("-" * len(head))
    out = {}
    for p, w in ((1, w1), (2, w2)):
        own = w["block_s_mean"] / w["block_size"]
        m = model_wall(p, n, per_iter_1, fixed, 0.0, o, w["block_size"])
        m_own = model_wall(p, n, own, fixed, 0.0, o, w["block_size"])
        out[p] = {"model_s": m["wall"], "measured_s": w["wall_s"], "model_own_s": m_own["wall"]}
        print(
            f"{p:>3} {w['block_size']:>6} {m['n_blocks']:>7} {1e3 * own:>8.2f} {m['wall']:>8.2f} "
            f"{w['wall_s']:>10.2f} {w['wall_s'] / m['wall']:>10.2f} {m_own['wall']:>8.2f}"
        )
    print(
        "model*: the same model with the time per iteration measured in that run (a mismatch "
        "between 'model' and 'model*' is per-iteration slow-down: cores shared, not overhead)"
    )
    return out


# ---------------------------------------------------------------------------- driver
def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--case", nargs="+", choices=CASES, default=list(CASES))
    parser.add_argument("--iters", type=int, default=10000, help="scaling case iterations")
    parser.add_argument("--fwe-iters", type=int, default=200, help="FWE iterations (graph, s3)")
    parser.add_argument("--n-tasks", type=int, default=5000, help="trivial tasks (tasks case)")
    parser.add_argument(
        "--model-iters", type=int, default=64, help="MACM null iterations measured (model)"
    )
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--work", type=Path, default=DEFAULT_WORK, help="cache of inputs")
    args = parser.parse_args(argv)
    args.work = args.work.resolve()
    args.data = args.data.resolve()
    _quiet()
    for line in _machine():
        print(line)
    results: dict = {}
    t_all = time.perf_counter()
    # scaling before model (the model cross-checks it), whatever the order asked
    order = [c for c in CASES if c in args.case]
    for case in order:
        print(f"\n=== {case} " + "=" * 60)
        t0 = time.perf_counter()
        try:
            if case == "model":
                results[case] = case_model(args, results)
            else:
                results[case] = globals()[f"case_{case}"](args)
        except Exception as err:
            traceback.print_exc()
            results[case] = {"error": f"{type(err).__name__}: {err}"}
            print(f"{case}: failed: {type(err).__name__}: {err}")
        print(f"({case}: {time.perf_counter() - t0:.0f} s; {_load()})")
        _save(case, results[case])
    print(f"\ntotal {time.perf_counter() - t_all:.0f} s; results in {RESULTS}")
    return 0


def _save(case: str, value: dict) -> None:
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    try:
        saved = json.loads(RESULTS.read_text())
    except (OSError, ValueError):
        saved = {}
    saved[case] = {**value, "saved": time.strftime("%Y-%m-%d %H:%M:%S")}
    RESULTS.write_text(json.dumps(saved, indent=1, default=str))


if __name__ == "__main__":
    sys.exit(main())
