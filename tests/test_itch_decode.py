"""ItchDecode alone in the Amaranth simulator against the ITCH codec (host/codec/itch.py).

ItchDecode is combinational: a testbench without a clock sets ``raw`` and
reads ``decoded`` at once. Messages of every known type (the field-level S R
H A F E C X D U P and the framed-only ones) are made of random bytes (every
field value is a valid ITCH value for the codec), of all-zero and all-ones
bodies, and taken from the feed generator's market; each is given to
ItchDecode as ItchSplit delivers it (RawMessage: seq, gap, length, the first
44 bytes with byte 0 most significant, zero past the length). The
normalised outputs (type, locate, tracking, timestamp, order_ref,
new_order_ref, side, shares, price, by the rules of the ItchMessage
docstring) and every per-type view ``fields.<TYPE>.<name>`` of the
message's type are compared with ``itch.decode`` of the same bytes.
"""

import dataclasses
import random

from amaranth.hdl import Value
from amaranth.lib import data
from amaranth.sim import Simulator
from hypothesis import given, settings
from hypothesis import strategies as st
from stage_harness import layout_fields

from tick2trade.hdl.itch_decode import BODY_BYTES, MESSAGE_FIELDS, ItchDecode, ItchMessage, RawMessage
from tick2trade.host import feed
from tick2trade.host.codec import itch

HEADER_NAMES = ("locate", "tracking", "timestamp")
#: ItchMessage docstring: where each type's own field goes among the normalised trigger fields.
NORMALISED = {
    "A": {"order_ref": "order_ref", "side": "side", "shares": "shares", "price": "price"},
    "F": {"order_ref": "order_ref", "side": "side", "shares": "shares", "price": "price"},
    "P": {"order_ref": "order_ref", "side": "side", "shares": "shares", "price": "price"},
    "E": {"order_ref": "order_ref", "shares": "executed_shares"},
    "C": {"order_ref": "order_ref", "shares": "executed_shares", "price": "execution_price"},
    "X": {"order_ref": "order_ref", "shares": "cancelled_shares"},
    "D": {"order_ref": "order_ref"},
    "U": {"order_ref": "original_order_ref", "new_order_ref": "new_order_ref", "shares": "shares",
          "price": "price"},
}
TRIGGER_NAMES = ("order_ref", "new_order_ref", "side", "shares", "price")


def wire_value(message, name: str):
    """A codec field as the integer of its wire bytes (codes and alpha fields re-padded)."""
    value = getattr(message, name)
    if isinstance(value, int):
        return value
    width = next(f.metadata["width"] for f in dataclasses.fields(message) if f.name == name)
    return int.from_bytes(value.encode("latin-1").ljust(width, b" "), "big")


def expected_outputs(raw: bytes, seq: int, gap: bool) -> dict:
    """What ItchDecode must show for message bytes ``raw``, from the codec."""
    message = itch.decode(raw)
    expected = {"seq": seq, "gap": int(gap), "length": len(raw), "type": raw[0],
                "locate": message.locate, "tracking": message.tracking, "timestamp": message.timestamp}
    mapping = NORMALISED.get(chr(raw[0]), {})
    for name in TRIGGER_NAMES:
        expected[name] = wire_value(message, mapping[name]) if name in mapping else 0
    views = {}
    if chr(raw[0]) in MESSAGE_FIELDS:
        views = {name: wire_value(message, name) for name, *_ in MESSAGE_FIELDS[chr(raw[0])]}
    return expected, views


def raw_message(raw: bytes, seq: int, gap: bool) -> dict:
    body = raw[:BODY_BYTES].ljust(BODY_BYTES, b"\0")
    return {"seq": seq, "gap": int(gap), "length": len(raw), "body": int.from_bytes(body, "big")}


