# amaranth: UnusedElaboratable=no
"""The board link in the Amaranth simulator, driven by the host's own code over a bit-level UART.

The test side holds a bit-level UART (a driver that puts each byte on the
link's ``uart_rx`` bit by bit, and a decoder of its ``uart_tx`` line) behind a
transport with ``write``/``read`` that runs the simulator as the host waits:
the same ``BoardLinkClient``, ``encode_request`` and ``ReplyParser`` as on a
board. Behind the link: a real ``RegisterBlock`` (config registers and
counters), a monitor of the beats at ``rx`` and a driver of frames into
``tx``; one test has the real ``Pipeline`` behind it. Every reply is checked
against the test's own expectations, CRCs against ``binascii.crc_hqx``.
"""

import binascii
import random
from collections import deque

import pytest
from amaranth.hdl import Module, Signal
from amaranth.lib import wiring
from amaranth.sim import Simulator

from tick2trade.hdl.board_link import (COUNTERS, MAX_FRAME, PROTOCOL_VERSION, REPLY_SYNC, REQUEST_SYNC,
                                       TX_DESCRIPTORS, BoardLink, Command, Status)
from tick2trade.hdl.csr import MAGIC, RegisterBlock
from tick2trade.hdl.stream import BEAT_BYTES
from tick2trade.hdl.uart import BITS_PER_BYTE
from tick2trade.host.board_link import (BoardLinkClient, BoardLinkError, CapturedFrame, LinkStatus, Reply,
                                        ReplyParser, encode_reply, encode_request)

PERIOD = 1e-8
CPB = 4
CHARACTER = BITS_PER_BYTE * CPB          # cycles per byte on the line
CONFIG_WORDS = 70                        # config registers c0 .. c69, one word each, at addresses 1 .. 70


async def ticks(ctx, count):
    """``count`` clock edges. (Not ``tick().repeat``: the background testbenches here are left
    suspended when a test ends, and an async generator suspended inside ``repeat`` complains as it
    is collected.)"""
    for _ in range(count):
        await ctx.tick()


def config_init(i):
    return (0x1000_0001 * (i + 1)) & 0xFFFF_FFFF


def make_block():
    return RegisterBlock(config={f"c{i}": (32, config_init(i)) for i in range(CONFIG_WORDS)},
                         counters={"ticks": 1, "hits": 1})


class Top(wiring.Component):
    """The link, a register block on its bus (its counter ``ticks`` counts cycles), and a cycle counter
    of the test's own."""

    def __init__(self, link, block):
        self.link, self.block = link, block
        self.cycle = Signal(64)
        super().__init__({})

    def elaborate(self, platform):
        m = Module()
        m.submodules.link = self.link
        m.submodules.registers = self.block
        wiring.connect(m, self.link.csr, self.block.bus)
        m.d.comb += self.block.ticks.eq(1)   # counts every cycle
        m.d.sync += self.cycle.eq(self.cycle + 1)
        return m


class PipelineTop(wiring.Component):
    """The link in front of the real pipeline: its bus, rx and tx."""

    def __init__(self, link, pipeline):
        self.link, self.pipeline = link, pipeline
        self.cycle = Signal(64)
        super().__init__({})

    def elaborate(self, platform):
        m = Module()
        m.submodules.link = self.link
        m.submodules.pipeline = self.pipeline
        wiring.connect(m, self.link.csr, self.pipeline.csr)
        wiring.connect(m, self.link.rx, self.pipeline.rx)
        wiring.connect(m, self.pipeline.tx, self.link.tx)
        m.d.sync += self.cycle.eq(self.cycle + 1)
        return m


