"""Tests of tick2trade.host.codec.pcap.

Files written here are read back by dpkt's own reader, and files read here
are written by dpkt's writer or by hand from the libpcap file format (24-byte
file header: magic, version 2.4, zone, sigfigs, snaplen, link type; 16-byte
record header: seconds, sub-second ticks, captured length, original length).
"""

import os
import struct
from decimal import Decimal

import dpkt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tick2trade.host.codec.net import CodecError
from tick2trade.host.codec.pcap import MAX_TS_NS, PcapError, PcapRecord, read_pcap, write_pcap

records = st.lists(
    st.builds(PcapRecord, st.integers(0, MAX_TS_NS - 1), st.binary(max_size=200)),
    max_size=20,
)
tmp_path_settings = settings(suppress_health_check=[HealthCheck.function_scoped_fixture])

NOW_NS = 1_767_225_600_123_456_789  # 2026-01-01T00:00:00.123456789Z: more digits than a float holds


def hand_written_pcap(endian: str, magic: int, records_: list[tuple[int, int, bytes]], linktype: int = 1) -> bytes:
    """A pcap file from the format description: `records_` are (seconds, ticks, data)."""
    out = struct.pack(endian + "IHHiIII", magic, 2, 4, 0, 0, 65535, linktype)
    for seconds, ticks, data in records_:
        out += struct.pack(endian + "IIII", seconds, ticks, len(data), len(data)) + data
    return out


def write_bytes(tmp_path, content: bytes, name: str = "capture.pcap"):
    path = tmp_path / name
    path.write_bytes(content)
    return path


# --- round trips and dpkt interoperability -----------------------------------


@tmp_path_settings
@given(records)
def test_write_read_round_trip(tmp_path, written):
    path = tmp_path / "round_trip.pcap"
    write_pcap(path, written)
    assert list(read_pcap(path)) == written


@tmp_path_settings
@given(records)
def test_written_file_read_by_dpkt(tmp_path, written):
    path = tmp_path / "for_dpkt.pcap"
    write_pcap(path, written)
    with open(path, "rb") as file:
        reader = dpkt.pcap.Reader(file)
        assert reader.datalink() == dpkt.pcap.DLT_EN10MB
        # dpkt returns nanosecond-file timestamps as exact Decimal seconds.
        assert [(ts, data) for ts, data in reader] == [
            (Decimal(r.ts_ns) / 10**9, r.data) for r in written
        ]


def test_written_file_header_is_nanosecond_ethernet(tmp_path):
    path = tmp_path / "header.pcap"
    write_pcap(path, [PcapRecord(NOW_NS, b"frame")])
    raw = path.read_bytes()
    endian = "<" if raw[:4] == bytes.fromhex("4d3cb2a1") else ">"
    magic, major, minor, _, _, _, linktype = struct.unpack_from(endian + "IHHiIII", raw)
    assert (magic, major, minor, linktype) == (0xA1B23C4D, 2, 4, 1)
    seconds, nanoseconds, captured, original = struct.unpack_from(endian + "IIII", raw, 24)
    assert (seconds, nanoseconds, captured, original) == (1_767_225_600, 123_456_789, 5, 5)
    assert raw[40:] == b"frame"


def test_extreme_timestamps_are_exact(tmp_path):
    path = tmp_path / "extremes.pcap"
    written = [PcapRecord(0, b""), PcapRecord(NOW_NS, b"a"), PcapRecord(MAX_TS_NS - 1, b"b")]
    write_pcap(path, written)
    assert list(read_pcap(path)) == written


def test_reads_microsecond_file_written_by_dpkt(tmp_path):
    path = tmp_path / "micro.pcap"
    with open(path, "wb") as file:
        writer = dpkt.pcap.Writer(file, nano=False)
        writer.writepkt(b"one", ts=Decimal("1767225600.123456"))
        writer.writepkt(b"two", ts=Decimal("4294967295.999999"))
    assert list(read_pcap(path)) == [
        PcapRecord(1_767_225_600_123_456_000, b"one"),
        PcapRecord(4_294_967_295_999_999_000, b"two"),
    ]


@pytest.mark.parametrize("endian", ["<", ">"], ids=["little-endian", "big-endian"])
@pytest.mark.parametrize(("magic", "ns_per_tick"), [(0xA1B2C3D4, 1000), (0xA1B23C4D, 1)], ids=["usec", "nsec"])
def test_reads_both_byte_orders_and_resolutions(tmp_path, endian, magic, ns_per_tick):
    path = write_bytes(tmp_path, hand_written_pcap(endian, magic, [(10, 999, b"x" * 60), (11, 0, b"")]))
    assert list(read_pcap(path)) == [
        PcapRecord(10 * 10**9 + 999 * ns_per_tick, b"x" * 60),
        PcapRecord(11 * 10**9, b""),
    ]


def test_empty_capture(tmp_path):
    path = tmp_path / "no_records.pcap"
    write_pcap(path, [])
    assert os.path.getsize(path) == 24
    assert list(read_pcap(path)) == []


# --- read errors -------------------------------------------------------------

GOOD = hand_written_pcap("<", 0xA1B23C4D, [(1, 2, b"0123456789"), (3, 4, b"abcdefghij")])


