"""Azure ML scoring script for the image classifier: init() loads model.onnx once, run() scores base64 images.

Request `{"images": ["<base64 JPEG/PNG/BMP>", ...], "top_k": 3}`; answer `{"predictions": [{"label", "score",
"probabilities"}]}` in request order; client errors -> HTTP 400 `{"message": ...}` (see training_scripts/scoring.py).
Runs under azureml-inference-server-http with AZUREML_MODEL_DIR set and this folder's parent on sys.path.
"""

from __future__ import annotations

from typing import Any

from training_scripts import scoring

_scorer: scoring.Scorer | None = None


def init() -> None:
    global _scorer
    _scorer = scoring.load_scorer(scoring.find_model_dir(), expected_task=scoring.ImageScorer.task)


def run(raw_data: Any) -> Any:
    return scoring.handle(_scorer, raw_data)
