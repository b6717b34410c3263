"""Report bundles and workflow_run payloads for the publishing tests."""

import io
import zipfile
from typing import Any

from PIL import Image

from runner.report.bundle import (
    Confusion,
    Curve,
    Facts,
    MetricRow,
    ParamChange,
    Report,
    Series,
)
from runner.report.bundle import (
    Image as ImagePlot,
)

SHA = "c0ffee" + "a" * 34


def png(colour: tuple[int, int, int] = (30, 120, 180)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (16, 12), colour).save(out, format="PNG")
    return out.getvalue()


def report(**changes: Any) -> Report:
    base = Report(
        facts=Facts(
            commit=SHA, base_ref="main", base_commit="b" * 40, duration_seconds=61, device="1 × NVIDIA L4"
        ),
        params=[ParamChange(path="params.yaml", key="train.lr", old=0.002, new=0.003)],
        metrics=[
            MetricRow(path="m.json", key="val_acc", base=0.8, head=0.9, sense="higher", verdict="better"),
            MetricRow(path="m.json", key="val_loss", base=0.2, head=0.1, sense="lower", verdict="better"),
        ],
        curves=[
            Curve(
                title="Loss",
                x_label="epoch",
                head=[Series(name="val_loss", x=[1, 2], y=[0.5, 0.1])],
                image="loss.png",
            )
        ],
        confusions=[
            Confusion(title="Confusion", classes=["a", "b"], head=[[9, 1], [0, 10]], image="confusion.png")
        ],
        images=[ImagePlot(title="predictions", image="predictions.png")],
    )
    return Report.model_validate({**base.model_dump(), **changes})


def bundle_zip(the_report: Report | None = None, files: dict[str, bytes] | None = None) -> bytes:
    the_report = the_report or report()
    contents = {name: png() for name in the_report.image_names()}
    contents["report.json"] = the_report.model_dump_json().encode()
    contents["report.md"] = b"# not used by the bot"
    contents.update(files or {})
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in contents.items():
            archive.writestr(name, data)
    return out.getvalue()


def run_payload(run_id: int, pull: int = 7, conclusion: str = "success", sha: str = SHA) -> dict[str, Any]:
    return {
        "action": "completed",
        "workflow_run": {
            "id": run_id,
            "name": "train",
            "display_title": f"orbit/train PR #{pull} at {sha}",
            "path": ".github/workflows/train.yml",
            "event": "workflow_dispatch",
            "status": "completed",
            "conclusion": conclusion,
            "head_sha": "d" * 40,  # the default branch's: the PR's commit is in the run name
            "head_repository": {"full_name": "octo-org/model"},
            "html_url": f"https://github.com/octo-org/model/actions/runs/{run_id}",
        },
        "repository": {"full_name": "octo-org/model", "html_url": "https://github.com/octo-org/model"},
        "installation": {"id": 1},
    }
