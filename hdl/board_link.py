"""The board link: the host's framed requests over a UART, bridged to the register bus and the beat streams.

docs/board-link.md is the contract (the protocol byte for byte, and why it is
shaped so); ``host/board_link.py`` is the host's side of it. In short: the
host sends ``0x5A | command | tag | length (2, LE) | payload | crc (2, BE)``
and gets back ``0xA5 | command | tag | status | length (2, LE) | payload |
crc (2, BE)``, CRC-16/CCITT-FALSE over everything after the sync byte. The
commands read and write registers (this link is the master of a
``RegisterBus``), inject a frame into the pipeline's ``rx`` at line rate, read
back the frames that left its ``tx`` with their cycle stamps, and report the
link's own counters.

Three parts, each byte-serial, which keeps the logic small (an iCE40 UP5K
holds it next to a reduced pipeline):

- the request receiver hunts for the sync byte, checks the header as it
  arrives, keeps the arguments, writes the payload of WRITE and INJECT into
  the request buffer (block RAM, 64-bit words, byte enables), checks the CRC
  and hands the request over with its status;
- the reply engine acts on a request (register writes, injection), then sends
  the reply, loading its payload a field at a time (a register word, a
  counter, a stamp, a captured beat) into one 64-bit shift register that the
  UART transmitter empties a byte at a time;
- the capture keeps ``tx.ready`` high and writes every frame leaving ``tx``
  into a ring of beats (block RAM), with a descriptor (stamp, length, err) per
  whole frame that fitted.
"""

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import data, enum, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .csr import READ_LATENCY, REGISTER_WIDTH, RegisterBus
from .stream import BEAT_BYTES, Beat, rx_stream
from .uart import BITS_PER_BYTE, UartRx, UartTx, check_clocks_per_bit

__all__ = ["BoardLink", "Command", "Status", "LinkEvents", "RequestHeader", "ReplyHeader", "TxDescriptor",
           "RequestState", "ReplyState", "REQUEST_SYNC", "REPLY_SYNC", "PROTOCOL_VERSION", "MAX_WORDS",
           "MAX_FRAME", "DEFAULT_TIMEOUT_BITS", "TX_DESCRIPTORS", "COUNTERS", "STATUS_PAYLOAD_BYTES",
           "TX_READ_HEADER_BYTES", "INJECT_REPLY_BYTES", "crc16_step"]

#: First byte of every request.
REQUEST_SYNC = 0x5A
#: First byte of every reply.
REPLY_SYNC = 0xA5
#: The first byte of a STATUS reply's payload.
PROTOCOL_VERSION = 1
#: Register words one READ or WRITE moves at most.
MAX_WORDS = 64
#: Frame bytes one INJECT carries at most, and the capture ring's size (the default build).
MAX_FRAME = 2048
#: Bit times a request may stall mid-frame before it is dropped (the default build).
DEFAULT_TIMEOUT_BITS = 1024
#: Captured frames whose descriptors wait to be read at most.
TX_DESCRIPTORS = 16
#: The link's counters, in the order a STATUS reply gives them.
COUNTERS = ("requests_ok", "bad_crc", "truncated", "framing_errors", "unknown_commands", "bad_length",
            "skipped_bytes", "frames_injected", "tx_captured", "tx_dropped")
#: STATUS reply payload: version (1), clocks_per_bit (4), cycle counter (8), the counters (4 each).
STATUS_PAYLOAD_BYTES = 1 + 4 + 8 + 4 * len(COUNTERS)
#: TX_READ reply payload ahead of the frame bytes: stamp (8), flags (1).
TX_READ_HEADER_BYTES = 9
#: INJECT reply payload: the stamp of the frame's first beat.
INJECT_REPLY_BYTES = 8
#: The CRC-16/CCITT-FALSE polynomial.
_CRC_POLY = 0x1021
#: The write-payload bytes one WRITE can need in the request buffer.
_WRITE_BUFFER_BYTES = MAX_WORDS * REGISTER_WIDTH // 8


