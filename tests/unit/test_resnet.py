"""ResNets match torchvision's layout and forward; pretrained loading, stage freezing and model_config behave."""

from __future__ import annotations

import json
import logging
import re
import socket
import urllib.error
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from tests.reference import torchvision_resnet as reference
from training_scripts import models
from training_scripts.lstm import LSTMClassifier
from training_scripts.models import build_model, freeze, model_config
from training_scripts.resnet import TORCHVISION_WEIGHTS, BasicBlock, Bottleneck, resnet18, resnet34, resnet50

BUILDERS = {"resnet18": resnet18, "resnet34": resnet34, "resnet50": resnet50}


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread() -> Iterator[None]:
    # On two shared, busy cores, intra-op threads spin against each other: tiny models run 10x slower.
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def _shapes(model: nn.Module) -> list[tuple[str, tuple[int, ...]]]:
    return [(key, tuple(value.shape)) for key, value in model.state_dict().items()]


def _settle_batchnorm(model: nn.Module, size: int = 32) -> None:
    """A few train-mode forwards so the BN running statistics are no longer the trivial 0/1."""
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(4, 3, size, size))
    model.eval()


@pytest.mark.parametrize("arch", ["resnet18", "resnet34", "resnet50"])
def test_state_dict_layout_and_size_match_torchvision(arch: str) -> None:
    model = BUILDERS[arch]()
    assert _shapes(model) == reference.state_dict_shapes(arch)  # same keys, same order, same shapes
    assert sum(p.numel() for p in model.parameters()) == reference.PUBLISHED_NUM_PARAMS[arch]


