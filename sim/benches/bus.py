"""What every cocotb bench of a design with ``rx`` and a register bus shares.

``DesignBench`` starts the clock, holds reset, drives the register bus and
beats at ``rx``, and counts cycles like the design's own cycle counter does
(0 in the first cycle after reset). Inputs change at falling edges, half a
cycle from the rising edge on which the design registers them.
"""

from cocotb.clock import Clock
from cocotb.triggers import FallingEdge

from tick2trade.hdl.csr import READ_LATENCY
from tick2trade.hdl.stream import Beat
from tick2trade.sim.ports import pack

__all__ = ["DesignBench"]


class DesignBench:
    """Clock, reset, register reads and writes, and beats at ``rx`` for ``dut``."""

    def __init__(self, dut):
        self.dut = dut
        self.cycle = 0

    async def tick(self):
        await FallingEdge(self.dut.clk)
        self.cycle += 1

    async def reset(self, *, idle_outputs=()):
        """Start the clock and hold reset for two cycles; ``idle_outputs``: ready-style inputs set to 0."""
        dut = self.dut
        Clock(dut.clk, 6.4, unit="ns").start()
        dut.rst.value = 1
        dut.rx__valid.value = 0
        dut.rx__payload.value = 0
        dut.csr__w_en.value = 0
        for name in idle_outputs:
            getattr(dut, name).value = 0
        await FallingEdge(dut.clk)
        await FallingEdge(dut.clk)
        dut.rst.value = 0
        self.cycle = 0

    async def write(self, address, word):
        self.dut.csr__addr.value = address
        self.dut.csr__w_data.value = word
        self.dut.csr__w_en.value = 1
        await self.tick()
        self.dut.csr__w_en.value = 0

    async def read(self, address, words=1):
        """The register at ``address``, ``words`` words wide (least significant word first)."""
        value = 0
        for word in range(words):
            self.dut.csr__addr.value = address + word
            for _ in range(READ_LATENCY):
                await self.tick()
            value |= self.dut.csr__r_data.value.to_unsigned() << (32 * word)
        return value

    def drive_beat(self, beat):
        """Present ``beat`` (an ``RxBeat``, or None for an idle cycle) at ``rx`` this cycle."""
        dut = self.dut
        if beat is None:
            dut.rx__valid.value = 0
            return
        dut.rx__valid.value = 1
        dut.rx__payload.value = pack(Beat, {"data": beat.data, "keep": beat.keep, "first": int(beat.first),
                                            "last": int(beat.last), "err": int(beat.err)})
