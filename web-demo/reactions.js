// Reactions and raise-hand over the in-call data channel (in-call-data.js).
//
// Payloads are small JSON texts: {"type": "reaction", "emoji": "👍"} on the lossy channel (a
// lost one is no loss), {"type": "hand", "raised": true|false} on the reliable one. A newcomer
// is told of a raised hand with a message targeted at it as soon as it joins: the SFU holds
// it until the newcomer's data channel opens.
//
// For tests and the curious, window.switchboard gains: `received` (every data message:
// {senderId, reliable, text} or {senderId, reliable, bytes, sha256}), `reactions`
// ({senderId, emoji}), `hands` (participant id -> raised), `dropped` (the server's reports),
// and `sendData(payload, options)`.

const $ = (selector) => document.querySelector(selector);
const REACTION_SHOWN_MS = 2500;

async function sha256Hex(bytes) {
  const digest = await crypto.subtle.digest("SHA-256", bytes);
  return [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

/**
 * Wire the page's controls once. `getClient()` is the current SwitchboardClient (or null),
 * `tileOf(participantId)` its tile element (or undefined), `state` is window.switchboard.
 */
export function setupDataControls({ getClient, tileOf, state }) {
  const handButton = $("#raise-hand");
  let handRaised = false;
  let ordered = Promise.resolve(); // keeps `received` in arrival order across async digests
  Object.assign(state, { received: [], reactions: [], hands: {}, dropped: [] });
  state.sendData = (payload, options) => {
    const client = getClient();
    if (!client) return Promise.reject(new Error("not in a call"));
    return client.sendData(payload, options);
  };
  // Our raw channels ({reliable, lossy}), for tests that send what a bad client would.
  state.dataChannels = () => (getClient() ? getClient().data.channels : null);

  function showHand(participantId, raised) {
    state.hands[participantId] = raised;
    const tile = tileOf(participantId);
    if (!tile) return;
    tile.dataset.hand = String(raised);
    const badge = tile.querySelector(".hand");
    if (badge) badge.hidden = !raised;
  }

  function showReaction(participantId, emoji) {
    state.reactions.push({ senderId: participantId, emoji });
    const tile = tileOf(participantId);
    const burst = tile && tile.querySelector(".reaction-burst");
    if (!burst) return;
    burst.textContent = emoji;
    burst.hidden = false;
    clearTimeout(burst.timer);
    burst.timer = setTimeout(() => { burst.hidden = true; }, REACTION_SHOWN_MS);
  }

  function setHand(raised) {
    handRaised = raised;
    handButton.setAttribute("aria-pressed", String(raised));
    handButton.textContent = raised ? "Lower hand" : "Raise hand";
    if (state.participantId) showHand(state.participantId, raised);
  }

  function send(payload, options) {
    state.sendData(JSON.stringify(payload), options).catch((error) => {
      const status = $("#status");
      status.textContent = `Could not send: ${error.message}`;
      status.classList.add("error");
    });
  }

  handButton.addEventListener("click", () => {
    setHand(!handRaised);
    send({ type: "hand", raised: handRaised }, { reliable: true });
  });
  for (const button of document.querySelectorAll(".reaction-button")) {
    button.addEventListener("click", () => {
      const emoji = button.dataset.emoji;
      if (state.participantId) showReaction(state.participantId, emoji);
      send({ type: "reaction", emoji }, { reliable: false });
    });
  }

  /** Wire one client (called for each join). */
  return function wireClient(client) {
    client.addEventListener("data", (event) => {
      const { senderId, payload, reliable } = event.detail;
      if (typeof payload === "string") {
        ordered = ordered.then(() => state.received.push({ senderId, reliable, text: payload }));
        let message = null;
        try {
          message = JSON.parse(payload);
        } catch {
          return; // not one of ours: recorded above, nothing to show
        }
        if (message && message.type === "reaction" && typeof message.emoji === "string") {
          showReaction(senderId, message.emoji.slice(0, 8));
        } else if (message && message.type === "hand") {
          showHand(senderId, Boolean(message.raised));
        }
      } else {
        const digest = sha256Hex(payload);
        ordered = ordered.then(async () => {
          state.received.push({ senderId, reliable, bytes: payload.length, sha256: await digest });
        });
      }
    });
    client.addEventListener("datadropped", (event) => state.dropped.push(event.detail));
    client.addEventListener("message", (event) => {
      const message = event.detail;
      if (message.type === "participant_joined" && handRaised) {
        send({ type: "hand", raised: true }, { reliable: true, to: [message.participant.id] });
      } else if (message.type === "participant_left") {
        delete state.hands[message.participant_id];
      }
    });
    client.addEventListener("close", () => setHand(false));
  };
}
