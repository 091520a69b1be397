# amaranth: UnusedElaboratable=no
"""The top level of a board build: clock, reset, the configuration's core and the host link.

``BoardTop(board)`` is what ``host/build.py`` gives to ``platform.prepare``;
``board`` is an entry of the registry in ``host/boards.py`` (docs/boards.md
lists them). It puts together:

* The ``sync`` clock: the board's oscillator, through an ECP5 ``EHXPLLL``
  when the board's design clock differs from it (parameters from
  :func:`ecp5_pll`, the search ``ecppll`` makes), or the oscillator itself
  (the iCEBreaker's 12 MHz: slow enough for the design, so no
  ``SB_PLL40_PAD``). The design clock is a whole number of MHz so that the
  link's 1,000,000 baud is a whole number of clocks per bit.
* The ``sync`` reset: held from configuration until the PLL has locked (its
  ``LOCK``, synchronised), the board's reset button (if it has one) is
  released, and ``POR_SECONDS`` have passed (iCE40 block RAMs read as zero
  for about 3 us after configuration; the ECP5 boards get the same wait).
* The core: ``Pipeline`` or ``RxPath`` with the configuration's parameters
  (the iCEBreaker's ``RxPath`` keeps only some of its counters).
* The host link: ``BoardCore`` (hdl/board_core.py) puts the core behind a
  ``BoardLink`` (hdl/board_link.py), which masters the core's register
  bus, feeds its ``rx`` and captures its ``tx`` (the receive path has none),
  on the board's ``uart`` resource.
* A LED, where the board has one that is not a UART pin, toggling every
  0.5 to 0.9 s from the design clock: the bitstream is loaded and the PLL
  runs.

(The first line's linter option: ``make_core`` also serves hosts that need
a configuration's register map alone, and never elaborate the core.)
"""

from dataclasses import dataclass

from amaranth.hdl import Const, ClockDomain, ClockSignal, Elaboratable, Instance, Module, ResetSignal, Signal
from amaranth.lib import io
from amaranth.lib.cdc import FFSynchronizer


__all__ = ["BoardTop", "EcpPll", "ecp5_pll", "CORES", "make_core", "BAUD", "POR_SECONDS", "clocks_per_bit"]

#: The host link's rate, bits per second.
BAUD = 1_000_000
#: How long the design is held in reset after configuration (and after the PLL locks).
POR_SECONDS = 15e-6

#: Components a configuration's ``core`` may name ("module:Class", imported when built).
CORES = {
    "pipeline": "tick2trade.hdl.pipeline:Pipeline",
    "rx_path": "tick2trade.hdl.rx_path:RxPath",
}


