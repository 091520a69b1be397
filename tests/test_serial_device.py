# amaranth: UnusedElaboratable=no
"""The serial backend's own errors, without a board: device strings, ports that cannot be opened,
something on the port that is not a tick2trade board, a board that does not answer, a board whose
order book does not finish emptying.

Its behaviour against a board is in the device tests of test_pipeline.py and the race test of
test_pipeline_session.py, on a simulated board behind a pseudo-terminal.
"""

import pytest

from tick2trade.hdl.csr import MAGIC, layout_word
from tick2trade.hdl.rx_path import RxPath
from tick2trade.host.board_link import Command, Status, encode_reply
from tick2trade.host.device import DeviceError
from tick2trade.host.serial_device import BoardSession, open_serial, pipeline_registers, serial_port
from tick2trade.host.strategy import parse_strategy

STRATEGY = parse_strategy({"instruments": {"lead": "LEAD", "target": "TGT"},
                           "strategy": {"kind": "snipe", "edge": "0.01", "order_size": 100}})
REGISTERS = pipeline_registers(STRATEGY)


class RegisterFile:
    """A transport that answers READ requests from ``words`` (address -> word, 0 elsewhere) and takes
    WRITE requests (noted in ``written``, the words unchanged), or never answers when ``words`` is None."""

    def __init__(self, words=None):
        self.words, self.replies, self.written = words, b"", []

    def write(self, request: bytes):
        command, tag = request[1], request[2]
        if self.words is None:
            return
        address = int.from_bytes(request[5:7], "little")
        if command == Command.WRITE.value:
            self.written.append(address)
            self.replies += encode_reply(Command.WRITE, tag, Status.OK, b"")
            return
        assert command == Command.READ.value
        count = request[7]
        payload = b"".join(self.words.get(address + i, 0).to_bytes(4, "little") for i in range(count))
        self.replies += encode_reply(Command.READ, tag, Status.OK, payload)

    def read(self, count: int) -> bytes:
        data, self.replies = self.replies[:count], self.replies[count:]
        return data


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