def run_decode(messages):
    """Drive ItchDecode with (bytes, seq, gap, valid) and return, per message, the decoded outputs
    (top-level fields by name), the view fields of its type (read from ``fields.<TYPE>.<name>``)
    and the ``valid`` output."""
    dut = ItchDecode()
    results = []
    decoded = Value.cast(dut.decoded.p)
    raw_layout = data.Layout.cast(RawMessage)

    async def bench(ctx):
        for raw, seq, gap, valid in messages:
            ctx.set(dut.raw.valid, valid)
            ctx.set(dut.raw.p, raw_layout.const(raw_message(raw, seq, gap)))
            fields = layout_fields(ItchMessage, ctx.get(decoded))
            type_ = chr(raw[0])
            views = {}
            if type_ in MESSAGE_FIELDS:
                view = getattr(dut.decoded.p.fields, type_)
                views = {name: ctx.get(Value.cast(getattr(view, name))) for name, *_ in MESSAGE_FIELDS[type_]}
            results.append((fields, views, ctx.get(dut.decoded.valid)))

    simulator = Simulator(dut)
    simulator.add_testbench(bench)
    simulator.run()
    return results


def check(messages):
    problems = []
    for (raw, seq, gap, valid), (fields, views, valid_out) in zip(messages, run_decode(messages), strict=True):
        expected, expected_views = expected_outputs(raw, seq, gap)
        got = {name: fields[name] for name in expected}
        where = f"{raw.hex()} (type {chr(raw[0])!r})"
        if got != expected:
            problems.append(f"{where}: {({k: v for k, v in got.items() if expected[k] != v})} != codec "
                            f"{({k: v for k, v in expected.items() if got[k] != v})}")
        if views != expected_views:
            problems.append(f"{where}: fields.{chr(raw[0])} {({k: v for k, v in views.items() if expected_views[k] != v})}"
                            f" != codec {({k: v for k, v in expected_views.items() if views[k] != v})}")
        if fields["fields"] != raw_message(raw, seq, gap)["body"]:
            problems.append(f"{where}: fields union {fields['fields']:x} is not the body")
        if valid_out != valid:
            problems.append(f"{where}: decoded.valid {valid_out} for raw.valid {valid}")
    assert not problems, f"{len(problems)} differences:\n" + "\n".join(problems[:10])


def random_message(rng: random.Random, type_: str, fill: int | None = None) -> bytes:
    length = itch.MESSAGE_LENGTHS[type_]
    body = bytes([fill] * (length - 1)) if fill is not None else bytes(rng.randrange(256) for _ in range(length - 1))
    return type_.encode() + body


def test_view_fields_are_the_codecs():
    """Every field-level type has a view of exactly the codec's fields, in the same order."""
    assert sorted(MESSAGE_FIELDS) == sorted(itch.DECODED_TYPES)
    for type_, cls in itch.DECODED_TYPES.items():
        assert [name for name, *_ in MESSAGE_FIELDS[type_]] == [f.name for f in dataclasses.fields(cls)]


def test_itch_decode_against_codec():
    rng = random.Random("itch_decode")
    types = sorted(itch.MESSAGE_LENGTHS)
    messages = []
    for type_ in types:
        for fill in (0x00, 0xFF, 0x20):
            messages.append(random_message(rng, type_, fill))
        messages.extend(random_message(rng, type_) for _ in range(60))
    market = [itch.encode(m) for m in feed.generate_messages(feed.FeedConfig(seed=4, messages=600))]
    messages.extend(market)
    rng.shuffle(messages)
    stimulus = [(raw, rng.getrandbits(64), rng.random() < 0.2, rng.random() < 0.9) for raw in messages]
    stimulus[:2] = [(stimulus[0][0], 0, False, True), (stimulus[1][0], (1 << 64) - 1, True, True)]
    assert {chr(raw[0]) for raw in messages} == set(types)
    check(stimulus)


@settings(max_examples=20, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(sorted(itch.MESSAGE_LENGTHS)), st.binary(min_size=50, max_size=50),
                          st.integers(0, (1 << 64) - 1), st.booleans()), min_size=1, max_size=30))
def test_itch_decode_property(cases):
    """Any bytes of a known type's length decode as the codec decodes them."""
    check([((type_.encode() + body)[:itch.MESSAGE_LENGTHS[type_]], seq, gap, True)
           for type_, body, seq, gap in cases])
