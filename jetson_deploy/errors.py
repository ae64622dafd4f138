"""Errors that carry their exit code, so the CLI stays a thin translator.

Exit codes follow the CLI contract: 1 for a failed check (verify, accuracy gate),
2 for bad usage or input (including a missing optional dependency).
"""

class JetsonDeployError(Exception):
    """Base class: the message is one line a user can act on."""

    exit_code = 2


class BadInput(JetsonDeployError):
    """The user gave us something we cannot use (file, flag, spec field)."""

    exit_code = 2


class MissingDependency(BadInput):
    """An optional package is not installed; the message says what to install."""


class CheckFailed(JetsonDeployError):
    """A verification or accuracy check ran and failed."""

    exit_code = 1


class RunFailed(JetsonDeployError):
    """A run started and its engine failed (one line naming the bundle and the batch)."""

    exit_code = 1
