"""The board link's host side: requests encoded, replies decoded, and a client over any byte transport.

docs/board-link.md is the protocol; ``hdl/board_link.py`` the gateware that
answers it (the command and status numbers and the counters' order come from
there, so that the two cannot drift apart). The client does not care what
carries the bytes: anything with ``write(bytes)`` and ``read(n) -> bytes``
(``read`` may return fewer than ``n`` bytes, or none, when nothing came in
time) will do: pyserial's ``Serial`` on a board, a pseudo-terminal to a
simulated board, or a test's transport over the gateware in simulation.
"""

import binascii
import dataclasses
import time
from typing import NamedTuple

from ..hdl.board_link import (COUNTERS, INJECT_REPLY_BYTES, MAX_WORDS, REPLY_SYNC, REQUEST_SYNC,
                              STATUS_PAYLOAD_BYTES, TX_READ_HEADER_BYTES, Command, Status)

__all__ = ["Command", "Status", "Request", "Reply", "LinkStatus", "CapturedFrame", "BoardLinkError",
           "encode_request", "encode_reply", "crc16", "ReplyParser", "BoardLinkClient", "REQUEST_HEADER_BYTES",
           "REPLY_HEADER_BYTES", "CRC_BYTES", "MAX_PAYLOAD", "IDEMPOTENT_COMMANDS"]

#: Sync, command, tag, length (2).
REQUEST_HEADER_BYTES = 5
#: Sync, command, tag, status, length (2).
REPLY_HEADER_BYTES = 6
CRC_BYTES = 2
#: The length field's limit.
MAX_PAYLOAD = 0xFFFF
#: Commands a client may repeat when their reply is lost: doing them twice is the same as once
#: (WRITE only for registers that are not strobes whose effect adds up; see ``write_registers``).
IDEMPOTENT_COMMANDS = frozenset({Command.READ, Command.WRITE, Command.STATUS})
#: Replies whose request was not acted on, so that it can always be sent again.
_NOT_ACTED_ON = frozenset({Status.BAD_CRC.value, Status.BUSY.value})


class BoardLinkError(RuntimeError):
    """A request failed: refused by the board, no (good) reply in time, or a reply that makes no sense."""


def crc16(data: bytes) -> int:
    """CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF, no reflection, no final xor) of ``data``."""
    return binascii.crc_hqx(data, 0xFFFF)


def _code(value) -> int:
    """The number of a ``Command``/``Status`` member, or the int itself."""
    return int(getattr(value, "value", value))


def _name(enum_class, code: int) -> str:
    try:
        return enum_class(code).name
    except ValueError:
        return f"0x{code:02x}"


def _frame(sync: int, header: bytes, payload: bytes) -> bytes:
    if len(payload) > MAX_PAYLOAD:
        raise ValueError(f"a payload of {len(payload)} bytes does not fit the length field (at most {MAX_PAYLOAD})")
    body = header + len(payload).to_bytes(2, "little") + payload
    return bytes([sync]) + body + crc16(body).to_bytes(2, "big")


def _byte(value, what: str) -> int:
    value = _code(value)
    if not 0 <= value <= 0xFF:
        raise ValueError(f"{what} must be a byte (0..255), not {value}")
    return value


@dataclasses.dataclass(frozen=True)
class Request:
    """A request as the board receives it."""
    command: int
    tag: int
    payload: bytes = b""

    def encode(self) -> bytes:
        return encode_request(self.command, self.tag, self.payload)


@dataclasses.dataclass(frozen=True)
class Reply:
    """A reply as the board sends it; ``status`` 0 is success."""
    command: int
    tag: int
    status: int
    payload: bytes = b""

    def encode(self) -> bytes:
        return encode_reply(self.command, self.tag, self.status, self.payload)

    @property
    def status_name(self) -> str:
        return _name(Status, self.status)


def encode_request(command, tag: int, payload: bytes = b"") -> bytes:
    """``0x5A | command | tag | length (2, LE) | payload | crc (2, BE)``."""
    header = bytes([_byte(command, "command"), _byte(tag, "tag")])
    return _frame(REQUEST_SYNC, header, bytes(payload))


def encode_reply(command, tag: int, status, payload: bytes = b"") -> bytes:
    """``0xA5 | command | tag | status | length (2, LE) | payload | crc (2, BE)`` (what the board sends)."""
    header = bytes([_byte(command, "command"), _byte(tag, "tag"), _byte(status, "status")])
    return _frame(REPLY_SYNC, header, bytes(payload))


