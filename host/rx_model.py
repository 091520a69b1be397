"""Golden model of the receive path, exactly as docs/receive-path.md specifies it.

Three stages, each usable alone by the per-stage hardware tests, and `RxModel`
composing them like `hdl/rx_path.py`:

- `UdpRxModel`: the Ethernet/IPv4/UDP filter. Per frame: the UDP payload
  forwarded (None when a header check dropped the frame) and whether the
  frame was marked bad at its end (err, truncated).
- `MoldUdp64RxModel`: MoldUDP64 sequence tracking. Per packet: a
  `MoldDecision` (dropped or framed, first sequence number, count, leading
  duplicates to skip, gap flag).
- `ItchSplitModel`: ITCH framing. Per packet: the delivered messages (seq,
  type, length, bytes, gap) and whether the framing made the packet bad.

The checks are made here, in the documented order, on the raw bytes, since
each failing check names a counter; the codecs only decode delivered
messages (`itch.decode`, `itch.to_record`). All stages of one `RxModel`
share one `Counters` (32-bit wrapping, the doc's names in the doc's order).

Readings of the doc made here (the gateware must match them):

- The "UDP payload" framed by MoldUdp64Rx and ItchSplit is what arrived of
  it: bytes 42 .. min(frame length, 14 + IPv4 total length). A truncated
  frame therefore ends its packet early (possibly `mold_short`, or a block
  cut short: `msg_overrun`), besides `drop_truncated`.
- A length field below 12 stops framing even in a block beyond the count
  or a duplicate (it is seen as soon as the length field completes).
- `packet_ends` holds one bad flag per frame that reached MoldUdp64Rx
  (framed or dropped there), as `ItchSplit.packet_end` signals it; bad is
  the frame's end-of-frame status, or for framed packets overrun, count
  mismatch or a length field below 12. `packets_bad` counts the True ones.
- `next_seq` is a 64-bit register: `seq + count` wraps modulo 2**64.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass
from typing import Any

from ..hdl.rx_path import DEFAULT_DST_IP, DEFAULT_DST_PORT
from .codec import itch

__all__ = [
    "COUNTER_NAMES",
    "Counters",
    "UdpRxResult",
    "UdpRxModel",
    "MoldDecision",
    "MoldUdp64RxModel",
    "SplitMessage",
    "SplitResult",
    "ItchSplitModel",
    "RxTrace",
    "RxModel",
    "DEFAULT_DST_IP",
    "DEFAULT_DST_PORT",
]


COUNTER_NAMES = (
    "frames", "frames_ok", "drop_runt", "drop_vlan", "drop_ethertype",
    "drop_ip_header", "drop_ip_length", "drop_ip_fragment", "drop_ip_protocol",
    "drop_ip_checksum", "drop_dst_ip", "drop_dst_port", "drop_udp_length",
    "drop_err", "drop_truncated", "mold_packets", "mold_short",
    "mold_heartbeat", "mold_end_of_session", "mold_session_mismatch", "mold_gap",
    "mold_gap_messages", "mold_duplicate_packet", "mold_count_mismatch",
    "msgs", "msg_duplicate", "msg_beyond_count", "msg_overrun",
    "msg_bad_length", "msg_unknown_type", "packets_bad",
)
COUNTER_MASK = 0xFFFF_FFFF
SEQUENCE_MASK = 0xFFFF_FFFF_FFFF_FFFF

ETH_HEADER = 14
IPV4_HEADER = 20
UDP_HEADER = 8
UDP_PAYLOAD_OFFSET = ETH_HEADER + IPV4_HEADER + UDP_HEADER  # 42
VLAN_ETHERTYPES = (0x8100, 0x88A8)
ETHERTYPE_IPV4 = 0x0800
IPPROTO_UDP = 17
MIN_IP_TOTAL_LENGTH = IPV4_HEADER + UDP_HEADER  # 28

MOLD_HEADER = struct.Struct(">10sQH")
MOLD_END_OF_SESSION = 0xFFFF
MIN_MESSAGE_LENGTH = 12  # the shortest ITCH message; shorter length fields stop framing


class Counters(dict):
    """The receive-path counters by name, in the doc's order, 32 bits wrapping."""

    def __init__(self):
        super().__init__((name, 0) for name in COUNTER_NAMES)

    def add(self, name: str, amount: int = 1) -> None:
        self[name] = (self[name] + amount) & COUNTER_MASK

    def clear(self) -> None:
        """Control bit 1: every counter back to 0."""
        for name in self:
            self[name] = 0


def _ones_complement_sum_ok(header: bytes) -> bool:
    """Whether an IPv4 header's checksum is correct: its 16-bit words sum to 0xFFFF."""
    total = sum(struct.unpack(">10H", header))
    while total > 0xFFFF:
        total = (total & 0xFFFF) + (total >> 16)
    return total == 0xFFFF


