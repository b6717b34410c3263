"""The GitHub double's report routes: check runs, artifacts and logs behind storage redirects,
comments with pagination, and a Git object store behind the Git Data API that keeps Git's rules
(blobs, trees on top of a base tree, commits, refs that only fast-forward)."""

import base64
import hashlib
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from tests.serving import JSONResponse

COMMENT_LIMIT = 65_536
WORKFLOWS = Path(__file__).resolve().parent.parent / ".github/workflows"
DEFAULT_HEAD = "d" * 40  # the default branch's commit: what a dispatched run runs


# `${{ inputs.a && format('...{0}...', inputs.b, ...) || '' }}`: the one conditional a run name uses.
_FORMAT = re.compile(r"\$\{\{ inputs\.(\w+) && format\('([^']*)'((?:, inputs\.\w+)*)\) \|\| '' \}\}")
_INPUT = re.compile(r"\$\{\{ inputs\.(\w+) \}\}")


def render_run_name(template: str, inputs: dict[str, str], defaults: dict[str, str] | None = None) -> str:
    """Render a workflow's `run-name` as GitHub does: inputs not given take their declared defaults."""
    values = {**(defaults or {}), **inputs}

    def formatted(match: re.Match[str]) -> str:
        names = [name.strip().removeprefix("inputs.") for name in match[3].split(",")[1:]]
        return match[2].format(*(values.get(name, "") for name in names)) if values.get(match[1]) else ""

    return _INPUT.sub(lambda m: values.get(m[1], ""), _FORMAT.sub(formatted, template))


def dispatched_run(state: "ReportState", params: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
    """Start a run as GitHub does: named by the workflow file's own `run-name` from the inputs."""
    workflow, full_name = params["workflow"], f"{params['owner']}/{params['repo']}"
    definition = yaml.safe_load((WORKFLOWS / workflow).read_text())
    declared = definition[True]["workflow_dispatch"]["inputs"]  # PyYAML reads `on` as True
    defaults = {name: str(spec.get("default", "")) for name, spec in declared.items()}
    title = render_run_name(definition["run-name"], body.get("inputs") or {}, defaults)
    run_id = 5000 + len(state.runs)
    state.runs[run_id] = {
        "id": run_id,
        "status": "queued",
        "display_title": title,
        "path": f".github/workflows/{workflow}",
        "event": "workflow_dispatch",
        "head_sha": state.default_head,
        "head_branch": body["ref"],
        "head_repository": {"full_name": full_name},
        "repository": {"full_name": full_name},
        "html_url": f"https://github.com/{full_name}/actions/runs/{run_id}",
    }
    return state.runs[run_id]


STORAGE_HOST = "localhost"  # the API is served as 127.0.0.1: a different origin, as blob storage is


@dataclass
class GitStore:
    """Git objects and branch refs."""

    blobs: dict[str, bytes] = field(default_factory=dict)
    trees: dict[str, list[dict[str, str]]] = field(default_factory=dict)
    commits: dict[str, dict[str, Any]] = field(default_factory=dict)
    refs: dict[str, str] = field(default_factory=dict)

    def put_tree(self, entries: list[dict[str, str]]) -> str:
        key = repr(sorted((e["path"], e["mode"], e["type"], e["sha"]) for e in entries))
        sha = hashlib.sha1(key.encode()).hexdigest()
        self.trees[sha] = entries
        return sha

    def files(self, commit: str) -> dict[str, bytes]:
        """Return every file of a commit by path, for assertions."""
        found: dict[str, bytes] = {}

        def walk(tree: str, prefix: str) -> None:
            for entry in self.trees[tree]:
                if entry["type"] == "tree":
                    walk(entry["sha"], f"{prefix}{entry['path']}/")
                else:
                    found[prefix + entry["path"]] = self.blobs[entry["sha"]]

        walk(self.commits[commit]["tree"], "")
        return found

    def is_ancestor(self, old: str, new: str) -> bool:
        pending = [new]
        while pending:
            sha = pending.pop()
            if sha == old:
                return True
            pending.extend(self.commits.get(sha, {}).get("parents", []))
        return False


@dataclass
class ReportState:
    """What the report routes hold and were asked."""

    git: GitStore = field(default_factory=GitStore)
    check_runs: dict[int, dict[str, Any]] = field(default_factory=dict)
    artifacts: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    artifact_zips: dict[int, bytes] = field(default_factory=dict)
    jobs: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    logs: dict[int, str] = field(default_factory=dict)
    comments: dict[int, dict[str, Any]] = field(default_factory=dict)
    storage_auth: list[str | None] = field(default_factory=list)
    requests: list[tuple[float, str, str]] = field(default_factory=list)
    fail_next: dict[str, int] = field(default_factory=dict)  # "PATCH git/refs" -> status, once
    concurrent_push: bool = False  # the next ref update finds the branch moved by someone else
    every_run_artifact: tuple[str, bytes] | None = None  # (name, zip) of any run not in `artifacts`
    deployments: list[dict[str, Any]] = field(default_factory=list)  # newest first, as GitHub lists them
    deployment_statuses: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    dispatches: list[dict[str, Any]] = field(default_factory=list)
    pulls: dict[int, dict[str, Any]] = field(default_factory=dict)
    runs: dict[int, dict[str, Any]] = field(default_factory=dict)  # dispatched runs, by id
    default_head: str = DEFAULT_HEAD

    async def store_comment(self, request: Request) -> Response:
        """Create a comment as the App's bot, refusing bodies over GitHub's limit."""
        self.requests.append((time.monotonic(), "POST", "comments"))
        body = (await request.json())["body"]
        if len(body) > COMMENT_LIMIT:
            return _error(422, "Validation Failed: body is too long (maximum is 65536 characters)")
        comment_id = 90_000 + len(self.comments)
        self.comments[comment_id] = {
            "id": comment_id,
            "issue": int(request.path_params["number"]),
            "body": body,
            "user": {"login": "orbit[bot]", "type": "Bot"},
        }
        return JSONResponse({"id": comment_id, "body": body}, 201)


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"message": message, "documentation_url": "https://docs.github.com/rest"}, status)


