"""The ``nimare-dask`` command line: one subcommand per module in this package."""

from nimare_dask.cli.main import main

__all__ = ["main"]
