"""The emulators' HTTP server (what the local stack and the over-HTTP tests talk to)."""

from __future__ import annotations

import pytest

from local.emulators import EMULATORS
from tests.conftest import TEST_DATE


@pytest.fixture
def server():
    emulator = EMULATORS["openai"](clock=lambda: TEST_DATE)
    served = emulator.serve()
    yield served
    served.shutdown()
    served.server_close()


@pytest.mark.parametrize("error", [BrokenPipeError, ConnectionResetError, ConnectionAbortedError])
def test_a_client_that_hung_up_before_its_answer_prints_no_traceback(server, capsys, error):
    try:
        raise error(32, "the client went away")
    except error:
        server.handle_error(None, ("127.0.0.1", 50000))
    assert capsys.readouterr().err == ""


def test_any_other_error_of_the_emulator_is_still_printed(server, capsys):
    try:
        raise ValueError("a bug in the emulator")
    except ValueError:
        server.handle_error(None, ("127.0.0.1", 50000))
    err = capsys.readouterr().err
    assert "Traceback" in err and "a bug in the emulator" in err
