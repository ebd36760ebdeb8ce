"""End-to-end workflows (what the CLI runs): ALE + FWE, ALE contrasts, MACM."""

from nimare_dask.workflows.macm import amygdala_roi, macm, select_studies

__all__ = ["amygdala_roi", "macm", "select_studies"]
