"""The circuit breaker and the retry budget, on a clock the tests turn by hand."""

import logging
from dataclasses import replace
from typing import Any

{{ cookiecutter.__httpx_import }}
import pytest
from starlette.requests import ClientDisconnect

from {{ cookiecutter.package_name }}.breaker import Breaker, BreakerPolicy, State
from {{ cookiecutter.package_name }}.errors import CallerTooSlow, CircuitOpen, MalformedResponse
from {{ cookiecutter.package_name }}.resilience import RetryBudget, is_failure, retry_after
from {{ cookiecutter.package_name }}.settings import Settings


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def breaker(clock: Clock | None = None, **settings: Any) -> Breaker:
    """A breaker with the service's defaults, but one trial and `settings`, on a clock turned
    by hand."""
    policy = replace(BreakerPolicy.of(Settings.model_construct()), trials=1)  # no environment
    return Breaker(replace(policy, **settings), clock or Clock())


def calls(breaker: Breaker, times: int, *, failed: bool | None) -> None:
    for _ in range(times):
        breaker.record(breaker.admit(), failed)


def test_a_blip_amid_steady_calls_never_opens_it() -> None:
    tested = breaker()
    calls(tested, 30, failed=False)
    calls(tested, 2, failed=True)
    calls(tested, 20, failed=False)
    assert tested.transitions[State.OPEN] == 0


def test_below_the_minimum_of_calls_even_failures_alone_never_open_it() -> None:
    tested = breaker()
    calls(tested, 19, failed=True)
    assert tested.transitions[State.OPEN] == 0
    calls(tested, 1, failed=True)
    assert tested.state is State.OPEN


def test_it_opens_once_the_share_of_failed_calls_reaches_the_ratio() -> None:
    tested = breaker()
    calls(tested, 10, failed=False)
    calls(tested, 9, failed=True)
    calls(tested, 1, failed=False)  # 9 of 20
    calls(tested, 1, failed=True)  # 10 of 21
    assert tested.transitions[State.OPEN] == 0
    calls(tested, 1, failed=True)  # 11 of 22: half
    assert tested.state is State.OPEN


def test_calls_older_than_the_window_no_longer_count() -> None:
    clock = Clock()
    tested = breaker(clock, min_calls=4, failure_ratio=0.6)
    calls(tested, 4, failed=False)
    clock.now += 10.5  # every success is older than the window now
    calls(tested, 3, failed=True)
    assert tested.transitions[State.OPEN] == 0  # three calls: under the minimum
    calls(tested, 1, failed=True)  # 4 of 4; with the old successes it would be 4 of 8
    assert tested.state is State.OPEN


def test_calls_that_say_nothing_of_the_upstream_are_not_counted() -> None:
    tested = breaker(min_calls=4)
    calls(tested, 100, failed=None)
    calls(tested, 3, failed=True)
    assert tested.transitions[State.OPEN] == 0
    calls(tested, 1, failed=True)
    assert tested.state is State.OPEN


def test_while_open_it_refuses_saying_when_to_come_back() -> None:
    clock = Clock()
    tested = breaker(clock, min_calls=1)
    calls(tested, 1, failed=True)
    clock.now += 2.5
    with pytest.raises(CircuitOpen) as refused:
        tested.admit()
    assert refused.value.retry_after == 8
    assert tested.refused == 1


def test_after_the_cooloff_trials_decide() -> None:
    clock = Clock()
    tested = breaker(clock, min_calls=1, trials=2)
    calls(tested, 1, failed=True)
    clock.now += 10
    first, second = tested.admit(), tested.admit()
    with pytest.raises(CircuitOpen):
        tested.admit()  # the two trials are under way
    tested.record(first, failed=False)
    tested.record(second, failed=False)
    assert tested.state is State.CLOSED
    assert dict(tested.transitions) == {State.OPEN: 1, State.HALF_OPEN: 1, State.CLOSED: 1}


def test_closed_again_it_judges_only_the_calls_made_since() -> None:
    clock = Clock()
    tested = breaker(clock, min_calls=4)
    calls(tested, 4, failed=True)
    clock.now += 10
    calls(tested, 1, failed=False)  # the trial: closed
    calls(tested, 3, failed=True)
    assert tested.state is State.CLOSED


def test_one_log_line_when_it_opens_and_one_when_it_closes(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    tested = breaker(clock, min_calls=4)
    with caplog.at_level(logging.INFO, logger=Breaker.__module__):
        calls(tested, 2, failed=False)
        calls(tested, 2, failed=True)
        for _ in range(5):
            with pytest.raises(CircuitOpen):
                tested.admit()
        clock.now += 10
        calls(tested, 1, failed=False)
    assert [record.getMessage() for record in caplog.records] == [
        "upstream circuit open: 2 of 4 calls failed in the last 10s; callers refused for 10s",
        "upstream circuit closed: its trial calls succeeded (1)",
    ]


def test_a_failed_trial_opens_it_again_and_a_cancelled_one_frees_its_place() -> None:
    clock = Clock()
    tested = breaker(clock, min_calls=1)
    calls(tested, 1, failed=True)
    clock.now += 10
    calls(tested, 1, failed=None)  # its caller left: no verdict
    calls(tested, 1, failed=True)
    assert tested.state is State.OPEN
    with pytest.raises(CircuitOpen):
        tested.admit()


def test_outcomes_of_calls_admitted_before_a_change_do_not_count() -> None:
    clock = Clock()
    tested = breaker(clock, min_calls=2)
    early = tested.admit()
    calls(tested, 2, failed=True)
    clock.now += 10
    calls(tested, 1, failed=False)  # closed again
    tested.record(early, failed=True)
    assert tested.window.calls == 0
    assert dict(tested.transitions) == {State.OPEN: 1, State.HALF_OPEN: 1, State.CLOSED: 1}


def test_switched_off_it_never_opens() -> None:
    tested = breaker(min_calls=1, enabled=False)
    calls(tested, 100, failed=True)
    assert tested.state is State.CLOSED


def caused_by(cause: Exception) -> httpx.TransportError:
    """A write error that began with `cause`, as streaming a caller's body upstream raises it."""
    error = httpx.WriteError("the body broke off")
    error.__cause__ = cause
    return error


@pytest.mark.parametrize(
    ("error", "counted"),
    [
        pytest.param(httpx.ConnectError("refused"), True, id="refused"),
        pytest.param(httpx.ConnectTimeout("no answer"), True, id="connect-timeout"),
        pytest.param(httpx.ReadTimeout("no answer"), True, id="read-timeout"),
        pytest.param(httpx.RemoteProtocolError("hung up"), True, id="dropped"),
        pytest.param(MalformedResponse("a bare LF"), True, id="malformed"),
        pytest.param(httpx.PoolTimeout("no free connection"), None, id="pool-full"),
        pytest.param(httpx.LocalProtocolError("cannot be sent"), None, id="caller-request"),
        pytest.param(caused_by(ClientDisconnect()), None, id="caller-left"),
        pytest.param(caused_by(CallerTooSlow("stalled")), None, id="caller-stalled"),
    ],
)
def test_only_failures_of_the_upstream_count_against_it(
    error: httpx.TransportError, counted: bool | None
) -> None:
    assert is_failure(error) is counted


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
