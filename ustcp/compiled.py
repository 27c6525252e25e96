"""The engine compiled with mypyc, loaded only while it matches the sources.

The hot path (:data:`COMPILED_SOURCES`: the codecs, the TCP engine, the IP layer, the
counters, the driver's receive loop and flush, the TUN link, the callback apps) compiles
with mypyc to one C extension; the same modules stay plain Python and work without it. In a
source checkout ``make compiled`` (``tools/build_engine.py``) builds into ``build/mypyc/``,
*outside* the package, and writes a manifest there with the SHA-256 of every source it
compiled. Importing ``ustcp`` then decides, once, which engine
runs (:func:`activate`), from ``USTCP_ENGINE``:

- ``pure``: the ``.py`` modules, whatever is built;
- ``compiled``: the build, or an ``ImportError`` if there is none or it is stale (a source
  was edited, added or removed since the build): a run that asked for the compiled engine
  never silently tests other code;
- unset (``auto``): the build if it is fresh, else the ``.py`` modules (a stale build says
  so on stderr).

Why not in place: an editable install that compiles leaves ``.so`` files beside the
sources, and Python imports a ``.so`` before the ``.py`` of the same name, so every later
edit would be tested as the old code. Here the build never shadows a source; it is chosen
by a meta-path finder that serves the compiled modules' names from ``build/mypyc/``.
``setup.py`` refuses in-place builds for the same reason. A non-editable install built with
``USTCP_MYPYC=1`` puts the ``.so`` files beside its (unchanging) sources, the usual way.

:func:`engine_kind` says which engine was loaded (``ustcp serve`` logs it; the tests check it).
"""

from __future__ import annotations

import hashlib
import importlib.abc
import importlib.machinery
import importlib.util
import json
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

PACKAGE_DIR = Path(__file__).resolve().parent
ROOT = PACKAGE_DIR.parent
BUILD_DIR = ROOT / "build" / "mypyc"
MANIFEST = BUILD_DIR / "ustcp-compiled.json"
GROUP = "ustcp.engine"  # the shared library is ustcp.engine__mypyc
ENV = "USTCP_ENGINE"
MODES = ("auto", "pure", "compiled")
PROBE_MODULE = "ustcp.tcp.engine"  # compiled in every build


# A compiled package ``__init__`` gets a wrong ``__path__``; tcpinfo.py builds a
# ctypes.Structure, which mypyc 2.4 compiles into C that does not build (and it is not hot).
INTERPRETED = frozenset({"__init__.py", "tcpinfo.py"})


# The driver's hot path, compiled too: every frame goes through the stack's receive loop and
# flush, the TUN link's reads and writes, and for the daemon's echo, discard and chargen the
# callback sockets and the apps themselves (an echo round trip was 61 % interpreter time
# with only the engine compiled).
DRIVER = ("stack.py", "callbacks.py", "link/tun.py", "apps/echo.py", "apps/discard.py",
          "apps/chargen.py")


def _compiled_sources() -> tuple[str, ...]:
    """Paths relative to the checkout's root, as mypycify takes them: every module of
    ``wire/`` and ``tcp/`` but :data:`INTERPRETED`, the IP layer, its reassembly and path
    MTU tables (the engine asks them on every segment), the counters and :data:`DRIVER`."""
    found = [p for sub in ("wire", "tcp") for p in sorted((PACKAGE_DIR / sub).rglob("*.py"))
             if p.name not in INTERPRETED]
    found += [PACKAGE_DIR / name for name in ("ip.py", "frag.py", "pmtu.py", "mib.py", *DRIVER)]
    return tuple(p.relative_to(ROOT).as_posix() for p in found)


COMPILED_SOURCES = _compiled_sources()


def module_name(source: str) -> str:
    return source.removesuffix(".py").replace("/", ".")


def source_hashes() -> dict[str, str]:
    return {src: hashlib.sha256((ROOT / src).read_bytes()).hexdigest()
            for src in COMPILED_SOURCES}


class StaleBuild(ImportError):
    """The build does not match the sources (or there is none)."""


