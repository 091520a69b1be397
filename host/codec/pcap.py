"""Classic libpcap capture files of Ethernet frames, with integer-nanosecond timestamps.

`write_pcap` writes nanosecond-resolution files (magic 0xa1b23c4d, link type
1) through `dpkt.pcap.Writer`, atomically. `read_pcap` reads microsecond and
nanosecond files of either byte order. Timestamps are integer nanoseconds
since the epoch everywhere, never floats: a float of seconds has about 0.2 us
of resolution at today's epoch times, so it cannot carry pipeline timing.

Why the reader does not use `dpkt.pcap.Reader` for the records (checked
against dpkt 1.9.8): it returns timestamps of microsecond files as float
seconds, losing the exact value, and it yields a short last record as if it
were complete when the file is cut inside the record data. Record headers are
therefore read here with a precompiled `struct.Struct`; the file header is
still decoded by dpkt's `FileHdr`/`LEFileHdr`. The writer does use dpkt,
handing it the timestamp as an exact `decimal.Decimal` of seconds, which its
`int(ts)` / `ts % 1 * 10**9` arithmetic keeps exact.

Every problem with an input file is a `PcapError` (a `CodecError`) with a
one-line message naming the file.
"""

from __future__ import annotations

import os

import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from decimal import Decimal

import dpkt

from ..files import atomic_write
from .net import CodecError

__all__ = ["PcapError", "PcapRecord", "read_pcap", "write_pcap", "SNAPLEN", "MAX_TS_NS"]

#: Snapshot length written in the file header: libpcap's maximum, larger than any frame we write.
SNAPLEN = 262144

#: Classic pcap stores whole seconds in 32 bits: timestamps must be below this.
MAX_TS_NS = (1 << 32) * 10**9

_FILE_HEADER_SIZE = dpkt.pcap.FileHdr.__hdr_len__
_BIG_ENDIAN_RECORD = struct.Struct(">IIII")  # seconds, sub-second ticks, captured length, original length
_LITTLE_ENDIAN_RECORD = struct.Struct("<IIII")

# Magic number (as read big-endian) -> (record header layout, nanoseconds per sub-second tick).
_FORMATS = {
    dpkt.pcap.TCPDUMP_MAGIC: (_BIG_ENDIAN_RECORD, 1000),
    dpkt.pcap.TCPDUMP_MAGIC_NANO: (_BIG_ENDIAN_RECORD, 1),
    dpkt.pcap.PMUDPCT_MAGIC: (_LITTLE_ENDIAN_RECORD, 1000),
    dpkt.pcap.PMUDPCT_MAGIC_NANO: (_LITTLE_ENDIAN_RECORD, 1),
}


class PcapError(CodecError):
    """A pcap file is missing, not a classic Ethernet pcap, truncated or otherwise unreadable,
    or a record cannot be written to one."""


@dataclass(frozen=True, slots=True)
class PcapRecord:
    """One captured frame: timestamp in integer nanoseconds since the epoch, and the frame bytes."""

    ts_ns: int
    data: bytes


def read_pcap(path: str | os.PathLike[str]) -> Iterator[PcapRecord]:
    """The records of the pcap file at `path`, read lazily.

    The file is opened and its header checked at once, so a missing file, a
    file that is not a pcap (bad magic) or one of another link type than
    Ethernet raises `PcapError` here; a truncated record raises `PcapError`
    when iteration reaches it.
    """
    records = _read_records(os.fspath(path))
    next(records)  # run up to the first yield: opens the file and checks its header
    return records


def _read_records(path: str) -> Iterator[PcapRecord | None]:
    """Generator behind `read_pcap`: yields None once the header is checked, then the records."""
    try:
        file = open(path, "rb")
    except FileNotFoundError:
        raise PcapError(f"{path}: no such file") from None
    except OSError as error:
        raise PcapError(f"{path}: cannot open: {error.strerror}") from None
    with file:
        record_header, ns_per_tick = _read_file_header(file, path)
        yield None
        offset = _FILE_HEADER_SIZE
        index = 0
        while header := file.read(record_header.size):
            if len(header) < record_header.size:
                raise PcapError(
                    f"{path}: truncated: record {index} at byte {offset} has "
                    f"{len(header)} of {record_header.size} header bytes"
                )
            seconds, ticks, captured_length, _original_length = record_header.unpack(header)
            if ticks * ns_per_tick >= 10**9:
                raise PcapError(f"{path}: record {index} at byte {offset} has a sub-second field of {ticks}")
            data = file.read(captured_length)
            if len(data) < captured_length:
                raise PcapError(
                    f"{path}: truncated: record {index} at byte {offset} has "
                    f"{len(data)} of {captured_length} data bytes"
                )
            yield PcapRecord(seconds * 10**9 + ticks * ns_per_tick, data)
            offset += record_header.size + captured_length
            index += 1


def _read_file_header(file, path: str) -> tuple[struct.Struct, int]:
    """Check the 24-byte file header; return the record header layout and ns per sub-second tick."""
    raw = file.read(_FILE_HEADER_SIZE)
    if not raw:
        raise PcapError(f"{path}: not a pcap file: empty")
    pcap_format = _FORMATS.get(int.from_bytes(raw[:4], "big")) if len(raw) >= 4 else None
    if pcap_format is None:
        raise PcapError(f"{path}: not a pcap file: magic {raw[:4].hex()} is not a classic pcap magic")
    if len(raw) < _FILE_HEADER_SIZE:
        raise PcapError(f"{path}: truncated: {len(raw)} of {_FILE_HEADER_SIZE} file header bytes")
    record_header, ns_per_tick = pcap_format
    header_class = dpkt.pcap.LEFileHdr if record_header is _LITTLE_ENDIAN_RECORD else dpkt.pcap.FileHdr
    linktype = header_class(raw).linktype
    if linktype != dpkt.pcap.DLT_EN10MB:
        raise PcapError(f"{path}: link type {linktype}, expected {dpkt.pcap.DLT_EN10MB} (Ethernet)")
    return record_header, ns_per_tick


def write_pcap(path: str | os.PathLike[str], records: Iterable[PcapRecord]) -> None:
    """Write `records` to a nanosecond pcap file at `path`, replacing it atomically.

    Written through `atomic_write`: `path` holds either its old content or
    the complete new file, and its directory is created. A timestamp outside 0 <= ts_ns < `MAX_TS_NS` or a frame longer
    than `SNAPLEN` raises `PcapError`; I/O failures raise `OSError`.
    """
    path = os.fspath(path)
    with atomic_write(path) as file:
        writer = dpkt.pcap.Writer(file, snaplen=SNAPLEN, linktype=dpkt.pcap.DLT_EN10MB, nano=True)
        for index, record in enumerate(records):
            if not 0 <= record.ts_ns < MAX_TS_NS:
                raise PcapError(f"{path}: record {index}: timestamp {record.ts_ns} ns does not fit classic pcap")
            if len(record.data) > SNAPLEN:
                raise PcapError(f"{path}: record {index}: {len(record.data)} bytes exceed the snaplen {SNAPLEN}")
            writer.writepkt_time(bytes(record.data), Decimal(record.ts_ns).scaleb(-9))
