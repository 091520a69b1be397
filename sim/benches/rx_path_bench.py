"""cocotb bench of the whole receive path, driven by the device interface.

It is not a test on its own: ``CocotbRxDevice`` writes the stimulus (frames
and how to pace them) to the file named by ``T2T_STIMULUS``, and reads what
left the pipeline from the file named by ``T2T_RESULT``. The beat schedule is
``schedule_beats``, the same as every other backend's.
"""

import json
import os

import cocotb

from tick2trade.hdl.moldudp64_rx import PacketEnd
from tick2trade.hdl.rx_path import COUNTERS
from tick2trade.host.device import RxFrame, schedule_beats
from tick2trade.sim.benches.bus import DesignBench
from tick2trade.sim.ports import unpack

#: Cycles run after the last beat so that everything in flight has left.
DRAIN_CYCLES = 8


@cocotb.test()
async def rx_path(dut):
    """Drive the stimulus beat by beat; record every message and packet end with its cycle."""
    with open(os.environ["T2T_STIMULUS"]) as file:
        stimulus = json.load(file)
    frames = [RxFrame(bytes.fromhex(data), err) for data, err in stimulus["frames"]]
    address_map = stimulus["address_map"]
    schedule = schedule_beats(frames, idle_probability=stimulus["idle_probability"],
                              seed=stimulus["seed"])

    bench = DesignBench(dut)
    await bench.reset()
    for name in ("dst_ip", "dst_port"):
        await bench.write(address_map[name], stimulus[name])

    messages, message_cycles, packet_ends = [], [], []
    beat_cycles = [[] for _ in frames]
    idle = [None] * DRAIN_CYCLES
    # Outputs are sampled and inputs changed at falling edges, half a cycle
    # from the rising edge on which the design registers them.
    for cycle, beat in enumerate(schedule + idle):
        if dut.messages__valid.value:
            messages.append(format(dut.messages__payload.value.to_unsigned(), "x"))
            message_cycles.append(cycle)
        if dut.packet_end__valid.value:
            packet_ends.append(bool(unpack(PacketEnd, dut.packet_end__payload.value.to_unsigned())["bad"]))
        bench.drive_beat(beat)
        if beat is not None:
            beat_cycles[beat.frame].append(cycle)
        await bench.tick()

    counters = {name: await bench.read(address_map[name]) for name in COUNTERS}
    with open(os.environ["T2T_RESULT"], "w") as file:
        json.dump({"messages": messages, "message_cycles": message_cycles, "packet_ends": packet_ends,
                   "beat_cycles": beat_cycles, "counters": counters}, file)
