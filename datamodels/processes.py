"""Worker processes that end with their parent, and that share one terminal tidily.

Process pools (joblib's loky, ``concurrent.futures`` with spawn) keep their workers alive
when the parent is killed (``kill -9``, a closed terminal): an orphaned worker goes on training
or fitting for nobody. :func:`leave_with_parent` makes the calling worker exit once orphaned.
Spawned workers re-import the main script, so a script that starts them from its top level,
without an ``if __name__ == "__main__":`` guard, would start them again in every worker:
:func:`check_main_guard` refuses that at once, before any worker starts.
"""

from __future__ import annotations

import ast
import fcntl
import sys
import os
import tempfile
import threading
import time
from pathlib import Path

from .errors import UserError

_slot_lock = None  # the open file whose lock holds this process's slot, for the process's life


def _exit_when_orphaned(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(1)


def parent_of(pid: int) -> int | None:
    """The parent process id of process ``pid`` of this host (``/proc``); None when it is gone or
    a zombie (or there is no ``/proc``)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return None if fields[0] in "ZXx" else int(fields[1])


def leave_with_parent() -> None:
    """Exit this process (at once, code 1) as soon as its parent is gone; a daemon thread checks
    every second. Work already written stays: the store's writes are atomic."""
    threading.Thread(target=_exit_when_orphaned, args=(os.getppid(),), daemon=True).start()


def worker_slot() -> int:
    """A small number that no other live worker of the same parent holds (0, 1, ...): the
    line of a progress bar on a terminal the workers share.

    Slots are ``flock``ed files in a folder of the parent's; the kernel releases a dead
    worker's lock, so a slot is freed with its holder.
    """
    global _slot_lock
    if _slot_lock is not None:
        return int(Path(_slot_lock.name).stem)
    folder = Path(tempfile.gettempdir()) / f"datamodels-slots-{os.getuid()}-{os.getppid()}"
    folder.mkdir(exist_ok=True)
    slot = 0
    while True:
        handle = open(folder / f"{slot}.lock", "a")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            slot += 1
            continue
        _slot_lock = handle
        return slot


def _guarded_lines(source: str) -> list[range]:
    """Line ranges of the ``if __name__ == "__main__":`` blocks of a module's source."""
    ranges = []
    for node in ast.parse(source).body:
        test = getattr(node, "test", None)
        if isinstance(node, ast.If) and isinstance(test, ast.Compare) and \
                {getattr(test.left, "id", None), *(getattr(c, "value", None) for c in test.comparators)} >= \
                {"__name__", "__main__"}:
            ranges.append(range(node.lineno, node.end_lineno + 1))
    return ranges


def check_main_guard(what: str) -> None:
    """Refuse to start spawned workers from the unguarded top level of the main script.

    The spawned workers would re-run that code, start workers of their own, fail, and leave
    the pool broken or hanging; the message says what to change instead.
    """
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    if path is None or not Path(path).exists():
        return  # an interactive session or a notebook: nothing is re-imported
    frame = sys._getframe(1)
    while frame is not None and not (frame.f_code.co_name == "<module>" and frame.f_globals is vars(main)):
        frame = frame.f_back
    if frame is None:
        return  # not called from the script's top level at all
    line = frame.f_lineno
    if not any(line in block for block in _guarded_lines(Path(path).read_text())):
        raise UserError(f"{what} starts worker processes, which re-import {path}: its call at line {line} must be "
                        f"under `if __name__ == \"__main__\":` (or use one worker)")
