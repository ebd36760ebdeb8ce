"""The Monte Carlo engine: run a block function over ``[0, n_iters)`` in blocks, anywhere.

See the package docstring (:mod:`nimare_dask.montecarlo`) for the determinism guarantees.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from nimare_dask.montecarlo.backends import DistributedBackend, ThreadBackend, active_client
from nimare_dask.montecarlo.checkpoint import BlockCheckpoint, manifest
from nimare_dask.montecarlo.early_stop import EarlyStopping
from nimare_dask.montecarlo.seeds import SeedInfo, resolve_random_state

__all__ = ["ENGINE_VERSION", "MonteCarloResult", "MonteCarloRun", "plan_blocks", "run_blocks"]

#: Recorded in checkpoints; bump when a change alters what blocks contain.
ENGINE_VERSION = "1"

Reducer = Literal["concat", "sum"]
BlockFn = Callable[[int, int, SeedInfo], Mapping[str, Any]]


#: Default aimed-for block duration per backend (see ``MonteCarloRun``'s target_block_seconds).
TARGET_BLOCK_SECONDS = {"threads": 0.5, "distributed": 2.0}


def plan_blocks(n_iters: int, block_size: int) -> list[tuple[int, int]]:
    """Split ``[0, n_iters)`` into consecutive ``[start, stop)`` blocks of ``block_size``.

    Parameters
    ----------
    n_iters : int
        Number of iterations (>= 1).
    block_size : int
        Iterations per block (>= 1); the last block may be shorter.

    Returns
    -------
    list of (int, int)
    """
    if n_iters < 1 or block_size < 1:
        raise ValueError(f"n_iters and block_size must be >= 1, got {n_iters}, {block_size}")
    return [(s, min(s + block_size, n_iters)) for s in range(0, n_iters, block_size)]


@dataclass(frozen=True)
class MonteCarloResult:
    """What a Monte Carlo run produced.

    Attributes
    ----------
    arrays : dict of str to numpy.ndarray
        Each output of the block function: concatenated over iterations in iteration order
        (leading dimension ``n_iters_run``) or summed over blocks (``reducer="sum"``).
    n_iters : int
        Iterations asked for.
    n_iters_run : int
        Iterations in ``arrays`` (less than ``n_iters`` after an early stop).
    stopped_early : bool
        Whether the early-stopping rule ended the run.
    reason : str
        Why the run ended, in words.
    random_state : int
        The seed used (drawn fresh when None was given): pass it back to reproduce the run.
    stream : str
        The random stream name.
    block_size : int
        Iterations per block.
    n_blocks_computed : int
        Blocks computed by this call (the rest came from the checkpoint).
    n_blocks_loaded : int
        Blocks read from the checkpoint.
    timing : dict of str to float
        ``wall_s`` (the whole call), ``calibration_s``, ``block_s_mean`` (time inside the block
        function, per block computed).
    early_stop_details : dict
        Per checked output: ``(quantile value, standard error)`` at the last check (empty
        without early stopping).
    checkpoint : str or None
        Where blocks were checkpointed.
    backend : str
        ``"threads"`` or ``"distributed"``.
    """

    arrays: dict[str, np.ndarray]
    n_iters: int
    n_iters_run: int
    stopped_early: bool
    reason: str
    random_state: int
    stream: str
    block_size: int
    n_blocks_computed: int
    n_blocks_loaded: int
    timing: dict[str, float] = field(default_factory=dict)
    early_stop_details: dict[str, tuple[float, float]] = field(default_factory=dict)
    checkpoint: str | None = None
    backend: str = "threads"

    def __getitem__(self, key: str) -> np.ndarray:
        return self.arrays[key]

    def __repr__(self) -> str:
        keys = ", ".join(f"{k}{tuple(v.shape)}" for k, v in self.arrays.items())
        return (
            f"MonteCarloResult({keys}; n_iters_run={self.n_iters_run}/{self.n_iters}, "
            f"stopped_early={self.stopped_early}, random_state={self.random_state}, "
            f"block_size={self.block_size})"
        )


class _Outputs:
    """Validates block outputs against the reducer spec and the first block's layout."""

    def __init__(self, reducer: Reducer | Mapping[str, Reducer], name: str):
        if isinstance(reducer, str):
            self._default, self._per_key = reducer, {}
        else:
            self._default, self._per_key = "concat", dict(reducer)
        for kind in [self._default, *self._per_key.values()]:
            if kind not in ("concat", "sum"):
                raise ValueError(f'reducer must be "concat" or "sum", got {kind!r}')
        self._name = name
        self.layout: dict[str, tuple[str, tuple[int, ...]]] | None = None

    def kind(self, key: str) -> str:
        return self._per_key.get(key, self._default)

    @property
    def may_sum(self) -> bool:
        return self._default == "sum" or "sum" in self._per_key.values()

    def validate(self, out: Any, start: int, stop: int) -> dict[str, np.ndarray]:
        where = f"block {self._name}-{start}-{stop}"
        if not isinstance(out, Mapping) or not out:
            raise TypeError(
                f"block_fn must return a non-empty dict of numpy arrays; {where} returned "
                f"{type(out).__name__}"
            )
        arrays: dict[str, np.ndarray] = {}
        layout: dict[str, tuple[str, tuple[int, ...]]] = {}
        for key, value in out.items():
            if not isinstance(key, str) or not key or "/" in key or key.startswith("__"):
                raise ValueError(f"{where}: output name {key!r} is not a valid array name")
            arr = np.asarray(value)
            if arr.dtype.kind not in "biuf":
                raise TypeError(f"{where}: output {key!r} has dtype {arr.dtype}, not numeric")
            kind = self.kind(key)
            if kind == "concat":
                if arr.ndim == 0 or arr.shape[0] != stop - start:
                    raise ValueError(
                        f"{where}: output {key!r} has shape {arr.shape}; a concatenated output "
                        f"needs a leading dimension of {stop - start} (one row per iteration)"
                    )
                layout[key] = (kind, arr.shape[1:])
            else:
                layout[key] = (kind, arr.shape)
            arrays[key] = arr
        if self.layout is None:
            self.layout = layout
        elif layout != self.layout:
            raise ValueError(
                f"{where} returned outputs {_describe(layout)}, but earlier blocks returned "
                f"{_describe(self.layout)}"
            )
        return arrays

    def assemble(
        self, done: Mapping[tuple[int, int], Mapping[str, np.ndarray]], spans, upto: int
    ) -> dict[str, np.ndarray]:
        spans = [s for s in spans if s[0] < upto]
        result = {}
        for key, (kind, _) in (self.layout or {}).items():
            parts = [done[s][key] for s in spans]
            if kind == "concat":
                result[key] = np.concatenate(parts, axis=0)[:upto]
            else:
                first = parts[0]
                total = first.astype(np.int64 if first.dtype.kind in "biu" else first.dtype)
                for p in parts[1:]:
                    total += p
                result[key] = total
        return result


