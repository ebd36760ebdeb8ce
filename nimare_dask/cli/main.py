"""Entry point of ``nimare-dask``: argument parsing and one-line error reporting."""

from __future__ import annotations

import argparse
import logging
import sys
import warnings
from collections.abc import Sequence

from nimare_dask import __version__

LGR = logging.getLogger("nimare_dask.cli")

#: Subcommand modules; each has ``add_parser(subparsers)`` and ``run(args) -> int``.
_COMMANDS = ("ale", "ibma", "jale", "macm", "decode", "ingest", "convert", "jackknife")


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser (every subcommand has its own ``--help``)."""
    parser = argparse.ArgumentParser(
        prog="nimare-dask",
        description="Neuroimaging meta-analysis at database scale (Zarr + Dask).",
    )
    parser.add_argument("--version", action="version", version=f"nimare_dask {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    import importlib

    for name in _COMMANDS:
        module = importlib.import_module(f"nimare_dask.cli.{name}")
        p = module.add_parser(sub)
        p.add_argument(
            "--verbose",
            action="store_true",
            help="show full tracebacks and debug messages (default: info messages)",
        )
        p.set_defaults(_run=module.run)
    return parser


def _one_line_warning(message, category, filename, lineno, file=None, line=None) -> None:
    print(f"warning: {message}", file=sys.stderr if file is None else file)


class _OneLineFormatter(logging.Formatter):
    """``info: message`` (as the one-line warnings), with the traceback only if there is one."""

    def format(self, record: logging.LogRecord) -> str:
        text = f"{record.levelname.lower()}: {record.getMessage()}"
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return text


def _configure_logging(verbose: bool) -> tuple[logging.Handler, int]:
    """Send the ``nimare_dask`` loggers to stderr: DEBUG with ``--verbose``, else INFO.

    Returns the handler and the logger's previous level, for :func:`main` to undo (``main`` is
    also called in-process, by tests and scripts).
    """
    logger = logging.getLogger("nimare_dask")
    handler = logging.StreamHandler(sys.stderr)
    if verbose:
        fmt = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    else:
        fmt = _OneLineFormatter()
    handler.setFormatter(fmt)
    previous = logger.level
    logger.setLevel(logging.DEBUG if verbose else logging.INFO)
    logger.addHandler(handler)
    return handler, previous


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``nimare-dask``; returns the exit status (0 ok, 2 bad input, 1 failure)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    handler, previous = _configure_logging(args.verbose)
    try:
        LGR.debug(
            "nimare_dask %s, %s %s",
            __version__,
            args.command,
            {k: v for k, v in vars(args).items() if not k.startswith("_")},
        )
        return _run(args)
    finally:
        logger = logging.getLogger("nimare_dask")
        logger.removeHandler(handler)
        logger.setLevel(previous)


def _run(args: argparse.Namespace) -> int:
    if args.verbose:
        return int(args._run(args) or 0)
    warnings.simplefilter("default")
    warnings.showwarning = _one_line_warning
    try:
        return int(args._run(args) or 0)
    except (
        ValueError,
        TypeError,
        KeyError,
        FileNotFoundError,
        NotADirectoryError,
        PermissionError,
    ) as err:
        msg = err.args[0] if isinstance(err, KeyError) and err.args else err
        print(f"nimare-dask {args.command}: error: {msg}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"nimare-dask {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
