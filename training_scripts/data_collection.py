"""Model data collection in the scoring scripts: each scored request's inputs and predictions, through
azureml-ai-monitoring's `Collector`, into the collections `model_inputs` and `model_outputs`.

On when the library itself would collect: the platform writes the deployment's collections to a JSON file named by
AZUREML_MDC_CONFIG_PATH for a deployment with `data_collector` (the library reads it, with AZUREML_MDC_HOST/PORT
for the collection agent beside the container), and AZUREML_MDC_ENABLED=true is the library's own switch. With
neither set, or without the package, nothing is imported (pandas neither) and scoring is exactly as before.

The library sends on a thread of its own, so a slow or missing agent never delays an answer; the calls made on the
request's thread (building a DataFrame, queueing it) are wrapped so that no collection error ever fails a request:
the first one is logged as a warning, later ones are counted (at most one warning per 1,000 more). Inputs are
collected once the request is valid, before the model runs; outputs after, with the correlation context the
inputs returned, so each `model_outputs` line carries the `correlationid` of its `model_inputs` line.

Rows: a text request gives one row per text (`text`); an image request one row per image with the image's size
and sha256 (`image_base64_chars`, `image_sha256` of the base64 text) and `top_k` - not the image itself, which
would store megabytes per request (the `request` collection of payload logging keeps raw bodies if needed).
Outputs: one row per prediction (`label`, `score`, `probabilities`).
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

CONFIG_PATH_ENV = "AZUREML_MDC_CONFIG_PATH"
ENABLED_ENV = "AZUREML_MDC_ENABLED"
INPUTS, OUTPUTS = "model_inputs", "model_outputs"
WARN_EVERY = 1000

logger = logging.getLogger("azmlinfsrv.azure_dl.data_collection")


class _Scorer(Protocol):
    def parse(self, body: Mapping[str, Any]) -> tuple[Any, int]: ...

    def predict(self, inputs: Any, top_k: int) -> list[dict[str, Any]]: ...


def configured(environ: Mapping[str, str] | None = None) -> bool:
    """Whether this deployment collects data: the library's own two switches."""
    env = os.environ if environ is None else environ
    return bool(env.get(CONFIG_PATH_ENV)) or env.get(ENABLED_ENV, "").lower() == "true"


def input_rows(body: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One row per item of a (validated) request."""
    if "texts" in body:
        return [{"text": text} for text in body["texts"]]
    top_k = body.get("top_k")
    return [
        {
            "image_sha256": hashlib.sha256(str(image).encode()).hexdigest(),
            "image_base64_chars": len(str(image)),
            "top_k": top_k,
        }
        for image in body.get("images", [])
    ]


class DataCollection:
    """The two collectors of one scoring process; `score` runs a request through the scorer and collects it."""

    def __init__(self, collector_type: Any, frame_type: Any) -> None:
        self._frame = frame_type
        self._errors = 0
        self._lock = threading.Lock()
        self.inputs = self._collector(collector_type, INPUTS)
        self.outputs = self._collector(collector_type, OUTPUTS)

    def _collector(self, collector_type: Any, name: str) -> Any:
        """The library's Collector for `name`, or None when the library refuses it at once (the collection is not
        enabled in the deployment's data_collector): it would refuse every request the same way."""
        refused: list[BaseException] = []
        started = threading.Event()

        def on_error(error: BaseException) -> None:  # once constructed, failures go to the once-logged counter
            self.failed(error) if started.is_set() else refused.append(error)

        collector = collector_type(name=name, on_error=on_error)
        if refused:
            logger.info("model data collection: %s is not collected (%s)", name, refused[0])
            return None
        started.set()
        return collector

    @property
    def errors(self) -> int:
        return self._errors

    def failed(self, error: BaseException) -> None:
        """The library's on_error, and ours: log the first, count the rest; never raise."""
        with self._lock:
            self._errors += 1
            count = self._errors
        if count == 1:
            logger.warning("model data collection failed: %s; scoring goes on (later failures are counted)", error)
        elif count % WARN_EVERY == 0:
            logger.warning("model data collection has failed %d times; last: %s", count, error)

    def collect(self, collector: Any, rows: Sequence[Mapping[str, Any]], context: Any = None) -> Any:
        """The collector's correlation context for these rows (or `context` unchanged when collecting failed or
        this collection is off)."""
        if collector is None:
            return context
        try:
            return collector.collect(self._frame(list(rows)), context)
        except Exception as exc:  # any failure of the library or of pandas: the request must not see it
            self.failed(exc)
            return context

    def score(self, scorer: _Scorer, body: Mapping[str, Any]) -> dict[str, Any]:
        """What `Scorer.score` answers, with the inputs and predictions collected."""
        inputs, top_k = scorer.parse(body)  # a client error raises before anything is collected
        context = self.collect(self.inputs, input_rows(body))
        answer = {"predictions": scorer.predict(inputs, top_k)}
        self.collect(self.outputs, answer["predictions"], context)
        return answer


def from_environment(environ: Mapping[str, str] | None = None) -> DataCollection | None:
    """The process's DataCollection when this deployment collects data and the library is installed, else None
    (said once in the log when collection was asked for but cannot happen)."""
    if not configured(environ):
        return None
    try:
        import pandas as pd
        from azureml.ai.monitoring import Collector
    except ImportError as exc:
        logger.warning(
            "this deployment collects model data, but %s is not installed: nothing is collected "
            "(add azureml-ai-monitoring to the inference environment)",
            exc.name,
        )
        return None
    try:
        collection = DataCollection(Collector, pd.DataFrame)
    except Exception as exc:
        logger.warning("model data collection could not start: %s; scoring goes on without it", exc)
        return None
    if collection.inputs is None and collection.outputs is None:
        logger.warning("model data collection: neither %s nor %s is enabled; nothing is collected", INPUTS, OUTPUTS)
        return None
    logger.info("collecting %s and %s with azureml-ai-monitoring", INPUTS, OUTPUTS)
    return collection
