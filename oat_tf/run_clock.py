"""How long a training run will take, from the steps timed so far."""

LONG_RUN_S = 2 * 3600  # a run estimated beyond this on a machine without a GPU gets a hint
STEPS_BEFORE_ESTIMATE = 5  # timed steps (after compilation) before the estimate is announced


class RunClock:
    """Estimates a run's remaining wall time from its timed training steps.

    The first step of each invocation traces and compiles the step function, so it is left out of
    the rate; the estimate is the mean time of the later steps times the steps left.
    """

    def __init__(self, total_steps, steps_done=0):
        self.total_steps = int(total_steps)
        self.steps_done = int(steps_done)
        self._timed_steps = 0
        self._timed_seconds = 0.0
        self._compiled = False

    def record(self, seconds):
        """Adds one finished step that took `seconds` of wall time."""
        self.steps_done += 1
        if self._compiled:
            self._timed_steps += 1
            self._timed_seconds += seconds
        self._compiled = True

    @property
    def ready(self):
        """Whether enough steps are timed for the estimate to be announced."""
        return self._timed_steps >= STEPS_BEFORE_ESTIMATE

    @property
    def seconds_per_step(self):
        """Mean wall seconds of a step after compilation, or None before one is timed."""
        return self._timed_seconds / self._timed_steps if self._timed_steps else None

    def remaining_seconds(self):
        """Estimated wall seconds of the steps left, or None before one is timed."""
        rate = self.seconds_per_step
        return None if rate is None else rate * (self.total_steps - self.steps_done)


def format_duration(seconds):
    """'1 h 05 min', '12 min', '40 s'."""
    seconds = int(round(seconds))
    if seconds >= 3600:
        return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"
    if seconds >= 60:
        return f"{round(seconds / 60)} min"
    return f"{seconds} s"
