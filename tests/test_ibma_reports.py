"""Reports of image-based results: thresholds, cluster tables, methods text, files, HTML report,
and ``nimare-dask ibma`` writing them."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from _ibma_data import simulate
from _parity import quiet as _quiet
from nilearn.reporting import get_clusters_table
from scipy import stats

from nimare_dask.cli import main
from nimare_dask.correct import FDRCorrector
from nimare_dask.diagnostics import Jackknife
from nimare_dask.meta import ibma
from nimare_dask.reports import cluster_table, save_outputs
from nimare_dask.reports.clusters import CLUSTER_COLUMNS, map_threshold
from nimare_dask.reports.html import map_table
from nimare_dask.reports.methods import methods_text
from nimare_dask.results import MetaResult

Z_TWO_001 = float(stats.norm.isf(0.0005))  # 3.2905: two-sided p < 0.001
Z_ONE_001 = float(stats.norm.isf(0.001))  # 3.0902: one-sided p < 0.001
Z_TWO_05 = float(stats.norm.isf(0.025))  # 1.9600: two-sided p < 0.05


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    return simulate(tmp_path_factory.mktemp("ibma_rep"), seed=2)


@pytest.fixture(scope="module")
def dsl(sim):
    ours_ss, _, mask = sim
    return _quiet(ibma.DerSimonianLaird(mask=mask).fit, ours_ss)


@pytest.fixture(scope="module")
def outputs(sim, dsl, tmp_path_factory):
    corr = FDRCorrector(method="indep").transform(dsl)
    diag = Jackknife(target_image="z_corr-FDR_method-indep", target_threshold=1.65)
    full = _quiet(diag.transform, corr)
    out = tmp_path_factory.mktemp("ibma_out")
    return full, out, save_outputs(full, out, prefix="dsl", studyset=sim[0])


def test_thresholds_follow_the_test(dsl, sim):
    # DerSimonianLaird's p is two-sided (PyMARE: p = 2 sf(|z|)), checked on the maps
    z = np.asarray(dsl.get_map("z", return_type="array"), float)
    p = np.asarray(dsl.get_map("p", return_type="array"), float)
    ok = np.isfinite(z)
    np.testing.assert_allclose(p[ok], 2 * stats.norm.sf(np.abs(z[ok])), rtol=1e-5)
    assert map_threshold(dsl, "z") == pytest.approx(Z_TWO_001)
    # NiMARE's corrected z is nlogp_to_z(tail="two"): p_corr < 0.05 <=> |z| > 1.96
    assert map_threshold(dsl, "z_corr-FDR_method-indep") == pytest.approx(Z_TWO_05)
    assert map_threshold(dsl, "logp") == pytest.approx(3.0)
    for name in ("est", "se", "tau2", "dof", "t", "sigma2"):
        assert map_threshold(dsl, name) is None  # no conventional threshold, no error
    one = MetaResult(
        estimator=ibma.Stouffers(two_sided=False),
        grid=dsl.grid,
        maps={"z": np.zeros(dsl.grid.n_voxels)},
    )
    assert map_threshold(one, "z") == pytest.approx(Z_ONE_001)
    # PermutedOLS converts its Monte Carlo p two-tailed when two_sided (NiMARE p_to_z)
    perm = MetaResult(
        estimator=ibma.PermutedOLS(), grid=dsl.grid, maps={"z": np.zeros(dsl.grid.n_voxels)}
    )
    assert map_threshold(perm, "z_level-voxel_corr-FWE_method-montecarlo") == pytest.approx(
        Z_TWO_05
    )
    perm1 = MetaResult(
        estimator=ibma.PermutedOLS(two_sided=False),
        grid=dsl.grid,
        maps={"z": np.zeros(dsl.grid.n_voxels)},
    )
    assert map_threshold(perm1, "z_level-voxel_corr-FWE_method-montecarlo") == pytest.approx(
        float(stats.norm.isf(0.05))
    )


def test_uncorrected_cluster_table_matches_nilearn(dsl):
    """The uncorrected z at two-sided p < 0.001, both tails: nilearn's clusters and peaks."""
    table = cluster_table(dsl, "z", atlas=None)
    assert table.attrs["threshold"] == pytest.approx(Z_TWO_001)
    img = dsl.get_map("z", return_type="image")
    data = np.nan_to_num(img.get_fdata())
    ref = get_clusters_table(nib.Nifti1Image(data, img.affine), Z_TWO_001, 0, two_sided=True)
    assert len(ref) > 0
    main_ref = ref[ref["Cluster ID"].astype(str).str.fullmatch(r"\d+")]
    main_ours = table[table["Cluster ID"].astype(str).str.fullmatch(r"\d+")]
    # float32 map values printed by both; sizes are voxel counts x 64 mm3
    np.testing.assert_allclose(
        np.sort(main_ours["Peak Stat"].to_numpy(float)),
        np.sort(main_ref["Peak Stat"].to_numpy(float)),
        rtol=1e-6,
    )
    assert sorted(main_ours["Size (mm3)"].astype(float)) == sorted(
        main_ref["Cluster Size (mm3)"].astype(float)
    )
    assert (main_ours["p"] < 0.001).all()


