// In-call data over the SFU's data channels (docs/protocol.md, "In-call data").
//
// The client opens "reliable" (ordered) and "lossy" (unordered, maxRetransmits 0) data
// channels on its publish connection; the SFU sends the room's messages back on the same
// channels (until they are open, messages for us wait at the SFU). Every message is one
// binary envelope:
//   byte 0: version (1); byte 1: flags (bit 0: the payload is UTF-8 text);
//   bytes 2-3: header length N (big-endian); N bytes: a UTF-8 JSON header; then the payload.
// Header to the SFU: {"to": [participant ids]} or {} for everyone; from the SFU: {"from": id},
// stamped by the SFU (a "from" a client writes is ignored).

export const MAX_PAYLOAD_BYTES = 255 * 1024; // a whole envelope fits Chromium's 256 KiB
const VERSION = 1;
const FLAG_TEXT = 1;
const encoder = new TextEncoder();
const decoder = new TextDecoder("utf-8", { fatal: true });

/** Encode `payload` (string: text; ArrayBuffer or typed array: binary) for `to` (or null). */
export function encodeEnvelope(payload, to = null) {
  const text = typeof payload === "string";
  let body;
  if (text) body = encoder.encode(payload);
  else if (payload instanceof ArrayBuffer) body = new Uint8Array(payload);
  else if (ArrayBuffer.isView(payload)) body = new Uint8Array(payload.buffer, payload.byteOffset, payload.byteLength);
  else throw new TypeError("in-call data is a string, an ArrayBuffer or a typed array");
  const header = encoder.encode(JSON.stringify(to ? { to } : {}));
  const out = new Uint8Array(4 + header.length + body.length);
  out[0] = VERSION;
  out[1] = text ? FLAG_TEXT : 0;
  out[2] = header.length >> 8;
  out[3] = header.length & 0xff;
  out.set(header, 4);
  out.set(body, 4 + header.length);
  return { bytes: out, payloadBytes: body.length };
}

/** Decode one message from the SFU: {senderId, payload (string or Uint8Array), text}. */
export function decodeEnvelope(buffer) {
  const data = new Uint8Array(buffer);
  if (data.length < 4 || data[0] !== VERSION) throw new Error("not an in-call data envelope");
  const length = (data[2] << 8) | data[3];
  const header = JSON.parse(decoder.decode(data.subarray(4, 4 + length)));
  const body = data.subarray(4 + length);
  const text = (data[1] & FLAG_TEXT) !== 0;
  return { senderId: header.from, payload: text ? decoder.decode(body) : body.slice(), text };
}

/**
 * One client's in-call data. Emits, on the client: "data" {senderId, payload, reliable} and
 * "datadropped" {reason, messages, bytes, detail} (the server's `data_dropped` reports).
 */
export class InCallData {
  constructor(client) {
    this.client = client;
    this.channels = { reliable: null, lossy: null }; // ours, on the publish connection
    this.dropped = {}; // reason -> messages the server reported dropped
    client.addEventListener("message", (event) => {
      const message = event.detail;
      if (message.type !== "data_dropped") return;
      this.dropped[message.reason] = (this.dropped[message.reason] || 0) + message.messages;
      client._emit("datadropped", message);
    });
  }

  /** Create our two channels on the publish connection, before its offer (they carry both ways). */
  attachPublish(pc) {
    if (this.channels.reliable) return;
    this.channels.reliable = pc.createDataChannel("reliable", { ordered: true });
    this.channels.lossy = pc.createDataChannel("lossy", { ordered: false, maxRetransmits: 0 });
    for (const [label, channel] of Object.entries(this.channels)) {
      channel.binaryType = "arraybuffer";
      this._receive(channel, label === "reliable");
    }
  }

  _receive(channel, reliable) {
    channel.addEventListener("message", (message) => {
      let decoded;
      try {
        decoded = decodeEnvelope(message.data);
      } catch (error) {
        this.client._emit("protocolerror", { error });
        return;
      }
      const detail = { senderId: decoded.senderId, payload: decoded.payload, reliable };
      if (this.client.onData) this.client.onData(detail.senderId, detail.payload, reliable);
      this.client._emit("data", detail);
    });
  }


  /**
   * Send `payload` to everyone else in the room, or to the participant ids `to`. Opens a
   * data-only publish connection if nothing is published yet; waits for the channel to open.
   * Rejects with a SwitchboardError "data_too_large" over MAX_PAYLOAD_BYTES (never cut).
   */
  async send(payload, { reliable = true, to = null } = {}) {
    const { bytes, payloadBytes } = encodeEnvelope(payload, to);
    if (payloadBytes > MAX_PAYLOAD_BYTES) {
      const error = new Error(`payload of ${payloadBytes} bytes; in-call data messages are at most ${MAX_PAYLOAD_BYTES} bytes`);
      error.code = "data_too_large";
      throw error;
    }
    if (to !== null && (!Array.isArray(to) || to.length === 0)) throw new TypeError("`to` lists participant ids (null: everyone)");
    if (!this.channels.reliable) await this.client.publish(new MediaStream());
    const channel = this.channels[reliable ? "reliable" : "lossy"];
    if (channel.readyState === "connecting") {
      await new Promise((resolve, reject) => {
        channel.addEventListener("open", resolve, { once: true });
        channel.addEventListener("close", () => reject(new Error("data channel closed")), { once: true });
      });
    }
    channel.send(bytes);
  }
}
