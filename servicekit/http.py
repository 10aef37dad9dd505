"""A deadline for request headers, for every HTTP service (uvicorn has none).

uvicorn times out idle keep-alive connections but not a client that connects and then sends its
request line and headers a byte at a time: such a connection stays open for as long as the client
likes, and enough of them exhaust the server's file descriptors. The protocol class made here
answers ``408`` and closes the connection when a request's headers are not complete within
``seconds`` of its first byte (or of the connection). Bodies have their own deadline in each
service, where they are read.
"""

from __future__ import annotations

HEADER_TIMEOUT_S = 10.0

_BODY = b'{"detail":"request headers not received in time"}'
_REQUEST_TIMEOUT = (b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\nconnection: close\r\n"
                    b"content-length: %d\r\n\r\n%s" % (len(_BODY), _BODY))


def header_deadline_protocol(seconds: float = HEADER_TIMEOUT_S) -> type:
    """uvicorn's HTTP protocol class with a header deadline (pass it as ``uvicorn.Config(http=...)``)."""
    from uvicorn.protocols.http.auto import AutoHTTPProtocol

    class HeaderDeadlineProtocol(AutoHTTPProtocol):  # type: ignore[misc, valid-type]
        header_timeout_s = seconds

        def connection_made(self, transport) -> None:  # noqa: ANN001 - asyncio's signature
            self._deadline = None
            super().connection_made(transport)
            self._arm()

        def data_received(self, data: bytes) -> None:
            cycle = getattr(self, "cycle", None)
            if cycle is None or cycle.response_complete:
                self._arm()  # bytes of a new request: its headers are now on the clock
            super().data_received(data)
            if getattr(self, "cycle", None) is not cycle:  # the headers are in: a request started
                self._disarm()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def _arm(self) -> None:
            if self._deadline is None:
                self._deadline = self.loop.call_later(self.header_timeout_s, self._expired)

        def _disarm(self) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
                self._deadline = None

        def _expired(self) -> None:
            self._deadline = None
            if not self.transport.is_closing():
                self.transport.write(_REQUEST_TIMEOUT)
                self.transport.close()

    return HeaderDeadlineProtocol
