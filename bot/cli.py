"""`orbit`: the command line that fronts the bot, the runners, the reports and the model."""

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

Command = Callable[[argparse.Namespace], int]


def _local_demo(args: argparse.Namespace) -> int:
    from model.local import demo

    demo(Path(args.project))
    return 0


def _local_serve(args: argparse.Namespace) -> int:
    from model.local import serve

    serve(Path(args.project), args.port)
    return 0


def _add_local(commands: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    local = commands.add_parser("local", help="run the model project on this machine")
    actions = local.add_subparsers(dest="action", required=True)
    demo = actions.add_parser("demo", help="train, build, serve and query the model on the bundled data")
    demo.set_defaults(run=_local_demo)
    serve = actions.add_parser("serve", help="build the Bento from the working tree and serve it")
    serve.add_argument("--port", type=int, default=3000)
    serve.set_defaults(run=_local_serve)
    for sub in (demo, serve):
        sub.add_argument("--project", default=".", help="the model project's root (default: .)")


def build_parser() -> argparse.ArgumentParser:
    """Return the parser of every `orbit` subcommand."""
    parser = argparse.ArgumentParser(prog="orbit", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    _add_local(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the `orbit` command line."""
    args = build_parser().parse_args(argv)
    run: Command = args.run
    try:
        return run(args)
    except KeyboardInterrupt:
        return 130
    except RuntimeError as error:
        print(f"orbit: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
