"""Retries that are safe and rationed, behind the circuit breaker, around every upstream call.

`ResilientPool` wraps the shared pool, so the relay and endpoints of your own (through the
shared `httpx.AsyncClient`) get the same policy. A failed call is sent again only if:

- it can be sent again: nothing reached the upstream (the connection failed), or its method is
  idempotent (GET, HEAD, OPTIONS, PUT, DELETE, TRACE), or it is a POST or PATCH that carries an
  `Idempotency-Key`; and its body, if any, is held whole (a streamed body is gone once sent);
- the attempt failed on the connection, or timed out, or the upstream answered a status in
  `UPSTREAM_RETRY_STATUSES` (none by default) with no `Retry-After` longer than
  `UPSTREAM_RETRY_AFTER_MAX`. Never a `PoolTimeout`: that is this service's own limit;
- it was retried fewer than `UPSTREAM_RETRIES` times, the wait before the next attempt ends
  within the call's deadline (`UPSTREAM_TIMEOUT` from its start), the circuit is closed, and
  the retry budget has a retry to spare.

No byte has reached the caller then: the pool answers at the response's headers. The wait is
jittered exponential backoff (up to `UPSTREAM_RETRY_BACKOFF` seconds before the first retry,
twice that before the second, at most ten times), or the upstream's `Retry-After` if longer.

The budget, after Finagle's and Envoy's: each call adds `UPSTREAM_RETRY_BUDGET` (0.2) of a retry
to a reserve that holds at most `RETRY_RESERVE`, and each retry takes one. So an upstream that
fails every call gets at most 1.2 times the calls it would get without retries, plus the
reserve, rather than three times as many.

Written here rather than taken from httpx-retries, which wraps an httpx transport that the
relay does not go through, and has no budget, breaker or `Idempotency-Key` rule.
"""

import asyncio
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime

{{ cookiecutter.__httpx_import }}
from starlette.requests import ClientDisconnect

from {{ cookiecutter.package_name }}.breaker import Breaker, State
from {{ cookiecutter.package_name }}.errors import CallerTooSlow, MalformedResponse, cause
from {{ cookiecutter.package_name }}.headers import RawHeaders, value_in_any_case
from {{ cookiecutter.package_name }}.pool import Pool, UpstreamRequest, UpstreamResponse, final
from {{ cookiecutter.package_name }}.settings import Settings, status_codes

RETRY_RESERVE = 10.0
_IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})
_KEYED = frozenset({"POST", "PATCH"})
# Failures of an attempt that may pass: the first two before anything was sent.
_NOTHING_SENT = (httpx.ConnectError, httpx.ConnectTimeout)
_TRANSIENT = (httpx.NetworkError, httpx.RemoteProtocolError, httpx.TimeoutException)
# A response no parser reads the same way does not get better by asking again.
_LASTING = (httpx.PoolTimeout, MalformedResponse)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """The settings that decide whether, and when, a failed call is sent again."""

    retries: int
    statuses: frozenset[int]
    backoff: float
    retry_after_max: float
    deadline: float  # seconds from the call's start

    @classmethod
    def of(cls, settings: Settings) -> "RetryPolicy":
        return cls(
            settings.upstream_retries,
            status_codes(settings.upstream_retry_statuses),
            settings.upstream_retry_backoff,
            settings.upstream_retry_after_max,
            settings.upstream_timeout,
        )


# Why a retry the policy allowed was not made: each one counted, from zero, in the metrics.
DENIED_REASONS = ("budget", "circuit", "deadline", "retry_after")


@dataclass(slots=True)
class Tally:
    """What the policy did, counted."""

    retries: Counter[str] = field(default_factory=Counter)  # by what the failed attempt met
    denied: Counter[str] = field(default_factory=Counter)  # retries not made: budget, deadline...
    cut_off: Counter[str] = field(default_factory=Counter)  # callers' bodies: pause, deadline


class RetryBudget:
    """Retries as a share of calls, with a reserve for when calls are few."""

    def __init__(self, ratio: float, reserve: float = RETRY_RESERVE) -> None:
        self.ratio = ratio
        self.reserve = reserve
        self.balance = reserve

    def deposit(self) -> None:
        self.balance = min(self.reserve, self.balance + self.ratio)

    def withdraw(self) -> bool:
        if self.balance < 1:
            return False
        self.balance -= 1
        return True


def is_failure(exc: httpx.TransportError) -> bool | None:
    """True when a failed call counts against the upstream, for the breaker: it got no answer
    (the connection failed or dropped, or time ran out), or a malformed one. None when the
    failure began on this side, which says nothing of the upstream: the caller's body stalled
    or the caller left, no pooled connection was free, or the request could not be sent."""
    if cause(exc, CallerTooSlow) or cause(exc, ClientDisconnect):
        return None
    if isinstance(exc, _TRANSIENT) and not isinstance(exc, httpx.PoolTimeout):
        return True
    return None


