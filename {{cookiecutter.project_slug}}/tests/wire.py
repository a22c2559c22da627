"""HTTP as bytes on a socket, for tests that judge the relay by what crosses the wire.

`RawUpstream` is an upstream that records every request exactly as it arrived and answers with
exactly the bytes a test gives it, however wrong. `exchange` sends a request written out by hand
and reads the response as bytes. No HTTP library stands between the test and the wire.
"""

import json
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nok"


@dataclass
class Message:
    """An HTTP message as bytes: its first line, its header lines (as pairs) and its body.

    The body is the decoded one (chunked framing removed); `raw` is everything as received.
    """

    start: bytes
    headers: list[tuple[bytes, bytes]]
    body: bytes
    raw: bytes
    trailers: list[tuple[bytes, bytes]] = field(default_factory=list)

    @property
    def status(self) -> int:
        return int(self.start.split(b" ", 2)[1])

    def values(self, name: bytes) -> list[bytes]:
        """Every value of the header `name` (any case), in order."""
        return [value for key, value in self.headers if key.lower() == name.lower()]

    def names(self) -> list[bytes]:
        return [key.lower() for key, _ in self.headers]


class _Reader:
    """Reads an HTTP/1.1 message off a socket, keeping every byte it took."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = b""
        self.taken = b""

    def _fill(self) -> None:
        data = self.sock.recv(65536)
        if not data:
            raise EOFError
        self.buffer += data

    def line(self) -> bytes:
        while b"\r\n" not in self.buffer:
            self._fill()
        line, self.buffer = self.buffer.split(b"\r\n", 1)
        self.taken += line + b"\r\n"
        return line

    def exactly(self, size: int) -> bytes:
        while len(self.buffer) < size:
            self._fill()
        data, self.buffer = self.buffer[:size], self.buffer[size:]
        self.taken += data
        return data

    def rest(self) -> bytes:
        try:
            while True:
                self._fill()
        except (EOFError, ConnectionError):
            pass
        data, self.buffer = self.buffer, b""
        self.taken += data
        return data

    def fields(self) -> list[tuple[bytes, bytes]]:
        pairs = []
        while line := self.line():
            name, _, value = line.partition(b":")
            pairs.append((name, value.strip(b" \t")))
        return pairs

    def message(self, *, response_to: bytes = b"") -> Message:
        """One message; `response_to` is the request method when reading a response."""
        return self.body(self.head(), response_to=response_to)

    def head(self) -> Message:
        """A message's start line and headers; `body` reads the rest."""
        self.taken = b""
        start = self.line()
        headers = self.fields()
        return Message(start, headers, b"", self.taken)

    def body(self, message: Message, *, response_to: bytes = b"") -> Message:
        self.taken = message.raw
        te = b",".join(message.values(b"transfer-encoding")).lower()
        length = message.values(b"content-length")
        no_body = response_to == b"HEAD" or (
            response_to and (message.status in {204, 304} or message.status < 200)
        )
        if no_body:
            pass
        elif b"chunked" in te:
            while size := int(self.line().split(b";")[0], 16):
                message.body += self.exactly(size)
                self.line()
            message.trailers = self.fields()
        elif length:
            message.body = self.exactly(int(length[0]))
        elif response_to:
            message.body = self.rest()
        message.raw = self.taken
        return message


@dataclass
class Script:
    """How the raw upstream answers one request.

    It sends `response` (before reading the request body if `early`), then, `delay` seconds
    later, `later`; then it hangs up if `close`, or reads the next request. An empty `response`
    is no answer at all: it waits for the next request, or hangs up if `close`. The first
    requests get the responses in `first` instead, one each, in turn; an empty one hangs up.
    """

    response: bytes = OK
    first: list[bytes] = field(default_factory=list)
    close: bool = False
    early: bool = False
    later: bytes = b""
    delay: float = 0.0
    # Set once `later` has been sent.
    sent_later: threading.Event = field(default_factory=threading.Event)


