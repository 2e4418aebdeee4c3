"""Loaded by the example-run test (on PYTHONPATH): any connection off the loopback fails loudly.

It proves the example needs no network (hub, NLTK, tiktoken downloads) on a fresh machine.
"""

import ipaddress
import socket

_connect = socket.socket.connect


def _loopback_only(self, address):
    host = address[0] if isinstance(address, tuple) else None
    if host is not None:
        try:
            loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
        except ValueError:  # a host name: would need DNS, i.e. the network
            loopback = False
        if not loopback:
            raise OSError(f"network access blocked by the test: connect({address!r})")
    return _connect(self, address)


socket.socket.connect = _loopback_only
_getaddrinfo = socket.getaddrinfo


def _no_dns(host, *args, **kwargs):
    if host not in (None, "localhost") and not str(host).startswith("127.") and host != "::1":
        raise OSError(f"network access blocked by the test: getaddrinfo({host!r})")
    return _getaddrinfo(host, *args, **kwargs)


socket.getaddrinfo = _no_dns
