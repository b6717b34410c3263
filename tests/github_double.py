"""A stateful GitHub REST double served over real HTTP, for tests that run the bot as a process."""

import asyncio
import os
import time
from collections.abc import AsyncIterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from tests.github_git_double import ReportState, report_routes
from tests.serving import JSONResponse, serve_in_thread


@dataclass
class GitHubState:
    """What the double has been asked; `delay` slows every API call down."""

    comments: list[dict[str, Any]] = field(default_factory=list)
    reactions: list[dict[str, Any]] = field(default_factory=list)
    tokens_minted: int = 0
    delay: float = 0.0
    permission: str = "write"
    reports: ReportState = field(default_factory=ReportState)
    # Artifacts whose storage answers without a Content-Length: their zip streamed in 64 KiB chunks,
    # so that only a reader's own count can stop it.
    unsized_artifacts: set[int] = field(default_factory=set)


def make_app(state: GitHubState) -> Starlette:
    """Return the double's ASGI app over `state`."""

    async def access_token(request: Request) -> JSONResponse:
        state.tokens_minted += 1
        expires = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 3600))
        installation = request.path_params["installation"]
        return JSONResponse({"token": f"ghs_{installation}", "expires_at": expires}, status_code=201)

    async def the_app(request: Request) -> JSONResponse:
        return JSONResponse({"id": 1, "slug": "orbit", "name": "orbit", "owner": {"login": "octo-org"}})

    async def permission(request: Request) -> JSONResponse:
        await asyncio.sleep(state.delay)
        return JSONResponse({"permission": state.permission, "role_name": state.permission, "user": None})

    async def reaction(request: Request) -> JSONResponse:
        state.reactions.append({**request.path_params, **(await request.json())})
        return JSONResponse({"id": len(state.reactions)}, status_code=201)

    async def reactions(request: Request) -> JSONResponse:
        comment = request.path_params["comment"]
        return JSONResponse(
            [
                {"id": i + 1, "content": r["content"], "user": {"login": "orbit[bot]", "type": "Bot"}}
                for i, r in enumerate(state.reactions)
                if r["comment"] == comment
            ]
        )

    async def unsized_storage(request: Request) -> Response:
        artifact = int(request.path_params["artifact"])
        state.reports.storage_auth.append(request.headers.get("authorization"))
        data = state.reports.artifact_zips[artifact]
        if artifact not in state.unsized_artifacts:
            return Response(data, media_type="application/zip")

        async def chunks() -> AsyncIterator[bytes]:
            for start in range(0, len(data), 65_536):
                yield data[start : start + 65_536]

        return StreamingResponse(chunks(), media_type="application/zip")

    async def comment(request: Request) -> Response:
        await asyncio.sleep(state.delay)
        state.comments.append({**request.path_params, **(await request.json())})
        return await state.reports.store_comment(request)

    async def job(request: Request) -> JSONResponse:
        job_id = int(request.path_params["job"])
        return JSONResponse(
            {
                "id": job_id,
                "run_id": job_id + 1_000_000,
                "status": "queued",
                "labels": ["self-hosted", "orbit-gpu"],
                "head_sha": "f" * 40,
                "html_url": f"https://github.example/job/{job_id}",
                "created_at": "2026-11-27T10:00:00Z",
            }
        )

    async def runs(request: Request) -> JSONResponse:
        return JSONResponse({"total_count": 0, "workflow_runs": []})

    async def run(request: Request) -> JSONResponse:
        run_id = int(request.path_params["run"])
        if run_id in state.reports.runs:  # a run the bot dispatched
            return JSONResponse(state.reports.runs[run_id])
        return JSONResponse(
            {
                "id": run_id,
                "status": "queued",
                "display_title": f"orbit/train PR #{run_id % 1000} at " + "f" * 40,
                "head_sha": "f" * 40,
            }
        )

    async def jit(request: Request) -> JSONResponse:
        body = await request.json()
        return JSONResponse(
            {
                "runner": {"id": abs(hash(body["name"])) % 10**9, "name": body["name"]},
                "encoded_jit_config": "ZW5jb2RlZC1qaXQtY29uZmln",
            },
            status_code=201,
        )

    return Starlette(
        routes=[
            # Before the report routes: storage that may stream an artifact without its length.
            Route("/_storage/artifacts/{artifact:int}", unsized_storage),
            *report_routes(state.reports),
            Route("/repos/{owner}/{repo}/actions/jobs/{job:int}", job),
            Route("/repos/{owner}/{repo}/actions/workflows/{workflow}/runs", runs),
            Route("/repos/{owner}/{repo}/actions/runs/{run:int}", run),
            Route("/repos/{owner}/{repo}/actions/runners/generate-jitconfig", jit, methods=["POST"]),
            Route("/app/installations/{installation}/access_tokens", access_token, methods=["POST"]),
            Route("/app", the_app),
            Route("/repos/{owner}/{repo}/collaborators/{user}/permission", permission),
            Route("/repos/{owner}/{repo}/issues/comments/{comment}/reactions", reaction, methods=["POST"]),
            Route("/repos/{owner}/{repo}/issues/comments/{comment}/reactions", reactions),
            Route("/repos/{owner}/{repo}/issues/{number:int}/comments", comment, methods=["POST"]),
        ]
    )


def app() -> Starlette:
    """Return a double with fresh state (for `uvicorn --factory` in its own process)."""
    return make_app(GitHubState())


def report_app() -> Starlette:
    """Return a double where every training run has the bundle at $ORBIT_BENCH_BUNDLE (benchmarks)."""
    state = GitHubState()
    state.reports.every_run_artifact = ("orbit-report", Path(os.environ["ORBIT_BENCH_BUNDLE"]).read_bytes())
    return make_app(state)


def deploy_app() -> Starlette:
    """Return a double where every build run has the image reference at $ORBIT_BENCH_IMAGE (benchmarks)."""
    state = GitHubState()
    state.reports.every_run_artifact = ("orbit-image", Path(os.environ["ORBIT_BENCH_IMAGE"]).read_bytes())
    return make_app(state)


def serve_github(state: GitHubState) -> AbstractContextManager[str]:
    """Serve the double on localhost in a thread; the context yields its base URL."""
    return serve_in_thread(make_app(state))
