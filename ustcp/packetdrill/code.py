"""``%{ ... }%`` blocks: Python run against a tcp_info snapshot, as packetdrill's code.c does.

All blocks of a script share one namespace (a block may define a name a later one uses).
Before each block the ``tcpi_*`` fields of the socket under test are bound, with the
constants packetdrill's Python preamble defines (TCP_CA_* states, TCP_* socket states).
"""

from __future__ import annotations

import ast
import io
from contextlib import redirect_stdout
from typing import Any

from ..tcp.states import State

CONSTANTS: dict[str, int] = {
    "TCP_CA_Open": 0, "TCP_CA_Disorder": 1, "TCP_CA_CWR": 2, "TCP_CA_Recovery": 3,
    "TCP_CA_Loss": 4,
    "TCPI_OPT_TIMESTAMPS": 1, "TCPI_OPT_SACK": 2, "TCPI_OPT_WSCALE": 4, "TCPI_OPT_ECN": 8,
    "TCPI_OPT_ECN_SEEN": 16, "TCPI_OPT_SYN_DATA": 32,
    **{f"TCP_{state.name}": int(state) for state in State},
    "TCP_CLOSE": int(State.CLOSE),
}


class CodeFailure(Exception):
    """A block raised: ``message`` reads ``expected ... actual ...`` for a failed assert."""


class CodeRunner:
    def __init__(self, filename: str) -> None:
        self.filename = filename
        self.namespace: dict[str, Any] = {"__builtins__": __builtins__}

    def run(self, text: str, info: dict[str, int] | None, line: int) -> str:
        """Run one block; returns what it printed. Raises :class:`CodeFailure`."""
        self.namespace.update(CONSTANTS)
        if info is not None:
            self.namespace.update(info)
        try:
            # code.c writes each block and a newline: a block ending in a backslash
            # continuation ("...;\\" before "}%") joins that empty line
            tree = ast.parse(text + "\n", self.filename)
        except SyntaxError as exc:
            raise CodeFailure(f"Python syntax error: {exc.msg}") from exc
        out = io.StringIO()
        with redirect_stdout(out):
            for statement in tree.body:
                self._run_statement(statement, text, line)
        return out.getvalue()

    def _run_statement(self, statement: ast.stmt, text: str, line: int) -> None:
        module = ast.Module(body=[statement], type_ignores=[])
        ast.increment_lineno(module, line - 1)
        try:
            exec(compile(module, self.filename, "exec"), self.namespace)
        except AssertionError as exc:
            raise CodeFailure(self._describe_assert(statement, text, exc)) from exc
        except NameError as exc:
            raise CodeFailure(f"{exc} (no such tcp_info field?)") from exc
        except Exception as exc:
            raise CodeFailure(f"{type(exc).__name__}: {exc}") from exc

    def _describe_assert(self, statement: ast.stmt, text: str, exc: AssertionError) -> str:
        if not isinstance(statement, ast.Assert):
            return f"assertion failed: {exc}"
        test = ast.unparse(statement.test)
        names = sorted({n.id for n in ast.walk(statement.test) if isinstance(n, ast.Name)
                        and n.id in self.namespace and n.id not in CONSTANTS})
        values = ", ".join(f"{n}={self.namespace[n]!r}" for n in names)
        return f"assert: expected {test} actual {values or exc}"
