"""OrderTx in the Amaranth simulator against the order transmitter's golden model, frame by frame.

The golden model (host/order_tx_model.py) builds frames with the project's
codecs; its frames, and every frame the gateware sends, are read back here
by an independent decoder: dpkt for Ethernet/IPv4/TCP, checksums recomputed
by a word-by-word ones'-complement sum written in this file over the header
(IPv4) and pseudo-header plus segment (TCP) with the checksum field zeroed,
and the SoupBinTCP/OUCH fields cut at the offsets of docs/pipeline.md.

The gateware runs with random template registers and symbols, random sides,
prices and shares (0 and 2**32-1 included), sequence number and token counter
near their wrap, orders offered at random or back to back, ``tx.ready``
dropped at random (inside frames too), packet ends with random bad bits
arriving before, during and long after the frames that depend on them, and
host writes of ``tcp_seq`` and ``token_counter`` at random cycles and in the
cycle a frame's last beat leaves. For each run the test replays the model in
acceptance order (host writes made up to an order's acceptance cycle count
before it, later ones after), expecting a frame whose packet ended bad to be
the frame the model would build with its current sequence number and token
counter, with ``err`` on the last beat and no advance. Besides the bytes it
checks the stream rules, the latency of the first beat, frames following each
other without a gap, the last beat held until the packet ended, the event
strobes, the final ``tcp_seq``/``token_counter`` and the latency probes.

Fast orders (``fast``) are offered at random cycles, taken or not; after a
taken one the bench plays the exact path: the same order 1..CONFIRM_CYCLES
cycles later, one differing in one compared field, the same order a cycle too
late, or nothing. The check works out from what was offered at ``orders``
after each taken fast order whether its frame is confirmed (and the exact
order consumed, without a frame of its own) or aborted (``err``, no advance,
the next frame reusing its token and sequence number), when its last beat
may leave, and which fast orders had to be taken (nothing in the way, no
order valid at ``orders``), and replays the model over all frames in the
order they started.
"""

from __future__ import annotations

import collections
import dataclasses
import random
from dataclasses import dataclass, field

import dpkt
import pytest
from amaranth.sim import Simulator

from tick2trade.hdl.order_tx import (CONFIRM_CYCLES, FRAME_BEATS, FRAME_BYTES, ORDER_TX_LATENCY, PROBE_DEPTH,
                                     TEMPLATE_SETTLE_CYCLES, OrderTx)
from tick2trade.hdl.stream import BEAT_BYTES
from tick2trade.host.order_tx_model import (OrderTemplate, OrderTxModel, order_frame, order_token,
                                            symbol_register)
from tick2trade.host.order_types import OrderRequest, Side

WRAP = 1 << 32
TEXT = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
CODES = [chr(c) for c in range(0x21, 0x7F)]


# --- the independent decoder -------------------------------------------------------------------


def ones_complement_sum(octets: bytes) -> int:
    """RFC 1071 sum, one 16-bit big-endian word at a time with the end-around carry."""
    if len(octets) % 2:
        octets += b"\0"
    total = 0
    for i in range(0, len(octets), 2):
        total += octets[i] << 8 | octets[i + 1]
        total = (total & 0xFFFF) + (total >> 16)
    return total


def checksum_with_field_zeroed(octets: bytes, at: int) -> int:
    return ~ones_complement_sum(octets[:at] + b"\0\0" + octets[at + 2:]) & 0xFFFF


def decode_order_frame(frame: bytes) -> dict:
    """Every field of an order frame, read with dpkt and at the OUCH 4.2 offsets; the fixed fields
    and both checksums are asserted here."""
    assert len(frame) == FRAME_BYTES
    eth = dpkt.ethernet.Ethernet(frame)
    assert eth.type == dpkt.ethernet.ETH_TYPE_IP
    ip = eth.data
    assert isinstance(ip, dpkt.ip.IP)
    assert (ip.v, ip.hl, ip.tos, ip.len, ip.id, ip.df, ip.mf, ip.offset, ip.p) == (4, 5, 0, 92, 0, 1, 0, 0, 6)
    ip_header = frame[14:34]
    assert ip.sum == checksum_with_field_zeroed(ip_header, 10)
    tcp = ip.data
    assert isinstance(tcp, dpkt.tcp.TCP)
    segment = frame[34:]
    pseudo_header = ip.src + ip.dst + bytes([0, 6]) + len(segment).to_bytes(2, "big")
    assert tcp.sum == checksum_with_field_zeroed(pseudo_header + segment, len(pseudo_header) + 16)
    assert (tcp.off, tcp.flags, tcp.urp) == (5, dpkt.tcp.TH_PUSH | dpkt.tcp.TH_ACK, 0)
    soup = bytes(tcp.data)
    assert len(soup) == 52 and soup[:2] == (50).to_bytes(2, "big") and soup[2:3] == b"U"
    ouch = soup[3:]
    assert ouch[0:1] == b"O"
    return {
        "dst_mac": eth.dst, "src_mac": eth.src, "ttl": ip.ttl, "src_ip": ip.src, "dst_ip": ip.dst,
        "src_port": tcp.sport, "dst_port": tcp.dport, "seq": tcp.seq, "ack": tcp.ack, "window": tcp.win,
        "token": ouch[1:15], "side": ouch[15:16], "shares": int.from_bytes(ouch[16:20], "big"),
        "stock": ouch[20:28], "price": int.from_bytes(ouch[28:32], "big"),
        "time_in_force": int.from_bytes(ouch[32:36], "big"), "firm": ouch[36:40], "display": ouch[40:41],
        "capacity": ouch[41:42], "intermarket_sweep": ouch[42:43],
        "minimum_quantity": int.from_bytes(ouch[43:47], "big"), "cross_type": ouch[47:48],
        "customer_type": ouch[48:49],
    }


