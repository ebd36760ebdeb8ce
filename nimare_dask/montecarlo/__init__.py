"""Seeded, blocked Monte Carlo iterations on a thread pool or a Dask cluster.

The engine knows nothing about meta-analysis: an estimator hands it a *block function*
``block_fn(start, stop, seed_info) -> {name: array}`` that computes iterations
``start .. stop - 1`` and returns only what inference needs (max statistic, max cluster size and
mass, histogram counts). :func:`run_blocks` splits ``[0, n_iters)`` into blocks, runs them as
tasks named ``<name>-<start>-<stop>-<token>`` (local threads, or the active
``distributed.Client``), checkpoints finished blocks to Zarr if asked, shows progress, optionally
stops early, and combines the outputs in iteration order.

How determinism is guaranteed
-----------------------------
1. **Randomness is keyed by iteration, not by worker or block.** Iteration ``i`` draws only from
   ``seed_info.rng(i) = default_rng(SeedSequence(entropy=[random_state, stream_key(stream)],
   spawn_key=(i,)))`` (:func:`iteration_rng`). No generator state is carried from one iteration
   to the next, so the draws of iteration ``i`` are the same whichever block, thread, process or
   machine computes it, and however often it is recomputed.
2. **Block functions are pure**: their output depends only on ``(start, stop, seed_info)`` and
   inputs captured at submission. Dask may rerun a block (a worker died): it gets the same
   numbers.
3. **Combination is in iteration order.** Blocks finish in any order; per-iteration outputs are
   concatenated by ``start`` at the end. Summed outputs (``reducer="sum"``) are integer counts in
   practice, whose sums do not depend on order or grouping.
4. **The seed is recorded.** ``random_state=None`` draws one fresh seed at the start of the run
   and records it in the :class:`MonteCarloResult` (and the checkpoint), so any run can be
   reproduced afterwards.
5. **Early stopping looks only at values.** The rule is evaluated at fixed check points
   ``k * check_every`` on the contiguous prefix of iterations ``[0, k * check_every)``, in order;
   the first check point where it holds is the stop point, whatever the timing of blocks.
6. **Checkpoints are tied to their inputs.** A checkpoint records the caller's inputs
   fingerprint, ``n_iters``, block size, seed, stream and engine version; resuming with
   anything different raises :class:`CheckpointMismatchError` instead of mixing runs.
"""

from nimare_dask.montecarlo.checkpoint import BlockCheckpoint, CheckpointMismatchError
from nimare_dask.montecarlo.early_stop import EarlyStopping, quantile_standard_error
from nimare_dask.montecarlo.engine import (
    ENGINE_VERSION,
    MonteCarloResult,
    MonteCarloRun,
    plan_blocks,
    run_blocks,
)
from nimare_dask.montecarlo.seeds import SeedInfo, iteration_rng, resolve_random_state, stream_key

__all__ = [
    "ENGINE_VERSION",
    "BlockCheckpoint",
    "CheckpointMismatchError",
    "EarlyStopping",
    "MonteCarloResult",
    "MonteCarloRun",
    "SeedInfo",
    "iteration_rng",
    "plan_blocks",
    "quantile_standard_error",
    "resolve_random_state",
    "run_blocks",
    "stream_key",
]
