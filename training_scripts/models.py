"""Build the training scripts' models by name, load pretrained weights, freeze stages, and describe a model.

model = build_model("resnet18", num_classes=3, pretrained="default")   # torchvision's ImageNet weights
frozen = freeze(model, "layer2")                                      # stem, layer1, layer2 frozen
json.dump(model_config(model), f)       # later: build_model(**json.load(f)) rebuilds the same module
"""

from __future__ import annotations

import contextlib
import io
import logging
import socket
import urllib.error
import urllib.parse
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from training_scripts.lstm import LSTMClassifier
from training_scripts.resnet import TORCHVISION_WEIGHTS, BasicBlock, Bottleneck, ResNet, resnet18, resnet34, resnet50

ARCHS: tuple[str, ...] = ("resnet18", "resnet34", "resnet50", "lstm")
FREEZE_STAGES: tuple[str, ...] = ("none", "stem", "layer1", "layer2", "layer3", "layer4", "all-but-head")
HEAD = "fc"  # the classifier layer of every model here; re-initialised when the class count changes

# Seconds a blocked connect/read may stall before a download gives up. torch.hub has no timeout of its own.
DOWNLOAD_TIMEOUT_S = 20.0

_RESNETS: dict[str, Callable[[int], ResNet]] = {"resnet18": resnet18, "resnet34": resnet34, "resnet50": resnet50}
_RESNET_LAYOUTS: dict[tuple[type[nn.Module], tuple[int, ...]], str] = {
    (BasicBlock, (2, 2, 2, 2)): "resnet18",
    (BasicBlock, (3, 4, 6, 3)): "resnet34",
    (Bottleneck, (3, 4, 6, 3)): "resnet50",
}
_STAGE_PREFIXES: dict[str, tuple[str, ...]] = {
    "stem": ("conv1.", "bn1."),
    "layer1": ("layer1.",),
    "layer2": ("layer2.",),
    "layer3": ("layer3.",),
    "layer4": ("layer4.",),
}

logger = logging.getLogger(__name__)


def build_model(arch: str, num_classes: int, pretrained: str | Path | None = None, **kwargs: Any) -> nn.Module:
    """A model by name: "resnet18", "resnet34", "resnet50" (torchvision layout) or "lstm" (kwargs: LSTMClassifier).

    `pretrained`: None or "none" = random init; "default" = torchvision's DEFAULT ImageNet weights (ResNets;
    downloaded once into torch.hub's cache); a local .pth/.pt file; or an http(s) URL (cached by torch.hub).
    The checkpoint must fit the architecture exactly; if its class count differs from `num_classes`, everything
    but the `fc` head is loaded and `fc` keeps its fresh initialisation (logged as a warning).
    """
    if arch not in ARCHS:
        raise ValueError(f"unknown arch {arch!r}; choose one of: {', '.join(ARCHS)}")
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    model: nn.Module
    if arch == "lstm":
        model = LSTMClassifier(num_classes=num_classes, **kwargs)
    else:
        if kwargs:
            raise ValueError(f"{arch} takes no options besides num_classes and pretrained; got {sorted(kwargs)}")
        model = _RESNETS[arch](num_classes)
    state_dict, source = _read_checkpoint(arch, pretrained)
    if state_dict is not None:
        _load_into(model, state_dict, source)
    return model


def _read_checkpoint(arch: str, pretrained: str | Path | None) -> tuple[dict[str, Tensor] | None, str]:
    if pretrained is None or str(pretrained).lower() == "none":
        return None, ""
    source = str(pretrained)
    if source.lower() == "default":
        if arch not in TORCHVISION_WEIGHTS:
            raise ValueError(
                f"--pretrained default means torchvision's ImageNet weights, which exist only for "
                f"{', '.join(TORCHVISION_WEIGHTS)}; for {arch} pass a checkpoint path or 'none'"
            )
        return _download(TORCHVISION_WEIGHTS[arch], check_hash=True), TORCHVISION_WEIGHTS[arch]
    if source.startswith(("https://", "http://")):
        return _download(source, check_hash=False), _redact(source)
    path = Path(source).expanduser()
    if not path.is_file():
        raise FileNotFoundError(
            f"pretrained checkpoint not found: {path} (pass an existing .pth file, 'default' or 'none')"
        )
    return _unwrap(torch.load(path, map_location="cpu", weights_only=True), source), source


def _redact(url: str) -> str:
    """The URL without user info, query and fragment, which may carry a credential (e.g. an Azure SAS token)."""
    parts = urllib.parse.urlsplit(url)
    host = (parts.hostname or "") + (f":{parts.port}" if parts.port else "")
    hidden = "?..." if parts.query or parts.fragment else ""
    return urllib.parse.urlunsplit((parts.scheme, host, parts.path, "", "")) + hidden


def _download(url: str, *, check_hash: bool) -> dict[str, Tensor]:
    shown = _redact(url)
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)
    try:
        logger.info("loading pretrained weights from %s (torch.hub cache: %s)", shown, torch.hub.get_dir())
        # torch.hub prints the full URL to stdout, query string included.
        with contextlib.redirect_stdout(io.StringIO()):
            loaded = torch.hub.load_state_dict_from_url(
                url, map_location="cpu", weights_only=True, check_hash=check_hash, progress=False
            )
    except urllib.error.HTTPError as e:
        raise RuntimeError(
            f"could not download pretrained weights from {shown}: HTTP {e.code} {e.reason}. "
            "Check the URL, or pass --pretrained PATH (a local .pth file) or --pretrained none."
        ) from e
    except (urllib.error.URLError, TimeoutError, ConnectionError) as e:
        reason = getattr(e, "reason", e)
        raise RuntimeError(
            f"could not download pretrained weights from {shown} ({reason}): the network is unreachable from here. "
            f"Download the file elsewhere and pass --pretrained PATH (a local .pth file), put it in torch.hub's "
            f"cache ({Path(torch.hub.get_dir()) / 'checkpoints'}), or train from scratch with --pretrained none."
        ) from e
    finally:
        socket.setdefaulttimeout(previous)
    return _unwrap(loaded, shown)


