"""Where frames come from and go to.

- :mod:`.base`: the :class:`~.base.Link` protocol every link implements;
- :mod:`.tun`: a Linux TUN device, optionally with virtio-net offloads (GSO, checksums);
- :mod:`.memory`: two in-process links back to back, for tests;
- :mod:`.impair` and :mod:`.impaired`: seeded loss, delay, reordering, duplication,
  corruption and rate limits, as a wrapper around any link;
- :mod:`.pcap`: a wrapper that records every frame to a pcap file.
"""
