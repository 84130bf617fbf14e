"""LayerAllocator: one subscriber's simulcast layers, chosen to fit its preference and REMB."""

from __future__ import annotations

import asyncio
import logging

from ..clock import monotonic_ms
from .consumer import SimulcastConsumer, preferred_layer

log = logging.getLogger(__name__)

TICK_MS = 500  # how often layers are re-chosen (plus at once on a preference change)
REMB_TTL_MS = 5000  # a REMB source silent this long no longer counts
CONGESTED_RATIO = 0.75  # estimate below this share of what we send: congestion...
STALLED_MS = 2000  # ...once the estimate has not grown for this long (a ceiling, not a ramp)
HEADROOM_RATIO = 1.3  # estimate above this share of what we send: room to step up
BACKOFF_MIN_MS = 2000  # after a downgrade, no step up for this long, doubled per failed try
BACKOFF_MAX_MS = 30000
FAILED_UP_MS = 5000  # a downgrade this soon after a step up doubles the backoff
UP_GRACE_MS = 10000  # after a step up, only a falling estimate is congestion (it ramps up)
EAGER_MS = 5000  # after the subscriber asks for more, go up at once (as soon as it sends)


class LayerAllocator:
    """Chooses the layer of every ``SimulcastConsumer`` of one subscribe transport.

    Each tick, per Consumer: the *desired* layer is the highest sending layer within its
    subscriber's ``Preference`` (``preferred_layer``). Without a bandwidth estimate, the
    target is the desired layer. With one, the estimate is the sum of the latest REMB
    (draft-alvestrand-rmcat-remb) of each source (a browser sends one for the connection,
    aiortc one per track), and the rate is what the current layers measure at the Producer:

    * congested (estimate < ``CONGESTED_RATIO`` x rate, and the estimate fell just now or has
      not grown for ``STALLED_MS``, ``UP_GRACE_MS`` after a step up, while an estimator
      ramps): layers are re-chosen to fit the estimate, top-down per track (each takes the
      highest layer that fits what is left once the others' lowest layers are set aside), and
      step-ups are barred for a backoff (doubled when the last step up failed so);
    * a Consumer whose subscriber asked for more within ``EAGER_MS`` goes up to its desired
      layer at once (backoff over);
    * headroom (estimate >= ``HEADROOM_RATIO`` x rate, backoff over): a Consumer below its
      desired layer goes up one layer per tick. Without probing (no padding is sent), a REMB
      estimator cannot rise far above what it receives (libwebrtc and aiortc clamp it at
      1.5x), so going up is a trial;
    * otherwise layers stay, except downward to the desired layer.

    The highest layer each Consumer may want (its desired layer ignoring what sends now) goes
    to its Producer for dynacast (``SimulcastProducer.set_wanted``).
    """

    def __init__(self) -> None:
        self.consumers: list[SimulcastConsumer] = []
        self._remb: dict[tuple[int, ...], tuple[float, int]] = {}  # SSRCs -> (ms, bps)
        self._estimate: int | None = None
        self._last_increase_ms = 0.0
        self._last_decrease_ms = -1e12
        self._last_down_ms = -1e12
        self._last_up_ms = -1e12
        self._backoff_ms = BACKOFF_MIN_MS
        self._timer: asyncio.TimerHandle | None = None
        self.closed = False
        self.downgrades = 0

    def add(self, consumer: SimulcastConsumer) -> None:
        self.consumers.append(consumer)
        consumer.add_close_listener(self._remove)
        if self._timer is None and not self.closed:
            self._schedule()

    def _remove(self, consumer: object) -> None:
        if consumer in self.consumers:
            self.consumers.remove(consumer)  # type: ignore[arg-type]

    def on_remb(self, bitrate_bps: int, ssrcs: tuple[int, ...]) -> None:
        """A REMB (``bitrate_bps`` for ``ssrcs``) from the subscriber."""
        now_ms = monotonic_ms()
        # One estimate per source: a report naming any of the same SSRCs replaces the old one
        # (aiortc's list grows when RTX arrives).
        for key in [k for k in self._remb if not set(k).isdisjoint(ssrcs)]:
            del self._remb[key]
        self._remb[ssrcs] = (now_ms, bitrate_bps)
        for key in [k for k, (ms, _) in self._remb.items() if now_ms - ms > REMB_TTL_MS]:
            del self._remb[key]
        estimate = sum(bps for _, bps in self._remb.values())
        if self._estimate is None or estimate > self._estimate * 1.01:
            self._last_increase_ms = now_ms
        elif estimate < self._estimate * 0.99:
            self._last_decrease_ms = now_ms
        self._estimate = estimate

    @property
    def estimate_bps(self) -> int | None:
        """The subscriber's bandwidth estimate, None without a recent REMB."""
        now_ms = monotonic_ms()
        if not any(now_ms - ms <= REMB_TTL_MS for ms, _ in self._remb.values()):
            return None
        return self._estimate

    def _schedule(self) -> None:
        self._timer = asyncio.get_running_loop().call_later(TICK_MS / 1000.0, self._tick)

    def _tick(self) -> None:
        self._timer = None
        if self.closed:
            return
        self.allocate()
        if self.consumers:
            self._schedule()

    def allocate(self) -> None:
        """Choose every Consumer's target layer now (see the class)."""
        now_ms = monotonic_ms()
        consumers = [c for c in self.consumers if not c.closed]
        desired: dict[SimulcastConsumer, int | None] = {}
        for c in consumers:
            layers = c.producer.layers
            c.producer.set_wanted(c.id, _or(preferred_layer(layers, c.preference, now_ms, False)))
            desired[c] = preferred_layer(layers, c.preference, now_ms, True)
        estimate = self.estimate_bps
        if estimate is None:
            for c in consumers:
                c.set_target(desired[c])
            return
        rate = sum(_rate(c, c.current_layer, now_ms) for c in consumers)
        fell = now_ms - self._last_decrease_ms < TICK_MS * 2
        stalled = (
            now_ms - self._last_increase_ms >= STALLED_MS
            and now_ms - self._last_up_ms >= UP_GRACE_MS
        )
        if rate and estimate < CONGESTED_RATIO * rate and (fell or stalled):
            self._fit(consumers, desired, estimate, now_ms)
            return
        backoff_over = now_ms - self._last_down_ms >= self._backoff_ms
        room = estimate >= HEADROOM_RATIO * rate and backoff_over
        for c in consumers:
            want, current = desired[c], c.target_layer
            if want is None or current is None or want <= current:
                c.set_target(want)
            elif now_ms - c.raised_ms < EAGER_MS and backoff_over:
                self._last_up_ms = now_ms
                c.set_target(want)  # the subscriber just asked for more: try it at once
            elif room:
                above = [x.index for x in c.producer.layers[current + 1 : want + 1]]
                active = [i for i in above if c.producer.layers[i].active(now_ms)]
                if active:
                    self._last_up_ms = now_ms
                    c.set_target(active[0])  # one step per tick

    def _fit(
        self,
        consumers: list[SimulcastConsumer],
        desired: dict[SimulcastConsumer, int | None],
        estimate: int,
        now_ms: float,
    ) -> None:
        budget = float(estimate)
        lowest = {c: _lowest_active(c, now_ms) for c in consumers}
        downgraded = False
        for i, c in enumerate(consumers):
            want = desired[c]
            if want is None:
                c.set_target(None)
                continue
            reserve = sum(_rate(o, lowest[o], now_ms) for o in consumers[i + 1 :])
            low = lowest[c]
            choice: int = want if low is None else low
            for layer in c.producer.layers[: want + 1]:
                if layer.active(now_ms) and _rate(c, layer.index, now_ms) <= budget - reserve:
                    choice = layer.index
            if c.target_layer is not None and choice < c.target_layer:
                downgraded = True
            c.set_target(choice)
            budget -= _rate(c, choice, now_ms)
        if downgraded:
            log.debug(
                "layers down to fit %d bps: %s",
                estimate,
                [(c.id, c.target_layer) for c in consumers],
            )
            self.downgrades += 1
            if now_ms - self._last_up_ms < FAILED_UP_MS:
                self._backoff_ms = min(self._backoff_ms * 2, BACKOFF_MAX_MS)
            else:
                self._backoff_ms = BACKOFF_MIN_MS
            self._last_down_ms = now_ms

    def close(self) -> None:
        self.closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


def _or(layer: int | None) -> int:
    return -1 if layer is None else layer


def _rate(consumer: SimulcastConsumer, layer: int | None, now_ms: float) -> int:
    return 0 if layer is None else consumer.producer.layers[layer].bitrate_bps(now_ms)


def _lowest_active(consumer: SimulcastConsumer, now_ms: float) -> int | None:
    return next((x.index for x in consumer.producer.layers if x.active(now_ms)), None)