@pytest.mark.parametrize("arch", ["resnet18", "resnet50"])
def test_torchvision_layout_weights_load_strictly_and_give_the_same_logits(arch: str) -> None:
    state_dict = reference.random_state_dict(arch, num_classes=7, seed=1)
    model = BUILDERS[arch](num_classes=7)
    model.load_state_dict(state_dict, strict=True)  # (loading from a file: the pretrained tests below)
    model.eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        ours = model(x)
    torch.testing.assert_close(ours, reference.forward(arch, state_dict, x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("arch", ["resnet18", "resnet50"])
def test_our_weights_have_torchvision_layout_and_forward(arch: str) -> None:
    model = BUILDERS[arch](num_classes=5)
    _settle_batchnorm(model)
    state_dict = model.state_dict()
    assert [(k, tuple(v.shape)) for k, v in state_dict.items()] == reference.state_dict_shapes(arch, 5)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model(x), reference.forward(arch, state_dict, x), rtol=1e-5, atol=1e-5)


def test_resnet50_is_v1_5_stride_on_the_3x3_conv() -> None:
    first = resnet50().layer2[0]
    assert isinstance(first, Bottleneck)
    assert first.conv1.stride == (1, 1) and first.conv2.stride == (2, 2)


def test_initialisation_follows_torchvision() -> None:
    model = resnet18()
    block = model.layer3[1]
    assert isinstance(block, BasicBlock)
    conv = block.conv2  # 256 -> 256, 3x3: kaiming fan_out std = sqrt(2 / (256 * 9))
    assert conv.weight.std().item() == pytest.approx((2 / (256 * 9)) ** 0.5, rel=0.05)
    assert torch.all(model.bn1.weight == 1) and torch.all(model.bn1.bias == 0)


def test_torchvision_weight_urls() -> None:
    assert set(TORCHVISION_WEIGHTS) == {"resnet18", "resnet34", "resnet50"}
    for arch, url in TORCHVISION_WEIGHTS.items():
        assert url.startswith(f"https://download.pytorch.org/models/{arch}-") and url.endswith(".pth")


# --- pretrained loading -------------------------------------------------------------------------------------------


def test_pretrained_with_another_class_count_reinitialises_only_fc(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    state_dict = reference.random_state_dict("resnet18", num_classes=10, seed=2)
    checkpoint = tmp_path / "r18.pth"
    torch.save(state_dict, checkpoint)
    with caplog.at_level(logging.WARNING, logger="training_scripts.models"):
        model = build_model("resnet18", num_classes=3, pretrained=str(checkpoint))
    loaded = model.state_dict()
    assert loaded["fc.weight"].shape == (3, 512)
    for key, value in state_dict.items():
        if not key.startswith("fc."):
            assert torch.equal(loaded[key], value), key
    assert "fc.weight" in caplog.text and "10-class" in caplog.text


@pytest.mark.parametrize("wrapper", ["state_dict", "model"])
def test_pretrained_accepts_a_wrapped_state_dict(tmp_path: Path, wrapper: str) -> None:
    state_dict = reference.random_state_dict("resnet18", num_classes=4, seed=3)
    checkpoint = tmp_path / "wrapped.pth"
    torch.save({wrapper: state_dict, "epoch": 3}, checkpoint)
    model = build_model("resnet18", num_classes=4, pretrained=checkpoint)
    assert torch.equal(model.state_dict()["layer4.1.bn2.running_var"], state_dict["layer4.1.bn2.running_var"])


def test_pretrained_of_another_architecture_is_a_clear_error(tmp_path: Path) -> None:
    checkpoint = tmp_path / "r18.pth"
    torch.save(reference.random_state_dict("resnet18", num_classes=4), checkpoint)
    with pytest.raises(ValueError, match=r"does not fit this ResNet.*missing: \['layer1.2"):
        build_model("resnet34", num_classes=4, pretrained=checkpoint)


def test_missing_pretrained_file_names_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "nope" / "weights.pth"
    with pytest.raises(FileNotFoundError, match=re.escape(str(missing))):
        build_model("resnet18", num_classes=2, pretrained=missing)


def test_unreachable_url_fails_fast_with_what_to_do(monkeypatch: pytest.MonkeyPatch) -> None:
    seen_timeouts: list[float | None] = []

    def offline(url: str, **kwargs: Any) -> dict[str, torch.Tensor]:
        seen_timeouts.append(socket.getdefaulttimeout())
        raise urllib.error.URLError(OSError(-3, "Temporary failure in name resolution"))

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    before = socket.getdefaulttimeout()
    with pytest.raises(RuntimeError) as raised:
        build_model("resnet18", num_classes=2, pretrained="default")
    message = str(raised.value)
    assert TORCHVISION_WEIGHTS["resnet18"] in message
    assert "--pretrained PATH" in message and "--pretrained none" in message
    assert seen_timeouts == [models.DOWNLOAD_TIMEOUT_S]  # a stalled connection gives up instead of hanging
    assert socket.getdefaulttimeout() == before


def test_http_error_names_the_status_but_not_the_query_string(monkeypatch: pytest.MonkeyPatch) -> None:
    url = "https://example.invalid/weights.pth?sv=2024&sig=SECRET"

    def not_found(url: str, **kwargs: Any) -> dict[str, torch.Tensor]:
        raise urllib.error.HTTPError(url, 404, "Not Found", {}, None)  # type: ignore[arg-type]

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", not_found)
    with pytest.raises(RuntimeError, match=r"example\.invalid/weights\.pth\?\.\.\.: HTTP 404") as raised:
        build_model("resnet18", num_classes=2, pretrained=url)
    assert "SECRET" not in str(raised.value)


def test_default_weights_are_fetched_through_torch_hub_safely(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, dict[str, Any]]] = []
    state_dict = reference.random_state_dict("resnet18", num_classes=1000, seed=4)

    def fake_hub(url: str, **kwargs: Any) -> dict[str, torch.Tensor]:
        calls.append((url, kwargs))
        return state_dict

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", fake_hub)
    model = build_model("resnet18", num_classes=1000, pretrained="default")
    assert torch.equal(model.state_dict()["fc.weight"], state_dict["fc.weight"])
    url, kwargs = calls[0]
    assert url == TORCHVISION_WEIGHTS["resnet18"]
    assert kwargs["weights_only"] is True and kwargs["map_location"] == "cpu" and kwargs["check_hash"] is True


def test_bad_arch_and_options_are_clear_errors() -> None:
    with pytest.raises(ValueError, match="resnet18, resnet34, resnet50, lstm"):
        build_model("resnet101", num_classes=2)
    with pytest.raises(ValueError, match="takes no options"):
        build_model("resnet18", num_classes=2, hidden_size=3)
    with pytest.raises(ValueError, match="only for resnet18"):
        build_model("lstm", num_classes=2, pretrained="default", vocab_size=10)


# --- freezing -----------------------------------------------------------------------------------------------------


def _stage_of(name: str) -> str:
    """The stage of a parameter, buffer or module name ("bn1" is a module of the stem too)."""
    return "stem" if f"{name}.".startswith(("conv1.", "bn1.")) else name.split(".")[0]


@pytest.mark.parametrize(
    ("upto", "frozen_stages"),
    [
        ("stem", {"stem"}),
        ("layer2", {"stem", "layer1", "layer2"}),
        ("all-but-head", {"stem", "layer1", "layer2", "layer3", "layer4"}),
    ],
)
def test_frozen_weights_and_batchnorm_statistics_do_not_move(upto: str, frozen_stages: set[str]) -> None:
    model = resnet18(num_classes=3)
    _settle_batchnorm(model)
    frozen = freeze(model, upto)
    assert frozen == [n for n, p in model.named_parameters() if _stage_of(n) in frozen_stages]
    before = {k: v.clone() for k, v in model.state_dict().items()}

    model.train()  # must not wake the frozen BatchNorm layers
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1, momentum=0.9)
    for _ in range(3):
        optimizer.zero_grad()
        loss = nn.functional.cross_entropy(model(torch.randn(4, 3, 32, 32)), torch.tensor([0, 1, 2, 0]))
        loss.backward()
        optimizer.step()

    after = model.state_dict()
    for key, value in before.items():
        changed = not torch.equal(value, after[key])
        assert changed != (_stage_of(key) in frozen_stages), key  # frozen: unchanged; trainable: moved
    for name, module in model.named_modules():
        if isinstance(module, nn.BatchNorm2d):
            assert module.training != (_stage_of(name) in frozen_stages), name


