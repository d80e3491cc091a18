"""User-facing errors.

Anything the user can fix (a missing folder, a corrupt image, an unknown config key) raises
:class:`UserError`. The CLI prints its message as one line on stderr and exits non-zero; it
never shows a stack trace for these.
"""


class UserError(Exception):
    """A mistake in the user's input, reported as one line without a traceback."""