def _describe(layout: Mapping[str, tuple[str, tuple[int, ...]]]) -> str:
    return ", ".join(f"{k} ({kind}, shape {shape})" for k, (kind, shape) in sorted(layout.items()))


class MonteCarloRun:
    """A seeded Monte Carlo run of ``n_iters`` iterations, computed in blocks.

    Parameters
    ----------
    block_fn : callable
        ``block_fn(start, stop, seed_info) -> dict`` of numpy arrays for iterations
        ``start .. stop - 1``. Iteration ``i`` must draw its random numbers from
        ``seed_info.rng(i)`` only, and the function must be pure (same output for the same
        arguments), so any block partition, scheduler, or recomputation after a worker failure
        gives the same numbers. Return only what inference needs (max statistic, max cluster
        size and mass, histogram counts).
    n_iters : int
        Number of iterations.
    block_size : int, optional
        Iterations per block. Default: calibrated by timing a small block so that a block takes
        about ``target_block_seconds`` (an existing checkpoint's block size is reused).
    random_state : int or None
        Seed. None draws a fresh one, recorded in the result (and in the checkpoint, whose seed
        a restart with None reuses).
    stream : str
        Name of the random stream (e.g. ``"correct_fwe_montecarlo"``).
    reducer : {"concat", "sum"} or mapping of output name to those
        How outputs combine across blocks: ``"concat"`` stacks per-iteration rows in iteration
        order; ``"sum"`` adds per-block totals (histogram counts; identical for any block size
        only for integer counts). Unlisted outputs of a mapping are concatenated.
    checkpoint : str, pathlib.Path or zarr.Group, optional
        A Zarr v3 group (folder or fsspec URL) where each finished block is saved; a run with
        the same arguments resumes from it (:mod:`nimare_dask.montecarlo.checkpoint`).
    early_stop : EarlyStopping, optional
        Stop once the null quantiles are precise enough (deterministically).
    progress : bool
        Show a tqdm progress bar.
    client : distributed.Client or "threads", optional
        Where blocks run. Default: the active ``distributed`` client if there is one, else a
        local thread pool. ``"threads"`` forces the thread pool.
    name : str
        Task-name prefix (Dask keys ``<name>-<start>-<stop>-<token>``) and progress-bar label.
    inputs_fingerprint : str
        The caller's fingerprint of everything the blocks depend on besides the seed (studyset,
        kernel, threshold, grid ...), recorded in and checked against the checkpoint.
    storage_options : dict, optional
        fsspec options for a checkpoint URL.
    n_threads : int, optional
        Threads of the local pool (ignored with a distributed client).
    target_block_seconds : float, optional
        Aimed-for duration of one block when calibrating the block size. Default: 0.5 s on
        local threads (a responsive progress bar, little waiting at the end) and 2 s on a
        ``distributed`` cluster, where every block costs a submit and a result round trip
        (~6-10 ms measured by ``benchmarks/bench_cluster.py --case tasks``), paid by the client
        in turn: with 0.5 s blocks that overhead would match the compute beyond ~60 workers.
    """

    def __init__(
        self,
        block_fn: BlockFn,
        n_iters: int,
        *,
        block_size: int | None = None,
        random_state: int | None = None,
        stream: str = "montecarlo",
        reducer: Reducer | Mapping[str, Reducer] = "concat",
        checkpoint: str | Path | Any | None = None,
        early_stop: EarlyStopping | None = None,
        progress: bool = True,
        client: Any = None,
        name: str = "mc-null-block",
        inputs_fingerprint: str = "",
        storage_options: dict | None = None,
        n_threads: int | None = None,
        target_block_seconds: float | None = None,
    ):
        if not callable(block_fn):
            raise TypeError("block_fn must be callable: block_fn(start, stop, seed_info)")
        if isinstance(n_iters, bool) or int(n_iters) != n_iters or n_iters < 1:
            raise ValueError(f"n_iters must be a positive integer, got {n_iters!r}")
        if block_size is not None and (int(block_size) != block_size or block_size < 1):
            raise ValueError(f"block_size must be a positive integer or None, got {block_size!r}")
        if early_stop is not None and not isinstance(early_stop, EarlyStopping):
            raise TypeError("early_stop must be an EarlyStopping instance or None")
        if random_state is not None:
            resolve_random_state(random_state)  # type check now, not after calibration
        self.block_fn = block_fn
        self.n_iters = int(n_iters)
        self.block_size = None if block_size is None else int(block_size)
        self.random_state = random_state
        self.stream = str(stream)
        self.reducer = reducer
        self.checkpoint = checkpoint
        self.early_stop = early_stop
        self.progress = bool(progress)
        self.client = client
        self.name = str(name)
        self.inputs_fingerprint = str(inputs_fingerprint)
        self.storage_options = storage_options
        self.n_threads = n_threads
        if target_block_seconds is not None and not float(target_block_seconds) > 0:
            raise ValueError(f"target_block_seconds must be positive, got {target_block_seconds}")
        self.target_block_seconds = (
            None if target_block_seconds is None else float(target_block_seconds)
        )

    # ------------------------------------------------------------------ helpers
    def _backend(self, seed: SeedInfo):
        client = self.client
        if isinstance(client, str):
            if client != "threads":
                raise ValueError(
                    f'client must be a distributed.Client or "threads", got {client!r}'
                )
            client = None
        elif client is None:
            client = active_client()
        if client is None:
            return ThreadBackend(self.block_fn, seed, n_threads=self.n_threads, name=self.name)
        return DistributedBackend(client, self.block_fn, seed, name=self.name)

    def _calibrate(self, backend, outputs: _Outputs) -> int:
        """Time a warm-up block [0, 1) and a block [1, 1 + k); the outputs are discarded."""
        n = self.n_iters
        per_iter = None
        spans = [(0, 1)] + ([(1, 1 + min(4, n - 1))] if n > 1 else [])
        for start, stop in spans:
            backend.submit(start, stop)
            s, e, out, seconds = backend.next_done()
            outputs.validate(out, s, e)
            per_iter = max(seconds / (e - s), 1e-7)
        cap = max(1, math.ceil(n / (4 * backend.n_slots)))
        target = self.target_block_seconds
        if target is None:
            target = TARGET_BLOCK_SECONDS[backend.kind]
        size = int(round(target / per_iter))
        return min(max(size, 1), cap)

    def _aligned(self, block_size: int, explicit: bool, outputs: _Outputs) -> int:
        """With early stopping and summed outputs, stop points must fall on block ends."""
        if self.early_stop is None or not outputs.may_sum:
            return block_size
        every = int(self.early_stop.check_every)
        if every % block_size == 0:
            return block_size
        if explicit:
            raise ValueError(
                f"with summed outputs and early stopping, block_size ({block_size}) must divide "
                f"early_stop.check_every ({every}) so that a stop point never splits a block"
            )
        return max(d for d in range(1, block_size + 1) if every % d == 0)

    # ------------------------------------------------------------------ run
    def run(self) -> MonteCarloResult:
        """Run (or resume) the Monte Carlo iterations.

        Returns
        -------
        MonteCarloResult
            Eager numpy arrays.
        """
        from tqdm.auto import tqdm

        t_start = time.perf_counter()
        outputs = _Outputs(self.reducer, self.name)
        ckpt = None
        recorded = None
        if self.checkpoint is not None:
            ckpt = BlockCheckpoint(self.checkpoint, storage_options=self.storage_options)
            recorded = ckpt.recorded()
        if self.random_state is None and recorded is not None:
            random_state = int(recorded["random_state"])
        else:
            random_state = resolve_random_state(self.random_state)
        seed = SeedInfo(random_state, self.stream)

        backend = self._backend(seed)
        pbar = None
        done: dict[tuple[int, int], dict[str, np.ndarray]] = {}
        block_seconds: list[float] = []
        try:
            calibration_s = 0.0
            block_size = self.block_size
            explicit = block_size is not None
            if block_size is None and recorded is not None:
                block_size = int(recorded["block_size"])
                explicit = True
            if block_size is None:
                t0 = time.perf_counter()
                block_size = self._calibrate(backend, outputs)
                calibration_s = time.perf_counter() - t0
            block_size = self._aligned(block_size, explicit, outputs)
            if ckpt is not None:
                ckpt.claim(
                    manifest(
                        inputs_fingerprint=self.inputs_fingerprint,
                        n_iters=self.n_iters,
                        block_size=block_size,
                        random_state=random_state,
                        stream=self.stream,
                        engine_version=ENGINE_VERSION,
                    )
                )
            plan = plan_blocks(self.n_iters, block_size)
            if ckpt is not None:
                loaded = ckpt.load_blocks()
                for span in plan:
                    if span in loaded:
                        done[span] = outputs.validate(loaded[span], *span)
            n_loaded = len(done)

            # --- early stopping state: checks happen on the contiguous prefix only
            boundaries = self.early_stop.boundaries(self.n_iters) if self.early_stop else []
            state = {"bi": 0, "prefix_block": 0, "stop_at": None, "details": {}}

            def advance_checks() -> None:
                while state["prefix_block"] < len(plan) and plan[state["prefix_block"]] in done:
                    state["prefix_block"] += 1
                prefix = plan[state["prefix_block"] - 1][1] if state["prefix_block"] else 0
                while state["bi"] < len(boundaries) and boundaries[state["bi"]] <= prefix:
                    b = boundaries[state["bi"]]
                    arrays = outputs.assemble(done, plan, b)
                    checked = {
                        k: arrays[k]
                        for k in self.early_stop.select(arrays)
                        if outputs.kind(k) == "concat"
                    }
                    if not checked:
                        raise ValueError(
                            "early stopping needs at least one concatenated 1-D output "
                            "(one number per iteration) to check"
                        )
                    ok, details = self.early_stop.check(checked)
                    state["details"] = details
                    if ok:
                        state["stop_at"] = b
                        return
                    state["bi"] += 1

            pbar = tqdm(
                total=self.n_iters,
                initial=sum(e - s for s, e in done),
                desc=self.name,
                unit="it",
                disable=not self.progress,
            )
            if boundaries:
                advance_checks()
            pending = deque(span for span in plan if span not in done)
            max_in_flight = 2 * backend.n_slots
            try:
                while state["stop_at"] is None and (pending or backend.n_in_flight):
                    while pending and backend.n_in_flight < max_in_flight:
                        backend.submit(*pending.popleft())
                    start, stop, out, seconds = backend.next_done()
                    arrays = outputs.validate(out, start, stop)
                    done[(start, stop)] = arrays
                    block_seconds.append(seconds)
                    if ckpt is not None:
                        ckpt.write_block(start, stop, arrays)
                    pbar.update(stop - start)
                    if boundaries:
                        advance_checks()
            except BaseException:
                if ckpt is not None:
                    self._salvage(backend, outputs, ckpt)
                raise
        finally:
            backend.close()
            if pbar is not None:
                pbar.close()

        stop_at = state["stop_at"]
        n_run = self.n_iters if stop_at is None else stop_at
        result_arrays = outputs.assemble(done, plan, n_run)
        if self.early_stop is None:
            reason = f"completed all {self.n_iters} iterations"
        elif stop_at is not None:
            reason = (
                f"stopped early after {stop_at} iterations: the Maritz-Jarrett standard error of "
                f"the {self.early_stop.quantile} quantile was <= {self.early_stop.rel_se} x the "
                f"quantile for {sorted(state['details'])}"
            )
        else:
            reason = (
                f"completed all {self.n_iters} iterations; the early-stopping rule was not met "
                f"at any check point ({len(boundaries)} checked)"
            )
        timing = {
            "wall_s": time.perf_counter() - t_start,
            "calibration_s": calibration_s,
            "block_s_mean": float(np.mean(block_seconds)) if block_seconds else 0.0,
        }
        return MonteCarloResult(
            arrays=result_arrays,
            n_iters=self.n_iters,
            n_iters_run=n_run,
            stopped_early=stop_at is not None,
            reason=reason,
            random_state=random_state,
            stream=self.stream,
            block_size=block_size,
            n_blocks_computed=len(block_seconds),
            n_blocks_loaded=n_loaded,
            timing=timing,
            early_stop_details=dict(state["details"]),
            checkpoint=None if ckpt is None else ckpt.location,
            backend=backend.kind,
        )

    @staticmethod
    def _salvage(backend, outputs: _Outputs, ckpt: BlockCheckpoint) -> None:
        """After an error or interrupt, checkpoint the blocks that did finish."""
        try:
            for start, stop, out in backend.finished():
                try:
                    ckpt.write_block(start, stop, outputs.validate(out, start, stop))
                except Exception:  # a malformed block is simply not saved
                    continue
        except Exception:  # salvaging is best effort; the original error matters
            pass


