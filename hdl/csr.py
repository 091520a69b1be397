"""The register block: configuration and event counters, read and written by the host."""

from amaranth.hdl import Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

__all__ = ["RegisterBus", "RegisterBlock", "REGISTER_WIDTH", "MAGIC", "READ_LATENCY", "READ_GROUP"]

REGISTER_WIDTH = 32
#: Cycles from ``addr`` to its word on ``r_data``.
READ_LATENCY = 3
#: Registers read out through one first-level multiplexer.
READ_GROUP = 8
#: Read from address 0, so that a host can tell it is talking to this design: "t2t" and a version.
MAGIC = int.from_bytes(b"t2t\x01", "big")


class RegisterBus(wiring.Signature):
    """A word-addressed register bus, driven by the host side.

    Interface attributes
    --------------------
    addr : Out(address_width)
        Word address.
    w_en : Out(1)
        Write ``w_data`` to ``addr`` in this cycle.
    w_data : Out(32)
    r_data : In(32)
        The word at the ``addr`` of ``READ_LATENCY`` cycles before: the address
        is registered, then selects a word in each group of ``READ_GROUP``
        registers (registered), then one of those, so that no cycle has a wide
        multiplexer gathering registers from all over the design.
    """

    def __init__(self, address_width=8):
        if address_width not in range(1, 17):
            raise ValueError(f"address_width must be 1..16, not {address_width!r}")
        super().__init__({
            "addr": Out(address_width),
            "w_en": Out(1),
            "w_data": Out(REGISTER_WIDTH),
            "r_data": In(REGISTER_WIDTH),
        })


class RegisterBlock(wiring.Component):
    """Configuration registers, strobe registers and 32-bit event counters behind one bus.

    The address map is: 0 the magic word, then the configuration registers,
    then the strobe registers, then the counters, each one word, in the order
    given. ``address_map`` gives it to the host, so that host and gateware
    never keep two copies of it.

    Parameters
    ----------
    config : dict of name -> (width, reset value)
        Read-write registers, driven out on the port of the same name.
    strobes : dict of name -> width
        Write-only registers: each bit written as 1 is high for one cycle on
        the port of the same name. Bit 0 of the reserved ``clear`` strobe
        register is not given here: writing 1 to it clears every counter.
    counters : dict of name -> width of the increment
        Counters; each adds its port's value every cycle (one cycle later) and
        wraps at 2**32.

    Interface attributes
    --------------------
    bus : In(RegisterBus)
    <config name> : Out(width)
    <strobe name> : Out(width)
    <counter name> : In(width)
    """

    def __init__(self, *, config, strobes, counters, address_width=8):
        for name, (width, init) in config.items():
            if width > REGISTER_WIDTH or init >= 2 ** width:
                raise ValueError(f"config register {name!r}: width {width} or reset value {init} does not fit")
        names = ["magic", *config, *strobes, "clear", *counters]
        if len(set(names)) != len(names):
            raise ValueError("register names must be unique")
        if len(names) > 2 ** address_width:
            raise ValueError(f"{len(names)} registers do not fit in {address_width} address bits")
        self._config = dict(config)
        self._strobes = {**strobes, "clear": 1}
        self._counters = dict(counters)
        self.address_map = {name: address for address, name in enumerate(names)}
        members = {"bus": In(RegisterBus(address_width))}
        members.update({name: Out(width, init=init) for name, (width, init) in config.items()})
        members.update({name: Out(width) for name, width in self._strobes.items()})
        members.update({name: In(width) for name, width in counters.items()})
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        bus = self.bus
        counts = {name: Signal(REGISTER_WIDTH, name=f"count_{name}") for name in self._counters}
        clear = getattr(self, "clear")

        # Increments are registered before they are added, so that no stage's event logic
        # and a counter's carry chain share a cycle: counters lag their events by a cycle.
        for name, count in counts.items():
            increment = Signal.like(getattr(self, name), name=f"increment_{name}")
            m.d.sync += increment.eq(getattr(self, name))
            with m.If(clear):
                m.d.sync += count.eq(0)
            with m.Else():
                m.d.sync += count.eq(count + increment)

        with m.If(bus.w_en):
            for name in self._config:
                with m.If(bus.addr == self.address_map[name]):
                    m.d.sync += getattr(self, name).eq(bus.w_data)
        for name in self._strobes:
            m.d.sync += getattr(self, name).eq(0)
            with m.If(bus.w_en & (bus.addr == self.address_map[name])):
                m.d.sync += getattr(self, name).eq(bus.w_data)

        readable = {"magic": MAGIC, **{name: getattr(self, name) for name in self._config}, **counts}
        read_addr = Signal.like(bus.addr)
        group_addr = Signal.like(bus.addr)
        m.d.sync += [read_addr.eq(bus.addr), group_addr.eq(read_addr)]
        by_group = {}
        for name, value in readable.items():
            group, member = divmod(self.address_map[name], READ_GROUP)
            by_group.setdefault(group, {})[member] = value
        group_words = {group: Signal(REGISTER_WIDTH, name=f"read_group_{group}") for group in by_group}
        for group, members in by_group.items():
            m.d.sync += group_words[group].eq(0)
            with m.Switch(read_addr % READ_GROUP):
                for member, value in members.items():
                    with m.Case(member):
                        m.d.sync += group_words[group].eq(value)
        m.d.sync += bus.r_data.eq(0)
        with m.Switch(group_addr // READ_GROUP):
            for group, word in group_words.items():
                with m.Case(group):
                    m.d.sync += bus.r_data.eq(word)
        return m
