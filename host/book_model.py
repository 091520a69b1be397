"""Golden model of the order book stage, exactly as docs/pipeline.md specifies it.

`BookModel` keeps the order table (a direct-mapped hash table of `capacity`
buckets), the price levels of each side of each tracked slot and the
`unreliable` flags, and applies the delivered messages one at a time, as JSON
records of ``itch.to_record``. It has no clock: ``tops()`` after a call is
what the gateware's ``tops`` shows once that input has gone through.

Readings of the doc made here (the gateware, ``hdl/order_book.py``, matches
them):

- ``book_gap`` counts once per packet: on the first message with ``gap`` set
  since the last packet end (every message of a packet after a gap carries
  the flag; every such message marks every slot unreliable).
- ``book_bad_packet`` counts a bad packet end when a message of that packet
  touched a tracked slot, whether or not the slot was already unreliable.
- A message matches no slot when its locate is 0 (slot unused).
- A known level is removed when its ``orders``, after taking, is 0 (16-bit
  wrapping), whatever the shares.
- Host writes and packet ends are ordered with the messages as the caller
  makes the calls (the gateware: clear, then packet end, then message, for
  inputs in the same cycle).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..hdl.order_types import REFS_WIDTH
from .order_types import InstrumentDepth, InstrumentTop, Quote, Side, SideDepth

__all__ = ["order_index", "BookModel", "BOOK_TYPES", "BOOK_COUNTERS"]

#: The message types that change the book.
BOOK_TYPES = frozenset("AFECXDU")
#: The counters of the stage, in the order of ``BookEvents``.
BOOK_COUNTERS = ("book_gap", "book_bad_packet", "book_collision", "book_unknown_ref", "book_level_mismatch")

_SHARES_MASK = 0xFFFF_FFFF
_ORDERS_MASK = 0xFFFF
_BEYOND_MASK = 0xFFFF
_COUNTER_MASK = 0xFFFF_FFFF
_REFS_MASK = (1 << REFS_WIDTH) - 1


def order_index(order_ref: int, capacity: int) -> int:
    """The bucket of ``order_ref``: XOR of the consecutive log2(capacity)-bit slices of its low 32 bits."""
    _check_capacity(capacity)
    bits = capacity.bit_length() - 1
    low, index = order_ref & 0xFFFF_FFFF, 0
    while low:
        index ^= low & (capacity - 1)
        low >>= bits
    return index


def _check_capacity(capacity: int) -> None:
    if not isinstance(capacity, int) or capacity < 2 or capacity & (capacity - 1):
        raise ValueError(f"capacity must be a power of two >= 2, not {capacity!r}")


@dataclass
class _Entry:
    """A used bucket of the order table."""
    order_ref: int
    slot: int
    side: Side
    price: int
    shares: int


@dataclass
class _Level:
    price: int
    shares: int
    orders: int
    refs: int  # XOR of its orders' references' low REFS_WIDTH bits: a level of one order names it


@dataclass
class _SideBook:
    """One side of one slot: the known levels, best first, and the orders beyond them."""
    levels: list = field(default_factory=list)
    beyond: int = 0

    def better(self, side: Side, price: int, than: int) -> bool:
        return price > than if side is Side.BID else price < than

    def quote(self) -> Quote:
        if self.levels:
            return Quote(valid=True, unknown=False, price=self.levels[0].price, shares=self.levels[0].shares)
        return Quote(valid=False, unknown=self.beyond > 0)

    def depth(self) -> SideDepth:
        """The best two levels' references, and the quotes the side shows once they are gone."""
        def level(index):
            if index < len(self.levels):
                return self.levels[index]
            return None

        def quote_of(index):
            if level(index) is None:
                return Quote(valid=False, unknown=self.beyond > 0)
            return Quote(valid=True, unknown=False, price=level(index).price, shares=level(index).shares)

        def named(index):
            return level(index) is not None and level(index).orders == 1, level(index).refs if level(index) else 0

        (alone, best_refs), (next_alone, next_refs) = named(0), named(1)
        return SideDepth(alone=alone, best_refs=best_refs, next=quote_of(1), next_alone=next_alone,
                         next_refs=next_refs, third=quote_of(2))


