"""Where a response ends, told from its bytes however they are split across reads."""

import pytest

from {{ cookiecutter.package_name }}.errors import MalformedResponse
from {{ cookiecutter.package_name }}.framing import ResponseFraming

LIMIT = 65536


def follow(data: bytes, *, head: bool = False, piece: int = 0) -> ResponseFraming:
    """A framing fed `data` whole, or `piece` bytes at a time."""
    framing = ResponseFraming(LIMIT)
    framing.expect(head=head)
    for start in range(0, len(data), piece or len(data) or 1):
        framing.feed(data[start : start + (piece or len(data))])
    return framing


PIECES = [0, 1, 3, 7]


@pytest.mark.parametrize("piece", PIECES)
@pytest.mark.parametrize(
    ("response", "head"),
    [
        (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", False),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", False),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", True),
        (b"HTTP/1.1 204 No Content\r\n\r\n", False),
        (b"HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n", False),
        (b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", False),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"5;ext=1\r\nhello\r\n1\r\n!\r\n0\r\nX-Trailer: t\r\n\r\n",
            False,
        ),
    ],
    ids=["length", "empty", "head", "204", "304", "interim-100", "chunked-with-trailer"],
)
def test_a_clean_response_ends_and_leaves_the_connection_reusable(
    response: bytes, head: bool, piece: int
) -> None:
    framing = follow(response, head=head, piece=piece)
    assert framing.done
    assert framing.reusable


@pytest.mark.parametrize("piece", PIECES)
@pytest.mark.parametrize(
    "response",
    [
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the close",
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\n\r\n",
        b"HTTP/1.1 204 No Content\r\n\r\nbody",
    ],
    ids=["extra-bytes", "until-close", "switching", "body-on-204"],
)
def test_an_unclear_end_makes_the_connection_unfit_for_reuse(response: bytes, piece: int) -> None:
    assert not follow(response, piece=piece).reusable


def test_bytes_when_no_response_is_expected_make_it_unfit() -> None:
    framing = ResponseFraming(LIMIT)
    framing.feed(b"HTTP/1.1 200 OK\r\n")
    assert not framing.reusable


@pytest.mark.parametrize("piece", PIECES)
@pytest.mark.parametrize(
    ("response", "reason"),
    [
        (b"HTTP/1.1 200 OK\r\nX-A: 1\nSet-Cookie: a=1\r\n\r\n", "bare LF"),
        (b"HTTP/1.1 200 OK\nContent-Length: 0\n\n", "bare LF"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", "Content-Length"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: +2\r\n\r\nok", "Content-Length"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n", "both"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "chunk size"),
        (b"HTTP/1.1 OK\r\n\r\n", "status line"),
        (b"HTTP/1.1 200 OK\r\nX-Big: " + b"b" * LIMIT + b"\r\n\r\n", "65536 bytes"),
    ],
)
def test_a_malformed_or_oversized_head_is_refused(response: bytes, reason: str, piece: int) -> None:
    with pytest.raises(MalformedResponse, match=reason):
        follow(response, piece=piece if piece and len(response) < 1000 else 0)
