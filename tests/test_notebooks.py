"""The notebooks in notebooks/ run top to bottom (so they never rot).

They fetch Neurosynth v7 through :func:`nimare_dask.datasets.fetch_neurosynth`, which the test
points at the copy in ../shared/data (``NIMARE_DASK_BASE_URL``), with downloads and stores in
``tmp_path``. Marked ``database``: each takes tens of seconds.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

pytestmark = pytest.mark.database

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


@pytest.fixture
def notebook_env(shared_data, tmp_path, monkeypatch):
    monkeypatch.setenv("NIMARE_DASK_BASE_URL", str(shared_data / "neurosynth-v7"))
    monkeypatch.setenv("NIMARE_DASK_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("NIMARE_DASK_STORAGE", str(tmp_path / "storage"))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    return tmp_path


@pytest.mark.parametrize("name", ["decoding_neurosynth.ipynb", "macm_amygdala.ipynb"])
def test_notebook_runs(name, notebook_env):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    path = NOTEBOOKS / name
    nb = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(
        nb,
        timeout=900,
        kernel_name="python3",
        resources={"metadata": {"path": str(NOTEBOOKS)}},
    )
    client.execute(env=dict(os.environ))
    errors = [
        out
        for cell in nb.cells
        if cell.cell_type == "code"
        for out in cell.get("outputs", [])
        if out.get("output_type") == "error"
    ]
    assert not errors
    if name.startswith("decoding"):
        stores = list((notebook_env / "storage").glob("*.zarr"))
        assert stores and (stores[0] / "derived" / "decoder").is_dir()
