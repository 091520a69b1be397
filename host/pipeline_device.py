"""The device interface of the whole pipeline: frames in, order frames out, on any backend.

A pipeline device is configured from a strategy file through the registers
(the same writes a host makes on a board), takes frames as the MAC delivers
them, and gives back the order frames that left ``tx`` with the cycle their
first beat was accepted, the counters and the latency probes. Backends:
cocotb on Verilator or Icarus, and the golden model (no timing); the
Amaranth simulator runs the receive path only (``host/device.py``). The CLI
and the tests go through ``open_pipeline_device``.
"""

from __future__ import annotations

import dataclasses
import statistics

from ..hdl.order_types import Side
from ..hdl.stream import BEAT_BYTES
from .device import BACKENDS, DeviceError
from .strategy import LEAD_SLOT, TARGET_SLOT, StrategyFile

__all__ = ["TxFrame", "PipelineResult", "register_writes", "bus_writes", "open_pipeline_device", "CLOCK_NS",
           "PROBE_DEPTH", "STATE_REGISTERS", "FAST_PATH_COUNTERS", "TRIGGER_FIELD_END", "message_spans",
           "actionable_latencies", "latency_summary", "summarize", "sent_order_records", "golden_order_records"]

#: The 10GbE reference clock's period: pcap timestamps of simulated order frames are cycle x this.
CLOCK_NS = 6.4
#: Orders whose latency probes the gateware keeps.
PROBE_DEPTH = 16

#: Per message type, the offset just past the last field the book or a strategy reads: the
#: trigger field whose last byte starts the actionable latency (DESIGN.md, "Latency, defined").
TRIGGER_FIELD_END = {"A": 36, "F": 36, "E": 23, "C": 23, "X": 23, "D": 19, "U": 35, "P": 36}

#: Counters of the fast path: frames it started that the exact path confirmed, and that it did not.
FAST_PATH_COUNTERS = ("fast_confirmed", "fast_aborted")
#: Registers read back after a run, besides the counters.
STATE_REGISTERS = ("outstanding", "tokens", "tcp_seq", "token_counter", "book_unreliable")


@dataclasses.dataclass(frozen=True)
class TxFrame:
    """An order frame as it left ``tx``: bytes, whether it was aborted, the cycles of its first and last beats."""
    data: bytes
    aborted: bool = False
    cycle: int | None = None
    last_cycle: int | None = None


@dataclasses.dataclass
class PipelineResult:
    """What came out of a run.

    ``frames``: order frames in the order they left; ``counters`` and
    ``state`` (outstanding, tokens, tcp_seq, token_counter): register values
    at the end; ``fast_path``: the fast path's counters (``FAST_PATH_COUNTERS``:
    they depend on timing, which the golden model does not have, so they
    are apart and empty for it); ``probes``: the (trigger cycle, tx cycle)
    pairs of the last orders, oldest first; ``beat_cycles``: for each input
    frame, the cycle of each of its beats at ``rx`` (empty for the golden model).
    """
    frames: list
    counters: dict
    state: dict = dataclasses.field(default_factory=dict)
    fast_path: dict = dataclasses.field(default_factory=dict)
    probes: list = dataclasses.field(default_factory=list)
    beat_cycles: list = dataclasses.field(default_factory=list)


def _text_register(text: str, width: int) -> int:
    return int.from_bytes(text.encode("latin-1").ljust(width, b" "), "big")


