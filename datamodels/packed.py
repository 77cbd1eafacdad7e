"""Bit-packed masks: the ``[m, n]`` mask matrix of a sweep at CIFAR scale, never unpacked whole.

10^5 masks over 50,000 players are 625 MB as bits and 40 GB as float64. :class:`PackedMasks`
keeps the bits (``numpy.packbits`` rows, big-endian: player ``j`` is bit ``7 - j % 8`` of byte
``j // 8``, 1 = kept), in memory or memory-mapped from the fit-ready layout
(:mod:`datamodels.store.fit_ready`), and offers the two reads a fit needs:

- :meth:`PackedMasks.columns`: the bool columns of chosen players (screened players, the members
  of a surrogate's terms), gathered from their bytes;
- :meth:`PackedMasks.t_dot`: ``X^T R`` for a block of residual or target columns ``R``, in row
  chunks that are unpacked to float32, multiplied and discarded (screening and KKT checks).

A row subset (``X[rows]``) is a view holding the row index, not a copy. Pickled, a memory-mapped
``PackedMasks`` carries its file name, not its bytes, so worker processes map the same file and
share its pages instead of each holding a private copy.
"""

from __future__ import annotations

import numpy as np

# Row chunks of X^T R are unpacked to about this many float32 bytes at a time.
_CHUNK_BYTES = 64 << 20


class PackedMasks:
    """``m`` bit-packed masks over ``n`` players; ``X[rows]`` selects models without copying."""

    def __init__(self, packed: np.ndarray, n: int, rows: np.ndarray | None = None):
        if packed.ndim != 2 or packed.dtype != np.uint8:
            raise ValueError(f"packed masks must be a 2-D uint8 array [models, ceil(n/8)]; got "
                             f"{packed.dtype} {packed.shape}")
        if packed.shape[1] != (n + 7) // 8:
            raise ValueError(f"packed masks of {packed.shape[1]} bytes per row cannot hold n={n} players "
                             f"(expected {(n + 7) // 8} bytes)")
        self.packed, self.n = packed, int(n)
        self.rows = None if rows is None else np.asarray(rows, dtype=np.int64)

    @classmethod
    def from_bool(cls, X: np.ndarray) -> PackedMasks:
        X = np.asarray(X, dtype=bool)
        return cls(np.packbits(X, axis=1), X.shape[1])

    @property
    def shape(self) -> tuple[int, int]:
        return (len(self.packed) if self.rows is None else len(self.rows), self.n)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, rows) -> PackedMasks:
        """The masks of some models (an index, bool or slice over this object's rows), as a view."""
        index = np.arange(len(self))[rows]
        if index.ndim != 1:
            raise IndexError("PackedMasks selects rows only: X[rows]; use X.columns(players) for columns")
        return PackedMasks(self.packed, self.n, index if self.rows is None else self.rows[index])

    def packed_chunks(self, rows_per_chunk: int):
        """Yield ``(start, packed uint8 [rows, ceil(n/8)])`` over this object's rows, in order."""
        for start in range(0, len(self), rows_per_chunk):
            stop = start + rows_per_chunk
            yield start, (np.asarray(self.packed[start:stop]) if self.rows is None
                          else self.packed[self.rows[start:stop]])

    def columns(self, players) -> np.ndarray:
        """Bool ``[m, len(players)]``: the masks restricted to ``players`` (in the order given)."""
        players = np.asarray(players, dtype=np.int64).reshape(-1)
        if len(players) and (players.min() < 0 or players.max() >= self.n):
            raise IndexError(f"player ids must lie in 0..{self.n - 1}; got {players.min()}..{players.max()}")
        byte_cols, inverse = np.unique(players >> 3, return_inverse=True)
        if self.rows is None:
            gathered = np.asarray(self.packed[:, byte_cols])
        else:
            gathered = self.packed[np.ix_(self.rows, byte_cols)]
        shifts = (7 - (players & 7)).astype(np.uint8)
        return ((gathered[:, inverse] >> shifts) & 1).astype(bool)

    def unpack(self) -> np.ndarray:
        """Bool ``[m, n]``, all at once: for small ``n`` only (``columns`` at CIFAR scale)."""
        return self.columns(np.arange(self.n))

    def t_dot(self, R: np.ndarray) -> np.ndarray:
        """``X^T R`` as float64 ``[n, T]`` for ``R [m, T]``, one pass over the bits in row chunks.

        Each chunk is unpacked to float32 and multiplied by BLAS; partial sums are accumulated in
        float64, so the error is that of float32 products over one chunk.
        """
        R = np.asarray(R)
        if R.ndim != 2 or len(R) != len(self):
            raise ValueError(f"t_dot needs R of shape [{len(self)}, T]; got {R.shape}")
        out = np.zeros((self.n, R.shape[1]))
        step = _chunk_rows(self.n)
        for start, chunk in self.packed_chunks(step):
            out += bool_t_dot(np.unpackbits(chunk, axis=1, count=self.n), R[start:start + step])
        return out

    def mean(self) -> np.ndarray:
        """Float64 ``[n]``: the fraction of masks that keep each player."""
        return self.t_dot(np.ones((len(self), 1), dtype=np.float32))[:, 0] / max(len(self), 1)

    def __reduce__(self):
        # A memory-mapped array travels as its file name: the receiver maps the same pages.
        base = self.packed
        if isinstance(base, np.memmap) and base.filename is not None:
            return _map_packed, (base.filename, base.offset, base.shape, self.n, self.rows)
        return PackedMasks, (np.asarray(base), self.n, self.rows)


def _chunk_rows(width: int) -> int:
    return max(64, _CHUNK_BYTES // (4 * max(width, 1)))


def bool_t_dot(B: np.ndarray, R: np.ndarray) -> np.ndarray:
    """``B^T R`` as float64 ``[p, T]`` for an unpacked bool ``B [m, p]``, in float32 row chunks
    (no ``[m, p]`` float copy)."""
    R = np.asarray(R)
    out = np.zeros((B.shape[1], R.shape[1]))
    step = _chunk_rows(B.shape[1])
    for start in range(0, len(B), step):
        out += B[start:start + step].T.astype(np.float32) @ R[start:start + step].astype(np.float32)
    return out


def _map_packed(filename, offset, shape, n, rows) -> PackedMasks:
    return PackedMasks(np.memmap(filename, dtype=np.uint8, mode="r", offset=offset, shape=shape), n, rows)


def as_packed(X, name: str = "X") -> PackedMasks:
    """``X`` as :class:`PackedMasks`: kept as is, or packed from a 0/1 or bool ``[m, n]`` array.

    Raises naming what is wrong with a dense array (dimensions, dtype, a value other than 0/1).
    """
    if isinstance(X, PackedMasks):
        return X
    X = np.asarray(X)
    if X.ndim != 2:
        raise ValueError(f"{name} must be a 2-D mask array [models, players]; got shape {X.shape}")
    if X.dtype != bool:
        if not np.issubdtype(X.dtype, np.number):
            raise ValueError(f"{name} must hold 0/1 or bool mask entries; got dtype {X.dtype}")
        bad = ~np.isin(X, (0, 1))
        if bad.any():
            r, c = np.argwhere(bad)[0]
            raise ValueError(f"{name} must hold only 0/1 (1 = kept); found {X[r, c].item()!r} at row {r}, column {c}")
    return PackedMasks.from_bool(X)
