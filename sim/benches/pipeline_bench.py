"""cocotb bench of the whole pipeline, driven by the device interface.

Not a test on its own: ``CocotbPipelineDevice`` writes the stimulus (register
writes, frames and how to pace them, how often ``tx`` is not ready) to the
file named by ``T2T_STIMULUS`` and reads what left ``tx`` from the file named
by ``T2T_RESULT``. Cycle numbers are those of the design's own cycle counter
(cycles since reset), so that they compare with its latency probes.
"""

import json
import os
import random

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge, ReadOnly

from tick2trade.hdl.csr import READ_LATENCY
from tick2trade.hdl.stream import Beat
from tick2trade.host.device import RxFrame, schedule_beats
from tick2trade.sim.ports import pack, unpack

#: Cycles without any beat on ``tx`` after which a run counts as drained.
QUIET_CYCLES = 256


class PipelineBench:
    """The clock, the register bus, and a cycle count matching the design's."""

    def __init__(self, dut):
        self.dut = dut
        self.cycle = 0

    async def tick(self):
        await FallingEdge(self.dut.clk)
        self.cycle += 1

    async def reset(self):
        dut = self.dut
        Clock(dut.clk, 6.4, unit="ns").start()
        dut.rst.value = 1
        dut.rx__valid.value = 0
        dut.rx__payload.value = 0
        dut.tx__ready.value = 0
        dut.csr__w_en.value = 0
        await FallingEdge(dut.clk)
        await FallingEdge(dut.clk)
        dut.rst.value = 0
        self.cycle = 0  # the design's counter reads 0 in the first cycle after reset

    async def write(self, address, word):
        self.dut.csr__addr.value = address
        self.dut.csr__w_data.value = word
        self.dut.csr__w_en.value = 1
        await self.tick()
        self.dut.csr__w_en.value = 0

    async def read(self, address, words=1):
        value = 0
        for word in range(words):
            self.dut.csr__addr.value = address + word
            for _ in range(READ_LATENCY):
                await self.tick()
            value |= self.dut.csr__r_data.value.to_unsigned() << (32 * word)
        return value


@cocotb.test()
async def pipeline(dut):
    """Configure, drive the frames beat by beat, collect every order frame with its first beat's cycle."""
    with open(os.environ["T2T_STIMULUS"]) as file:
        stimulus = json.load(file)
    frames = [RxFrame(bytes.fromhex(data), err) for data, err in stimulus["frames"]]
    schedule = schedule_beats(frames, idle_probability=stimulus["idle_probability"], seed=stimulus["seed"])
    ready_rng = random.Random(f"tx_ready/{stimulus['seed']}")
    ready_probability = stimulus["tx_ready_probability"]

    bench = PipelineBench(dut)
    await bench.reset()
    for address, word in stimulus["writes"]:
        await bench.write(address, word)

    tx_frames, beat_cycles = [], [[] for _ in frames]
    current = None  # [bytes, first beat cycle]
    quiet = 0
    position = 0
    # Inputs change at falling edges, half a cycle from the rising edge on which the design
    # registers them; outputs are sampled once they have settled on this cycle's inputs.
    while position < len(schedule) or quiet < QUIET_CYCLES:
        ready = ready_probability >= 1.0 or ready_rng.random() < ready_probability
        dut.tx__ready.value = int(ready)
        beat = schedule[position] if position < len(schedule) else None
        position += 1
        if beat is None:
            dut.rx__valid.value = 0
        else:
            dut.rx__valid.value = 1
            dut.rx__payload.value = pack(Beat, {"data": beat.data, "keep": beat.keep, "first": int(beat.first),
                                                "last": int(beat.last), "err": int(beat.err)})
            beat_cycles[beat.frame].append(bench.cycle)
        await ReadOnly()
        quiet += 1
        if dut.tx__valid.value and ready:
            quiet = 0
            word = unpack(Beat, dut.tx__payload.value.to_unsigned())
            if word["first"]:
                current = [b"", bench.cycle]
            kept = bin(word["keep"]).count("1")
            current[0] += word["data"].to_bytes(8, "little")[:kept]
            if word["last"]:
                tx_frames.append([current[0].hex(), bool(word["err"]), current[1]])
                current = None
        await bench.tick()
    dut.rx__valid.value = 0
    dut.tx__ready.value = 1

    registers = {name: await bench.read(address, words) for name, (address, words) in stimulus["reads"].items()}
    probes = []
    select = stimulus["probe_select"]
    for index in range(stimulus["probe_depth"]):
        await bench.write(select, index)
        probes.append([await bench.read(address) for address in stimulus["probe_registers"]])
    with open(os.environ["T2T_RESULT"], "w") as file:
        json.dump({"frames": tx_frames, "beat_cycles": beat_cycles, "registers": registers, "probes": probes},
                  file)