# --- UdpRx ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class UdpRxResult:
    """What UdpRx did with one frame.

    `payload` is the UDP payload passed on (None: dropped at a header check),
    `bad` whether it was marked bad at the end of the frame, `counter` the
    counter that named the drop or the bad end (None for a good frame).
    """

    payload: bytes | None
    bad: bool
    counter: str | None


class UdpRxModel:
    """The Ethernet/IPv4/UDP frame filter (docs/receive-path.md, "Frame filter")."""

    def __init__(self, dst_ip: str | bytes = DEFAULT_DST_IP, dst_port: int = DEFAULT_DST_PORT,
                 counters: Counters | None = None):
        self.dst_ip = ipaddress.IPv4Address(dst_ip).packed
        self.dst_port = dst_port
        self.counters = Counters() if counters is None else counters

    def _header_check(self, frame: bytes) -> str | None:
        """The counter of the first failing header check, or None if all pass."""
        if len(frame) < UDP_PAYLOAD_OFFSET:
            return "drop_runt"
        ethertype = frame[12] << 8 | frame[13]
        if ethertype in VLAN_ETHERTYPES:
            return "drop_vlan"
        if ethertype != ETHERTYPE_IPV4:
            return "drop_ethertype"
        if frame[14] != 0x45:
            return "drop_ip_header"
        total_length = frame[16] << 8 | frame[17]
        if total_length < MIN_IP_TOTAL_LENGTH:
            return "drop_ip_length"
        if frame[20] & 0x20 or (frame[20] & 0x1F) | frame[21]:  # MF flag, fragment offset
            return "drop_ip_fragment"
        if frame[23] != IPPROTO_UDP:
            return "drop_ip_protocol"
        if not _ones_complement_sum_ok(frame[ETH_HEADER:ETH_HEADER + IPV4_HEADER]):
            return "drop_ip_checksum"
        if frame[30:34] != self.dst_ip:
            return "drop_dst_ip"
        if (frame[36] << 8 | frame[37]) != self.dst_port:
            return "drop_dst_port"
        if (frame[38] << 8 | frame[39]) != total_length - IPV4_HEADER:
            return "drop_udp_length"
        return None

    def process(self, frame: bytes, err: bool = False) -> UdpRxResult:
        counters = self.counters
        counters.add("frames")
        dropped_by = self._header_check(frame)
        if dropped_by:
            counters.add(dropped_by)
            return UdpRxResult(None, False, dropped_by)
        ip_end = ETH_HEADER + (frame[16] << 8 | frame[17])
        payload = bytes(frame[UDP_PAYLOAD_OFFSET:min(len(frame), ip_end)])
        if err:
            bad_end = "drop_err"
        elif len(frame) < ip_end:
            bad_end = "drop_truncated"
        else:
            counters.add("frames_ok")
            return UdpRxResult(payload, False, None)
        counters.add(bad_end)
        return UdpRxResult(payload, True, bad_end)


# --- MoldUdp64Rx ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MoldDecision:
    """The MoldUDP64 decision for one packet, made from its header alone.

    `framed`: the packet's blocks go on to ItchSplit (False: dropped, and
    `counter` names why: `mold_short`, `mold_end_of_session` or
    `mold_session_mismatch`). For framed packets: `seq` and `count` from the
    header, `skip` the number of leading duplicate messages, `gap` whether
    messages were missed before it, `expected` the next sequence number
    expected before it.
    """

    framed: bool
    counter: str | None = None
    seq: int = 0
    count: int = 0
    skip: int = 0
    gap: bool = False
    expected: int = 0


class MoldUdp64RxModel:
    """MoldUDP64 sequence tracking (docs/receive-path.md, "MoldUDP64")."""

    def __init__(self, counters: Counters | None = None):
        self.counters = Counters() if counters is None else counters
        self.synced = False
        self.session = b""
        self.next_seq = 0

    def resync(self) -> None:
        """Control bit 0 (and reset): forget the session."""
        self.synced = False

    def process(self, payload: bytes) -> MoldDecision:
        counters = self.counters
        if len(payload) < MOLD_HEADER.size:
            counters.add("mold_short")
            return MoldDecision(False, "mold_short")
        session, seq, count = MOLD_HEADER.unpack_from(payload)
        if count == MOLD_END_OF_SESSION:
            counters.add("mold_end_of_session")
            if self.synced and session == self.session:
                self.synced = False
            elif self.synced:
                counters.add("mold_session_mismatch")
            return MoldDecision(False, "mold_end_of_session")
        if self.synced and session != self.session:
            counters.add("mold_session_mismatch")
            return MoldDecision(False, "mold_session_mismatch")
        if not self.synced:
            self.synced, self.session, self.next_seq = True, session, seq
        if count == 0:
            counters.add("mold_heartbeat")
        expected = self.next_seq
        gap = seq > expected
        skip = 0
        if gap:
            counters.add("mold_gap")
            counters.add("mold_gap_messages", seq - self.next_seq)
        elif seq < self.next_seq:
            skip = min(count, self.next_seq - seq)
            if count and seq + count <= self.next_seq:
                counters.add("mold_duplicate_packet")
        self.next_seq = max(self.next_seq, (seq + count) & SEQUENCE_MASK)
        counters.add("mold_packets")
        return MoldDecision(True, None, seq, count, skip, gap, expected)

    def end(self, decision: MoldDecision, complete: int) -> None:
        """A framed packet ended with `complete` blocks: forget the messages it claimed but lacked."""
        if complete < decision.count:
            self.next_seq = max(decision.expected, (decision.seq + complete) & SEQUENCE_MASK)


