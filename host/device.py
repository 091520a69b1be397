"""The device interface: one contract for every way of running the receive path.

A backend takes frames as a MAC would deliver them and gives back what left
the pipeline: decoded messages (with the cycle each left), packet ends and
the counters. Backends: the Amaranth simulator (in-process), cocotb on
Verilator or Icarus, and the golden model (no timing). The CLI and the tests
go through ``open_rx_device``; none of them picks a backend class directly.
"""

import dataclasses
import random

from ..hdl.moldudp64_rx import BLOCKS_OFFSET
from ..hdl.stream import BEAT_BYTES
from ..hdl.udp_rx import UDP_PAYLOAD_OFFSET

__all__ = ["RxFrame", "RxBeat", "RxResult", "schedule_beats", "open_rx_device", "message_latencies",
           "BACKENDS", "DeviceError"]

#: Backends by name; the simulators are imported lazily (they pull in Amaranth or cocotb).
BACKENDS = ("verilator", "icarus", "amaranth", "model")


class DeviceError(RuntimeError):
    """A backend could not run (simulator missing, build failed, ...)."""


@dataclasses.dataclass(frozen=True)
class RxFrame:
    """A frame as the MAC delivers it: bytes without FCS, and whether the MAC flagged it bad."""
    data: bytes
    err: bool = False


@dataclasses.dataclass(frozen=True)
class RxBeat:
    """One beat at the pipeline's ``rx``: which frame and beat it is, and its bits."""
    frame: int
    index: int
    data: int
    keep: int
    first: bool
    last: bool
    err: bool


@dataclasses.dataclass
class RxResult:
    """What left the receive path.

    ``messages``: JSON records (docs/receive-path.md) in the order they left;
    ``message_cycles``: the cycle each left (empty for the golden model);
    ``beat_cycles``: for each frame, the cycle each of its beats was at ``rx``;
    ``packet_ends``: the ``bad`` flag of every packet end; ``counters``: by name.
    """
    messages: list
    packet_ends: list
    counters: dict
    message_cycles: list = dataclasses.field(default_factory=list)
    beat_cycles: list = dataclasses.field(default_factory=list)


def schedule_beats(frames, *, idle_probability=0.0, seed=0):
    """The beat-by-beat stimulus for ``frames``: an ``RxBeat`` or ``None`` (idle) per cycle.

    Idle cycles are inserted at random before any beat, inside frames as well
    as between them, with the given probability; frames otherwise follow each
    other back to back. Every backend drives the same schedule, so cycle counts
    agree across simulators.
    """
    if not 0.0 <= idle_probability < 1.0:
        raise ValueError(f"idle_probability must be in [0, 1), not {idle_probability}")
    rng = random.Random(seed)
    schedule = []
    for frame_index, frame in enumerate(frames):
        count = max(1, -(-len(frame.data) // BEAT_BYTES))
        for index in range(count):
            while idle_probability and rng.random() < idle_probability:
                schedule.append(None)
            chunk = frame.data[index * BEAT_BYTES:(index + 1) * BEAT_BYTES]
            last = index == count - 1
            schedule.append(RxBeat(
                frame=frame_index, index=index,
                data=int.from_bytes(chunk.ljust(BEAT_BYTES, b"\0"), "little"),
                keep=(1 << len(chunk)) - 1, first=index == 0, last=last,
                err=last and frame.err))
    return schedule


#: Frame offset of the MoldUDP64 sequence number (after the 10-byte session).
_SEQ_OFFSET = UDP_PAYLOAD_OFFSET + 10


def _block_last_bytes(frame):
    """{sequence number: frame offset of the block's last byte} of every complete block."""
    seq = int.from_bytes(frame[_SEQ_OFFSET:_SEQ_OFFSET + 8], "big")
    ends, position = {}, BLOCKS_OFFSET
    while position + 2 <= len(frame):
        end = position + 2 + int.from_bytes(frame[position:position + 2], "big")
        if end > len(frame):
            break
        ends[seq] = end - 1
        seq, position = seq + 1, end
    return ends


def message_latencies(frames, result):
    """Cycles from the beat holding each delivered message's last byte at ``rx`` to the message's output.

    Which frame each message came from is taken from the golden model, so a
    message resent in a later frame is measured from the frame that delivered it.
    """
    from .rx_model import RxModel
    model = RxModel()
    delivered = iter(zip(result.messages, result.message_cycles))
    latencies = []
    for number, frame in enumerate(frames):
        last_bytes = _block_last_bytes(frame.data)
        for record in model.process(frame.data, err=frame.err):
            message, cycle = next(delivered)
            if message["seq"] != record["seq"]:
                raise ValueError(f"gateware message {message['seq']} where the model delivers {record['seq']}")
            latencies.append(cycle - result.beat_cycles[number][last_bytes[record["seq"]] // BEAT_BYTES])
    return latencies


def open_rx_device(backend, **options):
    """A receive-path device for ``backend`` (one of BACKENDS)."""
    if backend == "model":
        return ModelRxDevice(**options)
    if backend == "amaranth":
        from ..sim.amaranth_device import AmaranthRxDevice
        return AmaranthRxDevice(**options)
    if backend in ("verilator", "icarus"):
        from ..sim.cocotb_device import CocotbRxDevice
        return CocotbRxDevice(simulator=backend, **options)
    raise DeviceError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")


class ModelRxDevice:
    """The golden model behind the device interface: the same outputs, without timing."""

    def __init__(self, *, dst_ip=None, dst_port=None, **_simulation_options):
        from .rx_model import RxModel
        options = {k: v for k, v in (("dst_ip", dst_ip), ("dst_port", dst_port)) if v is not None}
        self._model = RxModel(**options)

    def run(self, frames, *, idle_probability=0.0, seed=0, progress=None):
        """Process ``frames`` (RxFrame) and return an RxResult."""
        messages = []
        for number, frame in enumerate(frames):
            messages.extend(self._model.process(frame.data, err=frame.err))
            if progress:
                progress(number + 1, len(frames))
        return RxResult(messages=messages, packet_ends=list(self._model.packet_ends),
                        counters=dict(self._model.counters))
