"""Anatomical labels from a shipped atlas: the Harvard-Oxford cortical atlas (FSL).

The atlas image (maximum-probability labels at 25%, 2 mm MNI152, 48 cortical regions) is shipped
in ``nimare_dask/resources/atlases`` with its licence (FSL's: non-commercial use). Labels are
looked up in world (mm) coordinates, so any grid works; a point outside the atlas or in no
region gets ``"no label"``. Left/right is taken from the sign of x (MNI: x < 0 is left).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from importlib import resources

import nibabel as nib
import numpy as np

__all__ = ["HARVARD_OXFORD_CORTICAL", "NO_LABEL", "Atlas", "load_atlas"]

NO_LABEL = "no label"

#: Region names of the Harvard-Oxford cortical atlas; image value k is entry k - 1 (FSL's
#: ``HarvardOxford-Cortical.xml`` order).
HARVARD_OXFORD_CORTICAL = (
    "Frontal Pole",
    "Insular Cortex",
    "Superior Frontal Gyrus",
    "Middle Frontal Gyrus",
    "Inferior Frontal Gyrus, pars triangularis",
    "Inferior Frontal Gyrus, pars opercularis",
    "Precentral Gyrus",
    "Temporal Pole",
    "Superior Temporal Gyrus, anterior division",
    "Superior Temporal Gyrus, posterior division",
    "Middle Temporal Gyrus, anterior division",
    "Middle Temporal Gyrus, posterior division",
    "Middle Temporal Gyrus, temporooccipital part",
    "Inferior Temporal Gyrus, anterior division",
    "Inferior Temporal Gyrus, posterior division",
    "Inferior Temporal Gyrus, temporooccipital part",
    "Postcentral Gyrus",
    "Superior Parietal Lobule",
    "Supramarginal Gyrus, anterior division",
    "Supramarginal Gyrus, posterior division",
    "Angular Gyrus",
    "Lateral Occipital Cortex, superior division",
    "Lateral Occipital Cortex, inferior division",
    "Intracalcarine Cortex",
    "Frontal Medial Cortex",
    "Juxtapositional Lobule Cortex (formerly Supplementary Motor Cortex)",
    "Subcallosal Cortex",
    "Paracingulate Gyrus",
    "Cingulate Gyrus, anterior division",
    "Cingulate Gyrus, posterior division",
    "Precuneous Cortex",
    "Cuneal Cortex",
    "Frontal Orbital Cortex",
    "Parahippocampal Gyrus, anterior division",
    "Parahippocampal Gyrus, posterior division",
    "Lingual Gyrus",
    "Temporal Fusiform Cortex, anterior division",
    "Temporal Fusiform Cortex, posterior division",
    "Temporal Occipital Fusiform Cortex",
    "Occipital Fusiform Gyrus",
    "Frontal Operculum Cortex",
    "Central Opercular Cortex",
    "Parietal Operculum Cortex",
    "Planum Polare",
    "Heschl's Gyrus (includes H1 and H2)",
    "Planum Temporale",
    "Supracalcarine Cortex",
    "Occipital Pole",
)

_ATLASES = {
    "harvard_oxford_cortical": (
        "HarvardOxford-cort-maxprob-thr25-2mm.nii.gz",
        HARVARD_OXFORD_CORTICAL,
        "Harvard-Oxford cortical atlas (maximum probability, 25% threshold, FSL)",
    ),
}


@dataclass(frozen=True)
class Atlas:
    """A label atlas: an integer image and the name of each label.

    Attributes
    ----------
    name : str
        Short name (e.g. ``"harvard_oxford_cortical"``).
    description : str
        Human-readable name, for tables and methods text.
    data : numpy.ndarray
        3-D integer label image (0: no region).
    affine : numpy.ndarray
        Its affine.
    labels : tuple of str
        Name of label k at position k - 1.
    """

    name: str
    description: str
    data: np.ndarray
    affine: np.ndarray
    labels: tuple[str, ...]

    def values_at(self, xyz: np.ndarray) -> np.ndarray:
        """Atlas label values at mm coordinates (0 outside the atlas).

        Parameters
        ----------
        xyz : (N, 3) array_like
            Coordinates in mm.

        Returns
        -------
        numpy.ndarray
            (N,) int64 label values (eager).
        """
        xyz = np.atleast_2d(np.asarray(xyz, dtype=np.float64))
        inv = np.linalg.inv(self.affine)
        ijk = np.round(xyz @ inv[:3, :3].T + inv[:3, 3]).astype(np.int64)
        inside = np.all((ijk >= 0) & (ijk < np.asarray(self.data.shape)), axis=1)
        out = np.zeros(len(ijk), dtype=np.int64)
        out[inside] = self.data[tuple(ijk[inside].T)]
        return out

    def name_of(self, value: int, x: float | None = None) -> str:
        """Region name of a label value, with ``"Left "``/``"Right "`` when ``x`` is given.

        Parameters
        ----------
        value : int
            Label value.
        x : float, optional
            The point's x coordinate in mm (MNI: negative is left).

        Returns
        -------
        str
        """
        if value <= 0 or value > len(self.labels):
            return NO_LABEL
        name = self.labels[value - 1]
        if x is None:
            return name
        return f"{'Left' if x < 0 else 'Right'} {name}"

    def label(self, xyz: np.ndarray, lateralize: bool = True) -> list[str]:
        """Region names at mm coordinates.

        Parameters
        ----------
        xyz : (N, 3) array_like
            Coordinates in mm.
        lateralize : bool
            Prefix ``Left``/``Right`` from the sign of x.

        Returns
        -------
        list of str
            One name per point (``"no label"`` outside every region).
        """
        xyz = np.atleast_2d(np.asarray(xyz, dtype=np.float64))
        return [
            self.name_of(int(v), float(p[0]) if lateralize else None)
            for v, p in zip(self.values_at(xyz), xyz, strict=True)
        ]

    def overlap(self, xyz: np.ndarray, top: int = 3, lateralize: bool = True) -> list[tuple]:
        """The regions a set of voxels overlaps most, as (name, percent of the voxels).

        Parameters
        ----------
        xyz : (N, 3) array_like
            mm coordinates of a cluster's voxels.
        top : int
            Number of regions to return (largest overlap first; voxels in no region are
            reported as ``"no label"`` when they rank).
        lateralize : bool
            Count left and right parts of a region separately.

        Returns
        -------
        list of tuple
            ``[(name, percent), ...]``, percent of the voxels, largest first.
        """
        xyz = np.atleast_2d(np.asarray(xyz, dtype=np.float64))
        if xyz.size == 0:
            return []
        values = self.values_at(xyz)
        if lateralize:
            keys = np.where(values > 0, values * 2 + (xyz[:, 0] >= 0), 0)
        else:
            keys = values
        uniq, counts = np.unique(keys, return_counts=True)
        order = np.lexsort((uniq, -counts))[:top]
        out = []
        for k in order:
            key = int(uniq[k])
            if key == 0:
                name = NO_LABEL
            elif lateralize:
                name = self.name_of(key // 2, 1.0 if key % 2 else -1.0)
            else:
                name = self.name_of(key)
            out.append((name, 100.0 * counts[k] / len(values)))
        return out


@cache
def load_atlas(name: str = "harvard_oxford_cortical") -> Atlas:
    """Load a shipped atlas.

    Parameters
    ----------
    name : {"harvard_oxford_cortical"}
        Which atlas.

    Returns
    -------
    Atlas
        Cached, eager.
    """
    if name not in _ATLASES:
        raise ValueError(f"unknown atlas {name!r}; shipped atlases: {sorted(_ATLASES)}")
    filename, labels, description = _ATLASES[name]
    ref = resources.files("nimare_dask.resources").joinpath("atlases", filename)
    with resources.as_file(ref) as path:
        img = nib.load(str(path))
        data = np.asarray(img.dataobj).astype(np.int16)
        affine = np.asarray(img.affine, dtype=np.float64)
    if int(data.max()) > len(labels):
        raise RuntimeError(f"atlas {filename} has label {int(data.max())} > {len(labels)} names")
    data.setflags(write=False)
    return Atlas(name=name, description=description, data=data, affine=affine, labels=labels)
