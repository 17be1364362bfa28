"""The request budget: token buckets per Zoom rate-limit category, on a fake clock."""

from __future__ import annotations

import threading

import pytest
import responses

from companion.zoom import HEAVY, LIGHT, MEDIUM, PLAN_RATES, RequestBudget

from .zoom_helpers import API, FakeClock, add_token, make_client


def monotonic() -> FakeClock:
    # Budgets run on a monotonic clock: small numbers keep float steps exact enough.
    return FakeClock(1000.0)


def budget_on(clock: FakeClock, **kwargs) -> RequestBudget:
    return RequestBudget(clock=clock, sleep=clock.sleep, **kwargs)


def sent_times(budget: RequestBudget, clock: FakeClock, category: str, count: int) -> list[float]:
    times = []
    for _ in range(count):
        budget.acquire(category)
        times.append(clock())
    return times


def busiest_second(times: list[float]) -> int:
    return max(sum(1 for t in times if start <= t < start + 1.0) for start in times)


def test_defaults_are_zooms_pro_plan():
    assert RequestBudget().rates == PLAN_RATES["pro"]
    assert PLAN_RATES["pro"][LIGHT] == 30 and PLAN_RATES["pro"][MEDIUM] == 20
    assert PLAN_RATES["pro"][HEAVY] == 10
    assert RequestBudget.for_plan("business").rates[LIGHT] == 80
    with pytest.raises(ValueError, match="unknown Zoom plan"):
        RequestBudget.for_plan("free-for-all")


def test_light_requests_are_paced_at_30_per_second():
    clock = monotonic()
    budget = budget_on(clock)
    start = clock()
    times = sent_times(budget, clock, LIGHT, 91)
    # the first is free, each later one waits its 1/30 s
    assert clock.sleeps == pytest.approx([1 / 30] * 90)
    assert times[-1] - start == pytest.approx(3.0)
    assert busiest_second(times) <= 31


def test_categories_have_their_own_buckets():
    clock = monotonic()
    budget = budget_on(clock)
    sent_times(budget, clock, HEAVY, 11)
    assert clock.sleeps == pytest.approx([0.1] * 10)
    clock.sleeps.clear()
    # heavy's queue does not hold back a light request
    budget.acquire(LIGHT)
    assert clock.sleeps == []


def test_an_idle_bucket_refills_only_to_its_burst():
    clock = monotonic()
    budget = budget_on(clock, rates={MEDIUM: 20.0}, burst=5)
    times = sent_times(budget, clock, MEDIUM, 5)
    assert clock.sleeps == [] and len(set(times)) == 1
    clock.advance(60)
    sent_times(budget, clock, MEDIUM, 7)
    assert clock.sleeps == pytest.approx([0.05, 0.05])


def test_concurrent_threads_each_reserve_their_own_slot():
    clock = monotonic()
    waits: list[float] = []
    lock = threading.Lock()

    def record(seconds: float) -> None:
        with lock:
            waits.append(seconds)

    # The clock stands still, so reservation k must wait exactly k/rate.
    budget = RequestBudget({LIGHT: 10.0}, clock=clock, sleep=record)
    threads = [threading.Thread(target=budget.acquire, args=(LIGHT,)) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(waits) == pytest.approx([k / 10 for k in range(1, 20)])


def test_a_clock_stepping_back_does_not_mint_tokens():
    clock = monotonic()
    budget = budget_on(clock, rates={LIGHT: 1.0})
    budget.acquire(LIGHT)
    clock.advance(-100)
    assert budget.reserve(LIGHT) == pytest.approx(1.0)


def test_bad_settings_and_categories_are_refused():
    with pytest.raises(ValueError, match="positive"):
        RequestBudget({LIGHT: 0})
    with pytest.raises(ValueError, match="at least 1"):
        RequestBudget({LIGHT: 5}, burst=0.5)
    with pytest.raises(ValueError, match="unknown rate-limit category"):
        RequestBudget().acquire("enormous")


def test_the_client_takes_from_the_operations_category_before_each_request():
    clock = monotonic()
    budget = budget_on(clock)
    taken: list[str] = []
    real_acquire = budget.acquire

    def spy(category: str) -> float:
        taken.append(category)
        return real_acquire(category)

    budget.acquire = spy  # type: ignore[method-assign]
    client, _ = make_client(clock, budget=budget)
    with responses.RequestsMock() as rsps:
        add_token(rsps)
        rsps.post(f"{API}/users/me/meetings", json={"id": 1}, status=201)
        rsps.get(f"{API}/meetings/1", json={"id": 1})
        rsps.get(f"{API}/meetings/1", json={"id": 1})
        rsps.get(f"{API}/meetings/1/registrants", json={"registrants": []})
        client.create_meeting("me", {"topic": "Art"})
        client.get_meeting(1)
        client.get_meeting(1)
        list(client.iter_registrants(1))
    # the token endpoint is not an API category; list endpoints are medium
    assert taken == [MEDIUM, LIGHT, LIGHT, MEDIUM]
    # two light requests back to back: the second waited its 1/30 s on the fake clock
    # and the list call, 1/30 s after the create, waited the rest of medium's 1/20 s
    assert clock.sleeps == pytest.approx([1 / 30, 1 / 60], abs=1e-6)
