"""The build's one optional step: the engine compiled to C with mypyc.

Metadata lives in pyproject.toml; this file only adds the extension modules, and only when
``USTCP_MYPYC=1`` is set (mypy, which ships mypyc, must then be importable: build with
``--no-build-isolation`` from the dev environment, or as ``make compiled`` does). Without
it the package is pure Python.

The modules compiled are :data:`ustcp.compiled.COMPILED_SOURCES` (the codecs, the engine,
the IP layer, the counters), as one group: one shared library, its C written one file per
module (``multi_file``) so that gcc compiles them on every core at once, linked with
link-time optimisation. An in-place build (``pip install -e .`` with
``USTCP_MYPYC=1``, or ``build_ext --inplace``) is refused: .so files beside the sources
would shadow every later edit of them. ``make compiled`` builds into ``build/mypyc/``
instead, and :mod:`ustcp.compiled` loads that build only while it matches the sources.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from setuptools import setup
from setuptools.command.build_ext import build_ext


def compile_in_parallel(compiler: Any) -> None:
    """Make ``compiler.compile`` run one gcc per source file on every core: distutils
    compiles an extension's sources one after another, and the engine's are a few dozen
    files of up to 1 MB each."""
    compile_serially = compiler.compile

    def compile(sources: list[str], *args: Any, **kwargs: Any) -> list[str]:
        with ThreadPoolExecutor(os.cpu_count()) as pool:
            objects = pool.map(lambda source: compile_serially([source], *args, **kwargs),
                               sources)
            return [obj for some in objects for obj in some]

    compiler.compile = compile


class BuildExt(build_ext):
    def run(self) -> None:
        if self.inplace and self.extensions:
            raise SystemExit("ustcp: refusing to compile in place (stale .so files would "
                             "shadow edited sources): run `make compiled`, which builds into "
                             "build/mypyc/")
        super().run()

    def build_extensions(self) -> None:
        compile_in_parallel(self.compiler)
        super().build_extensions()


def compiled_extensions() -> list[Any]:
    if os.environ.get("USTCP_MYPYC") != "1":
        return []
    from mypyc.build import mypycify

    from ustcp.compiled import COMPILED_SOURCES, GROUP

    target_dir = os.path.join("build", "mypyc-c")
    extensions = mypycify(list(COMPILED_SOURCES), opt_level="3", group_name=GROUP,
                          multi_file=True, target_dir=target_dir)
    # mypyc writes a dotted group's per-module files in target_dir but its headers in
    # the package's folder there (ustcp/__native_engine.h): let the files find them
    package_dir = os.path.join(target_dir, *GROUP.split(".")[:-1])
    for ext in extensions:
        ext.include_dirs.append(package_dir)
        # Link-time optimisation gives back the inlining across modules that one C file
        # per module loses (callgrind: echo +3.4 % instructions without it, +0.8 % with).
        # A new list: mypycify gives all its extensions one, which appending would grow.
        ext.extra_compile_args = [*ext.extra_compile_args, "-flto=auto"]
        ext.extra_link_args = [*ext.extra_link_args, "-flto=auto", "-O3"]
    return extensions


setup(ext_modules=compiled_extensions(), cmdclass={"build_ext": BuildExt})
