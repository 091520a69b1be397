"""The boards tick2trade builds for: part, clocks, UART, programmer and configuration.

One ``Board`` per supported board (``BOARDS``, by name); docs/boards.md
describes each and records what its build used. A board's
``configuration`` says what gateware it gets: the core (``pipeline``, the
whole tick-to-trade pipeline, or ``rx_path``, the receive path alone), the
core's parameters, and the ``reductions``: everything left out or made
smaller than the full build, named, so that build.json and
``tick2trade boards`` never present a reduced build as the full one.

The full build is ``Pipeline(slots=DEFAULT_SLOTS, capacity=4096, levels=4)``.
Every board's design clock is a whole number of MHz so that the host link's
1,000,000 baud is a whole number of clocks per bit.
"""

import hashlib
import importlib
from dataclasses import dataclass, field
from pathlib import Path

from ..hdl.pipeline import DEFAULT_SLOTS
from ..hdl.rx_path import COUNTERS

__all__ = ["Board", "Configuration", "BOARDS", "UnknownBoardError", "get_board", "DESIGN_NAME",
           "DEFAULT_BUILD_ROOT", "FULL"]

#: The design's name in a build: the bitstream is ``DESIGN_NAME.bit`` (ECP5) or ``.bin`` (iCE40).
DESIGN_NAME = "tick2trade"
#: Where ``tick2trade build --board NAME`` writes, without ``--out``: ``DEFAULT_BUILD_ROOT/NAME``.
DEFAULT_BUILD_ROOT = Path("out/build")


class UnknownBoardError(ValueError):
    """A board name that is not in the registry; the message names the known ones."""


@dataclass(frozen=True)
class Configuration:
    """What gateware a board gets.

    ``core`` is a key of ``hdl.board_top.CORES``; ``parameters`` its keyword
    arguments (pairs); ``reductions`` what is left out or smaller than the
    full build, in words (empty for the full build); ``router`` the nextpnr
    router (docs/synthesis.md); ``nextpnr_opts`` further nextpnr options.
    """
    name: str
    core: str
    parameters: tuple = ()
    reductions: tuple = ()
    router: str = "router1"
    nextpnr_opts: tuple = ()

    @property
    def key(self):
        """A name for the core this builds, the same for every configuration that builds the same one."""
        digest = hashlib.sha1(repr(self.parameters).encode()).hexdigest()[:8]
        return f"{self.core}_{digest}"

    def to_dict(self):
        parameters = {name: list(value) if isinstance(value, tuple) else value for name, value in self.parameters}
        return {"name": self.name, "core": self.core, "parameters": parameters,
                "reductions": list(self.reductions), "router": self.router,
                "nextpnr_opts": list(self.nextpnr_opts)}


#: The whole pipeline, as `make synth` measures it, placed by nextpnr's "static" (electrostatic)
#: placer and routed by router1: placed by its default ("heap"), neither router converged as the
#: fast path grew (router2's overused wires fell to about 1400, then rose again, on the ULX3S at
#: every placement density tried, and then on the ECPIX-5; router1 was still ripping up after 40
#: minutes); placed by static, both route, router1 to a far higher Fmax (docs/boards.md).
FULL = Configuration(
    name="full", core="pipeline",
    parameters=(("slots", DEFAULT_SLOTS), ("capacity", 4096), ("levels", 4)),
    nextpnr_opts=("--placer", "static"))

#: The iCE40 UP5K (5280 logic cells, 30 block RAMs, 8 DSPs) cannot hold the pipeline (about 15k
#: LUT4 and 14k flip-flops on the ECP5). The receive path with all 31 counters and the link needed
#: 6705 cells (127%); with 8 counters 5327 (101%); with these 4, 5003 (95%): docs/boards.md.
ICE40_COUNTERS = ("frames", "frames_ok", "msgs", "mold_gap")
RECEIVE_ONLY = Configuration(
    name="receive-path", core="rx_path",
    parameters=(("counters", ICE40_COUNTERS),),
    reductions=(
        "receive path only (Ethernet/IPv4/UDP filter, MoldUDP64, ITCH framing): no order book, "
        "strategies, risk gate, order transmitter or latency probes",
        "no tracked instruments and no order table",
        f"{len(ICE40_COUNTERS)} of the receive path's {len(COUNTERS)} counters ({', '.join(ICE40_COUNTERS)})",
        "no order frames: nothing reaches the link's tx",
        "decoded messages go nowhere (nothing reads them, so Yosys removes the ITCH decoder)",
    ))


#: The ECP5-25F (24288 LUT4, 56 DP16KD, 28 MULT18X18D) places the pipeline but nextpnr's router2
#: does not converge on it: full (93% of the LUT4s before packing), levels 2 and levels 1 alike,
#: the overused wires stop falling after some ten iterations and rise again (docs/boards.md). It
#: gets the receive path with every counter (about a quarter of the device).
RECEIVE_PATH_25F = Configuration(
    name="receive-path", core="rx_path",
    reductions=(
        "receive path only (Ethernet/IPv4/UDP filter, MoldUDP64, ITCH framing, all its counters): "
        "no order book, strategies, risk gate, order transmitter or latency probes (the pipeline does "
        "not route on the LFE5U-25F)",
        "no tracked instruments and no order table",
        "no order frames: nothing reaches the link's tx",
        "decoded messages go nowhere (nothing reads them, so Yosys removes the ITCH decoder)",
    ))


