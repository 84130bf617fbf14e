"""ActiveSpeakerObserver: who is speaking in one room, from RFC 6464 audio levels."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

SpeakersHandler = Callable[[list[str], "str | None"], None]


class ActiveSpeakerObserver:
    """Ranks one Router's participants by recent audio level and picks a dominant speaker.

    Input: the client-to-mixer audio level of each audio packet (RFC 6464 §3: 0..127, the
    level in -dBov, 127 for silence), read from the header extension without decoding.
    ``loudness`` = dB above ``silence_dbov`` (default -60 dBov; quieter is 0); a participant's
    *score* is the mean loudness of its packets over the last ``window_ms`` (default 1000 ms),
    so the pauses between words lower it less than a cough raises it. A participant speaks when
    its score is at least ``min_score`` (default 8 dB). Hysteresis: the dominant speaker
    changes only when it stopped speaking, or a challenger's score beat it by ``margin``
    (default 6 dB) at ``hold`` (default 2) consecutive evaluations; evaluations run at most
    every ``interval_ms`` (default 200 ms), on packet arrival, so an idle room costs nothing.
    ``on_speakers_changed(speakers, dominant)`` runs when the set of speakers or the dominant
    changes; ``speakers`` are participant ids, dominant first, then by score. Times are
    monotonic milliseconds.
    """

    __slots__ = (
        "window_ms",
        "interval_ms",
        "silence_dbov",
        "min_score",
        "margin",
        "hold",
        "on_speakers_changed",
        "dominant",
        "speakers",
        "_levels",
        "_next_ms",
        "_challenger",
        "_challenges",
    )

    def __init__(
        self,
        window_ms: float = 1000.0,
        interval_ms: float = 200.0,
        silence_dbov: int = -60,
        min_score: float = 8.0,
        margin: float = 6.0,
        hold: int = 2,
    ) -> None:
        self.window_ms = window_ms
        self.interval_ms = interval_ms
        self.silence_dbov = silence_dbov
        self.min_score = min_score
        self.margin = margin
        self.hold = hold
        self.on_speakers_changed: SpeakersHandler = lambda speakers, dominant: None
        self.dominant: str | None = None
        self.speakers: list[str] = []
        self._levels: dict[str, deque[tuple[float, int]]] = {}
        self._next_ms = 0.0
        self._challenger: str | None = None
        self._challenges = 0

    def on_audio_level(self, participant_id: str, level: int, now_ms: float) -> None:
        """One audio packet of ``participant_id`` carried RFC 6464 ``level`` (0..127)."""
        loudness = max(0, -self.silence_dbov - level)
        levels = self._levels.get(participant_id)
        if levels is None:
            levels = self._levels[participant_id] = deque()
        levels.append((now_ms, loudness))
        if now_ms >= self._next_ms:
            self._next_ms = now_ms + self.interval_ms
            self.evaluate(now_ms)

    def remove(self, participant_id: str) -> None:
        """``participant_id`` left or stopped publishing audio."""
        if self._levels.pop(participant_id, None) is not None and self.dominant == participant_id:
            self.dominant = None

    def scores(self, now_ms: float) -> dict[str, float]:
        """Each participant's mean loudness (dB above ``silence_dbov``) over the window."""
        horizon = now_ms - self.window_ms
        out = {}
        for participant_id, levels in self._levels.items():
            while levels and levels[0][0] < horizon:
                levels.popleft()
            out[participant_id] = sum(v for _, v in levels) / len(levels) if levels else 0.0
        return out

    def evaluate(self, now_ms: float) -> None:
        """Rank, apply the hysteresis, and report a change."""
        scores = self.scores(now_ms)
        speaking = sorted(
            (p for p, s in scores.items() if s >= self.min_score), key=lambda p: -scores[p]
        )
        dominant = self.dominant
        if dominant not in speaking:
            dominant = speaking[0] if speaking else None
            self._challenger, self._challenges = None, 0
        elif speaking[0] != dominant and scores[speaking[0]] >= scores[dominant] + self.margin:
            top = speaking[0]
            self._challenges = self._challenges + 1 if self._challenger == top else 1
            self._challenger = top
            if self._challenges >= self.hold:
                dominant, self._challenger, self._challenges = top, None, 0
        else:
            self._challenger, self._challenges = None, 0
        if dominant is not None:
            speaking.remove(dominant)
            speaking.insert(0, dominant)
        changed = dominant != self.dominant or set(speaking) != set(self.speakers)
        self.dominant, self.speakers = dominant, speaking
        if changed:
            self.on_speakers_changed(list(speaking), dominant)
