"""Worker processes that end with their parent, and that share one terminal tidily.

Process pools (joblib's loky, ``concurrent.futures`` with spawn) keep their workers alive
when the parent is killed (``kill -9``, a closed terminal): an orphaned worker goes on training
or fitting for nobody. :func:`leave_with_parent` makes the calling worker exit once orphaned.
"""

from __future__ import annotations

import fcntl
import os
import tempfile
import threading
import time
from pathlib import Path

_slot_lock = None  # the open file whose lock holds this process's slot, for the process's life


def _exit_when_orphaned(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(1)


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
