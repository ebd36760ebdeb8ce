"""Every ```python block of README.md runs, in order, against the shipped sample data.

The blocks run in one namespace, top to bottom (README reads as one session), in a temporary
folder holding the files README's examples name:

* ``my_experiments.txt``: the shipped NIDM pain Sleuth file;
* ``studyset.json``: the same experiments as NIMADS JSON;
* ``amygdala.nii.gz``: the shipped amygdala ROI;
* ``my_map.nii.gz``: a z map of the pain studyset (MKDADensity).

A block whose first line is ``# needs: <what>`` is not run by the default tests:

* ``# needs: database``: runs with ``-m database`` (``storage/neurosynth-v7-LDA50.zarr`` is
  built from ``../shared/data/neurosynth-v7`` first, as ``nimare-dask ingest`` would);
* ``# needs: cluster`` / ``# needs: network`` / ``# needs: cloud`` / ``# needs: long``: never
  run here (a batch system, the internet, credentials, or CPU-hours); the block is still compiled, so it cannot have a
  syntax error.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
NEVER = {"cluster", "network", "cloud", "long"}
_BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def readme_blocks() -> list[tuple[int, str, str | None]]:
    """``(line number, code, need)`` of each python block (need from ``# needs: x``)."""
    text = README.read_text()
    out = []
    for m in _BLOCK.finditer(text):
        code = m.group(1)
        line = text.count("\n", 0, m.start()) + 2
        first = code.lstrip().splitlines()[0] if code.strip() else ""
        need = re.match(r"#\s*needs:\s*([\w-]+)", first)
        out.append((line, code, need.group(1) if need else None))
    return out


@pytest.fixture(scope="module")
def sample_dir(tmp_path_factory):
    from importlib import resources

    import nimare_dask as nd
    from nimare_dask.meta.cbma import MKDADensity

    folder = tmp_path_factory.mktemp("readme")
    data = resources.files("nimare_dask.resources") / "data"
    with resources.as_file(data / "pain_sleuth.txt") as p:
        shutil.copy(p, folder / "my_experiments.txt")
    with resources.as_file(data / "amygdala_roi.nii.gz") as p:
        shutil.copy(p, folder / "amygdala.nii.gz")
    ss = nd.io.convert_sleuth_to_studyset(folder / "my_experiments.txt")
    ss.to_nimads(folder / "studyset.json")
    MKDADensity().fit(ss).get_map("z").to_filename(folder / "my_map.nii.gz")
    return folder


def _run_blocks(folder: Path, selected: set[str | None]) -> None:
    namespace: dict = {"__name__": "__readme__"}
    cwd = os.getcwd()
    os.chdir(folder)
    try:
        for line, code, need in readme_blocks():
            compiled = compile(code, f"README.md:{line}", "exec")  # every block must compile
            if need not in selected:
                continue
            try:
                exec(compiled, namespace)
            except Exception as err:  # name the block in the failure
                raise AssertionError(
                    f"README.md block at line {line} failed: {type(err).__name__}: {err}"
                ) from err
    finally:
        os.chdir(cwd)


def test_readme_has_python_blocks_with_known_needs():
    blocks = readme_blocks()
    assert blocks, "README.md has no python block"
    unknown = {need for _, _, need in blocks if need} - NEVER - {"database"}
    assert not unknown, f"unknown '# needs:' markers {unknown}; known: database, {NEVER}"


def _fresh(sample_dir: Path, tmp_path: Path) -> Path:
    """A new folder holding the sample files: each run starts as a new user's would (blocks
    write outputs such as ``images.zarr`` that a second run must not find)."""
    folder = tmp_path / "readme"
    shutil.copytree(sample_dir, folder)
    return folder


def test_readme_blocks_run(sample_dir, tmp_path):
    _run_blocks(_fresh(sample_dir, tmp_path), {None})


@pytest.mark.database
def test_readme_database_blocks_run(sample_dir, shared_data, tmp_path):
    from nimare_dask.io import convert_neurosynth_to_studyset

    folder = _fresh(sample_dir, tmp_path)
    src = shared_data / "neurosynth-v7"
    ns = "data-neurosynth_version-7"
    store = folder / "storage" / "neurosynth-v7-LDA50.zarr"
    if not store.exists():
        convert_neurosynth_to_studyset(
            src / f"{ns}_coordinates.tsv.gz",
            src / f"{ns}_metadata.tsv.gz",
            src / f"{ns}_vocab-LDA50_source-abstract_type-weight_features.npz",
        ).to_zarr(store)
    _run_blocks(folder, {None, "database"})
