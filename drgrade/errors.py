"""The error a user can fix by changing an option: shown without a traceback, exit code 2."""


class OptionError(ValueError):
    """A bad option value; the message names the option and what to pass instead."""
