"""What a user would write instead of the Bento: one FastAPI endpoint, same decode and forward pass."""

import os

from fastapi import FastAPI, HTTPException, UploadFile

from model.classifier import load
from model.images import ImageRejected, decode

app = FastAPI()
classifier = load(os.environ["ORBIT_BENCH_MODEL_DIR"])


@app.post("/predict")
def predict(image: UploadFile) -> dict[str, object]:
    """Classify one uploaded image."""
    try:
        decoded = decode(image.file.read())
    except ImageRejected as rejection:
        raise HTTPException(rejection.status, str(rejection)) from rejection
    return classifier.classify([decoded])[0]
