"""Kernel shapes: the ALE Gaussian and the MKDA/KDA sphere, as voxel offsets and values.

Both kernels are described the same way: an ``(K, 3)`` int array of voxel offsets from the
focus and a ``(K,)`` float32 array of values at those offsets. :class:`KernelBank` packs one
or more such kernels (e.g. one ALE kernel per distinct sample size) for the numba loops in
:mod:`nimare_dask.kernels._numba`.

ALE conventions (Eickhoff et al. 2009, 2012; NiMARE 0.22.1 ``meta/utils.py:get_ale_kernel``):

* FWHM from the sample size N:
  ``u_templ = 5.7 / (2 sqrt(2/pi)) * sqrt(8 ln 2)``,
  ``u_subj = 11.6 / (2 sqrt(2/pi)) * sqrt(8 ln 2) / sqrt(N)``,
  ``FWHM = sqrt(u_subj**2 + u_templ**2)``.
* The kernel is ``scipy.ndimage.gaussian_filter`` of a unit impulse (mode ``constant``,
  truncate 4), i.e. the outer product of three normalised, truncated discrete 1-D Gaussians,
  cropped to the cube of values above machine epsilon, centred at ``floor(shape / 2)``,
  and cast to float32. On 2 mm voxels our kernels equal NiMARE's bit for bit (we even follow
  its float32 division of a user-given FWHM by the voxel size; see :func:`ale_sigma_vox`).

Differences from NiMARE, both only away from the 2 mm grid or at very wide kernels:

* sigma in voxels is ``FWHM / (2 sqrt(2 ln 2)) / zoom`` per axis. NiMARE computes
  ``FWHM / sqrt(prod(zooms)) * sqrt(2) / (2 sqrt(2 ln 2))``, which is the same number for
  2 mm isotropic voxels but sqrt(2) too wide at 1 mm (and wrong for anisotropic voxels).
* NiMARE filters an impulse in a fixed 31^3 box, which cuts the Gaussian at +-15 voxels
  when ``4 sigma > 15`` voxels (FWHM > 17.6 mm at 2 mm). We use a box of at least 31 voxels,
  widened so that the full ``int(4 sigma + 0.5)`` radius fits: the kernel is the same
  whenever NiMARE's is not cut.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy import ndimage

__all__ = [
    "ale_fwhm_from_sample_size",
    "ale_sigma_vox",
    "ale_kernel",
    "sphere_offsets",
    "KernelBank",
    "kernel_runs",
]

#: NiMARE's impulse box is 31 voxels wide (half-width 15).
_MIN_HALF_WIDTH = 15


def ale_fwhm_from_sample_size(sample_size: float | np.ndarray) -> float | np.ndarray:
    """FWHM (mm) of the ALE kernel for a sample size (Eickhoff et al., 2009).

    Parameters
    ----------
    sample_size : float or array_like
        Number of subjects (> 0).

    Returns
    -------
    float or numpy.ndarray
        FWHM in mm (eager). N=20 gives 9.24 mm; N -> infinity gives 8.41 mm.
    """
    n = np.asarray(sample_size, dtype=float)
    u_templ = 5.7 / (2.0 * np.sqrt(2.0 / np.pi)) * np.sqrt(8.0 * np.log(2.0))
    u_subj = (11.6 / (2 * np.sqrt(2 / np.pi)) * np.sqrt(8 * np.log(2))) / np.sqrt(n)
    out = np.sqrt(u_subj**2 + u_templ**2)
    return float(out) if out.ndim == 0 else out


def ale_sigma_vox(fwhm: float, zooms, *, from_sample_size: bool = False) -> np.ndarray:
    """Gaussian sigma in voxels per axis: ``fwhm / (2 sqrt(2 ln 2)) / zoom``.

    At 2 mm isotropic voxels this equals NiMARE's sigma bit for bit; at other voxel sizes
    NiMARE's differs (see the module notes).

    Parameters
    ----------
    fwhm : float
        Full width at half maximum in mm.
    zooms : array_like of 3 floats
        Voxel sizes in mm.
    from_sample_size : bool
        The FWHM was derived from a sample size (float64 arithmetic throughout) rather than
        given by the user (NiMARE divides a user-given FWHM by the float32 voxel size in
        float32: NumPy 2 keeps a Python float weak against a float32 scalar). We follow the
        same arithmetic so that 2 mm kernels agree exactly; the effect is < 1e-7 relative.

    Returns
    -------
    numpy.ndarray
        (3,) float64 (eager).
    """
    zooms = np.asarray(zooms, dtype=float)
    # NiMARE: (fwhm / sqrt(prod(zooms))) * sqrt(2) / (sqrt(2 ln 2) * 2) with float32 zooms,
    # right only for 2 mm voxels. Per axis, sqrt(zoom**3) and sqrt(zoom) in its place give
    # fwhm / zoom / (2 sqrt(2 ln 2)) for any voxel size and NiMARE's bits at 2 mm.
    root = np.sqrt(zooms.astype(np.float32) ** 3)  # float32, like sqrt(prod(header zooms))
    if from_sample_size:
        fwhm_vox = np.float64(fwhm) / root.astype(np.float64)
    else:
        fwhm_vox = (np.float32(fwhm) / root).astype(np.float64)
    return fwhm_vox * np.sqrt(zooms) / (np.sqrt(2.0 * np.log(2.0)) * 2.0)


def _zooms_key(zooms) -> tuple[float, float, float]:
    return tuple(round(float(z), 9) for z in np.asarray(zooms, dtype=float))


@lru_cache(maxsize=512)
def _ale_kernel_cached(fwhm: float, zooms: tuple[float, float, float], from_sample_size: bool):
    sigma = ale_sigma_vox(fwhm, zooms, from_sample_size=from_sample_size)
    half = [max(_MIN_HALF_WIDTH, int(4.0 * s + 0.5)) for s in sigma]
    impulse = np.zeros([2 * h + 1 for h in half])
    impulse[tuple(half)] = 1.0
    if np.all(sigma == sigma[0]):
        sig = float(sigma[0])  # a scalar sigma, exactly as NiMARE passes it
    else:
        sig = tuple(float(s) for s in sigma)
    kernel = ndimage.gaussian_filter(impulse, sig, mode="constant", truncate=4.0)
    # crop to the values above machine epsilon, per axis (NiMARE judges axis 0 only and
    # applies it to all three, which is the same for isotropic voxels)
    keep = np.nonzero(kernel > np.spacing(1))
    lo = [int(k.min()) for k in keep]
    hi = [int(k.max()) for k in keep]
    kernel = kernel[lo[0] : hi[0] + 1, lo[1] : hi[1] + 1, lo[2] : hi[2] + 1]
    centre = np.floor(np.asarray(kernel.shape) / 2.0).astype(np.int64)
    idx = np.argwhere(kernel > 0)
    values = kernel[tuple(idx.T)].astype(np.float32)
    keep = values > 0  # float32 underflow at far corners: nothing to scatter there
    offsets = (idx - centre)[keep].astype(np.int32)
    values = values[keep]
    offsets.setflags(write=False)
    values.setflags(write=False)
    return offsets, values


def ale_kernel(
    fwhm: float | None = None, zooms=(2.0, 2.0, 2.0), *, sample_size: float | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """The ALE kernel for a FWHM or a sample size on voxels of the given size (cached).

    Parameters
    ----------
    fwhm : float, optional
        Full width at half maximum in mm (> 0).
    zooms : array_like of 3 floats
        Voxel sizes in mm.
    sample_size : float, optional
        Instead of ``fwhm``: the number of subjects, which sets the FWHM
        (:func:`ale_fwhm_from_sample_size`).

    Returns
    -------
    offsets : numpy.ndarray
        (K, 3) int32 voxel offsets from the focus (read-only; eager).
    values : numpy.ndarray
        (K,) float32 kernel values (read-only, all > 0); they sum to about 1.
    """
    if (fwhm is None) == (sample_size is None):
        raise ValueError("give exactly one of fwhm and sample_size")
    if sample_size is not None:
        n = float(sample_size)
        if not np.isfinite(n) or n <= 0:
            raise ValueError(f"sample size must be a positive finite number, got {sample_size}")
        fwhm = ale_fwhm_from_sample_size(n)
    fwhm = float(fwhm)
    if not np.isfinite(fwhm) or fwhm <= 0:
        raise ValueError(f"ALE kernel FWHM must be a positive finite number, got {fwhm}")
    return _ale_kernel_cached(fwhm, _zooms_key(zooms), sample_size is not None)


@lru_cache(maxsize=64)
def _sphere_cached(r: float, zooms: tuple[float, float, float]) -> np.ndarray:
    vox = np.asarray(zooms, dtype=np.float64)
    reach = [int(r // v) for v in vox]
    axes = [np.arange(-m, m + 1) for m in reach]
    cube = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 3)
    dist = np.sqrt(np.sum((cube * vox) ** 2, axis=1))
    offsets = np.ascontiguousarray(cube[dist <= r], dtype=np.int32)
    offsets.setflags(write=False)
    return offsets


def sphere_offsets(r: float, zooms=(2.0, 2.0, 2.0)) -> np.ndarray:
    """Voxel offsets of a sphere of radius ``r`` mm (NiMARE's ``sphere_kernel_offsets``).

    The offsets span ``-(r // zoom) .. r // zoom`` per axis and keep those whose distance
    ``||offset * zoom||_2 <= r``. On 2 mm voxels r=10 gives 515 voxels, r=8 257, r=6 123.

    Parameters
    ----------
    r : float
        Radius in mm (> 0).
    zooms : array_like of 3 floats
        Voxel sizes in mm.

    Returns
    -------
    numpy.ndarray
        (K, 3) int32 offsets (read-only; eager).
    """
    r = float(r)
    if not np.isfinite(r) or r <= 0:
        raise ValueError(f"sphere radius r must be a positive finite number (mm), got {r}")
    return _sphere_cached(r, _zooms_key(zooms))


def kernel_runs(starts, offsets) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Split each kernel of a bank into runs of consecutive offsets along the last axis.

    Entries of a kernel must be sorted by (di, dj, dk) (:meth:`KernelBank.build` sorts them).

    Returns
    -------
    run_ptr : numpy.ndarray
        (n_kernels + 1,) int64: kernel ``kk`` owns runs ``run_ptr[kk]:run_ptr[kk+1]``.
    runs : numpy.ndarray
        (n_runs, 6) int64 rows ``di, dj, dk0, length, first entry, cell``; ``cell`` numbers the
        run's (di, dj) column in its kernel's ``(2 ext_i + 1) x (2 ext_j + 1)`` box.
    extent : numpy.ndarray
        (n_kernels, 3) int64: the largest ``|offset|`` per axis (for overlap tests).
    """
    starts = np.asarray(starts, dtype=np.int64)
    offsets = np.asarray(offsets, dtype=np.int64).reshape(-1, 3)
    runs = []
    run_ptr = [0]
    extent = []
    for kk in range(len(starts) - 1):
        t0, t1 = int(starts[kk]), int(starts[kk + 1])
        o = offsets[t0:t1]
        ext = np.abs(o).max(axis=0) if len(o) else np.zeros(3, np.int64)
        extent.append(ext)
        if len(o) > 1:
            key = o[:, 0] * (1 << 40) + o[:, 1] * (1 << 20) + o[:, 2]
            if np.any(np.diff(key) <= 0):
                raise ValueError("kernel offsets must be sorted by (di, dj, dk) and unique")
        if len(o):
            new = np.ones(len(o), dtype=bool)
            new[1:] = (
                (o[1:, 0] != o[:-1, 0]) | (o[1:, 1] != o[:-1, 1]) | (o[1:, 2] != o[:-1, 2] + 1)
            )
            first = np.flatnonzero(new)
            length = np.diff(np.append(first, len(o)))
            cell = (o[first, 0] + ext[0]) * (2 * ext[1] + 1) + o[first, 1] + ext[1]
            runs.append(
                np.column_stack([o[first, 0], o[first, 1], o[first, 2], length, first + t0, cell])
            )
        run_ptr.append(run_ptr[-1] + (len(runs[-1]) if len(o) else 0))
    runs = np.concatenate(runs) if runs else np.zeros((0, 6), dtype=np.int64)
    return (
        np.asarray(run_ptr, dtype=np.int64),
        np.ascontiguousarray(runs, dtype=np.int64).reshape(-1, 6),
        np.asarray(extent, dtype=np.int64).reshape(-1, 3),
    )


def _sorted_kernel(offsets, values) -> tuple[np.ndarray, np.ndarray]:
    """A kernel's entries in (di, dj, dk) order (what the run-based loops need)."""
    o = np.asarray(offsets, dtype=np.int64).reshape(-1, 3)
    v = np.asarray(values)
    if len(o) > 1:
        order = np.lexsort((o[:, 2], o[:, 1], o[:, 0]))
        if np.any(order != np.arange(len(o))):
            o, v = o[order], v[order]
    return o, v


@dataclass(frozen=True)
class KernelBank:
    """One or more kernels packed for the numba scatter loops on a given grid shape.

    Attributes
    ----------
    starts : (n_kernels + 1,) int64
        Kernel ``k`` owns entries ``starts[k]:starts[k+1]``.
    offsets : (K, 3) int64
        Voxel offsets.
    deltas : (K,) int64
        The offsets as C-order flat-index steps on ``shape``.
    values : (K,) float32
        Kernel values (all > 0).
    lo, hi : (n_kernels, 3) int64
        Smallest and largest offset per axis of each kernel (for the in-bounds fast path).
    run_ptr, runs, extent
        The kernels as runs along the last axis (:func:`kernel_runs`), for the loops that walk
        the mask's segments (counting, Monte Carlo nulls).
    """

    starts: np.ndarray
    offsets: np.ndarray
    deltas: np.ndarray
    values: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    run_ptr: np.ndarray
    runs: np.ndarray
    extent: np.ndarray

    @classmethod
    def build(cls, kernels: list[tuple[np.ndarray, np.ndarray]], shape) -> KernelBank:
        """Pack ``[(offsets, values), ...]`` for a grid of the given 3-D shape."""
        if not kernels:
            kernels = [(np.zeros((0, 3), np.int32), np.zeros(0, np.float32))]
        kernels = [_sorted_kernel(o, v) for o, v in kernels]
        sizes = [len(o) for o, _ in kernels]
        starts = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        offsets = np.concatenate([o for o, _ in kernels]).astype(np.int64).reshape(-1, 3)
        values = np.concatenate([v for _, v in kernels]).astype(np.float32)
        strides = np.array([shape[1] * shape[2], shape[2], 1], dtype=np.int64)
        deltas = offsets @ strides
        lo = np.array([o.min(axis=0) if len(o) else [0, 0, 0] for o, _ in kernels], np.int64)
        hi = np.array([o.max(axis=0) if len(o) else [0, 0, 0] for o, _ in kernels], np.int64)
        run_ptr, runs, extent = kernel_runs(starts, offsets)
        return cls(
            starts, offsets, deltas, values, lo.reshape(-1, 3), hi.reshape(-1, 3), run_ptr, runs,
            extent,
        )  # fmt: skip

    @property
    def sizes(self) -> np.ndarray:
        """Number of entries of each kernel."""
        return np.diff(self.starts)
