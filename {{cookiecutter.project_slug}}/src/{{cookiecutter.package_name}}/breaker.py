"""A circuit breaker for the upstream: while it is failing, callers are told at once.

Without one, every caller waits the whole `UPSTREAM_TIMEOUT` of an upstream that has stopped
answering, the pool fills with those waits, and later callers wait for a connection too. The
breaker counts upstream calls that fail in a row (timeouts, connection failures, and the statuses
in `UPSTREAM_BREAKER_STATUSES`). After `UPSTREAM_BREAKER_FAILURES` of them it opens: for
`UPSTREAM_BREAKER_COOLOFF` seconds every call is refused with `CircuitOpen` (503 and
`Retry-After`). Then it lets `UPSTREAM_BREAKER_TRIALS` calls through: if they all succeed it
closes, and one failure opens it again.

Written here rather than taken from PyPI: the circuit-breaker packages there are either not
asyncio-native or no longer maintained, and this is a few counters with a clock.
"""

import enum
import logging
import math
import time
from collections import Counter
from collections.abc import Callable

from {{ cookiecutter.package_name }}.errors import CircuitOpen

logger = logging.getLogger(__name__)


class State(enum.StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class Breaker:
    """The breaker's state, and what it decided, counted."""

    def __init__(
        self,
        failures: int,
        cooloff: float,
        trials: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.failures = failures  # 0: never opens
        self.cooloff = cooloff
        self.trials = trials
        self.clock = clock
        self.state = State.CLOSED
        # Each change of state starts a new generation: a call's outcome counts only in its own.
        self.generation = 0
        self.failed_in_a_row = 0
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
            if waited < self.cooloff:
                self.refused += 1
                raise CircuitOpen(math.ceil(self.cooloff - waited))
            self._enter(State.HALF_OPEN)
        if self.trials_started >= self.trials:
            # The trials are under way: their outcome decides, soon.
            self.refused += 1
            raise CircuitOpen(1)
        self.trials_started += 1
        return self.generation

    def record(self, generation: int, failed: bool | None) -> None:
        """The outcome of a call `admit` let through: failed, succeeded, or neither (None: it
        was cancelled before it could tell, as when its caller left)."""
        if generation != self.generation:
            return  # admitted before the last change of state: it no longer counts
        if self.state is State.CLOSED:
            if not failed:
                self.failed_in_a_row = 0
                return
            self.failed_in_a_row += 1
            if self.failures and self.failed_in_a_row >= self.failures:
                self._open(f"after {self.failed_in_a_row} failed calls in a row")
        elif failed is None:
            self.trials_started -= 1  # another call may take its place
        elif failed:
            self._open("again: a trial call failed")
        else:
            self.trials_passed += 1
            if self.trials_passed >= self.trials:
                self._enter(State.CLOSED)
                logger.info("upstream circuit closed: its trial calls succeeded (%d)", self.trials)

    def _open(self, why: str) -> None:
        self._enter(State.OPEN)
        self.opened_at = self.clock()
        logger.warning("upstream circuit open %s; callers refused for %gs", why, self.cooloff)

    def _enter(self, state: State) -> None:
        self.state = state
        self.generation += 1
        self.failed_in_a_row = self.trials_started = self.trials_passed = 0
        self.transitions[state] += 1
