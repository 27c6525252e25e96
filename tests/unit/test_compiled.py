"""The compiled engine is loaded when asked for, and only while it matches the sources."""

from __future__ import annotations

import ast
import importlib.machinery
import inspect
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

import ustcp
from ustcp import compiled
from ustcp.tcp.congestion.base import CcState
from ustcp.tcp.options import Negotiated, SockOpts
from ustcp.tcp.request import RequestSock
from ustcp.tcp.timewait import TimeWaitEntry
from ustcp.wire.ipv4 import IPv4Header
from ustcp.wire.ipv6 import IPv6Header
from ustcp.wire.tcp import TcpOptions, TcpSegment


def test_the_engine_in_use_is_the_one_announced() -> None:
    """USTCP_ENGINE=compiled (make test's main pass) loads every compiled module from the
    build, in this process and in the processes it starts (the daemons of the kernel
    tests); the pure pass loads the .py files."""
    for source in compiled.COMPILED_SOURCES:
        module = importlib.import_module(compiled.module_name(source))
        is_extension = isinstance(module.__spec__.loader,  # type: ignore[union-attr]
                                  importlib.machinery.ExtensionFileLoader)
        assert is_extension == (ustcp.ENGINE == "compiled"), source
    child = subprocess.run(
        [sys.executable, "-c", "from ustcp.compiled import engine_kind; print(engine_kind())"],
        capture_output=True, text=True, check=True, timeout=60)
    assert child.stdout.strip() == ustcp.ENGINE == compiled.engine_kind()


PURE_BUILTINS = frozenset({"len", "min", "max", "abs", "int"})


def test_no_compiled_slice_bound_calls_anything_with_effects() -> None:
    """mypyc 2.4 evaluates a memoryview slice's bounds twice (``v[f():]`` calls ``f`` twice
    when compiled, once interpreted): the echo app once sent every reply twice that way.
    In a compiled module a slice bound may call pure builtins only; anything else is
    computed in a statement of its own first."""
    offenders = []
    for source in compiled.COMPILED_SOURCES:
        tree = ast.parse((compiled.ROOT / source).read_text())
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Slice)):
                continue
            bounds = (node.slice.lower, node.slice.upper, node.slice.step)
            for call in (n for b in bounds if b is not None for n in ast.walk(b)
                         if isinstance(n, ast.Call)):
                if not (isinstance(call.func, ast.Name) and call.func.id in PURE_BUILTINS):
                    offenders.append(f"{source}:{node.lineno}: {ast.unparse(node)}")
    assert offenders == []


CONSTANT_NAME = re.compile(r"^_?[A-Z][A-Z0-9_]*$")


def test_every_compiled_module_constant_is_final() -> None:
    """mypyc turns a ``Final`` module constant into a C value; any other module global is
    a dict lookup each time it is read (``seq_diff``: 0.08 µs a call against 0.008)."""
    offenders = []
    for source in compiled.COMPILED_SOURCES:
        for node in ast.parse((compiled.ROOT / source).read_text()).body:
            if isinstance(node, ast.Assign) and len(node.targets) == 1 \
                    and isinstance(node.targets[0], ast.Name) \
                    and CONSTANT_NAME.match(node.targets[0].id) \
                    and not (isinstance(node.value, ast.Call)
                             and ast.unparse(node.value.func) in ("TypeVar", "ParamSpec")):
                offenders.append(f"{source}:{node.lineno}: {node.targets[0].id}")
    assert offenders == []


# Built for every packet or every connection: their __init__ is written out so that mypyc
# compiles it (what @dataclass generates is interpreted, 7x slower); @dataclass keeps
# == and repr.
WRITTEN_OUT_INIT = [TcpOptions, TcpSegment, IPv4Header, IPv6Header,
                    SockOpts, Negotiated, RequestSock, TimeWaitEntry, CcState]


