"""The run's time estimate."""

import pytest

from oat_tf.run_clock import RECENT_STEPS, STEPS_BEFORE_ESTIMATE, RunClock, format_duration


def test_estimate_leaves_out_the_compiling_step_and_counts_resumed_steps():
    clock = RunClock(total_steps=100, steps_done=40)  # a resumed run: 60 steps left
    assert clock.remaining_seconds() is None and not clock.ready
    clock.record(30.0)  # traces and compiles the step
    assert clock.remaining_seconds() is None
    for seconds in [1.0, 3.0] * 3:
        clock.record(seconds)
    assert clock.seconds_per_step == pytest.approx(2.0)
    assert clock.remaining_seconds() == pytest.approx(2.0 * (100 - 47))
    assert clock.ready == (6 >= STEPS_BEFORE_ESTIMATE)
    assert [clock.announcement_due() for _ in range(3)] == [True, False, False]  # announced once


def test_epoch_ends_and_validations_join_the_estimate_once_timed():
    clock = RunClock(total_steps=100, epoch_ends=4, validations=2)
    for seconds in [30.0] + [2.0] * 10:
        clock.record(seconds)
    assert clock.untimed() == ["epoch ends", "validations"]
    assert clock.remaining_seconds() == pytest.approx(2.0 * 89)  # untimed work counts nothing yet
    clock.epoch_ends.record(5.0)
    clock.epoch_ends.record(7.0)
    assert clock.untimed() == ["validations"]
    assert clock.remaining_seconds() == pytest.approx(2.0 * 89 + 6.0 * 2)
    clock.validations.record(40.0)
    assert clock.untimed() == []
    assert clock.remaining_seconds() == pytest.approx(2.0 * 89 + 6.0 * 2 + 40.0)
    clock.validations.record(20.0)  # the last one: nothing of this kind is left
    assert clock.remaining_seconds() == pytest.approx(2.0 * 89 + 6.0 * 2)


def test_a_paused_step_does_not_skew_the_step_rate():
    clock = RunClock(total_steps=1000)
    for seconds in [30.0] + [2.0] * 20 + [2820.0] + [2.0] * 20:  # a step paused for 47 minutes (SIGSTOP, Ctrl-Z)
        clock.record(seconds)
    assert clock.seconds_per_step == pytest.approx(2.0)
    for seconds in [4.0] * RECENT_STEPS:  # the machine got slower: the rate follows the latest steps
        clock.record(seconds)
    assert clock.seconds_per_step == pytest.approx(4.0)


@pytest.mark.parametrize("seconds, text", [(40, "40 s"), (59.6, "1 min"), (750, "12 min"), (3900, "1 h 05 min"),
                                           (2 * 86400, "48 h 00 min")])
def test_format_duration(seconds, text):
    assert format_duration(seconds) == text
