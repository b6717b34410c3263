"""Slash commands in pull request comments: `/retrain`, `/deploy`, `/rollback`, `/help`.

A command is a line that starts with `/` and the name of a command orbit knows, then spaces or the
end of the line; anything else (`/usr/bin/python x.py`, `/tmp/foo`) is prose and gets nothing. A
line whose word is one or two letters from a command (`/retrian`) gets "did you mean" and runs
nothing.

One comment costs bounded work however long it is: each command runs at most once (the first of
its lines counts), the author's permission is asked once, and one reply answers them all.

Handling a comment twice (a worker that died after replying and before recording it) does nothing
twice: the reply carries a hidden marker naming the comment and the outcome, and is looked for
among the App's own comments before anything runs; reactions are looked up before they are added.
"""

import re
from dataclasses import dataclass
from typing import Literal

from bot.context import CommandCall, Context
from bot.events import IssueCommentEvent, Repo
from bot.github import WRITE_PERMISSIONS
from bot.router import Router

router = Router()
# A line that starts with a slash and a word, then spaces or the end of the line.
COMMAND = re.compile(r"^/(?P<name>[A-Za-z][A-Za-z0-9-]*)(?:[ \t]+(?P<args>[^\n]*))?$", re.MULTILINE)
COMMANDS = {
    "retrain": "train this pull request's head on a GPU runner and report the results",
    "deploy": "deploy this pull request's head to its own preview environment",
    "rollback": "on a merged pull request: production goes back to the model that served before it",
    "apply": "`/apply <experiment>`: commit a sweep point's params.yaml to this pull request's branch",
    "help": "show this help",
}
HELP = "orbit understands these commands, each at the start of a line:\n\n" + "\n".join(
    f"- `/{name}`: {text}" for name, text in COMMANDS.items()
)
MAX_NEAR_MISS = 2  # edits (insert, delete, substitute) from a command's name; one for `/help`
REPLY_MARKER = re.compile(r"\A<!-- orbit:reply-to (?P<comment>[0-9]+) (?P<outcome>rocket|confused) -->")
Outcome = Literal["rocket", "confused"]


@dataclass(frozen=True)
class PullComment:
    """A new comment on a pull request: the fields commands need."""

    repo: Repo
    number: int
    comment_id: int
    body: str
    author: str
    by_bot: bool


@dataclass(frozen=True)
class Parsed:
    """What a comment asks: commands to run, each once, and near misses to correct."""

    commands: list[tuple[str, str]]  # (command, arguments), in the order of their first line
    near_misses: list[tuple[str, str]]  # (what was written, the command it is close to)

    def __bool__(self) -> bool:
        return bool(self.commands or self.near_misses)


def read_comment(event: IssueCommentEvent) -> PullComment | None:
    """Return the comment of an `issue_comment` event on a pull request, or None."""
    repo, comment = event.repo, event.comment
    if repo is None or event.issue.pull_request is None or not comment.user.login:
        return None
    by_bot = comment.user.type == "Bot" or comment.user.login.endswith("[bot]")
    return PullComment(repo, event.issue.number, comment.id, comment.body or "", comment.user.login, by_bot)


def parse_commands(body: str) -> Parsed:
    """Return the commands of a comment (each once, with its first line's arguments) and its near misses."""
    commands: dict[str, str] = {}
    misses: dict[str, str] = {}  # the command -> the first slip of it
    words: set[str] = set()  # each other word is looked at once, however often it is repeated
    for match in COMMAND.finditer(body.replace("\r\n", "\n")):
        name = match["name"]
        if name in COMMANDS:
            commands.setdefault(name, (match["args"] or "").strip())
        elif name not in words:
            words.add(name)
            near = near_miss(name)
            if near is not None:
                misses.setdefault(near, name)
    return Parsed(
        list(commands.items()), [(typed, near) for near, typed in misses.items() if near not in commands]
    )


def near_miss(word: str) -> str | None:
    """Return the command `word` is a slip of (at most two edits; one for `/help`), or None."""
    lowered = word.lower()
    for name in COMMANDS:
        allowed = min(MAX_NEAR_MISS, len(name) // 3)
        if abs(len(lowered) - len(name)) <= allowed and _distance(lowered, name) <= allowed:
            return name
    return None


def _distance(a: str, b: str) -> int:
    """Return the Levenshtein distance of two short words."""
    previous = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        current = [i]
        for j, y in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (x != y)))
        previous = current
    return previous[-1]


def reply_marker(comment_id: int, outcome: Outcome) -> str:
    """Return the hidden first line of the reply to a comment: which comment, which outcome."""
    return f"<!-- orbit:reply-to {comment_id} {outcome} -->"


@router.on(IssueCommentEvent, "created")
async def on_comment(event: IssueCommentEvent, ctx: Context) -> None:
    """Run the commands of a new comment on a pull request, once; bots' comments are ignored."""
    comment = read_comment(event)
    if comment is None or comment.by_bot:
        return
    parsed = parse_commands(comment.body)
    if not parsed:
        return
    github = ctx.github
    own = await github.own_login()
    reacted = {
        r.content for r in await github.comment_reactions(comment.repo, comment.comment_id) if r.author == own
    }
    if "eyes" not in reacted:
        await github.add_reaction(comment.repo, comment.comment_id, "eyes")
    outcome = await previous_outcome(ctx, comment, own)
    if outcome is None:
        text, succeeded = await run_commands(ctx, comment, parsed)
        outcome = "rocket" if succeeded else "confused"
        await github.create_comment(
            comment.repo, comment.number, f"{reply_marker(comment.comment_id, outcome)}\n{text}"
        )
    if outcome not in reacted:
        await github.add_reaction(comment.repo, comment.comment_id, outcome)


async def previous_outcome(ctx: Context, comment: PullComment, own: str) -> Outcome | None:
    """Return the outcome of the App's earlier reply to this comment, or None when it never replied."""
    for earlier in await ctx.github.issue_comments(comment.repo, comment.number):
        found = REPLY_MARKER.match(earlier.body) if earlier.author == own else None
        if found and int(found["comment"]) == comment.comment_id:
            return "rocket" if found["outcome"] == "rocket" else "confused"
    return None


async def run_commands(ctx: Context, comment: PullComment, parsed: Parsed) -> tuple[str, bool]:
    """Run each command once; return the one reply to them all and whether every one succeeded."""
    replies: list[str] = []
    succeeded = True
    permission: str | None = None  # asked once, of the API, when the first command needs it
    for typed, near in parsed.near_misses:
        replies.append(f"`/{typed}` is not a command I know; did you mean `/{near}`? Nothing was done.")
        succeeded = False
    for name, args in parsed.commands:
        if name == "help":
            replies.append(HELP)
            continue
        if permission is None:
            permission = await ctx.github.collaborator_permission(comment.repo, comment.author)
        reply, ok = await run_command(ctx, comment, name, args, permission)
        replies.append(reply)
        succeeded &= ok
    return "\n\n".join(replies), succeeded


async def run_command(
    ctx: Context, comment: PullComment, name: str, args: str, permission: str
) -> tuple[str, bool]:
    """Return the reply to one command that needs write access, and whether it succeeded."""
    if permission not in WRITE_PERMISSIONS:
        return f"@{comment.author}: `/{name}` needs write access to this repository; nothing was done.", False
    feature = ctx.features.get(name)
    if feature is None:
        return f"`/{name}` is not configured on this installation yet; nothing was done.", False
    call = CommandCall(comment.repo, comment.number, comment.author, args, comment.comment_id, permission)
    return await feature(ctx, call), True