# --- ItchSplit --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SplitMessage:
    """One delivered message: its sequence number, type, length and bytes."""

    seq: int
    type: str
    length: int
    data: bytes
    gap: bool


@dataclass(frozen=True, slots=True)
class SplitResult:
    """The framing of one packet: delivered messages, whether framing made it bad, complete blocks."""

    messages: tuple[SplitMessage, ...]
    bad: bool
    complete: int


class ItchSplitModel:
    """ITCH message framing (docs/receive-path.md, "ITCH framing")."""

    def __init__(self, counters: Counters | None = None):
        self.counters = Counters() if counters is None else counters

    def process(self, payload: bytes, decision: MoldDecision) -> SplitResult:
        """Frame the blocks of a packet that MoldUdp64Rx passed on (`decision.framed`)."""
        counters = self.counters
        delivered = []
        position, index, size = MOLD_HEADER.size, 0, len(payload)
        ended_inside = False
        while position < size:
            if position + 2 > size:
                ended_inside = True
                break
            length = payload[position] << 8 | payload[position + 1]
            if length < MIN_MESSAGE_LENGTH:
                counters.add("msg_bad_length")
                return SplitResult(tuple(delivered), True, index)  # framing stops, no end-of-packet counters
            end = position + 2 + length
            if end > size:
                ended_inside = True
                break
            type_code = chr(payload[position + 2])
            if index >= decision.count:
                counters.add("msg_beyond_count")
            elif index < decision.skip:
                counters.add("msg_duplicate")
            elif type_code not in itch.MESSAGE_LENGTHS:
                counters.add("msg_unknown_type")
            elif length != itch.MESSAGE_LENGTHS[type_code]:
                counters.add("msg_bad_length")
            else:
                counters.add("msgs")
                delivered.append(SplitMessage((decision.seq + index) & SEQUENCE_MASK, type_code, length,
                                              bytes(payload[position + 2:end]), decision.gap))
            index += 1
            position = end
        if ended_inside:
            counters.add("msg_overrun")
        miscounted = ended_inside or index != decision.count
        if miscounted:
            counters.add("mold_count_mismatch")
        return SplitResult(tuple(delivered), miscounted, index)


# --- the whole path ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RxTrace:
    """Everything each stage did with one frame (None where a stage was not reached)."""

    udp: UdpRxResult
    mold: MoldDecision | None
    split: SplitResult | None
    records: list[dict[str, Any]]
    packet_bad: bool | None  # the packet-end status; None when the frame never reached MoldUdp64Rx


class RxModel:
    """The whole receive path: frames in, JSON records of delivered messages out."""

    def __init__(self, dst_ip: str | bytes = DEFAULT_DST_IP, dst_port: int = DEFAULT_DST_PORT):
        self.counters = Counters()
        self.udp = UdpRxModel(dst_ip, dst_port, self.counters)
        self.mold = MoldUdp64RxModel(self.counters)
        self.split = ItchSplitModel(self.counters)
        self.packet_ends: list[bool] = []

    def resync(self) -> None:
        """Control bit 0: forget the MoldUDP64 session."""
        self.mold.resync()

    def clear_counters(self) -> None:
        """Control bit 1: clear all counters."""
        self.counters.clear()

    def trace(self, frame: bytes, err: bool = False) -> RxTrace:
        """Process one frame (without FCS; `err` as the MAC flags it) and report every stage."""
        udp = self.udp.process(frame, err)
        if udp.payload is None:
            return RxTrace(udp, None, None, [], None)
        mold = self.mold.process(udp.payload)
        split = self.split.process(udp.payload, mold) if mold.framed else None
        if split is not None:
            self.mold.end(mold, split.complete)
        bad = udp.bad or (split is not None and split.bad)
        if bad:
            self.counters.add("packets_bad")
        self.packet_ends.append(bad)
        records = [itch.to_record(itch.decode(m.data), m.seq, m.gap) for m in split.messages] if split else []
        return RxTrace(udp, mold, split, records, bad)

    def process(self, frame: bytes, err: bool = False) -> list[dict[str, Any]]:
        """The JSON records of the messages delivered from this frame, in order."""
        return self.trace(frame, err).records