def expected_fields(template: OrderTemplate, request: OrderRequest, symbol: str, seq: int, token: int) -> dict:
    """What docs/pipeline.md says each field of the frame holds."""
    return {
        "dst_mac": template.dst_mac, "src_mac": template.src_mac, "ttl": template.ip_ttl,
        "src_ip": template.src_ip, "dst_ip": template.dst_ip, "src_port": template.src_port,
        "dst_port": template.dst_port, "seq": seq, "ack": template.tcp_ack, "window": template.tcp_window,
        "token": (template.token_prefix + f"{token:08X}").encode("latin-1"),
        "side": b"B" if request.side is Side.BID else b"S", "shares": request.shares,
        "stock": symbol.encode("latin-1").ljust(8), "price": request.price, "time_in_force": 0,
        "firm": template.firm.encode("latin-1").ljust(4), "display": template.display.encode("latin-1"),
        "capacity": template.capacity.encode("latin-1"), "intermarket_sweep": b"N", "minimum_quantity": 0,
        "cross_type": b"N", "customer_type": template.customer_type.encode("latin-1"),
    }


# --- random stimulus ---------------------------------------------------------------------------


def random_text(rng: random.Random, length: int) -> str:
    return "".join(rng.choice(TEXT) for _ in range(length))


def random_template(rng: random.Random) -> OrderTemplate:
    def word(bits):
        return rng.choice([0, (1 << bits) - 1, rng.randrange(1 << bits)])
    return OrderTemplate(
        dst_mac=rng.randbytes(6), src_mac=rng.randbytes(6), src_ip=rng.randbytes(4), dst_ip=rng.randbytes(4),
        src_port=word(16), dst_port=word(16), tcp_ack=word(32), tcp_window=word(16), ip_ttl=word(8),
        token_prefix=random_text(rng, 6), firm=random_text(rng, rng.randrange(5)),
        display=rng.choice(CODES), capacity=rng.choice(CODES), customer_type=rng.choice(CODES))


def random_symbols(rng: random.Random, slots: int) -> list[str]:
    return [random_text(rng, rng.randrange(1, 9)) for _ in range(slots)]


def random_request(rng: random.Random, slots: int) -> OrderRequest:
    def amount():
        return rng.choice([0, WRAP - 1, rng.randrange(1, 1000), rng.randrange(WRAP)])
    return OrderRequest(slot=rng.randrange(slots), side=rng.choice(list(Side)), price=amount(), shares=amount(),
                        fair_value=rng.randrange(WRAP), fair_valid=rng.random() < 0.5)


# --- the golden model alone --------------------------------------------------------------------


def test_model_frames_decode_independently():
    rng = random.Random("order_tx_model")
    for _ in range(300):
        template = random_template(rng)
        symbols = random_symbols(rng, 3)
        request = random_request(rng, 3)
        seq = rng.choice([0, WRAP - 1, WRAP - 52, rng.randrange(WRAP)])
        token = rng.choice([0, WRAP - 1, rng.randrange(WRAP)])
        frame = order_frame(template, request, symbol=symbols[request.slot], tcp_seq=seq, token_counter=token)
        assert decode_order_frame(frame) == expected_fields(template, request, symbols[request.slot], seq, token)


def test_model_state_advances_and_wraps():
    template = random_template(random.Random(1))
    model = OrderTxModel(template, ["LEAD", "TARGET"], tcp_seq=WRAP - 60, token_counter=WRAP - 1)
    request = OrderRequest(slot=1, side=Side.ASK, price=1234500, shares=100)
    first = model.send(request)
    assert (model.tcp_seq, model.token_counter) == (WRAP - 8, 0)
    second = model.send(request)
    assert (model.tcp_seq, model.token_counter) == (44, 1)
    assert decode_order_frame(first)["token"] == (template.token_prefix + "FFFFFFFF").encode()
    assert decode_order_frame(second)["seq"] == WRAP - 8
    assert decode_order_frame(second)["stock"] == b"TARGET  "


def test_model_registers_and_token():
    template = OrderTemplate(dst_mac=bytes.fromhex("020000000001"), src_mac=bytes.fromhex("020000000002"),
                             src_ip=bytes([10, 0, 0, 1]), dst_ip=bytes([10, 0, 0, 2]), src_port=40000,
                             dst_port=15000, firm="FRM1", token_prefix="ABCDEF")
    registers = template.registers()
    assert registers["dst_mac"] == 0x020000000001
    assert registers["src_ip"] == 0x0A000001
    assert registers["firm"] == 0x46524D31
    assert registers["token_prefix"] == int.from_bytes(b"ABCDEF", "big")
    assert registers["display"] == ord("Y") and registers["customer_type"] == ord("R")
    assert OrderTemplate(**{**template.__dict__, "firm": "T2"}).registers()["firm"] == int.from_bytes(b"T2  ", "big")
    assert symbol_register("AAPL") == int.from_bytes(b"AAPL    ", "big")
    assert order_token("T2T000", 0xABC) == "T2T00000000ABC"
    with pytest.raises(ValueError):
        order_token("T2T000", WRAP)


