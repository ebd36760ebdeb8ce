"""The voxel grid: one object that owns the mask, affine, shape and the in-mask index.

Inside nimare_dask every map is a 1-D array over the in-mask voxels of a :class:`Grid`
(dimension ``voxel``), in C order of the 3-D mask array, which is the order nilearn's
``NiftiMasker`` uses. NIfTI images appear only at the edges (:meth:`Grid.to_image`,
:meth:`Grid.to_map`).

Coordinate conventions follow NiMARE 0.22.1: millimetre coordinates are projected with the
inverse affine and rounded with :func:`numpy.round` (round half to even), and Talairach
coordinates are converted with Lancaster's ``icbm_other`` transform.
"""

from __future__ import annotations

import base64
import hashlib
import threading
import zlib
from collections import OrderedDict
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path

import nibabel as nib
import numpy as np

__all__ = [
    "Grid",
    "get_grid",
    "load_template",
    "mni2tal",
    "tal2mni",
    "normalize_space",
]

#: Lancaster et al. (2007) icbm_other: MNI (non-SPM/FSL templates) -> Talairach.
_ICBM_OTHER = np.array(
    [
        [0.9357, 0.0029, -0.0072, -1.0423],
        [-0.0065, 0.9396, -0.0726, -1.3940],
        [0.0103, 0.0752, 0.8967, 3.6475],
        [0.0, 0.0, 0.0, 1.0],
    ]
)

_TEMPLATES = {
    "mni152_2mm": (
        "tpl-MNI152NLin6Asym_res-02_desc-brain_mask.nii.gz",
        "tpl-MNI152NLin6Asym_res-02_T1w.nii.gz",
    ),
    "mni152_1mm": ("tpl-MNI152NLin6Asym_res-01_desc-brain_mask.nii.gz", None),
}

#: Spellings of coordinate spaces accepted in input files, mapped to a canonical name.
_SPACE_ALIASES = {
    "mni": "MNI",
    "mni152": "MNI",
    "mni152_2mm": "MNI",
    "mni152_1mm": "MNI",
    "ale_2mm": "MNI",
    "icbm": "MNI",
    "tal": "TAL",
    "talairach": "TAL",
}


def normalize_space(label: object) -> str:
    """Return the canonical space name (``"MNI"``, ``"TAL"`` or ``"UNKNOWN"``) of a label.

    Parameters
    ----------
    label : object
        A space label as found in input files (``"MNI"``, ``"Talairach"``, ``"TAL"``,
        ``None``, ...). Matching is case-insensitive.

    Returns
    -------
    str
        ``"MNI"``, ``"TAL"`` or ``"UNKNOWN"``.
    """
    if label is None or (isinstance(label, float) and np.isnan(label)):
        return "UNKNOWN"
    return _SPACE_ALIASES.get(str(label).strip().lower(), "UNKNOWN")


def _as_rows(coords: np.ndarray) -> np.ndarray:
    coords = np.asarray(coords, dtype=float)
    if coords.ndim == 1 and coords.size == 3:
        return coords[None, :]
    if coords.ndim != 2 or coords.shape[1] != 3:
        raise ValueError(f"coordinates must be an (N, 3) array, got shape {coords.shape}")
    return coords


def _apply(matrix: np.ndarray, coords: np.ndarray) -> np.ndarray:
    coords = _as_rows(coords)
    return coords @ matrix[:3, :3].T + matrix[:3, 3]


def mni2tal(coords: np.ndarray) -> np.ndarray:
    """Convert MNI coordinates (mm) to Talairach with Lancaster's icbm_other transform.

    Parameters
    ----------
    coords : (N, 3) array_like
        MNI coordinates, one focus per row.

    Returns
    -------
    numpy.ndarray
        (N, 3) Talairach coordinates (eager).
    """
    return _apply(_ICBM_OTHER, coords)


