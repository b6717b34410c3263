"""`/retrain key=v1,v2 ...`: dispatch each point of the grid as its own run of train.yml.

Each point is a DVC experiment named after the comment and its index (`sweep-<comment>-<i>`), and
its dispatch is recorded under a trigger of its own, so a redelivered comment dispatches nothing
twice. Points run in parallel, each on its own runner pod, within the runner and GPU caps. A sweep
supersedes nothing and queues no check run: the head's check run is its own training's.
"""

import asyncio
import functools

import yaml

from bot.context import CommandCall, Context, Store
from bot.dispatch import dispatch
from bot.events import Repo
from bot.github import PullInfo
from bot.runs import TRAIN, TrainingRun
from runner.sweeps.grid import Grid, SweepError, is_sweep, parse_grid
from runner.sweeps.publish import SweepGitHub, refresh
from runner.sweeps.state import SweepPoint, attach_run, declare, experiment_name
from runner.training import Retrain, trainable

PARAMS = "params.yaml"


def sweep_points(grid: Grid, sweep: int, pull: PullInfo) -> list[SweepPoint]:
    """Return the points of a grid as they are recorded before dispatch."""
    return [
        SweepPoint(sweep, p.index, pull.number, pull.head_sha, experiment_name(sweep, p.index), p.params)
        for p in grid.points()
    ]


def missing_keys(params_text: str | None, grid: Grid) -> list[str]:
    """Return the swept keys that params.yaml does not hold (a typo would train the same model N times)."""
    try:
        data = yaml.safe_load(params_text or "")
    except yaml.YAMLError:
        data = None
    missing = []
    for key in grid.keys:
        node = data
        for part in key.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        if node is None:
            missing.append(key)
    return missing


async def start_sweep(
    github: SweepGitHub,
    store: Store,
    repo: Repo,
    pull: PullInfo,
    workflow: str,
    call: CommandCall,
    grid: Grid,
) -> list[SweepPoint]:
    """Record the sweep's points and dispatch each that was not dispatched yet."""
    points = sweep_points(grid, call.comment_id, pull)
    await asyncio.to_thread(store.write, functools.partial(declare, repository=repo.full_name, points=points))
    base = pull.base_ref or pull.default_branch
    for point in points:
        run = TrainingRun(pull.number, pull.head_sha, base, point.experiment, point.params)
        trigger = f"{call.trigger}:point:{point.index}"
        started = await dispatch(github, store, repo, TRAIN, workflow, pull.default_branch, run, trigger)
        attach = functools.partial(
            attach_run, repository=repo.full_name, sweep=point.sweep, index=point.index, run_id=started.run_id
        )
        await asyncio.to_thread(store.write, attach)
    return points


class Sweep:
    """`/retrain`: with `key=values`, a sweep of every combination; without, the PR's own training."""

    def __init__(self) -> None:
        self.plain = Retrain()

    async def __call__(self, ctx: Context, call: CommandCall) -> str:
        """Dispatch the sweep's points and say so, or refuse with the reason."""
        if not is_sweep(call.args):
            return await self.plain(ctx, call)
        try:
            grid = parse_grid(call.args)
        except SweepError as error:
            return f"Nothing was trained: {error}"
        found = await trainable(ctx, call, "retrain")
        if isinstance(found, str):
            return found
        pull, workflow = found
        github: SweepGitHub = ctx.github
        missing = missing_keys(await ctx.github.file_text(call.repo, PARAMS, pull.head_sha), grid)
        if missing:
            names = ", ".join(f"`{key}`" for key in missing)
            return f"{PARAMS} at `{pull.head_sha[:7]}` has no {names}; nothing was trained."
        points = await start_sweep(github, ctx.store, call.repo, pull, workflow, call, grid)
        html_url = f"https://github.com/{call.repo.full_name}"
        await refresh(github, ctx.store, call.repo, call.comment_id, html_url)
        shape = " × ".join(f"`{key}`" for key in grid.keys)
        return (
            f"Sweeping {len(points)} points of `{pull.head_sha[:7]}` over {shape}, each on its own GPU "
            f"runner, as @{call.sender} asked; the sweep's table follows as its points finish."
        )
