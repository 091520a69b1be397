# amaranth: UnusedElaboratable=no
"""The serial backend's own errors, without a board: device strings, ports that cannot be opened,
something on the port that is not a tick2trade board, a board that does not answer, a board that
has traded since it was loaded.

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
    """A transport that answers READ requests from ``words`` (address -> word, 0 elsewhere), or never
    answers when ``words`` is None."""

    def __init__(self, words=None):
        self.words, self.replies = words, b""

    def write(self, request: bytes):
        command, tag = request[1], request[2]
        assert command == Command.READ.value, "the session only reads before it configures"
        address, count = int.from_bytes(request[5:7], "little"), request[7]
        if self.words is not None:
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


def test_a_board_that_has_traded_is_refused_until_reloaded():
    """Its order book is not empty, and no register empties it: one clear line, nothing written."""
    board = BoardSession(RegisterFile({0: MAGIC, 1: layout_word(REGISTERS), REGISTERS["msgs"].address: 5}), REGISTERS)
    with pytest.raises(DeviceError, match="has decoded 5 messages since it was loaded.*load the bitstream again"):
        board.start(STRATEGY)


def test_a_board_built_with_another_configuration_is_refused():
    """A board whose register map is another (a receive-path board) is never written."""
    receive_path = RxPath(counters=("frames", "frames_ok", "msgs", "mold_gap")).registers
    with pytest.raises(DeviceError, match="register map .* is not the one this run needs"):
        BoardSession(RegisterFile({0: MAGIC, 1: layout_word(receive_path)}), REGISTERS)
