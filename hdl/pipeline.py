# amaranth: UnusedElaboratable=no
r"""The whole tick-to-trade pipeline: Ethernet frames in, OUCH order frames out.

docs/pipeline.md is the contract; this module only wires the stages and
their registers together:

    rx -> RxStages -> OrderBook -> Trigger -> RiskGate -> OrderTx -> tx
                 \-> FastTrigger ------------------------/

The fast path (``FastTrigger``) predicts some orders in the cycle their
message is decoded; ``OrderTx`` starts their frames at once and keeps them
only if the exact path's order agrees (docs/pipeline.md, "Latency").

Every configuration register, strobe, host-settable state, status word and
counter of every stage sits in one register block, so that the host (and
the board link) sees one address map. (The first line's linter option: the
stages are made in the constructor for their port widths and always
elaborated with the pipeline; a host that builds a ``Pipeline`` for its
register map alone must not be warned that they were never used.)
"""

from amaranth.hdl import Cat, Const, Module, Mux, ResetInserter, Signal, Value
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from .csr import RegisterBlock, RegisterBus
from .fast_trigger import FAST_SETTLE_CYCLES, TARGET_KEPT_CYCLES, FastTrigger
from .order_book import REPLACE_LATENCY, OrderBook
from .order_tx import OrderTx
from .order_types import PACKET_INDEX_WIDTH, STAMP_WIDTH
from .risk_gate import FORECAST_LATENCY, RISK_LATENCY, RiskGate
from .rx_path import COUNTERS, RX_CONFIG, RX_LATENCY, RX_STROBES, RxStages, connect_registers
from .stream import Beat, rx_stream
from .trigger import TRIGGER_LATENCY, Trigger

__all__ = ["Pipeline", "TRIGGER_CONFIG", "RISK_CONFIG", "TEMPLATE_CONFIG", "DEFAULT_SLOTS", "QUIET_CYCLES",
           "SAME_QUIET_CYCLES", "REQUEST_QUIET_CYCLES", "ORDER_QUIET_CYCLES"]

DEFAULT_SLOTS = 2
#: Cycles the pipeline must go without a tracked message, bad packet end or register write (and
#: request or order: below) before the fast path may judge a message (and no frame may be on ``tx``
#: then): long enough for the book to show the last message and the fast path's thresholds and the
#: risk forecast to follow, and for the strategy to make a request of it (which restarts the count).
QUIET_CYCLES = max(REPLACE_LATENCY + FAST_SETTLE_CYCLES + FORECAST_LATENCY, REPLACE_LATENCY + TRIGGER_LATENCY)
#: The same before the fast path may judge a message of the lead (of the target) when the tracked
#: messages before it were of that instrument alone: the orders the fast path makes on the lead's
#: messages are the target's quotes, and a bound from the lead's prices on the target's, so the risk
#: gate's forecast of them does not follow that instrument's messages; only the book, the fast
#: path's thresholds and the strategy's request (which restarts the count) have to.
SAME_QUIET_CYCLES = REPLACE_LATENCY + max(FAST_SETTLE_CYCLES, TRIGGER_LATENCY)
#: The same after a strategy request: its order leaves the risk gate ``RISK_LATENCY`` cycles later (and
#: restarts the count), or it was rejected, which leaves the gate's state as it was.
REQUEST_QUIET_CYCLES = RISK_LATENCY
#: The same after an order leaves the risk gate: the state it moved (outstanding orders, tokens) shows
#: from that cycle on, and in the gate's forecast ``FORECAST_LATENCY`` cycles later (a count of n lets
#: the fast path judge a message from n + 1 cycles after what restarted it).
ORDER_QUIET_CYCLES = FORECAST_LATENCY - 1

#: Strategy registers, with their reset values (0 = off, and so on).
TRIGGER_CONFIG = {"strategy": 0, "lead_slot": 0, "target_slot": 1, "edge": 0, "order_size": 0,
                  "watch_slot": 0, "watch_source": 0, "threshold": 0, "threshold_above": 1,
                  "threshold_side": 0}
#: Risk limits: every one 0 at reset, which rejects every order until the host sets them.
RISK_CONFIG = {"kill": 0, "max_qty": 0, "max_notional": 0, "collar": 0, "position": 0, "max_long": 0,
               "max_short": 0, "max_outstanding": 0, "rate_period": 0}
