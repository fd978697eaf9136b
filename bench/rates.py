"""The zero-loss rate search of bench/throughput.py, apart from any tracer (unit-tested).

Offer a rate, double it while every event arrives, stop at the first step with a loss (or
where the generator itself cannot reach the offered rate), then bisect between the last
good and the first bad rate a few times. The answer is the highest rate measured with
zero loss, never an interpolation.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

# A step whose generator reached less than this share of the offered rate is saturated:
# the offered rate was not really offered, so the search stops there.
REACHED = 0.95


@dataclass
class Step:
    offered: float        # opens/s asked of the generator
    generated: int        # opens the generator made
    seconds: float        # the generator's own elapsed time
    delivered: int        # of those, events the tracer delivered
    lost: int             # losses the tracer reported itself
    cpu_s: float = 0.0    # the tracer's CPU time over the step
    rss: int = 0          # the tracer's resident bytes at the end of the step
    wall_s: float = 0.0   # the load plus the tracer's catching up (0: unknown)
    causes: dict[str, int] = field(default_factory=dict)  # losses by cause, when known

    @property
    def achieved(self) -> float:
        return self.generated / self.seconds if self.seconds > 0 else 0.0

    @property
    def zero_loss(self) -> bool:
        return self.lost == 0 and self.delivered >= self.generated

    @property
    def saturated(self) -> bool:
        return self.achieved < REACHED * self.offered

    @property
    def cpu_share(self) -> float:
        """The tracer's CPU use over the step, in cores (1.0: one core busy): its CPU time
        over the load and its catching up after it, divided by that time."""
        span = max(self.wall_s, self.seconds)
        return self.cpu_s / span if span > 0 else 0.0


@dataclass
class Search:
    steps: list[Step]
    best: Step | None          # the highest achieved rate with zero loss
    limited_by: str            # "loss", "generator", "ceiling"


def zero_loss_search(measure: Callable[[float], Step], start: float, ceiling: float,
                     bisections: int = 1) -> Search:
    """Double from `start` up to `ceiling` while steps are lossless; then bisect."""
    steps: list[Step] = []
    good: Step | None = None
    bad: Step | None = None
    rate = start
    limited_by = "ceiling"
    while rate <= ceiling:
        step = measure(rate)
        steps.append(step)
        if not step.zero_loss:
            bad, limited_by = step, "loss"
            break
        good = step
        if step.saturated:
            limited_by = "generator"
            break
        rate *= 2
    if bad is not None:
        lo = good.offered if good is not None else 0.0
        hi = bad.offered
        for _ in range(bisections):
            mid = (lo + hi) / 2
            if mid < start / 2:
                break
            step = measure(mid)
            steps.append(step)
            if step.zero_loss:
                lo = mid
                if good is None or step.achieved > good.achieved:
                    good = step
            else:
                hi = mid
    return Search(steps=steps, best=good, limited_by=limited_by)
