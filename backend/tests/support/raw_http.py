"""HTTP/1.1 over a raw socket: the bytes a client sends, exactly, and the answer as it comes back."""

from __future__ import annotations

import socket
from dataclasses import dataclass

import httpx2 as httpx


@dataclass(frozen=True)
class RawResponse:
    status_line: bytes
    headers: httpx.Headers
    body: bytes
    responses: int  # how many status lines came back on the connection

    @property
    def status(self) -> int:
        return int(self.status_line.split(b" ")[1])


def parse_response(received: bytes) -> RawResponse:
    head, _, body = received.partition(b"\r\n\r\n")
    status_line, *lines = head.split(b"\r\n")
    fields = [line.decode("latin-1").partition(": ") for line in lines]
    headers = httpx.Headers([(name, value) for name, _, value in fields])
    return RawResponse(status_line, headers, body, received.count(b"HTTP/1.1 "))


def exchange(port: int, request: bytes, *, timeout: float = 5) -> RawResponse:
    """Send ``request`` and read until the server closes the connection."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(request)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    return parse_response(received)
