"""DICOM beyond uncompressed greyscale: palette colour, YBR, frames of a multi-frame file, and the compressed
transfer syntaxes that the `dicom` extra's pylibjpeg plugins decode (checked against pydicom's own test files)."""

from __future__ import annotations

import io

import numpy as np
import pytest

from training_scripts.dicom import check_dicom
from training_scripts.image_decode import open_image
from training_scripts.image_formats import ImageDecodeError

pydicom = pytest.importorskip("pydicom")
from pydicom.data import get_testdata_file  # noqa: E402
from pydicom.encaps import encapsulate  # noqa: E402
from pydicom.pixels import apply_color_lut, convert_color_space, get_decoder, pixel_array  # noqa: E402
from pydicom.uid import MPEG2MPML, JPEG2000Lossless, RLELossless  # noqa: E402

from tests.unit.test_dicom import RAMP, dicom_bytes, grey, png_bytes  # noqa: E402


def _needs(syntax: object) -> None:
    if not get_decoder(syntax).is_available:
        pytest.skip(f"no decoder for {syntax} installed (pip install 'azure-dl[dicom]')")


def _palette_dicom(indices: np.ndarray, lut: np.ndarray, bits: int = 16) -> bytes:
    """An 8-bit PALETTE COLOR file whose three 256-entry tables are the columns of `lut` (uint16)."""
    ds = pydicom.dcmread(io.BytesIO(dicom_bytes(indices.astype(np.uint16))))
    ds.PhotometricInterpretation = "PALETTE COLOR"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 8, 8, 7
    ds.PixelData = indices.astype(np.uint8).tobytes()
    for channel, colour in enumerate(("Red", "Green", "Blue")):
        setattr(ds, f"{colour}PaletteColorLookupTableDescriptor", [256, 0, bits])
        ds[f"{colour}PaletteColorLookupTableDescriptor"].VR = "US"
        setattr(ds, f"{colour}PaletteColorLookupTableData", lut[:, channel].astype("<u2").tobytes())
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def test_palette_colour_goes_through_its_lookup_tables() -> None:
    rng = np.random.default_rng(0)
    indices = rng.integers(0, 256, (12, 10), dtype=np.uint8)
    lut = rng.integers(0, 256, (256, 3)).astype(np.uint16) * 257  # 16-bit entries: 0..65535 in steps of 257
    out = np.asarray(open_image(_palette_dicom(indices, lut)))
    np.testing.assert_array_equal(out, (lut // 257)[indices].astype(np.uint8))


def test_pydicoms_palette_example_decodes_to_its_lut_colours() -> None:
    path = get_testdata_file("examples_palette.dcm")
    ds = pydicom.dcmread(path)
    expected = np.rint(apply_color_lut(pixel_array(ds, index=0), ds) * (255 / 65535)).astype(np.uint8)
    out = np.asarray(open_image(path))
    np.testing.assert_array_equal(out, expected)
    assert len(np.unique(out.reshape(-1, 3), axis=0)) > 10  # really colour, not one grey


def test_ybr_full_is_converted_to_rgb() -> None:
    rgb = np.random.default_rng(2).integers(0, 256, (8, 6, 3), dtype=np.uint8)
    ybr = convert_color_space(rgb, "RGB", "YBR_FULL")
    data = bytearray(dicom_bytes(ybr, "RGB"))
    ds = pydicom.dcmread(io.BytesIO(bytes(data)))
    ds.PhotometricInterpretation = "YBR_FULL"
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    out = np.asarray(open_image(buffer.getvalue())).astype(int)
    assert np.abs(out - rgb.astype(int)).max() <= 2  # YBR <-> RGB rounds


def test_ybr_full_422_jpeg_gives_the_same_colours_as_the_rgb_jpeg_of_the_same_picture() -> None:
    _needs(pydicom.dcmread(get_testdata_file("SC_rgb_dcmtk_+eb+cy+np.dcm")).file_meta.TransferSyntaxUID)
    ybr = np.asarray(open_image(get_testdata_file("SC_rgb_dcmtk_+eb+cy+np.dcm"))).astype(int)
    rgb = np.asarray(open_image(get_testdata_file("SC_rgb_dcmtk_+eb+cr.dcm"))).astype(int)
    # Both are lossy JPEGs of one picture: left in YBR, the mean error would be near 100 grey levels.
    assert np.abs(ybr - rgb).mean() < 3


def test_a_frame_option_picks_a_frame_and_a_missing_one_is_a_clear_error(tmp_path: object) -> None:
    frames = np.stack([RAMP, RAMP[:, ::-1]])
    data = dicom_bytes(frames, frames=2)
    np.testing.assert_array_equal(grey(open_image(data))[0], np.arange(256))
    np.testing.assert_array_equal(grey(open_image(data, frame=1))[0], np.arange(256)[::-1])
    with pytest.raises(ImageDecodeError, match=r"frame 2 asked for, but the file has 2 frame\(s\) \(0 to 1\)"):
        open_image(data, frame=2)
    with pytest.raises(ImageDecodeError, match="frame 1 asked for, but only DICOM has frames"):
        open_image(png_bytes(RAMP), frame=1)


@pytest.mark.parametrize(
    "name",
    [
        "MR_small_RLE.dcm",
        "MR_small_jp2klossless.dcm",
        "MR_small_jpeg_ls_lossless.dcm",
        "MR_small_implicit.dcm",
        "MR_small_bigendian.dcm",
        "MR_small_expb.dcm",
    ],
)
def test_every_lossless_encoding_of_a_file_decodes_to_the_same_image(name: str) -> None:
    path = get_testdata_file(name)
    _needs(pydicom.dcmread(path).file_meta.TransferSyntaxUID)
    check_dicom(path)
    np.testing.assert_array_equal(
        np.asarray(open_image(path)), np.asarray(open_image(get_testdata_file("MR_small.dcm")))
    )


@pytest.mark.parametrize("syntax", [RLELossless, JPEG2000Lossless])
def test_files_compressed_here_decode_exactly(syntax: object) -> None:
    # 64 rows: OpenJPEG's default of 6 resolution levels refuses smaller images.
    pixels = np.tile(RAMP, (8, 1))
    ds = pydicom.dcmread(io.BytesIO(dicom_bytes(pixels)))
    ds.compress(syntax)
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    expected = np.asarray(open_image(dicom_bytes(pixels)))
    np.testing.assert_array_equal(np.asarray(open_image(buffer.getvalue())), expected)


def test_a_transfer_syntax_without_any_decoder_is_a_clear_per_file_error(tmp_path: object) -> None:
    ds = pydicom.dcmread(io.BytesIO(dicom_bytes(RAMP)))
    ds.file_meta.TransferSyntaxUID = MPEG2MPML
    ds.PixelData = encapsulate([b"\x00\x00\x01\xb3 not really MPEG-2"])
    ds["PixelData"].VR = "OB"
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    with pytest.raises(ImageDecodeError, match=r"clip\.dcm: pydicom has no decoder for transfer syntax 1\.2\.840"):
        open_image(buffer.getvalue(), name="clip.dcm")
