"""The one exception type for bad input, shared by dpgen, dptrain and dpeval.

Every check of what a user hands the toolkit (a file, a folder, a manifest, a setting, an
argument of the public API) raises `InputError` or a subclass, with a one-line message that
starts with the file or setting at fault and says what is wrong with it. The command-line tools
print that line and exit with status 2, without a traceback (`dpgen.commands.main`); Python
callers catch it as a `ValueError`.
"""

from __future__ import annotations


class InputError(ValueError):
    """Bad input: ``"<file or setting>: <what is wrong>"``, on one line.

    Raised before any expensive step (loading pipelines, training, fine-tuning) wherever the
    input can be checked up front; per-item failures inside a long run are recorded in the
    run's report instead (see each command's docs).
    """