class RawUpstream:
    """A keep-alive HTTP/1.1 server on 127.0.0.1 that records requests as bytes.

    A request whose path holds `/script/<key>` gets the bytes `script(key, ...)` set; any other
    gets a plain 200 `ok`. `received(key)` returns the requests whose path held `key`.
    """

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.requests: list[Message] = []
        self.scripts: dict[str, Script] = {}
        self.connections = 0
        self.lock = threading.Lock()

    def script(self, key: str, response: bytes, **how: Any) -> str:
        """Answer requests whose path holds `/script/<key>` as `Script(response, **how)` says.

        Returns the path part to request.
        """
        self.scripts[key] = Script(response, **how)
        return f"script/{key}"

    def wait_for_later(self, path: str, seconds: float = 10) -> None:
        """Wait until the script at `path` has sent its `later` bytes."""
        assert self.scripts[path.removeprefix("script/")].sent_later.wait(seconds)

    def received(self, key: str) -> list[Message]:
        with self.lock:
            return [message for message in self.requests if key.encode() in message.start]

    def received_once(self, key: str) -> Message:
        """The one request whose path held `key`; fails if there was none or more."""
        (request,) = self.received(key)
        return request

    def _script_for(self, request: Message) -> Script:
        target = request.start.split(b" ")[1].decode("latin-1")
        for key, script in self.scripts.items():
            if f"/script/{key}" in target:
                return script
        return Script()

    def _serve(self, conn: socket.socket) -> None:
        reader = _Reader(conn)
        with conn:
            while True:
                try:
                    request = reader.head()
                    script = self._script_for(request)
                    if script.early:
                        conn.sendall(script.response)
                    request = reader.body(request)
                    with self.lock:
                        self.requests.append(request)
                        turn = script.first.pop(0) if script.first else None
                    if turn is not None:
                        conn.sendall(turn)
                        if not turn:
                            return
                        continue
                    if not script.early:
                        conn.sendall(script.response)
                    if script.later:
                        time.sleep(script.delay)
                        conn.sendall(script.later)
                        script.sent_later.set()
                except (EOFError, OSError, ValueError):
                    return
                if script.close:
                    return

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            with self.lock:
                self.connections += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    @contextmanager
    def running(self) -> Iterator["RawUpstream"]:
        thread = threading.Thread(target=self._accept, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self.listener.close()


def exchange(url: str, request: bytes, *, method: bytes = b"", timeout: float = 10) -> Message:
    """Send `request` as written on a new connection; the response, read by its framing."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=timeout) as sock:
        sock.sendall(request)
        reader = _Reader(sock)
        response = reader.message(response_to=method or request.split(b" ", 1)[0])
        while 100 <= response.status < 200 and response.status != 101:
            # An interim response (100 Continue): the final one follows.
            response = reader.message(response_to=method or request.split(b" ", 1)[0])
        return response


def send(
    url: str,
    target: str,
    *headers: bytes,
    method: str = "GET",
    body: bytes = b"",
    chunks: bytes | None = None,
) -> Message:
    """A request with `headers` (whole lines, without CRLF) and a body.

    `body` goes with its Content-Length; `chunks`, already chunk-framed (with any trailer),
    goes with `Transfer-Encoding: chunked`.
    """
    host = url.removeprefix("http://").encode()
    lines = [f"{method} {target} HTTP/1.1".encode("latin-1"), b"Host: " + host, *headers]
    if chunks is not None:
        lines.append(b"Transfer-Encoding: chunked")
        body = chunks
    elif body:
        lines.append(b"Content-Length: %d" % len(body))
    return exchange(url, b"\r\n".join(lines) + b"\r\n\r\n" + body)


def stalled_body(url: str, target: str) -> bytes:
    """A POST that declares a 10-byte body, sends 2 bytes of it and stops; what comes back."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as stalled:
        head = f"POST {target} HTTP/1.1\r\nHost: {host}\r\nContent-Length: 10\r\n\r\n"
        stalled.sendall(head.encode() + b"12")
        return stalled.recv(65536)


def key() -> str:
    """A fresh name for one test's requests, so they can be told apart at the upstream."""
    return uuid.uuid4().hex[:12]


def assert_json_error(response: Message, status: int) -> None:
    """`response` has this status and a JSON body with a `detail`."""
    assert response.status == status, response.raw[:300]
    assert json.loads(response.body)["detail"]
