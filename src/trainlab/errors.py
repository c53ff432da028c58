"""The one exception type for user mistakes.

Anything the user can fix (an unknown name, a wrong type, a missing file, a corrupt image)
raises :class:`UserError` with one message that names what is wrong and the valid choices.
The CLI turns it into that message on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class UserError(Exception):
    """A mistake in the user's input, explained in one message."""


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """Return ' (did you mean X?)' for the closest valid choice, or ''."""
    close = difflib.get_close_matches(str(name), list(choices), n=1, cutoff=0.5)
    return f" (did you mean {close[0]!r}?)" if close else ""


def unknown(what: str, name: object, choices: Iterable[str]) -> UserError:
    """A UserError for an unknown ``name`` among ``choices``, with a suggestion."""
    choices = sorted(choices)
    return UserError(
        f"unknown {what} {name!r}{did_you_mean(str(name), choices)}; "
        f"valid choices: {', '.join(choices)}"
    )
