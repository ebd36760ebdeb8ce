"""NiMARE's conversion functions (``ln p`` convention) and ``threshold_image``.

Adapted from NiMARE 0.22.1 (https://github.com/neurostuff/NiMARE), MIT License, Copyright (c)
2018 NiMARE developers (``nimare/transforms.py``), and PyMARE (MIT, Copyright (c) 2019 PyMARE developers, ``pymare/stats.py``, the
chi-square tail).
"""

from __future__ import annotations

import os

import nibabel as nib
import numpy as np
from scipy import special, stats

from nimare_dask.stats import transforms as _st


def _scalar(x):
    x = np.asarray(x)
    return x[()] if x.shape == () else x


# ----------------------------------------------------------------------------- simple conversions
def sample_sizes_to_dof(sample_sizes):
    """Degrees of freedom: the number of participants minus the number of groups."""
    return np.sum(sample_sizes) - len(sample_sizes)


def sample_sizes_to_sample_size(sample_sizes):
    """Total sample size (sum over groups)."""
    return np.sum(sample_sizes)


def se_to_varcope(se):
    """Sampling variance from a standard error: ``se**2``."""
    return se**2


def sd_to_varcope(sd, sample_size):
    """Sampling variance from a sample standard deviation: ``(sd / sqrt(n))**2``."""
    return se_to_varcope(sd / np.sqrt(sample_size))


def samplevar_dataset_to_varcope(samplevar_dataset, sample_size):
    """Sampling variance from the sample variance of the observations: ``v / n``."""
    return samplevar_dataset / sample_size


def t_and_varcope_to_beta(t, varcope):
    """Parameter estimate from t and sampling variance: ``t * sqrt(varcope)``."""
    return t * np.sqrt(varcope)


def t_and_beta_to_varcope(t, beta):
    """Sampling variance from t and the estimate: ``(beta / t)**2``."""
    return (beta / t) ** 2


def t_to_d(t_values, sample_sizes):
    """Cohen's d from a one-sample t: ``t / sqrt(n)``."""
    return t_values / np.sqrt(sample_sizes)


def d_to_g(d, N, return_variance=False):
    """Hedges' g (and optionally its variance) from Cohen's d and the sample size ``N``."""
    h = 1 - (3 / (4 * (N - 1) - 1))
    if return_variance:
        return d * h, ((N - 1) * (1 + N * d**2) * (h**2) / (N * (N - 3))) - d**2
    return d * h


# ----------------------------------------------------------------------------- p, z, t (ln p)
def _check_tail(tail):
    if tail not in ("one", "two"):
        raise ValueError('Argument "tail" must be one of ["one", "two"]')


def _log_erfc(y):
    """``log(erfc(y))``, through ``log_ndtr`` where ``erfc`` underflows (NiMARE 0.22.1, MIT)."""
    y = np.atleast_1d(np.asarray(y, dtype=float))
    tail = special.erfc(y)
    with np.errstate(divide="ignore"):
        out = np.log(tail)
    under = tail < np.finfo(float).tiny
    if under.any():
        out[under] = np.log(2.0) + special.log_ndtr(-y[under] * np.sqrt(2.0))
    return out


def z_to_nlogp(z, tail="two"):
    """``ln(p)`` of z-values (NiMARE's ``nlogp``: natural log, not negated; <= 0).

    Evaluated as NiMARE does (``log(erfc)``), so values near p = 1 agree to the last bit.
    """
    _check_tail(tail)
    z = np.asarray(z, dtype=float)
    if tail == "two":
        nlogp = _log_erfc(np.abs(z) / np.sqrt(2.0))
    else:
        nlogp = _log_erfc(z / np.sqrt(2.0)) - np.log(2.0)
    return _scalar(np.minimum(nlogp, 0.0).reshape(z.shape))


def z_to_p(z, tail="two"):
    """P-values of z-values, floored at the smallest positive double."""
    p = np.clip(np.exp(np.asarray(z_to_nlogp(z, tail=tail))), np.nextafter(0.0, 1.0), 1.0)
    return _scalar(p)


def nlogp_to_z(nlogp, tail="two"):
    """Unsigned z-values from ``ln(p)`` (NiMARE's ``nlogp``)."""
    _check_tail(tail)
    return _st.nlogp_to_z(-np.asarray(nlogp, dtype=float), tail=tail)


def p_to_z(p, tail="two"):
    """Unsigned z-values from p-values (clipped to the positive float64 range)."""
    _check_tail(tail)
    return _st.p_to_z(p, tail=tail)


def _log_t_power_law(dof):
    # log C of the far t tail, sf(t) -> C t**-dof (NiMARE 0.22.1, MIT)
    return (
        special.gammaln((dof + 1) / 2.0)
        - special.gammaln(dof / 2.0)
        - 0.5 * np.log(np.pi)
        + ((dof - 2) / 2.0) * np.log(dof)
    )


def _log_t_sf(t, dof):
    """``log(sf(t))`` of the t distribution, carried by the power law where SciPy underflows."""
    t = np.atleast_1d(np.asarray(t, dtype=float))
    dof = np.broadcast_to(np.asarray(dof, dtype=float), t.shape)
    with np.errstate(divide="ignore"):
        out = np.array(stats.t.logsf(t, dof), dtype=float)
    under = ~np.isfinite(out) & np.isfinite(t) & (t > 0)
    if under.any():
        out[under] = _log_t_power_law(dof[under]) - dof[under] * np.log(t[under])
    return out