def can_replay(request: UpstreamRequest, nothing_sent: bool) -> bool:
    """Whether the request may reach the upstream twice, and can be sent as it was. A handshake
    (a protocol switch) only if it never reached the upstream: the session it opens is not."""
    if request.upgrade:
        return nothing_sent
    if request.body is not None and not isinstance(request.body, bytes):
        return False
    if nothing_sent or request.method in _IDEMPOTENT:
        return True
    return (
        request.method in _KEYED
        and value_in_any_case(request.headers, b"idempotency-key") is not None
    )


def retry_after(headers: RawHeaders) -> float | None:
    """The seconds a `Retry-After` header asks for (a number or an HTTP date), if it is valid."""
    value = value_in_any_case(headers, b"retry-after")
    if value is None:
        return None
    if value.strip().isdigit():
        return float(value)
    try:
        return max(0.0, parsedate_to_datetime(value.decode("latin-1")).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


class ResilientPool:
    """A pool whose calls are retried by `RetryPolicy`, within a `RetryBudget`, and refused
    while the `Breaker` is open."""

    def __init__(self, pool: Pool, settings: Settings, breaker: Breaker, tally: Tally) -> None:
        self.pool = pool
        self.policy = RetryPolicy.of(settings)
        self.budget = RetryBudget(settings.upstream_retry_budget)
        self.breaker = breaker
        self.tally = tally

    async def send(self, request: UpstreamRequest) -> UpstreamResponse:
        """One caller's call: admitted by the breaker, sent again where the policy allows, and
        recorded by the breaker once when it ends, whatever its attempts."""
        generation = self.breaker.admit()
        self.budget.deposit()
        failed: bool | None = None  # unknown until the call ends: cancelled, it stays so
        try:
            response = await final(request, await self._attempts(request))
            failed = response.status in self.breaker.policy.statuses
            return response
        except httpx.TransportError as exc:
            failed = is_failure(exc)
            raise
        finally:
            self.breaker.record(generation, failed)

    async def _attempts(self, request: UpstreamRequest) -> UpstreamResponse:
        """The response of the last attempt the policy allowed; or the last attempt's failure."""
        loop = asyncio.get_running_loop()
        deadline = request.deadline or loop.time() + self.policy.deadline
        retries = 0
        while True:
            try:
                response = await self._attempt(request, retries > 0, deadline)
            except httpx.TransportError as exc:
                if not self._may_retry(request, exc, retries):
                    raise
                pause = self._pause(None, retries, deadline - loop.time())
                if pause is None:
                    raise
                reason = type(exc).__name__
            else:
                status = response.status
                if status not in self.policy.statuses or not self._may_retry(
                    request, None, retries
                ):
                    return response
                pause = self._pause(response.headers, retries, deadline - loop.time())
                if pause is None:
                    return response
                await response.aclose()
                reason = str(status)
            retries += 1
            self.tally.retries[reason] += 1
            await asyncio.sleep(pause)

    async def _attempt(
        self, request: UpstreamRequest, retry: bool, deadline: float
    ) -> UpstreamResponse:
        """One attempt; a held exchange's, or a retry's, within the call's deadline."""
        if request.deadline is None and not retry:
            return await self.pool.send(request)
        try:
            async with asyncio.timeout_at(deadline):
                return await self.pool.send(request)
        except TimeoutError:
            raise httpx.ReadTimeout("the upstream did not answer within the deadline") from None

    def _may_retry(
        self, request: UpstreamRequest, exc: httpx.TransportError | None, retries: int
    ) -> bool:
        """Whether the policy lets this call, failed this way, be sent again at all."""
        if retries >= self.policy.retries:
            return False
        if exc is not None and (not isinstance(exc, _TRANSIENT) or isinstance(exc, _LASTING)):
            return False
        return can_replay(request, isinstance(exc, _NOTHING_SENT))

    def _pause(self, headers: RawHeaders | None, retries: int, left: float) -> float | None:
        """Seconds to wait before the retry; None, counted with the reason, if it cannot be
        made: `left` is what remains of the call's deadline."""
        policy = self.policy
        pause = random.uniform(0, policy.backoff * min(2**retries, 10))
        asked = retry_after(headers) if headers is not None else None
        if asked is not None and asked > policy.retry_after_max:
            denied = "retry_after"
        elif (pause := max(pause, asked or 0.0)) >= left:
            denied = "deadline"
        elif self.breaker.state is not State.CLOSED:
            denied = "circuit"
        elif not self.budget.withdraw():
            denied = "budget"
        else:
            return pause
        self.tally.denied[denied] += 1
        return None

    async def aclose(self) -> None:
        await self.pool.aclose()
