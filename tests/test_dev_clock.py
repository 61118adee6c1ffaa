"""VirtualClock: ordered callbacks, cancellation, deadlines, snapshot."""

import pytest

from devices.clock import ClockError, ClockState, VirtualClock


def test_callbacks_fire_in_time_order_with_now_at_their_deadline():
    clock = VirtualClock()
    seen = []
    clock.schedule(300, lambda: seen.append(("c", clock.now_ns)))
    clock.schedule(100, lambda: seen.append(("a", clock.now_ns)))
    clock.schedule(100, lambda: seen.append(("b", clock.now_ns)))  # tie: scheduling order
    assert clock.advance_to(250) == 2
    assert seen == [("a", 100), ("b", 100)]
    assert clock.now_ns == 250
    clock.advance_to(300)
    assert seen[-1] == ("c", 300)


def test_callback_may_schedule_more_within_the_same_advance():
    clock = VirtualClock()
    ticks = []

    def tick():
        ticks.append(clock.now_ns)
        if len(ticks) < 5:
            clock.schedule(clock.now_ns + 10, tick)

    clock.schedule(10, tick)
    clock.advance_to(1000)
    assert ticks == [10, 20, 30, 40, 50]


def test_cancel_and_next_deadline():
    clock = VirtualClock()
    h1 = clock.schedule(50, lambda: pytest.fail("cancelled"))
    clock.schedule(80, lambda: None)
    assert clock.next_deadline() == 50
    clock.cancel(h1)
    clock.cancel(h1)
    clock.cancel(None)
    assert clock.next_deadline() == 80
    clock.advance_to(100)
    assert clock.next_deadline() is None


def test_time_never_runs_backwards():
    clock = VirtualClock(start_ns=10)
    with pytest.raises(ClockError):
        clock.advance_to(5)


def test_restore_sets_time_and_drops_timers():
    clock = VirtualClock()
    clock.schedule(10, lambda: pytest.fail("dropped"))
    state = ClockState.from_dict(ClockState(now_ns=5_000).to_dict())
    clock.restore(state)
    assert clock.now_ns == 5_000 and clock.next_deadline() is None
    assert clock.save() == ClockState(now_ns=5_000)
