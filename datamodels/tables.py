"""Files written whole or not at all: stage tables (parquet with metadata), and file digests.

Every stage writes through :func:`write_atomic`: to a hidden temporary name in the same folder,
flushed to disk, then renamed, so a reader sees a whole file or none, and a killed writer leaves
only a hidden ``.<name>.<pid>.tmp``. A stage's table carries its provenance (a JSON object) in
the parquet key-value metadata under ``datamodels.stage``; :func:`read_frame` refuses a table
without it, naming the file and the stage that writes it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from .errors import StoreError

FRAME_KEY = b"datamodels.stage"


def write_atomic(path: Path, write) -> None:
    """Call ``write(tmp_path)``, flush it to disk, then rename it to ``path``."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_frame(path: str | os.PathLike, frame, meta: dict) -> Path:
    """Write a stage's DataFrame as parquet, atomically, with ``meta`` (JSON) in its metadata.

    ``frame`` may also be a pyarrow Table: a table of millions of rows with a list column is
    built from flat arrays, where a DataFrame would hold a Python object per row.
    """
    path = Path(path)
    table = frame if isinstance(frame, pa.Table) else pa.Table.from_pandas(frame, preserve_index=False)
    table = table.replace_schema_metadata((table.schema.metadata or {}) | {FRAME_KEY: json.dumps(meta).encode()})
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, lambda tmp: pq.write_table(table, tmp))
    return path


def read_frame(path: str | os.PathLike, stage: str):
    """A stage's DataFrame and its metadata; a clear error when it is missing or not ours."""
    table, meta = read_table(path, stage)
    return table.to_pandas(), meta


def read_table(path: str | os.PathLike, stage: str) -> tuple[pa.Table, dict]:
    """:func:`read_frame`'s Arrow table: a list column of millions of rows stays a few flat
    arrays, where a DataFrame holds a Python object per row."""
    path = Path(path)
    if not path.exists():
        raise StoreError(f"{path} does not exist: run the {stage} stage first")
    try:
        table = pq.read_table(path)
    except (pa.ArrowInvalid, OSError) as err:
        raise StoreError(f"{path} is not a readable parquet file ({err})") from err
    raw = (table.schema.metadata or {}).get(FRAME_KEY)
    if raw is None:
        raise StoreError(f"{path} was not written by the {stage} stage of this package (no metadata)")
    return table, json.loads(raw)


def file_digest(path: str | os.PathLike, algorithm: str = "sha256") -> str | None:
    """Hex digest of a file's bytes (read in 1 MB blocks), or None when it does not exist."""
    path = Path(path)
    if not path.exists():
        return None
    digest = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def size_text(nbytes: float) -> str:
    """``4.9 GB``, ``310 MB``, ``12 kB``: a size as a cost line says it (powers of 1000)."""
    for unit, scale in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if nbytes >= scale:
            return f"{nbytes / scale:.{1 if nbytes < 100 * scale else 0}f} {unit}"
    return f"{int(nbytes)} B"


def check_free_space(folder: str | os.PathLike, needed: int, what: str) -> None:
    """Refuse (one line) to write ``needed`` bytes of ``what`` into ``folder`` (or the nearest
    existing folder above it) when its file system has less free space."""
    where = Path(folder).absolute()
    while not where.exists():
        where = where.parent
    free = shutil.disk_usage(where).free
    if free < needed:
        raise StoreError(f"{what} needs {size_text(needed)} and {where} has {size_text(free)} free: free some space "
                         f"or write it elsewhere")