def _unwrap(loaded: Any, source: str) -> dict[str, Tensor]:
    """A plain state_dict from torchvision's format (the dict itself) or a {"state_dict"|"model": ...} wrapper."""
    if isinstance(loaded, Mapping):
        for key in ("state_dict", "model"):
            inner = loaded.get(key)
            if isinstance(inner, Mapping) and inner and all(isinstance(v, Tensor) for v in inner.values()):
                return dict(inner)
        if loaded and all(isinstance(v, Tensor) for v in loaded.values()):
            return dict(loaded)
    raise ValueError(
        f"{source} is not a state_dict (a dict of tensors, optionally under 'state_dict' or 'model'); "
        f"got {type(loaded).__name__}" + (f" with keys {sorted(loaded)[:8]}" if isinstance(loaded, Mapping) else "")
    )


def _load_into(model: nn.Module, state_dict: dict[str, Tensor], source: str) -> None:
    own = model.state_dict()
    missing = [k for k in own if k not in state_dict]
    unexpected = [k for k in state_dict if k not in own]
    mismatched = [k for k in own if k in state_dict and state_dict[k].shape != own[k].shape]
    head_differs = bool(mismatched) and all(k.startswith(f"{HEAD}.") for k in mismatched)
    if missing or unexpected or (mismatched and not head_differs):
        details = [
            f"{name}: {keys[:5]}{' ...' if len(keys) > 5 else ''}"
            for name, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", mismatched))
            if keys
        ]
        raise ValueError(
            f"checkpoint {source} does not fit this {type(model).__name__} ({'; '.join(details)}); "
            "check --arch (and the LSTM's vocabulary/sizes) against the checkpoint"
        )
    if head_differs:
        kept = {k: v for k, v in state_dict.items() if not k.startswith(f"{HEAD}.")}
        # Keys and every non-head shape were checked above, so only the head's tensors are left out.
        result = model.load_state_dict(kept, strict=False)
        logger.warning(
            "checkpoint %s has a %d-class head, this model %d classes: loaded every tensor except %s, which keeps "
            "its fresh initialisation",
            source,
            state_dict[f"{HEAD}.weight"].shape[0],
            own[f"{HEAD}.weight"].shape[0],
            ", ".join(result.missing_keys),
        )
    else:
        model.load_state_dict(state_dict, strict=True)


def freeze(model: nn.Module, upto: str) -> list[str]:
    """Freeze every parameter up to and including stage `upto` (one of FREEZE_STAGES); return their names.

    ResNet stages: "stem" (conv1 + bn1), "layer1".."layer4", "all-but-head" (everything but fc). The LSTM takes
    "none" and "all-but-head". Earlier freezing is undone first, so the call sets the state rather than adding
    to it. Frozen BatchNorm layers stay in eval mode through later model.train() calls (see ResNet.train), so
    their running statistics stay as loaded; optimisers should be given only parameters that require grad.
    """
    if upto not in FREEZE_STAGES:
        raise ValueError(f"unknown freeze stage {upto!r}; choose one of: {', '.join(FREEZE_STAGES)}")
    is_resnet = isinstance(model, ResNet)
    if not is_resnet and upto not in ("none", "all-but-head"):
        raise ValueError(
            f"freeze stage {upto!r} names a ResNet stage; for {type(model).__name__} choose 'none' or 'all-but-head'"
        )
    if upto == "all-but-head":
        prefixes: tuple[str, ...] = ("",)
    elif upto == "none":
        prefixes = ()
    else:
        stages = list(_STAGE_PREFIXES)
        prefixes = tuple(p for stage in stages[: stages.index(upto) + 1] for p in _STAGE_PREFIXES[stage])
    frozen: list[str] = []
    for name, param in model.named_parameters():
        trainable = name.startswith(f"{HEAD}.") or not name.startswith(prefixes)
        param.requires_grad_(trainable)
        if not trainable:
            frozen.append(name)
    model.train(model.training)  # puts newly frozen BatchNorm layers into eval mode right away
    return frozen


def model_config(model: nn.Module) -> dict[str, Any]:
    """What model_config.json holds: {"arch", "num_classes", **build_model kwargs}, JSON-serialisable.

    `build_model(**model_config(model))` rebuilds a module with the same architecture and state_dict layout
    (random weights; load model.pt into it). Works for any model built here, however it was constructed.
    """
    if isinstance(model, ResNet):
        block = type(model.layer1[0])
        depths = tuple(len(stage) for stage in (model.layer1, model.layer2, model.layer3, model.layer4))
        arch = _RESNET_LAYOUTS.get((block, depths))
        if arch is None:
            raise ValueError(f"ResNet with {block.__name__} blocks {list(depths)} is none of {', '.join(_RESNETS)}")
        return {"arch": arch, "num_classes": model.fc.out_features}
    if isinstance(model, LSTMClassifier):
        config = model.config()
        return {"arch": "lstm", "num_classes": config.pop("num_classes"), **config}
    raise ValueError(f"model_config knows ResNet and LSTMClassifier, not {type(model).__name__}")
