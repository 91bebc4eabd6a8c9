"""CorkedHttpTools: a response's headers and body reach the client together.

A real uvicorn server on 127.0.0.1 in a thread, serving an app that waits 0.1 s
between ``http.response.start`` and the body; a raw socket reads what arrives.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import uvicorn

from supervisor.protocol import CorkedHttpTools
from tests.conftest import wait_for

GAP_S = 0.1  # under the cork's 200 ms ceiling


async def _slow_body(scope: Any, receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    await receive()
    body = b'{"ok": true}'
    headers = [(b"content-type", b"application/json"), (b"content-length", b"12")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await asyncio.sleep(GAP_S)
    await send({"type": "http.response.body", "body": body})


@pytest.fixture(params=[CorkedHttpTools, "httptools"], ids=["corked", "uvicorn's own"])
def server(request) -> Iterator[tuple[int, bool]]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(
        _slow_body, http=request.param, log_level="warning", lifespan="off", loop="uvloop"
    )
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    wait_for(lambda: srv.started, 10, "uvicorn started")
    try:
        yield sock.getsockname()[1], request.param is CorkedHttpTools
    finally:
        srv.should_exit = True
        thread.join(10)
        sock.close()


def test_headers_wait_for_the_body_when_corked(server):
    """Corked, the first bytes the client gets already hold the body; uvicorn's own
    protocol sends the headers alone first (the control that shows the check can fail)."""
    port, corked = server
    with socket.create_connection(("127.0.0.1", port), timeout=5) as client:
        client.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        first = client.recv(65536)
        rest = b""
        while not (first + rest).endswith(b'{"ok": true}'):
            chunk = client.recv(65536)
            assert chunk, f"connection closed early after {first + rest!r}"
            rest += chunk
    assert first.startswith(b"HTTP/1.1 200")
    assert first.endswith(b'{"ok": true}') is corked, first
