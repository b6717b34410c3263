"""A stateful GitHub REST double served over real HTTP, for tests that run the bot as a process."""

import asyncio
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from model.local import free_port


@dataclass
class GitHubState:
    """What the double has been asked; `delay` slows every API call down."""

    comments: list[dict[str, Any]] = field(default_factory=list)
    reactions: list[dict[str, Any]] = field(default_factory=list)
    tokens_minted: int = 0
    delay: float = 0.0
    permission: str = "write"


def make_app(state: GitHubState) -> Starlette:
    """Return the double's ASGI app over `state`."""

    async def access_token(request: Request) -> JSONResponse:
        state.tokens_minted += 1
        expires = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 3600))
        installation = request.path_params["installation"]
        return JSONResponse({"token": f"ghs_{installation}", "expires_at": expires}, status_code=201)

    async def permission(request: Request) -> JSONResponse:
        await asyncio.sleep(state.delay)
        return JSONResponse({"permission": state.permission, "role_name": state.permission, "user": None})

    async def reaction(request: Request) -> JSONResponse:
        state.reactions.append({**request.path_params, **(await request.json())})
        return JSONResponse({"id": len(state.reactions)}, status_code=201)

    async def comment(request: Request) -> JSONResponse:
        await asyncio.sleep(state.delay)
        state.comments.append({**request.path_params, **(await request.json())})
        return JSONResponse({"id": len(state.comments)}, status_code=201)

    return Starlette(
        routes=[
            Route("/app/installations/{installation}/access_tokens", access_token, methods=["POST"]),
            Route("/repos/{owner}/{repo}/collaborators/{user}/permission", permission),
            Route("/repos/{owner}/{repo}/issues/comments/{comment}/reactions", reaction, methods=["POST"]),
            Route("/repos/{owner}/{repo}/issues/{number:int}/comments", comment, methods=["POST"]),
        ]
    )


@contextmanager
def serve_github(state: GitHubState) -> Iterator[str]:
    """Serve the double on localhost in a thread; yield its base URL."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(make_app(state), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
