"""A stateful GitHub REST double served over real HTTP, for tests that run the bot as a process."""

import asyncio
import hashlib
import hmac
import itertools
import os
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import jwt
import orjson
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.gzip import GZipMiddleware
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from bot import app_manifest
from bot.delivery import signature_of
from tests.fakes import SECRET
from tests.github_git_double import ReportState, report_routes
from tests.serving import JSONResponse, serve_in_thread

HOOK_TIMEOUT = 10.0  # seconds GitHub waits for a webhook's answer


@dataclass
class HookState:
    """The App's webhook as GitHub keeps it: every delivery attempt, and where redeliveries go.

    `send` delivers a new event to `target` as GitHub would (signed with `secret`); `attempts` lists
    every attempt, oldest first, with its request; `fail_redelivery` maps an attempt id to the status
    GitHub answers when asked to redeliver it.
    """

    target: str = ""  # the App's webhook URL; nothing listens there while orbit is down
    secret: bytes = SECRET
    attempts: list[dict[str, Any]] = field(default_factory=list)
    redelivery_requests: list[int] = field(default_factory=list)
    fail_redelivery: dict[int, int] = field(default_factory=dict)
    _ids: "itertools.count[int]" = field(default_factory=lambda: itertools.count(12_000_000_001))
    _tasks: set["asyncio.Task[None]"] = field(default_factory=set)

    def send(self, event: str, payload: dict[str, Any], guid: str | None = None) -> dict[str, Any]:
        """Deliver a new event to `target` now, record the attempt and return it."""
        body, headers = self._request(event, payload, guid or str(uuid.uuid4()))
        try:
            answer = httpx.post(self.target, content=body, headers=headers, timeout=HOOK_TIMEOUT)
            outcome = (answer.status_code, answer.text)
        except httpx.HTTPError as error:
            outcome = (0, type(error).__name__)
        return self._record(event, payload, headers, outcome, redelivery=False)

    def record(
        self, event: str, payload: dict[str, Any], status_code: int, status: str = "", guid: str | None = None
    ) -> dict[str, Any]:
        """Record an attempt that was answered `status_code` without sending anything (0: no answer)."""
        _, headers = self._request(event, payload, guid or str(uuid.uuid4()))
        return self._record(event, payload, headers, (status_code, status), redelivery=False)

    def attempts_of(self, guid: str) -> list[dict[str, Any]]:
        """Return the attempts of one delivery, oldest first."""
        return [attempt for attempt in self.attempts if attempt["guid"] == guid]

    def listed(self, attempt: dict[str, Any]) -> dict[str, Any]:
        """Return an attempt as the list endpoint shows it (no request, no response)."""
        return {k: v for k, v in attempt.items() if k not in ("request", "response", "body")}

    async def redeliver(self, attempt: dict[str, Any]) -> None:
        """Send an attempt's exact bytes again, as GitHub does, in the background."""
        task = asyncio.create_task(self._resend(attempt))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _resend(self, attempt: dict[str, Any]) -> None:
        headers = dict(attempt["request"]["headers"])
        try:
            async with httpx.AsyncClient(timeout=HOOK_TIMEOUT) as client:
                answer = await client.post(self.target, content=attempt["body"], headers=headers)
            outcome = (answer.status_code, answer.text)
        except httpx.HTTPError as error:
            outcome = (0, type(error).__name__)
        payload = attempt["request"]["payload"]
        self._record(attempt["event"], payload, headers, outcome, redelivery=True)

    def _request(self, event: str, payload: dict[str, Any], guid: str) -> tuple[bytes, dict[str, str]]:
        body = orjson.dumps(payload)
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "GitHub-Hookshot/double",
            "X-GitHub-Event": event,
            "X-GitHub-Delivery": guid,
            "X-GitHub-Hook-ID": "1",
            "X-GitHub-Hook-Installation-Target-Type": "integration",
            "X-GitHub-Hook-Installation-Target-ID": "1",
            "X-Hub-Signature": "sha1=" + hmac.new(self.secret, body, hashlib.sha1).hexdigest(),
            "X-Hub-Signature-256": signature_of(self.secret, body),
        }
        return body, headers

    def _record(
        self,
        event: str,
        payload: dict[str, Any],
        headers: dict[str, str],
        outcome: tuple[int, str],
        redelivery: bool,
    ) -> dict[str, Any]:
        code, text = outcome
        ok = 200 <= code < 300
        attempt = {
            "id": next(self._ids),
            "guid": headers["X-GitHub-Delivery"],
            "delivered_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "redelivery": redelivery,
            "duration": 0.01,
            "status": "OK"
            if ok
            else (f"Invalid HTTP Response: {code}" if code else "failed to connect to host"),
            "status_code": code,
            "event": event,
            "action": payload.get("action"),
            "installation_id": (payload.get("installation") or {}).get("id"),
            "repository_id": None,
            "throttled_at": None,
            "url": self.target,
            "request": {"headers": headers, "payload": payload},
            "response": {"headers": {}, "payload": text},
            "body": orjson.dumps(payload),
        }
        self.attempts.append(attempt)
        return attempt


