"""switchboard/sfu/observers/active_speaker.py: scores, speakers, hysteresis, reports."""

from __future__ import annotations

from switchboard.sfu.observers.active_speaker import ActiveSpeakerObserver

SILENCE, SPEECH, LOUD = 127, 30, 15  # RFC 6464 levels, -dBov


class Room:
    """An observer fed 20 ms packets of levels per participant, recording its reports."""

    def __init__(self) -> None:
        self.observer = ActiveSpeakerObserver()
        self.reports: list[tuple[list[str], str | None]] = []
        self.observer.on_speakers_changed = lambda s, d: self.reports.append((s, d))
        self.now_ms = 0.0

    def play(self, ms: int, **levels: int) -> None:
        for _ in range(ms // 20):
            self.now_ms += 20
            for participant_id, level in levels.items():
                self.observer.on_audio_level(participant_id, level, self.now_ms)


def test_silence_is_nobody_speaking() -> None:
    room = Room()
    room.play(2000, a=SILENCE, b=SILENCE)
    assert room.reports == []
    assert room.observer.dominant is None


def test_a_speaker_becomes_dominant_and_both_are_listed_by_score() -> None:
    room = Room()
    room.play(400, a=SPEECH, b=SILENCE)
    assert room.observer.dominant == "a"
    room.play(1000, a=SPEECH, b=LOUD)  # b's second of silence still weighs in its mean
    assert room.observer.speakers == ["a", "b"]
    room.play(600, a=SPEECH, b=LOUD)
    assert room.observer.speakers == ["b", "a"]  # 15 dB louder at two evaluations in a row
    assert [d for _, d in room.reports] == ["a", "a", "b"]


def test_a_slightly_louder_challenger_does_not_take_over() -> None:
    room = Room()
    room.play(1000, a=SPEECH, b=SILENCE)
    room.play(3000, a=SPEECH, b=SPEECH - 4)  # 4 dB louder: under the 6 dB margin
    assert room.observer.dominant == "a"
    assert [d for _, d in room.reports] == ["a", "a"]  # b joined the speakers, a stays


def test_a_short_burst_does_not_take_over() -> None:
    room = Room()
    room.play(1000, a=SPEECH, b=SILENCE)
    room.play(100, a=SPEECH, b=LOUD)  # one evaluation at most
    room.play(1000, a=SPEECH, b=SILENCE)
    assert all(d == "a" for _, d in room.reports)


def test_when_the_dominant_stops_the_other_takes_over_and_leaving_clears_it() -> None:
    room = Room()
    room.play(1000, a=SPEECH, b=SILENCE)
    room.play(1500, a=SILENCE, b=SPEECH)
    assert room.observer.dominant == "b"
    room.observer.remove("b")
    room.play(1500, a=SILENCE)
    assert room.reports[-1] == ([], None)
