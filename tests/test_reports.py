"""Reports: cluster tables, atlas labels, methods text, figures, HTML report, saved outputs."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import warnings
from importlib import resources

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from nilearn.reporting import get_clusters_table

from nimare_dask.correct import FWECorrector
from nimare_dask.diagnostics import FocusCounter, Jackknife
from nimare_dask.meta.cbma import ALE
from nimare_dask.reports import (
    cluster_table,
    cluster_table_from_arrays,
    load_atlas,
    methods_text,
    save_outputs,
    write_methods,
)
from nimare_dask.reports.atlas import HARVARD_OXFORD_CORTICAL, NO_LABEL
from nimare_dask.reports.clusters import CLUSTER_COLUMNS, default_threshold
from nimare_dask.reports.figures import plot_null_distribution
from nimare_dask.results import MetaResult
from nimare_dask.results.references import cited_keys
from nimare_dask.space import Grid

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def pain(pain_studyset):
    return pain_studyset


@pytest.fixture(scope="module")
def full_result(pain):
    """ALE + Bonferroni FWE + Jackknife + FocusCounter, with fake Monte Carlo nulls."""
    res = FWECorrector("bonferroni").transform(ALE().fit(pain))
    res = Jackknife("z", target_threshold=3.1).transform(res, studyset=pain)
    res = FocusCounter("z", target_threshold=3.1).transform(res, studyset=pain)
    rng = np.random.default_rng(0)
    res.null_distributions["values_level-voxel_corr-fwe_method-montecarlo"] = rng.gamma(
        20, 0.0012, 200
    )
    res.null_distributions["values_desc-size_level-cluster_corr-fwe_method-montecarlo"] = (
        rng.poisson(40, 200).astype(float)
    )
    return res


# ---------------------------------------------------------------------------- cluster tables
def _grid() -> Grid:
    mask = np.ones((24, 24, 12), dtype=bool)
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    affine[:3, 3] = [-24, -24, -12]
    return Grid(mask=mask, affine=affine, name="ring-grid")


def test_ring_cluster_representative_inside():
    """The centre of mass of a ring is in its hole; the representative voxel is on the ring."""
    grid = _grid()
    vol = np.zeros(grid.shape)
    ii, jj = np.meshgrid(np.arange(24), np.arange(24), indexing="ij")
    r = np.hypot(ii - 11.5, jj - 11.5)
    ring = (r >= 5) & (r < 7.5)
    vol[ring, 5] = 2.0 + 0.01 * ii[ring]  # varying values: a real peak
    table = cluster_table_from_arrays(vol[grid.mask], grid, 1.0, subpeaks=False, atlas=None)
    assert list(table.columns) == CLUSTER_COLUMNS
    assert len(table) == 1
    row = table.iloc[0]
    assert row["Size (voxels)"] == int(ring.sum())
    assert row["Size (mm3)"] == 8.0 * ring.sum()
    com = row[["Center of Mass X", "Center of Mass Y", "Center of Mass Z"]].to_numpy(float)
    rep = row[["Representative X", "Representative Y", "Representative Z"]].to_numpy(float)
    peak = row[["Peak X", "Peak Y", "Peak Z"]].to_numpy(float)
    # the centre of mass falls in the hole: its voxel is not in the cluster
    assert vol[tuple(grid.mm_to_ijk(com)[0])] == 0
    for xyz in (rep, peak):
        assert vol[tuple(grid.mm_to_ijk(xyz)[0])] > 1.0
    # the representative voxel is the ring voxel nearest the centre of mass
    ring_xyz = grid.ijk_to_mm(np.argwhere(vol > 1.0))
    best = np.min(np.linalg.norm(ring_xyz - com, axis=1))
    assert np.linalg.norm(rep - com) == pytest.approx(best)
    assert row["Peak Stat"] == pytest.approx(vol.max())


def test_cluster_table_matches_nilearn_on_real_map(pain):
    res = ALE().fit(pain)
    table = cluster_table(res, "z", 3.1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = get_clusters_table(res.get_map("z"), 3.1)
    # peaks, subpeaks and their IDs as nilearn; sizes on the cluster rows
    assert list(table["Cluster ID"]) == [str(c) for c in ref["Cluster ID"]]
    np.testing.assert_array_equal(
        table[["Peak X", "Peak Y", "Peak Z"]].to_numpy(float), ref[["X", "Y", "Z"]].to_numpy(float)
    )
    np.testing.assert_allclose(table["Peak Stat"], ref["Peak Stat"].astype(float), rtol=1e-7)
    main = table["Size (mm3)"].notna()
    np.testing.assert_array_equal(
        table.loc[main, "Size (mm3)"].to_numpy(float),
        ref.loc[main.to_numpy(), "Cluster Size (mm3)"].to_numpy(float),
    )
    # p is the map's p at the peak (from the result's p map), subpeaks included
    p = res.get_map("p", return_type="array")
    vox = res.grid.mm_to_voxel(table.loc[main, ["Peak X", "Peak Y", "Peak Z"]].to_numpy(float))
    np.testing.assert_allclose(table.loc[main, "p"], p[vox], rtol=1e-6)
    sub = ~main
    assert sub.any()
    vox = res.grid.mm_to_voxel(table.loc[sub, ["Peak X", "Peak Y", "Peak Z"]].to_numpy(float))
    np.testing.assert_allclose(table.loc[sub, "p"], p[vox], rtol=1e-6)
    # anatomical labels: the largest pain cluster peaks in the right insula
    assert table.loc[0, "Peak Label"] == "Right Insular Cortex"
    assert table.loc[0, "Atlas Overlap"].startswith("Right Insular Cortex")


def test_cluster_level_map_one_row_per_cluster(pain):
    """A cluster-level map (constant per cluster): no subpeaks; peaks from the z map."""
    res = ALE().fit(pain)
    z = res.get_map("z", return_type="array")
    grid = res.grid
    from nimare_dask.stats.clusters import label_clusters

    clusters = label_clusters(z, grid, 3.1)
    fake_p = np.where(clusters.labels > 0, 0.01 * clusters.labels, 1.0)
    from scipy import stats

    cz = np.where(clusters.labels > 0, stats.norm.isf(fake_p), 0.0).astype(np.float32)
    name = "z_desc-size_level-cluster_corr-FWE_method-montecarlo"
    res2 = MetaResult(res.estimator, grid=grid, maps={"z": z, name: cz})
    table = cluster_table(res2, name)  # default threshold: z > 1.645
    kept = [c for c in range(1, clusters.n_clusters + 1) if 0.01 * c < 0.05]
    assert len(table) == len(kept) and not table["Cluster ID"].str.contains("[a-z]").any()
    assert sorted(np.round(table["p"], 6)) == sorted(round(0.01 * c, 6) for c in kept)
    for _, row in table.iterrows():
        vox = grid.mm_to_voxel(row[["Peak X", "Peak Y", "Peak Z"]].to_numpy(float))[0]
        assert row["Peak Stat"] == pytest.approx(float(z[vox]))
        assert clusters.labels[vox] > 0


def test_voxel_level_map_reports_uncorrected_peaks(pain):
    """Peak Stat of a voxel-level corrected map is the peak's uncorrected z, not the capped
    corrected one."""
    res = ALE().fit(pain)
    z = res.get_map("z", return_type="array")
    name = "z_level-voxel_corr-FWE_method-montecarlo"
    vz = np.where(z > 4.5, 1.96, 0.0).astype(np.float32)  # corrected z saturates at its floor
    res2 = MetaResult(res.estimator, grid=res.grid, maps={"z": z, name: vz})
    table = cluster_table(res2, name, subpeaks=False, atlas=None)
    assert len(table) > 0
    for _, row in table.iterrows():
        vox = res.grid.mm_to_voxel(row[["Peak X", "Peak Y", "Peak Z"]].to_numpy(float))[0]
        assert row["Peak Stat"] == pytest.approx(float(z[vox])) and row["Peak Stat"] > 4.5


def test_default_thresholds():
    assert default_threshold("z_desc-size_level-cluster_corr-FWE_method-montecarlo") == (
        pytest.approx(1.6448536)
    )
    assert default_threshold("z_corr-FWE_method-bonferroni") == pytest.approx(1.959964)
    assert default_threshold("z") == pytest.approx(3.0902323)
    assert default_threshold("logp_level-voxel_corr-FWE_method-montecarlo") == (
        pytest.approx(1.30103)
    )
    with pytest.raises(ValueError, match="threshold"):
        default_threshold("stat")


# ---------------------------------------------------------------------------- atlas
def test_atlas_shipped_with_licence_and_labels():
    folder = resources.files("nimare_dask.resources").joinpath("atlases")
    assert "non-commercial" in folder.joinpath("Harvard-Oxford-LICENSE").read_text()
    atlas = load_atlas()
    assert len(HARVARD_OXFORD_CORTICAL) == 48
    assert int(atlas.data.max()) == 48 and set(np.unique(atlas.data)) == set(range(49))
    # the stored image is LAS; lookups are in world space
    assert atlas.label([[38, 4, 2], [-34, 14, 0], [0, 0, 200]]) == [
        "Right Insular Cortex",
        "Left Insular Cortex",
        NO_LABEL,
    ]
    overlap = atlas.overlap(np.array([[38, 4, 2], [38, 6, 2], [54, -28, 20]]))
    assert overlap[0][0] == "Right Insular Cortex"
    assert overlap[0][1] == pytest.approx(200 / 3)
    assert sum(p for _, p in overlap) == pytest.approx(100)


# ---------------------------------------------------------------------------- methods
def test_methods_text_and_references(tmp_path, pain, full_result):
    text = methods_text(full_result, pain)
    # the distinct sample-size FWHMs, with the N = 20 kernel of NIMARE_FACTS.md section 2.1
    assert "9 distinct FWHMs" in text and "9.24 mm (N = 20, 2 experiments)" in text
    assert "21 studies, 21 analyses (experiments) and 267 foci" in text
    assert "Bonferroni" in text and "jackknife" in text and "numpy" in text
    boiler, bib = write_methods(full_result, tmp_path, "x_", studyset=pain)
    assert boiler.name == "x_boilerplate.txt" and bib.name == "x_references.bib"
    entries = bib.read_text()
    for key in cited_keys(boiler.read_text()):
        assert re.search(r"@\w+\{" + re.escape(key) + ",", entries), key


# ---------------------------------------------------------------------------- figures
def test_null_distribution_figure():
    png = plot_null_distribution(np.arange(100.0), "max stat")
    assert png.startswith(PNG_MAGIC)
    png = plot_null_distribution(
        name="hist", bins=np.linspace(0, 1, 50), weights=np.exp(-np.arange(50.0))
    )
    assert png.startswith(PNG_MAGIC)
    with pytest.raises(ValueError):
        plot_null_distribution(name="nothing")


# ---------------------------------------------------------------------------- outputs
@pytest.fixture(scope="module")
def outputs(tmp_path_factory, pain, full_result):
    out = tmp_path_factory.mktemp("outputs")
    manifest = save_outputs(full_result, out, "pain", studyset=pain)
    return out, manifest


def test_save_outputs_files(outputs, full_result):
    out, manifest = outputs
    assert set(manifest) == {
        "maps",
        "tables",
        "cluster_tables",
        "boilerplate",
        "references",
        "report",
    }
    assert len(manifest["maps"]) == len(full_result.maps_names)
    for path in manifest["maps"]:
        img = nib.load(path)
        assert img.shape == full_result.grid.shape
        np.testing.assert_array_equal(img.affine, full_result.grid.affine)
        assert path.startswith(str(out / "pain_"))
    z = nib.load(out / "pain_z.nii.gz").get_fdata()[full_result.grid.mask]
    np.testing.assert_allclose(z, full_result.get_map("z", return_type="array"), rtol=1e-7)
    names = {p.split("/")[-1] for p in manifest["tables"]}
    assert "pain_z_diag-Jackknife_tab-counts_tail-positive.tsv" in names
    (clusters,) = manifest["cluster_tables"]
    assert clusters.endswith("pain_z_corr-FWE_method-bonferroni_tab-clusters.tsv")
    table = pd.read_csv(clusters, sep="\t")
    assert list(table.columns) == CLUSTER_COLUMNS and len(table) > 0
    for key in ("boilerplate", "references", "report"):
        assert (out / manifest[key].split("/")[-1]).stat().st_size > 0
    json.dumps(manifest)  # plain strings only


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


_CHECK = """<script>window.addEventListener('load', function () {
  var ok = Array.prototype.map.call(document.images, function (im) {
    return im.complete && im.naturalWidth > 0; });
  var out = document.createElement('pre'); out.id = 'image-check';
  out.textContent = JSON.stringify(ok); document.body.appendChild(out);
});</script>"""


def test_report_renders_in_headless_chromium(outputs, tmp_path):
    browser = _chromium()
    if browser is None:
        why = "chromium is not installed (CI installs it with apt-get install chromium)"
        if os.environ.get("CI"):
            pytest.fail(f"{why}: CI must run the browser test", pytrace=False)
        pytest.skip(f"{why}; the HTML report was not checked in a browser")
    _, manifest = outputs
    text = open(manifest["report"], encoding="utf-8").read()
    assert "http://" not in text.replace("http://www.w3.org", "")  # self-contained
    n_images = text.count("<img ")
    assert n_images >= 6  # coordinates, stat, corrected map, 3 nulls, 2 heatmaps
    page = tmp_path / "check.html"
    page.write_text(text.replace("</body>", _CHECK + "</body>"), encoding="utf-8")
    base = [
        browser,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={tmp_path / 'profile'}",
    ]
    dom = subprocess.run(
        [*base, "--virtual-time-budget=10000", "--dump-dom", page.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    found = re.search(r'<pre id="image-check">([^<]*)</pre>', dom)
    assert found, "the check script did not run"
    rendered = json.loads(found.group(1))
    assert len(rendered) == n_images and all(rendered)
    shot = tmp_path / "report.png"
    subprocess.run(
        [*base, "--window-size=1300,4000", f"--screenshot={shot}", page.as_uri()],
        capture_output=True,
        timeout=120,
    )
    assert shot.read_bytes().startswith(PNG_MAGIC)
