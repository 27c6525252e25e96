"""Bytes <-> headers: pure, stateless codecs for IPv4, TCP, ICMP and the virtio-net header."""
