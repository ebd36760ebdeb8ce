"""Per-iteration random generators: iteration ``i`` draws depend only on (seed, stream, i).

NiMARE 0.22.1 seeds each stochastic step with
``SeedSequence([random_state, stream_key(stream)])`` (``NIMARE_FACTS.md`` section 0). We key the
same sequence by the iteration index as well (``spawn_key=(i,)``), which is exactly the ``i``-th
child of ``SeedSequence([random_state, stream_key(stream)]).spawn(n)``. A block of iterations
``[start, stop)`` therefore draws the same numbers whichever block, worker, thread or process
runs it.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from numbers import Integral

import numpy as np

__all__ = ["SeedInfo", "iteration_rng", "resolve_random_state", "stream_key"]


def stream_key(stream: str) -> int:
    """A stable 64-bit integer naming a stochastic step (first 8 bytes of its SHA-256).

    Parameters
    ----------
    stream : str
        Name of the step, e.g. ``"correct_fwe_montecarlo"``.

    Returns
    -------
    int
        The same value NiMARE mixes into its seeds for that stream.
    """
    if not isinstance(stream, str):
        raise TypeError(f"stream must be a str, got {type(stream).__name__}")
    return int.from_bytes(hashlib.sha256(stream.encode("utf-8")).digest()[:8], "big")


def resolve_random_state(random_state: int | None) -> int:
    """Turn a user seed into the non-negative integer a run uses (and records).

    Parameters
    ----------
    random_state : int or None
        An integer seed (negative seeds are folded into ``[0, 2**64)`` like NiMARE does), or
        None to draw a fresh 63-bit seed from the operating system. Generators and booleans are
        rejected, as in NiMARE.

    Returns
    -------
    int
        The seed to record with the run's result, so the run can be reproduced.
    """
    if random_state is None:
        return secrets.randbits(63)
    if isinstance(random_state, bool) or not isinstance(random_state, Integral):
        raise TypeError(
            f"random_state must be None or an integer; got {type(random_state).__name__}. "
            "To seed from a generator, pass an integer drawn from it, e.g. "
            "random_state=int(rng.integers(2**32))."
        )
    return int(random_state) % 2**64


def iteration_rng(random_state: int, stream: str, i: int) -> np.random.Generator:
    """The generator of Monte Carlo iteration ``i``.

    Parameters
    ----------
    random_state : int
        The run's seed (see :func:`resolve_random_state`; None is not accepted here).
    stream : str
        Name of the stochastic step.
    i : int
        Iteration index (>= 0).

    Returns
    -------
    numpy.random.Generator
        ``default_rng(SeedSequence(entropy=[random_state, stream_key(stream)],
        spawn_key=(i,)))``.
    """
    if random_state is None:
        raise TypeError("iteration_rng needs an integer seed; resolve None first")
    if i < 0:
        raise ValueError(f"iteration index must be >= 0, got {i}")
    entropy = [resolve_random_state(random_state), stream_key(stream)]
    return np.random.default_rng(np.random.SeedSequence(entropy=entropy, spawn_key=(int(i),)))


@dataclass(frozen=True)
class SeedInfo:
    """What a block function needs to draw its iterations' random numbers.

    Parameters
    ----------
    random_state : int
        The run's resolved seed.
    stream : str
        Name of the stochastic step.
    """

    random_state: int
    stream: str

    def rng(self, i: int) -> np.random.Generator:
        """The generator of iteration ``i`` (:func:`iteration_rng`)."""
        return iteration_rng(self.random_state, self.stream, i)

    def rngs(self, start: int, stop: int) -> list[np.random.Generator]:
        """Generators of iterations ``start .. stop - 1``."""
        return [self.rng(i) for i in range(start, stop)]
