"""TFCE for ALE: the enhanced z map and its Monte Carlo FWE from the same random-foci iterations.

JALE (Jülich's Python ALE, 0.2.10) runs threshold-free cluster enhancement on the ALE z map
by default and thresholds it at the 95th percentile of the per-iteration maximum TFCE of its
random-foci null. Here ``ALE.correct_fwe_montecarlo(..., tfce=True)`` (or
``FWECorrector("montecarlo", tfce=True)``) adds the maximum TFCE to what each iteration of the
voxel/cluster FWE null already keeps (maximum ALE, largest cluster size and mass): one pass
over the null gives all three, and the voxel- and cluster-level nulls are those of the same
seed without TFCE, bit for bit.

Each iteration's ALE map is converted to z exactly as the observed one: through the fit's
uncorrected null (the approximate null, computed over all bins so that null maps above the
observed maximum get their exact p; or the Monte Carlo histogram), ``p -> z`` one-tailed and
floored at 0, stored as float32 (:func:`._mc_numba.ale_z_map`). JALE instead recomputes the
approximate null of each null dataset's own MA maps (it differs from the observed one only
through foci near the mask edge and foci of a study close to each other). TFCE settings:
:mod:`nimare_dask.stats.tfce` (E = 0.5, H = 2, dh = max z / 100, 6-connectivity).

Maps (the corrector appends ``_corr-FWE_method-montecarlo``): ``stat_desc-tfce`` (the TFCE
values of the observed z map; it is not itself corrected, the suffix only groups it with its
p-values), ``p/z/logp_desc-tfce_level-voxel`` (``p = #(max TFCE of null >= TFCE) / n``,
clipped to ``[1/n, 1 - 1/n]``, NiMARE's ``null_to_p``). Null:
``values_desc-tfce_level-voxel_corr-fwe_method-montecarlo``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from nimare_dask.meta.cbma import _mc_numba as mc
from nimare_dask.meta.cbma.random_foci import RandomFociNull, foci_layout
from nimare_dask.montecarlo import SeedInfo
from nimare_dask.stats.clusters import neighbours
from nimare_dask.stats.nulls import ale_null_from_histograms, null_to_p, nullhist_p_table
from nimare_dask.stats.tfce import TFCE_E, TFCE_H, TFCE_STEPS, tfce_core, tfce_workspace
from nimare_dask.stats.transforms import p_to_logp, p_to_z

__all__ = [
    "TFCE_NULL_KEY",
    "TfceRandomFociNull",
    "ale_z_lookup",
    "tfce_block",
    "tfce_correction",
]

#: Key of the max-TFCE null (NiMARE's grammar for null distributions).
TFCE_NULL_KEY = "values_desc-tfce_level-voxel_corr-fwe_method-montecarlo"


def ale_z_lookup(est) -> tuple[np.ndarray, np.ndarray]:
    """Bin centres and float32 z per bin of a fitted ALE's uncorrected null.

    Returns
    -------
    bins : numpy.ndarray
        (B,) float64 bin centres.
    z_table : numpy.ndarray
        (B + 1,) float32: one-tailed z (floored at 0) of each bin's p, and 0 for ALE <= 0.
    """
    from nimare_dask.meta.cbma.ale import _MC_KEY, _NULL_KEYS

    nulls = getattr(est, "null_distributions_", None) or {}
    if _NULL_KEYS[0] not in nulls:
        raise RuntimeError(f"{type(est).__name__}: fit the estimator before TFCE correction")
    bins = np.asarray(nulls[_NULL_KEYS[0]], dtype=np.float64)
    if _MC_KEY in nulls and _NULL_KEYS[1] not in nulls:
        weights = nulls[_MC_KEY]
    else:
        lumped = getattr(est, "_lumped_null_", None)
        weights = nulls[_NULL_KEYS[1]]
        if lumped is not None and lumped[2] < bins.size:
            # the fit computed the null exactly only up to its largest ALE; null maps may
            # go higher, so compute every bin (a few ms)
            counts, n_voxels, _ = lumped
            weights = ale_null_from_histograms(counts, n_voxels, bins)
    _, p_table = nullhist_p_table(np.zeros(0), weights, bins)
    z_table = p_to_z(p_table, tail="one").astype(np.float32)
    return bins, z_table


@dataclass
class TfceRandomFociNull(RandomFociNull):
    """:class:`~.random_foci.RandomFociNull` ("fwe", ALE) that also keeps the maximum TFCE.

    ``tfce`` holds ``z_table`` (float32), ``inv_step`` (1 / bin width), ``E``, ``H`` and
    ``n_steps``. Iteration ``i`` makes the same draws as the plain null, so ``max_stat``,
    ``max_size`` and ``max_mass`` are identical to it; ``max_tfce`` is added.
    """

    tfce: dict | None = None

    def _prepare(self) -> None:
        super()._prepare()
        if self.kind != "ale" or self.mode != "fwe" or len(self.layouts) != 1:
            raise ValueError("TFCE nulls are defined for one-sample ALE 'fwe' nulls only")
        if self._nbrs is None:
            self._nbrs = np.ascontiguousarray(neighbours(self.grid), dtype=np.int32)

    def fingerprint(self) -> str:
        """The plain null's fingerprint plus the TFCE settings and z table."""
        h = hashlib.sha256(super().fingerprint().encode())
        t = self.tfce
        h.update(repr((float(t["inv_step"]), float(t["E"]), float(t["H"]), int(t["n_steps"])))
                 .encode())  # fmt: skip
        h.update(np.ascontiguousarray(t["z_table"]).tobytes())
        return h.hexdigest()[:24]

    def __call__(self, start: int, stop: int, seed: SeedInfo) -> dict[str, np.ndarray]:
        n_vox = self.grid.n_voxels
        n = stop - start
        lay = self.layouts[0]
        acc = np.zeros(n_vox)
        scratch = self._ale_buffers()
        spans = np.empty((0, 4), dtype=np.int64)
        cl_scratch = np.zeros(n_vox, dtype=np.int32)
        idx_buf = np.empty(n_vox, dtype=np.int64)
        val_buf = np.empty(n_vox, dtype=np.float64)
        t = self.tfce
        z_table = np.ascontiguousarray(t["z_table"], dtype=np.float32)
        n_bins = z_table.shape[0] - 1
        z = np.zeros(n_vox, dtype=np.float64)
        enhanced = np.zeros(n_vox, dtype=np.float64)
        work = tfce_workspace(n_vox, t["n_steps"])
        out = {
            "max_stat": np.zeros(n, dtype=np.float32),
            "max_size": np.zeros(n, dtype=np.int64),
            "max_mass": np.zeros(n, dtype=np.float64),
            "max_tfce": np.zeros(n, dtype=np.float64),
        }
        thr = -1.0 if self.threshold is None else float(self.threshold)
        cluster = self.threshold is not None
        starts = np.arange(0, n_vox, mc.CHUNK)
        for row, i in enumerate(range(start, stop)):
            self._accumulate(lay, self._draw(seed.rng(i), lay), acc, scratch, spans)
            mc.ale_z_map(acc, z_table, float(t["inv_step"]), n_bins, z)
            out["max_tfce"][row] = tfce_core(
                z, self._nbrs, float(t["E"]), float(t["H"]), int(t["n_steps"]), enhanced, *work
            )
            best, size, mass = mc.ale_scan(
                acc, thr, cluster, self._nbrs, cl_scratch, idx_buf, val_buf, starts
            )
            out["max_stat"][row] = best
            out["max_size"][row] = size
            out["max_mass"][row] = mass
        return out