@pytest.mark.parametrize("change", [{"dst_mac": bytes(5)}, {"src_ip": bytes(5)}, {"src_port": 1 << 16},
                                    {"ip_ttl": 256}, {"token_prefix": "SHORT"}, {"firm": "TOOLONG"},
                                    {"display": "YY"}, {"customer_type": "\u20ac"}])
def test_template_rejects_bad_values(change):
    base = dict(dst_mac=bytes(6), src_mac=bytes(6), src_ip=bytes(4), dst_ip=bytes(4), src_port=1, dst_port=2)
    with pytest.raises(ValueError):
        OrderTemplate(**{**base, **change})


def test_order_tx_rejects_bad_slots():
    for slots in (0, -1, 1.5):
        with pytest.raises(ValueError):
            OrderTx(slots=slots)


# --- the gateware ------------------------------------------------------------------------------


#: What the exact path does after a taken fast order, at ``orders``: "confirm", the same order (its
#: fair value redrawn: it is not compared) 1..CONFIRM_CYCLES cycles after the fast order's acceptance;
#: "differ", an order that differs from it in one compared field (each in turn), as soon; "late", the
#: same order CONFIRM_CYCLES + 1 cycles after; "none", nothing. Other orders are not offered until
#: the exact path's order is, or the confirmation window has passed.
FAST_OUTCOMES = ("confirm", "differ", "late", "none")
#: The fields the transmitter compares, as ``compared_fields`` names them.
COMPARED_FIELDS = ("slot", "side", "price", "shares", "stamp_cycle", "packet")


@dataclass
class Scenario:
    """One simulation run: what is offered, and how the surroundings behave per cycle."""
    seed: int
    orders: int = 40
    slots: int = 2
    tcp_seq: int = 0
    token_counter: int = 0
    offer_probability: float = 0.5     # an idle orders port offers the next order
    ready_probability: float = 0.7     # tx.ready
    end_probability: float = 0.2       # the open packet ends
    bad_probability: float = 0.25      # an ending packet is bad
    max_packet_lag: int = 3            # an order's packet is 0..this many ends behind the count when offered
    write_probability: float = 0.0     # a host write of tcp_seq / token_counter in a cycle
    write_on_last_probability: float = 0.0  # a host write in the cycle a frame's last beat leaves
    cycle_base: int = 0                # the free-running counter's value in the first cycle
    template: OrderTemplate | None = None  # random unless given
    symbols: list | None = None        # random (``slots`` of them) unless given
    requests: list | None = None       # random (``orders`` of them) unless given
    fast_orders: int = 0               # random orders offered at ``fast``, each for one cycle
    fast_probability: float = 0.0      # a cycle offers the next one (once a packet has ended)
    fast_outcomes: tuple = FAST_OUTCOMES  # after a taken fast order, one of these at random


@dataclass(eq=False)
class Offer:
    """An order offered at ``orders`` (valid until taken) or at ``fast`` (valid for one cycle)."""
    request: OrderRequest
    stamp: tuple              # (cycle stamp, absolute packet number)
    cycle: int                # first cycle valid
    taken: int | None = None  # the cycle it was taken (``orders.ready``, ``fast_taken``); None if never


def compared_fields(offer: Offer) -> dict:
    """What an exact order must share with a fast one to confirm it (the packet index wraps at 256)."""
    stamp_cycle, packet = offer.stamp
    request = offer.request
    return {"slot": request.slot, "side": request.side, "price": request.price, "shares": request.shares,
            "stamp_cycle": stamp_cycle, "packet": packet % 256}


def exact_order_of(rng: random.Random, fast: Offer, cycle: int, change: str | None, slots: int) -> Offer:
    """The exact path's order for ``fast``, offered at ``cycle``: the same but for its fair value (not
    compared), or with the compared field ``change`` changed (a packet by one, a number by one bit)."""
    request = dataclasses.replace(fast.request, fair_value=rng.randrange(WRAP), fair_valid=rng.random() < 0.5)
    stamp_cycle, packet = fast.stamp
    if change == "slot":
        request = dataclasses.replace(request, slot=(request.slot + rng.randrange(1, slots)) % slots)
    elif change == "side":
        request = dataclasses.replace(request, side=Side.ASK if request.side is Side.BID else Side.BID)
    elif change in ("price", "shares"):
        request = dataclasses.replace(request, **{change: getattr(request, change) ^ 1 << rng.randrange(32)})
    elif change == "stamp_cycle":
        stamp_cycle ^= 1 << rng.randrange(32)
    elif change == "packet":
        packet = packet - 1 if packet else 1  # fast orders come once a packet has ended: 1 is not ahead
    return Offer(request, (stamp_cycle, packet), cycle)


