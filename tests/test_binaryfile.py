"""BinaryFILE reader and writer: framing across chunk boundaries, batches, truncation."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tick2trade.host.codec import itch
from tick2trade.host.codec.binaryfile import (
    TruncatedFileError,
    iter_batches,
    iter_messages,
    write_binaryfile,
)


def add_order(ref: int, price: int, locate: int = 3) -> bytes:
    """An Add Order built by hand: ref at 11, side at 19, shares at 20, stock at 24, price at 32."""
    return (b"A" + locate.to_bytes(2, "big") + bytes(2) + (1000 + ref).to_bytes(6, "big")
            + ref.to_bytes(8, "big") + b"B" + (100).to_bytes(4, "big") + b"TGT     " + price.to_bytes(4, "big"))


def delete(ref: int) -> bytes:
    return b"D" + (3).to_bytes(2, "big") + bytes(2) + (2000 + ref).to_bytes(6, "big") + ref.to_bytes(8, "big")


def framed(messages) -> bytes:
    """The BinaryFILE bytes of `messages`, built independently of the writer."""
    return b"".join(len(m).to_bytes(2, "big") + m for m in messages)


MESSAGES = [add_order(i, 1_000_000 + 100 * i) if i % 3 else delete(i) for i in range(1, 60)]


def test_writer_output_is_length_prefixed(tmp_path):
    path = tmp_path / "day.bin"
    assert write_binaryfile(path, MESSAGES) == len(MESSAGES)
    assert path.read_bytes() == framed(MESSAGES)
    assert [p.name for p in tmp_path.iterdir()] == ["day.bin"]  # no temporary left behind


@pytest.mark.parametrize("chunk_size", [1, 2, 3, 17, 36, 37, 38, 39, 40, 64, 1000, 1 << 20])
def test_every_chunk_size_frames_the_same(tmp_path, chunk_size):
    """Small chunks put boundaries inside length fields and inside messages."""
    path = tmp_path / "day.bin"
    path.write_bytes(framed(MESSAGES))
    assert list(iter_messages(path, chunk_size)) == MESSAGES
    batches = list(iter_batches(path, chunk_size))
    assert all(len(b) > 0 for b in batches)
    assert sum(len(b) for b in batches) == len(MESSAGES)


def test_message_straddling_chunk_boundary(tmp_path):
    """First chunk ends 5 bytes into the second message: it must come whole from the next read."""
    path = tmp_path / "day.bin"
    path.write_bytes(framed(MESSAGES[:3]))
    chunk_size = 2 + len(MESSAGES[0]) + 7
    batches = list(iter_batches(path, chunk_size))
    assert [m for b in batches for m in b.messages()] == MESSAGES[:3]
    assert batches[0].file_offset == 0 and len(batches[0]) == 1
    assert batches[1].file_offset == 2 + len(MESSAGES[0])


@pytest.mark.parametrize("cut", [1, 2, 5, 37])
def test_truncated_file_raises(tmp_path, cut):
    """Cut 1 byte into the last length field, after it, or inside the message."""
    data = framed(MESSAGES[:4])
    last_block = 2 + len(MESSAGES[3])
    path = tmp_path / "day.bin"
    path.write_bytes(data[:len(data) - last_block + cut])
    with pytest.raises(TruncatedFileError):
        list(iter_messages(path, chunk_size=16))


def test_non_itch_content_and_zero_length_frame_correctly(tmp_path):
    """Framing does not depend on the ITCH table: odd lengths, unknown types, zero length."""
    messages = [b"", b"z" * 300, b"\x00\x24A", MESSAGES[0], b"", b"\x00" * 40, MESSAGES[1], b"Q"]
    path = tmp_path / "odd.bin"
    path.write_bytes(framed(messages))
    for chunk_size in (3, 50, 4096):
        assert list(iter_messages(path, chunk_size)) == messages


def test_false_candidate_inside_message(tmp_path):
    """A message whose body contains bytes that look like a block (00 13 'D') must not split."""
    tricky = add_order(0x0013440000000000 >> 8, 0x00134400)  # ref and price hold 00 13 44 = length 19 + 'D'
    assert b"\x00\x13D" in tricky
    messages = [tricky, delete(1), tricky, tricky, delete(2)]
    path = tmp_path / "day.bin"
    path.write_bytes(framed(messages))
    assert list(iter_messages(path)) == messages


def test_batch_fields_and_counts(tmp_path):
    path = tmp_path / "day.bin"
    path.write_bytes(framed(MESSAGES))
    (batch,) = list(iter_batches(path))
    adds = batch.type_mask("A")
    expected_prices = [1_000_000 + 100 * i for i in range(1, 60) if i % 3]
    assert batch.field(32, 4, adds).tolist() == expected_prices
    assert batch.field(1, 2, adds).tolist() == [3] * len(expected_prices)
    assert batch.field(5, 6).tolist() == [(1000 if i % 3 else 2000) + i for i in range(1, 60)]
    assert batch.count_by_type() == {"A": 40, "D": 19}
    assert batch.field(11, 8, np.flatnonzero(~adds)).tolist() == list(range(3, 60, 3))


ITCH_MESSAGE = st.sampled_from(sorted(itch.MESSAGE_LENGTHS)).flatmap(
    lambda t: st.binary(min_size=itch.MESSAGE_LENGTHS[t] - 1, max_size=itch.MESSAGE_LENGTHS[t] - 1)
    .map(lambda body: t.encode() + body))


@settings(max_examples=60)
@given(messages=st.lists(st.one_of(ITCH_MESSAGE, st.binary(max_size=70)), max_size=80),
       chunk_size=st.integers(1, 300))
def test_round_trip_arbitrary_content(tmp_path_factory, messages, chunk_size):
    path = tmp_path_factory.mktemp("bf") / "day.bin"
    write_binaryfile(path, messages)
    assert list(iter_messages(path, chunk_size)) == messages
    batches = list(iter_batches(path, chunk_size))
    types = np.concatenate([b.types for b in batches]) if batches else np.zeros(0)
    assert types.tolist() == [m[0] if m else 0 for m in messages]


def test_decode_benchmark_reads_back_what_it_wrote():
    """Smoke run of the benchmark at a small size (rates are not asserted: tests never time)."""
    from tick2trade.host.bench_decode import run

    result = run(messages=3_000, repeats=1)
    assert result["messages"] == 3_000
    assert {"batch_msgs_per_s", "framing_msgs_per_s", "typed_decode_msgs_per_s"} <= set(result)
