"""cocotb bench for ``RegisteredAdder``: its outputs must equal the Python model's.

Parameters come through environment variables (``extra_env`` of
``tick2trade.sim.runner.run``):

- ``SMOKE_SEED``: seed of the random operands and idle cycles (default 1).
- ``SMOKE_BEATS``: number of input beats (default 40).
- ``SMOKE_OUTPUT``: if set, the decoded output beats are written there as JSON.
- ``SMOKE_MODEL_ERROR``: added to every sum the model expects (default 0).
  A non-zero value makes the bench fail on purpose, to check that a failing
  cocotb test surfaces as a pytest failure.
"""

import json
import os
import random

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge

from tick2trade.sim.ports import pack, unpack, verilog_ports

from .smoke_design import Operands, RegisteredAdder, Total, expected_totals, random_operands


@cocotb.test()
async def adder_matches_python_model(dut):
    """Drive random operands with random idle cycles; compare every output beat with the model."""
    seed = int(os.environ.get("SMOKE_SEED", "1"))
    beat_count = int(os.environ.get("SMOKE_BEATS", "40"))
    model_error = int(os.environ.get("SMOKE_MODEL_ERROR", "0"))

    for port in verilog_ports(RegisteredAdder()):
        assert len(getattr(dut, port.name)) == port.width, port

    operands = random_operands(seed, beat_count)
    # Each input beat is preceded by 0 to 2 idle cycles, so valid drops between beats.
    rng = random.Random(seed)
    schedule = []
    for beat in operands:
        schedule += [None] * rng.randrange(3) + [beat]
    schedule += [None, None]  # flush the output register

    Clock(dut.clk, 10, unit="ns").start()
    dut.rst.value = 1
    dut.rx__valid.value = 0
    dut.rx__payload.value = 0
    await FallingEdge(dut.clk)
    await FallingEdge(dut.clk)
    dut.rst.value = 0

    received = []
    # Inputs change and outputs are sampled at falling edges, half a cycle
    # away from the rising edge on which the design registers them.
    for beat in schedule:
        await FallingEdge(dut.clk)
        if dut.total__valid.value:
            received.append(unpack(Total, dut.total__payload.value.to_unsigned()))
        dut.rx__valid.value = beat is not None
        dut.rx__payload.value = pack(Operands, beat) if beat is not None else 0

    if "SMOKE_OUTPUT" in os.environ:
        with open(os.environ["SMOKE_OUTPUT"], "w") as output:
            json.dump(received, output)

    expected = [
        {**total, "value": total["value"] + model_error} for total in expected_totals(operands)
    ]
    assert received == expected, f"first difference at beat {_first_difference(received, expected)}"


def _first_difference(received: list, expected: list) -> int:
    """Index of the first beat where ``received`` and ``expected`` differ."""
    return next(
        (index for index, (got, want) in enumerate(zip(received, expected)) if got != want),
        min(len(received), len(expected)),
    )
