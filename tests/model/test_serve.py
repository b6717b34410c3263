"""A real `bentoml serve` of the trained model answering HTTP: predictions, bad input, its provenance
(`/metadata`, written into the Bento as deploy.build writes it), and the API key a deployment may make
it ask for."""

import hashlib
import io
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from PIL import Image

from bot.local import held_out_samples, serving
from bot.processes import LocalServer
from deploy.provenance import provenance, written_for_build
from model.serve import API_KEY_ENV
from tests.conftest import TINY_PARAMS, run

pytestmark = pytest.mark.slow

REPORT = "https://github.com/octo/model/pull/7#issuecomment-42"


@pytest.fixture(scope="module")
def bento(trained_project: Path) -> str:
    """Build the Bento with its provenance, as deploy.build's `bento` part does."""
    with written_for_build(trained_project, provenance(trained_project, report_url=REPORT)):
        built = run(["bentoml", "build", "--output", "tag"], trained_project)
    tag = built.stdout.strip().splitlines()[-1]
    assert tag.startswith("__tag__:celestial_bodies_classifier:")
    return tag.removeprefix("__tag__:")


@pytest.fixture(scope="module")
def server(bento: str, trained_project: Path) -> Iterator[LocalServer]:
    with pytest.MonkeyPatch.context() as environment:
        environment.delenv(API_KEY_ENV, raising=False)
        with serving(bento, trained_project) as running:
            yield running


def upload(server: LocalServer, data: bytes, name: str = "x.png", kind: str = "image/png") -> httpx.Response:
    return httpx.post(f"{server.url}/predict", files={"image": (name, data, kind)}, timeout=30)


def png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def test_ready_once_the_model_is_loaded(server: LocalServer) -> None:
    assert httpx.get(f"{server.url}/readyz").status_code == 200


def test_metadata_answers_the_commit_the_hashes_params_metrics_and_report_it_was_built_from(
    server: LocalServer, trained_project: Path
) -> None:
    """Each value checked against its source: git's HEAD, the md5 of the served model's file, the
    params the project was trained with, the metrics it wrote, the report's link."""
    answer = httpx.get(f"{server.url}/metadata", timeout=30)
    assert answer.status_code == 200, answer.text
    served = answer.json()
    model = (trained_project / "model/classifier.bentomodel").read_bytes()
    assert served["provenance"] == "recorded"
    assert served["sha"] == run(["git", "rev-parse", "HEAD"], trained_project).stdout.strip()
    assert served["dvc_lock"]["train"]["model/classifier.bentomodel"] == hashlib.md5(model).hexdigest()
    assert served["dvc_lock"]["generate"]["data/raw"].endswith(".dir")
    assert served["params"] == TINY_PARAMS
    assert served["metrics"] == json.loads((trained_project / "evaluation/metrics.json").read_text())
    assert served["report_url"] == REPORT
    assert not (trained_project / "model/metadata.json").exists(), "only the Bento holds it"


def test_held_out_images_are_classified(server: LocalServer, trained_project: Path) -> None:
    samples = held_out_samples(trained_project, per_class=3)
    right = 0
    for path, truth in samples:
        response = upload(server, path.read_bytes(), path.name, "application/octet-stream")
        assert response.status_code == 200, response.text
        answer = response.json()
        assert set(answer["probabilities"]) == {t for _, t in samples}
        assert sum(answer["probabilities"].values()) == pytest.approx(1.0, abs=1e-3)
        right += answer["prediction"] == truth
    assert right / len(samples) >= 0.6


def test_any_size_and_mode_is_accepted(server: LocalServer, trained_project: Path) -> None:
    path, _ = held_out_samples(trained_project)[0]
    big = Image.open(path).resize((900, 700)).convert("RGBA")
    buffer = io.BytesIO()
    big.convert("RGB").save(buffer, format="JPEG")
    assert upload(server, buffer.getvalue(), "x.jpg", "image/jpeg").status_code == 200
    assert upload(server, png(big)).status_code == 200


def test_batch_endpoint_answers_in_order(server: LocalServer, trained_project: Path) -> None:
    samples = held_out_samples(trained_project)[:4]
    files = [("images", (p.name, p.read_bytes(), "image/png")) for p, _ in samples]
    response = httpx.post(f"{server.url}/predict_batch", files=files, timeout=30)
    assert response.status_code == 200
    singles = [upload(server, p.read_bytes()).json()["prediction"] for p, _ in samples]
    assert [a["prediction"] for a in response.json()] == singles


BAD_UPLOADS = {
    "not an image": (b"just some text\n" * 10, 400, "not an image"),
    "empty": (b"", 400, "empty"),
    "truncated": (png(Image.effect_noise((200, 200), 60).convert("RGB"))[:900], 400, "truncated"),
    "decompression bomb": (png(Image.new("1", (30_000, 30_000))), 413, "pixels"),
    "too large": (png(Image.new("L", (9_000, 3))), 413, "a side"),
}


