"""The two kinds of foreseeable failure, each with its exit code (see README "Exit codes")."""


class IosopsError(Exception):
    """A foreseeable failure: printed as one line, never as a traceback."""

    exit_code = 1


class BadInput(IosopsError):
    """The caller asked for something wrong (env, flag, config, missing secret). Nothing was changed."""

    exit_code = 2


class OperationFailed(IosopsError):
    """The operation ran and failed; whatever it changed has been rolled back (the message says what).

    `rolled_back` names what an automatic rollback restored (empty: nothing had changed), so callers
    such as notifications can tell "failed" from "failed and rolled back" without parsing the message."""

    exit_code = 1

    def __init__(self, message: str = "", *, rolled_back: str = ""):
        super().__init__(message)
        self.rolled_back = rolled_back


class LockHeld(OperationFailed):
    """Another run holds the environment's lock."""
