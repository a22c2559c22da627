"""A circuit breaker for the upstream: while it is failing, callers are told at once.

Without one, every caller waits the whole `UPSTREAM_TIMEOUT` of an upstream that has stopped
answering, the pool fills with those waits, and later callers wait for a connection too. The
breaker judges the upstream by the share of calls that failed (timeouts, connection failures,
malformed answers, and the statuses in `UPSTREAM_BREAKER_STATUSES`) over the last
`UPSTREAM_BREAKER_WINDOW` seconds. It opens when that share reaches
`UPSTREAM_BREAKER_FAILURE_RATIO`, and only once the window holds `UPSTREAM_BREAKER_MIN_CALLS`
calls: a couple of failures, however close together, are a blip and never an outage. Open, it
refuses every call with `CircuitOpen` (503 and `Retry-After`) for `UPSTREAM_BREAKER_COOLOFF`
seconds. Then it lets `UPSTREAM_BREAKER_TRIALS` calls through: if they all succeed it closes,
and one failure opens it again.

The defaults are Hystrix's: half of at least 20 calls in 10 seconds. Each caller's call counts
once, whatever its retries (`resilience.py` records it when it ends).

Written here rather than taken from PyPI: the circuit-breaker packages there are either not
asyncio-native or no longer maintained, and this is a few counters with a clock.
"""

import enum
import logging
import math
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass

from {{ cookiecutter.package_name }}.errors import CircuitOpen
from {{ cookiecutter.package_name }}.settings import Settings, status_codes

logger = logging.getLogger(__name__)
# The window moves a tenth of its length at a time, as Hystrix's rolling window does.
BUCKETS = 10


class State(enum.StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass(slots=True)
class _Bucket:
    start: float
    calls: int = 0
    failed: int = 0


class Window:
    """Calls and failed calls over the last `seconds`, counted in buckets of a tenth of that."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.span = seconds / BUCKETS
        self.buckets: deque[_Bucket] = deque()
        self.calls = 0
        self.failed = 0

    def add(self, now: float, failed: bool) -> None:
        self._forget(now)
        if not self.buckets or now >= self.buckets[-1].start + self.span:
            self.buckets.append(_Bucket(now))
        bucket = self.buckets[-1]
        bucket.calls += 1
        self.calls += 1
        if failed:
            bucket.failed += 1
            self.failed += 1

    def clear(self) -> None:
        self.buckets.clear()
        self.calls = self.failed = 0

    def _forget(self, now: float) -> None:
        """Drop the buckets that began more than `seconds` ago."""
        while self.buckets and self.buckets[0].start < now - self.seconds:
            bucket = self.buckets.popleft()
            self.calls -= bucket.calls
            self.failed -= bucket.failed


@dataclass(frozen=True, slots=True)
class BreakerPolicy:
    """When the breaker opens, for how long, and what closes it again."""

    failure_ratio: float
    min_calls: int
    window: float  # seconds
    cooloff: float  # seconds
    trials: int
    statuses: frozenset[int]  # the upstream's answers that count as failed calls
    enabled: bool = True  # False: it never opens

    @classmethod
    def of(cls, settings: Settings) -> "BreakerPolicy":
        return cls(
            settings.upstream_breaker_failure_ratio,
            settings.upstream_breaker_min_calls,
            settings.upstream_breaker_window,
            settings.upstream_breaker_cooloff,
            settings.upstream_breaker_trials,
            status_codes(settings.upstream_breaker_statuses),
            settings.upstream_breaker,
        )


class Breaker:
    """The breaker's state, and what it decided, counted."""

    def __init__(self, policy: BreakerPolicy, clock: Callable[[], float] = time.monotonic) -> None:
        self.policy = policy
        self.window = Window(policy.window)
        self.clock = clock
        self.state = State.CLOSED
        # Each change of state starts a new generation: a call's outcome counts only in its own.
        self.generation = 0
        self.opened_at = 0.0
        self.trials_started = 0
        self.trials_passed = 0
        self.refused = 0
        self.transitions: Counter[State] = Counter()

    def admit(self) -> int:
        """Let a call through, or raise `CircuitOpen`; the generation to `record` it under."""
        if self.state is State.CLOSED:
            return self.generation
        if self.state is State.OPEN:
            waited = self.clock() - self.opened_at
            if waited < self.policy.cooloff:
                self.refused += 1
                raise CircuitOpen(math.ceil(self.policy.cooloff - waited))
            self._enter(State.HALF_OPEN)
        if self.trials_started >= self.policy.trials:
            # The trials are under way: their outcome decides, soon.
            self.refused += 1
            raise CircuitOpen(1)
        self.trials_started += 1
        return self.generation

    def record(self, generation: int, failed: bool | None) -> None:
        """The outcome of a call `admit` let through: failed, succeeded, or neither (None: it
        ended for a reason that says nothing of the upstream, as when its caller left)."""
        if not self.policy.enabled or generation != self.generation:
            return  # off, or admitted before the last change of state: it no longer counts
        if self.state is State.CLOSED:
            if failed is None:
                return
            window = self.window
            window.add(self.clock(), failed)
            policy = self.policy
            if (
                failed
                and window.calls >= policy.min_calls
                and window.failed >= policy.failure_ratio * window.calls
            ):
                self._open(
                    f"{window.failed} of {window.calls} calls failed in the last "
                    f"{window.seconds:g}s"
                )
        elif failed is None:
            self.trials_started -= 1  # another call may take its place
        elif failed:
            self._open("again: a trial call failed")
        else:
            self.trials_passed += 1
            if self.trials_passed >= self.policy.trials:
                self._enter(State.CLOSED)
                logger.info(
                    "upstream circuit closed: its trial calls succeeded (%d)", self.policy.trials
                )

    def _open(self, why: str) -> None:
        self._enter(State.OPEN)
        self.opened_at = self.clock()
        cooloff = self.policy.cooloff
        logger.warning("upstream circuit open: %s; callers refused for %gs", why, cooloff)

    def _enter(self, state: State) -> None:
        self.state = state
        self.generation += 1
        self.trials_started = self.trials_passed = 0
        self.window.clear()  # a new state judges the calls made in it
        self.transitions[state] += 1