class BookModel:
    """The order book: order table, price levels and unreliable flags of ``slots`` tracked instruments."""

    def __init__(self, *, slots=2, capacity=4096, levels=4, locates=()):
        _check_capacity(capacity)
        if not isinstance(levels, int) or levels < 1:
            raise ValueError(f"levels must be >= 1, not {levels!r}")
        if not isinstance(slots, int) or not 1 <= slots <= 16:
            raise ValueError(f"slots must be 1..16, not {slots!r}")
        if len(locates) > slots:
            raise ValueError(f"{len(locates)} locates for {slots} slots")
        self.slots, self.capacity, self.levels = slots, capacity, levels
        self.locates = list(locates) + [0] * (slots - len(locates))
        self.counters = {name: 0 for name in BOOK_COUNTERS}
        self.table: dict[int, _Entry] = {}
        self.books = [{side: _SideBook() for side in Side} for _ in range(slots)]
        self.unreliable = [False] * slots
        self._touched: set[int] = set()   # slots a message of the current packet touched
        self._gap_counted = False         # book_gap already counted in the current packet

    # --- inputs ---------------------------------------------------------------------

    def apply(self, record: dict) -> None:
        """Apply one delivered message (a record of ``itch.to_record``)."""
        if record.get("gap"):
            self.unreliable = [True] * self.slots
            if not self._gap_counted:
                self._count("book_gap")
                self._gap_counted = True
        type_ = record["type"]
        slot = self.slot_of(record["locate"])
        if type_ not in BOOK_TYPES or slot is None:
            return
        self._touched.add(slot)
        if type_ in "AF":
            self._add(slot, record["order_ref"], _side(record["side"]), record["price"], record["shares"])
            return
        ref = record["original_order_ref"] if type_ == "U" else record["order_ref"]
        index = order_index(ref, self.capacity)
        entry = self.table.get(index)
        if entry is None or entry.order_ref != ref or entry.slot != slot:
            self._flag(slot, "book_unknown_ref")
            return
        if type_ in "DU":
            taken = entry.shares
        else:
            executed = record["cancelled_shares"] if type_ == "X" else record["executed_shares"]
            taken = min(executed, entry.shares)
        entry.shares -= taken
        leaves = entry.shares == 0 or type_ in "DU"
        if leaves:
            del self.table[index]
        self._take(slot, entry.side, entry.price, taken, ref if leaves else None)
        if type_ == "U":
            self._add(slot, record["new_order_ref"], entry.side, record["price"], record["shares"])

    def packet_end(self, bad: bool) -> None:
        """The end of a packet: a bad one marks unreliable every slot its messages touched."""
        if bad and self._touched:
            for slot in self._touched:
                self.unreliable[slot] = True
            self._count("book_bad_packet")
        self._touched.clear()
        self._gap_counted = False

    def clear(self, mask: int) -> None:
        """The host's ``book_clear``: clear the unreliable flag of each slot whose bit is set."""
        for slot in range(self.slots):
            if mask >> slot & 1:
                self.unreliable[slot] = False

    def empty(self) -> None:
        """The host's ``book_empty``: no order, no level, no unreliable flag (the counters stay)."""
        self.table.clear()
        self.books = [{side: _SideBook() for side in Side} for _ in range(self.slots)]
        self.unreliable = [False] * self.slots
        self._touched.clear()
        self._gap_counted = False

    # --- outputs --------------------------------------------------------------------

    def tops(self) -> list[InstrumentTop]:
        return [InstrumentTop(bid=book[Side.BID].quote(), ask=book[Side.ASK].quote(), unreliable=self.unreliable[slot])
                for slot, book in enumerate(self.books)]

    def depths(self) -> list[InstrumentDepth]:
        """Per slot, what is beneath each side's best level (the fast path's view of a removal)."""
        return [InstrumentDepth(bid=book[Side.BID].depth(), ask=book[Side.ASK].depth()) for book in self.books]

    def slot_of(self, locate: int) -> int | None:
        """The slot a message of ``locate`` belongs to (the lowest matching one), or None."""
        if locate == 0:
            return None
        return next((slot for slot, mine in enumerate(self.locates) if mine == locate), None)

    def side_levels(self, slot: int, side: Side) -> tuple[list[tuple[int, int, int]], int]:
        """The known levels ((price, shares, orders), best first) and ``beyond`` of one side."""
        book = self.books[slot][side]
        return [(level.price, level.shares, level.orders) for level in book.levels], book.beyond

    # --- rules ----------------------------------------------------------------------

    def _count(self, name: str) -> None:
        self.counters[name] = (self.counters[name] + 1) & _COUNTER_MASK

    def _flag(self, slot: int, counter: str) -> None:
        self.unreliable[slot] = True
        self._count(counter)

    def _add(self, slot: int, ref: int, side: Side, price: int, shares: int) -> None:
        """Store a new order (or count a collision) and add it to its side's levels."""
        index = order_index(ref, self.capacity)
        if index in self.table:
            self._flag(slot, "book_collision")
            return
        self.table[index] = _Entry(ref, slot, side, price, shares)
        book = self.books[slot][side]
        for level in book.levels:
            if level.price == price:
                level.shares = (level.shares + shares) & _SHARES_MASK
                level.orders = (level.orders + 1) & _ORDERS_MASK
                level.refs ^= ref & _REFS_MASK
                return
        position = next((j for j, level in enumerate(book.levels) if book.better(side, price, level.price)), None)
        if position is not None:
            book.levels.insert(position, _Level(price, shares, 1, ref & _REFS_MASK))
            if len(book.levels) > self.levels:
                pushed = book.levels.pop()
                book.beyond = (book.beyond + pushed.orders) & _BEYOND_MASK
        elif len(book.levels) < self.levels and book.beyond == 0:
            book.levels.append(_Level(price, shares, 1, ref & _REFS_MASK))
        else:
            book.beyond = (book.beyond + 1) & _BEYOND_MASK

    def _take(self, slot: int, side: Side, price: int, shares: int, leaving: int | None) -> None:
        """Take ``shares`` off the level of ``price``, and the order ``leaving`` (a reference) if not None."""
        orders = int(leaving is not None)
        book = self.books[slot][side]
        for j, level in enumerate(book.levels):
            if level.price == price:
                level.shares = (level.shares - shares) & _SHARES_MASK
                level.orders = (level.orders - orders) & _ORDERS_MASK
                level.refs ^= (leaving or 0) & _REFS_MASK
                if level.orders == 0:
                    del book.levels[j]
                return
        if book.beyond > 0:
            book.beyond = (book.beyond - orders) & _BEYOND_MASK
        else:
            self._flag(slot, "book_level_mismatch")


def _side(code) -> Side:
    """The book side of an ITCH side code: 'S' (or its byte) is the ask side, anything else the bid."""
    return Side.ASK if code in ("S", ord("S"), b"S") else Side.BID
