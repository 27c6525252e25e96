"""The build's one optional step: the engine compiled to C with mypyc.

Metadata lives in pyproject.toml; this file only adds the extension modules, and only when
``USTCP_MYPYC=1`` is set (mypy, which ships mypyc, must then be importable: build with
``--no-build-isolation`` from the dev environment, or as ``make compiled`` does). Without
it the package is pure Python.

The modules compiled are :data:`ustcp.compiled.COMPILED_SOURCES` (the codecs, the engine,
the IP layer, the counters), as one group. An in-place build (``pip install -e .`` with
``USTCP_MYPYC=1``, or ``build_ext --inplace``) is refused: .so files beside the sources
would shadow every later edit of them. ``make compiled`` builds into ``build/mypyc/``
instead, and :mod:`ustcp.compiled` loads that build only while it matches the sources.
"""

from __future__ import annotations

import os
from typing import Any

from setuptools import setup
from setuptools.command.build_ext import build_ext


class RefuseInPlace(build_ext):
    def run(self) -> None:
        if self.inplace and self.extensions:
            raise SystemExit("ustcp: refusing to compile in place (stale .so files would "
                             "shadow edited sources): run `make compiled`, which builds into "
                             "build/mypyc/")
        super().run()


def compiled_extensions() -> list[Any]:
    if os.environ.get("USTCP_MYPYC") != "1":
        return []
    from mypyc.build import mypycify

    from ustcp.compiled import COMPILED_SOURCES, GROUP

    return mypycify(list(COMPILED_SOURCES), opt_level="3", group_name=GROUP,
                    target_dir=os.path.join("build", "mypyc-c"))


setup(ext_modules=compiled_extensions(), cmdclass={"build_ext": RefuseInPlace})