class ReplyParser:
    """Replies out of a byte stream that may hold garbage, lost bytes and corrupt replies.

    ``feed`` takes bytes as they come and returns the replies they complete.
    Bytes before a sync byte are skipped (``skipped``). A reply whose CRC is
    wrong is dropped (``bad_crc``) and the search for a sync byte resumes at
    the byte after its sync byte, so that a good reply hidden in what looked
    like a long corrupt one is still found.
    """

    def __init__(self):
        self._buffer = bytearray()
        self.skipped = 0
        self.bad_crc = 0

    def feed(self, data: bytes) -> list[Reply]:
        self._buffer += data
        replies = []
        while True:
            start = self._buffer.find(REPLY_SYNC)
            if start < 0:
                self.skipped += len(self._buffer)
                self._buffer.clear()
                break
            if start:
                self.skipped += start
                del self._buffer[:start]
            if len(self._buffer) < REPLY_HEADER_BYTES:
                break
            length = int.from_bytes(self._buffer[4:6], "little")
            end = REPLY_HEADER_BYTES + length
            if len(self._buffer) < end + CRC_BYTES:
                break
            if crc16(bytes(self._buffer[1:end])) != int.from_bytes(self._buffer[end:end + CRC_BYTES], "big"):
                self.bad_crc += 1
                del self._buffer[:1]
                continue
            command, tag, status = self._buffer[1:4]
            replies.append(Reply(command, tag, status, bytes(self._buffer[REPLY_HEADER_BYTES:end])))
            del self._buffer[:end + CRC_BYTES]
        return replies

    @property
    def pending(self) -> int:
        """Bytes held: the start of a reply not yet complete."""
        return len(self._buffer)

    def wanted(self) -> int:
        """Bytes that would complete the reply being received, as far as its header tells (at least 1)."""
        if len(self._buffer) < REPLY_HEADER_BYTES:
            return REPLY_HEADER_BYTES + CRC_BYTES - len(self._buffer)
        length = int.from_bytes(self._buffer[4:6], "little")
        return max(1, REPLY_HEADER_BYTES + length + CRC_BYTES - len(self._buffer))

    def resync(self) -> None:
        """Give up the reply being received (it will not complete): hunt again from the byte after its sync."""
        if self._buffer:
            del self._buffer[:1]
            self.feed(b"")


@dataclasses.dataclass(frozen=True)
class LinkStatus:
    """A STATUS reply: protocol version, the build's clocks per bit, the cycle counter, the link's counters."""
    version: int
    clocks_per_bit: int
    cycle: int
    requests_ok: int
    bad_crc: int
    truncated: int
    framing_errors: int
    unknown_commands: int
    bad_length: int
    skipped_bytes: int
    frames_injected: int
    tx_captured: int
    tx_dropped: int

    @classmethod
    def decode(cls, payload: bytes) -> "LinkStatus":
        if len(payload) != STATUS_PAYLOAD_BYTES:
            raise BoardLinkError(f"STATUS reply has {len(payload)} payload bytes, not {STATUS_PAYLOAD_BYTES}")
        counters = [int.from_bytes(payload[13 + 4 * i:17 + 4 * i], "little") for i in range(len(COUNTERS))]
        return cls(payload[0], int.from_bytes(payload[1:5], "little"), int.from_bytes(payload[5:13], "little"),
                   *counters)

    @property
    def counters(self) -> dict[str, int]:
        """The link's counters by name, in the order the reply gives them."""
        return {name: getattr(self, name) for name in COUNTERS}


class CapturedFrame(NamedTuple):
    """A frame that left the pipeline's ``tx``: the cycle its first beat was accepted, its last beat's
    ``err`` (an aborted frame), its bytes."""
    stamp: int
    err: bool
    frame: bytes