def register_writes(strategy: StrategyFile, *, dst_ip: int, dst_port: int) -> list[tuple[str, int]]:
    """The register writes that configure the pipeline for ``strategy`` (resolved), in order.

    Limits and template first, the strategy register last, so that nothing
    can fire half configured.
    """
    from ..hdl.pipeline import TEMPLATE_CONFIG
    if not strategy.resolved:
        raise ValueError("the strategy's instruments are not resolved (resolve_instruments)")
    writes = [("dst_ip", dst_ip), ("dst_port", dst_port)]
    for role, slot in (("lead", LEAD_SLOT), ("target", TARGET_SLOT)):
        locate, symbol = strategy.resolved[role]
        writes += [(f"locate_{slot}", locate), (f"symbol_{slot}", _text_register(symbol, 8))]
    risk = strategy.risk
    writes += [("kill", int(risk.kill)), ("max_qty", risk.max_qty), ("max_notional", risk.max_notional),
               ("collar", risk.collar), ("position", risk.position % 2 ** 32), ("max_long", risk.max_long),
               ("max_short", risk.max_short), ("max_outstanding", risk.max_outstanding),
               ("rate_period", risk.rate_period), ("rate_burst", risk.rate_burst)]
    template = strategy.template.registers()
    writes += [(name, template[port]) for name, (port, _init) in TEMPLATE_CONFIG.items()]
    writes += [("tcp_seq", strategy.tcp_seq), ("token_counter", strategy.token_counter)]
    config = strategy.strategy
    writes += [("lead_slot", config.lead_slot), ("target_slot", config.target_slot), ("edge", config.edge),
               ("order_size", config.order_size), ("watch_slot", config.watch_slot),
               ("watch_source", int(config.watch_source)), ("threshold", config.threshold),
               ("threshold_above", int(config.threshold_above)),
               ("threshold_side", Side(config.threshold_side).value),
               ("strategy", int(config.strategy))]
    return writes


def bus_writes(registers, writes) -> list[tuple[int, int]]:
    """``writes`` (name, value) as (address, 32-bit word) bus writes, wide registers word by word."""
    words = []
    for name, value in writes:
        register = registers[name]
        if not 0 <= value < 2 ** register.width:
            raise ValueError(f"register {name}: {value} does not fit {register.width} bits")
        words += [(register.address + word, (value >> (32 * word)) & 0xFFFF_FFFF)
                  for word in range(register.words)]
    return words


def open_pipeline_device(backend, strategy: StrategyFile, **options):
    """A pipeline device for ``backend`` (one of BACKENDS, or ``serial:PORT`` for a board) configured for ``strategy`` (resolved)."""
    if backend == "model":
        return ModelPipelineDevice(strategy, **options)
    if backend in ("verilator", "icarus"):
        from ..sim.cocotb_device import CocotbPipelineDevice
        return CocotbPipelineDevice(strategy, simulator=backend, **options)
    if backend == "amaranth":
        raise DeviceError("the whole pipeline has no Amaranth-simulator backend; use verilator or icarus")
    from .serial_device import SerialPipelineDevice, serial_port
    port = serial_port(backend)
    if port is not None:
        return SerialPipelineDevice(strategy, port=port, **options)
    raise DeviceError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}, or serial:PORT")


class ModelPipelineDevice:
    """The golden model behind the pipeline device interface: the same frames, without timing."""

    def __init__(self, strategy: StrategyFile, *, directory, dst_ip=None, dst_port=None, **_options):
        from .pipeline_model import PipelineModel
        rx_options = {k: v for k, v in (("dst_ip", dst_ip), ("dst_port", dst_port)) if v is not None}
        self.model = PipelineModel(strategy, directory=directory, **rx_options)

    def run(self, frames, *, idle_probability=0.0, seed=0, progress=None, **_options):
        out = []
        for number, frame in enumerate(frames):
            out += [TxFrame(order.frame) for order in self.model.process(frame.data, err=frame.err)]
            if progress:
                progress(number + 1, len(frames))
        model = self.model
        state = {"outstanding": model.risk.outstanding, "tokens": model.risk.tokens,
                 "tcp_seq": model.tx.tcp_seq, "token_counter": model.tx.token_counter,
                 "book_unreliable": sum(top.unreliable << slot for slot, top in enumerate(model.book.tops()))}
        return PipelineResult(frames=out, counters=model.counters(), state=state)


