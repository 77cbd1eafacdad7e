"""The one error class of the user's input, shared by every module.

A :class:`UserError` says that a setting, a data file or a run folder is wrong, never that the
code is: its message names the setting (as it is spelled in ``conf/``, e.g. ``sweep.alpha``) or
the file, and what to do. The jobs print it as one line and exit 1, without a traceback
(``debug=true`` or ``HYDRA_FULL_ERROR=1`` shows it); any other exception is a bug and keeps its
traceback. It derives from ``ValueError`` so that callers catching that still catch it.
"""


class UserError(ValueError):
    """A setting, data file or run folder is wrong; the message names it and the fix."""


class StoreError(UserError):
    """A shard, stage table or run folder is corrupt, foreign or inconsistent; the message names the file."""
