"""Image folders (one subfolder per class) as a list of usable images: the scan, with broken files skipped and counted.

`scan_image_folder` indexes ROOT/<class>/**/<image> like torchvision's ImageFolder and checks every file up front
in a thread pool, leaving out the ones that cannot be decoded and reporting them in `ImageFolderIndex.skipped` as
(path, reason). The default "quick" check reads headers, verifies PNG chunk checksums (which also catches
truncation), checks that a JPEG ends with its end-of-image marker (decoding it fully only when it does not), reads
a DICOM file's header and its first frame's stored values (which catches truncation and compressed transfer
syntaxes no installed plugin decodes; about 4 ms for an uncompressed 2048x2048 12-bit file), and fully decodes
anything else. On 2 shared cores it costs about 0.1-2 ms per file (1 MB JPEG / 2 MB 16-bit PNG X-rays), so ~5000
X-rays scan in seconds; check="full" decodes every file exactly as training will (about 9 ms per 1 MB JPEG), and
check="none" only lists files. DICOM files without pydicom installed stop the scan with the install hint rather
than being skipped one by one.

Training (train_resnet.py), the pipeline's prepare and evaluate steps read folders through this module. PIL and
numpy only; nothing here may import torch, so the evaluate step runs in an environment without it.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from PIL import Image

from training_scripts.dicom import check_dicom, import_pydicom
from training_scripts.image_decode import open_image
from training_scripts.image_formats import (
    IMAGE_EXTENSIONS,
    ImageDecodeError,
    MissingDecoderError,
    is_dicom_file,
    is_image_file,
)
from training_scripts.splits import DatasetError

ScanCheck = Literal["quick", "full", "none"]

# Folders that are never classes: hidden ones (.ipynb_checkpoints, .DS_Store's siblings) and macOS zip debris.
_NOT_CLASS_DIRS = frozenset({"__MACOSX"})
_JPEG_END = b"\xff\xd9"


@dataclass
class ImageFolderIndex:
    """The usable images as (path, class index), class names in index order, and what was left out and why."""

    samples: list[tuple[Path, int]]
    classes: list[str]
    skipped: list[tuple[Path, str]] = field(default_factory=list)

    def class_counts(self) -> dict[str, int]:
        counts = dict.fromkeys(self.classes, 0)
        for _, label in self.samples:
            counts[self.classes[label]] += 1
        return counts

    def summary(self) -> str:
        """One line for logs, e.g. "5216 images in 2 classes (NORMAL 1341, PNEUMONIA 3875); skipped 2 unreadable"."""
        counts = ", ".join(f"{name} {count}" for name, count in self.class_counts().items())
        text = f"{len(self.samples)} images in {len(self.classes)} classes ({counts})"
        if self.skipped:
            text += f"; skipped {len(self.skipped)} unreadable file(s), first: {self.skipped[0][0]}"
        return text


def _is_hidden(name: str) -> bool:
    return name.startswith(".")


def _list_images(class_dir: Path) -> tuple[list[Path], list[Path]]:
    """(image files, other files) under class_dir, recursively, hidden files and folders left out."""
    images: list[Path] = []
    others: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(class_dir, followlinks=True):
        dirnames[:] = sorted(name for name in dirnames if not _is_hidden(name))
        for name in sorted(filenames):
            if _is_hidden(name):
                continue
            path = Path(dirpath, name)
            (images if is_image_file(name) else others).append(path)
    return images, others


def check_image_file(path: Path, check: ScanCheck = "quick", max_pixels: int | None = None) -> str | None:
    """None when the file looks decodable, else the reason it is not (see the module docstring)."""
    if check == "none":
        return None
    try:
        if check == "full":
            open_image(path, max_pixels=max_pixels)
            return None
        if is_dicom_file(path):
            check_dicom(path, max_pixels)
            return None
        with Image.open(path) as img:
            width, height = img.size
            if max_pixels is not None and width * height > max_pixels:
                return f"image is {width}x{height} pixels, more than the limit of {max_pixels}"
            image_format = img.format
            if image_format == "PNG":
                img.verify()
                return None
        if image_format == "JPEG" and _ends_with_jpeg_marker(path):
            return None
        # Anything else, or a JPEG without its end marker (truncated, or trailing bytes after a complete
        # image): decode it fully to decide.
        open_image(path, max_pixels=max_pixels)
        return None
    except ImageDecodeError as exc:
        return str(exc)
    except MemoryError:
        raise
    except Exception as exc:  # PIL raises many types for broken files (see image_decode.open_image)
        return f"cannot decode image {path}: {type(exc).__name__}: {exc}"


def _ends_with_jpeg_marker(path: Path) -> bool:
    with path.open("rb") as handle:
        handle.seek(0, os.SEEK_END)
        handle.seek(max(0, handle.tell() - 64))
        tail = handle.read()
    return tail.rstrip(b"\x00\r\n ").endswith(_JPEG_END)


def scan_image_folder(
    root: str | os.PathLike[str],
    *,
    check: ScanCheck = "quick",
    max_pixels: int | None = None,
    workers: int | None = None,
) -> ImageFolderIndex:
    """Index ROOT/<class>/**/<image> like torchvision's ImageFolder, leaving out files that cannot be decoded.

    Classes are the non-hidden subfolder names, sorted (torchvision's order, so class indices match). Files
    with extensions other than IMAGE_EXTENSIONS (any letter case) and hidden files are ignored; broken images
    are listed in `skipped`. Raises DatasetError, naming the folder and the expected layout, when ROOT does
    not exist, has no class subfolders, has a single class, has no usable image at all, or has a class folder
    with no usable image.
    """
    root = Path(root)
    layout = f"expected one subfolder per class, e.g. {root}/normal/001.png and {root}/pneumonia/002.png"
    if not root.exists():
        raise DatasetError(f"image folder {root} does not exist; {layout}")
    if not root.is_dir():
        raise DatasetError(f"{root} is a file, not a folder; {layout}")
    classes = sorted(
        entry.name
        for entry in os.scandir(root)
        if entry.is_dir() and not _is_hidden(entry.name) and entry.name not in _NOT_CLASS_DIRS
    )
    if not classes:
        loose = sum(1 for entry in os.scandir(root) if entry.is_file() and is_image_file(entry.name))
        found = f"found {loose} image(s) directly in {root} but no class subfolders" if loose else "found no subfolders"
        raise DatasetError(f"{found}; {layout}")
    if len(classes) == 1:
        raise DatasetError(f"{root} has only one class folder ({classes[0]!r}); a classifier needs at least two")

    candidates: list[tuple[Path, int]] = []
    other_files: dict[str, list[Path]] = {}
    for label, name in enumerate(classes):
        images, others = _list_images(root / name)
        candidates.extend((path, label) for path in images)
        other_files[name] = others
    dicom_files = [path for path, _ in candidates if is_dicom_file(path)]
    if dicom_files:
        # One clear error instead of every .dcm skipped as "unreadable" (or, with check="none", failing in training).
        try:
            import_pydicom(str(dicom_files[0]))
        except MissingDecoderError as exc:
            raise DatasetError(f"{root} holds {len(dicom_files)} DICOM file(s), but {exc}") from None

    with ThreadPoolExecutor(max_workers=workers) as pool:
        problems = list(pool.map(lambda item: check_image_file(item[0], check, max_pixels), candidates))
    samples = [item for item, problem in zip(candidates, problems) if problem is None]
    skipped = [(item[0], problem) for item, problem in zip(candidates, problems) if problem is not None]
    broken_per_class = [0] * len(classes)
    for (_, label), problem in zip(candidates, problems):
        broken_per_class[label] += problem is not None
    index = ImageFolderIndex(samples=samples, classes=classes, skipped=skipped)

    counts = index.class_counts()
    empty = [name for name in classes if counts[name] == 0]
    if empty:
        details = []
        for name in empty:
            broken = broken_per_class[classes.index(name)]
            suffixes = sorted({path.suffix.lower() or "(none)" for path in other_files[name]})
            parts = [f"{broken} unreadable image(s)"] if broken else []
            if other_files[name]:
                parts.append(f"{len(other_files[name])} file(s) with other extensions: {', '.join(suffixes[:5])}")
            details.append(f"{name!r} ({'; '.join(parts) or 'empty'})")
        allowed = ", ".join(sorted(IMAGE_EXTENSIONS))
        what = "no usable images at all" if len(empty) == len(classes) else "class folder(s) with no usable image"
        raise DatasetError(f"{root}: {what}: {', '.join(details)}; images need one of the extensions {allowed}")
    return index