def hook_routes(hook: HookState) -> list[Route]:
    """Return the App's webhook delivery routes: list (cursor pages, `Link`), one attempt, redeliver."""

    async def deliveries(request: Request) -> JSONResponse:
        per_page = min(int(request.query_params.get("per_page", 30)), 100)
        cursor = request.query_params.get("cursor")
        below = int(cursor.removeprefix("v1_")) if cursor else None
        newest_first = [a for a in reversed(hook.attempts) if below is None or a["id"] < below]
        page = newest_first[:per_page]
        headers = {}
        if len(newest_first) > per_page:
            url = request.url.include_query_params(cursor=f"v1_{page[-1]['id']}", per_page=per_page)
            headers["link"] = f'<{url}>; rel="next"'
        return JSONResponse([hook.listed(a) for a in page], headers=headers)

    def find(request: Request) -> dict[str, Any] | None:
        wanted = int(request.path_params["attempt"])
        return next((a for a in hook.attempts if a["id"] == wanted), None)

    async def delivery(request: Request) -> JSONResponse:
        attempt = find(request)
        if attempt is None:
            return JSONResponse({"message": "Not Found"}, status_code=404)
        return JSONResponse({k: v for k, v in attempt.items() if k != "body"})

    async def redeliver(request: Request) -> JSONResponse:
        attempt = find(request)
        hook.redelivery_requests.append(int(request.path_params["attempt"]))
        if attempt is None:
            return JSONResponse({"message": "Not Found"}, status_code=404)
        failure = hook.fail_redelivery.get(attempt["id"])
        if failure:
            return JSONResponse({"message": "injected failure"}, status_code=failure)
        await hook.redeliver(attempt)
        return JSONResponse({}, status_code=202)

    return [
        Route("/app/hook/deliveries", deliveries),
        Route("/app/hook/deliveries/{attempt:int}", delivery),
        Route("/app/hook/deliveries/{attempt:int}/attempts", redeliver, methods=["POST"]),
    ]


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
    hook: HookState = field(default_factory=HookState)  # the App's webhook deliveries
    # The App as `GET /app` shows it. With `app_key` (its public key) set, the App's own endpoints
    # refuse a JWT that its private key did not sign, as GitHub does (401).
    app_key: Any = None
    app_failures: dict[str, int] = field(default_factory=dict)  # an App endpoint's path -> its error status
    app_permissions: dict[str, str] = field(default_factory=lambda: dict(app_manifest.PERMISSIONS))
    app_events: list[str] = field(default_factory=lambda: list(app_manifest.EVENTS))
    installations: list[dict[str, Any]] = field(
        default_factory=lambda: [{"id": 1, "account": {"login": "octo-org", "type": "Organization"}}]
    )
    # The App's webhook configuration (`GET /app/hook/config`): GitHub shows a secret that is set as ********.
    hook_config: dict[str, Any] = field(
        default_factory=lambda: {
            "content_type": "json",
            "insecure_ssl": "0",
            "secret": "********",
            "url": "https://orbit.example.com/webhook",
        }
    )
    files: dict[tuple[str, str], str] = field(default_factory=dict)  # (path, ref) -> text, for `contents`
    job_reads: int = 0  # `GET .../actions/jobs/{id}` requests answered
    # Every annotation each check run was sent, by check id, in order: GitHub appends each request's.
    annotations: dict[int, list[dict[str, Any]]] = field(default_factory=dict)


def default_pull(number: int) -> dict[str, Any]:
    """Return the pull request GitHub's double answers when a test registered none: open, onto main."""
    return {
        "number": number,
        "state": "open",
        "draft": False,
        "head": {"sha": "f" * 40, "repo": {"full_name": "octo-org/model"}},
        "base": {"ref": "main", "repo": {"full_name": "octo-org/model", "default_branch": "main"}},
    }


def check_routes(state: GitHubState, routes: list[Route]) -> list[Route]:
    """Return the check run routes of `routes` as GitHub has them: made by the App, annotations kept.

    A created check run names the App that made it (`app.slug`) and has an `html_url`; each update's
    annotations are appended to the run's, as GitHub does (a request carries at most 50).
    """
    repo = "/repos/{owner}/{repo}"
    create = next(r.endpoint for r in routes if r.path == f"{repo}/check-runs")
    update = next(r.endpoint for r in routes if r.path == f"{repo}/check-runs/{{check:int}}")

    async def created(request: Request) -> Response:
        answer = await create(request)
        check = state.reports.check_runs[max(state.reports.check_runs)]
        check.setdefault("app", {"slug": "orbit"})
        check.setdefault("html_url", f"https://github.com/octo-org/model/runs/{check['id']}")
        return JSONResponse({**orjson.loads(answer.body), **check}, 201)

    async def updated(request: Request) -> Response:
        body = await request.json()
        annotations = (body.get("output") or {}).get("annotations") or []
        if len(annotations) > 50:
            return JSONResponse({"message": "Validation Failed: at most 50 annotations"}, status_code=422)
        state.annotations.setdefault(int(request.path_params["check"]), []).extend(annotations)
        answer: Response = await update(request)
        return answer

    return [
        Route(f"{repo}/check-runs", created, methods=["POST"]),
        Route(f"{repo}/check-runs/{{check:int}}", updated, methods=["PATCH"]),
    ]