class Command(enum.Enum, shape=8):
    """Request commands."""
    READ = 0x01      # address (2), count (1): count words back
    WRITE = 0x02     # address (2), 1..64 words (4 each): written
    INJECT = 0x03    # flags (1; bit 0 err), frame: sent into rx; its first beat's stamp back
    TX_READ = 0x04   # (nothing): the oldest captured tx frame, or nothing
    STATUS = 0x05    # (nothing): version, clocks_per_bit, cycle counter, the link's counters


class Status(enum.Enum, shape=8):
    """Reply status: 0 is success; a request with any other status was not acted on."""
    OK = 0
    UNKNOWN_COMMAND = 1
    BAD_LENGTH = 2   # a length, a count or an address range out of bounds
    BAD_CRC = 3
    BUSY = 4         # the request buffer is still being read out for the previous request


class RequestHeader(data.Struct):
    """A request's header bytes after the sync byte, in the order they arrive."""
    command: 8
    tag: 8
    length: 16


class ReplyHeader(data.Struct):
    """A reply's header bytes after the sync byte, in the order they leave."""
    command: 8
    tag: 8
    status: Status
    length: 16


class TxDescriptor(data.Struct):
    """One captured tx frame: its beats are in the ring, in order, from where the previous one ended."""
    stamp: 64    # the cycle its first beat was accepted
    length: 15   # bytes: 8 per beat, up to the highest kept lane of the last beat (at least 1)
    err: 1       # err on its last beat


class LinkEvents(data.Struct):
    """The increments of the link's counters in one cycle (``COUNTERS``, in that order)."""
    requests_ok: 1
    bad_crc: 1
    truncated: 1
    framing_errors: 1
    unknown_commands: 1
    bad_length: 1
    skipped_bytes: 1
    frames_injected: 1
    tx_captured: 1
    tx_dropped: 2    # a frame not captured, and an unfinished one given up, in the same cycle


class RequestState(enum.Enum, shape=3):
    """Where the request receiver is."""
    HUNT = 0      # skipping bytes up to a sync byte
    HEADER = 1    # command, tag, length
    PAYLOAD = 2
    CRC = 3       # the two CRC bytes
    WAIT = 4      # a complete request waits for the reply engine; bytes arriving now are skipped


class ReplyState(enum.Enum, shape=3):
    """Where the reply engine is."""
    IDLE = 0
    WRITE = 1     # writing the request buffer's words to registers, two cycles each
    INJECT = 2    # sending the request buffer's beats into rx, one per cycle
    HEADER = 3    # sync byte and header
    PAYLOAD = 4   # bytes of the field in the shift register
    FETCH = 5     # loading the next payload field into the shift register
    CRC = 6


def _crc16_equations():
    """For each bit of the CRC register after one byte: the register bits and byte bits it is the XOR of.

    Worked out once, symbolically (a set of terms per bit, XOR being symmetric
    difference), so that the gateware is one flat XOR per bit rather than
    eight chained steps.
    """
    register = [{("crc", i)} for i in range(16)]
    for i in reversed(range(8)):   # the byte's most significant bit first
        feedback = register[15] ^ {("byte", i)}
        register = [set()] + register[:15]
        register = [bit ^ feedback if _CRC_POLY >> n & 1 else bit for n, bit in enumerate(register)]
    return [sorted(bit) for bit in register]


_CRC16_EQUATIONS = _crc16_equations()


def crc16_step(crc, byte):
    """The CRC-16/CCITT-FALSE register after ``byte`` (8 bits, most significant first) from ``crc``."""
    sources = {"crc": crc, "byte": byte}
    bits = []
    for terms in _CRC16_EQUATIONS:
        bit = Const(0, 1)
        for source, index in terms:
            bit = bit ^ sources[source][index]
        bits.append(bit)
    return Cat(*bits)


def _lanes_mask(last_lane):
    """``keep`` of a beat whose lanes 0 .. ``last_lane`` (3 bits) are kept."""
    return Cat(*[last_lane >= lane for lane in range(BEAT_BYTES)])


def _highest_lane_count(m, keep, name):
    """Lanes up to the highest kept one of ``keep`` (1..8; 1 when none is kept), as a signal."""
    count = Signal(4, name=name)
    m.d.comb += count.eq(1)
    for lane in range(1, BEAT_BYTES):
        with m.If(keep[lane]):
            m.d.comb += count.eq(lane + 1)
    return count


