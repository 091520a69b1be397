# amaranth: UnusedElaboratable=no
"""The serial backend's own errors, without a board: device strings, ports that cannot be opened,
something on the port that is not a tick2trade board, a board that does not answer, a board whose
order book does not finish emptying, a board of no known configuration; and the counter check's
verdict on a board that counts wrong.

Its behaviour against a board is in the device tests of test_pipeline.py, the race test of
test_pipeline_session.py and the board tests of test_cli.py, on simulated boards behind a
pseudo-terminal.
"""

import pytest

from tick2trade.hdl.board_link import INJECT_REPLY_BYTES
from tick2trade.hdl.board_top import make_core
from tick2trade.hdl.csr import MAGIC, layout_word
from tick2trade.hdl.rx_path import COUNTERS, RxPath
from tick2trade.host.board_link import Command, Status, encode_reply
from tick2trade.host.boards import BOARDS
from tick2trade.host.cli import main
from tick2trade.host.codec.pcap import read_pcap
from tick2trade.host.device import DeviceError, RxFrame
from tick2trade.host.rx_model import RxModel
from tick2trade.host.serial_device import (BoardSession, check_counters, open_serial, pipeline_registers,
                                           serial_port)
from tick2trade.host.strategy import parse_strategy

STRATEGY = parse_strategy({"instruments": {"lead": "LEAD", "target": "TGT"},
                           "strategy": {"kind": "snipe", "edge": "0.01", "order_size": 100}})
REGISTERS = pipeline_registers(STRATEGY)


class RegisterFile:
    """A transport that answers READ requests from ``words`` (address -> word, 0 elsewhere) and takes
    WRITE requests (noted in ``written``, the words unchanged) and INJECT requests (counted in
    ``injected``, stamped 0), or never answers when ``words`` is None."""

    def __init__(self, words=None):
        self.words, self.replies, self.written, self.injected = words, b"", [], 0

    def write(self, request: bytes):
        command, tag = request[1], request[2]
        if self.words is None:
            return
        address = int.from_bytes(request[5:7], "little")
        if command == Command.WRITE.value:
            self.written.append(address)
            self.replies += encode_reply(Command.WRITE, tag, Status.OK, b"")
            return
        if command == Command.INJECT.value:
            self.injected += 1
            self.replies += encode_reply(Command.INJECT, tag, Status.OK, bytes(INJECT_REPLY_BYTES))
            return
        assert command == Command.READ.value
        count = request[7]
        payload = b"".join(self.words.get(address + i, 0).to_bytes(4, "little") for i in range(count))
        self.replies += encode_reply(Command.READ, tag, Status.OK, payload)

    def read(self, count: int) -> bytes:
        data, self.replies = self.replies[:count], self.replies[count:]
        return data

    def close(self):
        pass


def test_device_strings():
    assert serial_port("serial:/dev/ttyUSB1") == "/dev/ttyUSB1"
    assert serial_port("verilator") is None
    with pytest.raises(DeviceError, match="needs a port"):
        serial_port("serial:")


def test_a_port_that_cannot_be_opened_is_one_line(tmp_path):
    with pytest.raises(DeviceError, match="cannot open serial port") as error:
        open_serial(str(tmp_path / "no-such-port"))
    assert "\n" not in str(error.value)


def test_something_else_on_the_port_is_not_taken_for_a_board():
    with pytest.raises(DeviceError, match=f"not a tick2trade board: register 0 reads 0xdeadbeef, not 0x{MAGIC:08x}"):
        BoardSession(RegisterFile({0: 0xDEADBEEF}), REGISTERS)


def test_a_board_that_does_not_answer_is_a_device_error():
    with pytest.raises(DeviceError, match="board link: .*no reply"):
        BoardSession(RegisterFile(None), REGISTERS, timeout=0.05)


def test_a_board_whose_book_keeps_emptying_is_a_device_error():
    """A run starts with a restart; a board that never shows its order book empty is one clear line, and
    nothing but the restart is written."""
    words = {0: MAGIC, 1: layout_word(REGISTERS), REGISTERS["book_emptying"].address: 1}
    transport = RegisterFile(words)
    board = BoardSession(transport, REGISTERS)
    with pytest.raises(DeviceError, match="order book is still emptying after 100 reads"):
        board.start(STRATEGY)
    assert transport.written == [REGISTERS["restart"].address]


def test_a_board_built_with_another_configuration_is_refused():
    """A board whose register map is another (a receive-path board) is never written."""
    receive_path = RxPath(counters=("frames", "frames_ok", "msgs", "mold_gap")).registers
    with pytest.raises(DeviceError, match="register map .* is not the one this run needs"):
        BoardSession(RegisterFile({0: MAGIC, 1: layout_word(receive_path)}), REGISTERS)


def test_a_board_of_no_known_configuration_is_refused():
    with pytest.raises(DeviceError, match="layout 0x00001234.* is none of the boards' configurations"):
        BoardSession(RegisterFile({0: MAGIC, 1: 0x1234}))


ICEBREAKER = BOARDS["icebreaker"].configuration
#: Its counters, in register order.
ICEBREAKER_COUNTERS = [name for name in COUNTERS if name in dict(ICEBREAKER.parameters)["counters"]]


def frozen_board():
    """A board with the iCEBreaker's register map whose counters never move."""
    return RegisterFile({0: MAGIC, 1: layout_word(make_core(ICEBREAKER).registers)})


def test_a_counter_check_finds_the_board_and_names_what_differs(tmp_path):
    """The check finds the board's configuration by its layout word, injects every frame, and sets the
    board's counters (here frozen at 0) against the golden model's, counter by counter."""
    assert main(["feed", "generate", "--seed", "2", "--messages", "200", "--gaps", "0.1",
                 "--out", str(tmp_path / "feed.pcap")]) == 0
    frames = [RxFrame(record.data) for record in read_pcap(tmp_path / "feed.pcap")]
    board = frozen_board()
    check = check_counters(frames, transport=board)
    model = RxModel()
    for frame in frames:
        model.process(frame.data)
    assert board.injected == len(frames) and check.frames == len(frames)
    assert check.configuration == "receive-path (rx_path)"
    assert check.rows == tuple((name, 0, model.counters[name]) for name in ICEBREAKER_COUNTERS)
    assert {name for name, *_ in check.differing} == {name for name in ICEBREAKER_COUNTERS if model.counters[name]}
    assert {"frames", "msgs", "mold_gap"} <= {name for name, *_ in check.differing}


def test_board_check_exits_1_naming_the_counters_that_differ(tmp_path, monkeypatch, capsys):
    feed = tmp_path / "feed.pcap"
    assert main(["feed", "generate", "--seed", "2", "--messages", "50", "--out", str(feed)]) == 0
    monkeypatch.setattr("tick2trade.host.serial_device.open_serial", lambda port: frozen_board())
    capsys.readouterr()
    assert main(["board", "check", str(feed), "--device", "serial:/dev/frozen"]) == 1
    captured = capsys.readouterr()
    assert captured.err.strip() == ("tick2trade: the board differs from the golden model on 3 of 4 counters: "
                                    "frames, frames_ok, msgs")
    assert "frames_ok" in captured.out and "differs" in captured.out