def make_app(state: GitHubState) -> Starlette:
    """Return the double's ASGI app over `state`."""

    async def access_token(request: Request) -> JSONResponse:
        state.tokens_minted += 1
        expires = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 3600))
        installation = request.path_params["installation"]
        return JSONResponse({"token": f"ghs_{installation}", "expires_at": expires}, status_code=201)

    def as_app(request: Request) -> JSONResponse | None:
        """Return an injected failure, or GitHub's 401 when `app_key` is set and the JWT is not the App's."""
        if (failure := state.app_failures.get(request.url.path)) is not None:
            return JSONResponse({"message": "injected failure"}, status_code=failure)
        if state.app_key is None:
            return None
        token = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
        try:
            jwt.decode(token, state.app_key, algorithms=["RS256"])
        except jwt.PyJWTError:
            return JSONResponse({"message": "A JSON web token could not be decoded"}, status_code=401)
        return None

    async def the_app(request: Request) -> JSONResponse:
        if (refused := as_app(request)) is not None:
            return refused
        return JSONResponse(
            {
                "id": 1,
                "slug": "orbit",
                "name": "orbit",
                "owner": {"login": "octo-org"},
                "html_url": "https://github.com/apps/orbit",
                "permissions": state.app_permissions,
                "events": state.app_events,
            }
        )

    async def installations(request: Request) -> JSONResponse:
        return as_app(request) or JSONResponse(state.installations)

    async def hook_config(request: Request) -> JSONResponse:
        return as_app(request) or JSONResponse(state.hook_config)

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
        state.job_reads += 1
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

    async def counts(_: Request) -> JSONResponse:  # for benchmarks in another process: what was asked
        return JSONResponse({"tokens_minted": state.tokens_minted, "job_reads": state.job_reads})

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

    async def pull(request: Request) -> JSONResponse:
        number = int(request.path_params["number"])
        return JSONResponse(state.reports.pulls.get(number) or default_pull(number))

    async def contents(request: Request) -> Response:
        text = state.files.get((request.path_params["path"], request.query_params.get("ref", "")))
        if text is None:
            return JSONResponse({"message": "Not Found"}, status_code=404)
        return Response(text, media_type="application/vnd.github.raw+json")

    async def jit(request: Request) -> JSONResponse:
        body = await request.json()
        return JSONResponse(
            {
                "runner": {"id": abs(hash(body["name"])) % 10**9, "name": body["name"]},
                "encoded_jit_config": "ZW5jb2RlZC1qaXQtY29uZmln",
            },
            status_code=201,
        )

    # api.github.com gzips what it answers a client that accepts it (artifacts' zips excepted)
    gzipped = Middleware(GZipMiddleware, minimum_size=1, compresslevel=1)
    return Starlette(
        middleware=[gzipped],
        routes=[
            # Before the report routes: storage that may stream an artifact without its length.
            Route("/_storage/artifacts/{artifact:int}", unsized_storage),
            *check_routes(state, report_routes(state.reports)),
            Route("/repos/{owner}/{repo}/pulls/{number:int}", pull),
            Route("/repos/{owner}/{repo}/contents/{path:path}", contents),
            *report_routes(state.reports),
            *hook_routes(state.hook),
            Route("/_counts", counts),
            Route("/repos/{owner}/{repo}/actions/jobs/{job:int}", job),
            Route("/repos/{owner}/{repo}/actions/workflows/{workflow}/runs", runs),
            Route("/repos/{owner}/{repo}/actions/runs/{run:int}", run),
            Route("/repos/{owner}/{repo}/actions/runners/generate-jitconfig", jit, methods=["POST"]),
            Route("/app/installations/{installation}/access_tokens", access_token, methods=["POST"]),
            Route("/app", the_app),
            Route("/app/installations", installations),
            Route("/app/hook/config", hook_config),
            Route("/repos/{owner}/{repo}/collaborators/{user}/permission", permission),
            Route("/repos/{owner}/{repo}/issues/comments/{comment}/reactions", reaction, methods=["POST"]),
            Route("/repos/{owner}/{repo}/issues/comments/{comment}/reactions", reactions),
            Route("/repos/{owner}/{repo}/issues/{number:int}/comments", comment, methods=["POST"]),
        ],
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
