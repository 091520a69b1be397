# amaranth: UnusedElaboratable=no
"""The market-data receive path: Ethernet frames in, decoded ITCH messages out.

(The first line's linter option: ``RxPath`` makes its register block in
the constructor, and a host that builds one for its register map alone, as
the counter check does for a receive-path board, must not be warned that it
was never used.)
"""

import ipaddress

from amaranth.hdl import Module
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from .csr import RegisterBlock, RegisterBus
from .itch_decode import ItchDecode, ItchMessage
from .itch_split import ItchSplit, ItchSplitEvents
from .moldudp64_rx import MoldUdp64Events, MoldUdp64Rx, PacketEnd
from .stream import rx_stream
from .udp_rx import UdpRx, UdpRxEvents

__all__ = ["RxPath", "RxStages", "RxEvents", "COUNTERS", "RX_CONFIG", "RX_STROBES", "RX_LATENCY",
           "DEFAULT_DST_IP", "DEFAULT_DST_PORT", "connect_registers"]

DEFAULT_DST_IP = "233.54.12.111"
DEFAULT_DST_PORT = 26477


def _counter_widths(*event_layouts):
    return {name: field.width
            for layout in event_layouts for name, field in data.Layout.cast(layout)}


#: Every counter of the receive path, in register order, with the width of its increment.
COUNTERS = _counter_widths(UdpRxEvents, MoldUdp64Events, ItchSplitEvents)
#: The receive path's event increments, one field per counter.
RxEvents = data.StructLayout(COUNTERS)
#: Cycles from the beat holding a message's last byte at ``rx`` to the message at ``messages``.
RX_LATENCY = 2


#: The receive path's registers besides its counters: configuration (width, reset value) and strobes.
RX_CONFIG = {"dst_ip": (32, int(ipaddress.IPv4Address(DEFAULT_DST_IP))), "dst_port": (16, DEFAULT_DST_PORT)}
RX_STROBES = {"resync": 1}


class RxStages(wiring.Component):
    """Ethernet/IPv4/UDP filter, MoldUDP64 tracking, ITCH framing and decode, without registers.

    A message leaves ``messages`` two cycles after the beat holding its last
    byte was at ``rx`` (``RX_LATENCY``): ``UdpRx`` registers the beats on
    their way out (its checksum settles meanwhile) and ``ItchSplit``
    registers the message; nothing else waits.

    Interface attributes
    --------------------
    rx : In(beat stream)
        Frames from the MAC (no FCS), no backpressure.
    messages : Out(stream of ItchMessage)
        Decoded messages, in sequence order.
    packet_end : Out(stream of PacketEnd)
        The end of every packet that reached MoldUDP64 tracking, good or bad.
    dst_ip, dst_port : In
        The feed's address (configuration).
    resync : In(1)
        Forget the MoldUDP64 session (strobe).
    events : Out(RxEvents)
        One increment per counter of ``COUNTERS``, each cycle.
    """

    def __init__(self):
        super().__init__({
            "rx": In(rx_stream()),
            "messages": Out(rx_stream(ItchMessage)),
            "packet_end": Out(rx_stream(PacketEnd)),
            "dst_ip": In(32, init=RX_CONFIG["dst_ip"][1]),
            "dst_port": In(16, init=RX_CONFIG["dst_port"][1]),
            "resync": In(1),
            "events": Out(RxEvents),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.udp_rx = udp_rx = UdpRx()
        m.submodules.moldudp64_rx = moldudp64_rx = MoldUdp64Rx()
        m.submodules.itch_split = itch_split = ItchSplit()
        m.submodules.itch_decode = itch_decode = ItchDecode()

        wiring.connect(m, wiring.flipped(self.rx), udp_rx.rx)
        wiring.connect(m, udp_rx.payload, moldudp64_rx.payload)
        wiring.connect(m, moldudp64_rx.blocks, itch_split.blocks)
        m.d.comb += itch_split.packet.eq(moldudp64_rx.packet)
        wiring.connect(m, itch_split.messages, itch_decode.raw)
        wiring.connect(m, itch_decode.decoded, wiring.flipped(self.messages))
        m.d.comb += [
            moldudp64_rx.packet_end.valid.eq(itch_split.packet_end.valid),
            moldudp64_rx.packet_end.p.eq(itch_split.packet_end.p),
        ]
        wiring.connect(m, itch_split.packet_end, wiring.flipped(self.packet_end))
        m.d.comb += [
            udp_rx.dst_ip.eq(self.dst_ip),
            udp_rx.dst_port.eq(self.dst_port),
            moldudp64_rx.resync.eq(self.resync),
        ]
        for stage in (udp_rx, moldudp64_rx, itch_split):
            for name, _field in data.Layout.cast(stage.events.shape()):
                m.d.comb += getattr(self.events, name).eq(getattr(stage.events, name))
        return m


def connect_registers(m, registers, component, names):
    """Drive ``component``'s configuration inputs from ``registers`` and its events into them.

    ``names`` are the configuration and strobe names the component takes;
    every field of its ``events`` goes to the counter of the same name, if
    the block has one (a small build may count only some).
    """
    for name in names:
        m.d.comb += getattr(component, name).eq(getattr(registers, name))
    for name, _field in data.Layout.cast(component.events.shape()):
        if name in registers.registers:
            m.d.comb += getattr(registers, name).eq(getattr(component.events, name))


class RxPath(wiring.Component):
    """The receive path (``RxStages``) with its register block.

    Interface attributes
    --------------------
    rx, messages, packet_end : as in RxStages
    csr : In(RegisterBus)
        Configuration (``dst_ip``, ``dst_port``), the ``resync`` strobe, and
        the counters; addresses in ``address_map``, ``registers``.

    Parameters
    ----------
    counters : names of ``COUNTERS``, optional
        The counters the block keeps (all by default). A 32-bit counter
        costs about 40 logic cells with its share of the read multiplexer,
        which a small part (the iCE40 UP5K) cannot spare for all of them.
    """

    def __init__(self, *, dst_ip=DEFAULT_DST_IP, dst_port=DEFAULT_DST_PORT, counters=tuple(COUNTERS)):
        unknown = [name for name in counters if name not in COUNTERS]
        if unknown or not counters:
            raise ValueError(f"counters must be some of {', '.join(COUNTERS)}, not {counters!r}")
        self.counters = tuple(counters)
        self._registers = RegisterBlock(
            config={"dst_ip": (32, int(ipaddress.IPv4Address(dst_ip))), "dst_port": (16, dst_port)},
            strobes=RX_STROBES,
            counters={name: COUNTERS[name] for name in self.counters},
        )
        self.registers = self._registers.registers
        self.address_map = self._registers.address_map
        super().__init__({
            "rx": In(rx_stream()),
            "messages": Out(rx_stream(ItchMessage)),
            "packet_end": Out(rx_stream(PacketEnd)),
            "csr": In(RegisterBus()),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.stages = stages = RxStages()
        m.submodules.registers = registers = self._registers
        wiring.connect(m, wiring.flipped(self.rx), stages.rx)
        wiring.connect(m, stages.messages, wiring.flipped(self.messages))
        wiring.connect(m, stages.packet_end, wiring.flipped(self.packet_end))
        wiring.connect(m, wiring.flipped(self.csr), registers.bus)
        connect_registers(m, registers, stages, [*RX_CONFIG, *RX_STROBES])
        return m
