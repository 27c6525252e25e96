"""Fast Open cookies (tcp/fastopen.py): SipHash-2-4, Linux's key text, primary and backup."""

from __future__ import annotations

import socket

import pytest

from ustcp.config import StackConfig, SysctlError, parse_fastopen_keys
from ustcp.tcp.fastopen import (
    FastOpenKeys,
    format_key,
    listener_queue_len,
    siphash24,
)

CLIENT = socket.inet_aton("192.0.2.1")
SERVER = socket.inet_aton("192.168.0.1")
KEY = "a1a1a1a1-b2b2b2b2-c3c3c3c3-d4d4d4d4"


def test_siphash_matches_the_reference_vectors() -> None:
    key = bytes(range(16))  # the SipHash paper's test key, messages 00 01 02 ...
    assert siphash24(key, b"") == 0x726FDB47DD0E0E31
    assert siphash24(key, bytes(range(1))) == 0x74F839C593DC67FD
    assert siphash24(key, bytes(range(8))) == 0x93F5F5799A932462
    assert siphash24(key, bytes(range(15))) == 0xA129CA6149BE45E5


def test_cookie_is_the_one_linux_gives_for_the_same_key_and_addresses() -> None:
    # Measured: this machine's kernel with tcp_fastopen_key=a1a1a1a1-b2b2b2b2-c3c3c3c3-
    # d4d4d4d4 answers a cookie request from 192.0.2.1 to 192.168.0.1 with this cookie.
    keys = FastOpenKeys(KEY)
    assert keys.cookie(CLIENT, SERVER).hex() == "3021b9d889017eeb"
    assert keys.cookie(SERVER, CLIENT) != keys.cookie(CLIENT, SERVER)
    assert format_key(keys.keys[0]) == KEY


def test_backup_key_cookies_are_accepted_and_marked_for_a_fresh_one() -> None:
    old = FastOpenKeys(KEY).cookie(CLIENT, SERVER)
    rotated = FastOpenKeys("00000001-00000002-00000003-00000004," + KEY)
    assert rotated.check(old, CLIENT, SERVER).valid
    assert rotated.check(old, CLIENT, SERVER).alt_key
    fresh = rotated.cookie(CLIENT, SERVER)
    assert fresh != old and not rotated.check(fresh, CLIENT, SERVER).alt_key
    assert not rotated.check(bytes(8), CLIENT, SERVER).valid
    assert not FastOpenKeys(KEY).check(old, socket.inet_aton("192.0.2.2"), SERVER).valid


@pytest.mark.parametrize("text", ["a1a1a1a1-b2b2b2b2-c3c3c3c3", "x-1-2-3",
                                  "1-2-3-4,5-6-7-8,9-9-9-9", "123456789-1-2-3"])
def test_bad_keys_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_fastopen_keys(text)
    with pytest.raises(SysctlError):
        StackConfig().set("tcp_fastopen_key", text)


def test_random_key_when_none_is_set() -> None:
    assert FastOpenKeys().keys[0] != FastOpenKeys().keys[0]
    assert FastOpenKeys("", bytes(16)).keys == (bytes(16),)


def test_listener_queue_length() -> None:
    assert listener_queue_len(0x1, 0, 128, 4096) == 0  # server off, no TCP_FASTOPEN
    assert listener_queue_len(0x3, 5, 128, 4096) == 5  # TCP_FASTOPEN's value
    assert listener_queue_len(0x403, 0, 128, 4096) == 128  # 0x400: the backlog
    assert listener_queue_len(0x401, 0, 128, 4096) == 0  # 0x400 needs the server bit
    assert listener_queue_len(0x403, 0, 9000, 4096) == 4096  # capped by somaxconn
