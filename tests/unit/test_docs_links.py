"""The docs link only inside the repository (the seed notes through docs/seeds.md), every
relative link and anchor resolves, and the systemd unit in docs/operations.md runs a
command line the CLI accepts."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

from ustcp import cli

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)\s]+)\)")


def _anchors(page: Path) -> set[str]:
    text = page.read_text()
    ids = set(re.findall(r'<a id="([^"]+)"></a>', text))
    for heading in re.findall(r"^#+ (.+)$", text, re.MULTILINE):
        ids.add(re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-"))
    return ids


def test_every_link_stays_in_the_repository_and_resolves() -> None:
    for page in PAGES:
        for target in LINK.findall(page.read_text()):
            assert "://" not in target, f"{page.name}: external link {target}"
            path, _, anchor = target.partition("#")
            resolved = (page.parent / path).resolve() if path else page
            assert resolved.is_relative_to(ROOT), f"{page.name}: {target} leaves the repo"
            assert resolved.exists(), f"{page.name}: {target} does not exist"
            if anchor and resolved.suffix == ".md":
                assert anchor in _anchors(resolved), f"{page.name}: no anchor {target}"


def test_the_systemd_unit_runs_a_valid_serve_command() -> None:
    text = (ROOT / "docs" / "operations.md").read_text()
    [line] = re.findall(r"^ExecStart=(\S+/ustcp serve .*)$", text, re.MULTILINE)
    argv = shlex.split(line)[1:]
    args = cli.build_parser().parse_args(argv)
    assert args.command == "serve" and args.log_format == "json" and args.metrics == "9100"
