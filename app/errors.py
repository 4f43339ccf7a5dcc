"""Errors the user caused: the CLI prints the message as one line and exits with code 2."""


class UserError(ValueError):
    """Bad input, output or option. The message is one clear sentence."""