def order_payload(offer: Offer) -> dict:
    stamp_cycle, packet = offer.stamp
    request = offer.request
    return {"slot": request.slot, "side": request.side, "price": request.price, "shares": request.shares,
            "fair_value": request.fair_value, "fair_valid": request.fair_valid,
            "stamp": {"cycle": stamp_cycle, "packet": packet % 256}}


@dataclass
class Run:
    """What the bench saw."""
    template: OrderTemplate
    symbols: list
    orders: list = field(default_factory=list)        # each Offer at orders, in offer order
    fast: list = field(default_factory=list)          # each Offer at fast, in offer order
    transfers: list = field(default_factory=list)     # (cycle, Beat fields) of every beat taken
    first_valid: list = field(default_factory=list)   # per frame: first cycle its first beat was valid
    last_valid: list = field(default_factory=list)    # per frame: first cycle its last beat was valid
    packet_ends: list = field(default_factory=list)   # per absolute packet: (cycle, bad)
    writes: list = field(default_factory=list)        # (cycle, name, value)
    events: dict = field(default_factory=lambda: {name: [] for name in ("orders_sent", "orders_aborted",
                                                                       "fast_confirmed", "fast_aborted")})
    final: dict = field(default_factory=dict)
    probes: dict = field(default_factory=dict)


def simulate(scenario: Scenario) -> Run:
    rng = random.Random(f"order_tx/{scenario.seed}")
    # The fast orders draw from their own generator, so that runs without them keep their stimulus.
    fast_rng = random.Random(f"order_tx_fast/{scenario.seed}")
    template = scenario.template or random_template(rng)
    symbols = scenario.symbols or random_symbols(rng, scenario.slots)
    requests = scenario.requests or [random_request(rng, scenario.slots) for _ in range(scenario.orders)]
    fast_requests = [random_request(fast_rng, scenario.slots) for _ in range(scenario.fast_orders)]
    changes = [name for name in COMPARED_FIELDS if name != "slot" or scenario.slots > 1]
    run = Run(template, symbols)
    dut = OrderTx(slots=scenario.slots)

    async def bench(ctx):
        for name, value in template.registers().items():
            ctx.set(getattr(dut, name), value)
        for slot, symbol in enumerate(symbols):
            ctx.set(dut.symbols[slot], symbol_register(symbol))
        writes = {"tcp_seq": scenario.tcp_seq, "token_counter": scenario.token_counter}
        offering = None     # the Offer valid at orders
        offered = 0         # of `requests`
        follow = None       # the exact path's Offer for the last taken fast order, offered at its cycle
        held_until = -1     # `requests` are not offered up to this cycle (a fast order's window)
        differed = 0        # "differ" outcomes so far: the field changed goes round
        packets_ended = 0
        previous = None  # (valid, ready, payload) of the last cycle
        cycle = 0
        first_beats = frames_sent = 0
        last_take = -1   # the last cycle an order was taken at orders or fast (its frame may start then)
        done = False
        while not done:
            assert cycle < 400 * (len(requests) + len(fast_requests)) + 100, "the transmitter stalled"
            ctx.set(dut.cycle, (scenario.cycle_base + cycle) % WRAP)
            started = cycle >= TEMPLATE_SETTLE_CYCLES
            ending = started and rng.random() < scenario.end_probability
            ctx.set(dut.packet_end.valid, ending)
            if ending:
                bad = rng.random() < scenario.bad_probability
                ctx.set(dut.packet_end.p.bad, bad)
                run.packet_ends.append((cycle, bad))
            if follow is not None and follow.cycle == cycle:
                assert offering is None
                offering, follow = follow, None
            elif offering is None and started and offered < len(requests) and cycle > held_until \
                    and rng.random() < scenario.offer_probability:
                packet = max(0, packets_ended - rng.randrange(scenario.max_packet_lag + 1))
                offering = Offer(requests[offered], (rng.randrange(WRAP), packet), cycle)
                offered += 1
            if offering is not None and offering.cycle == cycle:
                run.orders.append(offering)
                ctx.set(dut.orders.p, order_payload(offering))
            ctx.set(dut.orders.valid, offering is not None)
            fast = None
            if len(run.fast) < len(fast_requests) and started and packets_ended \
                    and fast_rng.random() < scenario.fast_probability:
                packet = max(0, packets_ended - fast_rng.randrange(scenario.max_packet_lag + 1))
                fast = Offer(fast_requests[len(run.fast)], (fast_rng.randrange(WRAP), packet), cycle)
                run.fast.append(fast)
                ctx.set(dut.fast.p, order_payload(fast))
            ctx.set(dut.fast.valid, fast is not None)
            ready = rng.random() < scenario.ready_probability
            ctx.set(dut.tx.ready, ready)

            valid = ctx.get(dut.tx.valid)
            payload = ctx.get(dut.tx.p)
            if previous is not None and previous[0] and not previous[1]:
                assert valid and payload == previous[2], f"cycle {cycle}: beat changed before it was taken"
            previous = (valid, ready, payload)
            if valid and payload.first and len(run.first_valid) == frames_sent:
                run.first_valid.append(cycle)
            if valid and payload.last and len(run.last_valid) == frames_sent:
                run.last_valid.append(cycle)
            if not started:
                writes_now = writes if cycle == 0 else {}
            else:
                writes_now = {}
                last_leaving = valid and ready and payload.last
                for name in ("tcp_seq", "token_counter"):
                    if rng.random() < scenario.write_probability or \
                            (last_leaving and rng.random() < scenario.write_on_last_probability):
                        writes_now[name] = rng.choice([rng.randrange(WRAP), WRAP - 1 - rng.randrange(200)])
            for name in ("tcp_seq", "token_counter"):
                ctx.set(getattr(dut, f"{name}_write"), name in writes_now)
                if name in writes_now:
                    ctx.set(getattr(dut, f"{name}_data"), writes_now[name])
                    run.writes.append((cycle, name, writes_now[name]))

            if offering is not None and ctx.get(dut.orders.ready):
                offering.taken = last_take = cycle
                offering = None
            if ctx.get(dut.fast_taken):
                assert fast is not None, f"cycle {cycle}: fast_taken without a fast order"
                fast.taken = last_take = cycle
                outcome = fast_rng.choice(scenario.fast_outcomes)
                delay = fast_rng.choice([1, CONFIRM_CYCLES, fast_rng.randint(1, CONFIRM_CYCLES)])
                if outcome == "late":
                    delay = CONFIRM_CYCLES + 1
                held_until = cycle + (CONFIRM_CYCLES if outcome == "none" else delay)
                if outcome != "none":
                    change = changes[differed % len(changes)] if outcome == "differ" else None
                    differed += outcome == "differ"
                    follow = exact_order_of(fast_rng, fast, cycle + delay, change, scenario.slots)
            if valid and ready:
                run.transfers.append((cycle, payload))
                first_beats += payload.first
                frames_sent += payload.last
            events = ctx.get(dut.events)
            for name in run.events:
                if getattr(events, name):
                    run.events[name].append(cycle)
            packets_ended += ending
            # Done once all was offered and taken and no frame is going out or about to start.
            done = (offered == len(requests) and len(run.fast) == len(fast_requests) and offering is None
                    and follow is None and last_take < cycle and first_beats == frames_sent
                    and (not valid or (ready and payload.last)))
            await ctx.tick()
            cycle += 1
        # drain: the last frame's event strobe, the final values, then the probes (read one cycle
        # after their select)
        ctx.set(dut.tcp_seq_write, 0)
        ctx.set(dut.token_counter_write, 0)
        ctx.set(dut.packet_end.valid, 0)
        ctx.set(dut.fast.valid, 0)
        events = ctx.get(dut.events)
        for name in run.events:
            if getattr(events, name):
                run.events[name].append(cycle)
        await ctx.tick()
        assert ctx.get(dut.events.as_value()) == 0, "an event strobe after the last frame"
        run.final = {"tcp_seq": ctx.get(dut.tcp_seq), "token_counter": ctx.get(dut.token_counter)}
        for select in range(PROBE_DEPTH):
            ctx.set(dut.probe_select, select)
            await ctx.tick()
            run.probes[select] = (ctx.get(dut.probe_trigger_cycle), ctx.get(dut.probe_tx_cycle))

    simulator = Simulator(dut)
    simulator.add_clock(1e-8)
    simulator.add_testbench(bench)
    simulator.run()
    return run


