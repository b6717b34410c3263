"""Run identity, field by field: each way a run or a job differs from orbit's record is refused with its
own reason (a metric label and a log line), the record reads back exactly as written, and the
records of triggers and effects are kept per repository and per effect.

Written to kill the mutants scripts/mutation found alive.
"""

import functools
import logging

import pytest
from prometheus_client import REGISTRY

from bot import runs
from bot.runs import (
    DEPLOY,
    TRAIN,
    ObservedRun,
    RecordedRun,
    TrainingRun,
    by_trigger,
    effect_done,
    job_rejection,
    mark_done,
    record,
    recorded,
    refuse,
    rejection,
    training_job_name,
    training_job_pull,
    training_run,
)
from tests.fakes import DEFAULT_HEAD, memory_inbox

REPOSITORY = "octo-org/model"
RECORD = RecordedRun(
    101, REPOSITORY, TRAIN, "train.yml", "comment:5", TrainingRun(7, "a" * 40).title, DEFAULT_HEAD
)
SEEN = ObservedRun(
    101, REPOSITORY, ".github/workflows/train.yml", "workflow_dispatch", REPOSITORY, DEFAULT_HEAD
)


def seen(**changes: object) -> ObservedRun:
    fields = {**vars(SEEN), **changes}
    return ObservedRun(**fields)


def test_the_run_orbit_recorded_is_accepted() -> None:
    assert rejection(RECORD, SEEN, TRAIN) is None


@pytest.mark.parametrize(
    ("record_", "observed", "purpose", "reason"),
    [
        (None, SEEN, TRAIN, "not dispatched by orbit"),
        (RECORD, SEEN, DEPLOY, "not a deploy run"),
        (
            RECORD,
            seen(repository="octo-org/other", head_repository="octo-org/other"),
            TRAIN,
            "another repository",
        ),
        (RECORD, seen(path=".github/workflows/deploy.yml"), TRAIN, "another workflow file"),
        (
            RECORD,
            seen(path="elsewhere/.github/workflows/train.yml"),
            TRAIN,
            "not a workflow of the repository",
        ),
        (RECORD, seen(event="pull_request"), TRAIN, "not started by a dispatch"),
        (RECORD, seen(event=""), TRAIN, "not started by a dispatch"),
        (RECORD, seen(head_repository="fork/model"), TRAIN, "runs code of another repository"),
        (RECORD, seen(head_sha="e" * 40), TRAIN, "not the commit orbit dispatched"),
    ],
)
def test_each_difference_from_the_record_is_refused_with_its_reason(
    record_: RecordedRun | None, observed: ObservedRun, purpose: str, reason: str
) -> None:
    assert rejection(record_, observed, purpose) == reason


@pytest.mark.parametrize(
    ("record_", "repository", "head_sha", "reason"),
    [
        (RECORD, REPOSITORY, DEFAULT_HEAD, None),
        (None, REPOSITORY, DEFAULT_HEAD, "a job of a run orbit did not dispatch"),
        (RECORD, "octo-org/other", DEFAULT_HEAD, "another repository"),
        (RECORD, REPOSITORY, "e" * 40, "not the commit orbit dispatched"),
    ],
)
def test_a_job_is_refused_with_the_reason_its_run_differs(
    record_: RecordedRun | None, repository: str, head_sha: str, reason: str | None
) -> None:
    assert job_rejection(record_, repository, head_sha) == reason


def test_a_name_that_is_not_a_training_run_is_none() -> None:
    assert training_run("orbit/deploy PR #7 to production (deployment 3) at " + "a" * 40) is None
    assert training_run("something else") is None
    assert training_run(RECORD.title) == TrainingRun(7, "a" * 40)


def test_a_training_job_name_gives_its_pull_request_and_others_none() -> None:
    assert training_job_pull(training_job_name(12)) == 12
    assert training_job_pull("orbit: train PR #31 (gpu)") == 31
    assert training_job_pull("build") is None


def test_a_record_reads_back_exactly_and_a_second_record_of_its_id_changes_nothing() -> None:
    store = memory_inbox()
    store.write(functools.partial(record, run=RECORD))
    store.write(
        functools.partial(record, run=RecordedRun(101, "x/y", DEPLOY, "d.yml", "t", "title", "f" * 40))
    )
    assert store.read(functools.partial(recorded, run_id=101)) == RECORD
    assert store.read(functools.partial(recorded, run_id=102)) is None


def test_a_trigger_finds_the_newest_run_of_its_own_repository_only() -> None:
    store = memory_inbox()
    older = RECORD
    newer = RecordedRun(205, REPOSITORY, TRAIN, "train.yml", "comment:5", RECORD.title, DEFAULT_HEAD)
    elsewhere = RecordedRun(
        300, "octo-org/other", TRAIN, "train.yml", "comment:9", RECORD.title, DEFAULT_HEAD
    )
    for run in (older, newer, elsewhere):
        store.write(functools.partial(record, run=run))
    assert store.read(functools.partial(by_trigger, repository=REPOSITORY, trigger="comment:5")) == newer
    assert store.read(functools.partial(by_trigger, repository=REPOSITORY, trigger="comment:9")) is None
    assert (
        store.read(functools.partial(by_trigger, repository="octo-org/other", trigger="comment:9"))
        == elsewhere
    )


def test_effects_are_recorded_once_each_per_run_and_per_effect() -> None:
    store = memory_inbox()
    store.write(functools.partial(mark_done, run_id=101, effect="published"))
    store.write(functools.partial(mark_done, run_id=101, effect="published"))  # a replay: no second row
    assert store.read(functools.partial(effect_done, run_id=101, effect="published"))
    assert not store.read(functools.partial(effect_done, run_id=101, effect="rolled_out"))
    assert not store.read(functools.partial(effect_done, run_id=102, effect="published"))


def counted(reason: str) -> float:
    return REGISTRY.get_sample_value("orbit_untrusted_runs_total", {"reason": reason}) or 0.0


def test_a_refused_run_is_counted_each_time_and_logged_once_per_run_and_reason(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(runs, "_refused", set())
    before = counted("another workflow file")
    with caplog.at_level(logging.WARNING, logger="bot.runs"):
        refuse(SEEN, "another workflow file")
        refuse(SEEN, "another workflow file")
        refuse(SEEN, "not the commit orbit dispatched")
        refuse(seen(run_id=102), "another workflow file")
    assert counted("another workflow file") == before + 3
    assert [record.getMessage() for record in caplog.records] == [
        "ignoring workflow run 101 of octo-org/model: another workflow file",
        "ignoring workflow run 101 of octo-org/model: not the commit orbit dispatched",
        "ignoring workflow run 102 of octo-org/model: another workflow file",
    ]