@pytest.mark.parametrize("cls", WRITTEN_OUT_INIT, ids=lambda c: c.__name__)
def test_a_written_out_init_takes_the_fields_in_order(cls: type) -> None:
    """One list of fields: the written-out __init__ takes exactly the dataclass fields, in
    order, with the same defaults (a default_factory field takes None for "make one"), and
    runs compiled when the engine is (read from the source: a compiled class whose
    defaults are constants has no signature to inspect)."""
    module = sys.modules[cls.__module__]
    source = compiled.ROOT / (cls.__module__.replace(".", "/") + ".py")
    tree = ast.parse(source.read_text())
    node = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == cls.__name__)
    fields = [(f.target.id, f.value) for f in node.body if isinstance(f, ast.AnnAssign)
              and isinstance(f.target, ast.Name)]
    init = next(f for f in node.body if isinstance(f, ast.FunctionDef) and f.name == "__init__")
    params = init.args.args[1:]
    assert [p.arg for p in params] == [name for name, _ in fields]
    defaults = [None] * (len(params) - len(init.args.defaults)) + list(init.args.defaults)
    for (name, value), default in zip(fields, defaults, strict=True):
        if value is None:
            assert default is None, name
        elif isinstance(value, ast.Call) and ast.unparse(value.func) == "field":
            assert default is not None and ast.unparse(default) == "None", name
        else:
            assert default is not None and ast.unparse(default) == ast.unparse(value), name
    assert inspect.isfunction(vars(cls)["__init__"]) == (module.__file__ or "").endswith(".py")


def test_no_compiled_module_beside_the_sources() -> None:
    """An extension beside a .py would be imported instead of it, edited or not."""
    package = Path(ustcp.__file__).parent
    assert [p for p in package.rglob("*.so")] == []


def _fake_build(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                hashes: dict[str, str]) -> None:
    monkeypatch.setattr(compiled, "BUILD_DIR", tmp_path)
    monkeypatch.setattr(compiled, "MANIFEST", tmp_path / "ustcp-compiled.json")
    modules = {compiled.module_name(src): src.removesuffix(".py") + ".so" for src in hashes}
    for path in modules.values():
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_bytes(b"")
    compiled.MANIFEST.write_text(json.dumps({"cache_tag": sys.implementation.cache_tag,
                                             "sources": hashes, "modules": modules}))


def test_a_build_matching_the_sources_is_taken(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_build(tmp_path, monkeypatch, compiled.source_hashes())
    modules = compiled.check_build()
    assert set(modules) == {compiled.module_name(s) for s in compiled.COMPILED_SOURCES}


@pytest.mark.parametrize("change", ["edited", "added", "removed"])
def test_a_stale_build_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                  change: str) -> None:
    hashes = compiled.source_hashes()
    victim = "ustcp/tcp/connection.py"
    if change == "edited":
        hashes[victim] = "0" * 64
    elif change == "added":  # a source compiled then, gone now
        hashes["ustcp/tcp/gone.py"] = "0" * 64
        victim = "ustcp/tcp/gone.py"
    else:  # a source that exists now but was not compiled
        del hashes[victim]
    _fake_build(tmp_path, monkeypatch, hashes)
    monkeypatch.setattr(sys, "meta_path", list(sys.meta_path))
    finders = [f for f in sys.meta_path if isinstance(f, compiled.CompiledFinder)]
    for finder in finders:
        sys.meta_path.remove(finder)
    with pytest.raises(compiled.StaleBuild, match=victim):
        compiled.check_build()
    with pytest.raises(compiled.StaleBuild, match="make compiled"):
        compiled.activate("compiled")
    assert compiled.activate("auto") == "pure"
    assert not any(isinstance(f, compiled.CompiledFinder) for f in sys.meta_path)


def test_a_build_for_another_interpreter_is_refused(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_build(tmp_path, monkeypatch, compiled.source_hashes())
    doc = json.loads(compiled.MANIFEST.read_text())
    doc["cache_tag"] = "cpython-39"
    compiled.MANIFEST.write_text(json.dumps(doc))
    with pytest.raises(compiled.StaleBuild, match="cpython-39"):
        compiled.check_build()


def test_no_build_is_pure_unless_compiled_is_required(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(compiled, "BUILD_DIR", tmp_path)
    monkeypatch.setattr(compiled, "MANIFEST", tmp_path / "ustcp-compiled.json")
    monkeypatch.setattr(sys, "meta_path", [f for f in sys.meta_path
                                           if not isinstance(f, compiled.CompiledFinder)])
    assert compiled.activate("auto") == "pure"
    assert compiled.activate("pure") == "pure"
    with pytest.raises(compiled.StaleBuild, match="no compiled build"):
        compiled.activate("compiled")
    with pytest.raises(ImportError, match="expected one of"):
        compiled.activate("fast")