@dataclass
class Frame:
    octets: bytes
    err: bool
    cycles: list  # the cycle each beat was taken


def frames_of(run: Run) -> list[Frame]:
    """The frames taken from tx, with the beat flags checked against the beat numbers."""
    assert len(run.transfers) % FRAME_BEATS == 0
    frames = []
    for start in range(0, len(run.transfers), FRAME_BEATS):
        beats = run.transfers[start:start + FRAME_BEATS]
        for n, (_, beat) in enumerate(beats):
            last = n == FRAME_BEATS - 1
            assert (beat.first, beat.last) == (n == 0, last)
            assert beat.keep == ((1 << (FRAME_BYTES - BEAT_BYTES * n)) - 1 if last else 0xFF)
            assert not beat.err or last
        octets = b"".join(beat.data.to_bytes(BEAT_BYTES, "little") for _, beat in beats)[:FRAME_BYTES]
        frames.append(Frame(octets, bool(beats[-1][1].err), [cycle for cycle, _ in beats]))
    return frames


@dataclass
class Verdict:
    """What the contract makes of a taken fast order, from what was offered at ``orders`` after it."""
    exact: Offer | None     # the first order offered in its confirmation window
    confirmed: bool
    cycle: int              # the first cycle in which its last beat may be loaded
    changed: list           # the compared fields in which ``exact`` differs


def verdict_of(run: Run, fast: Offer) -> Verdict:
    window = [offer for offer in run.orders if fast.taken < offer.cycle <= fast.taken + CONFIRM_CYCLES]
    if not window:
        return Verdict(None, False, fast.taken + CONFIRM_CYCLES + 1, [])
    exact = window[0]
    ours, theirs = compared_fields(fast), compared_fields(exact)
    changed = [name for name in COMPARED_FIELDS if ours[name] != theirs[name]]
    # The compare is registered: the verdict holds, and a matching order is consumed, one cycle on.
    return Verdict(exact, not changed, exact.cycle + 1, changed)


