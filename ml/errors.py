"""Errors a user can fix; the CLI prints them as one sentence, without a traceback."""


class UserError(Exception):
    """A mistake or missing prerequisite the user can fix; the message says what to do."""
