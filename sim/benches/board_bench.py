"""cocotb bench of a simulated board: the board's core and host link, its UART pins on a pseudo-terminal.

The design is ``BoardCore`` (hdl/board_top.py): what a board build puts
behind its clock and pins. The bench opens a pseudo-terminal, writes its
path to the file ``T2T_BOARD_PTY`` names, and from then on plays the USB
serial bridge of a board: every byte the host writes to the terminal is sent
to the ``uart_rx`` pin bit by bit (8N1, ``T2T_CLOCKS_PER_BIT`` clocks per
bit), and every byte the link sends on ``uart_tx`` is sampled in the middle
of its bits and written back to the terminal. The host side is the same
code that talks to a board (host/serial_device.py).

While the host sends nothing the design keeps running in short stretches,
resting the CPU between them; simulated time does not pass while it rests,
so cycle stamps count the design's cycles, not the host's wall-clock time.
The bench ends when the file ``T2T_BOARD_STOP`` names exists, or when the
process that started the simulator is gone (killed before it could ask), so
that a simulated board never outlives its host.
"""

import os
import time
import tty

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, FallingEdge, Timer

#: The design clock's period, ns.
PERIOD_NS = 10
#: Cycles the design runs between two looks at the terminal when the host is quiet.
IDLE_STRETCH = 64
#: Quiet looks after which the bench rests this long (seconds) between them.
QUIET_LOOKS, REST_S = 32, 0.001


def _read(fd):
    try:
        return os.read(fd, 4096)
    except BlockingIOError:
        return b""


def _write(fd, data):
    while data:
        try:
            data = data[os.write(fd, data):]
        except BlockingIOError:
            time.sleep(REST_S)


def _cycles(count):
    """``count`` clock periods: one timer, where counting clock edges would wake Python at each."""
    return Timer(count * PERIOD_NS, unit="ns")


async def _send_byte(dut, byte, clocks_per_bit):
    """One 8N1 character on ``uart_rx``, least significant bit first (bits change at falling clock edges)."""
    for bit in (0, *((byte >> i) & 1 for i in range(8)), 1):
        dut.uart_rx.value = bit
        await _cycles(clocks_per_bit)


async def _receive(dut, fd, clocks_per_bit):
    """Characters from ``uart_tx``, sampled mid-bit, to the terminal."""
    while True:
        await FallingEdge(dut.uart_tx)  # at a rising clock edge: sample half a cycle off the bit's middle
        await Timer((clocks_per_bit // 2) * PERIOD_NS + PERIOD_NS // 2, unit="ns")
        if dut.uart_tx.value:  # a glitch, not a start bit
            continue
        byte = 0
        for i in range(8):
            await _cycles(clocks_per_bit)
            byte |= int(dut.uart_tx.value) << i
        await _cycles(clocks_per_bit)  # the middle of the stop bit
        _write(fd, bytes([byte]))


@cocotb.test()
async def board(dut):
    clocks_per_bit = int(os.environ["T2T_CLOCKS_PER_BIT"])
    stop_path = os.environ["T2T_BOARD_STOP"]
    cocotb.start_soon(Clock(dut.clk, PERIOD_NS, unit="ns").start())
    dut.uart_rx.value = 1
    dut.rst.value = 1
    await ClockCycles(dut.clk, 4)
    await FallingEdge(dut.clk)  # from here on, timers end at falling edges
    dut.rst.value = 0

    master, slave = os.openpty()
    tty.setraw(slave)  # no echo, no line editing, bytes as they are
    os.set_blocking(master, False)
    announce = os.environ["T2T_BOARD_PTY"]
    with open(announce + ".part", "w") as file:
        file.write(os.ttyname(slave))
    os.replace(announce + ".part", announce)

    cocotb.start_soon(_receive(dut, master, clocks_per_bit))
    host = os.getppid()
    quiet = 0
    try:
        while True:
            data = _read(master)
            if data:
                quiet = 0
                for byte in data:
                    await _send_byte(dut, byte, clocks_per_bit)
                continue
            if os.path.exists(stop_path) or os.getppid() != host:
                return
            quiet += 1
            if quiet > QUIET_LOOKS:
                time.sleep(REST_S)
            await _cycles(IDLE_STRETCH)
    finally:
        os.close(master)
        os.close(slave)
