"""cocotb bench of the whole pipeline as an interactive session, driven by ``PipelineSession``.

Not a test on its own: ``sim/pipeline_session.py`` starts the simulator with
this bench and serves it commands over a TCP connection to the address in
``T2T_SESSION``, one JSON object per line, each answered by one line:

- ``{"op": "frame", "at": c, "data": hex, "err": b}``: the frame's beats go
  to ``rx`` from cycle ``c`` on, back to back, after those of the frames
  before it (``rx`` has no backpressure: frames never overlap);
- ``{"op": "write", "at": c, "writes": [[address, word], ...]}``: register
  writes, one per cycle from cycle ``c`` on, after those before them;
- ``{"op": "advance", "until": c, "complete": b}``: run through cycle ``c``
  (with ``complete``, on until no order frame is half sent); the answer
  has the order frames that ended at ``tx`` since the last answer, each
  ``[hex, aborted, first beat's cycle, last beat's cycle]``, ``cycle`` (the
  next cycle to run) and ``idle`` (nothing queued for ``rx`` or the bus, and
  no beat at ``tx`` for ``QUIET_CYCLES``);
- ``{"op": "read", "registers": {name: [address, words]}}``: reads through
  the bus once the queues are empty (they take cycles);
- ``{"op": "close"}``: the bench ends.

Cycles are the design's own (cycles since reset, as its latency probes
count them); a command's cycle already past means "now".
"""

import json
import os
import socket
from collections import deque

import cocotb
from cocotb.triggers import FallingEdge, ReadOnly, Timer

from tick2trade.hdl.stream import Beat
from tick2trade.host.device import RxFrame, schedule_beats
from tick2trade.sim.benches.bus import DesignBench
from tick2trade.sim.ports import unpack

#: Cycles without a beat at ``rx`` or ``tx`` or a register write after which nothing is in flight.
QUIET_CYCLES = 64
#: Idle stretches longer than this run in the simulator alone (``_Session.skip``).
IDLE_SKIP_CYCLES = 16
#: The clock period in ps (the 156.25 MHz of ``DesignBench``).
CLOCK_PS = 6400


class _Session:
    """The queues of the session and one cycle of the design at a time."""

    def __init__(self, dut, bench):
        self.dut, self.bench = dut, bench
        self.beats = deque()   # (first cycle, RxBeat): beats for rx
        self.writes = deque()  # (first cycle, address, word): register writes
        self.tx_frames = []
        self.current = None    # the order frame leaving tx: [bytes, first beat's cycle]
        self.quiet = QUIET_CYCLES

    @property
    def settled(self):
        """No beat in or out, no register write, for ``QUIET_CYCLES``: nothing is in flight."""
        return self.current is None and self.quiet >= QUIET_CYCLES

    @property
    def idle(self):
        return self.settled and not self.beats and not self.writes

    async def step(self):
        """One cycle: the next due beat and register write, then what left tx."""
        dut, bench = self.dut, self.bench
        beat = None
        self.quiet += 1
        if self.beats and self.beats[0][0] <= bench.cycle:
            beat = self.beats.popleft()[1]
            self.quiet = 0
        bench.drive_beat(beat)
        if self.writes and self.writes[0][0] <= bench.cycle:
            _, address, word = self.writes.popleft()
            dut.csr__addr.value = address
            dut.csr__w_data.value = word
            dut.csr__w_en.value = 1
            self.quiet = 0
        else:
            dut.csr__w_en.value = 0
        await ReadOnly()
        if dut.tx__valid.value:
            self.quiet = 0
            word = unpack(Beat, dut.tx__payload.value.to_unsigned())
            if word["first"]:
                self.current = [b"", bench.cycle]
            self.current[0] += word["data"].to_bytes(8, "little")[:bin(word["keep"]).count("1")]
            if word["last"]:
                self.tx_frames.append([self.current[0].hex(), bool(word["err"]), self.current[1], bench.cycle])
                self.current = None
        await bench.tick()

    async def skip(self, cycles):
        """Run ``cycles`` cycles in the simulator alone, without a Python step per cycle.

        Only while the design is settled and no input is due: nothing can
        leave ``tx`` then, so only the time is needed, from this falling edge
        to the one ``cycles`` later.
        """
        dut, bench = self.dut, self.bench
        bench.drive_beat(None)
        dut.csr__w_en.value = 0
        await Timer(cycles * CLOCK_PS - CLOCK_PS // 4, "ps")
        await FallingEdge(dut.clk)
        bench.cycle += cycles
        self.quiet += cycles

    def queue_frame(self, at, data, err):
        start = max(at, self.beats[-1][0] + 1 if self.beats else at, self.bench.cycle)
        for offset, beat in enumerate(schedule_beats([RxFrame(data, err)])):
            self.beats.append((start + offset, beat))

    def queue_writes(self, at, writes):
        start = max(at, self.writes[-1][0] + 1 if self.writes else at, self.bench.cycle)
        for offset, (address, word) in enumerate(writes):
            self.writes.append((start + offset, address, word))

    async def advance(self, until, complete):
        while self.bench.cycle <= until or (complete and self.current is not None):
            # Run alone up to the next queued input, or through `until`, when nothing is in flight.
            target = min([until + 1, *(queue[0][0] for queue in (self.beats, self.writes) if queue)])
            if self.settled and target - self.bench.cycle > IDLE_SKIP_CYCLES:
                await self.skip(target - self.bench.cycle)
            else:
                await self.step()
        frames, self.tx_frames = self.tx_frames, []
        return {"frames": frames, "cycle": self.bench.cycle, "idle": self.idle}

    async def read(self, registers):
        while self.beats or self.writes:
            await self.step()
        self.dut.rx__valid.value = 0
        self.dut.csr__w_en.value = 0
        return {name: await self.bench.read(address, words) for name, (address, words) in registers.items()}


@cocotb.test()
async def pipeline_session(dut):
    """Serve the session's commands until it closes."""
    host, port = os.environ["T2T_SESSION"].rsplit(":", 1)
    connection = socket.create_connection((host, int(port)))
    stream = connection.makefile("rwb")
    bench = DesignBench(dut)
    await bench.reset(idle_outputs=("tx__ready",))
    dut.tx__ready.value = 1
    session = _Session(dut, bench)
    try:
        for line in stream:
            command = json.loads(line)
            op = command["op"]
            if op == "frame":
                session.queue_frame(command["at"], bytes.fromhex(command["data"]), command["err"])
                answer = {}
            elif op == "write":
                session.queue_writes(command["at"], command["writes"])
                answer = {}
            elif op == "advance":
                answer = await session.advance(command["until"], command.get("complete", False))
            elif op == "read":
                answer = {"registers": await session.read(command["registers"]), "cycle": bench.cycle}
            elif op == "close":
                break
            else:
                raise ValueError(f"unknown session command {op!r}")
            stream.write(json.dumps(answer).encode() + b"\n")
            stream.flush()
    finally:
        stream.close()
        connection.close()