def check_build() -> dict[str, str]:
    """The build's modules (name -> path of the .so), if it matches the sources and this
    interpreter; else :class:`StaleBuild` saying why."""
    try:
        manifest = json.loads(MANIFEST.read_text())
    except (OSError, ValueError) as exc:
        raise StaleBuild(f"no compiled build in {BUILD_DIR} ({exc.__class__.__name__}): "
                         "run `make compiled`") from None
    if manifest.get("cache_tag") != sys.implementation.cache_tag:
        raise StaleBuild(f"the build in {BUILD_DIR} is for {manifest.get('cache_tag')}, not "
                         f"{sys.implementation.cache_tag}: run `make compiled`")
    built: dict[str, str] = manifest.get("sources", {})
    now = source_hashes()
    changed = sorted(src for src in set(built) | set(now) if built.get(src) != now.get(src))
    if changed:
        raise StaleBuild(f"the build in {BUILD_DIR} is stale: {', '.join(changed[:5])}"
                         f"{' ...' if len(changed) > 5 else ''} changed since; run "
                         "`make compiled`")
    modules: dict[str, str] = manifest["modules"]
    missing = [name for name, path in modules.items() if not (BUILD_DIR / path).exists()]
    if missing:
        raise StaleBuild(f"the build in {BUILD_DIR} lacks {', '.join(missing)}: run "
                         "`make compiled`")
    return {name: str(BUILD_DIR / path) for name, path in modules.items()}


class CompiledFinder(importlib.abc.MetaPathFinder):
    """Serves the compiled modules (and their group library) from the build directory."""

    def __init__(self, modules: dict[str, str]) -> None:
        self.modules = modules

    def find_spec(self, fullname: str, path: Sequence[str] | None,
                  target: ModuleType | None = None) -> importlib.machinery.ModuleSpec | None:
        where = self.modules.get(fullname)
        if where is None:
            return None
        loader = importlib.machinery.ExtensionFileLoader(fullname, where)
        return importlib.util.spec_from_file_location(fullname, where, loader=loader)


def activate(mode: str | None = None) -> str:
    """Install the compiled engine if ``mode`` (default: ``$USTCP_ENGINE``, else auto)
    asks for it and the build is fresh; return the mode that took effect (``pure`` or
    ``compiled``). Called once, by ``ustcp/__init__.py``, before any engine module loads."""
    mode = mode if mode is not None else (os.environ.get(ENV) or "auto")
    if mode not in MODES:
        raise ImportError(f"{ENV}={mode!r}: expected one of {', '.join(MODES)}")
    if mode == "pure" or any(isinstance(f, CompiledFinder) for f in sys.meta_path):
        return mode if mode == "pure" else "compiled"
    try:
        modules = check_build()
    except StaleBuild as exc:
        if mode == "compiled":
            raise
        if MANIFEST.exists():
            print(f"ustcp: running pure Python: {exc}", file=sys.stderr)
        return "pure"
    sys.meta_path.insert(0, CompiledFinder(modules))
    return "compiled"


def engine_kind() -> str:
    """``compiled`` if the engine modules in use are the C extension, else ``pure``."""
    module = importlib.import_module(PROBE_MODULE)
    spec = module.__spec__
    compiled = spec is not None and isinstance(spec.loader,
                                               importlib.machinery.ExtensionFileLoader)
    return "compiled" if compiled else "pure"


def build(force: bool = False) -> bool:
    """Compile :data:`COMPILED_SOURCES` into :data:`BUILD_DIR` unless the build there is
    fresh; return whether it compiled. The manifest is written only after a build that
    succeeded, so a failed one leaves no build to load."""
    if not force:
        try:
            check_build()
        except StaleBuild:
            pass
        else:
            return False
    hashes = source_hashes()  # what is compiled: edits during the build make it stale
    MANIFEST.unlink(missing_ok=True)
    env = {**os.environ, "USTCP_MYPYC": "1", ENV: "pure"}
    subprocess.run([sys.executable, "setup.py", "--quiet", "build_ext", "--force",
                    "--build-lib", str(BUILD_DIR), "--build-temp", str(ROOT / "build" / "tmp")],
                   cwd=ROOT, env=env, check=True)
    suffix = importlib.machinery.EXTENSION_SUFFIXES[0]
    names = [module_name(src) for src in hashes] + [GROUP + "__mypyc"]
    modules = {name: name.replace(".", "/") + suffix for name in names}
    MANIFEST.write_text(json.dumps({"cache_tag": sys.implementation.cache_tag,
                                    "sources": hashes, "modules": modules}, indent=1) + "\n")
    check_build()
    return True
