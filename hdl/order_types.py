"""Layouts shared by the stages after the receive path: book state, order requests, rejections.

docs/pipeline.md is the contract these layouts serve; the book, the
strategies, the risk gate and the order transmitter all speak them, so that
a strategy can be swapped without touching its neighbours.
"""

from amaranth.lib import data, enum

__all__ = ["Side", "Quote", "InstrumentTop", "book_tops", "SideDepth", "InstrumentDepth", "book_depths", "REFS_WIDTH", "Stamp", "OrderRequest", "RejectReason",
           "PRICE_WIDTH", "SHARES_WIDTH", "STAMP_WIDTH", "PACKET_INDEX_WIDTH"]

PRICE_WIDTH = 32
SHARES_WIDTH = 32
#: Width of the cycle stamps (latency probes); they wrap.
STAMP_WIDTH = 32
#: Width of the packet index that ties an order to the packet that triggered it; it wraps.
PACKET_INDEX_WIDTH = 8


class Side(enum.Enum, shape=1):
    """A side of the book, and of an order: bids are bought from, asks sold to."""
    BID = 0  # a buy order ('B')
    ASK = 1  # a sell order ('S')


class Quote(data.Struct):
    """The best level of one side of one instrument's book.

    Interface attributes
    --------------------
    valid : 1 bit
        The side has a known best level (``price`` and ``shares`` mean something).
    unknown : 1 bit
        The side has orders, but none inside the tracked levels, so its best
        price is not known (``valid`` is then 0).
    price : 32 bits
        Best price (4 implied decimals).
    shares : 32 bits
        Shares resting at the best price, summed over its orders.
    """
    valid: 1
    unknown: 1
    price: PRICE_WIDTH
    shares: SHARES_WIDTH


class InstrumentTop(data.Struct):
    """What a strategy sees of one tracked instrument.

    Interface attributes
    --------------------
    bid, ask : Quote
    unreliable : 1 bit
        The book of this instrument may be wrong (collision, unknown order
        reference, feed gap, a bad packet applied); cleared only by the host.
    """
    bid: Quote
    ask: Quote
    unreliable: 1


def book_tops(slots):
    """The layout of every tracked instrument's top of book, indexed by slot."""
    return data.ArrayLayout(InstrumentTop, slots)


#: The low bits of an order reference a price level's ``refs`` keep: enough to tell a day's orders
#: apart (their references are unique and sequential); a match on them alone is at worst a wrong
#: prediction of the fast path, which it aborts.
REFS_WIDTH = 32


class SideDepth(data.Struct):
    """Beneath the best level of one side: what a removal of its only order would leave.

    The fast path (``hdl/fast_trigger.py``) reads it to judge a delete or a
    replace without the order table: a best level of one order names that
    order, so a message of that reference empties the level, and ``next``
    becomes the side's quote. The second level is named the same way, and
    the third shown, so that the fast path can judge a removal from the
    second level too once one before it has emptied the best.

    Interface attributes
    --------------------
    alone : 1 bit
        The best level is known and holds one order.
    best_refs : 32 bits
        The XOR of the low ``REFS_WIDTH`` bits of the best level's order
        references (its order's when ``alone``); 0 when no level is known.
    next : Quote
        The quote the side would show without its best level: the second
        level, or none (``unknown`` if orders are beyond the known levels).
    next_alone, next_refs : 1 bit, 32 bits
        ``alone`` and ``best_refs`` of the second level.
    third : Quote
        The quote the side would show without its first two levels.
    """
    alone: 1
    best_refs: REFS_WIDTH
    next: Quote
    next_alone: 1
    next_refs: REFS_WIDTH
    third: Quote


class InstrumentDepth(data.Struct):
    """``SideDepth`` of both sides of one tracked instrument."""
    bid: SideDepth
    ask: SideDepth


def book_depths(slots):
    """The layout of every tracked instrument's ``InstrumentDepth``, indexed by slot."""
    return data.ArrayLayout(InstrumentDepth, slots)


class Stamp(data.Struct):
    """Where an order came from, carried with it to the wire.

    Interface attributes
    --------------------
    cycle : 32 bits
        The cycle in which the last byte of the message that triggered it was
        at ``rx`` (the latency probes' start).
    packet : 8 bits
        Index of the packet that carried that message (counts packet ends,
        wraps): the order frame is aborted if that packet ends bad.
    """
    cycle: STAMP_WIDTH
    packet: PACKET_INDEX_WIDTH


class OrderRequest(data.Struct):
    """An order a strategy wants to send, before the risk gate.

    Interface attributes
    --------------------
    slot : 8 bits
        The tracked instrument (its symbol goes into the order).
    side : Side
    price : 32 bits
    shares : 32 bits
    fair_value : 32 bits
        The fair value the strategy used (the lead's mid), for the price collar.
    fair_valid : 1 bit
        ``fair_value`` is known.
    stamp : Stamp
    """
    slot: 8
    side: Side
    price: PRICE_WIDTH
    shares: SHARES_WIDTH
    fair_value: PRICE_WIDTH
    fair_valid: 1
    stamp: Stamp


class RejectReason(enum.Enum):
    """Why the risk gate refused an order, in the order the checks are made (docs/pipeline.md)."""
    KILL = 0
    MAX_QTY = 1
    MAX_NOTIONAL = 2
    COLLAR = 3
    POSITION = 4
    OUTSTANDING = 5
    RATE = 6
    BUSY = 7
