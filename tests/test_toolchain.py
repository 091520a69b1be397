"""host/toolchain.py: a tool run that is interrupted stops its tool."""

import os
import signal
import sys
import time

import pytest

from tick2trade.host import toolchain
from tick2trade.host.toolchain import ToolRunner


class Interrupted(Exception):
    """What the test's alarm raises in the middle of a tool run, as Ctrl-C or `kill` would."""


def test_interrupted_run_kills_its_tool(tmp_path, monkeypatch):
    finished = tmp_path / "finished"
    tool = f"import os, time; print(os.getpid(), flush=True); time.sleep(4); open({str(finished)!r}, 'w')"
    monkeypatch.setattr(toolchain, "tool_argv", lambda _tool, _args: [sys.executable, "-c", tool])

    def interrupt(signum, frame):
        raise Interrupted

    previous = signal.signal(signal.SIGALRM, interrupt)
    try:
        signal.alarm(1)
        with pytest.raises(Interrupted):
            ToolRunner(tmp_path, None, time.monotonic()).run("nextpnr", "nextpnr-ecp5", [])
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    with pytest.raises(ProcessLookupError):  # gone at once
        os.kill(int((tmp_path / "nextpnr.log").read_text().split()[0]), 0)
    time.sleep(4)  # past the end of its sleep
    assert not finished.exists()  # killed, not waited for
