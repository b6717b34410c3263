"""Slash commands in pull request comments: `/retrain`, `/deploy`, `/rollback`, `/help`."""

import re
from dataclasses import dataclass

from bot.context import Context
from bot.events import IssueCommentEvent, Repo
from bot.github import WRITE_PERMISSIONS
from bot.router import Router

router = Router()
COMMAND = re.compile(r"^/(?P<name>[a-z][a-z0-9-]*)\b[ \t]*(?P<args>.*)$", re.MULTILINE)
COMMANDS = {
    "retrain": "train this pull request's head on a GPU runner and report the results",
    "deploy": "deploy this pull request's head to its own preview environment",
    "rollback": "on a merged pull request: production goes back to the model that served before it",
    "help": "show this help",
}
HELP = "orbit understands these commands, each at the start of a line:\n\n" + "\n".join(
    f"- `/{name}`: {text}" for name, text in COMMANDS.items()
)


@dataclass(frozen=True)
class PullComment:
    """A new comment on a pull request: the fields commands need."""

    repo: Repo
    number: int
    comment_id: int
    body: str
    author: str
    by_bot: bool


def read_comment(event: IssueCommentEvent) -> PullComment | None:
    """Return the comment of an `issue_comment` event on a pull request, or None."""
    repo, comment = event.repo, event.comment
    if repo is None or event.issue.pull_request is None or not comment.user.login:
        return None
    by_bot = comment.user.type == "Bot" or comment.user.login.endswith("[bot]")
    return PullComment(repo, event.issue.number, comment.id, comment.body or "", comment.user.login, by_bot)


def parse_commands(body: str) -> list[tuple[str, str]]:
    """Return (command, arguments) for each line that starts with a slash command."""
    return [(match["name"], match["args"].strip()) for match in COMMAND.finditer(body.replace("\r\n", "\n"))]


@router.on(IssueCommentEvent, "created")
async def on_comment(event: IssueCommentEvent, ctx: Context) -> None:
    """Run the commands of a new comment on a pull request; bots' comments are ignored."""
    comment = read_comment(event)
    if comment is None or comment.by_bot:
        return
    commands = parse_commands(comment.body)
    if not commands:
        return
    await ctx.github.add_reaction(comment.repo, comment.comment_id, "eyes")
    replies, succeeded = [], True
    for name, args in commands:
        reply, ok = await run_command(ctx, comment, name, args)
        replies.append(reply)
        succeeded &= ok
    await ctx.github.create_comment(comment.repo, comment.number, "\n\n".join(replies))
    await ctx.github.add_reaction(comment.repo, comment.comment_id, "rocket" if succeeded else "confused")


async def run_command(ctx: Context, comment: PullComment, name: str, args: str) -> tuple[str, bool]:
    """Return the reply to one command and whether it succeeded."""
    if name == "help":
        return HELP, True
    if name not in COMMANDS:
        return f"`/{name}` is not a command I know.\n\n{HELP}", False
    permission = await ctx.github.collaborator_permission(comment.repo, comment.author)
    if permission not in WRITE_PERMISSIONS:
        return f"@{comment.author}: `/{name}` needs write access to this repository; nothing was done.", False
    feature = ctx.features.get(name)
    if feature is None:
        return f"`/{name}` is not configured on this installation yet; nothing was done.", False
    return await feature(ctx.github, comment.repo, comment.number, comment.author, args), True
