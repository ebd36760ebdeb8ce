"""Jackknife, FocusCounter and their nilearn-style cluster table, against NiMARE 0.22.1.

The oracle runs NiMARE's ALE / MKDAChi2 and its diagnostics on the 21-study pain studyset; ours
run on the same studyset read by nimare_dask. Cluster tables must be identical (same peaks,
subpeaks, sizes, IDs; peak values within 1 float32 ulp of NiMARE's, see ``tests/_parity.py``);
focus counts exact; jackknife contributions agree to float32 rounding
(NiMARE averages float32 ratios of float32 refits; we derive the leave-one-out maps from shared
float64 sums: measured max |difference| 6e-8 on ALE, 7e-9 on MKDAChi2, so atol 1e-6).
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from _parity import assert_within_ulp
from nilearn.reporting import get_clusters_table

from nimare_dask.diagnostics import FocusCounter, Jackknife, clusters_table
from nimare_dask.diagnostics.base import peak_map_name
from nimare_dask.meta.cbma import ALE, KDA, MKDAChi2
from nimare_dask.space import Grid

JACKKNIFE_ATOL = 1e-6  # float32 rounding of means of float32 ratios (measured <= 6e-8)


# ---------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def pain(pain_studyset):
    return pain_studyset


@pytest.fixture(scope="module")
def our_ale(pain):
    return ALE().fit(pain)


@pytest.fixture(scope="module")
def nimare_ale(pain_json):
    from nimare.meta.cbma import ALE as NALE
    from nimare.studyset import Studyset as NSS

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return NALE().fit(NSS(str(pain_json)))


def _same_cluster_table(ours: pd.DataFrame, ref: pd.DataFrame, peak_maxulp: int = 0) -> None:
    """``peak_maxulp=1`` where ``ref`` comes from NiMARE's own map (its z has a CPU-dependent
    last bit, ``tests/_parity.py``); 0 (exact) where both tables read the same map."""
    assert list(ours.columns) == list(ref.columns)
    assert ours.shape == ref.shape
    assert list(ours["Cluster ID"].astype(str)) == list(ref["Cluster ID"].astype(str))
    # coordinates are exact grid points; peak values are the float32 map values
    np.testing.assert_array_equal(
        ours[["X", "Y", "Z"]].to_numpy(float), ref[["X", "Y", "Z"]].to_numpy(float)
    )
    if peak_maxulp:
        assert_within_ulp(
            ours["Peak Stat"].to_numpy(float), ref["Peak Stat"].to_numpy(float), peak_maxulp
        )
    else:
        np.testing.assert_array_equal(
            ours["Peak Stat"].to_numpy(float), ref["Peak Stat"].to_numpy(float)
        )
    assert list(ours["Cluster Size (mm3)"].astype(str)) == list(
        ref["Cluster Size (mm3)"].astype(str)
    )


def _counts(table: pd.DataFrame) -> np.ndarray:
    return table.drop(columns="id").to_numpy(dtype=float)


# ---------------------------------------------------------------------------- cluster table
def _small_grid() -> Grid:
    mask = np.zeros((20, 22, 18), dtype=bool)
    mask[1:-1, 1:-1, 1:-1] = True
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    affine[:3, 3] = [-20, -22, -18]
    return Grid(mask=mask, affine=affine, name="small")


def _small_map(grid: Grid, seed: int = 0) -> np.ndarray:
    """Smooth random blobs of both signs, plus a constant (binary-like) block."""
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    vol = ndimage.gaussian_filter(rng.standard_normal(grid.shape), 1.5) * 8
    vol[3:6, 3:6, 3:6] = 4.0  # a plateau cluster
    return vol[grid.mask].astype(np.float32)


@pytest.mark.parametrize(
    ("threshold", "cluster_threshold", "two_sided"),
    [(1.0, 0, False), (0.8, 5, True), (-1.0, 0, False), (0.0, 0, False)],
)
def test_clusters_table_equals_nilearn_synthetic(threshold, cluster_threshold, two_sided):
    grid = _small_grid()
    values = _small_map(grid)
    img = grid.to_image(values)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref, ref_maps = get_clusters_table(
            img, threshold, cluster_threshold, two_sided=two_sided, return_label_maps=True
        )
        ours = clusters_table(values, grid, threshold, cluster_threshold, two_sided)
    assert len(ref) > 0
    _same_cluster_table(ours.table, ref)
    assert len(ours.label_maps) == len(ref_maps)
    for lm, ref_lm in zip(ours.label_maps, ref_maps, strict=True):
        np.testing.assert_array_equal(lm, np.asarray(ref_lm.dataobj)[grid.mask])


def test_clusters_table_equals_nilearn_on_ale_z(our_ale):
    z = our_ale.get_map("z", return_type="array")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = get_clusters_table(our_ale.get_map("z"), 3.1)
    ours = clusters_table(z, our_ale.grid, 3.1)
    assert len(ref) == 31  # 21 clusters + subpeaks on the pain ALE
    _same_cluster_table(ours.table, ref)


def test_clusters_table_ring_plateau_reports_voxel_inside():
    """A constant ring: nilearn reports the ring voxel nearest its (outside) centre of mass."""
    grid = _small_grid()
    vol = np.zeros(grid.shape, dtype=np.float32)
    ii, jj = np.meshgrid(np.arange(grid.shape[0]), np.arange(grid.shape[1]), indexing="ij")
    r = np.hypot(ii - 10, jj - 11)
    vol[(r >= 4) & (r < 6), 9] = 3.0
    values = vol[grid.mask]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ours = clusters_table(values, grid, 1.0)
        ref = get_clusters_table(grid.to_image(values), 1.0)
    _same_cluster_table(ours.table, ref)
    xyz = ours.table[["X", "Y", "Z"]].to_numpy(float)[0]
    ijk = grid.mm_to_ijk(xyz)[0]
    assert vol[tuple(ijk)] == 3.0


def test_peak_map_name():
    assert peak_map_name("z_desc-size_level-cluster_corr-FWE_method-montecarlo") == "z"
    assert peak_map_name("z_desc-mass_level-cluster_corr-FWE_method-montecarlo") == "z"
    assert (
        peak_map_name("z_desc-group1MinusGroup2Size_level-cluster_corr-FWE_method-montecarlo")
        == "z_desc-group1MinusGroup2"
    )


# ---------------------------------------------------------------------------- vs NiMARE
@pytest.mark.parametrize("name", ["Jackknife", "FocusCounter"])
def test_diagnostics_match_nimare_on_pain_ale(name, pain, our_ale, nimare_ale):
    import nimare.diagnostics as nd

    ours_cls = {"Jackknife": Jackknife, "FocusCounter": FocusCounter}[name]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = getattr(nd, name)(target_image="z", target_threshold=3.1).transform(nimare_ale.copy())
    out = ours_cls(target_image="z", target_threshold=3.1).transform(our_ale, studyset=pain)
    assert out is not our_ale and "z_tab-clust" not in our_ale.tables  # input left alone
    counts = f"z_diag-{name}_tab-counts_tail-positive"
    assert set(ref.tables) == set(out.tables) == {"z_tab-clust", counts}
    _same_cluster_table(out.tables["z_tab-clust"], ref.tables["z_tab-clust"], peak_maxulp=1)
    assert list(out.tables[counts].columns) == list(ref.tables[counts].columns)
    assert list(out.tables[counts]["id"]) == [str(i) for i in ref.tables[counts]["id"]]
    if name == "Jackknife":
        np.testing.assert_allclose(
            _counts(out.tables[counts]), _counts(ref.tables[counts]), rtol=0, atol=JACKKNIFE_ATOL
        )
    else:
        np.testing.assert_array_equal(_counts(out.tables[counts]), _counts(ref.tables[counts]))
    np.testing.assert_array_equal(
        out.get_map("label_tail-positive", return_type="array"),
        np.asarray(ref.maps["label_tail-positive"]),
    )
    assert out.diagnostics[-1].__class__ is ours_cls


def test_jackknife_pairwise_mkdachi2_matches_nimare(pain, pain_json):
    """Both tails of MKDAChi2's association z: group 1 explains +, group 2 explains -."""
    import nimare.diagnostics as nd
    from nimare.meta.cbma import MKDAChi2 as NMKDAChi2
    from nimare.studyset import Studyset as NSS

    ids = list(pain.ids)
    g1, g2 = ids[:11], ids[11:]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        nss = NSS(str(pain_json))
        nres = NMKDAChi2().fit(nss.slice(g1), nss.slice(g2))
        ref = nd.Jackknife(
            "z_desc-association", target_threshold=3.0, display_second_group=True
        ).transform(nres)
    res = MKDAChi2().fit(pain.slice(g1), pain.slice(g2))
    out = Jackknife("z_desc-association", target_threshold=3.0, display_second_group=True)
    out = out.transform(res, studyset=pain.slice(g1), studyset2=pain.slice(g2))
    name = "z_desc-association_diag-Jackknife_tab-counts_tail-"
    _same_cluster_table(
        out.tables["z_desc-association_tab-clust"],
        ref.tables["z_desc-association_tab-clust"],
        peak_maxulp=1,
    )
    for tail, group in (("positive", g1), ("negative", g2)):
        ours, theirs = out.tables[name + tail], ref.tables[name + tail]
        assert list(ours["id"]) == group
        assert list(ours.columns) == list(theirs.columns)
        np.testing.assert_allclose(_counts(ours), _counts(theirs), rtol=0, atol=JACKKNIFE_ATOL)


