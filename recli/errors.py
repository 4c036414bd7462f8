"""The project's one error type.

Anything a user can cause (bad input, missing artifacts, bad params) raises `RecliError` with a
message that names the problem and the fix. Entry points turn it into one red line on stderr and a
non-zero exit code; nothing else is expected to reach the user as a traceback.
"""

from __future__ import annotations


class RecliError(Exception):
    """A problem the user can fix; the message says what it is and how to fix it."""