def test_methods_text_for_images(outputs, sim):
    full, _, _ = outputs
    text = methods_text(full, sim[0])
    assert "DerSimonian" in text and "\\citep{dersimonian1986meta}" in text
    assert "foci" not in text  # image-based: no coordinates to count
    ss = sim[0]
    n_studies = len(np.unique(ss.study_ids))
    assert f"{n_studies} studies and {len(ss)} analyses (statistical images)" in text
    assert "z_corr-FDR_method-indep is significant at |z| > 1.96" in text
    assert "two-sided p < 0.05" in text
    assert "jackknife" in text


def test_save_outputs_on_ibma_result(outputs):
    full, out, manifest = outputs
    assert len(manifest["maps"]) == len(full.maps_names)
    for name in ("est", "se", "tau2", "dof", "z_corr-FDR_method-indep"):
        assert (out / f"dsl_{name}.nii.gz").exists()
    (clusters,) = manifest["cluster_tables"]
    assert clusters.endswith("dsl_z_corr-FDR_method-indep_tab-clusters.tsv")
    table = pd.read_csv(clusters, sep="\t")
    assert list(table.columns) == CLUSTER_COLUMNS and len(table) > 0
    # every cluster passes the two-sided corrected threshold; p from the corrected p map
    assert (table["p"].dropna() < 0.05).all()
    names = {p.split("/")[-1] for p in manifest["tables"]}
    assert any("_diag-Jackknife_tab-counts" in n for n in names)
    assert "dersimonian1986meta" in (out / "dsl_references.bib").read_text()
    html = open(manifest["report"], encoding="utf-8").read()
    assert "<h2>Maps</h2>" in html and "<h2>Coordinates</h2>" not in html
    for name in full.maps_names:
        assert f"<td>{name}</td>" in html
    assert "between-study variance" in html and "|z| &gt; 1.960" in html
    assert "foci" not in html.split("<h2>References")[0]
    json.dumps(manifest)


def test_map_table_rows(outputs):
    full, _, _ = outputs
    table = map_table(full).set_index("map")
    assert table.loc["est", "significance threshold"] == ""
    assert table.loc["z", "significance threshold"] == f"|z| > {Z_TWO_001:.3f}"
    assert table.loc["z_corr-FDR_method-indep", "correction"] == "FDR (indep)"
    labels = [n for n in table.index if n.startswith("label_")]
    assert labels and all(table.loc[n, "holds"].startswith("cluster labels") for n in labels)


_CHECK = """<script>window.addEventListener('load', function () {
  var ok = Array.prototype.map.call(document.images, function (im) {
    return im.complete && im.naturalWidth > 0; });
  var out = document.createElement('pre'); out.id = 'image-check';
  out.textContent = JSON.stringify(ok); document.body.appendChild(out);
});</script>"""


def test_ibma_report_renders_in_headless_chromium(outputs, tmp_path):
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        why = "chromium is not installed (CI installs it with apt-get install chromium)"
        if os.environ.get("CI"):
            pytest.fail(f"{why}: CI must run the browser test", pytrace=False)
        pytest.skip(f"{why}; the HTML report was not checked in a browser")
    _, _, manifest = outputs
    text = open(manifest["report"], encoding="utf-8").read()
    n_images = text.count("<img ")
    assert n_images >= 4  # est, z, the corrected map, the contribution heatmap
    page = tmp_path / "check.html"
    page.write_text(text.replace("</body>", _CHECK + "</body>"), encoding="utf-8")
    dom = subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=10000",
         "--dump-dom", page.as_uri()],
        capture_output=True, text=True, timeout=120,
    ).stdout  # fmt: skip
    found = re.search(r'<pre id="image-check">([^<]*)</pre>', dom)
    assert found, "the check script did not run"
    rendered = json.loads(found.group(1))
    assert len(rendered) == n_images and all(rendered)


def test_cli_ibma_writes_report_and_jackknife(sim, tmp_path):
    from nimare.correct import FDRCorrector as NiFDR
    from nimare.meta.ibma import Stouffers as NiStouffers

    ours_ss, dset, mask = sim
    src = tmp_path / "studyset.json"
    ours_ss.to_nimads(src)
    mask_path = tmp_path / "mask.nii.gz"
    mask.to_filename(mask_path)
    out = tmp_path / "out"
    rc = main(
        ["ibma", str(src), "--estimator", "Stouffers", "--correction", "fdr-indep",
         "--diagnostics", "jackknife", "--cluster-threshold", "2", "--mask", str(mask_path),
         "--output-dir", str(out)]
    )  # fmt: skip
    assert rc == 0
    ref = _quiet(NiFDR(method="indep").transform, _quiet(NiStouffers(mask=mask).fit, dset))
    inside = mask.get_fdata() > 0
    got = nib.load(out / "z_corr-FDR_method-indep.nii.gz").get_fdata()[inside]
    want = np.nan_to_num(ref.get_map("z_corr-FDR_method-indep", return_type="array"))
    # float64 correction stored as float32 (2 ulp)
    np.testing.assert_allclose(got, want, rtol=2.5e-7, atol=0)
    assert (out / "report.html").stat().st_size > 0
    assert (out / "z_corr-FDR_method-indep_tab-clusters.tsv").exists()
    counts = pd.read_csv(out / "z_corr-FDR_method-indep_diag-Jackknife_tab-counts.tsv", sep="\t")
    assert list(counts["id"]) == list(ours_ss.ids)
    assert "Stouffer" in (out / "boilerplate.txt").read_text()
    assert main(["ibma", str(src), "--mask", str(mask_path), "--no-report",
                 "--output-dir", str(tmp_path / "o2")]) == 0  # fmt: skip
    assert not (tmp_path / "o2" / "report.html").exists()