def clocks_per_bit(clock_hz, baud=BAUD):
    """Design clocks per UART bit; ValueError unless ``clock_hz`` is a whole multiple of ``baud``."""
    if clock_hz <= 0 or clock_hz % baud:
        raise ValueError(f"a {clock_hz / 1e6:g} MHz clock is not a whole number of clocks per bit "
                         f"at {baud} baud")
    return int(clock_hz // baud)


@dataclass(frozen=True)
class EcpPll:
    """Parameters of an ECP5 ``EHXPLLL`` with CLKOP as its own feedback.

    ``out_hz = in_hz * clkfb_div / clki_div``; the VCO runs at
    ``out_hz * clkop_div``. ``clkop_cphase`` is the coarse phase ``ecppll``
    writes for a 0 degree output.
    """
    in_hz: int
    out_hz: int
    clki_div: int
    clkfb_div: int
    clkop_div: int
    clkop_cphase: int
    vco_hz: int

    def instance(self, clkin, clkout, locked):
        """The ``EHXPLLL`` instance: ``clkin`` in, ``clkout`` and ``locked`` out."""
        return Instance(
            "EHXPLLL",
            a_FREQUENCY_PIN_CLKI=f"{self.in_hz / 1e6:g}",
            a_FREQUENCY_PIN_CLKOP=f"{self.out_hz / 1e6:g}",
            a_ICP_CURRENT="12", a_LPF_RESISTOR="8", a_MFG_ENABLE_FILTEROPAMP="1", a_MFG_GMCREF_SEL="2",
            p_PLLRST_ENA="DISABLED", p_INTFB_WAKE="DISABLED", p_STDBY_ENABLE="DISABLED",
            p_DPHASE_SOURCE="DISABLED", p_OUTDIVIDER_MUXA="DIVA", p_OUTDIVIDER_MUXB="DIVB",
            p_OUTDIVIDER_MUXC="DIVC", p_OUTDIVIDER_MUXD="DIVD",
            p_CLKI_DIV=self.clki_div, p_CLKFB_DIV=self.clkfb_div, p_FEEDBK_PATH="CLKOP",
            p_CLKOP_ENABLE="ENABLED", p_CLKOP_DIV=self.clkop_div,
            p_CLKOP_CPHASE=self.clkop_cphase, p_CLKOP_FPHASE=0,
            i_RST=Const(0), i_STDBY=Const(0), i_CLKI=clkin, i_CLKFB=clkout,
            i_PHASESEL0=Const(0), i_PHASESEL1=Const(0), i_PHASEDIR=Const(1), i_PHASESTEP=Const(1),
            i_PHASELOADREG=Const(1), i_PLLWAKESYNC=Const(0), i_ENCLKOP=Const(0),
            o_CLKOP=clkout, o_LOCK=locked,
        )


#: EHXPLLL limits (MHz): phase detector input, VCO.
_PFD_MHZ = (3.125, 400.0)
_VCO_MHZ = (400.0, 800.0)


def ecp5_pll(in_hz, out_hz):
    """The ``EHXPLLL`` dividers that make exactly ``out_hz`` from ``in_hz``.

    The search is ``ecppll``'s: every input, feedback and output divider
    within the device's ranges (1-128, 1-80, 1-128) whose phase detector and
    VCO frequencies are in range; of the exact ones, the VCO nearest 600 MHz
    (the middle of its range). ValueError when no divider set is exact.
    """
    best = None
    for clki_div in range(1, 129):
        pfd = in_hz / clki_div
        if not _PFD_MHZ[0] * 1e6 <= pfd <= _PFD_MHZ[1] * 1e6:
            continue
        for clkfb_div in range(1, 81):
            if in_hz * clkfb_div != out_hz * clki_div:
                continue
            for clkop_div in range(1, 129):
                vco = out_hz * clkop_div
                if not _VCO_MHZ[0] * 1e6 <= vco <= _VCO_MHZ[1] * 1e6:
                    continue
                if best is None or abs(vco - 600e6) < abs(best.vco_hz - 600e6):
                    best = EcpPll(in_hz=int(in_hz), out_hz=int(out_hz), clki_div=clki_div,
                                  clkfb_div=clkfb_div, clkop_div=clkop_div,
                                  clkop_cphase=(clkop_div - 1) // 2, vco_hz=int(vco))
    if best is None:
        raise ValueError(f"no EHXPLLL setting makes exactly {out_hz / 1e6:g} MHz "
                         f"from {in_hz / 1e6:g} MHz")
    return best


def make_core(configuration):
    """The core a board configuration (``core``, ``parameters``: host/boards.py) names, made."""
    import importlib
    module_name, _, class_name = CORES[configuration.core].partition(":")
    return getattr(importlib.import_module(module_name), class_name)(**dict(configuration.parameters))


class BoardTop(Elaboratable):
    """Clock, reset, core and host link of one board (see the module docstring).

    Parameters
    ----------
    board : host.boards.Board
        The registry entry: ``family``, ``oscillator_hz``, ``clock_hz``,
        ``configuration`` (``core``, ``parameters``), ``led`` (resource name
        and subsignal, or None).

    Attributes
    ----------
    core : the core component, made at construction (its ``address_map``
        is the host's).
    pll : EcpPll or None
    """

    def __init__(self, board):
        self.board = board
        self.core = make_core(board.configuration)
        self.clocks_per_bit = clocks_per_bit(board.clock_hz)
        self.pll = (ecp5_pll(board.oscillator_hz, board.clock_hz)
                    if board.clock_hz != board.oscillator_hz else None)
        if self.pll is None and board.clock_hz != board.oscillator_hz:
            raise ValueError(f"{board.name}: no PLL for the {board.family}")

    def elaborate(self, platform):
        m = Module()

        # The oscillator, and the design clock (through the PLL where they differ).
        osc_io = platform.request(platform.default_clk, dir="-")
        m.submodules.osc_buf = osc_buf = io.Buffer("i", osc_io)
        locked = Signal()
        if self.pll is not None:
            clk = Signal()
            # nextpnr derives the output's constraint from the oscillator's and the dividers.
            m.submodules.pll = self.pll.instance(osc_buf.i, clk, locked)
        else:
            clk = osc_buf.i
            m.d.comb += locked.eq(1)
        button = Const(0)
        if platform.default_rst is not None:
            rst_io = platform.request(platform.default_rst, dir="-")
            m.submodules.rst_buf = rst_buf = io.Buffer("i", rst_io)
            button = rst_buf.i

        # Reset: held until the PLL has locked, the button is up and POR_SECONDS have passed.
        # The counter lives in a reset-less domain on the same clock; flip-flops start at 0.
        m.domains.sync = ClockDomain("sync")
        m.domains.por = ClockDomain("por", reset_less=True)
        m.d.comb += [ClockSignal("sync").eq(clk), ClockSignal("por").eq(clk)]
        ready = Signal()
        m.submodules.lock_sync = FFSynchronizer(locked & ~button, ready, o_domain="por")
        por_cycles = max(int(POR_SECONDS * self.board.clock_hz), 1)
        elapsed = Signal(range(por_cycles + 1))
        released = Signal()
        with m.If(~ready):
            m.d.por += elapsed.eq(0)
        with m.Elif(elapsed != por_cycles):
            m.d.por += elapsed.eq(elapsed + 1)
        m.d.por += released.eq(elapsed == por_cycles)
        m.d.comb += ResetSignal("sync").eq(~released)

        # The core and the link (hdl/board_core.py), on the board's UART pins.
        from .board_core import BoardCore
        m.submodules.board = board = BoardCore(self.core, clocks_per_bit=self.clocks_per_bit)
        uart = platform.request("uart", 0, dir="-")
        m.submodules.uart_rx_buf = uart_rx = io.Buffer("i", uart.rx)
        m.submodules.uart_tx_buf = uart_tx = io.Buffer("o", uart.tx)
        m.d.comb += [board.uart_rx.eq(uart_rx.i), uart_tx.o.eq(board.uart_tx)]

        # Signs of life: a LED toggling every 2**(width - 1) cycles (0.5 to 0.9 s).
        if self.board.led:
            resource, _, subsignal = self.board.led.partition(".")
            led = platform.request(resource, 0, dir="-")
            m.submodules.led_buf = led_buf = io.Buffer("o", getattr(led, subsignal) if subsignal else led)
            blink = Signal(range(self.board.clock_hz))
            m.d.sync += blink.eq(blink + 1)
            m.d.comb += led_buf.o.eq(blink[-1])
        return m
