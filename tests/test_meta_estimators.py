"""Estimator plumbing: import paths, sklearn-style parameters, kernel__ keywords, errors."""

from __future__ import annotations

import pytest

import nimare_dask.meta as meta
from nimare_dask.meta import cbma
from nimare_dask.meta.base import compute
from nimare_dask.meta.cbma import ale, mkda
from nimare_dask.meta.kernel import ALEKernel, KDAKernel, MKDAKernel


def test_import_paths_mirror_nimare():
    assert meta.ALE is cbma.ALE is ale.ALE
    assert meta.MKDAChi2 is cbma.MKDAChi2 is mkda.MKDAChi2
    for name in ("ALESubtraction", "SCALE", "MKDADensity", "KDA"):
        assert getattr(meta, name) is getattr(cbma, name)
    assert meta.kernel.ALEKernel is ALEKernel


@pytest.mark.parametrize(
    "cls, kernel_cls",
    [
        (cbma.ALE, ALEKernel),
        (cbma.ALESubtraction, ALEKernel),
        (cbma.MKDADensity, MKDAKernel),
        (cbma.KDA, KDAKernel),
        (cbma.MKDAChi2, MKDAKernel),
    ],
)
def test_default_kernels_and_kernel_kwargs(cls, kernel_cls):
    est = cls()
    assert type(est.kernel) is kernel_cls
    param = "fwhm" if kernel_cls is ALEKernel else "r"
    est = cls(**{f"kernel__{param}": 8})
    assert getattr(est.kernel, param) == 8
    assert est.get_params()[f"kernel__{param}"] == 8
    assert "kernel" in est.get_params(deep=False)
    assert f"kernel__{param}" not in est.get_params(deep=False)


def test_init_only_stores_and_set_params():
    k = ALEKernel(fwhm=10)
    est = cbma.ALE(kernel=k, null_method="montecarlo", n_iters=5, random_state=3)
    assert est.kernel is k and est.n_iters == 5 and est.random_state == 3
    est.set_params(kernel__fwhm=12, n_cores=2)
    assert est.kernel.fwhm == 12 and k.fwhm == 10  # the user's kernel is not modified
    assert est.n_cores == 2
    with pytest.raises(TypeError, match="no parameter"):
        est.set_params(fwhmm=3)
    with pytest.raises(TypeError, match="no parameter"):
        est.set_params(kernel__radius=3)
    assert "ALE(" in repr(est)


def test_kernel_transformer_alias_and_unknown_kwargs():
    est = cbma.ALE(kernel_transformer=ALEKernel, kernel__sample_size=20)
    assert isinstance(est.kernel, ALEKernel) and est.kernel.sample_size == 20
    est = cbma.MKDADensity(kernel_transformer=MKDAKernel(r=6))
    assert est.kernel.r == 6
    with pytest.raises(TypeError, match="unexpected keyword"):
        cbma.ALE(fwhm=10)
    with pytest.raises(TypeError, match="kernel__"):
        cbma.ALE(kernel__radius=10)
    with pytest.raises(TypeError, match="not both"):
        cbma.ALE(kernel=ALEKernel(), kernel_transformer=ALEKernel())


def test_unknown_null_method(pain_studyset):
    # null_method="montecarlo" is tested in test_null_montecarlo.py
    for cls in (cbma.ALE, cbma.MKDADensity, cbma.KDA):
        with pytest.raises(ValueError, match="null_method"):
            cls(null_method="exact").fit(pain_studyset)


def test_compute_keeps_order():
    import dask
    import dask.array as da

    f = dask.delayed(lambda x: (x, 2))
    # dask 2026.8 groups mixed collections by type in dask.compute; ours keeps the order
    out = compute(da.ones(2), f(1), da.zeros(2), f(5), 7, n_cores=1)
    assert out[0].tolist() == [1, 1] and out[1] == (1, 2) and out[2].tolist() == [0, 0]
    assert out[3] == (5, 2) and out[4] == 7
