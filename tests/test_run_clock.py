"""The run's time estimate."""

import pytest

from oat_tf.run_clock import STEPS_BEFORE_ESTIMATE, RunClock, format_duration


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


@pytest.mark.parametrize("seconds, text", [(40, "40 s"), (59.6, "1 min"), (750, "12 min"), (3900, "1 h 05 min"),
                                           (2 * 86400, "48 h 00 min")])
def test_format_duration(seconds, text):
    assert format_duration(seconds) == text
