// The room's chat panel: history, sending, typing and read state over the chat REST API
// (/chat/threads/..., the ACS Chat shapes; docs/api.md "Chat"), with real-time events from the
// signalling socket (`chat_event` messages; docs/protocol.md "Chat events").
//
// setupChat({root}) returns {start({token, userId, threadId}), stop(), onServerEvent(message)}.
// State for tests: window.switchboard.chat = {threadId, messages: [{id, sender, text, own,
// deleted}], typing: [names], readBy: {message id -> [names]}}.

const API_VERSION = "2024-03-07";
const TYPING_INTERVAL_MS = 8000; // ACS's: at most one typing notification per 8 s
const TYPING_SHOWN_MS = 9000; // how long "X is typing" stays without a new notification
const HISTORY_PAGE = 50;

export function setupChat({ root, state }) {
  const list = root.querySelector(".chat-messages");
  const typingLine = root.querySelector(".chat-typing");
  const form = root.querySelector(".chat-form");
  const input = root.querySelector(".chat-input");
  const errorLine = root.querySelector(".chat-error");

  let session = null; // {token, userId, threadId}
  const names = new Map(); // raw id -> display name
  const messages = new Map(); // message id -> {id, sender, text, own, deleted, element}
  const receipts = new Map(); // raw id -> newest message id read (number)
  const typing = new Map(); // raw id -> timer
  let lastTypingSent = 0;
  let lastReceiptSent = 0;

  const view = { threadId: null, messages: [], typing: [], readBy: {} };
  state.chat = view;

  async function api(method, path, body) {
    const url = `/chat/threads/${encodeURIComponent(session.threadId)}${path}`;
    const response = await fetch(`${url}${url.includes("?") ? "&" : "?"}api-version=${API_VERSION}`, {
      method,
      headers: { Authorization: `Bearer ${session.token}`, "Content-Type": "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await response.text();
    const data = text ? JSON.parse(text) : {};
    if (!response.ok) {
      const error = data.error || { code: response.status, message: response.statusText };
      throw new Error(`${error.code}: ${error.message}`);
    }
    return data;
  }

  function showError(error) {
    errorLine.textContent = error ? String(error.message || error) : "";
    errorLine.hidden = !error;
  }

  function nameOf(rawId, fallback) {
    return names.get(rawId) || fallback || "someone";
  }

  function render(entry) {
    if (!entry.element) {
      entry.element = document.createElement("li");
      entry.element.className = "chat-message";
      entry.element.dataset.messageId = entry.id;
      entry.element.append(document.createElement("b"), document.createElement("span"));
      const read = document.createElement("small");
      read.className = "chat-read";
      entry.element.append(read);
      // keep the list ordered by message id (ids grow with time)
      const after = [...list.children].find((li) => Number(li.dataset.messageId) > Number(entry.id));
      list.insertBefore(entry.element, after || null);
    }
    entry.element.classList.toggle("own", entry.own);
    entry.element.classList.toggle("deleted", entry.deleted);
    entry.element.querySelector("b").textContent = entry.own ? "You" : entry.sender;
    entry.element.querySelector("span").textContent = entry.deleted ? "message deleted" : entry.text;
  }

  function refreshView() {
    const ordered = [...messages.values()].sort((a, b) => Number(a.id) - Number(b.id));
    view.messages = ordered.map(({ id, sender, text, own, deleted }) => ({ id, sender, text, own, deleted }));
    view.typing = [...typing.keys()].map((id) => nameOf(id));
    typingLine.textContent = view.typing.length ? `${view.typing.join(", ")} typing…` : "";
    // Read state: who has read each of my messages (a receipt covers every older message).
    view.readBy = {};
    for (const entry of ordered) {
      if (!entry.own || !entry.element) continue;
      const readers = [...receipts]
        .filter(([rawId, readId]) => rawId !== session.userId && readId >= Number(entry.id))
        .map(([rawId]) => nameOf(rawId));
      view.readBy[entry.id] = readers;
      entry.element.querySelector(".chat-read").textContent = readers.length
        ? `read by ${readers.join(", ")}`
        : "sent";
    }
    list.scrollTop = list.scrollHeight;
  }

  function addMessage(message) {
    if (message.type !== "text" && message.type !== "html") return;
    const sender = message.senderCommunicationIdentifier ? message.senderCommunicationIdentifier.rawId : null;
    const entry = messages.get(message.id) || { id: message.id };
    entry.sender = message.senderDisplayName || nameOf(sender);
    entry.own = sender === session.userId;
    entry.deleted = Boolean(message.deletedOn);
    entry.text = message.content ? message.content.message : "";
    messages.set(message.id, entry);
    render(entry);
    if (sender && typing.has(sender)) {
      clearTimeout(typing.get(sender));
      typing.delete(sender);
    }
  }

  /** Tell the others we read up to the newest message (when the page is visible). */
  async function markRead() {
    const newest = [...messages.values()].filter((m) => !m.own).map((m) => Number(m.id));
    if (!newest.length || document.hidden) return;
    const id = Math.max(...newest);
    if (id <= lastReceiptSent) return;
    lastReceiptSent = id;
    try {
      await api("POST", "/readReceipts", { chatMessageId: String(id) });
    } catch (error) {
      showError(error);
    }
  }

  async function start({ token, userId, threadId, name }) {
    session = { token, userId, threadId };
    view.threadId = threadId;
    names.set(userId, name);
    root.hidden = false;
    try {
      const participants = await api("GET", "/participants?maxPageSize=200");
      for (const p of participants.value) {
        if (p.displayName) names.set(p.communicationIdentifier.rawId, p.displayName);
      }
      const history = await api("GET", `/messages?maxPageSize=${HISTORY_PAGE}`);
      for (const message of history.value) addMessage(message);
      const read = await api("GET", "/readReceipts?maxPageSize=200");
      for (const r of read.value) receipts.set(r.senderCommunicationIdentifier.rawId, Number(r.chatMessageId));
      refreshView();
      await markRead();
    } catch (error) {
      showError(error);
    }
  }

  function stop() {
    session = null;
    for (const timer of typing.values()) clearTimeout(timer);
    typing.clear();
    messages.clear();
    receipts.clear();
    names.clear();
    list.replaceChildren();
    typingLine.textContent = "";
    lastTypingSent = lastReceiptSent = 0;
    view.threadId = null;
    view.messages = [];
    view.typing = [];
    view.readBy = {};
    showError(null);
    root.hidden = true;
  }

  function onServerEvent(message) {
    if (message.type !== "chat_event" || !session || message.thread_id !== session.threadId) return;
    switch (message.event) {
      case "chatMessageReceived":
      case "chatMessageEdited":
      case "chatMessageDeleted":
        addMessage(message.message);
        if (message.event === "chatMessageReceived") markRead();
        break;
      case "typingIndicatorReceived": {
        const rawId = message.sender.rawId;
        if (message.senderDisplayName) names.set(rawId, message.senderDisplayName);
        clearTimeout(typing.get(rawId));
        typing.set(
          rawId,
          setTimeout(() => {
            typing.delete(rawId);
            refreshView();
          }, TYPING_SHOWN_MS),
        );
        break;
      }
      case "readReceiptReceived": {
        const rawId = message.sender.rawId;
        receipts.set(rawId, Math.max(receipts.get(rawId) || 0, Number(message.chatMessageId)));
        break;
      }
      case "participantsAdded":
        for (const p of message.participants) {
          if (p.displayName) names.set(p.communicationIdentifier.rawId, p.displayName);
        }
        break;
      default:
        return;
    }
    refreshView();
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const text = input.value.trim();
    if (!text || !session) return;
    input.value = "";
    try {
      await api("POST", "/messages", { content: text, senderDisplayName: names.get(session.userId) });
      showError(null);
    } catch (error) {
      input.value = text;
      showError(error);
    }
  });
  input.addEventListener("input", () => {
    const now = Date.now();
    if (!session || !input.value || now - lastTypingSent < TYPING_INTERVAL_MS) return;
    lastTypingSent = now;
    api("POST", "/typing", { senderDisplayName: names.get(session.userId) }).catch(showError);
  });
  document.addEventListener("visibilitychange", () => {
    if (session) markRead();
  });

  return { start, stop, onServerEvent };
}