@dataclass(frozen=True)
class Board:
    """One supported board (see the module docstring).

    ``platform`` is the amaranth-boards class as "module:Class";
    ``device``, ``package``, ``speed`` the part as that class names it;
    ``oscillator_hz`` the board's clock input, ``clock_hz`` the design's
    (through a PLL when they differ); ``uart`` how the host reaches the
    link; ``led`` the LED that blinks, as the platform's resource name
    (number 0) and subsignal ("rgb_led.g"), or None (where the only LED is a
    UART pin); ``openfpgaloader`` the arguments before the bitstream.
    """
    name: str
    title: str
    platform: str
    family: str
    device: str
    package: str
    speed: str
    oscillator_hz: int
    clock_hz: int
    configuration: Configuration
    uart: str
    openfpgaloader: tuple
    programmer: str
    led: str = "led"
    notes: tuple = field(default=())

    @property
    def part(self):
        return f"{self.device} {self.package}" + (f" speed {self.speed}" if self.speed else "")

    @property
    def clock_mhz(self):
        return self.clock_hz / 1e6

    @property
    def bitstream_suffix(self):
        return {"ecp5": "bit", "ice40": "bin"}[self.family]

    @property
    def bitstream_name(self):
        return f"{DESIGN_NAME}.{self.bitstream_suffix}"

    def default_out_dir(self):
        return DEFAULT_BUILD_ROOT / self.name

    def platform_class(self):
        module_name, _, class_name = self.platform.partition(":")
        return getattr(importlib.import_module(module_name), class_name)

    def make_platform(self):
        return self.platform_class()()


_ON_BOARD_UART = "on-board USB UART ({}), the same USB cable as programming"

BOARDS = {board.name: board for board in (
    Board(
        name="ulx3s-85f", title="Radiona ULX3S, 85F",
        platform="amaranth_boards.ulx3s:ULX3S_85F_Platform",
        family="ecp5", device="LFE5U-85F", package="BG381", speed="6",
        oscillator_hz=25_000_000, clock_hz=55_000_000, configuration=FULL,
        uart=_ON_BOARD_UART.format("FT231X, port US1"),
        openfpgaloader=("-b", "ulx3s", "-m"), programmer="on-board FT231X (JTAG), SRAM"),
    Board(
        name="ecpix5-85f", title="LambdaConcept ECPIX-5, 85F",
        platform="amaranth_boards.ecpix5:ECPIX585Platform",
        family="ecp5", device="LFE5UM5G-85F", package="BG554", speed="8",
        oscillator_hz=100_000_000, clock_hz=80_000_000, configuration=FULL,
        uart=_ON_BOARD_UART.format("FT2232, second channel"),
        openfpgaloader=("-b", "ecpix5", "-m"), programmer="on-board FT2232 (JTAG), SRAM", led="rgb_led.g",
        notes=("board revision 3 (FT4232): flash with --cable ft4232",)),
    Board(
        name="colorlight-5a75b", title="Colorlight 5A-75B, revision 7.0",
        platform="amaranth_boards.colorlight_5a75b_r7_0:Colorlight_5A75B_R70Platform",
        family="ecp5", device="LFE5U-25F", package="BG256", speed="6",
        oscillator_hz=25_000_000, clock_hz=50_000_000, configuration=RECEIVE_PATH_25F,
        uart="no USB UART: amaranth-boards' uart on connector J19 (FPGA tx P11, the LED's line; "
             "FPGA rx M13, the button's line), 3.3 V: wire an external 3.3 V USB-UART adapter "
             "(docs/boards.md)",
        openfpgaloader=("-c", "ft232", "-m"),
        programmer="external JTAG adapter on the board's JTAG pads (FT232H by default, --cable to change), SRAM",
        led=None,
        notes=("the board's LED shares its pin with the UART's tx: it flickers with link traffic",)),
    Board(
        name="icebreaker", title="1BitSquared iCEBreaker",
        platform="amaranth_boards.icebreaker:ICEBreakerPlatform",
        family="ice40", device="iCE40UP5K", package="SG48", speed="",
        oscillator_hz=12_000_000, clock_hz=12_000_000, configuration=RECEIVE_ONLY,
        uart=_ON_BOARD_UART.format("FT2232H, channel B"),
        openfpgaloader=("-b", "ice40_generic"),
        programmer="on-board FT2232H (SPI flash: the iCE40 loads from it)"),
)}


def get_board(name):
    """The registry entry ``name``; UnknownBoardError (one line naming the known boards) if none."""
    try:
        return BOARDS[name]
    except KeyError:
        raise UnknownBoardError(f"unknown board {name!r}; known: {', '.join(BOARDS)}") from None
