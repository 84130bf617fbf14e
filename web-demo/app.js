// The demo page: a join form, a tile per participant, mute and leave buttons.
// The protocol itself lives in switchboard-client.js.

import { SwitchboardClient, fetchDemoToken } from "/static/switchboard-client.js";
import { setupDataControls } from "/static/reactions.js";
import { setupChat } from "/static/chat.js";

const $ = (selector) => document.querySelector(selector);

const form = $("#join-form");
const nameInput = $("#name");
const roomInput = $("#room");
const joinButton = $("#join");
const callSection = $("#call");
const tilesElement = $("#tiles");
const muteAudioButton = $("#mute-audio");
const muteVideoButton = $("#mute-video");
const leaveButton = $("#leave");
const statusElement = $("#status");
const roomLabel = $("#room-label");
const tileTemplate = $("#tile-template");

let client = null;
let localStream = null;
let leaving = false;
let serverDisconnect = null; // the `disconnect` event that announced the socket's close
const tiles = new Map(); // participant id -> tile element
// Participants who left. A subscribe offer made before someone left can be applied after the
// `participant_left` event: its tracks must not bring their tile back.
const departed = new Set();
const localMuted = { audio: false, video: false };

// State for tests and the curious: window.switchboard.
const state = {
  participantId: null,
  room: null,
  remote: {}, // participant id -> {name, tracks: {track id -> {kind, muted, mid}}}
  pcs: { publish: null, subscribe: null },
  async stats() {
    return client ? client.stats() : { inbound: [], outbound: [] };
  },
  // ICE restart of "publish" or "subscribe" (switchboard-client.js restartIce).
  async restartIce(target) {
    if (client) await client.restartIce(target);
  },
  // What we want of a remote simulcast track (switchboard-client.js updateSubscription).
  async updateSubscription(trackId, preference) {
    return client ? client.updateSubscription(trackId, preference) : null;
  },
};
window.switchboard = state;
// The room's chat thread: history, typing and read state (chat.js).
const chat = setupChat({ root: $("#chat"), state });
// Reactions and raise-hand over the in-call data channel (reactions.js).
const wireDataControls = setupDataControls({ getClient: () => client, tileOf: (id) => tiles.get(id), state });

// ---- status line -------------------------------------------------------------------------

function setStatus(text, { error = false } = {}) {
  statusElement.textContent = text;
  statusElement.classList.toggle("error", error);
  if (error) console.error(text);
}

// ---- tiles -------------------------------------------------------------------------------

function ensureTile(participantId, name, { local = false } = {}) {
  let tile = tiles.get(participantId);
  if (!tile) {
    tile = tileTemplate.content.firstElementChild.cloneNode(true);
    tile.dataset.participantId = participantId;
    tile.classList.toggle("local", local);
    tile.media = { audio: null, video: null }; // kind -> track id shown
    if (local) tile.querySelector("audio").remove(); // never play our own microphone
    tiles.set(participantId, tile);
    if (local) tilesElement.prepend(tile);
    else tilesElement.append(tile);
  }
  if (name !== undefined) {
    tile.querySelector(".tile-name").textContent = name;
    tile.setAttribute("aria-label", name);
    tile.dataset.name = name;
  }
  return tile;
}

function removeTile(participantId) {
  const tile = tiles.get(participantId);
  if (!tile) return;
  for (const media of tile.querySelectorAll("video, audio")) media.srcObject = null;
  tile.remove();
  tiles.delete(participantId);
}

function setIndicator(tile, kind, muted) {
  tile.querySelector(`.indicator[data-kind="${kind}"]`).hidden = !muted;
  tile.dataset[`${kind}Muted`] = String(muted);
}

/** Show a remote participant's muted indicators from their published tracks. */
function refreshIndicators(participantId) {
  const tile = tiles.get(participantId);
  const remote = state.remote[participantId];
  if (!tile || !remote) return;
  for (const kind of ["audio", "video"]) {
    const tracks = Object.values(remote.tracks).filter((track) => track.kind === kind);
    setIndicator(tile, kind, tracks.length > 0 && tracks.every((track) => track.muted));
  }
}

function playMedia(element) {
  element.play().catch(() => {
    // Autoplay refused (audio without a user gesture): play on the next click.
    document.addEventListener("click", () => element.play().catch(() => {}), { once: true });
  });
}

function attachTrack(participantId, kind, trackId, track) {
  const remote = state.remote[participantId];
  const tile = ensureTile(participantId, remote ? remote.name : undefined);
  const element = tile.querySelector(kind === "video" ? "video" : "audio");
  if (!element) return;
  element.srcObject = new MediaStream([track]);
  tile.media[kind] = trackId;
  playMedia(element);
}

