"""DICOM (.dcm) through pydicom: contrast as for 16-bit PNGs, LUTs, MONOCHROME1, broken files, scoring, no pydicom.

Every DICOM file is built here with pydicom itself (uncompressed, explicit VR little endian, 12 bits stored in 16).
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from tests.unit.test_scoring import b64, make_model_dir
from training_scripts import scoring
from training_scripts.dicom import check_dicom
from training_scripts.image_data import ImageDataset, eval_transform
from training_scripts.image_decode import open_image
from training_scripts.image_folder import check_image_file, scan_image_folder
from training_scripts.image_formats import ImageDecodeError, ImageTooLargeError, MissingDecoderError, is_image_file
from training_scripts.preprocess_config import ImagePreprocessConfig
from training_scripts.splits import DatasetError

pydicom = pytest.importorskip("pydicom")
from pydicom.dataset import FileDataset, FileMetaDataset  # noqa: E402
from pydicom.encaps import encapsulate  # noqa: E402
from pydicom.uid import ExplicitVRLittleEndian, JPEGLSLossless, generate_uid  # noqa: E402

CFG = ImagePreprocessConfig(image_size=16, resize_size=20)
# 0, 16, ..., 4080 (12-bit): the own-range rescale maps each step to exactly one grey level, no rounding ties.
RAMP = np.tile(np.arange(256, dtype=np.uint16) * 16, (8, 1))
INSTALL = 'pip install "azure-dl[dicom]"'


def dicom_bytes(
    pixels: np.ndarray,
    photometric: str = "MONOCHROME2",
    *,
    frames: int = 1,
    **attributes: Any,
) -> bytes:
    """A DICOM Part 10 file: uint16 greyscale (BitsStored 12) or uint8 RGB pixels; `frames` stacked on axis 0."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"  # Digital X-Ray Image Storage - For Presentation
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset("x.dcm", {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    colour = photometric == "RGB"
    ds.Rows, ds.Columns = pixels.shape[-3:-1] if colour else pixels.shape[-2:]
    ds.PhotometricInterpretation = photometric
    ds.SamplesPerPixel = 3 if colour else 1
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = (8, 8, 7) if colour else (16, 12, 11)
    ds.PixelRepresentation = 0
    if colour:
        ds.PlanarConfiguration = 0
    if frames > 1:
        ds.NumberOfFrames = frames
    ds.PixelData = pixels.astype(np.uint8 if colour else "<u2").tobytes()
    for key, value in attributes.items():
        setattr(ds, key, value)
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def grey(img: Image.Image) -> np.ndarray:
    out = np.asarray(img)
    assert out.shape[-1] == 3 and (out[..., 0] == out[..., 1]).all() and (out[..., 1] == out[..., 2]).all()
    return out[..., 0].astype(np.int32)


def png_bytes(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


# ---------------------------------------------------------------------------------------------------- decoding


def test_12bit_monochrome2_keeps_its_contrast_exactly_as_the_16bit_png_path() -> None:
    rng = np.random.default_rng(0)
    xray = rng.integers(300, 3900, (20, 24), dtype=np.uint16)
    out = grey(open_image(dicom_bytes(xray), name="chest.dcm"))
    assert out.min() == 0 and out.max() == 255
    # Same pixels, same path: identical to the 16-bit PNG of them.
    np.testing.assert_array_equal(out, grey(open_image(png_bytes(xray))))
    ramp = grey(open_image(dicom_bytes(RAMP)))
    np.testing.assert_array_equal(ramp[0], np.arange(256))


def test_monochrome1_is_inverted_so_bone_is_bright() -> None:
    out = grey(open_image(dicom_bytes(RAMP, "MONOCHROME1")))
    np.testing.assert_array_equal(out[0], 255 - np.arange(256))


def test_rescale_slope_and_intercept_are_applied_before_the_window() -> None:
    # Stored 0..4080 with intercept -1024 is -1024..3056 in modality units; the window (centre 0, width 1001)
    # is in those units. Without the intercept nearly everything would sit above the window and be white.
    centre, width = 0.0, 1001.0
    out = grey(open_image(dicom_bytes(RAMP, RescaleSlope=1, RescaleIntercept=-1024, WindowCenter=0, WindowWidth=1001)))
    units = RAMP[0].astype(np.float64) - 1024
    expected = np.clip((units - (centre - 0.5)) / (width - 1) + 0.5, 0, 1) * 255  # DICOM's linear window
    np.testing.assert_allclose(out[0], expected, atol=1)
    assert out[0, 0] == 0 and out[0, -1] == 255 and 0 < out[0, 64] < 255  # stored 1024 = 0 units: mid-grey
    # A negative slope turns the image over: the LUT really is applied.
    flipped = grey(open_image(dicom_bytes(RAMP, RescaleSlope=-2, RescaleIntercept=100)))
    np.testing.assert_array_equal(flipped[0], 255 - np.arange(256))


def test_first_frame_of_a_multiframe_file_and_rgb() -> None:
    frames = np.stack([RAMP, RAMP[:, ::-1]])
    np.testing.assert_array_equal(grey(open_image(dicom_bytes(frames, frames=2)))[0], np.arange(256))
    rgb = np.random.default_rng(1).integers(0, 256, (6, 5, 3), dtype=np.uint8)
    np.testing.assert_array_equal(np.asarray(open_image(dicom_bytes(rgb, "RGB"))), rgb)


def test_dicom_is_found_by_extension_in_any_case_and_by_its_marker(tmp_path: Path) -> None:
    assert is_image_file("a/b.dcm") and is_image_file("X.DCM")
    data = dicom_bytes(RAMP)
    (tmp_path / "scan.DCM").write_bytes(data)
    (tmp_path / "no_extension").write_bytes(data)
    for source in (tmp_path / "scan.DCM", tmp_path / "no_extension", data):
        np.testing.assert_array_equal(grey(open_image(source))[0], np.arange(256))


def test_broken_and_oversized_files_raise_per_file_errors(tmp_path: Path) -> None:
    data = dicom_bytes(RAMP)
    with pytest.raises(ImageDecodeError, match=r"cut\.dcm.*less than expected"):
        open_image(data[:-100], name="cut.dcm")
    path = tmp_path / "text.dcm"
    path.write_text("not a DICOM file")
    with pytest.raises(ImageDecodeError, match=r"text\.dcm: no 'DICM' marker at byte 128"):
        open_image(path)
    with pytest.raises(ImageTooLargeError, match=r"256x8 = 2048 pixels, more than the limit of 2047"):
        open_image(data, max_pixels=2047)
    with pytest.raises(ImageDecodeError, match="PALETTE COLOR but lacks RedPaletteColorLookupTableDescriptor"):
        open_image(dicom_bytes(RAMP, "PALETTE COLOR"))
    with pytest.raises(ImageDecodeError, match="photometric interpretation 'HSV' is not supported"):
        open_image(dicom_bytes(RAMP, "HSV"))


def test_a_compressed_transfer_syntax_without_its_plugin_is_a_clear_per_file_error(tmp_path: Path) -> None:
    from pydicom.pixels import get_decoder

    if get_decoder(JPEGLSLossless).is_available:
        pytest.skip("a JPEG-LS plugin is installed here")
    ds = pydicom.dcmread(io.BytesIO(dicom_bytes(RAMP)))
    ds.file_meta.TransferSyntaxUID = JPEGLSLossless
    ds.PixelData = encapsulate([b"\xff\xd8 not really JPEG-LS"])
    ds["PixelData"].VR = "OB"
    path = tmp_path / "compressed.dcm"
    ds.save_as(path, enforce_file_format=True)
    message = r"compressed\.dcm: its transfer syntax JPEG-LS Lossless .* needs a decoder that is not installed"
    with pytest.raises(ImageDecodeError, match=message):
        open_image(path)
    with pytest.raises(ImageDecodeError, match="pylibjpeg"):
        check_dicom(path)


# ------------------------------------------------------------------------------------------------ image folders


@pytest.fixture
def dicom_folder(tmp_path: Path) -> Path:
    root = tmp_path / "xrays"
    (root / "normal").mkdir(parents=True)
    (root / "pneumonia").mkdir()
    data = dicom_bytes(RAMP)
    (root / "normal" / "a.dcm").write_bytes(data)
    (root / "normal" / "b.DCM").write_bytes(dicom_bytes(RAMP, "MONOCHROME1"))
    (root / "normal" / "c_truncated.dcm").write_bytes(data[: len(data) - 300])
    (root / "pneumonia" / "d.dcm").write_bytes(dicom_bytes(RAMP[:, ::-1]))
    Image.fromarray(RAMP).save(root / "pneumonia" / "e.png")
    (root / "pneumonia" / "f_garbage.dcm").write_bytes(b"\0" * 128 + b"DICM" + b"\x02\x00\x10")
    return root


@pytest.mark.parametrize("check", ["quick", "full"])
def test_scan_keeps_good_dicom_and_skips_broken_ones_like_broken_pngs(dicom_folder: Path, check: Any) -> None:
    index = scan_image_folder(dicom_folder, check=check, workers=2)
    assert [(path.name, label) for path, label in index.samples] == [
        ("a.dcm", 0),
        ("b.DCM", 0),
        ("d.dcm", 1),
        ("e.png", 1),
    ]
    skipped = {path.name: reason for path, reason in index.skipped}
    assert sorted(skipped) == ["c_truncated.dcm", "f_garbage.dcm"]
    assert all("cannot decode DICOM image" in reason and str(dicom_folder) in reason for reason in skipped.values())
    assert index.summary().startswith("4 images in 2 classes (normal 2, pneumonia 2); skipped 2 unreadable file(s)")


def test_scan_max_pixels_applies_to_dicom(dicom_folder: Path) -> None:
    problem = check_image_file(dicom_folder / "normal" / "a.dcm", "quick", max_pixels=100)
    assert problem is not None and "more than the limit of 100" in problem


def test_dataset_replaces_and_counts_a_dicom_that_fails_in_loading(dicom_folder: Path) -> None:
    index = scan_image_folder(dicom_folder, check="none")
    dataset = ImageDataset(index.samples, eval_transform(CFG))
    names = [path.name for path, _ in index.samples]
    broken = names.index("c_truncated.dcm")
    image, label = dataset[broken]
    assert image.shape == (3, 16, 16) and label == index.samples[broken + 1][1]
    assert [path.name for path in dataset.failed_samples()] == ["c_truncated.dcm"]


# ------------------------------------------------------------------------------------------------------ scoring


@pytest.fixture(scope="module")
def image_scorer(tmp_path_factory: pytest.TempPathFactory) -> scoring.Scorer:
    folder = make_model_dir(tmp_path_factory.mktemp("image") / "model", "image")
    return scoring.load_scorer(folder, limits=scoring.Limits(max_batch=4, max_pixels=10_000, max_text_chars=50))


def _message(response: Any, status: int = 400) -> str:
    assert response.status_code == status
    return str(json.loads(response.get_data())["message"])


def test_a_base64_dicom_scores_like_the_png_of_the_same_pixels(image_scorer: scoring.Scorer) -> None:
    xray = np.random.default_rng(2).integers(0, 4096, (30, 26), dtype=np.uint16)
    dicom = scoring.handle(image_scorer, {"images": [b64(dicom_bytes(xray))], "top_k": 3})
    png = scoring.handle(image_scorer, {"images": [b64(png_bytes(xray))], "top_k": 3})
    assert dicom == png and len(dicom["predictions"]) == 1
    big = dicom_bytes(np.zeros((101, 100), dtype=np.uint16))
    assert "101 = 10100 pixels, more than the limit of 10000" in _message(
        scoring.handle(image_scorer, {"images": [b64(big)]})
    )
    cut = dicom_bytes(xray)[:-50]
    assert "cannot decode DICOM image images[0]" in _message(scoring.handle(image_scorer, {"images": [b64(cut)]}))


def test_without_pydicom_a_dcm_names_the_file_and_the_install(
    dicom_folder: Path, image_scorer: scoring.Scorer, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = dicom_bytes(RAMP)
    monkeypatch.setitem(sys.modules, "pydicom", None)  # `import pydicom` now raises ImportError
    with pytest.raises(MissingDecoderError, match=r"cannot decode DICOM image scan\.dcm: pydicom is not installed"):
        open_image(data, name="scan.dcm")
    with pytest.raises(MissingDecoderError, match=INSTALL.replace("[", r"\[").replace("]", r"\]")):
        open_image(dicom_folder / "normal" / "a.dcm")
    with pytest.raises(DatasetError, match=r"holds 5 DICOM file\(s\), but cannot decode DICOM image .*a\.dcm"):
        scan_image_folder(dicom_folder)
    message = _message(scoring.handle(image_scorer, {"images": [b64(data)]}))
    assert "images[0]: pydicom is not installed" in message and "send the image as PNG or JPEG" in message
    # Other formats are unaffected.
    assert "predictions" in scoring.handle(image_scorer, {"images": [b64(png_bytes(RAMP))]})


def test_pydicom_is_imported_only_when_a_dicom_is_met_and_never_torch() -> None:
    probe = f"""
import sys
import training_scripts.scoring, training_scripts.image_decode, training_scripts.dicom
before = "pydicom" in sys.modules
from training_scripts.image_decode import open_image
open_image({dicom_bytes(RAMP)!r})
print(before, "pydicom" in sys.modules, "torch" in sys.modules)
"""
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert result.stdout.split() == ["False", "True", "False"]
