"""Synthetic, learnable stand-ins for the two scenarios: chest-X-ray-like images and sentiment-labelled reviews.

Torch-free (numpy + PIL) so the CLI can generate data without importing torch. Deterministic for a seed (with
the same numpy version), fast (about a thousand 64 px images a second), and optionally salted with broken files
or malformed rows to show that training skips and counts them.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

MANIFEST = "synth.json"
IMAGE_MODES = ("L", "I;16", "RGB")
DEFAULT_IMAGE_CLASSES = ("normal", "pneumonia")
TEXT_CLASSES = ("negative", "positive")
TEXT_FORMATS = ("csv", "jsonl")


@dataclass(frozen=True)
class SynthSummary:
    """What was written: where, how many per class, how many deliberately broken files or rows."""

    kind: str
    path: Path
    counts: dict[str, int]
    corrupt: int = 0
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def describe(self) -> str:
        what = "images" if self.kind == "images" else "rows"
        per_class = ", ".join(f"{name} {count}" for name, count in self.counts.items())
        broken = f" (+{self.corrupt} deliberately broken)" if self.corrupt else ""
        return f"wrote {self.total} {what} to {self.path}: {per_class}{broken}"

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["path"] = str(self.path)
        return data


def _write_manifest(out: Path, summary: SynthSummary) -> None:
    # Without the folder's own path: the same parameters give the same bytes wherever they are written, so an
    # upload of the set is content-addressed to the same place and Azure ML (and the local service) reuse the
    # pipeline steps that read it.
    manifest = {key: value for key, value in summary.to_dict().items() if key != "path"}
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")


def class_counts(classes: Sequence[str], largest: int, imbalance: float) -> dict[str, int]:
    """The first class gets `largest` samples, the last `largest / imbalance`, the ones between geometrically."""
    if largest < 1:
        raise ValueError(f"the number of samples per class must be >= 1, got {largest}")
    if not imbalance >= 1:
        raise ValueError(f"imbalance is the majority:minority ratio and must be >= 1, got {imbalance}")
    if len(classes) < 2 or len(set(classes)) != len(classes):
        raise ValueError(f"need at least two distinct class names, got {list(classes)}")
    last = len(classes) - 1
    return {name: max(1, round(largest / imbalance ** (k / last))) for k, name in enumerate(classes)}


def _prepare_folder(out_dir: Path, overwrite: bool) -> None:
    """Refuse to mix with existing files; with overwrite, clear only a folder that this module wrote."""
    if out_dir.exists() and not out_dir.is_dir():
        raise FileExistsError(f"{out_dir} is a file; choose a folder for the synthetic dataset")
    if out_dir.is_dir() and any(out_dir.iterdir()):
        manifest = out_dir / MANIFEST
        if not overwrite:
            raise FileExistsError(
                f"{out_dir} is not empty; choose a new folder"
                + (" or pass overwrite (--overwrite) to regenerate it" if manifest.is_file() else "")
            )
        if not manifest.is_file():
            raise FileExistsError(
                f"{out_dir} is not empty and was not written by synth ({MANIFEST} is missing); "
                "refusing to delete it - choose a new folder"
            )
        previous = json.loads(manifest.read_text(encoding="utf-8"))
        for name in previous.get("counts", {}):
            shutil.rmtree(out_dir / name, ignore_errors=True)
        manifest.unlink()
        if any(out_dir.iterdir()):
            raise FileExistsError(f"{out_dir} still holds files synth did not write; choose a new folder")
    out_dir.mkdir(parents=True, exist_ok=True)


# ----------------------------------------------------------------------------------------------------- images


def _soft_ellipse(u: np.ndarray, v: np.ndarray, cx: Any, cy: Any, rx: Any, ry: Any, edge: float) -> np.ndarray:
    """1 inside the ellipse, 0 outside, with a smooth rim `edge` wide (in normalised units)."""
    radius = np.sqrt(((u - cx) / rx) ** 2 + ((v - cy) / ry) ** 2)
    return 1.0 / (1.0 + np.exp((radius - 1.0) / edge))


def _chest_batch(rng: np.random.Generator, n: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """n chest-like images in [0, 1] (float32 [n, size, size]) and the lung-field masks."""
    axis = np.linspace(-1.0, 1.0, size, dtype=np.float32)
    v, u = np.meshgrid(axis, axis, indexing="ij")
    u, v = u[None], v[None]

    def draw(low: float, high: float) -> np.ndarray:
        return rng.uniform(low, high, (n, 1, 1)).astype(np.float32)

    shift_x, shift_y = draw(-0.05, 0.05), draw(-0.05, 0.05)
    body = _soft_ellipse(u, v, shift_x, 0.1 + shift_y, draw(0.8, 0.95), draw(1.0, 1.2), 0.05)
    lungs = np.zeros((n, size, size), dtype=np.float32)
    for side in (-1.0, 1.0):
        centre_x, centre_y = side * draw(0.33, 0.42) + shift_x, draw(-0.12, 0.0) + shift_y
        lung = _soft_ellipse(u, v, centre_x, centre_y, draw(0.22, 0.3), draw(0.5, 0.62), 0.08)
        lungs = np.maximum(lungs, lung)
    spine = np.exp(-(((u - shift_x) / draw(0.07, 0.1)) ** 2)) * (v > -0.75)
    heart = _soft_ellipse(u, v, 0.12 + shift_x, 0.28 + shift_y, draw(0.2, 0.28), draw(0.18, 0.24), 0.1)
    rib_phase = draw(0, 2 * np.pi)
    ribs = 0.5 + 0.5 * np.sin(v * draw(16.0, 20.0) + 4.0 * u**2 + rib_phase)

    image = 0.08 + body * draw(0.5, 0.62)
    image = image - lungs * draw(0.28, 0.36) + lungs * ribs * 0.06
    image = image + spine * 0.18 * body + heart * draw(0.15, 0.22)
    return image.astype(np.float32), lungs


def _add_blobs(
    rng: np.random.Generator,
    image: np.ndarray,
    lungs: np.ndarray,
    count: tuple[int, int],
    sigma: tuple[float, float],
    amplitude: tuple[float, float],
    lower_zone: bool = False,
) -> None:
    """Add Gaussian opacities centred inside the lung fields (in place)."""
    n, size, _ = image.shape
    axis = np.linspace(-1.0, 1.0, size, dtype=np.float32)
    v, u = np.meshgrid(axis, axis, indexing="ij")
    for i in range(n):
        inside = np.argwhere(lungs[i] > 0.7)
        if lower_zone:
            inside = inside[inside[:, 0] > np.median(inside[:, 0])]
        for _ in range(rng.integers(count[0], count[1] + 1)):
            row, col = inside[rng.integers(len(inside))]
            s = rng.uniform(*sigma)
            blob = np.exp(-((u - axis[col]) ** 2 + (v - axis[row]) ** 2) / (2 * s * s))
            image[i] += rng.uniform(*amplitude) * blob * (0.4 + 0.6 * lungs[i])


# The appearance of each class, by position: 0 is healthy, the others are different kinds of opacity.
_PATTERNS: list[dict[str, Any]] = [
    {"count": (0, 2), "sigma": (0.02, 0.04), "amplitude": (0.04, 0.1)},  # vessel markings only
    {"count": (1, 3), "sigma": (0.08, 0.18), "amplitude": (0.25, 0.4)},  # diffuse consolidation
    {"count": (6, 10), "sigma": (0.025, 0.04), "amplitude": (0.2, 0.3)},  # nodules
    {"count": (1, 2), "sigma": (0.2, 0.3), "amplitude": (0.3, 0.4), "lower_zone": True},  # effusion-like haze
]


def _render(rng: np.random.Generator, n: int, size: int, pattern: dict[str, Any]) -> np.ndarray:
    """n images of one class as floats in [0, 1]."""
    image, lungs = _chest_batch(rng, n, size)
    if pattern is not _PATTERNS[0]:
        _add_blobs(rng, image, lungs, **_PATTERNS[0])  # every image has normal vessel markings too
    _add_blobs(rng, image, lungs, **pattern)
    low_frequency = rng.normal(0, 0.04, (n, 4, 4)).astype(np.float32)
    image += np.stack(
        [np.asarray(Image.fromarray(lf).resize((size, size), Image.Resampling.BICUBIC)) for lf in low_frequency]
    )
    # Detector noise level per image: one level per class would be a shortcut a model learns instead of the
    # opacities (it then fails on data generated with another seed).
    image += (rng.normal(0, 1, image.shape) * rng.uniform(0.02, 0.05, (n, 1, 1))).astype(np.float32)
    # Exposure differs between machines: random gain and offset per image.
    image = image * rng.uniform(0.85, 1.15, (n, 1, 1)) + rng.uniform(-0.06, 0.06, (n, 1, 1))
    return np.clip(image, 0.0, 1.0).astype(np.float32)


def _save_image(pixels: np.ndarray, path: Path, mode: str) -> None:
    if mode == "I;16":
        # A 12-bit detector range stored in a 16-bit PNG, as many X-ray exports are.
        Image.fromarray(np.rint(pixels * 4095).astype(np.uint16)).save(path)
        return
    grey = Image.fromarray(np.rint(pixels * 255).astype(np.uint8))
    (grey.convert("RGB") if mode == "RGB" else grey).save(path, compress_level=1)


def _broken_image_bytes(kind: int, rng: np.random.Generator) -> tuple[str, bytes]:
    """(file extension, content) of a deliberately broken image, cycling through four kinds of damage."""
    sample = Image.fromarray(rng.integers(0, 255, (48, 48), dtype=np.uint8))
    buffer = io.BytesIO()
    if kind % 4 == 0:
        return ".jpg", b"This is a text file with a .jpg name, not an image.\n"
    if kind % 4 == 1:
        sample.save(buffer, format="PNG")
        return ".png", buffer.getvalue()[: len(buffer.getvalue()) // 2]
    if kind % 4 == 2:
        return ".png", b""
    sample.save(buffer, format="JPEG")
    return ".jpeg", buffer.getvalue()[: len(buffer.getvalue()) // 2]


def synth_images(
    out_dir: str | os.PathLike[str],
    *,
    classes: Sequence[str] = DEFAULT_IMAGE_CLASSES,
    per_class: int = 900,
    image_size: int = 64,
    imbalance: float = 3.0,
    seed: int = 0,
    mode: str = "L",
    corrupt: int = 0,
    overwrite: bool = False,
) -> SynthSummary:
    """Write an X-ray-like greyscale dataset as OUT_DIR/<class>/<class>_00000.png (plus OUT_DIR/synth.json).

    Each image is a chest-like picture (body, dark lung fields with ribs, spine, heart, vessel markings,
    low-frequency shading, noise, random exposure). The first class is healthy; the second has diffuse opacities
    in the lungs, a third (if asked for) many small nodules, a fourth a haze over the lower lung zones.
    The first class gets `per_class` images and the last `per_class / imbalance` (imbalance = majority:minority
    ratio). `mode` is "L" (8-bit PNG), "I;16" (12-bit values in a 16-bit PNG) or "RGB". `corrupt` adds that many
    broken files (a text file named .jpg, truncated PNG/JPEG, empty file) spread over the class folders.
    The folder must be new or empty; `overwrite` replaces a folder that synth wrote before.
    """
    if len(classes) > len(_PATTERNS):
        raise ValueError(f"synth_images draws at most {len(_PATTERNS)} distinct classes, got {len(classes)}")
    if mode not in IMAGE_MODES:
        raise ValueError(f"mode must be one of {IMAGE_MODES}, got {mode!r}")
    if image_size < 16:
        raise ValueError(f"image_size must be >= 16, got {image_size}")
    if corrupt < 0:
        raise ValueError(f"corrupt must be >= 0, got {corrupt}")
    counts = class_counts(classes, per_class, imbalance)
    out = Path(out_dir)
    _prepare_folder(out, overwrite)

    for k, (name, count) in enumerate(counts.items()):
        folder = out / name
        folder.mkdir()
        rng = np.random.default_rng([seed, k])
        pixels = _render(rng, count, image_size, _PATTERNS[k])
        for index in range(count):
            _save_image(pixels[index], folder / f"{name}_{index:05d}.png", mode)

    rng = np.random.default_rng([seed, len(classes)])
    names = list(counts)
    for j in range(corrupt):
        suffix, content = _broken_image_bytes(j, rng)
        (out / names[j % len(names)] / f"corrupt_{j:03d}{suffix}").write_bytes(content)

    params = {"image_size": image_size, "imbalance": imbalance, "seed": seed, "mode": mode, "per_class": per_class}
    summary = SynthSummary(kind="images", path=out, counts=counts, corrupt=corrupt, params=params)
    _write_manifest(out, summary)
    return summary


# ------------------------------------------------------------------------------------------------------- text

_POSITIVE_ADJ = [
    "great",
    "excellent",
    "wonderful",
    "brilliant",
    "superb",
    "amazing",
    "fantastic",
    "beautiful",
    "touching",
    "funny",
    "delightful",
    "perfect",
    "charming",
    "gripping",
    "memorable",
    "outstanding",
    "moving",
    "clever",
]
_NEGATIVE_ADJ = [
    "terrible",
    "awful",
    "boring",
    "dull",
    "poor",
    "horrible",
    "stupid",
    "bland",
    "painful",
    "predictable",
    "disappointing",
    "forgettable",
    "tedious",
    "annoying",
    "weak",
    "pointless",
    "clumsy",
]
_POSITIVE_VERB = ["loved", "enjoyed", "adored", "admired", "treasured"]
_NEGATIVE_VERB = ["hated", "regretted", "disliked", "endured", "resented"]
_SUBJECTS = (
    "the movie",
    "this film",
    "the plot",
    "the acting",
    "the cast",
    "the soundtrack",
    "the script",
    "the ending",
    "the dialogue",
    "the cinematography",
    "the story",
    "the characters",
    "the pacing",
    "the lead performance",
)
_INTENSIFIERS = ("really", "truly", "quite", "so", "very", "absolutely", "rather")
_NEUTRAL = (
    "I watched it on a Sunday afternoon.",
    "It runs a little over two hours.",
    "My sister recommended it last week.",
    "It was released in {year}.",
    "It is based on a novel I have not read.",
    "I saw it at the local cinema, with popcorn.",
    "The lead actor also starred in a TV series.",
    "There are {count} main characters.",
    "Most of it was filmed in {place}.",
    "I went in knowing nothing about it.",
    "The trailer shows the first scene.",
    "We paid {price} dollars for the tickets.",
)
_PLACES = ("Canada", "Morocco", "New Zealand", "Prague", "a small studio", "Scotland")


def _pick(rng: np.random.Generator, options: Sequence[str]) -> str:
    # rng.choice converts the sequence to an array on every call: ten times slower for these short lists.
    return options[int(rng.integers(len(options)))]


def _sentiment_sentence(rng: np.random.Generator, positive: bool) -> str:
    adjectives, verbs = (_POSITIVE_ADJ, _POSITIVE_VERB) if positive else (_NEGATIVE_ADJ, _NEGATIVE_VERB)
    opposite = _NEGATIVE_ADJ if positive else _POSITIVE_ADJ
    subject = _pick(rng, _SUBJECTS)
    adjective = _pick(rng, adjectives)
    form = int(rng.integers(6))
    if form == 0:
        return f"{subject} was {adjective}."
    if form == 1:
        return f"{subject} is {_pick(rng, _INTENSIFIERS)} {adjective}{_pick(rng, ('.', '!', '!!'))}"
    if form == 2:
        return f"I {_pick(rng, verbs)} {subject}."
    if form == 3:
        return (
            f"Honestly, {subject} felt {adjective}, {'and' if rng.random() < 0.5 else 'so'} {_pick(rng, adjectives)}."
        )
    if form == 4:  # negated opposite: evidence for this polarity that a bag of words reads the wrong way
        return f"{subject} was not {_pick(rng, opposite)} at all."
    return f"What a{'n' if adjective[0] in 'aeiou' else ''} {adjective} film{_pick(rng, ('.', '!'))}"


def _neutral_sentence(rng: np.random.Generator) -> str:
    template = _pick(rng, _NEUTRAL)
    return template.format(
        year=int(rng.integers(1970, 2025)),
        count=int(rng.integers(2, 9)),
        place=_pick(rng, _PLACES),
        price=int(rng.integers(5, 25)),
    )


def _review(rng: np.random.Generator, positive: bool) -> str:
    """3-7 sentences: mostly this polarity, some neutral filler, fewer of the opposite polarity (a mixed review)."""
    sentences: list[str] = []
    own = opposite = 0
    for _ in range(int(rng.integers(3, 8))):
        draw = rng.random()
        if draw < 0.55:
            sentences.append(_sentiment_sentence(rng, positive))
            own += 1
        elif draw < 0.82 or opposite + 1 >= max(own, 1):
            sentences.append(_neutral_sentence(rng))
        else:
            sentences.append(_sentiment_sentence(rng, not positive))
            opposite += 1
    if own == 0:
        sentences.insert(int(rng.integers(len(sentences) + 1)), _sentiment_sentence(rng, positive))
    text = ""
    for index, sentence in enumerate(sentences):
        sentence = sentence[0].upper() + sentence[1:] if rng.random() < 0.9 else sentence
        separator = "" if index == 0 else ("<br /><br />" if rng.random() < 0.1 else " ")
        if index and rng.random() < 0.02:
            separator = "\n"  # a real line break: exercises quoted multi-line CSV fields
        text += separator + sentence
    return text


def _malformed_row(kind: int, row_id: int, fmt: str) -> str:
    """One deliberately malformed line, cycling through four kinds per format."""
    if fmt == "csv":
        return [
            f"{row_id},this row has, unquoted commas,positive",
            f'{row_id},"a review that lost its label",',
            f"{row_id},,negative",
            f"{row_id},only two fields",
        ][kind % 4]
    return [
        f'{{"id": {row_id}, "text": "an unterminated',
        json.dumps({"id": row_id, "text": "a review without a label field"}),
        json.dumps({"id": row_id, "text": "a review with an empty label", "label": ""}),
        json.dumps(["not", "an", "object"]),
    ][kind % 4]


def synth_text(
    out_path: str | os.PathLike[str],
    *,
    n: int = 2000,
    imbalance: float = 1.0,
    seed: int = 0,
    format: str | None = None,
    corrupt: int = 0,
) -> SynthSummary:
    """Write n movie-review-like texts with a "negative"/"positive" label as CSV (id,text,label) or JSONL.

    Reviews mix sentiment sentences of their own polarity (including negated opposites: "not boring at all"),
    neutral filler, some sentences of the other polarity, occasional `<br /><br />` and line breaks; 1% of the
    labels are flipped. "negative" gets the larger share when imbalance (majority:minority ratio) is above 1.
    `format` defaults to the file's suffix (.csv or .jsonl). `corrupt` adds that many malformed rows. An
    existing file is replaced.
    """
    out = Path(out_path)
    suffix_format = out.suffix.lower().lstrip(".")
    fmt = format or (suffix_format if suffix_format in TEXT_FORMATS else "csv")
    if fmt not in TEXT_FORMATS:
        raise ValueError(f"format must be one of {TEXT_FORMATS}, got {fmt!r}")
    if suffix_format in TEXT_FORMATS and suffix_format != fmt:
        raise ValueError(f"{out} has a .{suffix_format} suffix but format {fmt!r} was asked for")
    if n < 2:
        raise ValueError(f"n must be >= 2 (one row per class at least), got {n}")
    if not imbalance >= 1:
        raise ValueError(f"imbalance is the majority:minority ratio and must be >= 1, got {imbalance}")
    if corrupt < 0:
        raise ValueError(f"corrupt must be >= 0, got {corrupt}")
    if out.is_dir():
        raise FileExistsError(f"{out} is a folder; give a file path such as {out / ('reviews.' + fmt)}")

    majority = min(n - 1, round(n * imbalance / (1 + imbalance)))
    counts = {TEXT_CLASSES[0]: majority, TEXT_CLASSES[1]: n - majority}
    rng = np.random.default_rng(seed)
    labels = rng.permutation([0] * counts[TEXT_CLASSES[0]] + [1] * counts[TEXT_CLASSES[1]])
    rows: list[tuple[int, str, str]] = []
    for row_id, label in enumerate(labels):
        text = _review(rng, positive=bool(label))
        noisy = 1 - label if rng.random() < 0.01 else label
        rows.append((row_id, text, TEXT_CLASSES[noisy]))
    counts = {name: sum(1 for row in rows if row[2] == name) for name in TEXT_CLASSES}

    lines: list[str] = []
    for row_id, text, label in rows:
        if fmt == "csv":
            buffer = io.StringIO()
            csv.writer(buffer, lineterminator="\n").writerow([row_id, text, label])
            lines.append(buffer.getvalue()[:-1])
        else:
            lines.append(json.dumps({"id": row_id, "text": text, "label": label}, ensure_ascii=False))
    # Broken rows at random places; inserted from the back so earlier positions stay valid.
    positions = sorted(rng.integers(0, n + 1, size=corrupt).tolist(), reverse=True)
    for kind, position in enumerate(positions):
        lines.insert(position, _malformed_row(kind, n + kind, fmt))
    if fmt == "csv":
        lines.insert(0, "id,text,label")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    params = {"n": n, "imbalance": imbalance, "seed": seed, "format": fmt}
    return SynthSummary(kind="text", path=out, counts=counts, corrupt=corrupt, params=params)
