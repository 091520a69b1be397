# amaranth: UnusedElaboratable=no
# (Blocks made only to be refused, or for their address map, are never elaborated.)
"""The register block in the Amaranth simulator: every kind of register, read and written over the bus."""

import dataclasses

import pytest
from amaranth.sim import Simulator

from tick2trade.hdl.csr import MAGIC, READ_LATENCY, RegisterBlock, layout_word


def make_block():
    return RegisterBlock(
        config={"mac": (48, 0x0200_0000_0001), "port": (16, 26477), "position": (32, 0)},
        strobes={"rearm": 2},
        state={"sequence": 32},
        status={"level": 20},
        counters={"frames": 1, "bytes": 4},
    )


def run(block, bench):
    simulator = Simulator(block)
    simulator.add_clock(1e-8)
    simulator.add_testbench(bench)
    simulator.run()


async def write(ctx, block, address, value):
    ctx.set(block.bus.addr, address)
    ctx.set(block.bus.w_data, value)
    ctx.set(block.bus.w_en, 1)
    await ctx.tick()
    ctx.set(block.bus.w_en, 0)


async def read(ctx, block, address):
    ctx.set(block.bus.addr, address)
    await ctx.tick().repeat(READ_LATENCY)
    return ctx.get(block.bus.r_data)


def test_address_map_packs_wide_registers_in_words():
    block = make_block()
    registers = block.registers
    assert (registers["magic"].address, registers["layout"].address) == (0, 1)
    assert (registers["mac"].address, registers["mac"].words) == (2, 2)
    assert registers["port"].address == 4  # after both words of the MAC
    order = sorted(registers, key=lambda name: registers[name].address)
    assert order == ["magic", "layout", "mac", "port", "position", "rearm", "clear", "sequence", "level", "frames",
                     "bytes"]
    assert [registers[name].kind for name in order] == [
        "magic", "magic", "config", "config", "config", "strobe", "strobe", "state", "status", "counter", "counter"]
    assert block.address_map == {name: register.address for name, register in registers.items()}
    # The layout word tells maps apart: another name, width or place changes it.
    for changed in ({**registers, "port": dataclasses.replace(registers["port"], width=8)},
                    {name: register for name, register in registers.items() if name != "bytes"}):
        assert layout_word(changed) != layout_word(registers)


def test_every_kind_reads_and_writes():
    block = make_block()
    registers = block.registers

    async def bench(ctx):
        assert await read(ctx, block, 0) == MAGIC
        assert await read(ctx, block, 1) == layout_word(registers) == block.layout
        # A wide configuration register: reset value, then each word written alone.
        assert await read(ctx, block, registers["mac"].address) == 0x0000_0001
        assert await read(ctx, block, registers["mac"].address + 1) == 0x0200
        await write(ctx, block, registers["mac"].address + 1, 0xABCD)
        await write(ctx, block, registers["mac"].address, 0x1234_5678)
        assert ctx.get(block.mac) == 0xABCD_1234_5678
        assert await read(ctx, block, registers["mac"].address + 1) == 0xABCD
        # A strobe is high for exactly one cycle.
        ctx.set(block.bus.addr, registers["rearm"].address)
        ctx.set(block.bus.w_data, 0b10)
        ctx.set(block.bus.w_en, 1)
        await ctx.tick()
        ctx.set(block.bus.w_en, 0)
        assert ctx.get(block.rearm) == 0b10
        await ctx.tick()
        assert ctx.get(block.rearm) == 0
        # State: reads follow the port; a write pulses _write with the word, even a zero.
        ctx.set(block.sequence, 777)
        assert await read(ctx, block, registers["sequence"].address) == 777
        ctx.set(block.bus.addr, registers["sequence"].address)
        ctx.set(block.bus.w_data, 0)
        ctx.set(block.bus.w_en, 1)
        await ctx.tick()
        ctx.set(block.bus.w_en, 0)
        assert (ctx.get(block.sequence_write), ctx.get(block.sequence_data)) == (1, 0)
        await ctx.tick()
        assert ctx.get(block.sequence_write) == 0
        # Status and counters.
        ctx.set(block.level, 0xF_FFFF)
        assert await read(ctx, block, registers["level"].address) == 0xF_FFFF
        ctx.set(block.bytes, 3)
        await ctx.tick().repeat(5)
        ctx.set(block.bytes, 0)
        assert await read(ctx, block, registers["bytes"].address) == 15
        await write(ctx, block, registers["clear"].address, 1)
        assert await read(ctx, block, registers["bytes"].address) == 0

    run(block, bench)


@pytest.mark.parametrize("kwargs, message", [
    ({"config": {"x": (8, 256)}}, "does not fit"),
    ({"config": {}, "status": {"x": 33}}, "wider than a word"),
    ({"config": {"x": (8, 0)}, "status": {"x": 8}}, "used twice"),
    ({"config": {"x": (32, 0)}, "address_width": 1}, "do not fit"),
])
def test_bad_parameters_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        RegisterBlock(**kwargs)