def report_routes(state: ReportState) -> list[Route]:
    """Return the routes, bound to `state`."""

    def seen(request: Request, what: str) -> Response | None:
        state.requests.append((time.monotonic(), request.method, what))
        status = state.fail_next.pop(f"{request.method} {what}", None)
        return _error(status, "injected failure") if status else None

    async def list_checks(request: Request) -> Response:
        ref, name = request.path_params["ref"], request.query_params.get("check_name")
        runs = [r for r in state.check_runs.values() if r["head_sha"] == ref and name in (None, r["name"])]
        return JSONResponse({"total_count": len(runs), "check_runs": runs})

    async def create_check(request: Request) -> Response:
        body = await request.json()
        check_id = 7000 + len(state.check_runs)
        state.check_runs[check_id] = {"id": check_id, "conclusion": None, **body}
        return JSONResponse(state.check_runs[check_id], 201)

    async def update_check(request: Request) -> Response:
        failure = seen(request, "check-runs")
        if failure:
            return failure
        check = state.check_runs[int(request.path_params["check"])]
        check.update(await request.json())
        return JSONResponse(check)

    async def artifacts(request: Request) -> Response:
        run = int(request.path_params["run"])
        if run not in state.artifacts and state.every_run_artifact is not None:
            name, data = state.every_run_artifact
            state.artifact_zips[500 + run] = data
            state.artifacts[run] = [
                {"id": 500 + run, "name": name, "expired": False, "size_in_bytes": len(data)}
            ]
        items = state.artifacts.get(run, [])
        return JSONResponse({"total_count": len(items), "artifacts": items})

    async def artifact_zip(request: Request) -> Response:
        failure = seen(request, "artifact")
        if failure:
            return failure
        artifact = int(request.path_params["artifact"])
        port = request.url.port
        return RedirectResponse(f"http://{STORAGE_HOST}:{port}/_storage/artifacts/{artifact}", 302)

    async def stored_artifact(request: Request) -> Response:
        state.storage_auth.append(request.headers.get("authorization"))
        return Response(
            state.artifact_zips[int(request.path_params["artifact"])], media_type="application/zip"
        )

    async def run_jobs(request: Request) -> Response:
        jobs = state.jobs.get(int(request.path_params["run"]), [])
        return JSONResponse({"total_count": len(jobs), "jobs": jobs})

    async def job_log(request: Request) -> Response:
        job = int(request.path_params["job"])
        return RedirectResponse(f"http://{STORAGE_HOST}:{request.url.port}/_storage/logs/{job}", 302)

    async def stored_log(request: Request) -> Response:
        state.storage_auth.append(request.headers.get("authorization"))
        return PlainTextResponse(state.logs[int(request.path_params["job"])])

    async def list_comments(request: Request) -> Response:
        number = int(request.path_params["number"])
        mine = [c for c in state.comments.values() if c["issue"] == number]
        per_page, page = (
            int(request.query_params.get("per_page", 30)),
            int(request.query_params.get("page", 1)),
        )
        chunk = mine[(page - 1) * per_page : page * per_page]
        headers = {}
        if page * per_page < len(mine):
            url = request.url.include_query_params(page=page + 1)
            headers["link"] = f'<{url}>; rel="next"'
        return JSONResponse([{k: v for k, v in c.items() if k != "issue"} for c in chunk], headers=headers)

    async def update_comment(request: Request) -> Response:
        seen(request, "comment")
        body = (await request.json())["body"]
        if len(body) > COMMENT_LIMIT:
            return _error(422, "Validation Failed: body is too long (maximum is 65536 characters)")
        comment = state.comments[int(request.path_params["comment"])]
        comment["body"] = body
        return JSONResponse({k: v for k, v in comment.items() if k != "issue"})

    async def get_ref(request: Request) -> Response:
        sha = state.git.refs.get(request.path_params["ref"])
        if sha is None:
            return _error(404, "Not Found")
        return JSONResponse(
            {"ref": f"refs/{request.path_params['ref']}", "object": {"sha": sha, "type": "commit"}}
        )

    async def create_ref(request: Request) -> Response:
        body = await request.json()
        ref = body["ref"].removeprefix("refs/")
        if ref in state.git.refs:
            return _error(422, "Reference already exists")
        state.git.refs[ref] = body["sha"]
        return JSONResponse({"ref": body["ref"], "object": {"sha": body["sha"]}}, 201)

    async def update_ref(request: Request) -> Response:
        failure = seen(request, "git/refs")
        if failure:
            return failure
        ref, body = request.path_params["ref"], await request.json()
        if state.concurrent_push:  # another publisher got there first
            state.concurrent_push = False
            other = state.git.put_tree([])
            moved = hashlib.sha1(f"other{time.time()}".encode()).hexdigest()
            state.git.commits[moved] = {"tree": other, "parents": [state.git.refs[ref]], "message": "other"}
            state.git.refs[ref] = moved
        if not body.get("force") and not state.git.is_ancestor(state.git.refs[ref], body["sha"]):
            return _error(422, "Update is not a fast forward")
        state.git.refs[ref] = body["sha"]
        return JSONResponse({"ref": f"refs/{ref}", "object": {"sha": body["sha"]}})

    async def get_commit(request: Request) -> Response:
        commit = state.git.commits.get(request.path_params["sha"])
        if commit is None:
            return _error(404, "Not Found")
        return JSONResponse({**commit, "sha": request.path_params["sha"], "tree": {"sha": commit["tree"]}})

    async def create_commit(request: Request) -> Response:
        body = await request.json()
        if body["tree"] not in state.git.trees or any(p not in state.git.commits for p in body["parents"]):
            return _error(422, "Tree or parent SHA does not exist")
        sha = hashlib.sha1(repr((body, len(state.git.commits))).encode()).hexdigest()
        state.git.commits[sha] = {
            "tree": body["tree"],
            "parents": body["parents"],
            "message": body["message"],
        }
        return JSONResponse({"sha": sha, "tree": {"sha": body["tree"]}}, 201)

    async def get_tree(request: Request) -> Response:
        tree = state.git.trees.get(request.path_params["sha"])
        if tree is None:
            return _error(404, "Not Found")
        return JSONResponse({"sha": request.path_params["sha"], "tree": tree, "truncated": False})

    async def create_tree(request: Request) -> Response:
        body = await request.json()
        base = {e["path"]: e for e in state.git.trees.get(body.get("base_tree") or "", [])}
        for entry in body["tree"]:
            if "/" in entry["path"] or entry["sha"] not in (state.git.blobs | state.git.trees):
                return _error(422, f"tree.sha {entry['sha']} is not a valid blob or tree")
            base[entry["path"]] = {k: entry[k] for k in ("path", "mode", "type", "sha")}
        return JSONResponse({"sha": state.git.put_tree(list(base.values()))}, 201)

    async def create_blob(request: Request) -> Response:
        body = await request.json()
        content = (
            base64.b64decode(body["content"])
            if body.get("encoding") == "base64"
            else body["content"].encode()
        )
        sha = hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()
        state.git.blobs[sha] = content
        return JSONResponse({"sha": sha}, 201)

    async def requests(request: Request) -> Response:
        return JSONResponse(state.requests)

    async def create_deployment(request: Request) -> Response:
        body = await request.json()
        missing = {"ref", "environment"} - set(body)
        if missing or body.get("required_contexts") != []:
            return _error(422, f"Validation Failed: {sorted(missing) or 'required_contexts'}")
        deployment = {"id": 3000 + len(state.deployments), "sha": body["ref"], **body}
        state.deployments.insert(0, deployment)
        seen(request, "deployments")
        return JSONResponse(deployment, 201)

    async def list_deployments(request: Request) -> Response:
        environment = request.query_params.get("environment")
        return JSONResponse([d for d in state.deployments if environment in (None, d["environment"])])

    async def create_status(request: Request) -> Response:
        body = await request.json()
        failure = seen(request, f"deployment-status {body.get('state')}")
        if failure:
            return failure
        if body.get("state") not in (
            "error",
            "failure",
            "inactive",
            "in_progress",
            "queued",
            "pending",
            "success",
        ):
            return _error(422, "Validation Failed: state")
        deployment = int(request.path_params["deployment"])
        state.deployment_statuses.setdefault(deployment, []).insert(0, body)
        return JSONResponse({"id": len(state.requests), **body}, 201)

    async def list_statuses(request: Request) -> Response:
        return JSONResponse(state.deployment_statuses.get(int(request.path_params["deployment"]), []))

    async def dispatch(request: Request) -> Response:
        body = await request.json()
        state.dispatches.append({"workflow": request.path_params["workflow"], **body})
        if not body.get("return_run_details"):
            return Response(status_code=204)
        run = dispatched_run(state, request.path_params, body)
        return JSONResponse({"workflow_run_id": run["id"], "run_url": "", "html_url": run["html_url"]})

    async def pull(request: Request) -> Response:
        return JSONResponse(state.pulls[int(request.path_params["number"])])

    repo = "/repos/{owner}/{repo}"
    return [
        Route("/_report_requests", requests),
        Route(f"{repo}/deployments", create_deployment, methods=["POST"]),
        Route(f"{repo}/deployments", list_deployments),
        Route(f"{repo}/deployments/{{deployment:int}}/statuses", create_status, methods=["POST"]),
        Route(f"{repo}/deployments/{{deployment:int}}/statuses", list_statuses),
        Route(f"{repo}/actions/workflows/{{workflow}}/dispatches", dispatch, methods=["POST"]),
        Route(f"{repo}/pulls/{{number:int}}", pull),
        Route(f"{repo}/commits/{{ref}}/check-runs", list_checks),
        Route(f"{repo}/check-runs", create_check, methods=["POST"]),
        Route(f"{repo}/check-runs/{{check:int}}", update_check, methods=["PATCH"]),
        Route(f"{repo}/actions/runs/{{run:int}}/artifacts", artifacts),
        Route(f"{repo}/actions/artifacts/{{artifact:int}}/zip", artifact_zip),
        Route("/_storage/artifacts/{artifact:int}", stored_artifact),
        Route(f"{repo}/actions/runs/{{run:int}}/jobs", run_jobs),
        Route(f"{repo}/actions/jobs/{{job:int}}/logs", job_log),
        Route("/_storage/logs/{job:int}", stored_log),
        Route(f"{repo}/issues/{{number:int}}/comments", list_comments),
        Route(f"{repo}/issues/comments/{{comment:int}}", update_comment, methods=["PATCH"]),
        Route(f"{repo}/git/ref/{{ref:path}}", get_ref),
        Route(f"{repo}/git/refs", create_ref, methods=["POST"]),
        Route(f"{repo}/git/refs/{{ref:path}}", update_ref, methods=["PATCH"]),
        Route(f"{repo}/git/commits/{{sha}}", get_commit),
        Route(f"{repo}/git/commits", create_commit, methods=["POST"]),
        Route(f"{repo}/git/trees/{{sha}}", get_tree),
        Route(f"{repo}/git/trees", create_tree, methods=["POST"]),
        Route(f"{repo}/git/blobs", create_blob, methods=["POST"]),
    ]
