"""switchboard/sfu/sdp_simulcast.py: reading a browser's simulcast offer, answering it."""

from __future__ import annotations

import time

from switchboard.sfu import sdp_simulcast

RID_URI = "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id"
RRID_URI = "urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id"

# What Chromium offers for addTransceiver(video, {sendEncodings: [q, h, f]}) (trimmed).
VIDEO = (
    "m=video 9 UDP/TLS/RTP/SAVPF 96 97\r\n"
    "a=mid:1\r\n"
    "a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid\r\n"
    f"a=extmap:10 {RID_URI}\r\n"
    f"a=extmap:11 {RRID_URI}\r\n"
    "a=sendonly\r\n"
    "a=rtpmap:96 VP8/90000\r\n"
    "a=rtpmap:97 rtx/90000\r\n"
    "a=fmtp:97 apt=96\r\n"
    "a=rid:q send\r\n"
    "a=rid:h send\r\n"
    "a=rid:f send\r\n"
    "a=simulcast:send q;h;f\r\n"
)
AUDIO = "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\na=sendonly\r\na=rtpmap:111 opus/48000/2\r\n"
SESSION = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"


def test_parse_offer_reads_rids_in_order_and_the_extension_ids() -> None:
    offers = sdp_simulcast.parse_offer(SESSION + AUDIO + VIDEO)
    assert list(offers) == ["1"]
    offer = offers["1"]
    assert offer.rids == ("q", "h", "f")
    assert offer.extmap[RID_URI] == 10 and offer.extmap[RRID_URI] == 11


def test_parse_offer_skips_what_is_not_simulcast_or_invalid() -> None:
    plain = VIDEO.replace("a=simulcast:send q;h;f\r\n", "")
    assert sdp_simulcast.parse_offer(SESSION + plain) == {}
    one = VIDEO.replace("a=simulcast:send q;h;f", "a=simulcast:send q")
    assert sdp_simulcast.parse_offer(SESSION + one) == {}
    # undeclared RIDs, bad characters and duplicates are left out; "~" (paused) and
    # alternatives ("h,x": the first) are read
    odd = VIDEO.replace("a=simulcast:send q;h;f", "a=simulcast:send ~q;h,x;f;f;zz;b@d")
    assert sdp_simulcast.parse_offer(SESSION + odd)["1"].rids == ("q", "h", "f")
    many = VIDEO.replace("a=rid:q send\r\n", "a=rid:q send\r\na=rid:a send\r\na=rid:b send\r\n")
    many = many.replace("a=simulcast:send q;h;f", "a=simulcast:send a;b;q;h;f")
    assert len(sdp_simulcast.parse_offer(SESSION + many)["1"].rids) == sdp_simulcast.MAX_LAYERS


def test_answer_adds_rid_and_simulcast_recv_to_receiving_sections() -> None:
    offers = sdp_simulcast.parse_offer(SESSION + AUDIO + VIDEO)
    answer_video = "m=video 9 UDP/TLS/RTP/SAVPF 96 97\r\na=mid:1\r\na=recvonly\r\n"
    answer_audio = "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\na=recvonly\r\n"
    answer = sdp_simulcast.answer(SESSION + answer_audio + answer_video, offers)
    assert answer.endswith(
        "a=mid:1\r\na=recvonly\r\na=rid:q recv\r\na=rid:h recv\r\na=rid:f recv\r\n"
        "a=simulcast:recv q;h;f\r\n"
    )
    assert answer.count("a=rid:") == 3  # nothing in the audio section
    rejected = SESSION + answer_video.replace("a=recvonly", "a=inactive")
    assert sdp_simulcast.answer(rejected, offers) == rejected
    assert sdp_simulcast.answer(SESSION + answer_video, {}) == SESSION + answer_video


def test_parse_offer_needs_a_usable_rid_extension_id() -> None:
    """RFC 8285 §5 ids are 1-255, one meaning per id across BUNDLEd m-sections: an offer whose
    RID extension id is out of range or taken is answered without simulcast (the answer would
    carry the bad id back, and the transport could not read the RIDs)."""
    rid_ext = f"a=extmap:10 {RID_URI}"
    for bad in ("a=extmap:0", "a=extmap:256", "a=extmap:" + "9" * 40, "a=extmap:4"):
        offer = SESSION + VIDEO.replace("a=extmap:10", bad)
        assert sdp_simulcast.parse_offer(offer) == {}, bad
    assert sdp_simulcast.parse_offer(SESSION + VIDEO.replace(rid_ext + "\r\n", "")) == {}
    other = AUDIO + "a=extmap:10 urn:ietf:params:rtp-hdrext:ssrc-audio-level\r\n"
    assert sdp_simulcast.parse_offer(SESSION + other + VIDEO) == {}
    second = VIDEO.replace("a=mid:1", "a=mid:2").replace("a=extmap:10", "a=extmap:12")
    assert sdp_simulcast.parse_offer(SESSION + VIDEO + second) == {}
    # a bad repaired-rtp-stream-id id only loses RTX's RID tag
    offer = sdp_simulcast.parse_offer(SESSION + VIDEO.replace("a=extmap:11", "a=extmap:4"))
    assert offer["1"].extmap == {RID_URI: 10}


def test_parse_offer_of_thousands_of_rids_is_cheap() -> None:
    """An offer listing ~9000 RIDs (250 kB, the largest SDP the socket takes) must not stall
    the event loop: the RIDs after ``MAX_LAYERS`` are not looked at."""
    rids = [f"r{i}" for i in range(9000)]
    declared = "".join(f"a=rid:{r} send\r\n" for r in rids)
    video = VIDEO.replace("a=rid:q send\r\n", declared).replace("q;h;f", ";".join(rids))
    started = time.perf_counter()
    offers = sdp_simulcast.parse_offer(SESSION + video)
    elapsed = time.perf_counter() - started
    assert offers["1"].rids == ("r0", "r1", "r2", "r3")
    assert elapsed < 0.1, f"{elapsed:.3f} s"  # 0.45 s when the list was searched per RID