def run_blocks(
    block_fn: BlockFn,
    n_iters: int,
    block_size: int | None = None,
    *,
    random_state: int | None = None,
    stream: str = "montecarlo",
    reducer: Reducer | Mapping[str, Reducer] = "concat",
    checkpoint: str | Path | Any | None = None,
    early_stop: EarlyStopping | None = None,
    progress: bool = True,
    client: Any = None,
    name: str = "mc-null-block",
    inputs_fingerprint: str = "",
    storage_options: dict | None = None,
    n_threads: int | None = None,
    target_block_seconds: float | None = None,
) -> MonteCarloResult:
    """Run ``block_fn`` over ``[0, n_iters)`` in blocks and combine the outputs.

    A shorthand for ``MonteCarloRun(...).run()``; see :class:`MonteCarloRun` for the
    parameters.

    Returns
    -------
    MonteCarloResult
        Eager numpy arrays, identical for any block size, scheduler and number of workers.
    """
    return MonteCarloRun(
        block_fn,
        n_iters,
        block_size=block_size,
        random_state=random_state,
        stream=stream,
        reducer=reducer,
        checkpoint=checkpoint,
        early_stop=early_stop,
        progress=progress,
        client=client,
        name=name,
        inputs_fingerprint=inputs_fingerprint,
        storage_options=storage_options,
        n_threads=n_threads,
        target_block_seconds=target_block_seconds,
    ).run()