@pytest.mark.parametrize("case", BAD_UPLOADS)
def test_bad_input_gets_a_clear_4xx_and_the_server_keeps_serving(
    server: LocalServer, trained_project: Path, case: str
) -> None:
    data, status, message = BAD_UPLOADS[case]
    response = upload(server, data)
    assert response.status_code == status
    assert message in response.text
    good, _ = held_out_samples(trained_project)[0]
    assert upload(server, good.read_bytes()).status_code == 200


def test_missing_file_field_is_a_4xx(server: LocalServer) -> None:
    response = httpx.post(
        f"{server.url}/predict", files={"wrong": ("x.png", b"abc", "image/png")}, timeout=30
    )
    assert 400 <= response.status_code < 500


def batch(server: LocalServer, paths: list[Path]) -> httpx.Response:
    files = [("images", (p.name, p.read_bytes(), "image/png")) for p in paths]
    return httpx.post(f"{server.url}/predict_batch", files=files, timeout=60)


def raw_images(project: Path, count: int) -> list[Path]:
    """`count` images of the data set, the classes interleaved (Earth, Jupiter, ..., Earth, ...)."""
    by_class = [sorted(folder.glob("*.png")) for folder in sorted((project / "data/raw").iterdir())]
    interleaved = [path for row in zip(*by_class, strict=False) for path in row]
    assert len(interleaved) >= count
    return interleaved[:count]


def test_batch_of_64_answers_64_in_the_order_sent(server: LocalServer, trained_project: Path) -> None:
    """README: `/predict_batch` takes up to 64 files and answers a list; the n-th answer is the
    /predict answer of the n-th file."""
    paths = raw_images(trained_project, 64)
    response = batch(server, paths)
    assert response.status_code == 200, response.text
    answers = response.json()
    assert len(answers) == 64
    singles = [upload(server, p.read_bytes()).json() for p in paths]
    for answer, single in zip(answers, singles, strict=True):
        assert answer["prediction"] == single["prediction"]
        assert answer["probabilities"] == pytest.approx(single["probabilities"], abs=1e-5)
    assert len({a["prediction"] for a in answers}) >= 5  # answers of unlike images, so order shows


def test_batch_of_65_is_refused_with_413_naming_the_cap(server: LocalServer, trained_project: Path) -> None:
    """One file over README's 64: 413 and a reason naming the cap; the server keeps serving."""
    response = batch(server, raw_images(trained_project, 65))
    assert response.status_code == 413
    assert "at most 64 images a request" in response.text
    assert batch(server, raw_images(trained_project, 1)).status_code == 200


def test_empty_batch_is_a_400_with_the_reason(server: LocalServer) -> None:
    """No files: 400 naming the missing `images` field; an empty list: 400 "send at least one image"."""
    no_files = httpx.post(f"{server.url}/predict_batch", files={"note": (None, "no files")}, timeout=30)
    assert no_files.status_code == 400
    assert no_files.json()["detail"][0]["loc"] == ["images"]
    empty_list = httpx.post(f"{server.url}/predict_batch", json={"images": []}, timeout=30)
    assert empty_list.status_code == 400
    assert "send at least one image" in empty_list.text


KEY = "k3y-0f-the-deployment"


def test_a_configured_key_guards_predictions_and_leaves_probes_and_metrics_open(
    bento: str, trained_project: Path
) -> None:
    """`bentoml serve` with MODEL_API_KEY, as the Deployment sets it from its Secret: /predict and
    /metadata without the key are a 401, with it answered; the kubelet's probes and Prometheus need
    no key."""
    path, _ = held_out_samples(trained_project)[0]
    files = {"image": (path.name, path.read_bytes(), "image/png")}
    with pytest.MonkeyPatch.context() as environment:
        environment.setenv(API_KEY_ENV, KEY)
        with serving(bento, trained_project) as keyed:
            refused = httpx.post(f"{keyed.url}/predict", files=files, timeout=30)
            wrong = httpx.post(
                f"{keyed.url}/predict", files=files, headers={"X-API-Key": "guess"}, timeout=30
            )
            right = httpx.post(
                f"{keyed.url}/predict", files=files, headers={"Authorization": f"Bearer {KEY}"}, timeout=30
            )
            probes = {p: httpx.get(f"{keyed.url}{p}").status_code for p in ("/readyz", "/livez", "/metrics")}
            metadata = (
                httpx.get(f"{keyed.url}/metadata"),
                httpx.get(f"{keyed.url}/metadata", headers={"X-API-Key": KEY}),
            )
    assert (refused.status_code, wrong.status_code) == (401, 401)
    assert [m.status_code for m in metadata] == [401, 200], "the provenance is the organisation's"
    assert metadata[1].json()["report_url"] == REPORT
    assert "needs an API key" in refused.json()["error"]
    assert right.status_code == 200 and right.json()["prediction"] in right.json()["probabilities"]
    assert probes == {"/readyz": 200, "/livez": 200, "/metrics": 200}