def message_spans(frame: bytes):
    """(sequence number, type, frame offset of the message's first byte) of each complete block."""
    from ..hdl.moldudp64_rx import BLOCKS_OFFSET
    from ..hdl.udp_rx import UDP_PAYLOAD_OFFSET
    seq_offset = UDP_PAYLOAD_OFFSET + 10
    if len(frame) < BLOCKS_OFFSET:
        return []
    seq = int.from_bytes(frame[seq_offset:seq_offset + 8], "big")
    spans, position = [], BLOCKS_OFFSET
    while position + 2 <= len(frame):
        length = int.from_bytes(frame[position:position + 2], "big")
        if length == 0 or position + 2 + length > len(frame):
            break
        spans.append((seq, chr(frame[position + 2]), position + 2))
        seq, position = seq + 1, position + 2 + length
    return spans


def actionable_latencies(frames, result: PipelineResult, orders) -> list[int]:
    """Per order sent, cycles from the last byte of its trigger field at ``rx`` to its first beat at ``tx``.

    ``orders`` are the golden model's (``ModelOrder``: which input frame and
    message triggered each); ``result`` the gateware's, with cycles, whose
    non-aborted frames must be the model's, in order.
    """
    sent = [frame for frame in result.frames if not frame.aborted]
    if len(sent) != len(orders):
        raise ValueError(f"the gateware sent {len(sent)} orders where the model sends {len(orders)}")
    latencies = []
    for frame, order in zip(sent, orders):
        spans = {seq: (type_, start) for seq, type_, start in message_spans(frames[order.source_frame].data)}
        type_, start = spans[order.trigger_seq]
        last_byte = start + TRIGGER_FIELD_END[type_] - 1
        latencies.append(frame.cycle - result.beat_cycles[order.source_frame][last_byte // BEAT_BYTES])
    return latencies


def sent_order_records(result: PipelineResult) -> list:
    """The order frames a device sent (aborted ones left out) as pcap records at cycle x ``CLOCK_NS``."""
    from .codec.pcap import PcapRecord
    return [PcapRecord(round(frame.cycle * CLOCK_NS), frame.data) for frame in result.frames if not frame.aborted]


def golden_order_records(feed_records, orders) -> list:
    """The golden model's order frames as pcap records, each at the time of the feed frame behind it.

    ``feed_records`` are the feed's pcap records, ``orders`` the model's
    ``ModelOrder`` list (the model has no clock).
    """
    from .codec.pcap import PcapRecord
    return [PcapRecord(feed_records[order.source_frame].ts_ns, order.frame) for order in orders]


def latency_summary(latencies) -> dict:
    """min, p50, max of ``latencies`` (cycles), or nulls when there are none."""
    if not latencies:
        return {"min": None, "p50": None, "max": None, "count": 0}
    return {"min": min(latencies), "p50": statistics.median_low(latencies), "max": max(latencies),
            "count": len(latencies)}


def summarize(result: PipelineResult, strategy: StrategyFile, latencies=None) -> dict:
    """The JSON summary of a run (``tick2trade model run`` and ``sim run``)."""
    counters = result.counters
    unreliable = result.state.get("book_unreliable", 0)
    instruments = {role: {"locate": strategy.resolved[role][0], "symbol": strategy.resolved[role][1],
                          "unreliable": bool(unreliable >> slot & 1)}
                   for role, slot in (("lead", LEAD_SLOT), ("target", TARGET_SLOT))}
    summary = {
        "orders": sum(not frame.aborted for frame in result.frames),
        "aborted": sum(frame.aborted for frame in result.frames),
        "rejections": {name.removeprefix("reject_"): value for name, value in counters.items()
                       if name.startswith("reject_")},
        "book": {"instruments": instruments,
                 "counters": {name: value for name, value in counters.items() if name.startswith("book_")}},
        "state": {name: value for name, value in result.state.items() if name != "book_unreliable"},
        "counters": counters,
    }
    if result.fast_path:
        summary["fast_path"] = result.fast_path
    if latencies is not None:
        cycles = latency_summary(latencies)
        summary["latency_cycles"] = cycles
        summary["latency_ns_at_156_25_mhz"] = {key: None if value is None else round(value * CLOCK_NS, 1)
                                             for key, value in cycles.items() if key != "count"}
    return summary
