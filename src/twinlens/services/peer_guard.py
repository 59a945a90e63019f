"""Check the address an outbound connection actually reached, before a byte is sent.

Checking a URL's host (netguard.check_url) resolves the name once; the HTTP client
resolves it again to connect. A name whose DNS answers a public address the first time and
127.0.0.1 the second (DNS rebinding) would pass the check and still reach the database on
localhost. This hook runs inside the client, right after the TCP connection opens and
before the request goes out, on the address the socket is connected to.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twinlens.contract.errors import InputError
from twinlens.services.netguard import check_peer

CONNECTED = "connection.connect_tcp.complete"  # httpcore's trace event once TCP is up


class PeerRefused(Exception):
    """The connection reached a non-public address; nothing was sent to it."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def refuse_non_public_peers(field: str, *, allow_private: bool) -> Callable[[str, dict[str, Any]], None]:
    """An httpx `trace` request extension that closes the connection and raises PeerRefused
    when the connected address is not public (unless private addresses are allowed)."""

    def on_event(event: str, info: dict[str, Any]) -> None:
        if event != CONNECTED or allow_private:
            return
        stream = info["return_value"]
        peer = stream.get_extra_info("server_addr")
        try:
            if not peer:  # fail closed: an address that cannot be told is not known to be public
                raise InputError(field, "refused: the address the connection reached is unknown")
            check_peer(peer[0], field=field, allow_private=False)
        except InputError as exc:
            stream.close()
            raise PeerRefused(exc.reason) from None

    return on_event
