"""NiMARE 0.22.1's ``nimare.transforms``: conversions between image types, lazily.

The conversion functions have NiMARE's names, signatures, sign conventions and numbers. Note
NiMARE's ``nlogp`` is the natural logarithm of p, ``ln(p) <= 0``; the rest of this package
uses ``-ln(p)`` (:mod:`nimare_dask.stats.transforms`, which the z/p functions here reuse).

:class:`ImageTransformer` derives missing image types (``z, p, t, beta, varcope, d, g, g_var``)
as NiMARE's ``resolve_transforms`` does, but on the lazy (analysis x voxel) arrays of
:func:`~nimare_dask.studyset.images.image_matrix` instead of files: the result is a Studyset
whose derived images are dask arrays (:func:`~nimare_dask.studyset.images.with_image_arrays`),
computed only when used and written to a store by :meth:`Studyset.to_zarr`.
:func:`transform_images` and :func:`resolve_transforms` keep NiMARE's file-based interface.

Adapted from NiMARE 0.22.1 (https://github.com/neurostuff/NiMARE), MIT License, Copyright (c)
2018 NiMARE developers (``nimare/transforms.py``), and PyMARE (MIT, Copyright (c) 2019 PyMARE
developers, ``pymare/stats.py``, the chi-square tail).
"""

from nimare_dask.transforms._convert import (
    chi2_to_nlogp,
    d_to_g,
    nlogp_to_z,
    p_to_z,
    sample_sizes_to_dof,
    sample_sizes_to_sample_size,
    samplevar_dataset_to_varcope,
    sd_to_varcope,
    se_to_varcope,
    t_and_beta_to_varcope,
    t_and_varcope_to_beta,
    t_to_d,
    t_to_nlogp,
    t_to_z,
    threshold_image,
    z_to_nlogp,
    z_to_p,
    z_to_t,
)
from nimare_dask.transforms._coordinates import ImagesToCoordinates, StandardizeField
from nimare_dask.transforms._images import (
    TARGETS,
    ImageTransformer,
    resolve_transforms,
    transform_images,
)

__all__ = [
    "TARGETS",
    "ImageTransformer",
    "ImagesToCoordinates",
    "StandardizeField",
    "chi2_to_nlogp",
    "d_to_g",
    "nlogp_to_z",
    "p_to_z",
    "resolve_transforms",
    "sample_sizes_to_dof",
    "sample_sizes_to_sample_size",
    "samplevar_dataset_to_varcope",
    "sd_to_varcope",
    "se_to_varcope",
    "t_and_beta_to_varcope",
    "t_and_varcope_to_beta",
    "t_to_d",
    "t_to_nlogp",
    "t_to_z",
    "threshold_image",
    "transform_images",
    "z_to_nlogp",
    "z_to_p",
    "z_to_t",
]
