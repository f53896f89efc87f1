"""GloVe vectors: rows, counts and malformed lines; .txt, .gz and .zip members read without extracting."""

from __future__ import annotations

import gzip
import zipfile
from pathlib import Path

import numpy as np
import pytest

from training_scripts.glove import load_glove, split_source

GLOVE_4D = "\n".join(
    [
        "the 0.1 0.2 0.3 0.4",
        "cat 1 2 3 4",
        "dog 1 2",  # too few numbers: malformed
        "bird a b c d",  # not numbers: malformed
        "new york 5 6 7 8",  # glove.840B has tokens with spaces
        "the 9 9 9 9",  # a repeated word: the first line wins
        "",
    ]
)
ITOS = ["<pad>", "<unk>", "the", "cat", "dog", "new york", "zebra", "bird"]


def test_glove_rows_counts_and_malformed_lines(tmp_path: Path) -> None:
    path = tmp_path / "glove.4d.txt"
    path.write_text(GLOVE_4D, encoding="utf-8")
    result = load_glove(path, ITOS, 4)
    assert result.weights.shape == (8, 4) and result.weights.dtype == np.float32
    assert (result.found, result.missing, result.malformed_lines) == (3, 4, 2)
    assert result.missing_examples == ["<unk>", "dog", "zebra", "bird"]
    np.testing.assert_array_equal(result.weights[0], np.zeros(4, dtype=np.float32))
    np.testing.assert_allclose(result.weights[2], [0.1, 0.2, 0.3, 0.4])
    np.testing.assert_allclose(result.weights[3], [1, 2, 3, 4])
    np.testing.assert_allclose(result.weights[5], [5, 6, 7, 8])
    missing_rows = result.weights[[1, 4, 6, 7]]
    assert 0.0 < np.abs(missing_rows).mean() < 0.5  # small random rows, not zeros
    np.testing.assert_array_equal(load_glove(path, ITOS, 4).weights, result.weights)  # fixed seed


def test_glove_dimension_mismatch_names_file_line_and_both_dims(tmp_path: Path) -> None:
    path = tmp_path / "glove.3d.txt"
    path.write_text("400000 3\nthe 0.1 0.2 0.3\n", encoding="utf-8")  # with a word2vec-style header
    with pytest.raises(ValueError, match=r"glove\.3d\.txt: line 2 has 3-dimensional vectors but dim=4"):
        load_glove(path, ITOS, 4)


def test_glove_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"glove\.missing\.txt"):
        load_glove(tmp_path / "glove.missing.txt", ITOS, 4)


def _glove_zip(tmp_path: Path, members: dict[str, str]) -> Path:
    archive = tmp_path / "glove.6B.zip"
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as handle:
        for name, text in members.items():
            handle.writestr(name, text)
    return archive


def test_gz_and_zip_member_give_the_same_rows_as_the_txt(tmp_path: Path) -> None:
    txt = tmp_path / "glove.4d.txt"
    txt.write_text(GLOVE_4D, encoding="utf-8")
    gz = tmp_path / "glove.4d.txt.gz"
    gz.write_bytes(gzip.compress(GLOVE_4D.encode()))
    archive = _glove_zip(tmp_path, {"glove.2d.txt": "the 1 2\n", "glove.4d.txt": GLOVE_4D})
    expected = load_glove(txt, ITOS, 4)
    for source in (gz, f"{archive}:glove.4d.txt"):
        result = load_glove(source, ITOS, 4)
        np.testing.assert_array_equal(result.weights, expected.weights)
        assert (result.found, result.missing, result.malformed_lines) == (3, 4, 2)


def test_zip_with_one_txt_member_needs_no_member_name(tmp_path: Path) -> None:
    archive = _glove_zip(tmp_path, {"README": "not vectors", "vectors/glove.4d.txt": GLOVE_4D})
    assert load_glove(archive, ITOS, 4).found == 3


def test_zip_with_several_members_asks_for_one_by_name(tmp_path: Path) -> None:
    archive = _glove_zip(tmp_path, {"glove.6B.50d.txt": "", "glove.6B.300d.txt": ""})
    with pytest.raises(ValueError, match=r"holds 2 \.txt files .*glove\.6B\.zip:glove\.6B\.50d\.txt"):
        load_glove(archive, ITOS, 4)
    with pytest.raises(FileNotFoundError, match=r"no member 'glove\.6B\.100d\.txt'.*glove\.6B\.300d\.txt"):
        load_glove(f"{archive}:glove.6B.100d.txt", ITOS, 4)


def test_truncated_gz_is_an_error_not_a_silently_short_table(tmp_path: Path) -> None:
    gz = tmp_path / "glove.4d.txt.gz"
    gz.write_bytes(gzip.compress((GLOVE_4D * 50).encode())[:-20])
    with pytest.raises(ValueError, match=r"truncated or corrupt"):
        load_glove(gz, ITOS, 4)


def test_a_file_that_is_not_a_zip_is_named(tmp_path: Path) -> None:
    fake = tmp_path / "glove.6B.zip"
    fake.write_text("<html>sign in</html>")
    with pytest.raises(ValueError, match=r"glove\.6B\.zip is not a readable \.zip"):
        load_glove(fake, ITOS, 4)


def test_split_source_keeps_plain_paths_whole() -> None:
    assert split_source("/data/glove.6B.zip:glove.6B.300d.txt") == (Path("/data/glove.6B.zip"), "glove.6B.300d.txt")
    assert split_source("/data/glove.6B.300d.txt") == (Path("/data/glove.6B.300d.txt"), None)
    assert split_source("/data/glove.6B.zip") == (Path("/data/glove.6B.zip"), None)


def test_zip_members_are_streamed_not_extracted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    archive = _glove_zip(tmp_path, {"glove.4d.txt": GLOVE_4D})
    monkeypatch.setattr(zipfile.ZipFile, "extract", lambda *a, **k: pytest.fail("extracted to disk"))
    monkeypatch.setattr(zipfile.ZipFile, "extractall", lambda *a, **k: pytest.fail("extracted to disk"))
    assert load_glove(archive, ITOS, 4).found == 3
