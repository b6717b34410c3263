"""`POST /predict` as the service's own route: what it refuses, and uploads batched together.

Through the real ASGI app (`CelestialBodiesClassifier.to_asgi()`), as in `test_serve_app.py`.
"""

import asyncio
import os
import time

import pytest

from model import serve
from model.classifier import Classifier
from model.images import MAX_UPLOAD_BYTES
from tests.model.test_serve_app import (
    SERVICE,
    Install,
    distinct_pngs,
    png,
    predict,
    served,
    stand_in,
    tiny_classifier,
)

pytestmark = pytest.mark.filterwarnings("ignore::pydantic.warnings.PydanticDeprecatedSince211")
__all__ = ["stand_in"]  # the fixture, used by name


async def test_an_upload_that_is_not_a_form_is_refused_with_415_saying_how_to_send_it(
    stand_in: Install,
) -> None:
    loading = stand_in(tiny_classifier())
    async with served() as client:
        loading.finish()
        for sent in (
            await client.post("/predict", content=png((1, 2, 3)), headers={"content-type": "image/png"}),
            await client.post("/predict", json={"image": "x"}),
        ):
            assert sent.status_code == 415
            assert sent.json() == {"error": "send the image as multipart/form-data, in the field `image`"}


async def test_a_form_without_the_image_field_is_a_400_naming_it(stand_in: Install) -> None:
    loading = stand_in(tiny_classifier())
    async with served() as client:
        loading.finish()
        for form in (
            {"files": {"picture": ("x.png", png((1, 2, 3)), "image/png")}},
            {"files": {"image": (None, b"not a file")}},
        ):
            sent = await client.post("/predict", **form)
            assert sent.status_code == 400, sent.text
            assert sent.json() == {"error": "send the image as a file in the form field `image`"}


async def test_more_than_one_file_is_a_400_and_the_batch_endpoint_takes_several(stand_in: Install) -> None:
    loading = stand_in(tiny_classifier())
    async with served() as client:
        loading.finish()
        files = [("image", (f"{i}.png", data, "image/png")) for i, data in enumerate(distinct_pngs(2))]
        sent = await client.post("/predict", files=files)
    assert sent.status_code == 400
    assert sent.json()["error"].startswith("the form cannot be read (Too many files.")


async def test_an_upload_declared_over_the_limit_is_refused_with_413_before_it_is_read(
    stand_in: Install,
) -> None:
    loading = stand_in(tiny_classifier())
    async with served() as client:
        loading.finish()
        body = b"x" * (MAX_UPLOAD_BYTES + serve.MAX_FORM_OVERHEAD + 1)
        sent = await client.post(
            "/predict", content=body, headers={"content-type": "multipart/form-data; b=x"}
        )
    assert sent.status_code == 413
    assert sent.json() == {"error": f"the upload is over {MAX_UPLOAD_BYTES} bytes"}


async def test_uploads_sent_together_get_their_own_answers_and_a_bad_one_fails_alone(
    stand_in: Install,
) -> None:
    """Concurrent requests share forward passes; each still gets the answer it gets alone, and a bad
    upload among them gets its 400 without failing the others."""
    loading = stand_in(tiny_classifier())
    images = distinct_pngs(12)
    async with served() as client:
        loading.finish()
        alone = [(await predict(client, data)).json() for data in images]
        uploads = [*images[:6], b"not an image at all", *images[6:]]
        together = await asyncio.gather(*(predict(client, data) for data in uploads))
    bad = together.pop(6)
    assert bad.status_code == 400
    assert bad.json() == {"error": "the upload is not an image: send a PNG, JPEG or WebP image"}
    assert [answer.status_code for answer in together] == [200] * 12
    for answer, single in zip(together, alone, strict=True):
        assert answer.json()["prediction"] == single["prediction"]
        assert answer.json()["probabilities"] == pytest.approx(single["probabilities"], abs=1e-5)


def test_the_workers_default_to_the_usable_cores_at_most_two_or_what_is_configured(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(serve.WORKERS_ENV, raising=False)
    monkeypatch.setattr(os, "sched_getaffinity", lambda _: {0, 1, 2, 3, 4, 5})
    assert serve.workers_from_environment() == 2
    monkeypatch.setattr(os, "sched_getaffinity", lambda _: {3})
    assert serve.workers_from_environment() == 1
    monkeypatch.setenv(serve.WORKERS_ENV, " 3\n")
    assert serve.workers_from_environment() == 3
    for wrong in ("0", "two", "-1", "1.5"):
        monkeypatch.setenv(serve.WORKERS_ENV, wrong)
        with pytest.raises(
            ValueError, match=f"MODEL_WORKERS must be a whole number of workers, 1 or more, not '{wrong}'"
        ):
            serve.workers_from_environment()


async def test_the_model_is_served_as_made_for_serving(stand_in: Install) -> None:
    """The service folds the model for inference once it has loaded it (`Classifier.for_serving`)."""
    loading = stand_in(tiny_classifier())
    async with served() as client:
        loading.finish()
        assert (await client.get("/readyz")).status_code == 200
    assert loading.services[0].classifier.channels_last


async def test_a_quick_load_is_over_before_the_worker_serves(monkeypatch: pytest.MonkeyPatch) -> None:
    """A worker waits for a model that loads within `STARTUP_WAIT_S`: its first answers are ready ones
    (with several workers, none answers 503 while another is ready)."""

    def load_in_a_while(_: object) -> Classifier:
        time.sleep(0.5)  # far longer than the first requests take: they come only once it is over
        return tiny_classifier()

    monkeypatch.setattr(SERVICE.inner, "_load_classifier", load_in_a_while)
    async with served() as client:
        assert (await client.get("/readyz")).status_code == 200
        assert (await predict(client, png((9, 99, 199)))).status_code == 200