def check_run(scenario: Scenario, run: Run) -> collections.Counter:
    """Compare a run with the model and the contract; a few figures of what the run exercised."""
    frames = frames_of(run)
    assert all(offer.taken is not None for offer in run.orders), "an order was never taken"
    verdicts = {fast: verdict_of(run, fast) for fast in run.fast if fast.taken is not None}
    confirming = {verdict.exact for verdict in verdicts.values() if verdict.confirmed}
    for offer in confirming:
        assert offer.taken == offer.cycle + 1, f"the order offered at {offer.cycle} confirms a fast order"
    # Frames start with the orders taken at orders (but those that confirm one) and at fast.
    starts = sorted([offer for offer in run.orders if offer not in confirming] + list(verdicts),
                    key=lambda offer: offer.taken)
    assert len(frames) == len(starts)
    model = OrderTxModel(run.template, run.symbols)
    writes = sorted(run.writes)
    applied = 0
    events = {name: [] for name in run.events}
    probes = {}
    seen = collections.Counter()
    previous_end = reusable = None
    for k, (frame, offer) in enumerate(zip(frames, starts)):
        accepted = offer.taken
        while applied < len(writes) and writes[applied][0] <= accepted:
            setattr(model, writes[applied][1], writes[applied][2])
            applied += 1
        request = offer.request
        stamp_cycle, packet = offer.stamp
        end_cycle, bad = run.packet_ends[packet]
        verdict = verdicts.get(offer)
        unconfirmed = verdict is not None and not verdict.confirmed
        seq, token = model.tcp_seq, model.token_counter
        if bad or unconfirmed:
            expected = order_frame(run.template, request, symbol=run.symbols[request.slot], tcp_seq=seq,
                                   token_counter=token)
        else:
            expected = model.send(request)
        assert frame.octets == expected, f"frame {k}"
        assert frame.err == (bad or unconfirmed), f"frame {k}"
        assert decode_order_frame(frame.octets) == expected_fields(run.template, request,
                                                                   run.symbols[request.slot], seq, token)
        # Accepted at once when idle, else as the previous frame's last beat leaves (a fast order is
        # taken only then: checked below); first beat one cycle on.
        if verdict is None:
            assert accepted == max(offer.cycle, previous_end if previous_end is not None else -1), f"frame {k}"
        assert run.first_valid[k] == accepted + ORDER_TX_LATENCY
        # The last beat waits for the packet's end and a fast frame's verdict, and only for them.
        release = verdict.cycle + 1 if verdict is not None else 0
        assert run.last_valid[k] > end_cycle and run.last_valid[k] >= release, f"frame {k}"
        if end_cycle < accepted:
            assert run.last_valid[k] == max(frame.cycles[-2] + 1, release), f"frame {k}"
        left = frame.cycles[-1] + 1
        if unconfirmed:
            events["fast_aborted"].append(left)
        else:
            events["orders_aborted" if bad else "orders_sent"].append(left)
            if verdict is not None:
                events["fast_confirmed"].append(left)
        probes[token % PROBE_DEPTH] = (stamp_cycle, (scenario.cycle_base + frame.cycles[0]) % WRAP)
        seen["aborted"] += bad and not unconfirmed
        seen["waited"] += run.last_valid[k] > frame.cycles[-2] + 1
        seen["ended_during"] += accepted <= end_cycle
        seen["back_to_back"] += previous_end is not None and accepted == previous_end
        seen["writes_in_frames"] += any(accepted < cycle <= frame.cycles[-1] for cycle, _, _ in writes)
        if verdict is not None:
            seen["fast_confirmed" if verdict.confirmed else "fast_aborted"] += 1
            seen["fast_confirmed_bad"] += verdict.confirmed and bad
            seen["fast_held"] += run.last_valid[k] == release and release > frame.cycles[-2] + 1
            seen["fast_timed_out"] += verdict.exact is None
            seen.update(f"changed_{name}" for name in verdict.changed)
        seen["reused"] += (seq, token) == reusable  # after an unconfirmed fast frame
        reusable = (seq, token) if unconfirmed else None
        previous_end = frame.cycles[-1]
    for _, name, value in writes[applied:]:
        setattr(model, name, value)
    assert run.final == {"tcp_seq": model.tcp_seq, "token_counter": model.token_counter}
    assert run.events == events
    for select, pair in probes.items():
        assert run.probes[select] == pair, f"probe {select}"
    # A fast order is taken only when nothing is in the way: no frame (its last beat gone, or leaving),
    # no order valid at orders.
    ends = [(offer.taken, frame.cycles[-1], verdicts.get(offer)) for offer, frame in zip(starts, frames)]
    for fast in run.fast:
        cycle = fast.cycle
        exact_waiting = any(offer.cycle <= cycle <= offer.taken for offer in run.orders)
        before = [(end, verdict) for start, end, verdict in ends if start < cycle]
        in_the_way = bool(before) and before[-1][0] > cycle
        assert fast.taken == (None if exact_waiting or in_the_way else cycle), f"fast order at {cycle}"
        if in_the_way:
            verdict = before[-1][1]
            seen["dropped_unconfirmed" if verdict is not None and cycle < verdict.cycle else "dropped_busy"] += 1
        elif exact_waiting:
            seen["dropped_exact_waiting"] += 1
    return seen


