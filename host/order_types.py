"""Host-side twins of ``hdl/order_types.py``: what the golden models pass between stages."""

from __future__ import annotations

from dataclasses import dataclass

from ..hdl.order_types import RejectReason, Side

__all__ = ["Side", "RejectReason", "Quote", "InstrumentTop", "SideDepth", "InstrumentDepth", "OrderRequest",
           "side_code"]


@dataclass(frozen=True)
class Quote:
    """The best level of one side of a book (``hdl.order_types.Quote``)."""
    valid: bool = False
    unknown: bool = False
    price: int = 0
    shares: int = 0


@dataclass(frozen=True)
class InstrumentTop:
    """What a strategy sees of one tracked instrument (``hdl.order_types.InstrumentTop``)."""
    bid: Quote = Quote()
    ask: Quote = Quote()
    unreliable: bool = False


@dataclass(frozen=True)
class SideDepth:
    """Beneath the best level of one side (``hdl.order_types.SideDepth``)."""
    alone: bool = False
    best_refs: int = 0
    next: Quote = Quote()
    next_alone: bool = False
    next_refs: int = 0
    third: Quote = Quote()


@dataclass(frozen=True)
class InstrumentDepth:
    """Both sides' ``SideDepth`` of one tracked instrument (``hdl.order_types.InstrumentDepth``)."""
    bid: SideDepth = SideDepth()
    ask: SideDepth = SideDepth()


@dataclass(frozen=True)
class OrderRequest:
    """An order a strategy wants to send (``hdl.order_types.OrderRequest`` without the stamp)."""
    slot: int
    side: Side
    price: int
    shares: int
    fair_value: int = 0
    fair_valid: bool = False


def side_code(side: Side) -> str:
    """The OUCH buy/sell indicator of ``side``: 'B' for a buy, 'S' for a sell."""
    return "B" if side is Side.BID else "S"