def tal2mni(coords: np.ndarray) -> np.ndarray:
    """Convert Talairach coordinates (mm) to MNI with the inverse icbm_other transform.

    Parameters
    ----------
    coords : (N, 3) array_like
        Talairach coordinates, one focus per row.

    Returns
    -------
    numpy.ndarray
        (N, 3) MNI coordinates (eager).
    """
    return _apply(np.linalg.inv(_ICBM_OTHER), coords)


def load_template(name: str = "mni152_2mm", kind: str = "mask") -> nib.Nifti1Image:
    """Load a template image shipped with the package.

    Parameters
    ----------
    name : {"mni152_2mm", "mni152_1mm"}
        Template name.
    kind : {"mask", "t1"}
        The brain mask (boolean) or the T1 image (float32; 2 mm only).

    Returns
    -------
    nibabel.Nifti1Image
    """
    if name not in _TEMPLATES:
        raise ValueError(f"unknown template {name!r}; expected one of {sorted(_TEMPLATES)}")
    mask_file, t1_file = _TEMPLATES[name]
    fname = mask_file if kind == "mask" else t1_file
    if fname is None:
        raise ValueError(f"template {name!r} has no {kind!r} image")
    path = resources.files("nimare_dask.resources") / "templates" / fname
    with resources.as_file(path) as p:
        img = nib.load(str(p))
        data = np.asarray(img.dataobj)
    if kind == "mask":
        return nib.Nifti1Image((data > 0).astype(np.uint8), img.affine)
    return nib.Nifti1Image(data.astype(np.float32), img.affine)


