"""Where an upstream response ends, told from the bytes as they arrive on its connection.

A pooled connection may carry the next exchange only if the last one ended cleanly by its
framing: nothing after the end of the response, no doubt about where that end was. The client
libraries parse responses leniently and keep what follows the end for the next response on the
same connection, so a broken or hostile upstream could hand one caller's leftovers to another.
Both transports feed what they receive through `ResponseFraming`, and close a connection
instead of reusing it when it says `reusable` is false. It also refuses a response head that a
lenient parser would read differently from a strict one: a bare LF as a line end.
"""

import re

from {{ cookiecutter.package_name }}.errors import MalformedResponse

_HEAD_END = b"\r\n\r\n"
_CHUNK_SIZE = re.compile(rb"[0-9a-fA-F]{1,16}")
# The status code: the second word of the status line.
_STATUS = re.compile(rb"[^ \r\n]* ([0-9]+)(?:[ \r]|$)")
# The header lines that decide where a body ends, found in one pass over the head.
_FRAMING_FIELD = re.compile(rb"\r\n(content-length|transfer-encoding):([^\r\n]*)", re.IGNORECASE)
# A head, or a chunk-size line, longer than this is refused: the parsers would refuse it too.
_MAX_LINE_BYTES = 1024 * 1024


class ResponseFraming:
    """Follows one response at a time over the bytes of one connection.

    Call `expect()` when a request has been sent, then `feed()` every byte received. Bytes that
    come when no response is expected, or after the expected one ended, make the connection
    unfit for reuse; so does a response whose end only the connection closing can mark. After
    a 101 the connection carries another protocol: `feed` says where its bytes begin.
    """

    def __init__(self, max_head_bytes: int) -> None:
        self.max_head_bytes = max_head_bytes
        self.reusable = True
        # Whether the connection switched protocols (a 101): it carries HTTP no more.
        self.switched = False
        self._state = "idle"
        self._pending = b""
        self._remaining = 0
        self._bodiless = False

    @property
    def done(self) -> bool:
        """Whether no response is in progress (none expected, or the expected one has ended)."""
        return self._state in {"idle", "done"}

    def expect(self, *, head: bool) -> None:
        """A request was sent: its response comes next (`head`: it can have no body)."""
        self._state = "head"
        self._pending = b""
        self._bodiless = head

    def feed(self, data: bytes) -> int:
        """Follow `data`: how many of its bytes are HTTP's. All of them, unless the connection
        switched protocols (a 101) within them: the bytes after its head, and every byte after
        these, are the new protocol's. Raises `MalformedResponse` for a head or chunk framing
        that is wrong."""
        if self.switched:
            return 0
        carried = len(self._pending)
        if carried:  # a line that began in the last piece
            data, self._pending = self._pending + data, b""
        offset = 0
        while offset < len(data):
            if self._state in {"idle", "done"}:
                self.reusable = False  # bytes that belong to no exchange
                break
            if self._state == "until-close":
                break
            if self._state in {"body", "chunk-data"}:
                taken = min(self._remaining, len(data) - offset)
                self._remaining -= taken
                offset += taken
                if self._remaining == 0:
                    self._state = "done" if self._state == "body" else "chunk-size"
                continue
            offset = self._take_line(data, offset)
            if self.switched:
                return offset - carried
        return len(data) - carried

    def _take_line(self, data: bytes, offset: int) -> int:
        """Take the head, a chunk-size line or a trailer line at `offset`; where the rest starts."""
        head = self._state == "head"
        end = data.find(_HEAD_END if head else b"\r\n", offset)
        line = data[offset:] if end < 0 else data[offset:end]
        if head:
            self._check_head(line)
        if end < 0:
            self._pending = line
            if len(line) > _MAX_LINE_BYTES:
                raise MalformedResponse("a chunk-size or trailer line that never ends")
            return len(data)
        if head:
            self._start_body(line)
            return end + len(_HEAD_END)
        if self._state == "chunk-size":
            size = line.split(b";", 1)[0].strip(b" \t")
            if not _CHUNK_SIZE.fullmatch(size):
                raise MalformedResponse("an invalid chunk size")
            self._remaining = int(size, 16)
            # The data and its CRLF; a zero-size chunk is followed by the trailer.
            self._state = "chunk-data" if self._remaining else "trailer"
            self._remaining += 2 if self._remaining else 0
        elif not line:  # the empty line that ends the trailer
            self._state = "done"
        return end + 2

    def _check_head(self, head: bytes) -> None:
        if len(head) > self.max_head_bytes:
            # Said without quoting the head: it is the upstream's, and may be anything.
            raise MalformedResponse(
                f"the upstream's response headers are larger than the limit of "
                f"{self.max_head_bytes} bytes"
            )
        if head.count(b"\n") != head.count(b"\r\n"):
            raise MalformedResponse("a bare LF in the response head")

    def _start_body(self, head: bytes) -> None:
        found = _STATUS.match(head)
        if found is None:
            raise MalformedResponse("an invalid status line")
        status = int(found[1])
        if 100 <= status < 200 and status != 101:
            self._state = "head"  # an interim response: the final one follows
            return
        lengths: set[bytes] = set()
        chunked = False
        for name, value in _FRAMING_FIELD.findall(head):
            if name.lower() == b"content-length":
                lengths.add(value.strip())
            else:
                chunked = chunked or b"chunked" in value.lower()
        if len(lengths) > 1 or any(not value.isdigit() for value in lengths):
            raise MalformedResponse("an invalid or conflicting Content-Length")
        if chunked and lengths:
            # RFC 9112 section 6.3: a sign of response splitting; nginx refuses it too.
            raise MalformedResponse("both Content-Length and Transfer-Encoding")
        if status == 101:
            # The connection now carries another protocol (a WebSocket), and is never reused.
            self._state = "switched"
            self.switched = True
            self.reusable = False
        elif self._bodiless or status in {204, 304}:
            self._state = "done"
        elif chunked:
            self._state = "chunk-size"
        elif lengths:
            self._remaining = int(lengths.pop())
            self._state = "body" if self._remaining else "done"
        else:
            self._state = "until-close"
            self.reusable = False
