"""The receive path in Amaranth's own simulator, in-process, behind the device interface."""

from amaranth.hdl import Value
from amaranth.sim import Simulator

from ..hdl.csr import READ_LATENCY
from ..hdl.rx_path import COUNTERS, RxPath
from ..host.device import RxResult, schedule_beats
from .records import record_from_message

__all__ = ["AmaranthRxDevice", "read_counters"]

#: Cycles run after the last beat so that everything in flight has left.
DRAIN_CYCLES = 8


async def read_counters(ctx, dut):
    """Read every counter over the register bus."""
    counters = {}
    for name in COUNTERS:
        ctx.set(dut.csr.addr, dut.address_map[name])
        await ctx.tick().repeat(READ_LATENCY)
        counters[name] = ctx.get(dut.csr.r_data)
    return counters


class AmaranthRxDevice:
    """Runs ``RxPath`` in the Amaranth simulator. Slow (a few thousand cycles a second): for
    block-sized tests and small files; use Verilator for large ones."""

    def __init__(self, *, dst_ip=None, dst_port=None, waves=None):
        options = {k: v for k, v in (("dst_ip", dst_ip), ("dst_port", dst_port)) if v is not None}
        self._dut = RxPath(**options)
        self._waves = waves

    def run(self, frames, *, idle_probability=0.0, seed=0, progress=None):
        """Drive ``frames`` (RxFrame) and return an RxResult with cycle numbers."""
        dut = self._dut
        schedule = schedule_beats(frames, idle_probability=idle_probability, seed=seed)
        result = RxResult(messages=[], packet_ends=[], counters={},
                          beat_cycles=[[] for _ in frames])

        async def drive(ctx):
            for cycle, beat in enumerate(schedule):
                ctx.set(dut.rx.valid, beat is not None)
                if beat is not None:
                    ctx.set(dut.rx.p, {"data": beat.data, "keep": beat.keep, "first": beat.first,
                                       "last": beat.last, "err": beat.err})
                    result.beat_cycles[beat.frame].append(cycle)
                await ctx.tick()
                if progress and beat is not None and beat.last:
                    progress(beat.frame + 1, len(frames))
            ctx.set(dut.rx.valid, 0)
            await ctx.tick().repeat(DRAIN_CYCLES)
            result.counters = await read_counters(ctx, dut)

        async def collect(ctx):
            cycle = 0
            message_word = Value.cast(dut.messages.p)
            async for _clk, _rst, valid, word, end_valid, end in ctx.tick().sample(
                    dut.messages.valid, message_word, dut.packet_end.valid, dut.packet_end.p.bad):
                if valid:
                    result.messages.append(record_from_message(word))
                    result.message_cycles.append(cycle)
                if end_valid:
                    result.packet_ends.append(bool(end))
                cycle += 1

        simulator = Simulator(dut)
        simulator.add_clock(6.4e-9)
        simulator.add_testbench(drive)
        simulator.add_process(collect)
        if self._waves:
            with simulator.write_vcd(self._waves):
                simulator.run()
        else:
            simulator.run()
        return result
