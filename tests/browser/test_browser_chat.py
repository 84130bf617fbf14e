"""The web demo's chat panel: a thread per room with history, typing and read state, in
Chromium, over the chat REST API and the signalling socket's chat events."""

from __future__ import annotations

import pytest

from .conftest import OpenPage

pytestmark = pytest.mark.browser

TIMEOUT_MS = 15_000


async def _send(page: object, text: str) -> None:
    await page.fill(".chat-input", text)  # type: ignore[attr-defined]
    await page.click(".chat-form button[type=submit]")  # type: ignore[attr-defined]


async def test_chat_panel_history_typing_and_read_state(open_call_page: OpenPage) -> None:
    ada = await open_call_page("Ada", "chatroom")
    bob = await open_call_page("Bob", "chatroom")
    for page in (ada, bob):
        await page.wait_for_function(  # type: ignore[attr-defined]
            "() => window.switchboard.chat.threadId !== null", timeout=TIMEOUT_MS
        )
    same = await ada.evaluate("() => window.switchboard.chat.threadId")  # type: ignore[attr-defined]
    assert same == await bob.evaluate("() => window.switchboard.chat.threadId")  # type: ignore[attr-defined]

    # typing: Ada types, Bob sees "Ada typing…"
    await ada.type(".chat-input", "hel")  # type: ignore[attr-defined]
    await bob.wait_for_function(  # type: ignore[attr-defined]
        "() => window.switchboard.chat.typing.includes('Ada')", timeout=TIMEOUT_MS
    )
    await _send(ada, "hello Bob")
    # Bob gets it live; his page is visible, so it sends a read receipt; Ada sees it read.
    await bob.wait_for_function(  # type: ignore[attr-defined]
        "() => window.switchboard.chat.messages.some(m => m.text === 'hello Bob' && !m.own"
        " && m.sender === 'Ada')",
        timeout=TIMEOUT_MS,
    )
    await ada.wait_for_function(  # type: ignore[attr-defined]
        "() => Object.values(window.switchboard.chat.readBy).some(r => r.includes('Bob'))",
        timeout=TIMEOUT_MS,
    )
    assert "read by Bob" in await ada.text_content(".chat-message.own .chat-read")  # type: ignore[attr-defined]
    await _send(bob, "hi Ada")
    await ada.wait_for_function(  # type: ignore[attr-defined]
        "() => window.switchboard.chat.messages.some(m => m.text === 'hi Ada')",
        timeout=TIMEOUT_MS,
    )

    # history: a late joiner sees both messages, oldest first
    cy = await open_call_page("Cy", "chatroom")
    await cy.wait_for_function(  # type: ignore[attr-defined]
        "() => window.switchboard.chat.messages.length >= 2", timeout=TIMEOUT_MS
    )
    texts = await cy.evaluate("() => window.switchboard.chat.messages.map(m => m.text)")  # type: ignore[attr-defined]
    assert texts == ["hello Bob", "hi Ada"]