@pytest.mark.parametrize("seed", range(3))
def test_random_orders_match_model(seed):
    scenario = Scenario(seed=seed, slots=seed + 1, orders=50, tcp_seq=WRAP - 52 * 20 - seed,
                        token_counter=WRAP - 25, cycle_base=WRAP - 300)
    seen = check_run(scenario, simulate(scenario))
    assert seen["aborted"] and seen["back_to_back"] and seen["ended_during"]


def test_back_to_back_at_full_rate():
    """Orders always waiting, tx always ready, packets ended before: frames follow without a gap."""
    scenario = Scenario(seed=10, orders=20, offer_probability=1.0, ready_probability=1.0, end_probability=0.5,
                        bad_probability=0.0, max_packet_lag=0)
    run = simulate(scenario)
    seen = check_run(scenario, run)
    assert seen["back_to_back"] == scenario.orders - 1
    cycles = [cycle for cycle, _ in run.transfers]
    assert cycles == list(range(cycles[0], cycles[0] + len(cycles)))


def test_abort_holds_last_beat_until_packet_ends():
    """Packets that stay open long: last beats wait, ending bad aborts, good frames advance."""
    scenario = Scenario(seed=20, orders=40, end_probability=0.02, bad_probability=0.5, max_packet_lag=1,
                        ready_probability=0.8)
    seen = check_run(scenario, simulate(scenario))
    assert seen["waited"] >= 5 and seen["aborted"] >= 5 and seen["aborted"] < scenario.orders


def test_host_writes():
    """Writes at random cycles (inside frames too) and in the cycle a last beat leaves."""
    scenario = Scenario(seed=30, orders=40, write_probability=0.03, write_on_last_probability=0.5,
                        bad_probability=0.2)
    seen = check_run(scenario, simulate(scenario))
    assert seen["writes_in_frames"] >= 5


def folded_sum(checksum: int) -> int:
    """The ones'-complement sum (1..0xFFFF) whose complement is ``checksum``."""
    return ~checksum & 0xFFFF


def aimed_word(base_sum: int, target: int) -> int:
    """The 16-bit word that, added to data whose ones'-complement sum is ``base_sum``, makes it ``target``."""
    return (target - base_sum) % 0xFFFF


@pytest.mark.parametrize("ip_target", [0xFFFF, 0xFFFE, 1, 3])
def test_checksum_corners(ip_target):
    """Sums that fold with an end-around carry, and the ones that give checksums 0x0000 and 0xFFFE..:
    the IPv4 sum aimed through the source address, the TCP sum through each order's price (a price
    with only its first two bytes set adds the word (byte 1, byte 0) to the sum)."""
    rng = random.Random(f"order_tx_corners/{ip_target}")
    template = random_template(rng)
    unaimed = dataclasses.replace(template, src_ip=template.src_ip[:2] + bytes(2))
    request = OrderRequest(slot=0, side=Side.BID, price=0, shares=rng.randrange(WRAP))
    ip_sum = folded_sum(int.from_bytes(order_frame(unaimed, request, symbol="X", tcp_seq=0, token_counter=0)[24:26],
                                       "big"))
    template = dataclasses.replace(template, src_ip=template.src_ip[:2]
                                   + aimed_word(ip_sum, ip_target).to_bytes(2, "big"))
    tcp_targets = [0xFFFF, 0xFFFE, 1, 2, 3, 5, 8, 13, 0x8000]
    symbol = random_symbols(rng, 1)[0]
    scenario = Scenario(seed=40 + ip_target, slots=1, bad_probability=0.0, tcp_seq=rng.randrange(WRAP),
                        token_counter=rng.randrange(WRAP), template=template, symbols=[symbol])
    requests = []
    for k, target in enumerate(tcp_targets):
        seq, token = (scenario.tcp_seq + 52 * k) % WRAP, (scenario.token_counter + k) % WRAP
        base = dataclasses.replace(request, side=rng.choice(list(Side)), shares=rng.randrange(WRAP))
        unaimed_frame = order_frame(template, base, symbol=symbol, tcp_seq=seq, token_counter=token)
        word = aimed_word(folded_sum(int.from_bytes(unaimed_frame[50:52], "big")), target)
        aimed = dataclasses.replace(base, price=(word & 0xFF) << 24 | (word >> 8) << 16)
        frame = order_frame(template, aimed, symbol=symbol, tcp_seq=seq, token_counter=token)
        assert folded_sum(int.from_bytes(frame[50:52], "big")) == target
        assert folded_sum(int.from_bytes(frame[24:26], "big")) == ip_target
        requests.append(aimed)
    scenario.requests = requests
    scenario.orders = len(requests)
    check_run(scenario, simulate(scenario))


# --- fast orders -------------------------------------------------------------------------------


def fast_run(scenario: Scenario) -> tuple[Run, collections.Counter, list]:
    """Simulate and check ``scenario``; also the fast orders that were taken."""
    run = simulate(scenario)
    seen = check_run(scenario, run)
    return run, seen, [fast for fast in run.fast if fast.taken is not None]