class LinkBench:
    """The link in the simulator, with the test side's UART, rx monitor and tx driver as background
    testbenches, run forward only when the host side waits (``read``, ``run``).

    It is the host's transport: ``write`` has the UART driver send bytes and
    returns when they are on the line, ``read(n)`` runs the simulation until ``n`` bytes have come from the link
    or ``read_timeout`` cycles have gone by. ``drop(n)`` makes the next ``n``
    bytes from the link vanish (a reply lost on the host side); ``delay(n)``
    holds them back until the host's next write (a late reply).
    """

    def __init__(self, *, max_frame=MAX_FRAME, timeout_bits=1024, pipeline=None, seed=0, read_timeout=4 * CHARACTER):
        self.link = BoardLink(clocks_per_bit=CPB, timeout_bits=timeout_bits, max_frame=max_frame)
        if pipeline is None:
            self.block = make_block()
            self.top = Top(self.link, self.block)
        else:
            self.block = None
            self.top = PipelineTop(self.link, pipeline)
        self.rng = random.Random(seed)
        self.read_timeout = read_timeout
        self.to_board = deque()      # bytes, or ("bad_stop", byte)
        self.from_board = bytearray()
        self.released = bytearray()  # held-back bytes, delivered at the next read
        self._drop = 0
        self._hold = 0
        self._held = bytearray()
        self.rx_beats = []           # (cycle, data, keep, first, last, err) of every beat at rx
        self.tx_queue = deque()      # (idle cycles before, frame, err) to push into tx
        self.tx_sent = []            # (cycle of first beat, frame, err) as pushed
        self.peeks = {}
        self._peek_request = None
        self.cycles = 0
        self.sim = Simulator(self.top)
        self.sim.add_clock(PERIOD)
        for bench in (self._uart_driver, self._uart_monitor, self._rx_monitor, self._tx_driver, self._peeker):
            self.sim.add_testbench(bench, background=True)

    # --- the transport ---

    def write(self, data):
        """Queue ``data`` for the UART driver and run until it is on the line (a blocking write)."""
        if self._held:
            self.released += self._held
            self._held.clear()
        self.to_board.extend(bytes(data))
        while self.to_board:
            self.run(CHARACTER)
        return len(data)

    def read(self, n):
        out = bytearray(self.released[:n])
        del self.released[:len(out)]
        waited = 0
        while len(out) < n and waited < self.read_timeout:
            if not self.from_board:
                self.run(CPB * 5)
                waited += CPB * 5
                continue
            byte = self.from_board.pop(0)
            if self._drop:
                self._drop -= 1
            elif self._hold:
                self._hold -= 1
                self._held.append(byte)
            else:
                out.append(byte)
        return bytes(out)

    def drop(self, n):
        self._drop += n

    def delay(self, n):
        self._hold += n

    def now(self):
        """Seconds of simulated time: the client's clock."""
        return self.cycles * PERIOD

    def run(self, cycles):
        self.cycles += cycles
        self.sim.run_until(self.cycles * PERIOD)

    def client(self, *, timeout_characters=60, retries=2):
        return BoardLinkClient(self, timeout=timeout_characters * CHARACTER * PERIOD, retries=retries,
                               clock=self.now)

    def send_bad_stop(self, byte):
        self.to_board.append(("bad_stop", byte))

    def idle_until_sent(self):
        while self.to_board:
            self.run(CHARACTER)
        self.run(2 * CHARACTER)

    def replies(self, cycles):
        """Run ``cycles`` and parse what the link sent meanwhile (a test reading raw replies)."""
        self.run(cycles)
        parser = ReplyParser()
        replies = parser.feed(bytes(self.from_board))
        self.from_board.clear()
        assert parser.bad_crc == 0 and parser.skipped == 0 and parser.pending == 0
        return replies

    def peek(self, signals):
        """The values of ``signals`` (name -> signal) a few cycles from now."""
        self._peek_request = signals
        self.run(32)
        assert self._peek_request is None
        return self.peeks

    # --- the test side's testbenches ---

    # Rising clock edges are at PERIOD / 2 + k * PERIOD. The UART driver and decoder, and the
    # pollers, wake at whole multiples of PERIOD, half way between edges (never on one): one
    # wake-up per bit rather than per cycle, which matters at the simulator's speed.

    async def _uart_driver(self, ctx):
        pin = self.link.uart_rx
        bit_time = CPB * PERIOD
        while True:
            if not self.to_board:
                await ctx.delay(bit_time)
                continue
            item = self.to_board.popleft()
            byte, stop = (item, 1) if isinstance(item, int) else (item[1], 0)
            for bit in [0] + [(byte >> i) & 1 for i in range(8)] + [stop]:
                ctx.set(pin, bit)
                await ctx.delay(bit_time)
            if not stop:   # the line back to idle for a bit time after a framing error
                ctx.set(pin, 1)
                await ctx.delay(bit_time)

    async def _uart_monitor(self, ctx):
        pin = self.link.uart_tx
        while True:
            await ctx.negedge(pin)                            # on a clock edge (the pin is a register)
            await ctx.delay((CPB // 2 + 0.5) * PERIOD)        # the middle of the start bit, between edges
            assert ctx.get(pin) == 0, "start bit too short"
            byte = 0
            for i in range(8):
                await ctx.delay(CPB * PERIOD)
                byte |= ctx.get(pin) << i
            await ctx.delay(CPB * PERIOD)
            assert ctx.get(pin) == 1, "stop bit not high"
            self.from_board.append(byte)

    async def _rx_monitor(self, ctx):
        rx = self.link.rx
        while True:
            await ctx.posedge(rx.valid)
            while ctx.get(rx.valid):
                beat = ctx.get(rx.p)
                self.rx_beats.append((ctx.get(self.top.cycle), beat.data, beat.keep, beat.first, beat.last,
                                      beat.err))
                await ctx.tick()

    async def _tx_driver(self, ctx):
        tx = self.link.tx
        while True:
            if not self.tx_queue:
                await ctx.delay(8 * PERIOD)
                continue
            await ctx.tick()   # onto a clock edge: what is set now is sampled at the next one
            while self.tx_queue:   # frames queued with no gap go back to back
                gap, frame, err = self.tx_queue.popleft()
                if gap:
                    ctx.set(tx.valid, 0)
                    await ticks(ctx, gap)
                count = max(1, -(-len(frame) // BEAT_BYTES))
                for n in range(count):
                    chunk = frame[n * BEAT_BYTES:(n + 1) * BEAT_BYTES]
                    last = n == count - 1
                    padding = bytes(self.rng.randrange(256) for _ in range(BEAT_BYTES - len(chunk)))
                    ctx.set(tx.valid, 1)
                    ctx.set(tx.p.data, int.from_bytes(chunk + padding, "little"))
                    ctx.set(tx.p.keep, (1 << len(chunk)) - 1)
                    ctx.set(tx.p.first, n == 0)
                    ctx.set(tx.p.last, last)
                    ctx.set(tx.p.err, err and last)
                    if n == 0:
                        self.tx_sent.append((ctx.get(self.top.cycle), frame, err))
                    assert ctx.get(tx.ready)
                    await ctx.tick()
            ctx.set(tx.valid, 0)
            await ctx.delay(PERIOD / 2)   # back between edges

    async def _peeker(self, ctx):
        while True:
            await ctx.delay(16 * PERIOD)
            if self._peek_request is not None:
                self.peeks = {name: ctx.get(signal) for name, signal in self._peek_request.items()}
                self._peek_request = None


def injected_frames(beats):
    """Frames (cycle of first beat, bytes, err) from beats at rx, checking they are well formed."""
    frames = []
    current = None
    for i, (cycle, data, keep, first, last, err) in enumerate(beats):
        if first:
            assert current is None, "first beat inside a frame"
            current = (cycle, bytearray(), cycle)
        assert current is not None, "beat outside a frame"
        assert cycle == current[2], "beats of a frame not on consecutive cycles"
        if last:
            assert keep in [(1 << k) - 1 for k in range(1, 9)], f"keep {keep:#x} not contiguous from lane 0"
        else:
            assert keep == 0xFF and not err
        current[1].extend(data.to_bytes(8, "little")[:bin(keep).count("1")])
        current = (current[0], current[1], cycle + 1)
        if last:
            frames.append((current[0], bytes(current[1]), bool(err)))
            current = None
    assert current is None, "a frame without its last beat"
    return frames


# --- the host side alone ---------------------------------------------------------------------------


def test_encoding_matches_the_reference_crc():
    rng = random.Random("encoding")
    for _ in range(200):
        command, tag = rng.randrange(256), rng.randrange(256)
        payload = bytes(rng.randrange(256) for _ in range(rng.randrange(0, 300)))
        frame = encode_request(command, tag, payload)
        body = bytes([command, tag]) + len(payload).to_bytes(2, "little") + payload
        assert frame == bytes([REQUEST_SYNC]) + body + binascii.crc_hqx(body, 0xFFFF).to_bytes(2, "big")
        status = rng.randrange(256)
        reply = encode_reply(command, tag, status, payload)
        body = bytes([command, tag, status]) + len(payload).to_bytes(2, "little") + payload
        assert reply == bytes([REPLY_SYNC]) + body + binascii.crc_hqx(body, 0xFFFF).to_bytes(2, "big")
    # The check value of CRC-16/CCITT-FALSE.
    assert binascii.crc_hqx(b"123456789", 0xFFFF) == 0x29B1
    assert encode_request(Command.READ, 7, b"\x00\x00\x01") == encode_request(1, 7, b"\x00\x00\x01")
    with pytest.raises(ValueError, match="tag"):
        encode_request(Command.READ, 256)


def test_reply_parser_resynchronises():
    rng = random.Random("parser")
    replies = [Reply(rng.randrange(1, 6), rng.randrange(256), rng.randrange(5),
                     bytes(rng.randrange(256) for _ in range(rng.randrange(0, 40)))) for _ in range(60)]
    stream = bytearray()
    expected = []
    bad = skipped = 0
    for reply in replies:
        encoded = bytearray(reply.encode())
        roll = rng.random()
        if roll < 0.15:      # garbage (no sync byte in it) before the reply
            garbage = bytes(rng.choice([b for b in range(256) if b != REPLY_SYNC]) for _ in range(rng.randrange(1, 9)))
            stream += garbage
            skipped += len(garbage)
        if roll > 0.85:      # a corrupt reply: one payload or CRC byte flipped
            encoded[rng.randrange(6, len(encoded))] ^= 1 << rng.randrange(8)
            bad += 1
        else:
            expected.append(reply)
        stream += encoded
    parser = ReplyParser()
    got = []
    position = 0
    while position < len(stream):
        step = rng.randrange(1, 30)
        got += parser.feed(bytes(stream[position:position + step]))
        position += step
    # A corrupt reply's bytes are skipped after its sync byte; a good reply right after it is not lost.
    assert got == expected
    assert parser.bad_crc == bad
    assert parser.pending == 0
    # Wanted: the header first, then the rest of the reply.
    parser = ReplyParser()
    encoded = Reply(1, 2, 0, b"abcd").encode()
    assert parser.wanted() == 8
    parser.feed(encoded[:3])
    assert parser.wanted() == 5
    parser.feed(encoded[3:7])
    assert parser.wanted() == len(encoded) - 7
    # A reply that will not complete is given up, and what follows it is found.
    parser.resync()
    assert parser.feed(encoded) == [Reply(1, 2, 0, b"abcd")]


def test_status_layout_follows_the_counters():
    names = [f.name for f in LinkStatus.__dataclass_fields__.values()]
    assert names == ["version", "clocks_per_bit", "cycle", *COUNTERS]


# --- registers -------------------------------------------------------------------------------------


def test_read_and_write_one_and_64_words():
    bench = LinkBench(seed=1)
    client = bench.client()
    block = bench.block
    address = block.address_map
    rng = random.Random("registers")
    assert client.read_registers(0, 1) == [MAGIC]
    # One word.
    client.write_registers(address["c5"], [0xDEAD_BEEF])
    assert client.read_registers(address["c5"], 1) == [0xDEAD_BEEF]
    assert bench.peek({"c5": block.c5})["c5"] == 0xDEAD_BEEF
    # 64 words, from c3: written, read back, and in the block's registers; the ones around untouched.
    values = [rng.randrange(1 << 32) for _ in range(64)]
    client.write_registers(address["c3"], values)
    assert client.read_registers(address["c3"], 64) == values
    peeked = bench.peek({f"c{i}": getattr(block, f"c{i}") for i in range(CONFIG_WORDS)})
    assert [peeked[f"c{3 + i}"] for i in range(64)] == values
    assert [peeked[f"c{i}"] for i in (0, 1, 2, 67, 68, 69)] == [config_init(i) for i in (0, 1, 2, 67, 68, 69)]
    # A range longer than 64 words is split; the block's whole map read at once.
    everything = client.read_registers(0, address["ticks"])
    assert everything == [MAGIC, block.layout] + [peeked[f"c{i}"] for i in range(CONFIG_WORDS)] + [0]  # clear reads 0
    # A counter: read through the link, between the counts before and after the request.
    before = bench.cycles
    ticks = client.read_registers(address["ticks"], 1)[0]
    assert before - 2 <= ticks <= bench.cycles
    status = client.status()
    assert status.requests_ok == 8 + 1   # 1 read, 1 write, 1 read, 1 write, 1 read, 2 reads (split), 1 read; status
    assert status.counters == {**dict.fromkeys(COUNTERS, 0), "requests_ok": 9}


def test_bad_register_arguments():
    bench = LinkBench(seed=2)
    client = bench.client()
    for payload in (b"\x01\x00\x00", b"\x01\x00\x41", b"\xf0\x00\x20", b"\x00\x01\x01"):   # count 0, 65, past the end
        with pytest.raises(BoardLinkError, match="BAD_LENGTH"):
            client.request(Command.READ, payload)
    first = bench.block.address_map["c0"]
    ragged = first.to_bytes(2, "little") + bytes(5)
    with pytest.raises(BoardLinkError, match="BAD_LENGTH"):
        client.request(Command.WRITE, ragged)
    with pytest.raises(BoardLinkError, match="BAD_LENGTH"):   # a write running past the end of the map
        client.request(Command.WRITE, (255).to_bytes(2, "little") + bytes(8))
    with pytest.raises(BoardLinkError, match="BAD_LENGTH"):
        client.request(Command.STATUS, b"\x00")
    # Nothing was written.
    assert client.read_registers(first, 1) == [config_init(0)]
    status = client.status()
    assert (status.bad_length, status.requests_ok) == (7, 2)


# --- inject ----------------------------------------------------------------------------------------


def test_inject_frames_of_every_short_length_and_some_long_ones():
    bench = LinkBench(seed=3)
    client = bench.client()
    rng = random.Random("inject")
    lengths = list(range(1, 18)) + [64, 333, 1000, MAX_FRAME]
    sent = []
    for length in lengths:
        frame = bytes(rng.randrange(256) for _ in range(length))
        err = rng.random() < 0.4
        stamp = client.inject(frame, err=err)
        sent.append((stamp, frame, err))
    bench.run(2 * CHARACTER)
    assert injected_frames(bench.rx_beats) == sent
    status = client.status()
    assert status.frames_injected == len(lengths)
    assert status.requests_ok == len(lengths) + 1


def test_inject_while_the_buffer_is_read_out_is_busy_and_both_get_replies():
    """Two INJECTs sent without waiting: the second's header arrives while the first's 2048 bytes still
    go into rx (at 4 clocks per bit, five bytes take 200 cycles, the frame 256): BUSY, then retried."""
    bench = LinkBench(seed=4)
    rng = random.Random("busy")
    first = bytes(rng.randrange(256) for _ in range(MAX_FRAME))
    second = bytes(rng.randrange(256) for _ in range(20))
    bench.write(encode_request(Command.INJECT, 1, b"\x00" + first) + encode_request(Command.INJECT, 2, b"\x00" + second))
    bench.idle_until_sent()
    replies = bench.replies(40 * CHARACTER)
    assert [(r.tag, r.status) for r in replies] == [(1, Status.OK.value), (2, Status.BUSY.value)]
    client = bench.client()
    client.inject(second)   # and sent again, it goes
    frames = injected_frames(bench.rx_beats)
    assert [frame for _, frame, _ in frames] == [first, second]
    assert frames[0][0] == int.from_bytes(replies[0].payload, "little")


# --- tx capture ------------------------------------------------------------------------------------


def test_tx_frames_are_captured_with_their_stamps():
    bench = LinkBench(seed=5)
    client = bench.client()
    rng = random.Random("tx")
    assert client.read_tx() is None
    # Frames at random times, some back to back, while the host reads.
    for i in range(14):
        length = rng.choice([1, 7, 8, 9, 16, 17, 64, 106, 200])
        gap = 0 if i % 4 == 1 else rng.randrange(1, 300)
        bench.tx_queue.append((gap, bytes(rng.randrange(256) for _ in range(length)), rng.random() < 0.3))
    got = []
    while len(got) < 14:
        frame = client.read_tx()
        if frame is not None:
            got.append(frame)
    assert got == [CapturedFrame(stamp, err, frame) for stamp, frame, err in bench.tx_sent]
    assert client.read_tx() is None
    status = client.status()
    assert (status.tx_captured, status.tx_dropped) == (14, 0)


def test_tx_overflow_is_counted():
    bench = LinkBench(seed=6, max_frame=256)
    client = bench.client()
    rng = random.Random("overflow")
    # More bytes than the ring holds: 100 + 100 fit in 256, the third does not, the fourth (48) does.
    frames = [bytes(rng.randrange(256) for _ in range(n)) for n in (100, 100, 100, 48)]
    # Then more frames than there are descriptors, back to back.
    small = [bytes([i]) for i in range(TX_DESCRIPTORS + 3)]
    for frame in frames:
        bench.tx_queue.append((5, frame, False))
    bench.run(200)
    status = client.status()
    assert (status.tx_captured, status.tx_dropped) == (3, 1)
    kept = [bench.tx_sent[i] for i in (0, 1, 3)]
    for stamp, frame, err in kept:
        assert client.read_tx() == CapturedFrame(stamp, err, frame)
    assert client.read_tx() is None
    first_small = len(bench.tx_sent)
    for i, frame in enumerate(small):
        bench.tx_queue.append((5 if i == 0 else 0, frame, False))
    bench.run(200)
    for stamp, frame, err in bench.tx_sent[first_small:first_small + TX_DESCRIPTORS]:
        assert client.read_tx() == CapturedFrame(stamp, err, frame)
    assert client.read_tx() is None
    status = client.status()
    assert (status.tx_captured, status.tx_dropped) == (3 + TX_DESCRIPTORS, 1 + 3)
    # A frame longer than the whole ring never fits.
    bench.tx_queue.append((5, bytes(300), False))
    bench.run(100)
    assert client.read_tx() is None
    assert client.status().tx_dropped == 5


# --- status and the bad-input catalogue --------------------------------------------------------------


def test_status():
    bench = LinkBench(seed=7)
    client = bench.client()
    before = bench.cycles
    status = client.status()
    assert (status.version, status.clocks_per_bit) == (PROTOCOL_VERSION, CPB)
    assert before < status.cycle < bench.cycles
    assert status.counters == {**dict.fromkeys(COUNTERS, 0), "requests_ok": 1}


def test_bad_input_is_dropped_counted_and_the_link_recovers():
    bench = LinkBench(seed=8)
    client = bench.client()
    address = bench.block.address_map["c0"]
    expected = dict.fromkeys(COUNTERS, 0)

    def check():
        status = client.status()
        expected["requests_ok"] += 1
        assert status.counters == expected
        assert client.read_registers(address, 1) == [config_init(0)]   # the next request works, nothing written
        expected["requests_ok"] += 1

    write_c0 = encode_request(Command.WRITE, 9, address.to_bytes(2, "little") + (0x1234).to_bytes(4, "little"))

    # Bad CRC: a reply with status 3, not acted on.
    corrupt = bytearray(write_c0)
    corrupt[-1] ^= 0x40
    bench.write(corrupt)
    bench.idle_until_sent()
    assert [(r.tag, r.status) for r in bench.replies(12 * CHARACTER)] == [(9, Status.BAD_CRC.value)]
    expected["bad_crc"] += 1
    check()

    # Truncated: the request stops mid-payload; no reply, dropped after the timeout.
    bench.write(write_c0[:7])
    bench.idle_until_sent()
    assert bench.replies(1024 * CPB + 4 * CHARACTER) == []
    expected["truncated"] += 1
    check()

    # A framing error mid-request: dropped, no reply; the rest of its bytes are skipped as garbage
    # (none of them is a sync byte here).
    bench.write(write_c0[:4])
    bench.send_bad_stop(write_c0[4])
    rest = write_c0[5:]
    bench.write(rest)
    bench.idle_until_sent()
    assert bench.replies(4 * CHARACTER) == []
    expected["framing_errors"] += 1
    expected["skipped_bytes"] += len(rest)
    assert REQUEST_SYNC not in rest
    check()

    # Unknown command.
    with pytest.raises(BoardLinkError, match="UNKNOWN_COMMAND"):
        client.request(0x77, b"xyz")
    expected["unknown_commands"] += 1
    check()

    # An INJECT longer than the build's largest frame: its bytes are read, nothing goes into rx.
    with pytest.raises(BoardLinkError, match="BAD_LENGTH"):
        client.inject(bytes(MAX_FRAME + 1))
    expected["bad_length"] += 1
    assert bench.rx_beats == []
    check()

    # A WRITE with a ragged payload (not 2 + 4k bytes).
    with pytest.raises(BoardLinkError, match="BAD_LENGTH"):
        client.request(Command.WRITE, address.to_bytes(2, "little") + (0x1234).to_bytes(4, "little") + b"\x00")
    expected["bad_length"] += 1
    check()

    # Garbage before the sync byte: skipped and counted; the request after it is answered.
    garbage = bytes([0x00, 0xFF, 0xA5, 0x13, 0x37])
    bench.write(garbage)
    assert client.read_registers(0, 1) == [MAGIC]
    expected["skipped_bytes"] += len(garbage)
    expected["requests_ok"] += 1
    check()

    # A reply lost on the host's side: the client times out and sends the READ again (a new tag).
    bench.drop(6 + 4 + 2)
    assert client.read_registers(address, 1) == [config_init(0)]
    assert client.lost == 1
    expected["requests_ok"] += 2
    # A late reply: held back until the client has given up and sent again; it is stale, and dropped.
    bench.delay(6 + 4 + 2)
    assert client.read_registers(address, 1) == [config_init(0)]
    assert (client.lost, client.stale) == (2, 1)
    expected["requests_ok"] += 2
    check()

    # INJECT is not sent again when its reply is lost (the frame went into rx once).
    bench.drop(6 + 8 + 2)
    with pytest.raises(BoardLinkError, match="not sent again"):
        client.inject(b"once")
    assert [frame for _, frame, _ in injected_frames(bench.rx_beats)] == [b"once"]
    expected["requests_ok"] += 1
    expected["frames_injected"] += 1
    check()


def test_parameters_are_checked():
    for kwargs, message in [(dict(clocks_per_bit=3), "clocks_per_bit"),
                            (dict(clocks_per_bit=4, timeout_bits=10), "timeout_bits"),
                            (dict(clocks_per_bit=4, max_frame=1000), "max_frame"),
                            (dict(clocks_per_bit=4, max_frame=32), "max_frame"),
                            (dict(clocks_per_bit=4, address_width=17), "address_width")]:
        with pytest.raises(ValueError, match=message):
            BoardLink(**kwargs)


# --- with the real pipeline ------------------------------------------------------------------------


def test_magic_through_the_link_from_the_pipeline():
    from tick2trade.hdl.pipeline import Pipeline
    pipeline = Pipeline(capacity=16, levels=2)
    bench = LinkBench(pipeline=pipeline, seed=9)
    client = bench.client()
    assert client.read_registers(0, 1) == [MAGIC]
    edge = pipeline.address_map["edge"]
    client.write_registers(edge, [1234])
    assert client.read_registers(edge, 1) == [1234]
    assert client.status().requests_ok == 4