@dataclass(frozen=True, eq=False)
class Grid:
    """A voxel grid with a brain mask: the single owner of mask, affine and indexing.

    Parameters
    ----------
    mask : numpy.ndarray
        3-D boolean array; True inside the brain.
    affine : numpy.ndarray
        4x4 voxel-to-mm affine.
    name : str, optional
        A human-readable name (e.g. ``"mni152_2mm"``).

    Notes
    -----
    In-mask voxels are numbered in C order of ``mask``. ``flat_lookup`` maps a C-order index
    over the whole grid to the in-mask index (or -1 outside the mask).
    """

    mask: np.ndarray
    affine: np.ndarray
    name: str = "custom"
    _cache: dict = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        mask = np.asarray(self.mask).astype(bool)
        if mask.ndim != 3:
            raise ValueError(f"mask must be 3-D, got shape {mask.shape}")
        affine = np.asarray(self.affine, dtype=float)
        if affine.shape != (4, 4):
            raise ValueError(f"affine must be 4x4, got {affine.shape}")
        mask.setflags(write=False)
        affine.setflags(write=False)
        object.__setattr__(self, "mask", mask)
        object.__setattr__(self, "affine", affine)

    # ------------------------------------------------------------------ constructors
    @classmethod
    def from_mask(cls, img: nib.Nifti1Image | str | Path, name: str | None = None) -> Grid:
        """Build a grid from a mask image (any value > 0 is inside)."""
        if isinstance(img, str | Path):
            name = name or Path(img).name
            img = nib.load(str(img))
        data = np.asarray(img.dataobj)
        if data.ndim == 4 and data.shape[3] == 1:
            data = data[..., 0]
        return cls(mask=data > 0, affine=img.affine, name=name or "custom")

    # ------------------------------------------------------------------ properties
    @property
    def shape(self) -> tuple[int, int, int]:
        """Shape of the 3-D grid."""
        return tuple(int(s) for s in self.mask.shape)

    @property
    def n_voxels(self) -> int:
        """Number of in-mask voxels (length of every map)."""
        return int(self._get("n_voxels", lambda: int(self.mask.sum())))

    @property
    def zooms(self) -> np.ndarray:
        """Voxel sizes in mm along each axis."""
        return np.sqrt((self.affine[:3, :3] ** 2).sum(axis=0))

    @property
    def voxel_volume(self) -> float:
        """Volume of one voxel in mm^3."""
        if self._is_diagonal():
            return float(np.prod(np.abs(np.diag(self.affine)[:3])))
        return float(abs(np.linalg.det(self.affine[:3, :3])))

    def _is_diagonal(self) -> bool:
        a = self.affine[:3, :3]
        return bool(np.all(a == np.diag(np.diag(a))))

    @property
    def flat_lookup(self) -> np.ndarray:
        """int32 array over the whole grid (C order): in-mask index, or -1 outside."""

        def build() -> np.ndarray:
            lut = np.full(self.mask.size, -1, dtype=np.int32)
            lut[np.flatnonzero(self.mask)] = np.arange(self.n_voxels, dtype=np.int32)
            lut.setflags(write=False)
            return lut

        return self._get("flat_lookup", build)

    @property
    def column_segments(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The mask as runs of in-mask voxels along the last axis of each grid row (cached).

        In-mask voxels are numbered in C order, so the voxels of a segment have consecutive
        indices: loops over kernel runs (counting, Monte Carlo nulls) need no per-voxel lookup.

        Returns
        -------
        rows : numpy.ndarray
            (s0 * s1, 4) int64: per grid row ``i * s1 + j``, its first segment's first and last
            ``k`` and the in-mask index of the first, and its number of segments (0: no voxel;
            the first ``k`` is then 1 and the last 0).
        seg_ptr, segs : numpy.ndarray
            All segments: row ``r`` owns ``segs[seg_ptr[r]:seg_ptr[r+1]]`` (3 columns as above).
        """

        def build():
            s0, s1, s2 = self.shape
            flat = self.mask.reshape(s0 * s1, s2).astype(np.int8)
            pad = np.zeros((flat.shape[0], 1), dtype=np.int8)
            d = np.diff(np.concatenate([pad, flat, pad], axis=1), axis=1)
            row_s, z_s = np.nonzero(d == 1)  # row-major: by grid row, then k
            _, z_e = np.nonzero(d == -1)
            counts = np.bincount(row_s, minlength=s0 * s1)
            seg_ptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
            lengths = z_e - z_s
            base = np.concatenate([[0], np.cumsum(lengths)[:-1]])
            segs = np.ascontiguousarray(np.stack([z_s, z_e - 1, base], axis=1).astype(np.int64))
            rows = np.zeros((s0 * s1, 4), dtype=np.int64)
            rows[:, 0] = 1
            has = counts > 0
            first = seg_ptr[:-1][has]
            rows[has, 0:3] = segs[first]
            rows[:, 3] = counts
            out = (rows, seg_ptr, segs)
            for a in out:
                a.setflags(write=False)
            return out

        return self._get("column_segments", build)

    def coverage(self, mask_coverage: str = "brain", gm_threshold: float = 0.1) -> np.ndarray:
        """In-mask voxels random foci may land on (NiMARE's ``mask_coverage``) (cached).

        Parameters
        ----------
        mask_coverage : {"brain", "gm"}
            ``"brain"``: every mask voxel; ``"gm"``: the mask voxels whose MNI152 grey-matter
            probability (nilearn's 2 mm template, resampled to the grid with continuous
            interpolation, as NiMARE does) exceeds ``gm_threshold`` (186,779 of the 228,483
            voxels of the 2 mm MNI mask).
        gm_threshold : float
            Grey-matter probability threshold.

        Returns
        -------
        numpy.ndarray
            int64 in-mask indices, ascending (eager, read-only).
        """
        if mask_coverage not in ("brain", "gm"):
            raise ValueError(f"mask_coverage must be 'brain' or 'gm'; got {mask_coverage!r}")
        if mask_coverage == "brain":
            return self._get("coverage_brain", lambda: _read_only(np.arange(self.n_voxels)))

        def build() -> np.ndarray:
            from nilearn import datasets, image

            gm = datasets.load_mni152_gm_template(resolution=2)
            mask_img = nib.Nifti1Image(self.mask.astype(np.int8), self.affine)
            res = image.resample_to_img(
                gm, mask_img, interpolation="continuous", force_resample=True, copy_header=True
            )
            gm_in = np.asanyarray(res.dataobj)[self.mask] > float(gm_threshold)
            return _read_only(np.flatnonzero(gm_in).astype(np.int64))

        return self._get(f"coverage_gm_{float(gm_threshold)!r}", build)

    @property
    def voxel_ijk(self) -> np.ndarray:
        """(n_voxels, 3) int array: the grid indices of the in-mask voxels."""
        return self._get("voxel_ijk", lambda: np.argwhere(self.mask).astype(np.int32))

    @property
    def voxel_xyz(self) -> np.ndarray:
        """(n_voxels, 3) float array: mm coordinates of the in-mask voxels."""
        return self.ijk_to_mm(self.voxel_ijk)

    @property
    def fingerprint(self) -> str:
        """A short hash of mask and affine: two grids with the same fingerprint are the same."""

        def build() -> str:
            h = hashlib.sha256()
            h.update(np.ascontiguousarray(self.mask).tobytes())
            h.update(np.asarray(self.shape, dtype=np.int64).tobytes())
            h.update(np.round(self.affine, 6).astype(np.float64).tobytes())
            return h.hexdigest()[:16]

        return self._get("fingerprint", build)

    def _get(self, key, build):
        if key not in self._cache:
            self._cache[key] = build()
        return self._cache[key]

    # ------------------------------------------------------------------ conversions
    def mm_to_ijk(self, xyz: np.ndarray) -> np.ndarray:
        """Project mm coordinates to grid indices (NiMARE's ``mm2vox``, round half to even).

        Non-finite coordinates give the sentinel index ``-2**30`` (outside any grid).
        """
        xyz = _as_rows(xyz)
        inv = np.linalg.inv(self.affine)
        # Column by column (elementwise): a BLAS matmul on (N, 3) x (3, 3) is slower and
        # oversubscribes threads; the arithmetic is identical in float64.
        ijk = np.empty((len(xyz), 3), dtype=np.int64)
        with np.errstate(invalid="ignore"):
            for a in range(3):
                col = (inv[a, 0] * xyz[:, 0] + inv[a, 1] * xyz[:, 1] + inv[a, 2] * xyz[:, 2]) + inv[
                    a, 3
                ]
                col = np.round(col)
                col[~np.isfinite(col)] = -(2**30)
                ijk[:, a] = col
        return ijk

    def ijk_to_mm(self, ijk: np.ndarray) -> np.ndarray:
        """Convert grid indices to mm coordinates."""
        ijk = _as_rows(ijk)
        return ijk @ self.affine[:3, :3].T + self.affine[:3, 3]

    def in_grid(self, ijk: np.ndarray) -> np.ndarray:
        """Boolean per row: the index lies inside the grid's bounds."""
        ijk = np.asarray(ijk)
        return np.all((ijk >= 0) & (ijk < np.asarray(self.shape)), axis=1)

    def ijk_to_voxel(self, ijk: np.ndarray) -> np.ndarray:
        """In-mask voxel index per row of ``ijk`` (-1 if outside the mask or the grid)."""
        ijk = np.asarray(ijk, dtype=np.int64)
        out = np.full(len(ijk), -1, dtype=np.int64)
        ok = self.in_grid(ijk)
        if ok.any():
            flat = np.ravel_multi_index(tuple(ijk[ok].T), self.shape)
            out[ok] = self.flat_lookup[flat]
        return out

    def mm_to_voxel(self, xyz: np.ndarray) -> np.ndarray:
        """In-mask voxel index per mm coordinate (-1 outside mask or grid)."""
        return self.ijk_to_voxel(self.mm_to_ijk(xyz))

    def in_mask(self, ijk: np.ndarray) -> np.ndarray:
        """Boolean per row: the index lies inside the grid and the mask."""
        return self.ijk_to_voxel(ijk) >= 0

    # ------------------------------------------------------------------ images
    def to_image(self, values: np.ndarray, dtype=np.float32, fill: float = 0) -> nib.Nifti1Image:
        """Unmask a 1-D map (or (n, n_voxels) maps) into a NIfTI image.

        NaNs are written as they are; use ``fill`` for voxels outside the mask.
        """
        values = np.asarray(values)
        if values.shape[-1] != self.n_voxels:
            raise ValueError(
                f"map has {values.shape[-1]} values but the grid has {self.n_voxels} voxels"
            )
        if values.ndim == 1:
            out = np.full(self.shape, fill, dtype=dtype)
            out[self.mask] = values
        else:
            out = np.full((*self.shape, values.shape[0]), fill, dtype=dtype)
            out[self.mask] = values.T
        img = nib.Nifti1Image(out, self.affine)
        img.header.set_xyzt_units("mm")
        return img

    def to_map(self, img: nib.Nifti1Image | str | Path, interpolation: str = "continuous"):
        """Mask an image onto this grid (resampling with nilearn if its grid differs).

        Returns
        -------
        numpy.ndarray
            1-D (or (n_volumes, n_voxels) for 4-D images) float array (eager).
        """
        if isinstance(img, str | Path):
            img = nib.load(str(img))
        if img.shape[:3] != self.shape or not np.allclose(img.affine, self.affine):
            from nilearn.image import resample_img

            img = resample_img(
                img,
                target_affine=self.affine,
                target_shape=self.shape,
                interpolation=interpolation,
                force_resample=True,
                copy_header=True,
            )
        data = np.asarray(img.dataobj)
        if data.ndim == 4:
            return data[self.mask].T
        return data[self.mask]

    def mask_image(self) -> nib.Nifti1Image:
        """The mask as a uint8 NIfTI image."""
        return nib.Nifti1Image(self.mask.astype(np.uint8), self.affine)

    def same_as(self, other: Grid) -> bool:
        """True if both grids have the same mask and affine."""
        return self.fingerprint == other.fingerprint

    def to_attrs(self) -> dict:
        """A JSON-able description for store metadata: name, shape, affine, fingerprint and,
        for a grid that is not a shipped template, its mask (packed bits, zlib, base64), so
        :meth:`from_attrs` can rebuild it."""
        out = {
            "name": self.name,
            "shape": list(self.shape),
            "affine": np.asarray(self.affine).tolist(),
            "n_voxels": self.n_voxels,
            "fingerprint": self.fingerprint,
        }
        if not self.is_builtin():
            packed = zlib.compress(np.packbits(self.mask, axis=None).tobytes(), 6)
            out["mask_packbits_zlib_b64"] = base64.b64encode(packed).decode("ascii")
        return out

    @staticmethod
    def from_attrs(attrs: dict) -> Grid | None:
        """The grid :meth:`to_attrs` described (None when it cannot be rebuilt: a custom grid
        written before masks were stored).

        Parameters
        ----------
        attrs : dict
            What :meth:`to_attrs` returned.

        Returns
        -------
        Grid or None
        """
        name = attrs.get("name")
        if name in _TEMPLATES:
            grid = _builtin_grid(name)
            if grid.fingerprint == attrs.get("fingerprint"):
                return grid
        packed = attrs.get("mask_packbits_zlib_b64")
        if packed is None:
            return None
        return _custom_grid(
            base64.b64decode(packed),
            attrs["shape"],
            tuple(float(v) for v in np.asarray(attrs["affine"], dtype=float).ravel()),
            str(name),
            str(attrs.get("fingerprint")),
        )

    def __repr__(self) -> str:
        return f"Grid(name={self.name!r}, shape={self.shape}, n_voxels={self.n_voxels})"

    # ------------------------------------------------------------------ pickling
    def __reduce__(self):
        """Pickle the definition only, never the caches (rebuilt lazily where it lands).

        A shipped template pickles to its name (a few dozen bytes); any other grid to its
        packed, zlib-compressed mask, its affine and name (a few kB for a brain mask). Both
        unpickle through a per-process registry, so a Dask worker that receives the grid with
        every task builds it, and its lookup tables, once.
        """
        if self.name in _TEMPLATES and self.is_builtin():
            return (_builtin_grid, (self.name,))
        _register(self)
        packed = zlib.compress(np.packbits(self.mask, axis=None).tobytes(), 6)
        affine = tuple(float(v) for v in self.affine.ravel())
        return (_custom_grid, (packed, self.shape, affine, self.name, self.fingerprint))

    def __copy__(self) -> Grid:
        return self  # immutable (read-only arrays): copies share the instance and its caches

    def __deepcopy__(self, memo) -> Grid:
        return self

    def __dask_tokenize__(self):
        return ("nimare_dask.space.Grid", self.name, self.fingerprint)

    def is_builtin(self) -> bool:
        """True if this grid is (equal to) the shipped template of its name."""
        if self.name not in _TEMPLATES:
            return False
        builtin = _builtin_grid(self.name)
        return self is builtin or self.fingerprint == builtin.fingerprint


@cache
def _builtin_grid(name: str) -> Grid:
    return Grid.from_mask(load_template(name, "mask"), name=name)


#: Custom grids unpickled (or pickled) in this process, by fingerprint: one instance each, so
#: its caches are built once per process however many tasks carry it.
_REGISTRY: OrderedDict[tuple[str, str], Grid] = OrderedDict()
_REGISTRY_SIZE = 8
_REGISTRY_LOCK = threading.Lock()


def _register(grid: Grid) -> Grid:
    """The registered grid with this definition (``grid`` itself when it is new)."""
    key = (grid.fingerprint, grid.name)
    with _REGISTRY_LOCK:
        found = _REGISTRY.get(key)
        if found is None:
            _REGISTRY[key] = found = grid
            while len(_REGISTRY) > _REGISTRY_SIZE:
                _REGISTRY.popitem(last=False)
        else:
            _REGISTRY.move_to_end(key)
        return found


def _custom_grid(packed: bytes, shape, affine, name: str, fingerprint: str) -> Grid:
    """Unpickle a custom grid (see :meth:`Grid.__reduce__`)."""
    with _REGISTRY_LOCK:
        found = _REGISTRY.get((fingerprint, name))
    if found is not None:
        return found
    shape = tuple(int(s) for s in shape)
    bits = np.frombuffer(zlib.decompress(packed), dtype=np.uint8)
    mask = np.unpackbits(bits, count=int(np.prod(shape))).reshape(shape).astype(bool)
    grid = Grid(mask=mask, affine=np.asarray(affine, dtype=float).reshape(4, 4), name=name)
    if grid.fingerprint != fingerprint:
        raise ValueError(f"unpickled grid {name!r} does not match its fingerprint")
    return _register(grid)


def get_grid(target: str | Grid | nib.Nifti1Image | Path | None = None) -> Grid:
    """Return a :class:`Grid`: a named template, a mask image or path, or a Grid unchanged.

    Parameters
    ----------
    target : str, Grid, Nifti1Image or path, optional
        ``None``, ``"mni152_2mm"`` or ``"ale_2mm"`` give the shipped 2 mm MNI152 brain mask
        (228,483 voxels). ``"mni152_1mm"`` gives the 1 mm mask.

    Returns
    -------
    Grid
    """
    if target is None:
        return _builtin_grid("mni152_2mm")
    if isinstance(target, Grid):
        return target
    if isinstance(target, str) and target in ("mni152_2mm", "ale_2mm"):
        return _builtin_grid("mni152_2mm")
    if isinstance(target, str) and target in _TEMPLATES:
        return _builtin_grid(target)
    if isinstance(target, nib.Nifti1Image):
        return Grid.from_mask(target)
    if isinstance(target, str | Path) and Path(target).exists():
        return Grid.from_mask(target)
    raise ValueError(
        f"unknown grid {target!r}: give 'mni152_2mm', 'mni152_1mm', a mask image or its path"
    )


def _read_only(a: np.ndarray) -> np.ndarray:
    a.setflags(write=False)
    return a