def tfce_block(est, ss, threshold: float | None) -> TfceRandomFociNull:
    """The TFCE-and-FWE null block of a fitted ALE on its studyset ``ss``."""
    bins, z_table = ale_z_lookup(est)
    layout = foci_layout(est.kernel, ss, "ale")
    return TfceRandomFociNull(
        kind="ale",
        layouts=[layout],
        pool_ijk=est._coverage_pool(ss.grid),
        grid=ss.grid,
        mode="fwe",
        threshold=threshold,
        tfce={
            "z_table": z_table,
            "inv_step": float(1.0 / (bins[1] - bins[0])),
            "E": TFCE_E,
            "H": TFCE_H,
            "n_steps": TFCE_STEPS,
        },
    )


def observed_z(est, stat: np.ndarray) -> np.ndarray:
    """The observed ALE map's z through the same table as the null maps (float32)."""
    bins, z_table = ale_z_lookup(est)
    rows, _ = nullhist_p_table(stat, np.ones(bins.size), bins)
    return z_table[rows]


def tfce_correction(est, result, mc_result) -> tuple[dict, dict, str]:
    """TFCE maps, null and methods text of a run made with :func:`tfce_block`.

    Returns
    -------
    maps : dict
        ``stat_desc-tfce`` and ``p/z/logp_desc-tfce_level-voxel`` (eager).
    nulls : dict
        ``{TFCE_NULL_KEY: max TFCE per iteration}``.
    text : str
        Methods text.
    """
    from nimare_dask.stats.tfce import tfce

    stat = np.asarray(result.get_map("stat", return_type="array"))
    # float32 map and null, as the voxel-level ALE FWE compares them
    enhanced = tfce(observed_z(est, stat), result.grid).astype(np.float32)
    null = np.asarray(mc_result["max_tfce"], dtype=np.float32)
    p = null_to_p(enhanced, null, tail="upper")
    maps = {
        "stat_desc-tfce": enhanced,
        "p_desc-tfce_level-voxel": np.asarray(p, dtype=np.float32),
        "z_desc-tfce_level-voxel": np.asarray(p_to_z(p, tail="one"), dtype=np.float32),
        "logp_desc-tfce_level-voxel": p_to_logp(p),
    }
    text = (
        "Threshold-free cluster enhancement (TFCE) \\citep{smith2009threshold} was applied "
        f"to the ALE z map with extent exponent E = {TFCE_E:g}, height exponent H = {TFCE_H:g}, "
        f"step dh = 1/{TFCE_STEPS} of the map's maximum z and face-wise (6-) connectivity, as "
        "in JALE; voxel-wise FWE-corrected p-values are the fraction of the same "
        f"{null.size} Monte Carlo iterations whose maximum TFCE value (each null ALE map "
        "converted to z with the same null distribution) is at least as large."
    )
    return maps, {TFCE_NULL_KEY: null}, text