def test_freeze_sets_the_state_rather_than_adding_to_it() -> None:
    model = resnet18(num_classes=2)
    freeze(model, "layer3")
    assert freeze(model, "stem") == ["conv1.weight", "bn1.weight", "bn1.bias"]
    block = model.layer1[0]
    assert isinstance(block, BasicBlock)
    assert block.conv1.weight.requires_grad and block.bn1.training
    assert freeze(model, "none") == [] and all(p.requires_grad for p in model.parameters())


def test_frozen_sync_batchnorm_stays_in_eval_mode_too() -> None:
    model = nn.SyncBatchNorm.convert_sync_batchnorm(resnet18(num_classes=2))
    keys = list(model.state_dict())
    freeze(model, "layer1")
    model.train()
    sync_bns = {name: m.training for name, m in model.named_modules() if isinstance(m, nn.SyncBatchNorm)}
    assert sync_bns and all(training != (_stage_of(name) in {"stem", "layer1"}) for name, training in sync_bns.items())
    assert list(model.state_dict()) == keys


def test_freeze_keeps_state_dict_keys_and_rejects_unknown_stages() -> None:
    model = resnet18(num_classes=2)
    keys = list(model.state_dict())
    freeze(model, "layer4")
    assert list(model.state_dict()) == keys
    with pytest.raises(ValueError, match="none, stem, layer1, layer2, layer3, layer4, all-but-head"):
        freeze(model, "layer5")
    lstm = build_model("lstm", num_classes=2, vocab_size=20, embed_dim=4, hidden_size=3)
    assert isinstance(lstm, LSTMClassifier)
    with pytest.raises(ValueError, match="'none' or 'all-but-head'"):
        freeze(lstm, "layer1")
    assert all(not name.startswith("fc.") for name in freeze(lstm, "all-but-head"))
    assert lstm.fc.weight.requires_grad and not lstm.embedding.weight.requires_grad


# --- model_config -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("arch", "kwargs"),
    [
        ("resnet18", {}),
        ("resnet50", {}),
        ("lstm", {"vocab_size": 30, "embed_dim": 6, "hidden_size": 5, "num_layers": 2, "bidirectional": True}),
    ],
)
def test_model_config_round_trips_through_json(arch: str, kwargs: dict[str, Any]) -> None:
    model = build_model(arch, num_classes=4, **kwargs)
    config = json.loads(json.dumps(model_config(model)))
    assert config["arch"] == arch and config["num_classes"] == 4
    rebuilt = build_model(**config)
    rebuilt.load_state_dict(model.state_dict(), strict=True)
    assert model_config(rebuilt) == config


def test_model_config_names_every_resnet() -> None:
    assert model_config(resnet34(num_classes=6)) == {"arch": "resnet34", "num_classes": 6}


def test_model_config_rejects_foreign_models() -> None:
    with pytest.raises(ValueError, match="not Linear"):
        model_config(nn.Linear(2, 2))
