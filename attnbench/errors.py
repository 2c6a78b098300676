"""Errors that the CLI turns into a one-line message and exit code 2, and warnings."""

import sys


class UsageError(Exception):
    """Bad input from the user: a flag, a scenario file, a backend or plugin name."""


class ScenarioError(UsageError):
    """A scenario file that cannot be used: names the file, the key and the reason."""


def warn(message: str) -> None:
    """A one-line warning on stderr: something was skipped or doubtful, nothing stops."""
    print(f"attnbench: warning: {message}", file=sys.stderr)
