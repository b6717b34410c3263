"""Which commit a command may act on: a fork's head can move between a writer reading it and the bot.

A writer's `/retrain` or `/deploy` on a fork's pull request names the whole commit they read
(40 hex digits: a shorter prefix can be matched by a commit made to collide with it), and only that
commit is trained or built. On a pull request from the repository itself a name is optional; one
that is given must still be the head.
"""

import re

from bot.github import PullInfo

FULL_SHA = re.compile(r"[0-9a-f]{40}")


def named_sha(args: str) -> str | None:
    """Return the commit a command's arguments name (40 hex digits), or None when they name none."""
    words = args.split(maxsplit=1)
    word = words[0].lower() if words else ""
    return word if FULL_SHA.fullmatch(word) else None


def refusal(pull: PullInfo, args: str, command: str) -> str | None:
    """Return why the command must not act on the PR's head, or None when it may."""
    named, head = named_sha(args), pull.head_sha
    if named is not None and named != head:
        return f"The head of PR #{pull.number} is now `{head[:7]}`, not `{named[:7]}`; nothing was done."
    if named is None and pull.head_repo != pull.base_repo:
        return (
            f"PR #{pull.number} comes from a fork: its head is `{head[:7]}`. To {command} exactly that "
            f"commit, comment `/{command} {head}`; nothing was done."
        )
    return None