function detachTrack(participantId, kind, trackId) {
  const tile = tiles.get(participantId);
  if (!tile || tile.media[kind] !== trackId) return;
  const element = tile.querySelector(kind === "video" ? "video" : "audio");
  if (element) element.srcObject = null;
  tile.media[kind] = null;
}

// ---- roster ------------------------------------------------------------------------------

function addParticipant(participant) {
  if (participant.id === state.participantId) return;
  if (!state.remote[participant.id]) state.remote[participant.id] = { name: participant.name, tracks: {} };
  state.remote[participant.id].name = participant.name;
  ensureTile(participant.id, participant.name);
  refreshIndicators(participant.id);
}

function removeParticipant(participantId) {
  departed.add(participantId);
  delete state.remote[participantId];
  removeTile(participantId);
}

function addTrack(track) {
  if (track.participant_id === state.participantId) return;
  const remote = state.remote[track.participant_id];
  if (!remote) return;
  const existing = remote.tracks[track.track_id] || {};
  remote.tracks[track.track_id] = { ...existing, kind: track.kind, muted: Boolean(track.muted) };
  refreshIndicators(track.participant_id);
}

function onServerEvent(message) {
  switch (message.type) {
    case "participant_joined":
      addParticipant(message.participant);
      break;
    case "participant_left":
      removeParticipant(message.participant_id);
      break;
    case "track_published":
      addTrack(message.track);
      break;
    case "track_unpublished": {
      const remote = state.remote[message.participant_id];
      const track = remote && remote.tracks[message.track_id];
      if (track) {
        delete remote.tracks[message.track_id];
        detachTrack(message.participant_id, track.kind, message.track_id);
        refreshIndicators(message.participant_id);
      }
      break;
    }
    case "track_muted": {
      const remote = state.remote[message.participant_id];
      const track = remote && remote.tracks[message.track_id];
      if (track) {
        track.muted = message.muted;
        refreshIndicators(message.participant_id);
      }
      break;
    }
    case "speakers_changed": // RFC 6464 levels, ranked by the SFU (docs/protocol.md)
      for (const [id, tile] of tiles) {
        tile.classList.toggle("speaking", id === message.dominant);
        tile.dataset.speaking = String(message.speakers.includes(id));
      }
      break;
    case "disconnect":
      serverDisconnect = message;
      setStatus(`Disconnected by the server: ${message.reason} (${message.code})`, { error: true });
      break;
    default:
      break;
  }
}

// ---- joining and leaving -----------------------------------------------------------------

function wireClient(c) {
  wireDataControls(c);
  c.addEventListener("message", (event) => onServerEvent(event.detail));
  c.addEventListener("message", (event) => chat.onServerEvent(event.detail));
  c.addEventListener("track", (event) => {
    const { participantId, trackId, kind, mid, track } = event.detail;
    if (departed.has(participantId)) return;
    if (!state.remote[participantId]) state.remote[participantId] = { name: participantId, tracks: {} };
    const tracks = state.remote[participantId].tracks;
    tracks[trackId] = { kind, muted: false, ...tracks[trackId], mid };
    attachTrack(participantId, kind, trackId, track);
    refreshIndicators(participantId);
  });
  c.addEventListener("trackremoved", (event) => {
    const { participantId, trackId, kind } = event.detail;
    detachTrack(participantId, kind, trackId);
  });
  c.addEventListener("connectionstate", (event) => {
    const { target, state: connectionState } = event.detail;
    if (connectionState === "failed") {
      setStatus(`The ${target} connection failed (ICE/DTLS).`, { error: true });
    }
  });
  c.addEventListener("protocolerror", (event) => {
    setStatus(`Error: ${event.detail.error.message}`, { error: true });
  });
  c.addEventListener("close", (event) => {
    if (c !== client) return;
    const { code, reason } = event.detail;
    if (!leaving && !serverDisconnect) {
      setStatus(`Connection closed (${code}${reason ? `: ${reason}` : ""}).`, { error: true });
    }
    client = null;
    resetCall();
  });
}

async function getLocalMedia() {
  try {
    // ?video=1280x720 asks the camera for another size (the simulcast browser test does).
    const [width, height] = (params.get("video") || "640x480").split("x").map(Number);
    return await navigator.mediaDevices.getUserMedia({ audio: true, video: { width, height } });
  } catch (error) {
    // No camera? Try the microphone alone before giving up on publishing.
    try {
      const stream = await navigator.mediaDevices.getUserMedia({ audio: true });
      setStatus(`Camera unavailable (${error.message}); publishing audio only.`, { error: true });
      return stream;
    } catch {
      throw new Error(`cannot open the camera or microphone: ${error.message}`);
    }
  }
}

