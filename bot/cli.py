"""`orbit`: the command line that fronts the bot, the runners, the reports and the model."""

import argparse
import json
import logging
import os
import sys
import traceback
from collections.abc import Callable, Sequence
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from bot import redaction

if TYPE_CHECKING:
    from bot.inbox import Inbox
    from runner.report.bundle import Report

Command = Callable[[argparse.Namespace], int]
log = logging.getLogger("orbit")
INSUFFICIENT_PRIVILEGE = "42501"  # PostgreSQL's SQLSTATE for "permission denied"
OWN_PACKAGES = ("bot", "runner", "deploy", "model")  # whose errors carry a message for the user
EXIT_STATUSES = (
    "Exit status: 0 when the command worked, 1 when it failed, 2 for a bad argument or setting"
    " (`orbit doctor`: the number of failed checks). A failure is one line; --debug adds its traceback."
)


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """`--help` shows each option's default, where it has one."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None or action.default is False:
            return action.help
        return super()._get_help_string(action)


class Parser(argparse.ArgumentParser):
    """A parser (and each of its subcommands') that shows defaults, takes --debug, errs in one line."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)
        # SUPPRESS: a subcommand's parser leaves unset what `orbit --debug ...` set
        self.add_argument(
            "--debug", action="store_true", default=argparse.SUPPRESS, help="show a failure's traceback"
        )

    def error(self, message: str) -> NoReturn:
        """Exit with one line: what is wrong with the command line, and where its help is."""
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


def existing_folder(value: str) -> Path:
    """Return the path of a folder that exists (an argparse type)."""
    path = Path(value)
    if not path.is_dir():
        raise argparse.ArgumentTypeError(f"no folder {value!r} here: give an existing folder")
    return path


def existing_file(value: str) -> Path:
    """Return the path of a file that exists (an argparse type)."""
    path = Path(value)
    if not path.is_file():
        raise argparse.ArgumentTypeError(f"no file {value!r} here: give an existing file")
    return path


def pipeline_folder(value: str) -> Path:
    """Return the path of a folder with a DVC pipeline, `dvc.yaml` (an argparse type)."""
    path = existing_folder(value)
    if not (path / "dvc.yaml").is_file():
        raise argparse.ArgumentTypeError(
            f"{value!r} has no dvc.yaml: give the model project's root (where dvc.yaml is)"
        )
    return path


def dvc_folder(value: str) -> Path:
    """Return the path of a folder inside a DVC repository (an argparse type)."""
    path = existing_folder(value)
    if not any((folder / ".dvc").is_dir() for folder in (path.resolve(), *path.resolve().parents)):
        raise argparse.ArgumentTypeError(
            f"{value!r} is not in a DVC project (no .dvc folder there or above): give the project's root"
        )
    return path


def positive(value: str) -> int:
    """Return a whole number above zero (an argparse type)."""
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number < 1:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number above zero")
    return number


def seconds(value: str) -> float:
    """Return a number of seconds above zero (an argparse type)."""
    try:
        number = float(value)
    except ValueError:
        number = 0.0
    if not number > 0:  # NaN too
        raise argparse.ArgumentTypeError(f"{value!r} is not a number of seconds above zero")
    return number


def _local_demo(args: argparse.Namespace) -> int:
    from bot.local import demo

    demo(args.project)
    return 0


def _local_serve(args: argparse.Namespace) -> int:
    from bot.local import serve

    serve(args.project, args.port)
    return 0


def _local_train(args: argparse.Namespace) -> int:
    from runner.report.local import train

    report = train(args.project, args.base, Path(args.out))
    return 1 if report.failed else 0


def _add_local(commands: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    local = commands.add_parser("local", help="run the model project on this machine")
    actions = local.add_subparsers(dest="action", required=True)
    demo = actions.add_parser("demo", help="train, build, serve and query the model on the bundled data")
    demo.set_defaults(run=_local_demo)
    serve = actions.add_parser("serve", help="build the Bento from the working tree and serve it")
    serve.add_argument("--port", type=int, default=3000, help="the port to serve on")
    serve.set_defaults(run=_local_serve)
    train = actions.add_parser("train", help="run the pipeline and write the report against a base branch")
    train.add_argument("--base", default="main", help="branch, tag or commit to compare with")
    train.add_argument("--out", default="report", help="folder for the report")
    train.set_defaults(run=_local_train)
    for sub in (demo, serve, train):
        sub.add_argument("--project", type=pipeline_folder, default=".", help="the model project's root")


def _serve(args: argparse.Namespace) -> int:
    import logging.config

    import uvicorn

    from bot import database, logs
    from bot.processes import lower_priority
    from bot.settings import load_settings

    if args.role:  # each uvicorn process reads its settings, the role among them, from the environment
        os.environ["ORBIT_ROLE"] = args.role
    settings = load_settings()  # fail fast, with the variable's name, before uvicorn starts
    if settings.role != "ingest":  # an ingest process holds no key
        settings.private_key()
    if settings.role == "worker":
        lower_priority()  # its uvicorn processes inherit it
    database.ping(settings.database_url)
    if settings.role != "ingest" and settings.ingest_database_role:
        _check_ingest_role(settings.database_url, settings.ingest_database_role)
    logging.config.dictConfig(logs.config(settings.log_format, args.log_level))
    for warning in settings.warnings():
        log.warning(warning)
    uvicorn.run(
        "bot.app:app_from_environment",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        log_level=args.log_level,
        log_config=logs.config(settings.log_format, args.log_level),  # uvicorn's loggers too
        access_log=False,
    )
    return 0


def _check_ingest_role(url: str, role: str) -> None:
    import sqlalchemy as sa

    from bot.ingest_role import check_ingest_role

    if sa.make_url(url).get_backend_name() != "postgresql":
        return
    engine = sa.create_engine(url)
    try:
        check_ingest_role(engine, role)  # the workers grant it at start: name it missing before
    finally:
        engine.dispose()


def _add_serve(commands: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    serve = commands.add_parser("serve", help="run the GitHub App: webhook ingest and workers")
    serve.add_argument(  # a server in a pod listens on all interfaces
        "--host",
        default="0.0.0.0",  # noqa: S104
        help="the address to listen on",
    )
    serve.add_argument("--port", type=int, default=8000, help="the port to listen on")
    serve.add_argument(
        "--workers", type=positive, default=1, help="uvicorn processes (each runs its own workers)"
    )
    serve.add_argument(
        "--role",
        choices=["all", "ingest", "worker"],
        default=None,
        help="what this process runs: the webhook ingest, the workers and periodic jobs, or both"
        " (default: ORBIT_ROLE, else all); run ingest and worker apart so the acknowledgement"
        " never waits for a CPU the workers hold",
    )
    serve.add_argument(
        "--log-level",
        default="info",
        choices=["critical", "error", "warning", "info", "debug", "trace"],
        help="log level",
    )
    serve.set_defaults(run=_serve)


def _dev(args: argparse.Namespace) -> int:
    import asyncio
    import logging
    from datetime import UTC, datetime

    from bot.errors import PermanentError, TemporaryError
    from bot.forwarding import forward_until_stopped, parse_since
    from bot.settings import load_settings

    settings = load_settings()
    since = parse_since(args.since, datetime.now(UTC)) if args.since else None
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stdout)
    try:
        asyncio.run(forward_until_stopped(settings, args.forward, since, args.every))
    except (TemporaryError, PermanentError) as error:
        print(f"orbit: cannot list the App's deliveries: {error}", file=sys.stderr)
        return 2
    return 0


def _add_dev(commands: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    dev = commands.add_parser(
        "dev", help="feed the App's new webhook deliveries to a local server (no public URL needed)"
    )
    dev.add_argument("--forward", default="http://127.0.0.1:8000/webhook", help="the local webhook URL")
    dev.add_argument("--every", type=seconds, default=3.0, help="seconds between polls")
    dev.add_argument("--since", help="also forward deliveries since then: 15m, 2h or an ISO 8601 time")
    dev.set_defaults(run=_dev)


def _reconcile(args: argparse.Namespace) -> int:
    import asyncio

    from bot import database
    from bot.app import github_app, open_inbox, reconciler_for, runners_from
    from bot.settings import load_settings

    settings = load_settings()
    database.ping(settings.database_url)
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
    if outcome.failed:
        print(f"orbit: could not reconcile {', '.join(outcome.failed)} (see the log above)", file=sys.stderr)
        return 1
    return 0


def _inbox(args: argparse.Namespace) -> int:
    from sqlalchemy.exc import DBAPIError

    from bot.database import DatabaseError, open_existing
    from bot.inbox import Inbox
    from bot.settings import Settings

    # The one setting these need: not the App's, which a machine that only reads the inbox may lack.
    url = os.environ.get("ORBIT_DATABASE_URL", Settings.model_fields["database_url"].default)
    inbox = Inbox(open_existing(url))  # creates nothing
    try:
        return _inbox_action(args, inbox)
    except DBAPIError as error:
        if getattr(error.orig, "sqlstate", None) != INSUFFICIENT_PRIVILEGE:
            raise
        raise DatabaseError(
            "ORBIT_DATABASE_URL's role may not read work items (the ingest's, in the ha install): run"
            " it where the workers run: kubectl -n orbit exec deploy/orbit-worker -- orbit inbox ..."
        ) from None


def _inbox_action(args: argparse.Namespace, inbox: "Inbox") -> int:
    if args.action == "retry":
        if not inbox.retry(args.id):
            print(
                f"orbit: no dead work item {args.id} (`orbit inbox list --status dead` lists them)",
                file=sys.stderr,
            )
            return 1
        print(f"work item {args.id} queued again")
        return 0
    items = inbox.list_items(args.status, args.limit)
    if args.json:
        print(json.dumps(items, indent=2))
        return 0
    for item in items:
        reason = (item["last_error"] or "").replace("\n", " ")[:100]
        kind = f"{item['event']}.{item['action']}"
        print(f"{item['id']:>6}  {item['status']:<8} {item['attempts']:>2}  {kind:<32} {reason}")
    return 0


def _add_inbox(commands: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    inbox = commands.add_parser("inbox", help="list work items and retry dead letters (ORBIT_DATABASE_URL)")
    actions = inbox.add_subparsers(dest="action", required=True)
    listing = actions.add_parser("list", help="list work items, newest first")
    listing.add_argument(
        "--status",
        choices=["pending", "waiting", "running", "done", "dead"],
        help="list only the items in this status",
    )
    listing.add_argument("--limit", type=positive, default=50, help="list at most this many")
    listing.add_argument("--json", action="store_true", help="print a JSON array of the items")
    retry = actions.add_parser("retry", help="queue a dead work item again")
    retry.add_argument("id", type=int, help="the work item's id, as `orbit inbox list` shows it")
    inbox.set_defaults(run=_inbox)


def _report_build(args: argparse.Namespace) -> int:
    import time

    from runner.report.build import RunRecord, build_report

    repro_log = args.repro_log.read_text(errors="replace") if args.repro_log else None
    took = time.time() - args.started if args.started is not None else None
    out = Path(args.out)
    report = build_report(args.project, args.base, out, RunRecord(repro_log, took))
    if args.json:
        print(json.dumps(report_summary(report, out), indent=2))
    else:
        outcome = (
            f"stage {report.stages.failed} failed" if report.failed else f"{len(report.metrics)} metrics"
        )
        print(
            f"report for {report.facts.commit[:7]} against {args.base}: {outcome}; open {out / 'report.html'}"
        )
    return 1 if report.failed else 0  # the bundle is written either way: it says which stage failed


def report_summary(report: "Report", out: Path) -> dict[str, Any]:
    """Return what a program reads of a built report: commits, failed stage or metrics, and paths."""
    return {
        "commit": report.facts.commit,
        "base": report.facts.base_ref,
        "base_commit": report.facts.base_commit,
        "failed_stage": report.stages.failed,
        "metrics": [] if report.failed else [row.model_dump(mode="json") for row in report.metrics],
        "paths": {name: str(out / f"report.{name}") for name in ("json", "md", "html")},
    }


def _add_report(commands: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    report = commands.add_parser("report", help="training reports")
    actions = report.add_subparsers(dest="action", required=True)
    build = actions.add_parser("build", help="compare the workspace's pipeline outputs with a base revision")
    build.add_argument("--base", default="main", help="branch, tag or commit to compare with")
    build.add_argument("--out", default="report", help="folder for the bundle")
    build.add_argument("--project", type=dvc_folder, default=".", help="the DVC project's root")
    build.add_argument(
        "--repro-log", type=existing_file, help="the output of `dvc repro`: stages run, cached or failed"
    )
    build.add_argument("--started", type=float, help="when the run started, in seconds since the epoch")
    build.add_argument("--json", action="store_true", help="print commits, failed stage or metrics, paths")
    build.set_defaults(run=_report_build)


def _deploy_build(args: argparse.Namespace) -> int:
    from deploy.build import BuildPlan, build_image

    image = build_image(args.project, BuildPlan(args.registry, args.sha), Path(args.out))
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
    build.add_argument("--out", default="image", help="folder for image.json")
    build.add_argument("--project", type=existing_folder, default=".", help="the model project's root")
    build.set_defaults(run=_deploy_build)


def _app_register(args: argparse.Namespace) -> int:
    from bot.registration import SECRET_NAME, register

    registered = register(
        args.manifest,
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
    register.add_argument(
        "--manifest", type=existing_file, default=".github/app.yml", help="the App manifest"
    )
    register.add_argument("--github-url", default="https://github.com", help="GitHub Enterprise: its URL")
    register.add_argument("--api-url", default="https://api.github.com", help="GitHub Enterprise: its API")
    register.add_argument("--port", type=int, default=0, help="the local page's port (0: any free one)")
    register.set_defaults(run=_app_register)


def _doctor(args: argparse.Namespace) -> int:
    import json

    from bot.doctor import failures, run_checks
    from bot.doctor.check import render

    checks = run_checks(Path(args.project))
    print(json.dumps([check.as_json() for check in checks], indent=2) if args.json else render(checks))
    return failures(checks)


def _add_doctor(commands: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    doctor = commands.add_parser(
        "doctor",
        help="check the settings, the App on GitHub, the database and the cluster; exit status: failures",
    )
    doctor.add_argument("--json", action="store_true", help="print a JSON list of {check, ok, detail, fix}")
    doctor.add_argument("--project", default=".", help="a model project whose DVC remote to check")
    doctor.set_defaults(run=_doctor)


def build_parser() -> argparse.ArgumentParser:
    """Return the parser of every `orbit` subcommand."""
    parser: argparse.ArgumentParser = Parser(  # its subparsers are Parsers too
        prog="orbit", description=__doc__, epilog=EXIT_STATUSES
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {version()}")
    commands = parser.add_subparsers(dest="command", required=True)
    _add_serve(commands)
    _add_dev(commands)
    _add_inbox(commands)
    reconcile = commands.add_parser(
        "reconcile", help="match runner pods to GitHub jobs once (serve does it periodically)"
    )
    reconcile.set_defaults(run=_reconcile)
    _add_local(commands)
    _add_report(commands)
    _add_deploy(commands)
    _add_app(commands)
    _add_doctor(commands)
    return parser


def version() -> str:
    """Return the installed package's version."""
    try:
        return metadata.version("orbit")
    except metadata.PackageNotFoundError:
        return "(not installed: pip install -e .)"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the `orbit` command line: 0 when it worked, 1 when it failed, 2 for a bad argument or setting."""
    redaction.install()  # no secret reaches a log line, whichever command writes it
    args = build_parser().parse_args(argv)
    run: Command = args.run
    try:
        return run(args)
    except KeyboardInterrupt:
        return 130
    except Exception as error:
        debug = getattr(args, "debug", False)
        if debug:
            traceback.print_exc()
        print(f"orbit: {failure(error, shown=debug)}", file=sys.stderr)
        return 2 if _is_bad_input(error) else 1


def failure(error: Exception, shown: bool = False) -> str:
    """Return one line about a failure: the message of orbit's own errors, else the error's kind too."""
    lines = str(error).strip().splitlines()
    text = redaction.redact(lines[0] if lines else "")
    if text and type(error).__module__.partition(".")[0] in OWN_PACKAGES:
        return text  # raised with a message written to be read: it names what to fix
    hint = "" if shown else " (run again with --debug for the traceback)"
    return f"{type(error).__name__}: {text}{hint}" if text else f"{type(error).__name__}{hint}"


def _is_bad_input(error: Exception) -> bool:
    """Return whether the error names a setting to fix (exit status 2, as argparse's for an argument)."""
    from bot.settings import SettingsError

    return isinstance(error, SettingsError)


if __name__ == "__main__":
    sys.exit(main())
