"""cocotb bench of the whole receive path, driven by the device interface.

It is not a test on its own: ``CocotbRxDevice`` writes the stimulus (frames
and how to pace them) to the file named by ``T2T_STIMULUS``, and reads what
left the pipeline from the file named by ``T2T_RESULT``. The beat schedule is
``schedule_beats``, the same as every other backend's.
"""

import json
import os

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge

from tick2trade.hdl.csr import READ_LATENCY
from tick2trade.hdl.moldudp64_rx import PacketEnd
from tick2trade.hdl.rx_path import COUNTERS
from tick2trade.hdl.stream import Beat
from tick2trade.host.device import RxFrame, schedule_beats
from tick2trade.sim.ports import pack, unpack

#: Cycles run after the last beat so that everything in flight has left.
DRAIN_CYCLES = 8


async def write_register(dut, address_map, name, value):
    dut.csr__addr.value = address_map[name]
    dut.csr__w_data.value = value
    dut.csr__w_en.value = 1
    await FallingEdge(dut.clk)
    dut.csr__w_en.value = 0


async def read_register(dut, address_map, name):
    dut.csr__addr.value = address_map[name]
    for _ in range(READ_LATENCY):
        await FallingEdge(dut.clk)
    return dut.csr__r_data.value.to_unsigned()


@cocotb.test()
async def rx_path(dut):
    """Drive the stimulus beat by beat; record every message and packet end with its cycle."""
    with open(os.environ["T2T_STIMULUS"]) as file:
        stimulus = json.load(file)
    frames = [RxFrame(bytes.fromhex(data), err) for data, err in stimulus["frames"]]
    address_map = stimulus["address_map"]
    schedule = schedule_beats(frames, idle_probability=stimulus["idle_probability"],
                              seed=stimulus["seed"])

    Clock(dut.clk, 6.4, unit="ns").start()
    dut.rst.value = 1
    dut.rx__valid.value = 0
    dut.rx__payload.value = 0
    dut.csr__w_en.value = 0
    await FallingEdge(dut.clk)
    await FallingEdge(dut.clk)
    dut.rst.value = 0
    for name in ("dst_ip", "dst_port"):
        await write_register(dut, address_map, name, stimulus[name])

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
        if beat is None:
            dut.rx__valid.value = 0
        else:
            dut.rx__valid.value = 1
            dut.rx__payload.value = pack(Beat, {"data": beat.data, "keep": beat.keep, "first": int(beat.first),
                                                "last": int(beat.last), "err": int(beat.err)})
            beat_cycles[beat.frame].append(cycle)
        await FallingEdge(dut.clk)

    counters = {name: await read_register(dut, address_map, name) for name in COUNTERS}
    with open(os.environ["T2T_RESULT"], "w") as file:
        json.dump({"messages": messages, "message_cycles": message_cycles, "packet_ends": packet_ends,
                   "beat_cycles": beat_cycles, "counters": counters}, file)
