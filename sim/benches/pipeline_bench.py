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
from cocotb.triggers import ReadOnly

from tick2trade.hdl.stream import Beat
from tick2trade.host.device import RxFrame, schedule_beats
from tick2trade.sim.benches.bus import DesignBench
from tick2trade.sim.ports import unpack

#: Cycles without any beat on ``tx`` after which a run counts as drained.
QUIET_CYCLES = 256


@cocotb.test()
async def pipeline(dut):
    """Configure, drive the frames beat by beat, collect every order frame with its first beat's cycle."""
    with open(os.environ["T2T_STIMULUS"]) as file:
        stimulus = json.load(file)
    frames = [RxFrame(bytes.fromhex(data), err) for data, err in stimulus["frames"]]
    schedule = schedule_beats(frames, idle_probability=stimulus["idle_probability"], seed=stimulus["seed"])
    ready_rng = random.Random(f"tx_ready/{stimulus['seed']}")
    ready_probability = stimulus["tx_ready_probability"]

    bench = DesignBench(dut)
    await bench.reset(idle_outputs=("tx__ready",))
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
        bench.drive_beat(beat)
        if beat is not None:
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
