"""What a board runs behind its clock and pins: a core (the pipeline or the receive path) and the host link.

``BoardTop`` (hdl/board_top.py) puts this behind a board's PLL, reset and
UART pins; a simulated board (sim/simulated_board.py) drives the same two
pins from a pseudo-terminal, so that the host code that talks to a board is
tested against the very design a board runs.
"""

from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .board_link import BoardLink

__all__ = ["BoardCore"]


class BoardCore(wiring.Component):
    """A core whose register bus, ``rx`` and ``tx`` are reached through a ``BoardLink`` on two UART pins.

    Parameters
    ----------
    core : wiring.Component
        Has ``csr`` (In(RegisterBus)) and ``rx`` (In(rx_stream())), and
        ``tx`` (Out(beat stream)) if it sends frames; without ``tx`` the
        link captures nothing.
    clocks_per_bit : int
        Design clocks per UART bit.

    Interface attributes
    --------------------
    uart_rx : In(1)
        The link's receive pin (idle high).
    uart_tx : Out(1)
        The link's transmit pin.
    """

    def __init__(self, core, *, clocks_per_bit):
        for port in ("csr", "rx"):
            if port not in core.signature.members:
                raise ValueError(f"the core has no {port!r} port; BoardCore needs csr and rx")
        self.core = core
        self.link = BoardLink(clocks_per_bit=clocks_per_bit, address_width=len(core.csr.addr))
        super().__init__({"uart_rx": In(1, init=1), "uart_tx": Out(1)})

    def elaborate(self, platform):
        m = Module()
        m.submodules.core = core = self.core
        m.submodules.link = link = self.link
        m.d.comb += [link.uart_rx.eq(self.uart_rx), self.uart_tx.eq(link.uart_tx)]
        wiring.connect(m, link.csr, core.csr)
        wiring.connect(m, link.rx, core.rx)
        if "tx" in core.signature.members:
            wiring.connect(m, core.tx, link.tx)
        else:
            m.d.comb += link.tx.valid.eq(0)
        return m
