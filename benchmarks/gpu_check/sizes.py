"""What each stage runs at on a GPU and under --smoke (CPU, tiny), the known GPUs' peak FLOP/s, and MFU."""

from __future__ import annotations

from dataclasses import dataclass

# ResNet-50 at 224 px: 4.1 GMAC = 8.2 GFLOP forward per image; a training step (forward + backward) is about 3x,
# the convention of issue 14 (MFU = images/s x 3 x 8.2 GFLOP / peak). Convolutions scale with the pixel count.
RESNET50_FWD_FLOP_224 = 8.2e9
TRAIN_FLOP_FACTOR = 3

# Dense (no sparsity) bf16 tensor-core peak, FLOP/s, from NVIDIA's data sheets; matched against
# torch.cuda.get_device_name() in order (first hit wins, so the specific names come before the generic ones).
# A GPU not listed gets no MFU (null), never a guess.
PEAK_BF16_FLOPS: tuple[tuple[tuple[str, ...], float], ...] = (
    (("H100", "PCIe"), 756e12),
    (("H100", "NVL"), 835e12),
    (("H100", "HBM3"), 989e12),  # SXM5, e.g. "NVIDIA H100 80GB HBM3"
    (("H100", "SXM"), 989e12),
    (("H200",), 989e12),
    (("A100",), 312e12),
)


def peak_bf16_flops(device_name: str | None) -> float | None:
    """The dense bf16 peak of a known GPU by its name, or None (unknown GPU, or the CPU)."""
    if not device_name:
        return None
    for needles, peak in PEAK_BF16_FLOPS:
        if all(needle.lower() in device_name.lower() for needle in needles):
            return peak
    return None


def resnet50_train_flop_per_image(image_size: int) -> float:
    """Training FLOP per image of ResNet-50 at `image_size` px (forward at 224 px x 3, scaled by the pixel count)."""
    return TRAIN_FLOP_FACTOR * RESNET50_FWD_FLOP_224 * (image_size / 224) ** 2


def mfu(images_per_s: float, image_size: int, peak_flops: float | None) -> float | None:
    """Model FLOP utilisation: achieved training FLOP/s over the GPU's peak; None when the peak is unknown."""
    if peak_flops is None or peak_flops <= 0:
        return None
    return images_per_s * resnet50_train_flop_per_image(image_size) / peak_flops


@dataclass(frozen=True)
class Sizes:
    """Every size and budget the stages use; `FULL` on a GPU, `SMOKE` on the CPU in the test suite."""

    resnet_arch: str  # "resnet50" on the GPU; "resnet18" in the smoke run (the same code, a tenth of the work)
    image_size: int
    cache_image_size: int  # the "decoded once" size the loader crops from (the preset's resize size)
    batch_sizes: tuple[int, ...]
    warmup_steps: int
    timed_steps: int
    compile_backend: str  # inductor on the GPU; aot_eager in the smoke run (inductor's CPU C++ build takes ~60 s)
    loader_pool: int  # synthetic uint8 images held in host memory, as a memory-mapped cache would hold them
    lstm_vocab: int
    lstm_embed_dim: int
    lstm_hidden: int
    lstm_seq_len: int
    lstm_batch: int
    fp16_batch: int
    fp16_steps: int
    total_budget_s: float  # the watchdog's limit for the whole run


# The LSTM scenario: train_lstm.py's defaults (300-d embeddings, 100 tokens, hidden 128, one forward layer, dropout
# 0.5, a 30,000-token vocabulary) at batch 64, as the scenario says.
FULL = Sizes(
    resnet_arch="resnet50",
    image_size=224,
    cache_image_size=256,
    batch_sizes=(256, 128),
    warmup_steps=10,
    timed_steps=30,
    compile_backend="inductor",
    loader_pool=512,
    lstm_vocab=30_000,
    lstm_embed_dim=300,
    lstm_hidden=128,
    lstm_seq_len=100,
    lstm_batch=64,
    fp16_batch=64,
    fp16_steps=8,
    total_budget_s=270.0,  # under the 5 minutes with the start-up and the imports
)

SMOKE = Sizes(
    resnet_arch="resnet18",
    image_size=32,
    cache_image_size=40,
    batch_sizes=(2, 4),
    warmup_steps=1,
    timed_steps=2,
    compile_backend="aot_eager",
    loader_pool=8,
    lstm_vocab=200,
    lstm_embed_dim=16,
    lstm_hidden=16,
    lstm_seq_len=12,
    lstm_batch=4,
    fp16_batch=2,
    fp16_steps=2,
    total_budget_s=55.0,
)
