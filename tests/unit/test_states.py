"""The state diagram: set_state refuses a transition the table lacks, and
docs/close-path.md draws exactly the table."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

from tests.engine.harness import Net
from tests.engine.util import open_pair
from ustcp.tcp.connection import IllegalTransition
from ustcp.tcp.states import LEGAL, TRANSITIONS, State

ROOT = Path(__file__).resolve().parents[2]


def _tool() -> ModuleType:
    spec = importlib.util.spec_from_file_location("state_diagram",
                                                  ROOT / "tools" / "state_diagram.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules["state_diagram"] = mod
    spec.loader.exec_module(mod)
    return mod


def test_close_path_page_draws_the_table() -> None:
    tool = _tool()
    page = (ROOT / "docs" / "close-path.md").read_text()
    assert tool.render() in page, "run: .venv/bin/python tools/state_diagram.py " \
                                  "--write docs/close-path.md"


def test_every_state_but_listen_is_in_the_table_and_closed_is_reachable() -> None:
    seen = {s for old, new, _ in TRANSITIONS for s in (old, new)}
    assert seen == set(State) - {State.LISTEN}  # listeners are not connections
    assert all(State.CLOSE in LEGAL[s] for s in seen - {State.CLOSE})
    assert LEGAL[State.FIN_WAIT2] >= {State.TIME_WAIT, State.CLOSE}


def test_set_state_refuses_a_transition_the_table_lacks() -> None:
    net = Net()
    _, client, _ = open_pair(net)
    assert client.state == State.ESTABLISHED
    with pytest.raises(IllegalTransition, match="ESTABLISHED -> SYN_SENT"):
        client.set_state(net.now, State.SYN_SENT)
    with pytest.raises(IllegalTransition, match="ESTABLISHED -> TIME_WAIT"):
        client.enter_time_wait(net.now)
    assert client.state == State.ESTABLISHED
    client.set_state(net.now, State.FIN_WAIT1)  # a legal one goes through
    assert client.state == State.FIN_WAIT1
