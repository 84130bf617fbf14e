// Switchboard protocol client: the signalling WebSocket (requests with ids and promises, events)
// and the two peer connections (publish: we offer; subscribe: the server offers).
// See docs/protocol.md. No UI here: app.js listens to the events this client dispatches.
//
// Events (CustomEvent, payload in `event.detail`):
//   "message"           every server event, as received ({type, ...})
//   "track"             a remote track became available {mid, trackId, participantId, kind, track}
//   "trackremoved"      a remote track is gone          {mid, trackId, participantId, kind}
//   "connectionstate"   {target: "publish"|"subscribe", state}
//   "icerestart"        an ICE restart of ours ended {target, error} (error null if it went through)
//   "protocolerror"     an error without a request id, or a failure handling a server event
//   "data"              in-call data {senderId, payload (string or Uint8Array), reliable}
//   "datadropped"       the server dropped data of ours {reason, messages, bytes, detail}
//   "publisherlayers"   dynacast: the simulcast layers of our track now sent {trackId, active}
//   "close"             the socket closed {code, reason, wasClean}

import { InCallData } from "/static/in-call-data.js";

const REQUEST_TIMEOUT_MS = 15000;
const ICE_GATHERING_TIMEOUT_MS = 2000;
const PING_INTERVAL_MS = 20000;
// Camera video is published as simulcast layers (RFC 8853), lowest first as the SFU expects:
// a quarter, half and full resolution. maxBitrate keeps the top layer within what a
// REMB-only (no transport-cc) path lets the browser's bandwidth estimate reach.
const SIMULCAST_ENCODINGS = [
  { rid: "q", scaleResolutionDownBy: 4, maxBitrate: 150_000 },
  { rid: "h", scaleResolutionDownBy: 2, maxBitrate: 400_000 },
  { rid: "f", scaleResolutionDownBy: 1, maxBitrate: 1_000_000 },
];

/**
 * The simulcast encodings for a camera track: libwebrtc sends at most as many layers as the
 * size allows (3 from 960x540, 2 from 480x270) and drops the *top* ones beyond that, so a
 * smaller camera gets fewer layers, the full size always among them; null for one layer.
 */
function simulcastEncodings(track) {
  const { width = 0, height = 0 } = track.getSettings ? track.getSettings() : {};
  const count = width * height >= 960 * 540 ? 3 : width * height >= 480 * 270 ? 2 : 1;
  if (count < 2) return null;
  return SIMULCAST_ENCODINGS.slice(-count).map((encoding) => ({ ...encoding }));
}

/** An error reply from the server (or a local failure of a request). */
export class SwitchboardError extends Error {
  constructor(code, message) {
    super(`${code}: ${message}`);
    this.name = "SwitchboardError";
    this.code = code;
  }
}

/** Ask the demo endpoint for a user access token. Returns {token, user_id, expires_on}. */
export async function fetchDemoToken(name, room, baseUrl = "") {
  const response = await fetch(`${baseUrl}/demo/token`, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ name, room }),
  });
  let body = null;
  try {
    body = await response.json();
  } catch {
    // Not JSON: reported below with the status.
  }
  if (!response.ok) {
    const error = body && body.error ? body.error : { code: `HTTP ${response.status}`, message: response.statusText };
    throw new SwitchboardError(error.code, error.message);
  }
  return body;
}