#: The order template (register name -> OrderTx port and reset value). Addresses, ports and the
#: firm are prefixed ``order_`` where the receive path has a register of the same name.
TEMPLATE_CONFIG = {
    "order_dst_mac": ("dst_mac", 0x02_00_00_00_00_02), "order_src_mac": ("src_mac", 0x02_00_00_00_00_01),
    "order_src_ip": ("src_ip", 0x0A_00_00_01), "order_dst_ip": ("dst_ip", 0x0A_00_00_02),
    "order_src_port": ("src_port", 40000), "order_dst_port": ("dst_port", 15000),
    "tcp_ack": ("tcp_ack", 0), "tcp_window": ("tcp_window", 65535), "ip_ttl": ("ip_ttl", 64),
    "token_prefix": ("token_prefix", int.from_bytes(b"T2T000", "big")),
    "firm": ("firm", int.from_bytes(b"T2T ", "big")), "display": ("display", ord("Y")),
    "capacity": ("capacity", ord("P")), "customer_type": ("customer_type", ord("R")),
}


def _width(port):
    return Value.cast(port).shape().width


class Pipeline(wiring.Component):
    """Receive path, order book, strategies, risk gate and order transmitter, with one register block.

    Parameters
    ----------
    slots : int
        Tracked instruments (slot 0 the lead, slot 1 the target by default).
    capacity : int
        Orders the book's hash table holds (a power of two).
    levels : int
        Price levels the book keeps per side.

    Interface attributes
    --------------------
    rx : In(beat stream)
        Frames from the MAC (no FCS), no backpressure.
    tx : Out(beat stream with ready)
        Order frames to the MAC (no FCS); a last beat with ``err`` set is an
        aborted frame the MAC must end with a bad FCS.
    csr : In(RegisterBus)
        Every register of every stage; the map is ``address_map`` (first
        word of each) and ``registers`` (address, width, kind).
    """

    def __init__(self, *, slots=DEFAULT_SLOTS, capacity=4096, levels=4):
        if slots < 2:
            raise ValueError(f"slots must be at least 2 (a lead and a target), not {slots}")
        self.slots, self.capacity, self.levels = slots, capacity, levels
        # The stages are made here so that the register block can take its widths from their ports.
        self._rx_stages = RxStages()
        self._book = OrderBook(slots=slots, capacity=capacity, levels=levels)
        self._trigger = Trigger(slots=slots)
        self._risk = RiskGate()
        self._order_tx = OrderTx(slots=slots)
        self._fast_trigger = FastTrigger(slots=slots, levels=levels)
        trigger, risk, order_tx = self._trigger, self._risk, self._order_tx
        config = dict(RX_CONFIG)
        config.update({f"locate_{slot}": (16, 0) for slot in range(slots)})
        config.update({name: (_width(getattr(trigger, name)), init) for name, init in TRIGGER_CONFIG.items()})
        config.update({name: (_width(getattr(risk, name)), init) for name, init in RISK_CONFIG.items()})
        config.update({name: (_width(getattr(order_tx, port)), init)
                       for name, (port, init) in TEMPLATE_CONFIG.items()})
        config.update({f"symbol_{slot}": (64, int.from_bytes(b" " * 8, "big")) for slot in range(slots)})
        config["probe_select"] = (_width(order_tx.probe_select), 0)
        counters = dict(COUNTERS)
        for stage in (self._book, trigger, risk, order_tx):
            counters.update({name: field.width for name, field in data.Layout.cast(stage.events.shape())})
        self._registers = RegisterBlock(
            config=config,
            strobes={**RX_STROBES, "book_clear": slots, "rearm": 1, "orders_done": 32, "restart": 1},
            state={"rate_burst": 32, "tcp_seq": 32, "token_counter": 32},
            status={"outstanding": 32, "tokens": 32, "probe_trigger_cycle": 32, "probe_tx_cycle": 32,
                    "book_unreliable": slots, "book_emptying": 1},
            counters=counters,
        )
        self.registers = self._registers.registers
        self.address_map = self._registers.address_map
        super().__init__({
            "rx": In(rx_stream()),
            "tx": Out(stream.Signature(Beat)),
            "csr": In(RegisterBus()),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.registers = registers = self._registers
        # `restart` (a new run on a loaded board) resets every stage and empties the book; the
        # registers (configuration and counters) stay.
        restart = registers.restart
        rx_stages, book = self._rx_stages, self._book
        trigger, risk, order_tx, fast_trigger = self._trigger, self._risk, self._order_tx, self._fast_trigger
        m.submodules.order_book = book
        m.d.comb += [book.empty.eq(restart), registers.book_emptying.eq(book.emptying)]
        for name, stage in (("rx_stages", rx_stages), ("trigger", trigger), ("risk_gate", risk),
                            ("order_tx", order_tx), ("fast_trigger", fast_trigger)):
            m.submodules[name] = ResetInserter(restart)(stage)

        # Cycle stamps: `cycle` counts from reset; `rx_cycle` lags it by the receive path's
        # latency, so a message leaving it is stamped with the cycle its last byte was at rx.
        # `packets_ended` counts packet ends: the index of the packet now being delivered.
        m.submodules.stamps = stamps = ResetInserter(restart)(Module())
        cycle = Signal(STAMP_WIDTH)
        rx_cycle = Signal(STAMP_WIDTH, init=-RX_LATENCY % 2 ** STAMP_WIDTH)
        packets_ended = Signal(PACKET_INDEX_WIDTH)
        stamps.d.sync += [cycle.eq(cycle + 1), rx_cycle.eq(rx_cycle + 1)]
        with stamps.If(rx_stages.packet_end.valid):
            stamps.d.sync += packets_ended.eq(packets_ended + 1)

        wiring.connect(m, wiring.flipped(self.rx), rx_stages.rx)
        for consumer in (book, trigger, fast_trigger):
            m.d.comb += [
                consumer.messages.valid.eq(rx_stages.messages.valid),
                consumer.messages.p.eq(rx_stages.messages.p),
                consumer.stamp.cycle.eq(rx_cycle),
                consumer.stamp.packet.eq(packets_ended),
            ]
        for consumer in (book, order_tx):
            m.d.comb += [consumer.packet_end.valid.eq(rx_stages.packet_end.valid),
                         consumer.packet_end.p.eq(rx_stages.packet_end.p)]
        m.d.comb += [trigger.tops.eq(book.tops), trigger.tops_stamp.eq(book.tops_stamp)]
        wiring.connect(m, trigger.requests, risk.requests)
        wiring.connect(m, risk.orders, order_tx.orders)
        wiring.connect(m, order_tx.tx, wiring.flipped(self.tx))
        m.d.comb += order_tx.cycle.eq(cycle)
        self._fast_path(m, fast_trigger, book, trigger, risk, order_tx, rx_stages, registers)

        # Registers.
        wiring.connect(m, wiring.flipped(self.csr), registers.bus)
        connect_registers(m, registers, rx_stages, [*RX_CONFIG, *RX_STROBES])
        for slot in range(self.slots):
            locate = getattr(registers, f"locate_{slot}")
            m.d.comb += [book.locates[slot].eq(locate), trigger.locates[slot].eq(locate),
                         order_tx.symbols[slot].eq(getattr(registers, f"symbol_{slot}"))]
        m.d.comb += [book.clear.eq(registers.book_clear),
                     registers.book_unreliable.eq(Cat(book.tops[slot].unreliable for slot in range(self.slots)))]
        connect_registers(m, registers, book, [])
        connect_registers(m, registers, trigger, [*TRIGGER_CONFIG, "rearm"])
        connect_registers(m, registers, risk, [*RISK_CONFIG, "orders_done"])
        for name, (port, _init) in TEMPLATE_CONFIG.items():
            m.d.comb += getattr(order_tx, port).eq(getattr(registers, name))
        connect_registers(m, registers, order_tx, ["probe_select"])

        # The bucket size is kept here (the risk gate only needs it and its write strobe).
        rate_burst = Signal(32)
        with m.If(registers.rate_burst_write):
            m.d.sync += rate_burst.eq(registers.rate_burst_data)
        m.d.comb += [risk.rate_burst.eq(Mux(registers.rate_burst_write, registers.rate_burst_data, rate_burst)),
                     risk.rate_burst_write.eq(registers.rate_burst_write),
                     registers.rate_burst.eq(rate_burst)]
        for name in ("outstanding", "tokens"):
            m.d.comb += getattr(registers, name).eq(getattr(risk, name))
        for name in ("tcp_seq", "token_counter"):
            m.d.comb += [getattr(registers, name).eq(getattr(order_tx, name)),
                         getattr(order_tx, f"{name}_write").eq(getattr(registers, f"{name}_write")),
                         getattr(order_tx, f"{name}_data").eq(getattr(registers, f"{name}_data"))]
        for name in ("probe_trigger_cycle", "probe_tx_cycle"):
            m.d.comb += getattr(registers, name).eq(getattr(order_tx, name))
        return m

    def _fast_path(self, m, fast_trigger, book, trigger, risk, order_tx, rx_stages, registers):
        """The fast trigger's inputs, when it may judge a message (``lead_quiet``, ``target_quiet``), and its orders into the transmitter."""
        m.d.comb += [
            fast_trigger.tops.eq(book.tops),
            fast_trigger.depths.eq(book.depths),
            fast_trigger.collar.eq(registers.collar),
            risk.forecast_orders.eq(fast_trigger.forecast_orders),
            fast_trigger.risk_ok.eq(risk.forecast),
        ]
        for slot in range(self.slots):
            m.d.comb += fast_trigger.locates[slot].eq(getattr(registers, f"locate_{slot}"))
        for name in ("strategy", "lead_slot", "target_slot", "edge", "order_size"):
            m.d.comb += getattr(fast_trigger, name).eq(getattr(registers, name))
        message = rx_stages.messages
        of_slots = Cat(*(message.p.locate == getattr(registers, f"locate_{slot}") for slot in range(self.slots)))
        tracked = message.valid & (message.p.gap | of_slots.any())
        # What moves the state the fast path judges on (and drops its kept state), and a frame on `tx`,
        # which only keeps it from starting one (the frame's order moved the risk gate's state long
        # before its last beat: the count restarted then).
        upset = (rx_stages.packet_end.valid & rx_stages.packet_end.p.bad) | self.csr.w_en | book.clear.any()
        moved = trigger.requests.valid | risk.orders.valid | upset
        sending = order_tx.tx.valid
        # Per instrument of the snipe, the cycles to go before its messages may be judged: a message
        # of that instrument alone restarts the count from SAME_QUIET_CYCLES, any other tracked message,
        # a bad packet's end, a register write or a book clear from QUIET_CYCLES, a request or an order
        # from their own counts (each unless more are left); for the lead, not a target's add the fast
        # trigger saw behind the target's quotes (``target_still``: they stay as they are), and a target's
        # message it kept from TARGET_KEPT_CYCLES (its thresholds and forecast follow the kept quote).
        target_kept = fast_trigger.target_kept
        for role, counted, kept in (("lead", tracked & ~fast_trigger.target_still & ~target_kept, target_kept),
                                    ("target", tracked, 0)):
            of_role_only = ~message.p.gap & (of_slots == (Const(1, self.slots) << getattr(registers, f"{role}_slot")))
            restart = Mux(upset | (counted & ~of_role_only), QUIET_CYCLES,
                          Mux(counted, SAME_QUIET_CYCLES,
                              Mux(kept, TARGET_KEPT_CYCLES - 1,
                                  Mux(trigger.requests.valid, REQUEST_QUIET_CYCLES,
                                      Mux(risk.orders.valid, ORDER_QUIET_CYCLES, 0)))))
            settling = Signal(range(QUIET_CYCLES + 1), init=QUIET_CYCLES, name=f"{role}_settling")
            counted_down = Mux(settling == 0, 0, settling - 1)
            m.d.sync += settling.eq(Mux(counted_down < restart, restart, counted_down))
            m.d.comb += getattr(fast_trigger, f"{role}_quiet").eq((settling == 0) & ~sending)
        m.d.comb += [fast_trigger.tracked.eq(tracked), fast_trigger.disturbed.eq(moved | sending)]
        wiring.connect(m, fast_trigger.fast, order_tx.fast)
