"""How long a training run will take, from the steps, epoch ends and validations timed so far."""

import collections
import statistics

LONG_RUN_S = 2 * 3600  # a run estimated beyond this on a machine without a GPU gets a hint
STEPS_BEFORE_ESTIMATE = 5  # timed steps (after compilation) before the estimate is announced
RECENT_STEPS = 50  # the step rate is the median of this many latest steps: a paused step does not skew it


class _Mean:
    """Running mean of timed occurrences of one kind of work, and how many are still to come."""

    def __init__(self, left):
        self.left, self.count, self.total = int(left), 0, 0.0

    def record(self, seconds):
        self.left, self.count, self.total = max(self.left - 1, 0), self.count + 1, self.total + seconds

    def remaining(self):
        """Mean × occurrences left; 0 when none is left, None when some are left and none was timed."""
        if not self.left:
            return 0.0
        return self.total / self.count * self.left if self.count else None


class RunClock:
    """Estimates a run's remaining wall time: its training steps, the work at every epoch end
    (checkpoint, held-out check, the next epoch's first batch) and its validations.

    The first step of each invocation traces and compiles the step function, so it is left out of
    the rate; the steps' estimate is the median time of the latest steps times the steps left, and
    each other kind of work adds its mean time so far times the occurrences left.
    """

    def __init__(self, total_steps, steps_done=0, epoch_ends=0, validations=0):
        self.total_steps = int(total_steps)
        self.steps_done = int(steps_done)
        self._timed_steps = 0
        self._recent = collections.deque(maxlen=RECENT_STEPS)
        self._compiled = False
        self._announced = False
        self.epoch_ends = _Mean(epoch_ends)
        self.validations = _Mean(validations)

    def record(self, seconds):
        """Adds one finished step that took `seconds` of wall time."""
        self.steps_done += 1
        if self._compiled:
            self._timed_steps += 1
            self._recent.append(seconds)
        self._compiled = True

    @property
    def ready(self):
        """Whether enough steps are timed for the estimate to be announced."""
        return self._timed_steps >= STEPS_BEFORE_ESTIMATE

    def announcement_due(self):
        """True once: when the estimate first becomes ready."""
        due = self.ready and not self._announced
        self._announced = self._announced or due
        return due

    @property
    def seconds_per_step(self):
        """Median wall seconds of the latest steps after compilation, or None before one is timed."""
        return statistics.median(self._recent) if self._recent else None

    def untimed(self):
        """Names of the kinds of work still to come that no occurrence has timed yet."""
        return [name for name, part in (("epoch ends", self.epoch_ends), ("validations", self.validations))
                if part.remaining() is None]

    def remaining_seconds(self):
        """Estimated wall seconds of the work left (untimed kinds count 0), or None before a step is timed."""
        rate = self.seconds_per_step
        if rate is None:
            return None
        others = (part.remaining() or 0.0 for part in (self.epoch_ends, self.validations))
        return rate * (self.total_steps - self.steps_done) + sum(others)


def format_duration(seconds):
    """'1 h 05 min', '12 min', '40 s'."""
    seconds = int(round(seconds))
    if seconds >= 3600:
        return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"
    if seconds >= 60:
        return f"{round(seconds / 60)} min"
    return f"{seconds} s"