def assert_one_line_pcap_error(path, message: str, *, on_open: bool):
    """Reading `path` raises a one-line PcapError naming the file: on the read_pcap call itself
    for file-level problems, or while iterating for a bad record."""
    with pytest.raises(PcapError, match=message) as raised:
        records_ = read_pcap(path)
        assert not on_open, "read_pcap should have raised before returning"
        list(records_)
    text = str(raised.value)
    assert "\n" not in text
    assert str(path) in text


def test_missing_file(tmp_path):
    assert_one_line_pcap_error(tmp_path / "absent.pcap", "no such file", on_open=True)


def test_directory_instead_of_file(tmp_path):
    assert_one_line_pcap_error(tmp_path, "cannot open", on_open=True)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "not a pcap file: empty"),
        (b"\xa1\xb2", "not a pcap file: magic a1b2 "),
        (b"GET / HTTP/1.1\r\nHost: example\r\n\r\n", "not a pcap file: magic 47455420"),
        (bytes.fromhex("0a0d0d0a") + bytes(100), "not a pcap file: magic 0a0d0d0a"),  # pcapng
        (GOOD[:10], "truncated: 10 of 24 file header bytes"),
        (hand_written_pcap("<", 0xA1B23C4D, [], linktype=101), "link type 101, expected 1"),
    ],
    ids=["empty", "two-bytes", "text", "pcapng", "short-header", "raw-ip-linktype"],
)
def test_bad_file_header(tmp_path, content, message):
    assert_one_line_pcap_error(write_bytes(tmp_path, content), message, on_open=True)


def test_random_bytes_are_not_a_pcap(tmp_path):
    content = bytes(range(7, 200))  # fixed "random" bytes: no classic magic at the start
    assert_one_line_pcap_error(write_bytes(tmp_path, content), "not a pcap file: magic 0708090a", on_open=True)


@pytest.mark.parametrize(
    ("cut", "message"),
    [
        (24 + 26 + 5, "truncated: record 1 at byte 50 has 5 of 16 header bytes"),
        (24 + 26 + 16 + 3, "truncated: record 1 at byte 50 has 3 of 10 data bytes"),
        (len(GOOD) - 1, "truncated: record 1 at byte 50 has 9 of 10 data bytes"),
    ],
    ids=["record-header", "record-data", "last-byte"],
)
def test_truncated_record(tmp_path, cut, message):
    assert_one_line_pcap_error(write_bytes(tmp_path, GOOD[:cut]), message, on_open=False)


def test_truncated_record_yields_the_complete_ones_first(tmp_path):
    records_ = read_pcap(write_bytes(tmp_path, GOOD[:-1]))
    assert next(records_) == PcapRecord(1 * 10**9 + 2, b"0123456789")
    with pytest.raises(PcapError, match="truncated"):
        next(records_)


def test_dpkt_alone_would_miss_the_truncation(tmp_path):
    """Why pcap.py checks record lengths itself: dpkt's reader yields the short record silently."""
    path = write_bytes(tmp_path, GOOD[:-1])
    with open(path, "rb") as file:
        assert [data for _, data in dpkt.pcap.Reader(file)] == [b"0123456789", b"abcdefghi"]


def test_sub_second_field_out_of_range(tmp_path):
    path = write_bytes(tmp_path, hand_written_pcap("<", 0xA1B2C3D4, [(1, 1_000_000, b"x")]))
    assert_one_line_pcap_error(path, "record 0 at byte 24 has a sub-second field of 1000000", on_open=False)


def test_pcap_error_is_a_codec_error():
    assert issubclass(PcapError, CodecError)


# --- atomic writes -----------------------------------------------------------


def test_overwrites_existing_file(tmp_path):
    path = tmp_path / "capture.pcap"
    write_pcap(path, [PcapRecord(1, b"old")])
    write_pcap(path, [PcapRecord(2, b"new")])
    assert list(read_pcap(path)) == [PcapRecord(2, b"new")]
    assert os.listdir(tmp_path) == ["capture.pcap"]


def test_failed_write_leaves_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "capture.pcap"
    write_pcap(path, [PcapRecord(1, b"old")])
    before = path.read_bytes()

    def records_then_failure():
        yield PcapRecord(2, b"new")
        raise RuntimeError("source failed")

    with pytest.raises(RuntimeError, match="source failed"):
        write_pcap(path, records_then_failure())
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["capture.pcap"]


@pytest.mark.parametrize(
    ("record", "message"),
    [
        (PcapRecord(-1, b""), "timestamp -1 ns does not fit"),
        (PcapRecord(MAX_TS_NS, b""), "does not fit classic pcap"),
        (PcapRecord(0, bytes(262145)), "262145 bytes exceed the snaplen 262144"),
    ],
    ids=["negative", "past-2106", "too-long"],
)
def test_unwritable_record_creates_nothing(tmp_path, record, message):
    path = tmp_path / "capture.pcap"
    with pytest.raises(PcapError, match=message):
        write_pcap(path, [PcapRecord(0, b"fine"), record])
    assert os.listdir(tmp_path) == []


def test_write_creates_missing_directory(tmp_path):
    target = tmp_path / "absent" / "capture.pcap"
    write_pcap(target, [PcapRecord(5, b"\x00" * 60)])
    assert [(r.ts_ns, r.data) for r in read_pcap(target)] == [(5, b"\x00" * 60)]


def test_write_where_a_file_blocks_the_directory_raises_os_error(tmp_path):
    (tmp_path / "blocker").write_bytes(b"")
    with pytest.raises(OSError):
        write_pcap(tmp_path / "blocker" / "capture.pcap", [])
