"""`orbit`: the command line that fronts the bot, the runners, the reports and the model."""

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from bot import redaction

Command = Callable[[argparse.Namespace], int]


def _local_demo(args: argparse.Namespace) -> int:
    from bot.local import demo

    demo(Path(args.project))
    return 0


def _local_serve(args: argparse.Namespace) -> int:
    from bot.local import serve

    serve(Path(args.project), args.port)
    return 0


def _local_train(args: argparse.Namespace) -> int:
    from runner.report.local import train

    report = train(Path(args.project), args.base, Path(args.out))
    return 1 if report.failed else 0


def _add_local(commands: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    local = commands.add_parser("local", help="run the model project on this machine")
    actions = local.add_subparsers(dest="action", required=True)
    demo = actions.add_parser("demo", help="train, build, serve and query the model on the bundled data")
    demo.set_defaults(run=_local_demo)
    serve = actions.add_parser("serve", help="build the Bento from the working tree and serve it")
    serve.add_argument("--port", type=int, default=3000)
    serve.set_defaults(run=_local_serve)
    train = actions.add_parser("train", help="run the pipeline and write the report against a base branch")
    train.add_argument("--base", default="main", help="branch, tag or commit to compare with (default: main)")
    train.add_argument("--out", default="report", help="folder for the report (default: report)")
    train.set_defaults(run=_local_train)
    for sub in (demo, serve, train):
        sub.add_argument("--project", default=".", help="the model project's root (default: .)")


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from bot.settings import load_settings

    settings = load_settings()  # fail fast, with the variable's name, before uvicorn starts
    settings.private_key()
    uvicorn.run(
        "bot.app:app_from_environment",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        log_level=args.log_level,
        access_log=False,
    )
    return 0


def _add_serve(commands: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    serve = commands.add_parser("serve", help="run the GitHub App: webhook ingest and workers")
    serve.add_argument("--host", default="0.0.0.0")  # noqa: S104 - a server in a pod listens on all interfaces
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--workers", type=int, default=1, help="uvicorn processes (each runs its own workers)")
    serve.add_argument("--log-level", default="info")
    serve.set_defaults(run=_serve)


def _reconcile(args: argparse.Namespace) -> int:
    import asyncio

    from bot.app import github_app, open_inbox, reconciler_for, runners_from
    from bot.settings import load_settings

    settings = load_settings()
    runners = runners_from(settings)
    if runners is None:
        print("orbit: runner pods are disabled or no Kubernetes configuration was found", file=sys.stderr)
        return 2
    reconciler = reconciler_for(settings, open_inbox(settings), github_app(settings), runners)
    outcome = asyncio.run(reconciler.run_once())
    print(
        f"started {len(outcome.started)}, deleted {len(outcome.deleted)}, "
        f"pending reported {len(outcome.reported_pending)}, past deadline {len(outcome.deadline_exceeded)}"
    )
    return 0


def _inbox(args: argparse.Namespace) -> int:
    from bot.inbox import Inbox, make_engine

    inbox = Inbox(make_engine(os.environ.get("ORBIT_DATABASE_URL", "sqlite:///orbit.db")))
    inbox.create_schema()
    if args.action == "retry":
        if not inbox.retry(args.id):
            print(f"orbit: no dead work item {args.id}", file=sys.stderr)
            return 1
        print(f"work item {args.id} queued again")
        return 0
    for item in inbox.list_items(args.status, args.limit):
        reason = (item["last_error"] or "").replace("\n", " ")[:100]
        kind = f"{item['event']}.{item['action']}"
        print(f"{item['id']:>6}  {item['status']:<8} {item['attempts']:>2}  {kind:<32} {reason}")
    return 0


def _add_inbox(commands: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    inbox = commands.add_parser("inbox", help="list work items and retry dead letters (ORBIT_DATABASE_URL)")
    actions = inbox.add_subparsers(dest="action", required=True)
    listing = actions.add_parser("list", help="list work items, newest first")
    listing.add_argument("--status", choices=["pending", "running", "done", "dead"])
    listing.add_argument("--limit", type=int, default=50)
    retry = actions.add_parser("retry", help="queue a dead work item again")
    retry.add_argument("id", type=int)
    inbox.set_defaults(run=_inbox)


def _report_build(args: argparse.Namespace) -> int:
    import time

    from runner.report.build import RunRecord, build_report

    log = Path(args.repro_log).read_text(errors="replace") if args.repro_log else None
    took = time.time() - args.started if args.started is not None else None
    report = build_report(Path(args.project), args.base, Path(args.out), RunRecord(log, took))
    outcome = f"stage {report.stages.failed} failed" if report.failed else f"{len(report.metrics)} metrics"
    print(
        f"report for {report.facts.commit[:7]} against {args.base}: {outcome}; "
        f"open {Path(args.out) / 'report.html'}"
    )
    return 0


def _add_report(commands: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    report = commands.add_parser("report", help="training reports")
    actions = report.add_subparsers(dest="action", required=True)
    build = actions.add_parser("build", help="compare the workspace's pipeline outputs with a base revision")
    build.add_argument("--base", default="main", help="branch, tag or commit to compare with (default: main)")
    build.add_argument("--out", default="report", help="folder for the bundle (default: report)")
    build.add_argument("--project", default=".", help="the DVC project's root (default: .)")
    build.add_argument("--repro-log", help="the output of `dvc repro`: stages run, cached or failed")
    build.add_argument("--started", type=float, help="when the run started, in seconds since the epoch")
    build.set_defaults(run=_report_build)


def _deploy_build(args: argparse.Namespace) -> int:
    from deploy.build import BuildPlan, build_image

    image = build_image(Path(args.project), BuildPlan(args.registry, args.sha), Path(args.out))
    print(f"pushed {image['tag']} ({image['digest']})")
    return 0


def _add_deploy(commands: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    deploy = commands.add_parser("deploy", help="deploying the model")
    actions = deploy.add_subparsers(dest="action", required=True)
    build = actions.add_parser(
        "build", help="build the Bento and its image (buildah), push it, write image.json"
    )
    build.add_argument("--registry", required=True, help="where the image goes, e.g. ghcr.io/octo-org")
    build.add_argument("--sha", required=True, help="the commit: the image's tag")
    build.add_argument("--out", default="image", help="folder for image.json (default: image)")
    build.add_argument("--project", default=".", help="the model project's root (default: .)")
    build.set_defaults(run=_deploy_build)


def _app_register(args: argparse.Namespace) -> int:
    from bot.registration import SECRET_NAME, register

    registered = register(
        Path(args.manifest),
        args.webhook_url,
        Path(args.out),
        organization=args.org,
        name=args.name,
        github_url=args.github_url,
        api_url=args.api_url,
        port=args.port,
    )
    print(
        f"registered the App {registered.slug} (id {registered.app_id}); its credentials are in {args.out}/"
    )
    print(f"  kubectl -n orbit create secret generic {SECRET_NAME} --from-file={args.out}")
    print(f"then install it on the model repositories: {registered.html_url}/installations/new")
    return 0


def _add_app(commands: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    app = commands.add_parser("app", help="the GitHub App itself")
    actions = app.add_subparsers(dest="action", required=True)
    register = actions.add_parser("register", help="register the App from its manifest (opens a local page)")
    register.add_argument("--webhook-url", required=True, help="https://HOST/webhook, where GitHub posts")
    register.add_argument("--org", help="register it for this organization (default: your user)")
    register.add_argument("--name", help="the App's name on GitHub (default: the manifest's)")
    register.add_argument("--out", default="orbit-github-app", help="new folder for the credentials")
    register.add_argument("--manifest", default=".github/app.yml", help="the App manifest")
    register.add_argument("--github-url", default="https://github.com", help="GitHub Enterprise: its URL")
    register.add_argument("--api-url", default="https://api.github.com", help="GitHub Enterprise: its API")
    register.add_argument("--port", type=int, default=0, help="the local page's port (default: any free)")
    register.set_defaults(run=_app_register)


def build_parser() -> argparse.ArgumentParser:
    """Return the parser of every `orbit` subcommand."""
    parser = argparse.ArgumentParser(prog="orbit", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    _add_serve(commands)
    _add_inbox(commands)
    reconcile = commands.add_parser(
        "reconcile", help="match runner pods to GitHub jobs once (serve does it periodically)"
    )
    reconcile.set_defaults(run=_reconcile)
    _add_local(commands)
    _add_report(commands)
    _add_deploy(commands)
    _add_app(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the `orbit` command line."""
    redaction.install()  # no secret reaches a log line, whichever command writes it
    args = build_parser().parse_args(argv)
    run: Command = args.run
    try:
        return run(args)
    except KeyboardInterrupt:
        return 130
    except (RuntimeError, ValueError) as error:  # SettingsError, LocalRunError: one clear line
        print(f"orbit: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