# ---------------------------------------------------------------------------- internal
class _RefitJackknife(Jackknife):
    """Forces the refit path, to check the shared-reduction path against real refits."""

    @staticmethod
    def _rule(est, value_map):
        return None


@pytest.mark.parametrize("estimator", [ALE, KDA])
def test_shared_reduction_equals_refits(pain, estimator):
    ss = pain.slice(pain.ids[:7])
    res = estimator().fit(ss)
    z = res.get_map("z", return_type="array")
    thr = float(np.sort(z)[-400])  # a few hundred voxels in clusters
    fast = Jackknife("z", target_threshold=thr).transform(res, studyset=ss)
    slow = _RefitJackknife("z", target_threshold=thr).transform(res, studyset=ss)
    fast = fast.tables["z_diag-Jackknife_tab-counts_tail-positive"]
    slow = slow.tables["z_diag-_RefitJackknife_tab-counts_tail-positive"]
    assert fast.shape == slow.shape and fast.shape[1] > 1
    # same float32 statistic either way, up to float64 summation order
    np.testing.assert_allclose(_counts(fast), _counts(slow), rtol=0, atol=1e-6)


def test_no_clusters(pain, our_ale):
    out = Jackknife("z", target_threshold=100.0).transform(our_ale, studyset=pain)
    assert out.tables["z_tab-clust"].empty
    counts = out.tables["z_diag-Jackknife_tab-counts_tail-positive"]
    assert list(counts.columns) == ["id"] and len(counts) == len(pain)
    assert not out.get_map("label_tail-positive", return_type="array").any()


