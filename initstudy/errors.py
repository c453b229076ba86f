"""Errors a user can act on: the CLI prints their message on one line and exits 2."""


class InitStudyError(ValueError):
    """Base class: the message names the problem and the fix."""


class StudyError(InitStudyError):
    """A study file or override is malformed or names something unknown."""


class DataError(InitStudyError):
    """A dataset is unknown or its files are missing."""


class StoreError(InitStudyError):
    """The run store is missing, corrupt, or has no finished runs."""


class SweepError(InitStudyError):
    """A sweep cannot start: bad worker or resource options, or an unreachable Ray cluster."""


class ReportError(InitStudyError):
    """The report cannot be written (e.g. PDF output without WeasyPrint's system libraries)."""