class BoardLink(wiring.Component):
    """The host's requests over a UART, bridged to registers, ``rx`` and ``tx``.

    Parameters
    ----------
    clocks_per_bit : int
        Clock cycles per UART bit (4 or more): the baud rate is the clock
        divided by it.
    timeout_bits : int
        Bit times a request may stall between two of its bytes before it is
        dropped and counted as truncated (20 or more).
    max_frame : int
        The longest frame INJECT takes, and the size in bytes of the capture
        ring for ``tx`` frames: a power of two, 64 .. 16384.
    address_width : int
        Of the register bus.

    Interface attributes
    --------------------
    uart_rx : In(1)
        The UART line from the host (idle high); asynchronous.
    uart_tx : Out(1)
        The UART line to the host.
    csr : Out(RegisterBus)
        This link is the bus master: READ and WRITE requests go out on it.
    rx : Out(beat stream)
        Injected frames, as from a MAC: beats on consecutive cycles, ``keep``
        all ones but on the last beat, where it runs from lane 0.
    tx : In(beat stream with ready)
        Frames to capture; ``ready`` is always high. ``keep`` is taken to run
        from lane 0 on a frame's last beat and to be all ones before it.
    """

    def __init__(self, *, clocks_per_bit, timeout_bits=DEFAULT_TIMEOUT_BITS, max_frame=MAX_FRAME,
                 address_width=8):
        check_clocks_per_bit(clocks_per_bit)
        if not isinstance(timeout_bits, int) or timeout_bits < 2 * BITS_PER_BYTE:
            raise ValueError(f"timeout_bits must be an integer of at least {2 * BITS_PER_BYTE} "
                             f"(two bytes' time), not {timeout_bits!r}")
        if not isinstance(max_frame, int) or max_frame not in [1 << n for n in range(6, 15)]:
            raise ValueError(f"max_frame must be a power of two from 64 to 16384, not {max_frame!r}")
        self.clocks_per_bit = clocks_per_bit
        self.timeout_bits = timeout_bits
        self.max_frame = max_frame
        self.address_width = address_width
        super().__init__({
            "uart_rx": In(1, init=1),
            "uart_tx": Out(1, init=1),
            "csr": Out(RegisterBus(address_width)),
            "rx": Out(rx_stream()),
            "tx": In(stream.Signature(Beat)),
        })

    def elaborate(self, platform):
        m = Module()
        cpb = self.clocks_per_bit
        max_frame = self.max_frame
        m.submodules.uart_rx = uart_rx = UartRx(cpb)
        m.submodules.uart_tx = uart_tx = UartTx(cpb)
        m.d.comb += [uart_rx.pin.eq(self.uart_rx), self.uart_tx.eq(uart_tx.pin)]

        # The cycle counter: the same count from reset as the pipeline's own stamps.
        cycle = Signal(64)
        m.d.sync += cycle.eq(cycle + 1)

        events = Signal(LinkEvents)

        # The request buffer: INJECT frames and WRITE words, written a byte at a time.
        buffer_words = max(max_frame, _WRITE_BUFFER_BYTES) // BEAT_BYTES
        m.submodules.request_buffer = request_buffer = Memory(shape=64, depth=buffer_words, init=[])
        buffer_write = request_buffer.write_port(granularity=8)
        buffer_read = request_buffer.read_port()

        # The capture ring and its descriptors.
        ring_words = max_frame // BEAT_BYTES
        m.submodules.tx_ring = tx_ring = Memory(shape=64, depth=ring_words, init=[])
        ring_write = tx_ring.write_port()
        ring_read = tx_ring.read_port()
        m.submodules.tx_descriptors = tx_descriptors = Memory(shape=TxDescriptor, depth=TX_DESCRIPTORS, init=[])
        descriptor_write = tx_descriptors.write_port()
        descriptor_read = tx_descriptors.read_port()

        # Shared between the parts: the reply engine's state (the receiver must not fill the
        # buffer while the engine reads it out), the ring's read pointer (the capture needs it
        # for the free space) and the descriptors' pointers.
        reply_state = Signal(ReplyState)
        ring_read_ptr = Signal(range(2 * ring_words))
        descriptor_read_ptr = Signal(range(2 * TX_DESCRIPTORS))
        descriptors_visible = Signal(range(2 * TX_DESCRIPTORS))   # written and readable: the read side's end

        take = Signal()   # the reply engine takes the receiver's complete request in this cycle
        request = Signal(RequestHeader)
        verdict = Signal(Status)
        arg_address = Signal(16)
        arg_count = Signal(7)     # READ count, or WRITE words
        arg_err = Signal()        # INJECT flags bit 0
        store_pos = Signal(range(buffer_words * BEAT_BYTES + 1))

        self._receiver(m, uart_rx, events, buffer_write, reply_state, take, request, verdict, arg_address,
                       arg_count, arg_err, store_pos)
        self._engine(m, uart_tx, events, cycle, buffer_read, ring_read, ring_read_ptr, descriptor_read,
                     descriptor_read_ptr, descriptors_visible, reply_state, take, request, verdict,
                     arg_address, arg_count, arg_err, store_pos)
        self._capture(m, events, cycle, ring_write, ring_read_ptr, ring_words, descriptor_write,
                      descriptor_read_ptr, descriptors_visible)
        return m

    # --- the request receiver ------------------------------------------------------------------

    def _receiver(self, m, uart_rx, events, buffer_write, reply_state, take, request, verdict, arg_address,
                  arg_count, arg_err, store_pos):
        byte = uart_rx.data.payload
        got = uart_rx.data.valid
        state = Signal(RequestState)
        index = Signal(2)     # header byte, payload byte (saturating at 3) or CRC byte
        left = Signal(16)     # payload bytes still to come
        crc = Signal(16)
        crc_next = Signal(16)
        m.d.comb += crc_next.eq(crc16_step(crc, byte))

        # Bit times since the last byte (or framing error), in cycles, saturating at the timeout.
        limit = self.timeout_bits * self.clocks_per_bit
        quiet = Signal(range(limit + 1))
        with m.If(got | uart_rx.framing_error):
            m.d.sync += quiet.eq(0)
        with m.Elif(quiet != limit):
            m.d.sync += quiet.eq(quiet + 1)

        in_request = Signal()
        m.d.comb += in_request.eq((state == RequestState.HEADER) | (state == RequestState.PAYLOAD)
                                  | (state == RequestState.CRC))
        m.d.comb += events.framing_errors.eq(uart_rx.framing_error)

        command = request.command
        is_read, is_write, is_inject = (command == Command.READ), (command == Command.WRITE), \
            (command == Command.INJECT)

        with m.If(in_request & uart_rx.framing_error):
            m.d.sync += state.eq(RequestState.HUNT)
        with m.Elif(in_request & (quiet == limit)):
            m.d.sync += state.eq(RequestState.HUNT)
            m.d.comb += events.truncated.eq(1)
        with m.Elif(got):
            with m.Switch(state):
                with m.Case(RequestState.HUNT):
                    with m.If(byte == REQUEST_SYNC):
                        m.d.sync += [state.eq(RequestState.HEADER), index.eq(0), crc.eq(0xFFFF)]
                    with m.Else():
                        m.d.comb += events.skipped_bytes.eq(1)

                with m.Case(RequestState.HEADER):
                    m.d.sync += [crc.eq(crc_next), index.eq(index + 1),
                                 request.as_value().word_select(index, 8).eq(byte)]
                    with m.If(index == 3):
                        length = Cat(request.length[:8], byte)
                        self._check_header(m, request, length, reply_state, verdict)
                        m.d.sync += [left.eq(length), store_pos.eq(0), index.eq(0)]
                        with m.If(is_write):
                            m.d.sync += arg_count.eq(length[2:9])   # (length - 2) / 4, when the length is right
                        with m.If(length == 0):
                            m.d.sync += state.eq(RequestState.CRC)
                        with m.Else():
                            m.d.sync += state.eq(RequestState.PAYLOAD)

                with m.Case(RequestState.PAYLOAD):
                    m.d.sync += [crc.eq(crc_next), left.eq(left - 1)]
                    with m.If(index != 3):
                        m.d.sync += index.eq(index + 1)
                    with m.If((is_read | is_write) & (index == 0)):
                        m.d.sync += arg_address[:8].eq(byte)
                    with m.If((is_read | is_write) & (index == 1)):
                        m.d.sync += arg_address[8:].eq(byte)
                    with m.If(is_read & (index == 2)):
                        m.d.sync += arg_count.eq(byte)
                        with m.If((byte == 0) | (byte > MAX_WORDS)):
                            m.d.sync += verdict.eq(Status.BAD_LENGTH)
                    with m.If(is_inject & (index == 0)):
                        m.d.sync += arg_err.eq(byte[0])
                    store = Signal()
                    m.d.comb += store.eq((verdict == Status.OK)
                                         & ((is_write & (index >= 2)) | (is_inject & (index >= 1))))
                    with m.If(store):
                        m.d.comb += [
                            buffer_write.addr.eq(store_pos[3:]),
                            buffer_write.en.eq(1 << store_pos[:3]),
                            buffer_write.data.eq(byte.replicate(BEAT_BYTES)),
                        ]
                        m.d.sync += store_pos.eq(store_pos + 1)
                    with m.If(left == 1):
                        m.d.sync += [state.eq(RequestState.CRC), index.eq(0)]

                with m.Case(RequestState.CRC):
                    m.d.sync += [crc.eq(crc_next), index.eq(index + 1)]
                    with m.If(index == 1):
                        # The CRC run over its own (big-endian) bytes leaves 0 when they are right.
                        # A READ or WRITE must stay inside the bus's address space.
                        out_of_range = (is_read | is_write) & \
                            ((arg_address + arg_count) > (1 << self.address_width))
                        final = Signal(Status)
                        with m.If(crc_next != 0):
                            m.d.comb += final.eq(Status.BAD_CRC)
                        with m.Elif((verdict == Status.OK) & out_of_range):
                            m.d.comb += final.eq(Status.BAD_LENGTH)
                        with m.Else():
                            m.d.comb += final.eq(verdict)
                        m.d.sync += [verdict.eq(final), state.eq(RequestState.WAIT)]
                        m.d.comb += [
                            events.requests_ok.eq(final == Status.OK),
                            events.bad_crc.eq(final == Status.BAD_CRC),
                            events.unknown_commands.eq(final == Status.UNKNOWN_COMMAND),
                            events.bad_length.eq(final == Status.BAD_LENGTH),
                        ]

                with m.Case(RequestState.WAIT):
                    m.d.comb += events.skipped_bytes.eq(1)

        with m.If(take):
            m.d.sync += state.eq(RequestState.HUNT)
        m.d.comb += take.eq((state == RequestState.WAIT) & (reply_state == ReplyState.IDLE))

    def _check_header(self, m, request, length, reply_state, verdict):
        """Set ``verdict`` from a request's command and length, as the length's last byte arrives."""
        known = Signal()
        length_ok = Signal()
        uses_buffer = Signal()
        with m.Switch(request.command):
            with m.Case(Command.READ):
                m.d.comb += [known.eq(1), length_ok.eq(length == 3)]
            with m.Case(Command.WRITE):
                m.d.comb += [known.eq(1), uses_buffer.eq(1),
                             length_ok.eq((length >= 2 + 4) & (length <= 2 + 4 * MAX_WORDS) & (length[:2] == 2))]
            with m.Case(Command.INJECT):
                m.d.comb += [known.eq(1), uses_buffer.eq(1),
                             length_ok.eq((length >= 2) & (length <= 1 + self.max_frame))]
            with m.Case(Command.TX_READ, Command.STATUS):
                m.d.comb += [known.eq(1), length_ok.eq(length == 0)]
        buffer_in_use = (reply_state == ReplyState.WRITE) | (reply_state == ReplyState.INJECT)
        with m.If(~known):
            m.d.sync += verdict.eq(Status.UNKNOWN_COMMAND)
        with m.Elif(~length_ok):
            m.d.sync += verdict.eq(Status.BAD_LENGTH)
        with m.Elif(uses_buffer & buffer_in_use):
            m.d.sync += verdict.eq(Status.BUSY)
        with m.Else():
            m.d.sync += verdict.eq(Status.OK)

    # --- the reply engine ----------------------------------------------------------------------

    def _engine(self, m, uart_tx, events, cycle, buffer_read, ring_read, ring_read_ptr, descriptor_read,
                descriptor_read_ptr, descriptors_visible, state, take, request, verdict, arg_address, arg_count,
                arg_err, store_pos):
        reply = Signal(ReplyHeader)         # its length counts the payload down once the header is out
        address = Signal(16)                # READ / WRITE: the next register
        count = Signal(7)                   # WRITE: words still to write
        err = Signal()                      # INJECT: err on the last beat
        inject_last = Signal(range(self.max_frame))   # INJECT: the frame's last byte
        buffer_addr = Signal.like(buffer_read.addr)
        half = Signal()                     # WRITE: the upper word of the buffer's 64 bits is next
        primed = Signal()                   # WRITE: the buffer's word is on its read port
        settle = Signal(range(READ_LATENCY + 1))   # cycles until r_data is the word at `address`
        shift = Signal(64)                  # the payload field being sent, next byte in bits 7..0
        field_left = Signal(range(9))       # its bytes not yet sent
        field_index = Signal(4)             # payload fields fetched so far (saturating)
        index = Signal(3)                   # header or CRC byte
        crc = Signal(16)
        counters = [Signal(32, name=f"count_{name}") for name in COUNTERS]
        for name, counter in zip(COUNTERS, counters):
            m.d.sync += counter.eq(counter + getattr(events, name))

        m.d.comb += [
            self.csr.addr.eq(address),
            buffer_read.addr.eq(buffer_addr),
            ring_read.addr.eq(ring_read_ptr),
            descriptor_read.addr.eq(descriptor_read_ptr),
        ]
        with m.If(settle != 0):
            m.d.sync += settle.eq(settle - 1)

        frame_waiting = descriptor_read_ptr != descriptors_visible
        descriptor = descriptor_read.data
        ok = verdict == Status.OK
        with m.If(take):
            m.d.sync += [
                reply.command.eq(request.command), reply.tag.eq(request.tag), reply.status.eq(verdict),
                reply.length.eq(0),
                address.eq(arg_address), settle.eq(READ_LATENCY), count.eq(arg_count), err.eq(arg_err),
                inject_last.eq(store_pos - 1), buffer_addr.eq(0), half.eq(0), primed.eq(0),
                field_left.eq(0), field_index.eq(0), index.eq(0),
                state.eq(ReplyState.HEADER),
            ]
            with m.If(ok):
                with m.Switch(request.command):
                    with m.Case(Command.READ):
                        m.d.sync += reply.length.eq(arg_count * 4)
                    with m.Case(Command.WRITE):
                        m.d.sync += state.eq(ReplyState.WRITE)
                    with m.Case(Command.INJECT):
                        m.d.sync += [reply.length.eq(INJECT_REPLY_BYTES), state.eq(ReplyState.INJECT)]
                    with m.Case(Command.TX_READ):
                        with m.If(frame_waiting):
                            m.d.sync += reply.length.eq(descriptor.length + TX_READ_HEADER_BYTES)
                    with m.Case(Command.STATUS):
                        m.d.sync += reply.length.eq(STATUS_PAYLOAD_BYTES)

        # WRITE: two cycles a word (the buffer's read port, then the bus).
        with m.If(state == ReplyState.WRITE):
            m.d.sync += primed.eq(~primed)
            with m.If(primed):
                m.d.comb += [self.csr.w_en.eq(1),
                             self.csr.w_data.eq(buffer_read.data.word_select(half, REGISTER_WIDTH))]
                m.d.sync += [address.eq(address + 1), settle.eq(READ_LATENCY), half.eq(~half),
                             buffer_addr.eq(buffer_addr + half), count.eq(count - 1)]
                with m.If(count == 1):
                    m.d.sync += state.eq(ReplyState.HEADER)

        # INJECT: a buffer word is read in each cycle and is the beat at rx in the next one.
        beat_valid = Signal()
        beat_first = Signal()
        beat_last = Signal()
        m.d.sync += beat_valid.eq(0)
        with m.If(state == ReplyState.INJECT):
            last_word = buffer_addr == inject_last[3:]
            m.d.sync += [beat_valid.eq(1), beat_first.eq(buffer_addr == 0), beat_last.eq(last_word),
                         buffer_addr.eq(buffer_addr + 1)]
            with m.If(last_word):
                m.d.sync += state.eq(ReplyState.HEADER)
        m.d.comb += [
            self.rx.valid.eq(beat_valid),
            self.rx.p.data.eq(buffer_read.data),
            self.rx.p.keep.eq(Mux(beat_last, _lanes_mask(inject_last[:3]), 0xFF)),
            self.rx.p.first.eq(beat_first),
            self.rx.p.last.eq(beat_last),
            self.rx.p.err.eq(beat_last & err),
        ]
        with m.If(beat_valid & beat_first):
            # The reply's payload is this stamp; nothing else uses the shift register until then.
            m.d.sync += [shift.eq(cycle), field_left.eq(INJECT_REPLY_BYTES)]
            m.d.comb += events.frames_injected.eq(1)

        # The reply's bytes, into the UART transmitter.
        header_byte = Signal(8)
        m.d.comb += header_byte.eq(Cat(Const(REPLY_SYNC, 8), reply.as_value()).word_select(index, 8))
        send = uart_tx.data.valid & uart_tx.data.ready
        crc_next = crc16_step(crc, uart_tx.data.payload)
        with m.Switch(state):
            with m.Case(ReplyState.HEADER):
                m.d.comb += [uart_tx.data.valid.eq(1),
                             uart_tx.data.payload.eq(header_byte)]
                with m.If(send):
                    m.d.sync += [index.eq(index + 1), crc.eq(Mux(index == 0, 0xFFFF, crc_next))]
                    with m.If(index == 5):
                        m.d.sync += index.eq(0)
                        with m.If(reply.length == 0):
                            m.d.sync += state.eq(ReplyState.CRC)
                        with m.Else():
                            m.d.sync += state.eq(ReplyState.PAYLOAD)

            with m.Case(ReplyState.PAYLOAD):
                with m.If(field_left == 0):
                    m.d.sync += state.eq(ReplyState.FETCH)
                with m.Else():
                    m.d.comb += [uart_tx.data.valid.eq(1), uart_tx.data.payload.eq(shift[:8])]
                with m.If(send):
                    m.d.sync += [crc.eq(crc_next), shift.eq(shift >> 8), field_left.eq(field_left - 1),
                                 reply.length.eq(reply.length - 1)]
                    with m.If(reply.length == 1):
                        m.d.sync += state.eq(ReplyState.CRC)
                        with m.If(reply.command == Command.TX_READ):
                            # The frame is out: its descriptor goes (the ring's words went as they were read).
                            m.d.sync += descriptor_read_ptr.eq(descriptor_read_ptr + 1)

            with m.Case(ReplyState.FETCH):
                self._fetch(m, reply, shift, field_left, field_index, address, settle, cycle, counters,
                            descriptor, ring_read, ring_read_ptr, state)

            with m.Case(ReplyState.CRC):
                m.d.comb += [uart_tx.data.valid.eq(1), uart_tx.data.payload.eq(crc[8:])]
                with m.If(send):
                    m.d.sync += [crc.eq(crc << 8), index.eq(index + 1)]
                    with m.If(index == 1):
                        m.d.sync += state.eq(ReplyState.IDLE)

    def _fetch(self, m, reply, shift, field_left, field_index, address, settle, cycle, counters, descriptor,
               ring_read, ring_read_ptr, state):
        """Load the reply's next payload field into ``shift`` (one cycle; a READ waits for ``r_data``)."""
        def load(value, size):
            m.d.sync += [shift.eq(value), field_left.eq(size), state.eq(ReplyState.PAYLOAD)]
            with m.If(field_index != 15):
                m.d.sync += field_index.eq(field_index + 1)

        with m.Switch(reply.command):
            with m.Case(Command.READ):
                with m.If(settle == 0):
                    load(self.csr.r_data, 4)
                    m.d.sync += [address.eq(address + 1), settle.eq(READ_LATENCY)]
            with m.Case(Command.STATUS):
                with m.Switch(field_index):
                    with m.Case(0):
                        load(PROTOCOL_VERSION, 1)
                    with m.Case(1):
                        load(self.clocks_per_bit, 4)
                    with m.Case(2):
                        load(cycle, 8)
                    for number, counter in enumerate(counters):
                        with m.Case(3 + number):
                            load(counter, 4)
                    with m.Default():
                        load(0, 8)
            with m.Case(Command.TX_READ):
                with m.Switch(field_index):
                    with m.Case(0):
                        load(descriptor.stamp, 8)
                    with m.Case(1):
                        load(descriptor.err, 1)
                    with m.Default():
                        load(ring_read.data, 8)
                        m.d.sync += ring_read_ptr.eq(ring_read_ptr + 1)
            with m.Default():
                load(0, 8)   # never: no other reply has payload fields to fetch

    # --- the tx capture ------------------------------------------------------------------------

    def _capture(self, m, events, cycle, ring_write, ring_read_ptr, ring_words, descriptor_write,
                 descriptor_read_ptr, descriptors_visible):
        tx = self.tx
        m.d.comb += tx.ready.eq(1)
        committed = Signal.like(ring_read_ptr)   # where the next frame starts: the end of the last one kept
        write_ptr = Signal.like(ring_read_ptr)   # the next beat of the current frame
        in_frame = Signal()
        dropping = Signal()                      # the current frame did not fit: nothing more of it is kept
        stamp = Signal(64)
        descriptor_ptr = Signal.like(descriptor_read_ptr)   # descriptors claimed
        descriptor_ptr_1 = Signal.like(descriptor_read_ptr)  # a cycle later: the slot being written
        pending = Signal()                       # a descriptor is written in this cycle
        pending_length = Signal(15)
        pending_err = Signal()

        at = Signal.like(write_ptr)              # where this beat goes
        m.d.comb += at.eq(Mux(tx.p.first, committed, write_ptr))
        ring_full = (at - ring_read_ptr)[:len(at)] == ring_words
        beat = tx.valid & (tx.p.first | in_frame)
        fits = beat & ~ring_full & (tx.p.first | ~dropping)
        m.d.comb += [ring_write.addr.eq(at), ring_write.data.eq(tx.p.data), ring_write.en.eq(fits)]

        with m.If(beat):
            m.d.sync += [write_ptr.eq(at + fits), dropping.eq(~fits), in_frame.eq(~tx.p.last)]
            with m.If(tx.p.first):
                m.d.sync += stamp.eq(cycle)
        abandoned = tx.valid & tx.p.first & in_frame     # a frame that never ended, given up
        descriptors_full = (descriptor_ptr - descriptor_read_ptr)[:len(descriptor_ptr)] == TX_DESCRIPTORS
        lanes = _highest_lane_count(m, tx.p.keep, "tx_last_lanes")
        length = Cat(Const(0, 3), (at - committed)[:len(at)]) + lanes
        kept = beat & tx.p.last & fits & ~descriptors_full
        m.d.comb += [
            events.tx_captured.eq(kept),
            events.tx_dropped.eq(abandoned + (beat & tx.p.last & ~kept)),
        ]
        m.d.sync += pending.eq(kept)
        with m.If(kept):
            m.d.sync += [committed.eq(at + 1), descriptor_ptr.eq(descriptor_ptr + 1),
                         pending_length.eq(length), pending_err.eq(tx.p.err)]

        # The descriptor is written a cycle after the last beat (with the stamp register, which a
        # first beat in that cycle only changes after it), and the read side sees it a cycle after
        # that, when the read port (not transparent) can return it.
        m.d.sync += [descriptor_ptr_1.eq(descriptor_ptr), descriptors_visible.eq(descriptor_ptr_1)]
        m.d.comb += [
            descriptor_write.addr.eq(descriptor_ptr_1),
            descriptor_write.en.eq(pending),
            descriptor_write.data.stamp.eq(stamp),
            descriptor_write.data.length.eq(pending_length),
            descriptor_write.data.err.eq(pending_err),
        ]
