"""NASDAQ BinaryFILE day files: ITCH messages, each behind a 2-byte length.

A day file (e.g. `MMDDYYYY.NASDAQ_ITCH50`, ~270 million messages, ~7.7 GB)
has no framing beyond the big-endian length before every message. It is read
in chunks (8 MiB by default) with the partial message at the end of a chunk
carried into the next, so memory stays bounded whatever the file size.

Framing is inherently sequential (each length says where the next one is).
A Python loop over the lengths costs ~200 ns per message, so the chunk is
framed with numpy instead, exactly, in two steps:

1. Candidates: every position `p` where the bytes look like an ITCH block
   (`data[p] == 0` and `data[p+1]` is the length of the type `data[p+2]`) and
   the block is complete. Nearly every real block is a candidate and few
   other positions are.
2. Verified links: starting from a known block start, a candidate whose block
   ends exactly at the next candidate is followed by it; runs of such links
   are taken whole (each link is checked, so a run is exactly the true
   framing). Where a link breaks (a false candidate in between, an unknown
   type, a non-ITCH length), one block is framed in Python from the true
   position and the vectorised runs resume at the next candidate.

The ITCH table only decides how fast framing is, never what it finds: any
length-prefixed content is framed correctly.

`iter_batches` yields per chunk a `MessageBatch` (offsets, lengths, types as
numpy arrays plus the chunk bytes), so callers count types or pull a field
of every Add Order in a chunk with numpy alone. `iter_messages` yields the
message bytes one by one. A file that ends inside a length field or a
message raises `TruncatedFileError`.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from .itch import MESSAGE_LENGTHS
from ..files import atomic_write
from .net import CodecError

__all__ = [
    "BinaryFileError",
    "TruncatedFileError",
    "MessageBatch",
    "DEFAULT_CHUNK_SIZE",
    "iter_batches",
    "iter_messages",
    "write_binaryfile",
]

DEFAULT_CHUNK_SIZE = 8 << 20
LENGTH_FIELD = 2
MAX_MESSAGE_LENGTH = 0xFFFF

# ITCH length by type byte (0 where the type is unknown: no block has a zero
# length field *and* a type byte, so 0 never makes a candidate).
_ITCH_LENGTH_BY_TYPE = np.zeros(256, np.uint8)
for _type, _length in MESSAGE_LENGTHS.items():
    _ITCH_LENGTH_BY_TYPE[ord(_type)] = _length
_MIN_ITCH_LENGTH = min(MESSAGE_LENGTHS.values())
_ITCH_LENGTH_SPAN = max(MESSAGE_LENGTHS.values()) - _MIN_ITCH_LENGTH


class BinaryFileError(CodecError):
    """A BinaryFILE that cannot be read or written."""


class TruncatedFileError(BinaryFileError):
    """The file ends inside a length field or a message."""


@dataclass(frozen=True, slots=True)
class MessageBatch:
    """The complete messages of one chunk of a BinaryFILE.

    `raw` is the chunk (it starts at `file_offset` in the file) and `data` the
    same bytes as a uint8 array. Message `i` is `raw[offsets[i] :
    offsets[i] + lengths[i]]`; `types[i]` is its first byte (0 for a
    zero-length message).
    """

    raw: bytes
    data: np.ndarray
    offsets: np.ndarray  # int64
    lengths: np.ndarray  # int64
    types: np.ndarray  # uint8
    file_offset: int

    def __len__(self) -> int:
        return len(self.offsets)

    def type_mask(self, type_code: str) -> np.ndarray:
        """Boolean mask of the messages of one type, e.g. `batch.type_mask("A")`."""
        return self.types == ord(type_code)

    def count_by_type(self) -> dict[str, int]:
        """Number of messages per type character (zero-length messages under "\\x00")."""
        counts = np.bincount(self.types, minlength=256)
        return {chr(t): int(counts[t]) for t in np.flatnonzero(counts)}

    def field(self, offset: int, width: int, select: np.ndarray | None = None) -> np.ndarray:
        """Big-endian unsigned field at `offset` (1..8 bytes wide) of every selected message.

        `select` is a boolean mask or an index array over the batch's
        messages (all when None). Returns uint64. Raises `BinaryFileError` if
        a selected message is too short to hold the field. Example, the price
        of every Add Order: `batch.field(32, 4, batch.type_mask("A"))`.
        """
        if not 1 <= width <= 8:
            raise BinaryFileError(f"field width {width} is not 1..8 bytes")
        offsets = self.offsets if select is None else self.offsets[select]
        if np.any((self.lengths if select is None else self.lengths[select]) < offset + width):
            raise BinaryFileError(f"a selected message is shorter than {offset + width} bytes")
        padded = np.zeros((len(offsets), 8), np.uint8)
        padded[:, 8 - width:] = self.data[(offsets + offset)[:, None] + np.arange(width)]
        return padded.view(">u8").ravel().astype(np.uint64)

    def messages(self) -> Iterator[bytes]:
        """The message bytes, in file order."""
        raw = self.raw
        for start, length in zip(self.offsets.tolist(), self.lengths.tolist()):
            yield raw[start:start + length]


def _block_starts(raw: bytes) -> tuple[np.ndarray, int]:
    """Positions of the length fields of the complete blocks of `raw`, from 0.

    Returns them with the position where the first incomplete block begins
    (`len(raw)` when the chunk ends exactly on a block boundary).
    """
    size = len(raw)
    data = np.frombuffer(raw, np.uint8)
    span = size - LENGTH_FIELD
    looks_like_block = (data[1:span + 1] - np.uint8(_MIN_ITCH_LENGTH)) <= _ITCH_LENGTH_SPAN
    looks_like_block &= data[:span] == 0
    candidates = np.flatnonzero(looks_like_block)
    candidates = candidates[_ITCH_LENGTH_BY_TYPE[data[candidates + 2]] == data[candidates + 1]]
    ends = candidates + LENGTH_FIELD + data[candidates + 1]
    complete = ends <= size
    candidates, ends = candidates[complete], ends[complete]
    # run_ends[k]: last index of the run of verified links that index k is in
    breaks = np.flatnonzero(ends[:-1] != candidates[1:])
    breaks = np.append(breaks, len(candidates) - 1)

    pieces: list[np.ndarray] = []
    singles: list[int] = []
    position = 0
    while True:
        index = int(np.searchsorted(candidates, position))
        if index < len(candidates) and candidates[index] == position:
            run_end = int(breaks[np.searchsorted(breaks, index)])
            if singles:
                pieces.append(np.array(singles, np.int64))
                singles = []
            pieces.append(candidates[index:run_end + 1])
            position = int(ends[run_end])
            continue
        if position + LENGTH_FIELD > size:
            break
        end = position + LENGTH_FIELD + (raw[position] << 8 | raw[position + 1])
        if end > size:
            break
        singles.append(position)
        position = end
    if singles:
        pieces.append(np.array(singles, np.int64))
    starts = np.concatenate(pieces) if pieces else np.zeros(0, np.int64)
    return starts.astype(np.int64, copy=False), position


def _batch(raw: bytes, starts: np.ndarray, file_offset: int) -> MessageBatch:
    data = np.frombuffer(raw, np.uint8)
    lengths = data[starts].astype(np.int64) << 8 | data[starts + 1]
    offsets = starts + LENGTH_FIELD
    types = np.where(lengths > 0, data[np.minimum(offsets, len(raw) - 1)], 0).astype(np.uint8)
    return MessageBatch(raw, data, offsets, lengths, types, file_offset)


def iter_batches(path: str | os.PathLike, chunk_size: int = DEFAULT_CHUNK_SIZE) -> Iterator[MessageBatch]:
    """Batches of complete messages, one per chunk read (never an empty batch).

    Raises `TruncatedFileError` at the end of a file that ends inside a block.
    """
    if chunk_size < 1:
        raise ValueError("chunk_size must be positive")
    file_offset = 0
    carry = b""
    with open(path, "rb") as file:
        while True:
            block = file.read(chunk_size)
            raw = carry + block if carry else block
            starts, end = _block_starts(raw)
            if len(starts):
                yield _batch(raw, starts, file_offset)
            carry = raw[end:]
            file_offset += end
            if not block:
                if carry:
                    raise TruncatedFileError(
                        f"{path}: file ends inside a block: {len(carry)} bytes from offset {file_offset}"
                        + ("" if len(carry) < LENGTH_FIELD else
                           f" hold a length field of {int.from_bytes(carry[:2], 'big')}")
                    )
                return


def iter_messages(path: str | os.PathLike, chunk_size: int = DEFAULT_CHUNK_SIZE) -> Iterator[bytes]:
    """Every message's bytes (without its length field), in file order."""
    for batch in iter_batches(path, chunk_size):
        yield from batch.messages()


def write_binaryfile(path: str | os.PathLike, messages: Iterable[bytes]) -> int:
    """Write `messages` as a BinaryFILE, atomically; return the message count.

    The file is written under a temporary name in the same directory and
    renamed into place, so a reader never sees a half-written file.
    """
    count = 0
    with atomic_write(path, "wb", buffering=1 << 20) as file:
        for message in messages:
            if len(message) > MAX_MESSAGE_LENGTH:
                raise BinaryFileError(f"message {count} of {len(message)} bytes does not fit a length field")
            file.write(len(message).to_bytes(2, "big"))
            file.write(message)
            count += 1
    return count
