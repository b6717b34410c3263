"""The report bundle's machine-readable part, `report.json`: what the bot trusts and renders.

The bundle comes from a job that ran a pull request's code, so the bot validates it against these
models and never posts its Markdown as is: it renders the report itself, writing every text of it
through `runner.report.inert`. The two texts the check run's title shows as they are (a stage's
name, a metric's name) are one line of at most `MAX_NAME` characters.
"""

from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, FiniteFloat

REPORT_VERSION = 1
Verdict = Literal["better", "worse", "same", "changed", "new", "missing"]
Sense = Literal["higher", "lower", "neutral"]
Judgement = Literal["better", "worse", "no significant change"]
MAX_NAME = 200
MAX_NOTE = 600
VERDICT_METRIC = "val_acc"


def _shortened(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _one_line(text: str) -> str:
    return _shortened(text, MAX_NAME)


def _note(text: str) -> str:
    return _shortened(text, MAX_NOTE)


Name = Annotated[str, AfterValidator(_one_line)]
Note = Annotated[str, AfterValidator(_note)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class ParamChange(_Model):
    """One parameter whose value differs between base and head."""

    path: str
    key: str
    old: object = None
    new: object = None
    added: bool = False
    removed: bool = False


class MetricRow(_Model):
    """One metric of head and base."""

    path: str
    key: Name
    base: float | None = None
    head: float | None = None
    sense: Sense = "neutral"
    verdict: Verdict = "same"

    @property
    def delta(self) -> float | None:
        """Return head minus base, when both exist."""
        return None if self.base is None or self.head is None else self.head - self.base


class Series(_Model):
    """One line of a curve plot: its name and the y value per x."""

    name: str
    x: list[float]
    y: list[float]


class Curve(_Model):
    """A linear plot definition (training history), head and base lines."""

    title: str
    x_label: str
    head: list[Series] = Field(default_factory=list)
    base: list[Series] = Field(default_factory=list)
    image: str | None = None


class Confusion(_Model):
    """A confusion plot definition: class names, head counts and base counts ([actual][predicted])."""

    title: str
    classes: list[str]
    head: list[list[int]]
    base: list[list[int]] | None = None
    image: str | None = None


class Image(_Model):
    """An image plot the pipeline drew itself (the prediction preview).

    `changed` says whether it differs visibly from the base's image; None when there is none to compare.
    """

    title: str
    image: str
    changed: bool | None = None


class Significance(_Model):
    """A metric's change from base to head on the same examples, and whether it is more than noise.

    `low` … `high` is the paired bootstrap's 95 % interval of `delta`; `p_value` is McNemar's exact
    test (accuracy only). The verdict is `better` or `worse` only when the change is significant.
    """

    key: Name
    base: FiniteFloat
    head: FiniteFloat
    delta: FiniteFloat
    low: FiniteFloat
    high: FiniteFloat
    p_value: Annotated[float, Field(ge=0, le=1)] | None = None
    verdict: Judgement


class Stages(_Model):
    """What `dvc repro` did with each stage."""

    ran: list[str] = Field(default_factory=list)
    cached: list[str] = Field(default_factory=list)
    failed: Name | None = None


class Facts(_Model):
    """Where and how the run happened."""

    commit: str
    base_ref: str
    base_commit: str | None = None
    duration_seconds: float | None = None
    device: str = "unknown"
    remote: str | None = None


class Report(_Model):
    """Everything a report shows."""

    version: int = REPORT_VERSION
    facts: Facts
    stages: Stages = Field(default_factory=Stages)
    params: list[ParamChange] = Field(default_factory=list)
    metrics: list[MetricRow] = Field(default_factory=list)
    base_has_metrics: bool = True
    curves: list[Curve] = Field(default_factory=list)
    confusions: list[Confusion] = Field(default_factory=list)
    images: list[Image] = Field(default_factory=list)
    missing_plots: list[str] = Field(default_factory=list)
    log_tail: list[str] = Field(default_factory=list)
    significance: list[Significance] = Field(default_factory=list)
    significance_note: Note | None = None

    @property
    def failed(self) -> bool:
        """Return whether a stage failed."""
        return self.stages.failed is not None

    @property
    def headline_significance(self) -> Significance | None:
        """Return the row the verdict follows: accuracy, the one metric with an exact test."""
        return next((row for row in self.significance if row.key == VERDICT_METRIC), None)

    @property
    def verdict(self) -> Literal["better", "worse", "no significant change", "unknown"]:
        """Return whether head is better than base beyond noise, by accuracy; `unknown` if not judged."""
        row = None if self.failed else self.headline_significance
        return "unknown" if row is None else row.verdict

    def image_names(self) -> list[str]:
        """Return every PNG the report links, in the order it shows them."""
        names = [c.image for c in self.curves] + [c.image for c in self.confusions]
        return [name for name in names if name] + [image.image for image in self.images]
