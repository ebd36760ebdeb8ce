"""``mask_coverage``: where random foci land in Monte Carlo nulls (NiMARE's ``"brain"``/``"gm"``)."""

from __future__ import annotations

import numpy as np
import pytest

from nimare_dask.correct import FWECorrector
from nimare_dask.meta.cbma import ALE, KDA, MKDAChi2, MKDADensity


def test_gm_pool_is_nimares_null_space(pain_studyset):
    """The random-foci pool of ``mask_coverage="gm"`` is NiMARE's grey-matter null space."""
    pytest.importorskip("nimare")
    from nilearn.maskers import NiftiMasker
    from nimare.utils import _mask_coverage_to_null_ijk

    est = ALE(mask_coverage="gm")
    est.fit(pain_studyset)
    block = est._null_block(est.inputs_["studyset"], "fwe", threshold=0.01)
    grid = pain_studyset.grid
    ref = _mask_coverage_to_null_ijk(NiftiMasker(grid.mask_image()).fit(), "gm")
    np.testing.assert_array_equal(block._pool, ref)
    # an iteration's foci all land on grey matter
    gm = np.zeros(grid.shape, dtype=bool)
    gm[tuple(ref.T)] = True
    drawn = block._draw(np.random.default_rng(0), block.layouts[0])
    assert gm[tuple(drawn.T)].all()
    # the default keeps every mask voxel (and NiMARE's "brain" stream)
    default = ALE().fit(pain_studyset).estimator
    assert default._coverage_pool(grid) is None


def test_gm_coverage_changes_the_null_and_says_so(pain_studyset):
    fwe = FWECorrector(method="montecarlo", n_iters=30, random_state=1, progress=False)
    brain = fwe.transform(ALE().fit(pain_studyset))
    gm = fwe.transform(ALE(mask_coverage="gm").fit(pain_studyset))
    name = "values_level-voxel_corr-fwe_method-montecarlo"
    a, b = brain.null_distributions[name], gm.null_distributions[name]
    assert a.shape == b.shape == (30,)
    # the same seed, other positions: other maxima; foci packed into fewer voxels overlap more
    assert not np.array_equal(a, b)
    assert np.median(b) >= np.median(a)
    assert "grey-matter voxels" in gm.description
    assert "grey-matter" not in brain.description


@pytest.mark.parametrize("cls", [ALE, MKDADensity, KDA])
def test_bad_mask_coverage_raises_at_fit(cls, pain_studyset):
    est = cls(mask_coverage="white")
    with pytest.raises(ValueError, match="mask_coverage must be 'brain' or 'gm'"):
        est.fit(pain_studyset)


def test_mkdachi2_random_foci_uses_coverage(pain_studyset):
    ids = list(pain_studyset.ids)
    a, b = pain_studyset.slice(ids[:10]), pain_studyset.slice(ids[10:])
    est = MKDAChi2(fwe_null_method="random-foci", mask_coverage="gm", random_state=0)
    res = FWECorrector(method="montecarlo", n_iters=5, progress=False).transform(est.fit(a, b))
    assert "grey-matter" in res.description
