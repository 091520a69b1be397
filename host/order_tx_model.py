"""Golden model of the order transmitter: the OUCH Enter Order frame of each accepted order.

docs/pipeline.md ("Order transmit") is the contract: one 106-byte frame per
order (OUCH 4.2 Enter Order in a SoupBinTCP Unsequenced Data packet in
TCP/IPv4/Ethernet, no FCS), built from the order template, the order's slot
symbol, side, shares and price, the TCP sequence number and an order token
made of a fixed prefix and a counter. The frames are built with the
project's codecs (``codec.net``, ``codec.soupbintcp``, ``codec.ouch``), so
that the gateware is checked against encoders written from the protocol
specifications, not against a second copy of its own layout table.

The model has no clock: aborted frames (their packet ended bad) never reach
it, since the golden model produces no order for such a packet; a test that
expects an aborted frame builds it with ``order_frame`` and the model's
current ``tcp_seq`` and ``token_counter``, which it leaves unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass

from .codec.net import tcp_frame
from .codec.ouch import TIME_IN_FORCE_IOC, EnterOrder
from .codec.soupbintcp import UnsequencedData, pad_text
from .order_types import OrderRequest, side_code

__all__ = ["FRAME_BYTES", "TCP_SEQ_STEP", "TOKEN_PREFIX_CHARS", "SYMBOL_CHARS", "OrderTemplate",
           "order_token", "symbol_register", "order_frame", "OrderTxModel"]

#: Bytes of an order frame, without FCS.
FRAME_BYTES = 106
#: TCP payload bytes per frame (SoupBinTCP length 2 + type 1 + Enter Order 49): the sequence step.
TCP_SEQ_STEP = 52
TOKEN_PREFIX_CHARS = 6
SYMBOL_CHARS = 8
_FIRM_CHARS = 4
_WRAP = 1 << 32


def _text_register(text: str, width: int, what: str) -> int:
    """``text`` space-padded to ``width`` latin-1 bytes, as a big-endian integer (first byte most significant)."""
    return int.from_bytes(pad_text(text, width, what), "big")


@dataclass(frozen=True)
class OrderTemplate:
    """What every order frame shares: addresses, ports, TCP and OUCH constants (docs/pipeline.md).

    Addresses are raw network-order bytes (6 for a MAC, 4 for IPv4), as in
    ``codec.net``. ``firm`` holds up to 4 characters (space-padded on the
    wire); ``token_prefix`` exactly 6; the OUCH codes one character each.
    """
    dst_mac: bytes
    src_mac: bytes
    src_ip: bytes
    dst_ip: bytes
    src_port: int
    dst_port: int
    tcp_ack: int = 0
    tcp_window: int = 65535
    ip_ttl: int = 64
    token_prefix: str = "T2T000"
    firm: str = "T2T"
    display: str = "Y"
    capacity: str = "P"
    customer_type: str = "R"

    def __post_init__(self):
        for name, length in (("dst_mac", 6), ("src_mac", 6), ("src_ip", 4), ("dst_ip", 4)):
            value = getattr(self, name)
            if not isinstance(value, (bytes, bytearray)) or len(value) != length:
                raise ValueError(f"{name} must be {length} bytes, got {value!r}")
        for name, bits in (("src_port", 16), ("dst_port", 16), ("tcp_ack", 32), ("tcp_window", 16), ("ip_ttl", 8)):
            value = getattr(self, name)
            if not isinstance(value, int) or not 0 <= value < 1 << bits:
                raise ValueError(f"{name} must be an integer of {bits} bits, got {value!r}")
        if len(self.token_prefix) != TOKEN_PREFIX_CHARS:
            raise ValueError(f"token_prefix must be {TOKEN_PREFIX_CHARS} characters, got {self.token_prefix!r}")
        if len(self.firm) > _FIRM_CHARS:
            raise ValueError(f"firm must be at most {_FIRM_CHARS} characters, got {self.firm!r}")
        for name in ("display", "capacity", "customer_type"):
            if len(getattr(self, name)) != 1:
                raise ValueError(f"{name} must be one character, got {getattr(self, name)!r}")
        self.registers()  # every text must also be latin-1

    def registers(self) -> dict[str, int]:
        """Each template register's value, by OrderTx port name: multi-byte fields big-endian
        (the register's most significant byte is the field's first byte on the wire)."""
        return {
            "dst_mac": int.from_bytes(self.dst_mac, "big"),
            "src_mac": int.from_bytes(self.src_mac, "big"),
            "src_ip": int.from_bytes(self.src_ip, "big"),
            "dst_ip": int.from_bytes(self.dst_ip, "big"),
            "src_port": self.src_port,
            "dst_port": self.dst_port,
            "tcp_ack": self.tcp_ack,
            "tcp_window": self.tcp_window,
            "ip_ttl": self.ip_ttl,
            "token_prefix": _text_register(self.token_prefix, TOKEN_PREFIX_CHARS, "token_prefix"),
            "firm": _text_register(self.firm, _FIRM_CHARS, "firm"),
            "display": _text_register(self.display, 1, "display"),
            "capacity": _text_register(self.capacity, 1, "capacity"),
            "customer_type": _text_register(self.customer_type, 1, "customer_type"),
        }


def symbol_register(symbol: str) -> int:
    """The ``symbol_<slot>`` register value of ``symbol``: 8 bytes space-padded, big-endian."""
    return _text_register(symbol, SYMBOL_CHARS, "symbol")


def order_token(prefix: str, counter: int) -> str:
    """The OUCH order token: ``prefix`` followed by ``counter`` as 8 upper-case hex digits."""
    if not 0 <= counter < _WRAP:
        raise ValueError(f"token counter must be a 32-bit unsigned integer, got {counter}")
    return f"{prefix}{counter:08X}"


def order_frame(template: OrderTemplate, request: OrderRequest, *, symbol: str, tcp_seq: int,
                token_counter: int) -> bytes:
    """The frame (without FCS) that sends ``request`` with this sequence number and token counter."""
    enter = EnterOrder(
        token=order_token(template.token_prefix, token_counter),
        side=side_code(request.side),
        shares=request.shares,
        stock=symbol,
        price=request.price,
        time_in_force=TIME_IN_FORCE_IOC,
        firm=template.firm,
        display=template.display,
        capacity=template.capacity,
        intermarket_sweep="N",
        minimum_quantity=0,
        cross_type="N",
        customer_type=template.customer_type,
    )
    frame = tcp_frame(
        UnsequencedData(enter.encode()).encode(),
        src_mac=template.src_mac, dst_mac=template.dst_mac, src_ip=template.src_ip, dst_ip=template.dst_ip,
        src_port=template.src_port, dst_port=template.dst_port, seq=tcp_seq, ack=template.tcp_ack,
        window=template.tcp_window, ttl=template.ip_ttl,
    )
    assert len(frame) == FRAME_BYTES, len(frame)
    return frame


class OrderTxModel:
    """The transmitter's state: the template, the slots' symbols, the next sequence number and token counter.

    ``tcp_seq`` and ``token_counter`` are plain attributes: the host's writes
    are assignments to them.
    """

    def __init__(self, template: OrderTemplate, symbols: list[str], *, tcp_seq: int = 0, token_counter: int = 0):
        for symbol in symbols:
            symbol_register(symbol)  # checks the length and the characters
        self.template = template
        self.symbols = list(symbols)
        self.tcp_seq = tcp_seq
        self.token_counter = token_counter

    def send(self, request: OrderRequest) -> bytes:
        """The frame of ``request``; then the sequence number moves past its payload and the counter on."""
        frame = order_frame(self.template, request, symbol=self.symbols[request.slot], tcp_seq=self.tcp_seq,
                            token_counter=self.token_counter)
        self.tcp_seq = (self.tcp_seq + TCP_SEQ_STEP) % _WRAP
        self.token_counter = (self.token_counter + 1) % _WRAP
        return frame
