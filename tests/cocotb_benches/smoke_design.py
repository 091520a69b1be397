"""A tiny registered adder with struct-typed streams: the design of the simulator smoke test.

It is small enough to build in seconds, yet has what the real pipeline's
ports have: a stream whose payload is a ``data.Struct`` (flattened by
Amaranth into one ``rx__payload`` port), an ``always_ready`` stream (whose
``ready`` member is a constant, not a port), a signed field, and state kept
across cycles (``Total.beats``).
"""

import random

from amaranth import Module, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out


class Operands(data.Struct):
    """One input beat: the two numbers to add."""

    a: unsigned(16)
    b: signed(8)


class Total(data.Struct):
    """One output beat: the sum, and how many beats were added so far (wrapping)."""

    value: signed(18)
    beats: unsigned(4)


class RegisteredAdder(wiring.Component):
    """Adds ``a + b`` of each valid input beat; the result appears one cycle later."""

    rx: In(stream.Signature(Operands, always_ready=True))
    total: Out(stream.Signature(Total, always_ready=True))

    def elaborate(self, platform):
        m = Module()
        m.d.sync += self.total.valid.eq(self.rx.valid)
        with m.If(self.rx.valid):
            m.d.sync += [
                self.total.payload.value.eq(self.rx.payload.a + self.rx.payload.b),
                self.total.payload.beats.eq(self.total.payload.beats + 1),
            ]
        return m


def random_operands(seed: int, count: int) -> list[dict]:
    """``count`` input beats with random operands, the same for the same ``seed``."""
    rng = random.Random(seed)
    return [{"a": rng.randrange(1 << 16), "b": rng.randrange(-128, 128)} for _ in range(count)]


def expected_totals(operands: list[dict]) -> list[dict]:
    """The Python model: the output beats ``RegisteredAdder`` gives for the input beats ``operands``."""
    return [
        {"value": beat["a"] + beat["b"], "beats": count % 16}
        for count, beat in enumerate(operands, start=1)
    ]
