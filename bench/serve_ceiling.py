"""The machine's limit for `/predict`: decode + preprocess + forward pass in process, without HTTP.

The classifier as the service runs it (`Classifier.for_serving`); the eager network as trained, as the
minimal endpoint runs it, is measured too, for reference. Two figures, each the best this machine reaches:
- batch 1: one image at a time, one stream (what a server at concurrency 1 could do at most),
  with 1 and with all torch threads;
- batch 32: 32 images a pass, on every core: one process with all torch threads, and one process
  a core with one thread each (what a server at concurrency 32 could do at most).
"""

import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch

from model.classifier import Classifier, load

CORES = len(os.sched_getaffinity(0))  # the cores this process (and the servers it starts) may use
SERVED, EAGER = "served", "eager"
_loaded: dict[str, Classifier] = {}  # in each pool process, once its initializer has run
_uploads: list[bytes] = []


def _start(model_dir: str, uploads: list[bytes]) -> None:
    _loaded[EAGER] = load(model_dir)
    _loaded[SERVED] = _loaded[EAGER].for_serving()
    _uploads[:] = uploads


def _images_per_second(batch: int, threads: int, seconds: float, network: str) -> float:
    """Classify uploads `batch` at a time for about `seconds`; return images a second."""
    classifier = _loaded[network]
    torch.set_num_threads(threads)
    rounds = [[_uploads[(i * batch + j) % len(_uploads)] for j in range(batch)] for i in range(len(_uploads))]
    classifier.score_uploads(rounds[0])  # warm up
    done, began = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - began) < seconds:
        classifier.score_uploads(rounds[done % len(rounds)])
        done += 1
    return done * batch / elapsed


@dataclass(frozen=True)
class Ceiling:
    """Images a second in process: the best of each setting tried, and what each reached."""

    batch1: float
    batch32: float
    settings: dict[str, float]


class CeilingProbe:
    """A pool of one process a core that have loaded the model, to measure the ceiling repeatedly."""

    def __init__(self, model_dir: str, uploads: list[bytes]) -> None:
        # Spawned, not forked: OpenMP's threads do not survive a fork, and a forked child's are slow.
        self.pool = ProcessPoolExecutor(
            CORES, multiprocessing.get_context("spawn"), initializer=_start, initargs=(model_dir, uploads)
        )

    def measure(self, seconds: float = 1.5) -> Ceiling:
        """Run each setting in turn; return the best rate for batch 1 and for batch 32."""
        settings = {
            "batch 1, 1 thread": self._run(1, 1, 1, seconds),
            f"batch 1, {CORES} threads": self._run(1, 1, CORES, seconds),
            f"batch 32, 1 process x {CORES} threads": self._run(32, 1, CORES, seconds),
            f"batch 32, {CORES} processes x 1 thread": self._run(32, CORES, 1, seconds),
            "eager network, batch 1, 1 thread": self._run(1, 1, 1, seconds, EAGER),
            f"eager network, batch 32, {CORES} x 1 thread": self._run(32, CORES, 1, seconds, EAGER),
        }
        values = list(settings.values())
        return Ceiling(max(values[:2]), max(values[2:4]), settings)

    def _run(self, batch: int, processes: int, threads: int, seconds: float, network: str = SERVED) -> float:
        """Images a second of `processes` processes of `threads` torch threads each, together."""
        futures = [
            self.pool.submit(_images_per_second, batch, threads, seconds, network) for _ in range(processes)
        ]
        return float(np.sum([future.result() for future in futures]))

    def close(self) -> None:
        """Stop the pool's processes."""
        self.pool.shutdown(cancel_futures=True)