def t_to_nlogp(t_values, dof, tail="two"):
    """``ln(p)`` of t-statistics with ``dof`` degrees of freedom (unbounded in the tail)."""
    _check_tail(tail)
    t = np.asarray(t_values, dtype=float)
    shape = np.broadcast_shapes(t.shape, np.shape(dof))
    t = np.broadcast_to(t, shape)
    if tail == "two":
        nlogp = np.log(2.0) + _log_t_sf(np.abs(t), dof)
    else:
        nlogp = _log_t_sf(t, dof)
    return _scalar(np.minimum(nlogp, 0.0).reshape(shape))


def t_to_z(t_values, dof):
    """Signed z-values with the same one-tailed probability as t (``dof`` may broadcast)."""
    t = np.asarray(t_values, dtype=float)
    nlogp = t_to_nlogp(np.abs(t), dof, tail="one")
    return _scalar(np.sign(t) * nlogp_to_z(nlogp, tail="one") + 0.0)


def z_to_t(z_values, dof):
    """Signed t-statistics with the same one-tailed probability as z (``dof`` may broadcast).

    As NiMARE: two inversions (SciPy's ``isf`` and the far-tail power law) are tried and the
    one that reproduces the tail it was inverted from is kept.
    """
    z = np.asarray(z_values, dtype=float)
    shape = np.broadcast_shapes(z.shape, np.shape(dof))
    z = np.broadcast_to(z, shape)
    dof = np.broadcast_to(np.asarray(dof, dtype=float), shape)
    nlogp = np.asarray(z_to_nlogp(np.abs(z), tail="one"))
    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
        asym = np.exp((_log_t_power_law(dof) - nlogp) / dof)
        from_p = stats.t.isf(np.exp(nlogp), dof)
        err_p = np.abs(_log_t_sf(from_p, dof).reshape(shape) - nlogp)
        err_a = np.abs(_log_t_sf(asym, dof).reshape(shape) - nlogp)
        magnitude = np.where(err_p <= err_a, from_p, asym)
    return _scalar(np.sign(z) * magnitude + 0.0)


def chi2_to_nlogp(chi2_values, dof):
    """``ln(p)`` of the upper chi-square tail, finite where the p-value underflows."""
    q = np.asarray(chi2_values, dtype=float)
    if np.ndim(dof) == 0 and dof == 1:
        return np.minimum(_log_erfc(np.sqrt(q / 2.0)).reshape(q.shape), 0.0)
    # Adapted from PyMARE (MIT): SciPy's logsf, and where it underflows the continued fraction
    # of the upper incomplete gamma function (modified Lentz) with its prefactor in log space.
    a, x = np.broadcast_arrays(np.asarray(dof, float) / 2.0, q / 2.0)
    with np.errstate(divide="ignore"):
        out = np.array(np.broadcast_to(stats.chi2.logsf(q, dof), a.shape), dtype=float)
    tail = ~np.isfinite(out) & np.isfinite(x) & (x >= a + 1.0)
    if tail.any():
        at, xt = a[tail], x[tail]
        tiny = np.finfo(float).tiny
        b = xt + 1.0 - at
        c, d = np.full(b.shape, 1.0 / tiny), 1.0 / b
        h, active = d.copy(), np.ones(b.shape, bool)
        for i in range(1, 10_001):
            an = -i * (i - at)
            b = b + 2.0
            d = an * d + b
            d = 1.0 / np.where(np.abs(d) < tiny, tiny, d)
            c = b + an / c
            c = np.where(np.abs(c) < tiny, tiny, c)
            delta = d * c
            h = np.where(active, h * delta, h)
            active &= np.abs(delta - 1.0) > 1e-15
            if not active.any():
                break
        out[tail] = -xt + at * np.log(xt) - special.gammaln(at) + np.log(h)
    return _scalar(out)


# ----------------------------------------------------------------------------- threshold_image
def _coerce_image_like(image):
    if isinstance(image, np.ndarray):
        return image
    if isinstance(image, str | os.PathLike):
        return nib.load(str(image))
    if isinstance(image, nib.spatialimages.SpatialImage):
        return image
    raise ValueError(
        "image inputs must be numpy arrays, Niimg-like objects, or paths to image files; "
        f"got {type(image)}"
    )


def threshold_image(image, threshold, thresholding_values=None, tail="upper", fill_value=0):
    """Replace voxels failing a threshold by ``fill_value`` (array or NIfTI in, same out).

    ``tail``: ``"upper"`` keeps values >= threshold, ``"lower"`` <= threshold, ``"two-sided"``
    ``|value| >= threshold``; the test applies to ``thresholding_values`` when given.
    """
    image = _coerce_image_like(image)
    thr = image if thresholding_values is None else _coerce_image_like(thresholding_values)
    data = np.asarray(image) if isinstance(image, np.ndarray) else np.asanyarray(image.dataobj)
    tdata = np.asarray(thr) if isinstance(thr, np.ndarray) else np.asanyarray(thr.dataobj)
    if data.shape != tdata.shape:
        raise ValueError(
            "image and thresholding_values must have matching shapes; "
            f"got {data.shape} and {tdata.shape}."
        )
    if tail == "upper":
        keep = tdata >= threshold
    elif tail == "lower":
        keep = tdata <= threshold
    elif tail == "two-sided":
        keep = np.abs(tdata) >= threshold
    else:
        raise ValueError(f"Unsupported tail '{tail}'.")
    out = np.where(keep, data, fill_value)
    if np.issubdtype(data.dtype, np.floating) and out.dtype != data.dtype:
        out = out.astype(data.dtype, copy=False)
    if isinstance(image, np.ndarray):
        return out
    header = image.header.copy()
    header.set_data_dtype(out.dtype)
    return image.__class__(out, image.affine, header)
