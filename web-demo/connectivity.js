// The connectivity self-test page (/connectivity): the browser twin of
// `switchboard check-connectivity`. For each path it opens one RTCPeerConnection with a data
// channel, forced onto that path ("udp": no ICE servers; the TURN paths: iceTransportPolicy
// "relay" with one TURN URL), has the server answer with an echo peer
// (POST /v1/connectivity/probe) and measures the median round trip of PINGS echoes, in ms.
// Results: window.connectivity = {done, checks: [{path, ok, rtt_ms, error}]}.
import { fetchDemoToken, waitForIceGathering } from "/static/switchboard-client.js";

const PATHS = ["udp", "turn-udp", "turn-tcp", "turn-tls"];
const PINGS = 5;
const TIMEOUT_MS = 10_000;
const GATHERING_TIMEOUT_MS = 5_000;

const state = { done: false, checks: [] };
window.connectivity = state;

/** The first TURN URL (RFC 7065) in `iceServers` that forces `path`, with its server. */
export function turnUrlFor(path, iceServers) {
  for (const server of iceServers) {
    for (const url of [].concat(server.urls)) {
      const [scheme, rest = ""] = url.split(/:(.*)/s);
      const transport = (rest.split("?transport=")[1] || "udp").toLowerCase();
      const kind = scheme === "turns" ? "turn-tls" : scheme === "turn" ? `turn-${transport}` : null;
      if (kind === path) return { url, server };
    }
  }
  return null;
}

async function postJson(path, token, body) {
  const response = await fetch(path, {
    method: "POST",
    headers: { "Content-Type": "application/json", Authorization: `Bearer ${token}` },
    body: JSON.stringify(body),
  });
  const json = await response.json().catch(() => null);
  if (!response.ok) {
    const message = json && json.error ? json.error.message : response.statusText;
    throw new Error(`${response.status} ${message}`);
  }
  return json;
}

function withTimeout(promise, ms, message) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(message)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

async function probe(token, config, relay) {
  const pc = new RTCPeerConnection(config);
  try {
    const channel = pc.createDataChannel("echo");
    const opened = new Promise((resolve) => channel.addEventListener("open", resolve, { once: true }));
    await pc.setLocalDescription(await pc.createOffer());
    await waitForIceGathering(pc, GATHERING_TIMEOUT_MS);
    const offer = pc.localDescription.sdp;
    if (relay && !offer.includes(" typ relay")) {
      throw new Error("no relay allocated: the TURN server refused the credential or is unreachable");
    }
    const { sdp } = await postJson("/v1/connectivity/probe", token, { sdp: offer });
    await pc.setRemoteDescription({ type: "answer", sdp });
    await withTimeout(opened, TIMEOUT_MS, `no connectivity within ${TIMEOUT_MS / 1000} s (ICE ${pc.iceConnectionState})`);
    const rtts = [];
    for (let i = 0; i < PINGS; i++) {
      const echoed = new Promise((resolve) => {
        const onMessage = (event) => {
          if (event.data === `ping ${i}`) {
            channel.removeEventListener("message", onMessage);
            resolve();
          }
        };
        channel.addEventListener("message", onMessage);
      });
      const sent = performance.now();
      channel.send(`ping ${i}`);
      await withTimeout(echoed, TIMEOUT_MS, "an echo did not come back");
      rtts.push(performance.now() - sent);
    }
    rtts.sort((a, b) => a - b);
    return Math.round(rtts[Math.floor(rtts.length / 2)] * 100) / 100;
  } finally {
    pc.close();
  }
}

/** Run every check with `token`; calls `onResult` after each. */
export async function runChecks(token, onResult = () => {}) {
  let iceServers = [];
  let relayError = null;
  try {
    iceServers = (await postJson("/networkTraversal/:issueRelayConfiguration", token, {})).iceServers;
  } catch (error) {
    relayError = `no relay configuration: ${error.message}`;
  }
  const checks = [];
  for (const path of PATHS) {
    let check;
    let config = { iceServers: [] };
    const found = path === "udp" ? null : turnUrlFor(path, iceServers);
    if (path !== "udp" && !found) {
      check = { path, ok: false, rtt_ms: null, error: relayError || `the server hands out no ${path} URL` };
    } else {
      if (found) {
        const { url, server } = found;
        config = {
          iceServers: [{ urls: [url], username: server.username, credential: server.credential }],
          iceTransportPolicy: "relay",
        };
      }
      try {
        check = { path, ok: true, rtt_ms: await probe(token, config, path !== "udp"), error: null };
      } catch (error) {
        check = { path, ok: false, rtt_ms: null, error: String(error.message || error) };
      }
    }
    checks.push(check);
    onResult(check);
  }
  return checks;
}

function render(check) {
  const row = document.createElement("tr");
  row.dataset.path = check.path;
  row.className = check.ok ? "ok" : "failed";
  const cells = [check.path, check.ok ? "ok" : "FAIL", check.ok ? `${check.rtt_ms.toFixed(2)} ms` : "", check.error || ""];
  for (const text of cells) {
    const cell = document.createElement("td");
    cell.textContent = text;
    row.append(cell);
  }
  document.querySelector("#results tbody").append(row);
}

async function run(event) {
  if (event) event.preventDefault();
  const status = document.getElementById("status");
  const button = document.getElementById("run");
  button.disabled = true;
  state.done = false;
  state.checks = [];
  document.querySelector("#results tbody").replaceChildren();
  try {
    let token = document.getElementById("token").value.trim();
    if (!token) {
      status.textContent = "Getting a demo token…";
      token = (await fetchDemoToken("connectivity-check", "connectivity")).token;
    }
    status.textContent = "Checking…";
    state.checks = await runChecks(token, render);
    const failed = state.checks.filter((c) => !c.ok).map((c) => c.path);
    status.textContent = failed.length ? `Failed: ${failed.join(", ")}` : "Every path works.";
  } catch (error) {
    status.textContent = `The check could not run: ${error.message}`;
  } finally {
    state.done = true;
    button.disabled = false;
  }
}

document.getElementById("check-form").addEventListener("submit", run);
if (new URLSearchParams(window.location.search).get("autorun") === "1") run();