def test_errors(pain, our_ale):
    with pytest.raises(ValueError, match="not in the result"):
        Jackknife("z_nope", target_threshold=3.1).transform(our_ale, studyset=pain)
    # a result that knows no inputs (fits keep theirs; e.g. one built by hand) needs them given
    bare = our_ale.copy()
    bare._inputs.clear()
    with pytest.raises(ValueError, match="pass transform"):
        Jackknife("z", target_threshold=3.1).transform(bare)
    other = pain.slice(pain.ids[:10])
    with pytest.raises(ValueError, match="do not reproduce"):
        Jackknife("z", target_threshold=3.1).transform(our_ale, studyset=other)
    with pytest.raises(ValueError, match="only one"):
        Jackknife("z", voxel_thresh=1.0, target_threshold=1.0)
    with pytest.warns(FutureWarning):
        assert Jackknife("z", voxel_thresh=2.0).target_threshold == 2.0


def test_jackknife_on_cluster_fwe_target(pain, our_ale):
    """NiMARE's default target, the cluster-level Monte Carlo FWE z map."""
    from nimare_dask.correct import FWECorrector

    corrected = FWECorrector(method="montecarlo", n_iters=100, random_state=0).transform(our_ale)
    target = "z_desc-size_level-cluster_corr-FWE_method-montecarlo"
    out = Jackknife(target_threshold=1.645).transform(corrected, studyset=pain)
    table = out.tables[f"{target}_tab-clust"]
    counts = out.tables[f"{target}_diag-Jackknife_tab-counts_tail-positive"]
    assert "label_desc-size_level-cluster_corr-FWE_method-montecarlo_tail-positive" in (
        out.maps_names
    )
    # peaks come from the uncorrected z map, at the reported coordinates
    zmap = corrected.get_map("z", return_type="array")
    vox = corrected.grid.mm_to_voxel(table[["X", "Y", "Z"]].to_numpy(float))
    np.testing.assert_array_equal(table["Peak Stat"].to_numpy(np.float32), zmap[vox])
    assert counts.shape[0] == len(pain)
