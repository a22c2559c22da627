"""The circuit breaker and the retry budget, on a clock the tests turn by hand."""

import logging

import pytest

from {{ cookiecutter.package_name }}.breaker import Breaker, State
from {{ cookiecutter.package_name }}.errors import CircuitOpen
from {{ cookiecutter.package_name }}.resilience import RetryBudget, retry_after


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def failing(breaker: Breaker, times: int) -> None:
    for _ in range(times):
        breaker.record(breaker.admit(), failed=True)


def test_it_opens_after_failures_in_a_row_only() -> None:
    breaker = Breaker(failures=3, cooloff=10, trials=1, clock=Clock())
    failing(breaker, 2)
    breaker.record(breaker.admit(), failed=False)  # a success starts the count again
    failing(breaker, 2)
    assert breaker.transitions[State.OPEN] == 0
    failing(breaker, 1)
    assert breaker.transitions[State.OPEN] == 1


def test_while_open_it_refuses_saying_when_to_come_back() -> None:
    clock = Clock()
    breaker = Breaker(failures=1, cooloff=10, trials=1, clock=clock)
    failing(breaker, 1)
    clock.now += 2.5
    with pytest.raises(CircuitOpen) as refused:
        breaker.admit()
    assert refused.value.retry_after == 8
    assert breaker.refused == 1


def test_after_the_cooloff_trials_decide() -> None:
    clock = Clock()
    breaker = Breaker(failures=1, cooloff=10, trials=2, clock=clock)
    failing(breaker, 1)
    clock.now += 10
    first, second = breaker.admit(), breaker.admit()
    with pytest.raises(CircuitOpen):
        breaker.admit()  # the two trials are under way
    breaker.record(first, failed=False)
    breaker.record(second, failed=False)
    assert breaker.state is State.CLOSED
    assert dict(breaker.transitions) == {State.OPEN: 1, State.HALF_OPEN: 1, State.CLOSED: 1}


def test_one_log_line_when_it_opens_and_one_when_it_closes(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    breaker = Breaker(failures=2, cooloff=10, trials=1, clock=clock)
    with caplog.at_level(logging.INFO, logger=Breaker.__module__):
        failing(breaker, 2)
        for _ in range(5):
            with pytest.raises(CircuitOpen):
                breaker.admit()
        clock.now += 10
        breaker.record(breaker.admit(), failed=False)
    assert [record.getMessage() for record in caplog.records] == [
        "upstream circuit open after 2 failed calls in a row; callers refused for 10s",
        "upstream circuit closed: its trial calls succeeded (1)",
    ]


def test_a_failed_trial_opens_it_again_and_a_cancelled_one_frees_its_place() -> None:
    clock = Clock()
    breaker = Breaker(failures=1, cooloff=10, trials=1, clock=clock)
    failing(breaker, 1)
    clock.now += 10
    breaker.record(breaker.admit(), failed=None)  # its caller left: no verdict
    breaker.record(breaker.admit(), failed=True)
    assert breaker.state is State.OPEN
    with pytest.raises(CircuitOpen):
        breaker.admit()


def test_outcomes_of_calls_admitted_before_a_change_do_not_count() -> None:
    breaker = Breaker(failures=2, cooloff=10, trials=1, clock=Clock())
    early = breaker.admit()
    failing(breaker, 2)
    breaker.record(early, failed=True)
    assert breaker.transitions[State.OPEN] == 1


def test_zero_failures_never_opens() -> None:
    breaker = Breaker(failures=0, cooloff=10, trials=1, clock=Clock())
    failing(breaker, 100)
    assert breaker.state is State.CLOSED


def test_the_budget_allows_a_share_of_calls_plus_a_reserve() -> None:
    budget = RetryBudget(0.2, reserve=10)
    allowed = 0
    for _ in range(100):
        budget.deposit()
        allowed += budget.withdraw()
    # The reserve, and a fifth of the calls once it is spent (one deposit found it full).
    assert 0.2 * 100 + 10 - 2 <= allowed <= 0.2 * 100 + 10


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (b"7", 7.0),
        (b" 0 ", 0.0),
        (b"soon", None),
        (b"-1", None),
        (b"Wed, 21 Oct 2015 07:28:00 GMT", 0.0),  # in the past: at once
    ],
)
def test_retry_after_is_read_as_seconds_or_a_date(value: bytes, seconds: float | None) -> None:
    assert retry_after([(b"Retry-After", value)]) == seconds
