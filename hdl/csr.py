"""The register block: configuration and event counters, read and written by the host."""

import zlib
from dataclasses import dataclass

from amaranth.hdl import Const, Module, Signal, Value
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

__all__ = ["RegisterBus", "RegisterBlock", "Register", "REGISTER_WIDTH", "MAGIC", "READ_LATENCY",
           "READ_GROUP", "layout_word"]

REGISTER_WIDTH = 32
#: Cycles from ``addr`` to its word on ``r_data``.
READ_LATENCY = 3
#: Registers read out through one first-level multiplexer.
READ_GROUP = 8
#: Read from address 0, so that a host can tell it is talking to this design: "t2t" and a version.
MAGIC = int.from_bytes(b"t2t\x02", "big")


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


@dataclass(frozen=True)
class Register:
    """Where a register lives and what it is, for the host.

    ``address`` is the word of its least significant 32 bits; a register wider
    than a word takes the next words up, least significant first. ``kind`` is
    "magic", "config", "strobe", "state", "status" or "counter".
    """
    address: int
    width: int
    kind: str

    @property
    def words(self):
        return -(-self.width // REGISTER_WIDTH)


def layout_word(registers) -> int:
    """A 32-bit digest (CRC-32) of a register map (name -> ``Register``), the ``layout`` register's value.

    A host compares it with the map it is about to use, so that it never
    writes one configuration's registers into a board built with another
    (another core, book size or number of counters). The ``layout`` register
    itself is left out of the digest.
    """
    text = ";".join(f"{name}:{r.address}:{r.width}:{r.kind}" for name, r in registers.items() if name != "layout")
    return zlib.crc32(text.encode())


class RegisterBlock(wiring.Component):
    """Configuration, strobe, state and status registers and 32-bit event counters behind one bus.

    The address map is: 0 the magic word, 1 the layout word (``layout_word``
    of the map: which map this is), then the configuration registers,
    the strobe registers, the state registers, the status registers and the
    counters, in the order given, each taking as many words as its width
    needs. ``registers`` gives it to the host (name -> ``Register``), and
    ``address_map`` the first word of each, so that host and gateware never
    keep two copies of it.

    Parameters
    ----------
    config : dict of name -> (width, reset value)
        Read-write registers, driven out on the port of the same name; wider
        than 32 bits they take several words.
    strobes : dict of name -> width
        Write-only registers: each bit written as 1 is high for one cycle on
        the port of the same name. Bit 0 of the reserved ``clear`` strobe
        register is not given here: writing 1 to it clears every counter.
    state : dict of name -> width
        Values a stage keeps and the host may overwrite (a sequence number, a
        token counter): reads return the port ``<name>``; a write pulses
        ``<name>_write`` for one cycle with the word on ``<name>_data``.
    status : dict of name -> width
        Read-only values from the port of the same name.
    counters : dict of name -> width of the increment
        Counters; each adds its port's value every cycle (one cycle later) and
        wraps at 2**32.

    Interface attributes
    --------------------
    bus : In(RegisterBus)
    <config name> : Out(width)
    <strobe name> : Out(width)
    <state name> : In(width); <state name>_write : Out(1); <state name>_data : Out(width)
    <status name> : In(width)
    <counter name> : In(width)
    """

    def __init__(self, *, config, strobes=None, state=None, status=None, counters=None, address_width=8):
        strobes = {**(strobes or {}), "clear": 1}
        state, status, counters = dict(state or {}), dict(status or {}), dict(counters or {})
        for name, (width, init) in config.items():
            if init >= 2 ** width:
                raise ValueError(f"config register {name!r}: reset value {init} does not fit {width} bits")
        for kind, widths in (("strobe", strobes), ("state", state), ("status", status)):
            for name, width in widths.items():
                if width > REGISTER_WIDTH:
                    raise ValueError(f"{kind} register {name!r}: {width} bits is wider than a word")
        kinds = [("magic", {"magic": REGISTER_WIDTH, "layout": REGISTER_WIDTH}),
                 ("config", {name: width for name, (width, _init) in config.items()}),
                 ("strobe", strobes), ("state", state), ("status", status),
                 ("counter", {name: REGISTER_WIDTH for name in counters})]
        self.registers = {}
        address = 0
        for kind, widths in kinds:
            for name, width in widths.items():
                if name in self.registers:
                    raise ValueError(f"register name {name!r} is used twice")
                self.registers[name] = Register(address, width, kind)
                address += self.registers[name].words
        if address > 2 ** address_width:
            raise ValueError(f"{address} register words do not fit in {address_width} address bits")
        self.address_map = {name: register.address for name, register in self.registers.items()}
        self.layout = layout_word(self.registers)
        self._config = dict(config)
        self._strobes = strobes
        self._state = state
        self._status = status
        self._counters = counters
        members = {"bus": In(RegisterBus(address_width))}
        members.update({name: Out(width, init=init) for name, (width, init) in config.items()})
        members.update({name: Out(width) for name, width in strobes.items()})
        for name, width in state.items():
            members.update({name: In(width), f"{name}_write": Out(1), f"{name}_data": Out(width)})
        members.update({name: In(width) for name, width in status.items()})
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

        def word_written(name, word=0):
            return bus.w_en & (bus.addr == self.registers[name].address + word)

        for name in self._config:
            port = getattr(self, name)
            for word in range(self.registers[name].words):
                with m.If(word_written(name, word)):
                    m.d.sync += port[word * REGISTER_WIDTH:(word + 1) * REGISTER_WIDTH].eq(bus.w_data)
        for name in self._strobes:
            m.d.sync += getattr(self, name).eq(0)
            with m.If(word_written(name)):
                m.d.sync += getattr(self, name).eq(bus.w_data)
        for name in self._state:
            m.d.sync += getattr(self, f"{name}_write").eq(word_written(name))
            with m.If(word_written(name)):
                m.d.sync += getattr(self, f"{name}_data").eq(bus.w_data)

        readable = {"magic": Const(MAGIC, REGISTER_WIDTH), "layout": Const(self.layout, REGISTER_WIDTH),
                    **{name: getattr(self, name) for name in self._config},
                    **{name: getattr(self, name) for name in (*self._state, *self._status)}, **counts}
        words = {}
        for name, value in readable.items():
            register = self.registers[name]
            for word in range(register.words):
                words[register.address + word] = Value.cast(value)[word * REGISTER_WIDTH:(word + 1) * REGISTER_WIDTH]
        read_addr = Signal.like(bus.addr)
        group_addr = Signal.like(bus.addr)
        m.d.sync += [read_addr.eq(bus.addr), group_addr.eq(read_addr)]
        by_group = {}
        for address, value in words.items():
            group, member = divmod(address, READ_GROUP)
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
