# amaranth: UnusedElaboratable=no
"""The UART in the Amaranth simulator, against a bit-level UART model on the test side.

UartTx -> pin -> UartRx for several clocks per bit, back to back and with
idle gaps, each bit's length on the pin checked; UartRx alone against a
test-side serialiser whose baud rate is off by +-2 % and whose edges fall
anywhere between clock edges; a stop bit of 0 (a framing error) flagged, and
the byte after it right.
"""

import random

import pytest
from amaranth.hdl import Module
from amaranth.sim import Simulator

from tick2trade.hdl.uart import BITS_PER_BYTE, UartRx, UartTx

PERIOD = 1e-8


def line_bits(byte, *, stop=1):
    """The bits of one 8N1 character, first on the line first: start, data LSB first, stop."""
    return [0] + [(byte >> i) & 1 for i in range(8)] + [stop]


def run(dut, *benches, background=()):
    simulator = Simulator(dut)
    simulator.add_clock(PERIOD)
    for bench in benches:
        simulator.add_testbench(bench)
    for bench in background:
        simulator.add_testbench(bench, background=True)
    simulator.run()


def collect_rx(rx, received, framing):
    """A background testbench recording each byte (and framing error) UartRx delivers, with its cycle."""
    async def bench(ctx):
        cycle = 0
        while True:
            await ctx.tick()
            cycle += 1
            if ctx.get(rx.data.valid):
                received.append((cycle, ctx.get(rx.data.payload)))
            if ctx.get(rx.framing_error):
                framing.append(cycle)
    return bench


@pytest.mark.parametrize("clocks_per_bit", [4, 5, 25])
def test_loopback_back_to_back_and_with_gaps(clocks_per_bit):
    rng = random.Random(f"uart-loopback/{clocks_per_bit}")
    m = Module()
    m.submodules.tx = tx = UartTx(clocks_per_bit)
    m.submodules.rx = rx = UartRx(clocks_per_bit)
    m.d.comb += rx.pin.eq(tx.pin)
    payload = [rng.randrange(256) for _ in range(48)] + [0x00, 0xFF, 0x55, 0xAA]
    gaps = [0 if i < 16 or rng.random() < 0.4 else rng.randrange(1, 3 * BITS_PER_BYTE * clocks_per_bit)
            for i in range(len(payload))]
    received, framing, line = [], [], []

    async def sender(ctx):
        for byte, gap in zip(payload, gaps):
            if gap:
                await ctx.tick().repeat(gap)
            ctx.set(tx.data.valid, 1)
            ctx.set(tx.data.payload, byte)
            while not ctx.get(tx.data.ready):
                await ctx.tick()
            await ctx.tick()
            ctx.set(tx.data.valid, 0)
        await ctx.tick().repeat(2 * BITS_PER_BYTE * clocks_per_bit)

    async def line_monitor(ctx):
        # The test's own decoder of the pin: every bit must hold for exactly clocks_per_bit cycles.
        while True:
            await ctx.negedge(tx.pin)
            levels = [ctx.get(tx.pin)]
            for _ in range(BITS_PER_BYTE * clocks_per_bit - 1):   # to the stop bit's last cycle, not past it:
                await ctx.tick()                                 # the next start bit may begin right after
                levels.append(ctx.get(tx.pin))
            bits = levels[::clocks_per_bit]
            assert all(levels[i] == bits[i // clocks_per_bit] for i in range(len(levels))), levels
            assert bits[0] == 0 and bits[-1] == 1
            line.append(sum(bit << i for i, bit in enumerate(bits[1:9])))

    run(m, sender, background=[collect_rx(rx, received, framing), line_monitor])
    assert line == payload
    assert [byte for _, byte in received] == payload
    assert framing == []
    # Back to back: each of the first 16 bytes follows the one before it by exactly one character time.
    cycles = [cycle for cycle, _ in received]
    assert all(b - a == BITS_PER_BYTE * clocks_per_bit for a, b in zip(cycles[:15], cycles[1:16]))


def serialiser(pin, characters, *, bit_time, rng, done):
    """A test-side UART sender on ``pin``: each (bits, idle bit times) at ``bit_time`` seconds a bit,
    starting at an arbitrary point between clock edges."""
    async def bench(ctx):
        await ctx.delay(rng.uniform(0, 7) * PERIOD)
        for bits, idle in characters:
            for bit in bits:
                ctx.set(pin, bit)
                await ctx.delay(bit_time)
            ctx.set(pin, 1)
            if idle:
                await ctx.delay(idle * bit_time)
        await ctx.delay(3 * BITS_PER_BYTE * bit_time)
        done.append(True)
    return bench


@pytest.mark.parametrize("clocks_per_bit", [4, 8, 25])
@pytest.mark.parametrize("error", [-0.02, 0.02])
def test_receiver_tolerates_baud_error(clocks_per_bit, error):
    rng = random.Random(f"uart-baud/{clocks_per_bit}/{error}")
    rx = UartRx(clocks_per_bit)
    payload = [rng.randrange(256) for _ in range(40)] + [0x00, 0xFF, 0x01, 0x80]
    # Mostly back to back (the worst case: no idle time to resynchronise on), some gaps.
    characters = [(line_bits(byte), 0 if rng.random() < 0.7 else rng.uniform(0.1, 5)) for byte in payload]
    received, framing, done = [], [], []
    bit_time = clocks_per_bit * PERIOD * (1 + error)
    run(rx, serialiser(rx.pin, characters, bit_time=bit_time, rng=rng, done=done),
        background=[collect_rx(rx, received, framing)])
    assert done
    assert [byte for _, byte in received] == payload
    assert framing == []


@pytest.mark.parametrize("clocks_per_bit", [4, 25])
def test_framing_error_is_flagged_and_the_next_byte_is_right(clocks_per_bit):
    rng = random.Random(f"uart-framing/{clocks_per_bit}")
    rx = UartRx(clocks_per_bit)
    # good, bad stop bit, good; then a long break (the line low for three characters), then good again
    characters = [(line_bits(0x3C), 0), (line_bits(0xA7, stop=0), 1), (line_bits(0x5A), 0),
                  ([0] * (3 * BITS_PER_BYTE), 2), (line_bits(0xC3), 0), (line_bits(0x81), 0)]
    received, framing, done = [], [], []
    run(rx, serialiser(rx.pin, characters, bit_time=clocks_per_bit * PERIOD, rng=rng, done=done),
        background=[collect_rx(rx, received, framing)])
    assert done
    assert [byte for _, byte in received] == [0x3C, 0x5A, 0xC3, 0x81]
    assert len(framing) == 2   # the bad stop bit, and the break (a character of zeros without a stop bit)
    # The first framing error comes between the first and the second good byte.
    assert received[0][0] < framing[0] < received[1][0]


@pytest.mark.parametrize("bad", [3, 0, -1, 4.5, True])
def test_clocks_per_bit_is_checked(bad):
    with pytest.raises(ValueError, match="clocks_per_bit"):
        UartRx(bad)
    with pytest.raises(ValueError, match="clocks_per_bit"):
        UartTx(bad)
