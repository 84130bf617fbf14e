"""The application factory: ``create_app(config)`` builds the HTTP and WebSocket service."""

from __future__ import annotations

import weakref
from collections.abc import AsyncIterator

from aiohttp import web

from ..sfu.worker import Worker
from . import access, chat, demo, errors, openapi, store
from .calls import ws
from .calls.resume import SESSIONS, SessionRegistry
from .calls.rooms import RoomRegistry
from .chat import routes as chat_routes
from .config import Config
from .identity import routes as identity_routes
from .identity.tokens import TokenService
from .keys import CONFIG, ROOMS, SFU, TOKENS
from .rooms import routes as rooms_routes
from .traversal import routes as traversal_routes


async def _media(app: web.Application) -> AsyncIterator[None]:
    app[SFU] = Worker(app[CONFIG].media)
    app[ROOMS] = RoomRegistry(app[SFU])
    yield
    await app[ROOMS].close()  # sessions → rooms → routers → transports
    await app[SFU].close()


def create_app(config: Config) -> web.Application:
    """Build the application. No I/O here: resources open in cleanup contexts, in order, and
    close in reverse order, only if they opened."""
    app = web.Application(middlewares=[errors.middleware], client_max_size=config.max_body_bytes)
    app[CONFIG] = config
    app[TOKENS] = TokenService(config.access_key)
    app.cleanup_ctx.extend([store.context, access.context, chat.context, _media])
    app[ws.SOCKETS] = weakref.WeakSet()
    app[SESSIONS] = SessionRegistry()  # participants whose socket dropped, for 30 s
    app.on_shutdown.append(ws.close_all_sockets)
    app.add_routes(identity_routes.routes)
    app.add_routes(rooms_routes.routes)
    app.add_routes(chat_routes.routes)
    app.add_routes(openapi.routes)
    app.add_routes(ws.routes)
    app.add_routes(traversal_routes.routes)
    if config.demo:
        app.add_routes(demo.routes)
        demo.add_static(app, config.web_demo_dir)
        traversal_routes.add_page(app)
    return app
