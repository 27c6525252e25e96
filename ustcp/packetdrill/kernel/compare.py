"""``--target both``: one row per script with both results, and where they part.

Two results agree when they have the same status and, for failures, the same line. A
script skipped on either side is not compared. For a disagreement the row names the first
line where the two runs part (the earlier failing line) and what each side sent there: the
failing side's mismatch, and the other side's packet at that line (or "as the script").
"""

from __future__ import annotations

from dataclasses import dataclass

from ..runner import Result


@dataclass(frozen=True, slots=True)
class Row:
    script: str
    kernel: Result
    engine: Result
    note: str = ""  # a known kernel-version difference, shown when the kernel fails

    @property
    def compared(self) -> bool:
        return "skip" not in (self.kernel.status, self.engine.status)

    @property
    def agree(self) -> bool:
        if not self.compared:
            return True
        return self.kernel.status == self.engine.status and \
            (self.kernel.status == "pass" or self.kernel.line == self.engine.line)

    def parting(self) -> str:
        """``line N: kernel ...; ustcp ...`` for a disagreement, "" otherwise."""
        if self.agree:
            return ""
        failed = [r for r in (self.kernel, self.engine) if r.status == "fail"]
        line = min((r.line or 0) for r in failed)
        parts = []
        for label, result in (("kernel", self.kernel), ("ustcp", self.engine)):
            if result.status == "fail" and (result.line or 0) == line:
                parts.append(f"{label}: {result.message}")
            else:
                sent = result.sent.get(line)
                parts.append(f"{label}: sent {sent}" if sent else f"{label}: as the script")
        return f"line {line}: " + "; ".join(parts)


def cell(result: Result) -> str:
    if result.status == "fail" and result.line:
        return f"fail:{result.line}"
    return result.status


def render(rows: list[Row]) -> list[str]:
    width = max([len("script"), *(len(r.script) for r in rows)])
    out = [f"{'script':<{width}}  {'kernel':<9} {'ustcp':<9} agree"]
    for row in rows:
        mark = "yes" if row.agree else "NO"
        if not row.compared:
            mark = "-"
        out.append(f"{row.script:<{width}}  {cell(row.kernel):<9} {cell(row.engine):<9} {mark}")
        detail = row.parting()
        if detail:
            out.append(f"    parts at {detail}")
        for result, label in ((row.kernel, "kernel"), (row.engine, "ustcp")):
            if result.status == "skip":
                out.append(f"    {label} skipped: {result.message}")
        if row.note and row.kernel.status == "fail":
            out.append(f"    note: {row.note}")
    return out
