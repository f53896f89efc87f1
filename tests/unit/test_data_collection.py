"""Model data collection in the scoring scripts (training_scripts/data_collection.py): on only with the library's
own switches, inputs and outputs correlated, and never a failed request because of collection."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.unit.test_scoring import make_model_dir
from training_scripts import data_collection, scoring


class FakeCollector:
    """azureml-ai-monitoring's Collector as the scripts use it: collect(frame, context) -> context; a collection
    that is not enabled calls on_error while it is constructed (as the library's _validate_mdc_config does)."""

    enabled = frozenset({"model_inputs", "model_outputs"})
    fail_with: Exception | None = None

    def __init__(self, *, name: str, on_error: Any) -> None:
        self.name = name
        self.on_error = on_error
        self.collected: list[tuple[Any, str]] = []
        if name not in self.enabled:
            on_error(Exception(f"collection {name} is not enabled, drop the data"))

    def collect(self, data: Any, correlation_context: Any = None) -> Any:
        if self.fail_with is not None:
            raise self.fail_with
        context = correlation_context or f"ctx-{len(self.collected)}"
        self.collected.append((data, context))
        return context


@pytest.fixture(scope="module")
def text_scorer(tmp_path_factory: pytest.TempPathFactory) -> scoring.Scorer:
    return scoring.load_scorer(make_model_dir(tmp_path_factory.mktemp("text") / "model", "text"))


def _collection(**overrides: Any) -> data_collection.DataCollection:
    collector = type("Collector", (FakeCollector,), overrides)
    return data_collection.DataCollection(collector, list)  # frames as plain lists: the rows themselves


def test_collection_is_on_only_with_the_librarys_own_switches() -> None:
    assert not data_collection.configured({})
    assert not data_collection.configured({"AZUREML_MDC_ENABLED": "false"})
    assert data_collection.configured({"AZUREML_MDC_ENABLED": "True"})
    assert data_collection.configured({"AZUREML_MDC_CONFIG_PATH": "/var/mdc/config.json"})
    assert data_collection.from_environment({}) is None


def test_inputs_and_outputs_are_collected_with_one_correlation_context(text_scorer: scoring.Scorer) -> None:
    collection = _collection()
    answer = scoring.handle(text_scorer, json.dumps({"texts": ["good film", "dull"]}), collection)
    assert len(answer["predictions"]) == 2
    ((inputs, context),) = collection.inputs.collected
    ((outputs, output_context),) = collection.outputs.collected
    assert inputs == [{"text": "good film"}, {"text": "dull"}]
    assert outputs == answer["predictions"]
    assert output_context == context  # the outputs line carries the inputs line's correlation id


def test_a_client_error_collects_nothing(text_scorer: scoring.Scorer) -> None:
    collection = _collection()
    assert scoring.handle(text_scorer, '{"texts": "not a list"}', collection).status_code == 400
    assert collection.inputs.collected == [] and collection.outputs.collected == []


def test_a_failing_collector_never_fails_the_request_and_is_logged_once(
    text_scorer: scoring.Scorer, caplog: pytest.LogCaptureFixture
) -> None:
    collection = _collection(fail_with=RuntimeError("queue is full"))
    with caplog.at_level(logging.WARNING, logger="azmlinfsrv.azure_dl.data_collection"):
        answers = [scoring.handle(text_scorer, '{"texts": ["fine"]}', collection) for _ in range(3)]
    assert all(len(answer["predictions"]) == 1 for answer in answers)
    assert collection.errors == 6  # inputs and outputs, 3 requests
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "queue is full" in warnings[0]


def test_a_collection_the_deployment_does_not_enable_is_skipped(text_scorer: scoring.Scorer) -> None:
    collection = _collection(enabled={"model_inputs"})
    assert collection.outputs is None
    scoring.handle(text_scorer, '{"texts": ["fine"]}', collection)
    assert len(collection.inputs.collected) == 1 and collection.errors == 0


def test_image_rows_hold_the_images_digest_not_the_image() -> None:
    rows = data_collection.input_rows({"images": ["aGVsbG8=", "d29ybGQ="], "top_k": 2})
    assert [set(row) for row in rows] == [{"image_sha256", "image_base64_chars", "top_k"}] * 2
    assert rows[0]["image_base64_chars"] == 8 and rows[0]["top_k"] == 2 and rows[0] != rows[1]


def test_without_the_package_collection_is_off_with_a_warning(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setitem(sys.modules, "azureml.ai.monitoring", None)  # import fails as if not installed
    with caplog.at_level(logging.WARNING, logger="azmlinfsrv.azure_dl.data_collection"):
        assert data_collection.from_environment({"AZUREML_MDC_ENABLED": "true"}) is None
    assert "azureml-ai-monitoring" in caplog.text


def test_the_real_library_in_a_scoring_process_imports_nothing_when_off_and_never_breaks_scoring(
    tmp_path: Path,
) -> None:
    """score_lstm as the inference server runs it: without the switches neither pandas nor the library is imported;
    with collection on and no agent listening (the port is closed), every request is still answered."""
    pytest.importorskip("azureml.ai.monitoring")
    make_model_dir(tmp_path / "model", "text")
    config = tmp_path / "mdc.json"
    config.write_text(
        json.dumps({"collections": {"model_inputs": {"enabled": True}, "model_outputs": {"enabled": True}}})
    )
    probe = f"""
import json, os, socket, sys
os.environ["AZUREML_MODEL_DIR"] = {str(tmp_path / "model")!r}
from training_scripts import score_lstm
score_lstm.init()
assert score_lstm.run('{{"texts": ["good"]}}')["predictions"]
off = sorted(m for m in sys.modules if m == "pandas" or m.startswith("azureml.ai"))
closed = socket.socket(); closed.bind(("127.0.0.1", 0)); port = closed.getsockname()[1]; closed.close()
os.environ.update(AZUREML_MDC_CONFIG_PATH={str(config)!r}, AZUREML_MDC_PORT=str(port))
score_lstm.init()
answers = [score_lstm.run('{{"texts": ["good"]}}') for _ in range(3)]
with open("result.json", "w") as out:  # not stdout: the library's sender thread logs there
    json.dump({{"off": off, "on": score_lstm._collection is not None,
               "answered": [len(a["predictions"]) for a in answers]}}, out)
"""
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=False, cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads((tmp_path / "result.json").read_text()) == {"off": [], "on": True, "answered": [1, 1, 1]}