async function join(name, room) {
  joinButton.disabled = true;
  leaving = false;
  serverDisconnect = null;
  try {
    setStatus("Getting a token…");
    const { token, user_id: userId, chat_thread_id: threadId } = await fetchDemoToken(name, room);
    // ?relay=1: media only through the server's TURN relays (iceTransportPolicy "relay").
    const relay = new URLSearchParams(window.location.search).get("relay") === "1";
    client = new SwitchboardClient({ iceTransportPolicy: relay ? "relay" : "all" });
    wireClient(client);
    setStatus("Connecting…");
    await client.connect();
    await client.authenticate(token);
    const result = await client.join(room, name);
    state.participantId = result.participant.id;
    state.room = result.room;
    state.pcs = client.pcs;
    form.hidden = true;
    callSection.hidden = false;
    roomLabel.hidden = false;
    roomLabel.textContent = `Room ${result.room}`;
    ensureTile(state.participantId, `${result.participant.name} (you)`, { local: true });
    for (const participant of result.participants) addParticipant(participant);
    for (const track of result.tracks) addTrack(track);
    if (threadId) chat.start({ token, userId, threadId, name });
    setStatus(`Joined ${result.room}. Opening camera and microphone…`);
  } catch (error) {
    setStatus(`Could not join: ${error.message}`, { error: true });
    const failed = client;
    client = null; // so that its close event does not overwrite this message
    if (failed) failed.close();
    resetCall();
    return;
  }
  try {
    localStream = await getLocalMedia();
    const video = tiles.get(state.participantId).querySelector("video");
    video.srcObject = localStream;
    playMedia(video);
    const published = await client.publish(localStream);
    muteAudioButton.disabled = !published.some((track) => track.kind === "audio");
    muteVideoButton.disabled = !published.some((track) => track.kind === "video");
    if (!statusElement.classList.contains("error")) setStatus(`In room ${state.room}.`);
  } catch (error) {
    setStatus(`Could not publish: ${error.message}`, { error: true });
  }
}

function resetCall() {
  if (localStream) for (const track of localStream.getTracks()) track.stop();
  localStream = null;
  chat.stop();
  for (const participantId of [...tiles.keys()]) removeTile(participantId);
  for (const key of Object.keys(state.remote)) delete state.remote[key];
  departed.clear();
  state.participantId = null;
  state.room = null;
  state.pcs = { publish: null, subscribe: null };
  localMuted.audio = localMuted.video = false;
  updateMuteButton(muteAudioButton, "microphone", false);
  updateMuteButton(muteVideoButton, "camera", false);
  muteAudioButton.disabled = muteVideoButton.disabled = true;
  callSection.hidden = true;
  roomLabel.hidden = true;
  form.hidden = false;
  joinButton.disabled = false;
}

async function leave() {
  if (!client) return;
  leaving = true;
  leaveButton.disabled = true;
  const c = client;
  try {
    await c.leave();
    setStatus("You left the room.");
  } catch (error) {
    setStatus(`Leave failed: ${error.message}`, { error: true });
  } finally {
    client = null;
    resetCall();
    leaveButton.disabled = false;
  }
}

function updateMuteButton(button, noun, muted) {
  button.setAttribute("aria-pressed", String(muted));
  button.textContent = `${muted ? "Unmute" : "Mute"} ${noun}`;
}

async function toggleMute(kind) {
  if (!client) return;
  const muted = !localMuted[kind];
  const button = kind === "audio" ? muteAudioButton : muteVideoButton;
  button.disabled = true;
  try {
    await client.setMuted(kind, muted);
    localMuted[kind] = muted;
    updateMuteButton(button, kind === "audio" ? "microphone" : "camera", muted);
    const tile = tiles.get(state.participantId);
    if (tile) setIndicator(tile, kind, muted);
  } catch (error) {
    setStatus(`Could not ${muted ? "mute" : "unmute"}: ${error.message}`, { error: true });
  } finally {
    button.disabled = false;
  }
}

// ---- wiring ------------------------------------------------------------------------------

form.addEventListener("submit", (event) => {
  event.preventDefault();
  join(nameInput.value.trim(), roomInput.value.trim());
});
muteAudioButton.addEventListener("click", () => toggleMute("audio"));
muteVideoButton.addEventListener("click", () => toggleMute("video"));
leaveButton.addEventListener("click", () => leave());
window.addEventListener("pagehide", () => {
  if (client) client.close();
});

// ?name=Ada&room=r1&autojoin=1 fills the form (and joins): the browser tests use it.
const params = new URLSearchParams(window.location.search);
if (params.has("name")) nameInput.value = params.get("name");
if (params.has("room")) roomInput.value = params.get("room");
if (params.get("autojoin") === "1") form.requestSubmit();
