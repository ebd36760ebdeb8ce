"""Shared fixtures: where the oracle's bundled data and the real databases live."""

from __future__ import annotations

import importlib.util
import warnings
from pathlib import Path

import pytest

#: ../shared/data beside the checkout (CI clones the repo with ../shared beside it).
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def _nimare_dir() -> Path | None:
    spec = importlib.util.find_spec("nimare")
    if spec is None or spec.origin is None:
        return None
    return Path(spec.origin).parent


NIMARE_DIR = _nimare_dir()


@pytest.fixture(scope="session")
def nimare_dir() -> Path:
    """The installed NiMARE package folder (the oracle and its bundled data)."""
    if NIMARE_DIR is None:
        pytest.skip("NiMARE (the test oracle) is not installed")
    return NIMARE_DIR


@pytest.fixture(scope="session")
def nimare_resources(nimare_dir) -> Path:
    return nimare_dir / "resources"


@pytest.fixture(scope="session")
def nimare_test_data(nimare_dir) -> Path:
    return nimare_dir / "tests" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data (Neurosynth v7, NeuroQuery v1); tests using it are marked ``database``."""
    if not SHARED_DATA.exists():
        pytest.skip(f"real databases not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def pain_json(nimare_resources) -> Path:
    return nimare_resources / "nidm_pain_studyset.json"


@pytest.fixture(scope="session")
def pain_studyset(pain_json):
    """The 21-study NIDM pain studyset (267 MNI foci) as a nimare_dask Studyset."""
    from nimare_dask import Studyset

    return Studyset(pain_json)


@pytest.fixture(autouse=True)
def _quiet_oracle_warnings():
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning, module="nimare")
        warnings.filterwarnings("ignore", category=DeprecationWarning, module="nimare")
        yield
