"""Detectors about agentwatch's own view: lost events."""

from __future__ import annotations

from collections.abc import Iterable

from collector.events import Event, LossEvent
from detectors.base import Context, Detector, DetectorSpec, Finding, register


@register
class EventLoss(Detector):
    """Every `loss` event becomes an alert: a gap in what agentwatch saw is a gap in what it
    can vouch for (a flood may be there to hide something). Repeats fold as any alert
    does; a folded event_loss alert's `lost` is the sum of the losses it stands for, so
    the `lost` of all event_loss alerts adds up to every loss the kernel counted (from
    `min_lost` on)."""

    spec = DetectorSpec(
        id="event_loss",
        kinds=frozenset({"loss"}),
        title="Events Lost Between Kernel And Collector",
        description="the kernel could not deliver events (ring buffer or tables full); "
                    "what happened in that gap is unknown",
        severity="medium",
        action="alert",
        mitre=("T1562.006",),
        not_flagged=(
            "losses below `min_lost` per loss event: a knob for hosts that accept small gaps; the"
            " count still reaches `agentwatch status` and the metrics",
        ),
        output="{lost} events lost",
        params={"min_lost": 1},
        summed=("lost",),
    )

    def check(self, ctx: Context, ev: Event) -> Iterable[Finding]:
        if not isinstance(ev, LossEvent):
            return
        lost = sum(ev.lost.values())
        if lost >= ctx.params["min_lost"]:
            causes = ",".join(f"{k}:{v}" for k, v in sorted(ev.lost.items()))
            yield Finding(key="loss", fields={"lost": lost, "causes": causes,
                                              "total": sum(ev.total.values())})
