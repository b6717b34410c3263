"""The service's `/predict` as BentoML's own adaptive batching would serve it (`batchable=True`).

What `model.serve` would be with BentoML batching in place of `MicroBatcher`: the same model, workers,
torch threads, logging, tracing and API key middleware, the same decode, preprocessing and forward
pass, one file a request in the form field `image`. BentoML batches a list input, so each request's
answer is a list of one; its IO layer hands the upload over as a file (`Path`) it has written to disk.
Run by `bench/serve.py`: `bentoml serve bench.serve_batchable:BatchableClassifier`.
"""

from pathlib import Path
from typing import Any, cast

import bentoml
import torch

from model import MODEL_NAME
from model.classifier import Classifier, load
from model.images import ImageRejected
from model.serve import TORCH_THREADS, WORKERS, ApiKeyMiddleware, BadImage

# BentoML's default: a request whose expected wait passes this is refused with 503 ("process is
# overloaded"); the Bento's own batcher refuses none, so the comparison keeps BentoML from shedding load.
MAX_LATENCY_MS = 60_000
MAX_BATCH = 64  # as the Bento's


@bentoml.service(
    name="batchable_classifier",
    workers=WORKERS,
    traffic={"timeout": 30, "max_concurrency": 256},
    logging={"access": {"enabled": False}},
    tracing={"excluded_urls": ["/predict"]},
)
class BatchableClassifier:
    """Classify images, batched by BentoML's `CorkDispatcher`."""

    bento_model = bentoml.models.BentoModel(f"{MODEL_NAME}:latest")

    def __init__(self) -> None:
        if TORCH_THREADS:
            torch.set_num_threads(TORCH_THREADS)
        self.api_key = None  # the middleware's: the benchmark sends no key
        self.classifier: Classifier = load(self.bento_model.path).for_serving()

    @bentoml.api(  # type: ignore[untyped-decorator]  # bentoml is untyped
        route="/predict", batchable=True, max_batch_size=MAX_BATCH, max_latency_ms=MAX_LATENCY_MS
    )
    def predict(self, image: list[Path]) -> list[dict[str, Any]]:
        """Return each image's prediction and probabilities, in the order given."""
        outcomes = self.classifier.score_uploads([path.read_bytes() for path in image])
        answers = []
        for outcome in outcomes:
            if isinstance(outcome, ImageRejected):
                raise BadImage(outcome)
            answers.append(self.classifier.describe(outcome))
        return answers


cast(Any, BatchableClassifier).add_asgi_middleware(ApiKeyMiddleware)