class BoardLinkClient:
    """Requests to a board link over ``transport``, one at a time, each awaited by its tag.

    Parameters
    ----------
    transport
        Has ``write(bytes)`` and ``read(n) -> bytes``; ``read`` returns what
        came (possibly nothing) within a short time of its own, as pyserial's
        ``Serial`` with a ``timeout`` does.
    timeout : float
        Seconds without a byte of the awaited reply after which it is taken
        as lost.
    retries : int
        How many times a request is sent again: after a reply saying it was
        not acted on (bad CRC, busy), and for the commands in
        ``IDEMPOTENT_COMMANDS`` after a lost reply. INJECT and TX_READ are
        not repeated after a lost reply (the frame may have gone into the
        pipeline, or out of the capture): that is an error.
    clock
        Seconds, for the timeout (``time.monotonic``; a simulation passes its
        own time).
    """

    def __init__(self, transport, *, timeout: float = 1.0, retries: int = 2, clock=time.monotonic):
        if timeout <= 0:
            raise ValueError(f"timeout must be positive, not {timeout}")
        if retries < 0:
            raise ValueError(f"retries must be 0 or more, not {retries}")
        self.transport = transport
        self.timeout = timeout
        self.retries = retries
        self.clock = clock
        self.parser = ReplyParser()
        self.stale = 0            # replies that came with another tag than the one awaited, dropped
        self.lost = 0             # replies taken as lost (timeouts)
        self._tag = 0

    def _next_tag(self) -> int:
        self._tag = (self._tag + 1) & 0xFF
        return self._tag

    def request(self, command, payload: bytes = b"", *, retry_lost: bool | None = None) -> Reply:
        """Send a request and return its successful reply; ``BoardLinkError`` otherwise.

        ``retry_lost``: whether a lost reply may be answered by sending the
        request again (by default, for ``IDEMPOTENT_COMMANDS`` only).
        """
        code = _code(command)
        name = _name(Command, code)
        if retry_lost is None:
            retry_lost = code in {c.value for c in IDEMPOTENT_COMMANDS}
        problem = None
        for _attempt in range(1 + self.retries):
            tag = self._next_tag()
            self.transport.write(encode_request(code, tag, payload))
            reply = self._await(tag)
            if reply is None:
                self.lost += 1
                problem = f"no reply within {self.timeout} s"
                if not retry_lost:
                    raise BoardLinkError(f"{name} (tag {tag}): {problem}; not sent again, as it may have "
                                         f"been carried out")
                continue
            if reply.command != code:
                raise BoardLinkError(f"{name} (tag {tag}): the reply is for command {_name(Command, reply.command)}")
            if reply.status == Status.OK.value:
                return reply
            problem = f"the board answered {reply.status_name}"
            if reply.status not in _NOT_ACTED_ON:
                raise BoardLinkError(f"{name} (tag {tag}): {problem}")
        raise BoardLinkError(f"{name}: no good reply after {1 + self.retries} attempts (last: {problem})")

    def _await(self, tag: int) -> Reply | None:
        """The reply with ``tag``, dropping others; None when none comes in time."""
        deadline = self.clock() + self.timeout
        received = 0
        limit = 2 * (REPLY_HEADER_BYTES + MAX_PAYLOAD + CRC_BYTES)
        while True:
            data = self.transport.read(self.parser.wanted())
            if data:
                received += len(data)
                deadline = self.clock() + self.timeout
                for reply in self.parser.feed(data):
                    if reply.tag == tag:
                        return reply
                    self.stale += 1
                if received > limit:
                    return None
            elif self.clock() >= deadline:
                self.parser.resync()
                return None

    # --- the commands ---------------------------------------------------------------------------

    def read_registers(self, address: int, count: int) -> list[int]:
        """Words ``address`` .. ``address + count - 1``, in requests of at most 64 words."""
        _check_range(address, count)
        words = []
        for start in range(address, address + count, MAX_WORDS):
            n = min(MAX_WORDS, address + count - start)
            reply = self.request(Command.READ, start.to_bytes(2, "little") + bytes([n]))
            if len(reply.payload) != 4 * n:
                raise BoardLinkError(f"READ of {n} words at {start}: {len(reply.payload)} payload bytes")
            words += [int.from_bytes(reply.payload[4 * i:4 * i + 4], "little") for i in range(n)]
        return words

    def write_registers(self, address: int, words, *, retry_lost: bool = True) -> None:
        """Write ``words`` to ``address`` and up, in requests of at most 64 words.

        A WRITE whose reply is lost is sent again; pass ``retry_lost=False``
        when writing a strobe whose effect adds up (writing it twice is not
        the same as once).
        """
        words = list(words)
        _check_range(address, len(words))
        for value in words:
            if not 0 <= value < 1 << 32:
                raise ValueError(f"a register word must be 0 .. 2**32 - 1, not {value}")
        for offset in range(0, len(words), MAX_WORDS):
            chunk = words[offset:offset + MAX_WORDS]
            payload = (address + offset).to_bytes(2, "little") + b"".join(w.to_bytes(4, "little") for w in chunk)
            self.request(Command.WRITE, payload, retry_lost=retry_lost)

    def inject(self, frame: bytes, err: bool = False) -> int:
        """Send ``frame`` into the pipeline's ``rx`` (``err`` on its last beat); the cycle of its first beat."""
        if not 1 <= len(frame) <= MAX_PAYLOAD - 1:
            raise ValueError(f"a frame must have 1 .. {MAX_PAYLOAD - 1} bytes, not {len(frame)}")
        reply = self.request(Command.INJECT, bytes([int(bool(err))]) + bytes(frame))
        if len(reply.payload) != INJECT_REPLY_BYTES:
            raise BoardLinkError(f"INJECT reply has {len(reply.payload)} payload bytes, not {INJECT_REPLY_BYTES}")
        return int.from_bytes(reply.payload, "little")

    def read_tx(self) -> CapturedFrame | None:
        """The oldest captured ``tx`` frame not yet read, or None when none is waiting."""
        reply = self.request(Command.TX_READ)
        if not reply.payload:
            return None
        if len(reply.payload) <= TX_READ_HEADER_BYTES:
            raise BoardLinkError(f"TX_READ reply has {len(reply.payload)} payload bytes: no frame after the "
                                 f"stamp and flags")
        return CapturedFrame(int.from_bytes(reply.payload[:8], "little"), bool(reply.payload[8] & 1),
                             reply.payload[TX_READ_HEADER_BYTES:])

    def status(self) -> LinkStatus:
        """The link's version, build, cycle counter and counters."""
        return LinkStatus.decode(self.request(Command.STATUS).payload)


def _check_range(address: int, count: int) -> None:
    if count < 0 or address < 0 or address + count > 1 << 16:
        raise ValueError(f"registers {address} .. {address + count - 1} are outside the 16-bit address space")
