"""The DICOM contract on pydicom's own bundled test files: every file whose first frame pydicom decodes to 2-D
greyscale or RGB/YBR/palette colour trains and scores; every other file is refused with a reason (never a crash)."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("pydicom")

from benchmarks import bench_dicom_coverage


@pytest.fixture(scope="module")
def coverage() -> list[bench_dicom_coverage.FileCoverage]:
    return bench_dicom_coverage.survey()


def test_every_file_pydicom_decodes_to_grey_or_colour_trains_and_scores(
    coverage: list[bench_dicom_coverage.FileCoverage],
) -> None:
    contract = [row for row in coverage if row.pydicom_decodes and row.kind in bench_dicom_coverage.CONTRACT_KINDS]
    assert len(contract) >= 80, "pydicom's bundled files went missing"  # 89 with pydicom 3.0.2 and the plugins
    refused = [(row.name, row.train_reason, row.score_reason) for row in contract if not (row.trains and row.scores)]
    assert refused == []
    assert {"PALETTE COLOR", "YBR_FULL", "YBR_FULL_422", "RGB", "MONOCHROME1", "MONOCHROME2"} <= {
        row.photometric for row in contract
    }


def test_every_other_file_is_refused_with_a_reason_and_a_400(coverage: list[bench_dicom_coverage.FileCoverage]) -> None:
    for row in coverage:
        if row.trains and row.scores:
            continue
        assert row.train_reason.startswith("the training scan skips it: "), row
        assert row.score_reason.startswith("scoring answers 400: "), row


def test_the_benchmark_runs_and_saves_in_the_common_format(tmp_path: Path) -> None:
    assert bench_dicom_coverage.main(["--smoke", "--save", "--results-dir", str(tmp_path)]) == 0
    (saved,) = tmp_path.glob("*.json")
    assert saved.name == "dicom_coverage.json" and "train_and_score" in saved.read_text()
