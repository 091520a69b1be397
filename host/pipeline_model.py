"""Golden model of the whole pipeline: frames in, order frames out, as docs/pipeline.md specifies.

Composes the stage models like ``hdl/pipeline.py`` composes the gateware:
the receive path (``RxModel``), the book (``BookModel``), the active strategy
(``TriggerModel``), the risk gate (``RiskModel``) and the order transmitter
(``OrderTxModel``). Per frame: each delivered message is applied to the
book, the strategy is evaluated on the state after it, each order request
goes through the risk gate; at the packet's end the book learns whether it
was bad, and the accepted orders become frames only if it was good (the
gateware aborts the others on the wire, docs/pipeline.md "Aborting an order
frame"). There are no cycles here, except that a caller may give each
frame's cycle so that the risk gate's token bucket refills as in hardware.
"""

from __future__ import annotations

from dataclasses import dataclass

from .book_model import BookModel
from .order_tx_model import OrderTxModel
from .order_types import OrderRequest
from .risk_model import RiskModel
from .rx_model import RxModel
from .strategy import LEAD_SLOT, SLOTS, TARGET_SLOT, StrategyFile, resolve_instruments
from .trigger_model import TriggerModel

__all__ = ["ModelOrder", "PipelineModel", "stock_directory"]


@dataclass(frozen=True)
class ModelOrder:
    """An order the model sends: its frame, the request, and the input frame and message behind it."""
    frame: bytes
    request: OrderRequest
    source_frame: int
    trigger_seq: int
    token_counter: int


def stock_directory(frames) -> dict[str, int]:
    """Symbol -> stock locate, from the Stock Directory messages the receive path delivers."""
    receive = RxModel()
    directory = {}
    for frame in frames:
        for record in receive.process(frame.data, err=frame.err):
            if record["type"] == "R":
                directory.setdefault(record["stock"], record["locate"])
    return directory


class PipelineModel:
    """The pipeline's golden model for one strategy file; ``process`` one frame at a time."""

    def __init__(self, strategy: StrategyFile, *, directory: dict[str, int], **rx_options):
        resolved = resolve_instruments(strategy, directory)
        locates = [0] * SLOTS
        symbols = [""] * SLOTS
        for role, slot in (("lead", LEAD_SLOT), ("target", TARGET_SLOT)):
            locates[slot], symbols[slot] = resolved[role]
        self.strategy = strategy
        self.locates, self.symbols = locates, symbols
        self.rx = RxModel(**rx_options)
        self.book = BookModel(slots=SLOTS, capacity=strategy.book_capacity, levels=strategy.book_levels,
                              locates=locates)
        self.trigger = TriggerModel(strategy.strategy, slots=SLOTS, locates=locates)
        self.risk = RiskModel(strategy.risk)
        self.tx = OrderTxModel(strategy.template, symbols, tcp_seq=strategy.tcp_seq,
                               token_counter=strategy.token_counter)
        self.orders: list[ModelOrder] = []
        self.requests = 0
        self.aborted = 0
        self._frames = 0

    def process(self, frame: bytes, *, err: bool = False, cycle: int | None = None) -> list[ModelOrder]:
        """Run one input frame through the pipeline; the orders it sent."""
        number, self._frames = self._frames, self._frames + 1
        trace = self.rx.trace(frame, err)
        accepted = []
        for record in trace.records:
            self.book.apply(record)
            for request in self.trigger.evaluate(self.book.tops(), record):
                self.requests += 1
                if self.risk.check(request, cycle) is None:
                    accepted.append((request, record["seq"]))
        if trace.packet_bad is not None:
            self.book.packet_end(trace.packet_bad)
        if trace.packet_bad:
            self.aborted += len(accepted)
            return []
        sent = []
        for request, trigger_seq in accepted:
            token_counter = self.tx.token_counter
            sent.append(ModelOrder(self.tx.send(request), request, number, trigger_seq, token_counter))
        self.orders.extend(sent)
        return sent

    def counters(self) -> dict[str, int]:
        """Every counter of the model: receive path, book, risk gate, and the transmitter's."""
        return {**self.rx.counters, **self.book.counters, **self.risk.counters,
                "orders_sent": len(self.orders), "orders_aborted": self.aborted,
                "trigger_fired": self.requests}