def test_fast_order_confirmed():
    """The same order at orders 1..CONFIRM_CYCLES cycles after (the ends included, some after the
    last-but-one beat left): one good frame, first beat a cycle after the fast order was taken, the
    exact order consumed without a frame of its own, tcp_seq and token_counter advanced once."""
    scenario = Scenario(seed=50, orders=0, fast_orders=100, fast_probability=0.1, fast_outcomes=("confirm",),
                        ready_probability=0.9, bad_probability=0.0, tcp_seq=WRAP - 52 * 10, token_counter=WRAP - 12)
    run, seen, taken = fast_run(scenario)
    assert len(taken) >= 20 and seen["fast_confirmed"] == len(taken) and seen["fast_held"] >= 5
    assert len(frames_of(run)) == len(run.orders) == len(taken)
    assert {exact.cycle - fast.taken for fast, exact in zip(taken, run.orders)} >= {1, CONFIRM_CYCLES}
    assert len(run.events["fast_confirmed"]) == len(run.events["orders_sent"]) == len(taken)
    assert run.final == {"tcp_seq": (scenario.tcp_seq + 52 * len(taken)) % WRAP,
                         "token_counter": (scenario.token_counter + len(taken)) % WRAP}


def test_fast_order_differs():
    """An order at orders that differs in one compared field (each in turn, by one bit or one packet):
    the fast frame ends with err, then the exact order's frame follows with the same token and
    sequence number."""
    scenario = Scenario(seed=60, orders=0, slots=3, fast_orders=150, fast_probability=0.1,
                        fast_outcomes=("differ",), bad_probability=0.0)
    run, seen, taken = fast_run(scenario)
    assert seen["fast_aborted"] == seen["reused"] == len(taken) >= 20
    assert all(seen[f"changed_{name}"] >= 3 for name in COMPARED_FIELDS)
    assert len(frames_of(run)) == 2 * len(taken) and not run.events["fast_confirmed"]
    assert len(run.events["fast_aborted"]) == len(run.events["orders_sent"]) == len(taken)


@pytest.mark.parametrize("outcome", ["none", "late"])
def test_fast_order_unconfirmed(outcome):
    """No order at orders in the window ("late": the same order one cycle after it): the frame ends
    with err once the window has passed, and nothing advances; a late order then goes out by itself."""
    scenario = Scenario(seed=70, orders=0, fast_orders=80, fast_probability=0.1, fast_outcomes=(outcome,),
                        tcp_seq=WRAP - 30, token_counter=WRAP - 3)
    run, seen, taken = fast_run(scenario)
    assert seen["fast_aborted"] == seen["fast_timed_out"] == len(taken) >= 10
    assert len(run.events["fast_aborted"]) == len(taken)
    if outcome == "none":
        assert len(frames_of(run)) == len(taken)
        assert run.final == {"tcp_seq": scenario.tcp_seq, "token_counter": scenario.token_counter}
        assert not run.events["orders_sent"] and not run.events["orders_aborted"]
    else:
        assert seen["reused"] == len(taken) and len(frames_of(run)) == 2 * len(taken)


def test_fast_order_not_taken():
    """Fast orders offered while a frame is going out, while its exact order is unconfirmed, and while
    an order waits at orders (or is offered in the same cycle): dropped, nothing changes."""
    scenario = Scenario(seed=80, orders=40, offer_probability=0.05, fast_orders=200, fast_probability=0.3,
                        ready_probability=0.8)
    run, seen, taken = fast_run(scenario)
    assert seen["dropped_busy"] >= 10 and seen["dropped_unconfirmed"] >= 10 and seen["dropped_exact_waiting"] >= 3
    assert seen["fast_confirmed"] and seen["fast_aborted"]


def test_fast_order_confirmed_bad_packet():
    """A confirmed fast frame whose packet ends bad ends with err, counted by orders_aborted (and
    fast_confirmed), not fast_aborted; nothing advances."""
    scenario = Scenario(seed=90, orders=0, fast_orders=100, fast_probability=0.1, fast_outcomes=("confirm",),
                        end_probability=0.05, bad_probability=0.5, max_packet_lag=1)
    run, seen, taken = fast_run(scenario)
    assert seen["fast_confirmed"] == len(taken) and 3 <= seen["fast_confirmed_bad"] < len(taken)
    assert seen["ended_during"] >= 3 and not run.events["fast_aborted"]
    assert len(run.events["orders_aborted"]) == seen["fast_confirmed_bad"]


@pytest.mark.parametrize("seed", range(3))
def test_random_fast_and_exact_orders_match_model(seed):
    """Fast orders with every outcome among exact orders, tx.ready dropped, packets ending bad during
    frames, host writes."""
    scenario = Scenario(seed=100 + seed, slots=seed + 1, orders=40, offer_probability=0.04, fast_orders=150,
                        fast_probability=0.08, tcp_seq=WRAP - 52 * 20 - seed, token_counter=WRAP - 25,
                        cycle_base=WRAP - 300, write_probability=0.01, write_on_last_probability=0.3)
    run, seen, taken = fast_run(scenario)
    assert seen["fast_confirmed"] >= 5 and seen["fast_aborted"] >= 5 and seen["reused"] >= 3
    assert seen["fast_timed_out"] and seen["fast_held"] and seen["aborted"] and seen["back_to_back"]
    assert seen["dropped_busy"] and seen["dropped_exact_waiting"] and seen["writes_in_frames"]
