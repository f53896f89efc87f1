"""`azure-dl serve` and `azure-dl score` without a server: the command, environment and staging they build, and
what they print (the server is replaced by a fake; the HTTP layer too)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, ClassVar

import pytest

from azure_dl import scoring_client
from azure_dl.backends.local import endpoints
from azure_dl.backends.local.endpoint_launcher import split_host
from azure_dl.cli import score as score_cli
from azure_dl.cli import serve as serve_cli
from azure_dl.cli.main import main
from azure_dl.errors import AzureDLError

KEY = "s3cret-endpoint-key"


def model_folder(root: Path, task: str = "image-classification") -> Path:
    folder = root / "output"
    folder.mkdir(parents=True)
    for name in ("model.onnx", "labels.json"):
        (folder / name).write_text("[]")
    (folder / "preprocess.json").write_text(json.dumps({"task": task}))
    if task == "text-classification":
        (folder / "vocab.json").write_text("{}")
    return folder


# -------------------------------------------------------------------------------------------------- endpoint


def test_model_task_reads_preprocess_json_and_names_missing_files(tmp_path: Path) -> None:
    assert endpoints.model_task(model_folder(tmp_path / "a")) == "image-classification"
    assert endpoints.model_task(model_folder(tmp_path / "b", "text-classification")) == "text-classification"
    with pytest.raises(AzureDLError, match=r"model\.onnx, preprocess\.json, labels\.json missing"):
        endpoints.model_task(tmp_path)
    folder = model_folder(tmp_path / "c")
    (folder / "preprocess.json").write_text('{"task": "segmentation"}')
    with pytest.raises(AzureDLError, match="names task 'segmentation'"):
        endpoints.model_task(folder)
    text = model_folder(tmp_path / "d", "text-classification")
    (text / "vocab.json").unlink()
    with pytest.raises(AzureDLError, match=r"no vocab\.json"):
        endpoints.model_task(text)


def test_resolve_model_takes_folders_and_registry_references(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = model_folder(tmp_path)
    assert endpoints.resolve_model(str(folder)) == endpoints.ResolvedModel(folder, "output", "1")
    seen: list[str] = []

    def fake_resolve(ref: str, *, tracking_uri: str | None = None) -> Path:
        seen.append(ref)
        return folder

    monkeypatch.setattr("azure_dl.backends.local.models.resolve_local_model", fake_resolve)
    assert endpoints.resolve_model("models:/xray/3") == endpoints.ResolvedModel(folder, "xray", "3")
    assert endpoints.resolve_model("xray:latest") == endpoints.ResolvedModel(folder, "xray", "latest")
    assert seen == ["models:/xray/3", "xray:latest"]
    with pytest.raises(AzureDLError, match="neither an existing folder nor a registered model"):
        endpoints.resolve_model(str(tmp_path / "missing"))


def test_server_argv_runs_the_launcher_with_azmlinfsrvs_own_flags(tmp_path: Path) -> None:
    script = endpoints.entry_script(tmp_path / "code", "text-classification")
    assert script == tmp_path / "code" / "training_scripts" / "score_lstm.py"
    launcher = tmp_path / "launcher" / "endpoint_launcher.py"
    argv = endpoints.server_argv("/py", launcher, script, tmp_path / "m", host="127.0.0.1", port=5005, workers=2)
    assert argv[:4] == ["/py", str(launcher), "--host", "127.0.0.1"]
    flags = dict(zip(argv[4::2], argv[5::2]))
    assert flags == {
        "--entry_script": str(script),
        "--model_dir": str(tmp_path / "m"),
        "--port": "5005",
        "--worker_count": "2",
    }
    with pytest.raises(AzureDLError, match="--workers 0"):
        endpoints.server_argv("/py", launcher, script, tmp_path, host="127.0.0.1", port=1, workers=0)


def test_server_env_sets_the_app_root_and_model_dir_and_drops_overrides(tmp_path: Path) -> None:
    base = {"PATH": "/bin", "PYTHONPATH": "/dev/stuff", "SEPERATE_HEALTH_ENDPOINT": "true", "HEALTH_PORT": "9"}
    env = endpoints.server_env(base, tmp_path / "code", tmp_path / "models", workers=1, runtime_dir=tmp_path / "run")
    assert env["AML_APP_ROOT"] == str(tmp_path / "code")
    assert env["AZUREML_MODEL_DIR"] == str(tmp_path / "models")
    assert env["XDG_RUNTIME_DIR"] == str(tmp_path / "run")
    assert "SEPERATE_HEALTH_ENDPOINT" not in env and "HEALTH_PORT" not in env
    assert env["PYTHONPATH"] == "/dev/stuff" and "AZURE_DL_ORT_THREADS" not in env
    isolated = endpoints.server_env(base, tmp_path, tmp_path, workers=1, isolated=True)
    assert "PYTHONPATH" not in isolated


def test_several_workers_share_the_cores_unless_told_otherwise(tmp_path: Path) -> None:
    env = endpoints.server_env({}, tmp_path, tmp_path, workers=2)
    assert env["AZURE_DL_ORT_THREADS"] == str(max(1, (os.cpu_count() or 1) // 2))
    assert (
        endpoints.server_env({"AZURE_DL_ORT_THREADS": "3"}, tmp_path, tmp_path, workers=2)["AZURE_DL_ORT_THREADS"]
        == "3"
    )


def test_staging_copies_the_code_without_caches_and_links_the_model_like_azure(tmp_path: Path) -> None:
    code = endpoints.stage_code_root(tmp_path / "code")
    assert sorted(p.name for p in code.iterdir()) == ["training_scripts"]
    launcher = endpoints.stage_launcher(tmp_path / "launcher")
    assert launcher == tmp_path / "launcher" / "endpoint_launcher.py" and launcher.is_file()
    assert (code / "training_scripts" / "score_resnet.py").is_file()
    assert (code / "training_scripts" / "scoring.py").is_file()
    assert not list(code.rglob("__pycache__"))
    model = model_folder(tmp_path / "m")
    model_dir = endpoints.stage_model_dir(tmp_path / "azureml-models", model, "chest x-ray", "3")
    assert model_dir == tmp_path / "azureml-models" / "chest-x-ray" / "3"
    assert (model_dir / "output").resolve() == model.resolve()
    assert endpoints.stage_model_dir(tmp_path / "again", model, "m", "latest").name == "1"


def test_the_launcher_takes_host_out_of_azmlinfsrvs_arguments() -> None:
    assert split_host(["--host", "0.0.0.0", "--port", "5"]) == ("0.0.0.0", ["--port", "5"])
    assert split_host(["--port", "5", "--host=::1"]) == ("::1", ["--port", "5"])
    assert split_host(["--port", "5"]) == ("127.0.0.1", ["--port", "5"])


def test_urls_and_ports(tmp_path: Path) -> None:
    spec = endpoints.ServerSpec(model_dir=tmp_path, task="image-classification", host="0.0.0.0", port=5001)
    assert spec.scoring_url == "http://127.0.0.1:5001/score"
    assert endpoints.probe_host("::") == "[::1]"
    port = endpoints.free_port()
    endpoints.check_port_free("127.0.0.1", port)
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        with pytest.raises(AzureDLError, match=r"cannot listen on 127\.0\.0\.1"):
            endpoints.check_port_free("127.0.0.1", busy.getsockname()[1])


# ------------------------------------------------------------------------------------------------------ serve


class FakeEndpoint:
    """Stands in for LocalEndpoint: records the spec; `wait` simulates Ctrl-C (or the server exiting)."""

    instances: ClassVar[list[FakeEndpoint]] = []

    def __init__(self, spec: endpoints.ServerSpec, *, log_path: Path | None = None) -> None:
        self.spec = spec
        self.events: list[str] = []
        self.exit_code: int | None = None
        FakeEndpoint.instances.append(self)

    def start(self) -> None:
        self.events.append("start")

    def wait_ready(self, timeout_s: float) -> None:
        self.events.append(f"ready<{timeout_s:.0f}")

    def wait(self) -> int:
        if self.exit_code is not None:
            return self.exit_code
        raise KeyboardInterrupt

    def stop(self) -> None:
        self.events.append("stop")


@pytest.fixture
def fake_endpoint(monkeypatch: pytest.MonkeyPatch) -> type[FakeEndpoint]:
    FakeEndpoint.instances = []
    monkeypatch.setattr(endpoints, "LocalEndpoint", FakeEndpoint)
    return FakeEndpoint


def test_serve_starts_prints_the_url_and_stops_on_ctrl_c(
    fake_endpoint: type[FakeEndpoint], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = model_folder(tmp_path, "text-classification")
    assert main(["serve", str(folder), "--port", "5123", "--workers", "2"]) == 0
    server = fake_endpoint.instances[0]
    assert server.events == ["start", "ready<120", "stop"]
    assert server.spec.task == "text-classification" and server.spec.workers == 2
    assert server.spec.host == "127.0.0.1" and server.spec.port == 5123 and not server.spec.isolated
    out, err = capsys.readouterr()
    assert "POST http://127.0.0.1:5123/score" in out
    assert 'azure-dl score http://127.0.0.1:5123 --text "some text"' in out
    assert "stopping the inference server" in err


def test_serve_reports_a_server_that_exits_by_itself(
    fake_endpoint: type[FakeEndpoint], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(FakeEndpoint, "wait", lambda self: 3)
    assert main(["serve", str(model_folder(tmp_path))]) == 3
    assert fake_endpoint.instances[0].events[-1] == "stop"


def test_serve_in_the_inference_environment_uses_its_python(
    fake_endpoint: type[FakeEndpoint], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[bool] = []

    def fake_env(*, rebuild: bool, log: Any) -> Path:
        calls.append(rebuild)
        return Path("/cache/envs/inference-abc/bin/python")

    monkeypatch.setattr("azure_dl.backends.local.inference_env.ensure_inference_env", fake_env)
    assert main(["serve", str(model_folder(tmp_path)), "--env", "inference", "--rebuild-env"]) == 0
    spec = fake_endpoint.instances[0].spec
    assert spec.python == "/cache/envs/inference-abc/bin/python" and spec.isolated and calls == [True]


def test_serve_warns_before_listening_beyond_this_machine(
    fake_endpoint: type[FakeEndpoint], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["serve", str(model_folder(tmp_path)), "--host", "0.0.0.0"]) == 0
    assert "anyone who can reach this machine" in capsys.readouterr().err


@pytest.mark.parametrize(("flag", "value"), [("--port", "0"), ("--workers", "0")])
def test_serve_refuses_bad_numbers(
    fake_endpoint: type[FakeEndpoint], tmp_path: Path, capsys: pytest.CaptureFixture[str], flag: str, value: str
) -> None:
    assert main(["serve", str(model_folder(tmp_path)), flag, value]) == 2
    assert flag in capsys.readouterr().err and not fake_endpoint.instances


def test_serve_refuses_a_folder_that_is_not_a_model(
    fake_endpoint: type[FakeEndpoint], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["serve", str(tmp_path)]) == 2
    assert "is not a training output folder" in capsys.readouterr().err


def test_serve_cleans_up_when_the_server_cannot_start(
    fake_endpoint: type[FakeEndpoint],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import signal

    def busy(self: FakeEndpoint) -> None:
        raise AzureDLError("cannot listen on 127.0.0.1:5001: Address already in use", hint="pick another port")

    monkeypatch.setattr(FakeEndpoint, "start", busy)
    before = signal.getsignal(signal.SIGTERM)
    assert main(["serve", str(model_folder(tmp_path))]) == 2
    assert "Address already in use" in capsys.readouterr().err
    assert fake_endpoint.instances[0].events == ["stop"]
    assert signal.getsignal(signal.SIGTERM) == before


def test_serve_restores_the_signal_handlers() -> None:
    import signal

    before = signal.getsignal(signal.SIGTERM)
    restore = serve_cli._stop_on_signals()
    assert signal.getsignal(signal.SIGTERM) is not before
    restore()
    assert signal.getsignal(signal.SIGTERM) == before


# ------------------------------------------------------------------------------------------------------ score

OK = {"label": "pos", "score": 0.75, "probabilities": {"pos": 0.75, "neg": 0.25}}


class FakePost:
    """The HTTP layer: records each request, answers with one prediction per item (or a fixed answer)."""

    def __init__(self, fixed: scoring_client.HttpAnswer | None = None) -> None:
        self.calls: list[dict[str, Any]] = []
        self.fixed = fixed

    def __call__(self, url: str, payload: dict[str, Any], **kwargs: Any) -> scoring_client.HttpAnswer:
        self.calls.append({"url": url, "payload": payload, **kwargs})
        if self.fixed is not None:
            return self.fixed
        count = len(payload.get("images") or payload.get("texts") or [])
        return scoring_client.HttpAnswer(200, {}, json.dumps({"predictions": [OK] * count}).encode())


@pytest.fixture
def fake_post(monkeypatch: pytest.MonkeyPatch) -> FakePost:
    post = FakePost()
    monkeypatch.setattr(scoring_client, "post_json", post)
    monkeypatch.delenv(score_cli.KEY_ENV, raising=False)
    return post


def test_score_texts_against_a_local_url_prints_a_table(
    fake_post: FakePost, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["score", "http://127.0.0.1:5001", "--text", "good film", "bad film", "meh", "--batch-size", "2"]) == 0
    assert [call["payload"] for call in fake_post.calls] == [{"texts": ["good film", "bad film"]}, {"texts": ["meh"]}]
    assert fake_post.calls[0]["url"] == "http://127.0.0.1:5001/score" and fake_post.calls[0]["key"] is None
    out = capsys.readouterr().out
    assert "Predictions from http://127.0.0.1:5001/score" in out
    assert "bad film" in out and "pos 0.750, neg 0.250" in out


def test_score_images_sends_base64_and_top_k_and_prints_json(
    fake_post: FakePost, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    image = tmp_path / "a.png"
    image.write_bytes(b"\x89PNG\r\n\x1a\n...")
    assert main(["score", "http://localhost:9/score", "--image", str(image), "--top-k", "2", "--json"]) == 0
    payload = fake_post.calls[0]["payload"]
    assert payload["top_k"] == 2 and len(payload["images"]) == 1
    assert json.loads(capsys.readouterr().out) == {"predictions": [OK]}


def test_score_shows_the_scripts_message_for_an_unwrapped_424(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    body = json.dumps({"message": "texts[0] must be a string, got a JSON number"}).encode()
    post = FakePost(scoring_client.HttpAnswer(424, {"ms-azureml-model-error-statuscode": "400"}, body))
    monkeypatch.setattr(scoring_client, "post_json", post)
    monkeypatch.setattr(
        score_cli, "_azure_target", lambda args: ("https://ep.region.inference.ml.azure.com/score", KEY)
    )
    assert main(["score", "my-endpoint", "--text", "x"]) == 2
    err = capsys.readouterr().err
    assert "answered 400 (reported by the endpoint as 424): texts[0] must be a string" in err
    assert KEY not in err


def test_score_an_azure_endpoint_sends_the_key_and_deployment_but_never_prints_the_key(
    fake_post: FakePost, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    seen: list[Any] = []

    def fake_target(args: Any) -> tuple[str, str]:
        seen.append((args.target, args.deployment, args.workspace))
        return "https://ep.region.inference.ml.azure.com/score", KEY

    monkeypatch.setattr(score_cli, "_azure_target", fake_target)
    argv = ["score", "my-endpoint", "--text", "hello", "--deployment", "green", "--workspace", "ws"]
    assert main(argv) == 0
    assert seen == [("my-endpoint", "green", "ws")]
    call = fake_post.calls[0]
    assert call["key"] == KEY and call["deployment"] == "green"
    out, err = capsys.readouterr()
    assert "endpoint my-endpoint (deployment green)" in " ".join(out.split())  # rich wraps the title
    assert KEY not in out + err


def test_score_a_url_uses_the_key_from_the_environment(fake_post: FakePost, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(score_cli.KEY_ENV, KEY)
    assert main(["score", "https://ep.region.inference.ml.azure.com/score", "--text", "x"]) == 0
    assert fake_post.calls[0]["key"] == KEY


def test_score_azure_target_asks_the_endpoints_module(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys
    import types

    fake_module = types.ModuleType("azure_dl.backends.azureml.endpoints")
    calls: list[Any] = []

    def endpoint_target(ml_client: Any, name: str, deployment: str | None = None) -> tuple[str, str]:
        calls.append((ml_client, name, deployment))
        return "https://uri/score", KEY

    fake_module.endpoint_target = endpoint_target  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "azure_dl.backends.azureml.endpoints", fake_module)
    monkeypatch.setattr("azure_dl.backends.azureml.client.client_from_args", lambda args: "ml-client")
    args = score_cli.argparse.Namespace(target="ep", deployment="blue")
    assert score_cli._azure_target(args) == ("https://uri/score", KEY)
    assert calls == [("ml-client", "ep", "blue")]


def test_score_refuses_top_k_for_texts_and_missing_files(
    fake_post: FakePost, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["score", "http://h:1", "--text", "x", "--top-k", "2"]) == 2
    assert "--top-k applies to --image only" in capsys.readouterr().err
    assert main(["score", "http://h:1", "--image", str(tmp_path / "gone.jpg")]) == 2
    assert "gone.jpg not found" in capsys.readouterr().err
    assert not fake_post.calls


def test_score_needs_images_or_texts(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["score", "http://h:1"])
    assert "one of the arguments --image --text is required" in capsys.readouterr().err
