"""A UART, 8N1 (one start bit, eight data bits LSB first, one stop bit, idle high).

The board link (``hdl/board_link.py``) carries its framed protocol over it;
docs/board-link.md describes both. The baud rate is the clock frequency
divided by ``clocks_per_bit`` (a build parameter: 25 on a 25 MHz board and 12
on a 12 MHz one give 1 Mbaud; simulations go down to 4).
"""

from amaranth.hdl import Cat, Const, Module, Signal
from amaranth.lib import enum, stream, wiring
from amaranth.lib.cdc import FFSynchronizer
from amaranth.lib.wiring import In, Out

__all__ = ["UartRx", "UartTx", "UartRxState", "MIN_CLOCKS_PER_BIT", "BITS_PER_BYTE"]

#: The fewest clock cycles per bit the receiver can sample reliably: with fewer, the two-stage
#: synchroniser and the one-cycle uncertainty of the start edge leave no margin for a baud mismatch.
MIN_CLOCKS_PER_BIT = 4
#: Bit times per byte on the line: start, eight data bits, stop.
BITS_PER_BYTE = 10


def check_clocks_per_bit(clocks_per_bit):
    """Raise a ValueError unless ``clocks_per_bit`` is an integer of at least ``MIN_CLOCKS_PER_BIT``."""
    if not isinstance(clocks_per_bit, int) or isinstance(clocks_per_bit, bool) \
            or clocks_per_bit < MIN_CLOCKS_PER_BIT:
        raise ValueError(f"clocks_per_bit must be an integer of at least {MIN_CLOCKS_PER_BIT}, "
                         f"not {clocks_per_bit!r}")


class UartRxState(enum.Enum, shape=3):
    """Where the receiver is in a byte."""
    IDLE = 0    # the line is high: waiting for a start bit's falling edge
    START = 1   # an edge was seen: the start bit is checked at its middle
    DATA = 2    # eight data bits, each sampled at its middle
    STOP = 3    # the stop bit, sampled at its middle
    BREAK = 4   # the stop bit was low (framing error): waiting for the line to go high again


class UartRx(wiring.Component):
    """UART receiver, 8N1.

    The pin goes through a two-flip-flop synchroniser. A low level on it while
    idle is a start bit's edge; each bit is sampled once, half a bit time
    after the edge and then every ``clocks_per_bit`` cycles, so the middle of
    every bit is hit while the sender's baud rate is within a few percent of
    ours (each byte resynchronises on its start edge). A start bit that is no
    longer low at its middle is a glitch and ignored. The receiver is ready
    for the next start edge from the middle of the stop bit on.

    Interface attributes
    --------------------
    pin : In(1)
        The line (idle high); asynchronous to the clock.
    data : Out(stream.Signature(8, always_ready=True))
        Each byte received with a good (high) stop bit, ``valid`` for one
        cycle, from the middle of its stop bit; there is no backpressure.
    framing_error : Out(1)
        High for one cycle instead of ``data.valid`` when the stop bit was
        low; the byte is discarded and nothing more is received until the
        line has gone high again.
    """

    def __init__(self, clocks_per_bit):
        check_clocks_per_bit(clocks_per_bit)
        self.clocks_per_bit = clocks_per_bit
        super().__init__({
            "pin": In(1, init=1),
            "data": Out(stream.Signature(8, always_ready=True)),
            "framing_error": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        cpb = self.clocks_per_bit

        line = Signal(init=1)
        m.submodules.synchronizer = FFSynchronizer(self.pin, line, init=1)

        state = Signal(UartRxState)
        timer = Signal(range(cpb))   # cycles to the next sampling point, minus one
        bit = Signal(range(8))       # data bit being received
        shift = Signal(8)            # data bits so far, the latest in bit 7
        sample = Signal()
        m.d.comb += sample.eq(timer == 0)
        with m.If(~sample):
            m.d.sync += timer.eq(timer - 1)

        m.d.sync += [self.data.valid.eq(0), self.framing_error.eq(0)]
        with m.Switch(state):
            with m.Case(UartRxState.IDLE):
                with m.If(~line):
                    m.d.sync += [state.eq(UartRxState.START), timer.eq(cpb // 2 - 1)]
            with m.Case(UartRxState.START):
                with m.If(sample):
                    with m.If(line):
                        m.d.sync += state.eq(UartRxState.IDLE)
                    with m.Else():
                        m.d.sync += [state.eq(UartRxState.DATA), bit.eq(0), timer.eq(cpb - 1)]
            with m.Case(UartRxState.DATA):
                with m.If(sample):
                    m.d.sync += [shift.eq(Cat(shift[1:], line)), bit.eq(bit + 1), timer.eq(cpb - 1)]
                    with m.If(bit == 7):
                        m.d.sync += state.eq(UartRxState.STOP)
            with m.Case(UartRxState.STOP):
                with m.If(sample):
                    with m.If(line):
                        m.d.sync += [self.data.valid.eq(1), self.data.payload.eq(shift),
                                     state.eq(UartRxState.IDLE)]
                    with m.Else():
                        m.d.sync += [self.framing_error.eq(1), state.eq(UartRxState.BREAK)]
            with m.Case(UartRxState.BREAK):
                with m.If(line):
                    m.d.sync += state.eq(UartRxState.IDLE)
        return m


class UartTx(wiring.Component):
    """UART transmitter, 8N1.

    A byte is taken when the transmitter is free, and its start bit is on the
    pin from the next cycle; every bit lasts exactly ``clocks_per_bit``
    cycles. ``data.ready`` is high again in the last cycle of the stop bit, so
    bytes offered back to back follow each other with no idle time.

    Interface attributes
    --------------------
    data : In(stream.Signature(8))
        Bytes to send.
    pin : Out(1)
        The line, registered; high when idle.
    """

    def __init__(self, clocks_per_bit):
        check_clocks_per_bit(clocks_per_bit)
        self.clocks_per_bit = clocks_per_bit
        super().__init__({
            "data": In(stream.Signature(8)),
            "pin": Out(1, init=1),
        })

    def elaborate(self, platform):
        m = Module()
        cpb = self.clocks_per_bit

        busy = Signal()
        timer = Signal(range(cpb))                    # cycles left of the bit on the pin, minus one
        remaining = Signal(range(BITS_PER_BYTE))      # bits still to go after the one on the pin
        shift = Signal(BITS_PER_BYTE - 1)             # those bits, the next in bit 0
        bit_done = Signal()
        m.d.comb += [
            bit_done.eq(timer == 0),
            self.data.ready.eq(~busy | (bit_done & (remaining == 0))),
        ]

        with m.If(self.data.valid & self.data.ready):
            m.d.sync += [
                self.pin.eq(0),
                shift.eq(Cat(self.data.payload, Const(1, 1))),
                remaining.eq(BITS_PER_BYTE - 1),
                timer.eq(cpb - 1),
                busy.eq(1),
            ]
        with m.Elif(busy):
            with m.If(~bit_done):
                m.d.sync += timer.eq(timer - 1)
            with m.Elif(remaining == 0):
                m.d.sync += busy.eq(0)      # the stop bit is over; the pin stays high
            with m.Else():
                m.d.sync += [self.pin.eq(shift[0]), shift.eq(shift >> 1), remaining.eq(remaining - 1),
                             timer.eq(cpb - 1)]
        return m
