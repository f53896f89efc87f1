"""Azure ML scoring script for the image classifier: init() loads model.onnx once, run() scores base64 images.

Request `{"images": ["<base64 JPEG/PNG/BMP/DICOM>", ...], "top_k": 3}`; answer `{"predictions": [{"label", "score",
"probabilities"}]}` in request order; client errors -> HTTP 400 `{"message": ...}` (see training_scripts/scoring.py).
Runs under azureml-inference-server-http with AZUREML_MODEL_DIR set.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

# Azure ML puts the scoring script's own folder on sys.path (AML_APP_ROOT), not the code root above it that holds
# the training_scripts package: add that root, last, so that nothing installed is shadowed.
_CODE_ROOT = str(Path(__file__).resolve().parent.parent)
if _CODE_ROOT not in sys.path:
    sys.path.append(_CODE_ROOT)

from training_scripts import data_collection, scoring  # noqa: E402

_scorer: scoring.Scorer | None = None
_collection: data_collection.DataCollection | None = None  # set when the deployment collects data


def init() -> None:
    global _scorer, _collection
    _scorer = scoring.load_scorer(scoring.find_model_dir(), expected_task=scoring.ImageScorer.task)
    _collection = data_collection.from_environment()


def run(raw_data: Any) -> Any:
    return scoring.handle(_scorer, raw_data, _collection)