/** The WebSocket URL of the signalling endpoint on the page's own host. */
export function defaultSignallingUrl(location = window.location) {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${location.host}/v1/rtc`;
}

/**
 * Resolve once `pc` has gathered all its ICE candidates, or after `timeoutMs` (then the
 * description holds what was gathered so far and later candidates are trickled).
 * Returns true if gathering completed.
 */
export function waitForIceGathering(pc, timeoutMs = ICE_GATHERING_TIMEOUT_MS) {
  if (pc.iceGatheringState === "complete") return Promise.resolve(true);
  return new Promise((resolve) => {
    const done = (complete) => {
      clearTimeout(timer);
      pc.removeEventListener("icegatheringstatechange", onChange);
      resolve(complete);
    };
    const onChange = () => {
      if (pc.iceGatheringState === "complete") done(true);
    };
    const timer = setTimeout(() => done(false), timeoutMs);
    pc.addEventListener("icegatheringstatechange", onChange);
  });
}

/** The first a=ice-ufrag of an SDP (RFC 8839 §5.4), or null. */
function iceUfrag(sdp) {
  const match = /^a=ice-ufrag:(\S+)/m.exec(sdp);
  return match ? match[1] : null;
}

export class SwitchboardClient extends EventTarget {
  /**
   * `iceTransportPolicy`: "all", or "relay" to send and receive only through the TURN servers
   * the join reply hands out (`ice_servers`), as the connectivity check of a locked-down
   * network would.
   */
  constructor({ url = defaultSignallingUrl(), iceTransportPolicy = "all" } = {}) {
    super();
    this.url = url;
    this.iceTransportPolicy = iceTransportPolicy;
    this.ws = null;
    this.participant = null; // {id, name, user_id} after join
    this.room = null;
    this.iceServers = [];
    this.pcs = { publish: null, subscribe: null };
    this.localTracks = {}; // server track id -> {kind, mid, track}
    this.remoteTracks = new Map(); // mid -> {mid, trackId, participantId, kind, track}
    this._nextId = 1;
    this._pending = new Map(); // request id -> {resolve, reject, timer, type}
    this._pingTimer = null;
    this._subscribeQueue = Promise.resolve();
    // Per connection: candidates gathered before our description is sent travel in its SDP.
    // Only if gathering outlived its timeout are the later ones (and the end of candidates)
    // trickled; those found while the server applies the description wait for its reply.
    this._trickle = {
      publish: { on: false, sent: false, queue: [] },
      subscribe: { on: false, sent: false, queue: [] },
    };
    this._closed = false;
    // In-call data (in-call-data.js): sendData(), onData(senderId, payload, reliable), "data".
    this.data = new InCallData(this);
    this.onData = null;
  }

  // ---- the socket ----------------------------------------------------------------------

  /** Open the WebSocket; resolves when it is open. */
  connect() {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(this.url);
      this.ws = ws;
      let opened = false;
      ws.addEventListener("open", () => {
        opened = true;
        this._pingTimer = setInterval(() => {
          this.request("ping").catch((error) => this._emit("protocolerror", { error }));
        }, PING_INTERVAL_MS);
        resolve();
      });
      ws.addEventListener("message", (event) => this._onMessage(event.data));
      ws.addEventListener("close", (event) => {
        this._onClose(event);
        if (!opened) reject(new SwitchboardError("connection_failed", `cannot connect to ${this.url}`));
      });
    });
  }

  /** Send a request; resolves with its `result`, rejects with a SwitchboardError. */
  request(type, fields = {}) {
    if (!this.ws || this.ws.readyState !== WebSocket.OPEN) {
      return Promise.reject(new SwitchboardError("not_connected", `cannot send ${type}: socket not open`));
    }
    const id = this._nextId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this._pending.delete(id);
        reject(new SwitchboardError("timeout", `no reply to ${type} within ${REQUEST_TIMEOUT_MS / 1000} s`));
      }, REQUEST_TIMEOUT_MS);
      this._pending.set(id, { resolve, reject, timer, type });
      this.ws.send(JSON.stringify({ ...fields, id, type }));
    });
  }

  _onMessage(data) {
    let message;
    try {
      message = JSON.parse(data);
    } catch {
      this._emit("protocolerror", { error: new SwitchboardError("invalid_json", "the server sent a non-JSON frame") });
      return;
    }
    if (message.type === "reply" || message.type === "error") {
      const pending = this._pending.get(message.id);
      if (!pending) {
        if (message.type === "error") {
          const { code, message: text } = message.error || {};
          this._emit("protocolerror", { error: new SwitchboardError(code, text) });
        }
        return;
      }
      this._pending.delete(message.id);
      clearTimeout(pending.timer);
      if (message.type === "reply") pending.resolve(message.result);
      else pending.reject(new SwitchboardError(message.error.code, message.error.message));
      return;
    }
    if (message.type === "publisher_layers") {
      // Dynacast: send only the simulcast layers someone receives (docs/protocol.md).
      this._layersQueue = (this._layersQueue || Promise.resolve())
        .then(() => this._applyPublisherLayers(message))
        .catch((error) => this._emit("protocolerror", { error }));
    }
    if (message.type === "subscribe_offer") {
      // Serialise: each offer is fully answered before the next is applied.
      this._subscribeQueue = this._subscribeQueue
        .then(() => this._answerSubscribeOffer(message))
        .catch((error) => this._emit("protocolerror", { error }));
    }
    this._emit("message", message);
  }

  _onClose(event) {
    clearInterval(this._pingTimer);
    this._pingTimer = null;
    for (const [, pending] of this._pending) {
      clearTimeout(pending.timer);
      pending.reject(new SwitchboardError("disconnected", `socket closed (${event.code}) before the reply to ${pending.type}`));
    }
    this._pending.clear();
    this._closePeerConnections();
    this._emit("close", { code: event.code, reason: event.reason, wasClean: event.wasClean });
  }

  _emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  // ---- session --------------------------------------------------------------------------

  authenticate(token) {
    return this.request("authenticate", { token });
  }

  /** Join a room; creates the subscribe connection, ready for the server's offers. */
  async join(room, name) {
    const result = await this.request("join", { room, name });
    this.participant = result.participant;
    this.room = result.room;
    this.iceServers = result.ice_servers || [];
    if (!this.pcs.subscribe) this._createSubscribeConnection();
    return result;
  }

  /** Send `leave`, then release the connections. The server closes the socket (1000). */
  async leave() {
    try {
      if (this.ws && this.ws.readyState === WebSocket.OPEN) await this.request("leave");
    } finally {
      this.close();
    }
  }

  /** Close everything without telling the server (it sees the socket close). */
  close() {
    if (this._closed) return;
    this._closed = true;
    this._closePeerConnections();
    if (this.ws && this.ws.readyState <= WebSocket.OPEN) this.ws.close(1000, "leave");
  }

  _closePeerConnections() {
    for (const key of ["publish", "subscribe"]) {
      if (this.pcs[key]) this.pcs[key].close();
    }
    for (const info of this.remoteTracks.values()) this._emit("trackremoved", this._publicTrackInfo(info));
    this.remoteTracks.clear();
  }

  // ---- ICE ------------------------------------------------------------------------------

  _newPeerConnection(target) {
    const pc = new RTCPeerConnection({
      iceServers: this.iceServers, // from the join reply: STUN and TURN with credentials
      iceTransportPolicy: this.iceTransportPolicy,
      bundlePolicy: "max-bundle",
    });
    pc.addEventListener("icecandidate", (event) => {
      const state = this._trickle[target];
      if (!state.on) return; // in the SDP (sent or about to be)
      const candidate = event.candidate
        ? { candidate: event.candidate.candidate, sdpMid: event.candidate.sdpMid, sdpMLineIndex: event.candidate.sdpMLineIndex }
        : null;
      if (state.sent) this._sendCandidate(target, candidate);
      else state.queue.push(candidate);
    });
    pc.addEventListener("connectionstatechange", () => {
      this._emit("connectionstate", { target, state: pc.connectionState });
    });
    pc.addEventListener("iceconnectionstatechange", () => {
      // The network changed under us: restart ICE (no new join) while the socket is up.
      if (["disconnected", "failed"].includes(pc.iceConnectionState)) this._autoRestartIce(target);
    });
    return pc;
  }

  /**
   * Restart ICE on one connection (RFC 8445 §9) after the network changed, without joining
   * again: new ICE credentials and candidates, the same tracks. "publish": pc.restartIce() and
   * a publish_offer (we offer there); "subscribe": ask the server (`ice_restart`) for an offer
   * that restarts, which the subscribe queue answers. docs/protocol.md `ice_restart`.
   */
  async restartIce(target) {
    const pc = this.pcs[target];
    if (!pc || pc.signalingState === "closed") throw new SwitchboardError("not_connected", `no ${target} connection`);
    if (target === "subscribe") {
      await this.request("ice_restart", { connection: "subscribe" });
      return;
    }
    this._publishQueue = (this._publishQueue || Promise.resolve()).catch(() => {}).then(async () => {
      pc.restartIce();
      this._resetTrickle("publish"); // new candidates: wait for them, as for the first offer
      await pc.setLocalDescription(await pc.createOffer());
      const result = await this._sendDescription("publish", pc, "publish_offer", {});
      await pc.setRemoteDescription({ type: "answer", sdp: result.sdp });
    });
    return this._publishQueue;
  }

  _autoRestartIce(target) {
    this._restarting = this._restarting || {};
    if (this._restarting[target] || this._closed || !this.ws || this.ws.readyState !== WebSocket.OPEN) return;
    this._restarting[target] = true;
    this.restartIce(target)
      .then(() => this._emit("icerestart", { target, error: null }))
      .catch((error) => this._emit("icerestart", { target, error }))
      .finally(() => {
        this._restarting[target] = false;
      });
  }

  _resetTrickle(target) {
    const state = this._trickle[target];
    state.on = false;
    state.sent = false;
    state.queue.length = 0;
  }

  _sendCandidate(target, candidate) {
    this.request("trickle", { target, candidate }).catch((error) => this._emit("protocolerror", { error }));
  }

  /**
   * Send our description (`publish_offer` or `subscribe_answer`) once ICE gathering completed
   * or timed out. In the latter case, trickle the candidates found later, starting once the
   * server has applied the description. (An end of candidates is never trickled after an SDP
   * that held them all: it is implied, and the server's ICE agent fails on it.)
   */
  async _sendDescription(target, pc, type, fields) {
    const state = this._trickle[target];
    if (!state.sent && !(await waitForIceGathering(pc))) state.on = true;
    fields.sdp = pc.localDescription.sdp;
    let result;
    try {
      result = await this.request(type, fields);
    } catch (error) {
      state.on = false; // the server refused the description: its candidates are moot
      state.queue.length = 0;
      throw error;
    }
    state.sent = true;
    for (const candidate of state.queue.splice(0)) this._sendCandidate(target, candidate);
    return result;
  }

  // ---- publishing -----------------------------------------------------------------------

  /**
   * Publish every track of `stream` on the publish connection (one sendonly transceiver
   * each). Video is sent as up to three simulcast layers (simulcastEncodings) unless
   * `simulcast` is false. Resolves with the server's track list [{track_id, mid, kind, muted}].
   */
  async publish(stream, { simulcast = true } = {}) {
    // A data-only publish connection (sendData before publish) is renegotiated, not replaced.
    const pc = this.pcs.publish || this._newPeerConnection("publish");
    this.pcs.publish = pc;
    for (const track of stream.getTracks()) {
      const init = { direction: "sendonly", streams: [stream] };
      const encodings = simulcast && track.kind === "video" ? simulcastEncodings(track) : null;
      if (encodings) init.sendEncodings = encodings;
      pc.addTransceiver(track, init);
    }
    this.data.attachPublish(pc); // after the transceivers: m=application comes last
    const offer = await pc.createOffer();
    await pc.setLocalDescription(offer);
    const result = await this._sendDescription("publish", pc, "publish_offer", {});
    await pc.setRemoteDescription({ type: "answer", sdp: result.sdp });
    const byMid = new Map(pc.getTransceivers().map((t) => [t.mid, t]));
    for (const info of result.tracks) {
      const transceiver = byMid.get(info.mid);
      this.localTracks[info.track_id] = {
        kind: info.kind,
        mid: info.mid,
        muted: info.muted,
        track: transceiver ? transceiver.sender.track : null,
        sender: transceiver ? transceiver.sender : null,
      };
    }
    return result.tracks;
  }

  /** Dynacast: turn the encodings of our simulcast track on or off as the server asks. */
  async _applyPublisherLayers({ track_id: trackId, active }) {
    const sender = this.localTracks[trackId] && this.localTracks[trackId].sender;
    if (!sender) return;
    const parameters = sender.getParameters();
    if (!parameters.encodings || parameters.encodings.length < 2) return;
    let changed = false;
    for (const encoding of parameters.encodings) {
      const on = active.includes(encoding.rid);
      if (encoding.active !== on) {
        encoding.active = on;
        changed = true;
      }
    }
    if (changed) await sender.setParameters(parameters);
    this._emit("publisherlayers", { trackId, active });
  }

  /**
   * Say what we want of a remote simulcast track: {maxWidth, maxHeight, maxFps, paused}.
   * The server answers with `layer_changed` events as the layer we receive changes.
   */
  updateSubscription(trackId, { maxWidth = null, maxHeight = null, maxFps = null, paused = false } = {}) {
    const fields = { track_id: trackId, paused };
    if (maxWidth !== null) fields.max_width = maxWidth;
    if (maxHeight !== null) fields.max_height = maxHeight;
    if (maxFps !== null) fields.max_fps = maxFps;
    return this.request("update_subscription", fields);
  }

  /**
   * Send in-call data (a string, or binary as an ArrayBuffer or typed array, up to 255 KiB)
   * to everyone else, or to the participant ids `to`, on the reliable or the lossy channel.
   */
  sendData(payload, { reliable = true, to = null } = {}) {
    return this.data.send(payload, { reliable, to });
  }

  /** The server track id of our published track of `kind`, or null. */
  localTrackId(kind) {
    for (const [trackId, info] of Object.entries(this.localTracks)) {
      if (info.kind === kind) return trackId;
    }
    return null;
  }

  /** Stop sending real media of `kind` (track.enabled) and tell the others with `mute`. */
  async setMuted(kind, muted) {
    const trackId = this.localTrackId(kind);
    if (!trackId) throw new SwitchboardError("unknown_track", `no published ${kind} track`);
    const info = this.localTracks[trackId];
    const wasMuted = info.muted;
    if (info.track) info.track.enabled = !muted;
    info.muted = muted;
    try {
      await this.request("mute", { track_id: trackId, muted });
    } catch (error) {
      if (info.track) info.track.enabled = !wasMuted;
      info.muted = wasMuted;
      throw error;
    }
  }

  // ---- subscribing ----------------------------------------------------------------------

  _createSubscribeConnection() {
    const pc = this._newPeerConnection("subscribe");
    this.pcs.subscribe = pc;
  }

  async _answerSubscribeOffer(message) {
    if (this._closed) return;
    if (!this.pcs.subscribe) this._createSubscribeConnection();
    const pc = this.pcs.subscribe;
    if (pc.signalingState === "closed") return;
    const restart = pc.remoteDescription && iceUfrag(pc.remoteDescription.sdp) !== iceUfrag(message.sdp);
    await pc.setRemoteDescription({ type: "offer", sdp: message.sdp });
    if (restart) this._resetTrickle("subscribe"); // the answer gathers anew (RFC 8839 §4.4.1.1.1)
    this._updateRemoteTracks(pc, message.tracks || {});
    const answer = await pc.createAnswer();
    await pc.setLocalDescription(answer);
    await this._sendDescription("subscribe", pc, "subscribe_answer", { offer_id: message.offer_id });
  }

  /**
   * Reconcile the MID → track map with the one of a new offer. The receiver of each
   * transceiver is the remote track carried by its m-section; a MID absent from the map is
   * inactive (its track was unpublished), and a reused MID carries another track now.
   */
  _updateRemoteTracks(pc, tracks) {
    const transceivers = new Map(pc.getTransceivers().map((t) => [t.mid, t]));
    for (const [mid, old] of [...this.remoteTracks]) {
      const next = tracks[mid];
      if (!next || next.track_id !== old.trackId) {
        this.remoteTracks.delete(mid);
        this._emit("trackremoved", this._publicTrackInfo(old));
      }
    }
    for (const [mid, info] of Object.entries(tracks)) {
      if (this.remoteTracks.has(mid)) continue;
      const transceiver = transceivers.get(mid);
      if (!transceiver) continue;
      const entry = {
        mid,
        trackId: info.track_id,
        participantId: info.participant_id,
        kind: info.kind,
        track: transceiver.receiver.track,
      };
      this.remoteTracks.set(mid, entry);
      this._emit("track", entry);
    }
  }

  _publicTrackInfo(info) {
    return { mid: info.mid, trackId: info.trackId, participantId: info.participantId, kind: info.kind };
  }

  /** The remote track entry an inbound-rtp stat belongs to (by MID, else by track id). */
  _remoteTrackForStat(stat) {
    if (stat.mid !== undefined && this.remoteTracks.has(String(stat.mid))) {
      return this.remoteTracks.get(String(stat.mid));
    }
    for (const entry of this.remoteTracks.values()) {
      if (entry.track && entry.track.id === stat.trackIdentifier) return entry;
    }
    return null;
  }

  // ---- statistics -----------------------------------------------------------------------

  /**
   * {inbound: [{participant_id, track_id, mid, kind, framesDecoded, packetsReceived,
   *             bytesReceived, frameWidth, frameHeight, totalSamplesReceived}],
   * One inbound entry per inbound-rtp of the subscribe connection; participant_id and
   * track_id are null once its m-section no longer carries a track (the stats outlive it).
   *  outbound: [{track_id, mid, kind, framesEncoded, packetsSent, bytesSent, frameWidth, frameHeight}]}
   */
  async stats() {
    const inbound = [];
    const outbound = [];
    const subscribe = this.pcs.subscribe;
    if (subscribe && subscribe.signalingState !== "closed") {
      for (const stat of (await subscribe.getStats()).values()) {
        if (stat.type !== "inbound-rtp") continue;
        const entry = this._remoteTrackForStat(stat);
        inbound.push({
          participant_id: entry ? entry.participantId : null,
          track_id: entry ? entry.trackId : null,
          mid: stat.mid ?? (entry ? entry.mid : null),
          kind: stat.kind,
          framesDecoded: stat.framesDecoded ?? 0,
          packetsReceived: stat.packetsReceived ?? 0,
          bytesReceived: stat.bytesReceived ?? 0,
          frameWidth: stat.frameWidth ?? 0,
          frameHeight: stat.frameHeight ?? 0,
          totalSamplesReceived: stat.totalSamplesReceived ?? 0, // audio: decoded samples
        });
      }
    }
    const publish = this.pcs.publish;
    if (publish && publish.signalingState !== "closed") {
      const trackIdByMid = new Map(Object.entries(this.localTracks).map(([id, info]) => [info.mid, id]));
      for (const stat of (await publish.getStats()).values()) {
        if (stat.type !== "outbound-rtp") continue;
        outbound.push({
          track_id: trackIdByMid.get(stat.mid) ?? null,
          mid: stat.mid ?? null,
          kind: stat.kind,
          framesEncoded: stat.framesEncoded ?? 0,
          packetsSent: stat.packetsSent ?? 0,
          bytesSent: stat.bytesSent ?? 0,
          frameWidth: stat.frameWidth ?? 0,
          frameHeight: stat.frameHeight ?? 0,
          // simulcast: one entry per layer
          rid: stat.rid ?? null,
          active: stat.active ?? null,
          qualityLimitationReason: stat.qualityLimitationReason ?? null,
          targetBitrate: stat.targetBitrate ?? 0,
        });
      }
    }
    return { inbound, outbound };
  }
}
