"""How a job logs (Hydra applies it: ``conf/hydra/job_logging/segbench.yaml``): on the console
each line as its plain message, progress and results on stdout, warnings and errors on stderr;
in the job's log file every line with its time, logger and level.
"""
from __future__ import annotations

import logging


class BelowWarning(logging.Filter):
    """Lets through what belongs on stdout: records below WARNING (those go to stderr)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno < logging.WARNING


class QuietFileHandler(logging.FileHandler):
    """The job's log file. A line it cannot write (a full disk, the case where a row could not be
    written either) is dropped without logging's error traceback: the console has the line."""

    def handleError(self, record: logging.LogRecord) -> None:  # noqa: N802 (logging's name)
        pass
