"""Text tables: CSV quoting, malformed rows skipped with line numbers, JSONL, label names and ids (no torch)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from training_scripts.splits import DatasetError
from training_scripts.text_table import label_ids, label_names, read_text_table

CSV_WITH_QUOTING = (
    "id,text,label\n"
    '1,"Great film, truly great",pos\n'
    '2,"Line one\nline two, with a comma",neg\n'
    '3,"She said ""wow""",pos\n'
)


def test_csv_quoted_commas_newlines_and_quotes(tmp_path: Path) -> None:
    path = tmp_path / "reviews.csv"
    path.write_text(CSV_WITH_QUOTING, encoding="utf-8")
    table = read_text_table(path)
    assert table.texts == ["Great film, truly great", "Line one\nline two, with a comma", 'She said "wow"']
    assert table.labels == ["pos", "neg", "pos"]
    assert table.skipped == []
    assert table.skipped_summary() == "no rows skipped"


def test_csv_malformed_rows_are_skipped_with_line_numbers(tmp_path: Path) -> None:
    path = tmp_path / "reviews.csv"
    path.write_bytes(
        (
            "\ufefftext,label\n"  # a BOM, as Excel writes
            "good movie,1\n"
            "too,many,fields,0\n"  # line 3
            "no label here,\n"  # line 4
            '"multi\nline text",0\n'  # lines 5-6
            "\n"  # blank: ignored, not counted
            ",1\n"  # line 8: empty text
            "only_one_field\n"  # line 9
            "bad movie, 0\n"
        ).encode()
    )
    table = read_text_table(path)
    assert table.texts == ["good movie", "multi\nline text", "bad movie"]
    assert table.labels == [1, 0, 0]
    assert table.skipped == [
        (3, "expected 2 fields, found 4"),
        (4, "empty label"),
        (8, "empty text"),
        (9, "expected 2 fields, found 1"),
    ]
    assert table.skipped_summary(limit=2).startswith("skipped 4 malformed row(s): line 3: expected 2 fields")


def test_tsv_and_custom_columns(tmp_path: Path) -> None:
    path = tmp_path / "data.TSV"
    path.write_text("review\tsentiment\nfine, really\tpositive\nmeh\tnegative\n")
    table = read_text_table(path, text_column="review", label_column="sentiment")
    assert table.texts == ["fine, really", "meh"]
    assert table.labels == ["positive", "negative"]


def test_missing_column_lists_the_columns(tmp_path: Path) -> None:
    path = tmp_path / "reviews.csv"
    path.write_text(CSV_WITH_QUOTING)
    with pytest.raises(DatasetError, match=r"no label column 'sentiment'; its columns are \['id', 'text', 'label'\]"):
        read_text_table(path, label_column="sentiment")


def test_jsonl_rows_and_malformed_lines(tmp_path: Path) -> None:
    path = tmp_path / "reviews.jsonl"
    lines = [
        json.dumps({"text": "loved it", "label": 1}),
        "{not json",
        json.dumps({"text": "hated it", "label": 0.0}),
        json.dumps(["a", "list"]),
        "",
        json.dumps({"text": "no label"}),
        json.dumps({"text": "bool label", "label": True}),
        json.dumps({"text": "fractional", "label": 0.5}),
        json.dumps({"text": 42, "label": 1}),
        json.dumps({"text": "string int", "label": "1"}),
    ]
    path.write_text("\n".join(lines) + "\n")
    table = read_text_table(path)
    assert table.texts == ["loved it", "hated it", "string int"]
    assert table.labels == [1, 0, 1]
    assert [line for line, _ in table.skipped] == [2, 4, 6, 7, 8, 9]
    reasons = dict(table.skipped)
    assert reasons[2].startswith("invalid JSON")
    assert reasons[4] == "expected a JSON object, found list"
    assert reasons[6] == "missing 'label'"
    assert "neither a string nor an integer" in reasons[7]
    assert reasons[9] == "text is int, not a string"


def test_jsonl_missing_field_everywhere_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "reviews.jsonl"
    path.write_text('{"review": "a", "label": 0}\n{"review": "b", "label": 1}\n')
    with pytest.raises(DatasetError, match=r"no record has a text field 'text'; the fields present are \['label'"):
        read_text_table(path)


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("empty.csv", "", "is empty"),
        ("header_only.csv", "text,label\n", "no usable rows"),
        ("all_bad.csv", "text,label\n,1\nx,\n", r"no usable rows \(skipped 2 malformed"),
        ("single.csv", "text,label\na,pos\nb,pos\n", "needs at least two classes"),
        ("data.txt", "text,label\n", "unsupported file type '.txt'"),
    ],
)
def test_clear_errors(tmp_path: Path, name: str, content: str, message: str) -> None:
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(DatasetError, match=message):
        read_text_table(path)


def test_missing_file_and_non_utf8(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="does not exist"):
        read_text_table(tmp_path / "nope.csv")
    latin1 = tmp_path / "latin1.csv"
    latin1.write_bytes("text,label\ncaf\xe9,1\nx,0\n".encode("latin-1"))
    with pytest.raises(DatasetError, match="not UTF-8"):
        read_text_table(latin1)


def test_label_names_and_ids() -> None:
    assert label_names([10, 2, -1, 2]) == ["-1", "2", "10"]
    assert label_names(["pos", "neg", "Neutral"]) == ["Neutral", "neg", "pos"]
    assert label_ids([10, 2, -1], ["-1", "2", "10"]) == [2, 1, 0]
    assert label_ids(["b", "a"], ["a", "b"]) == [1, 0]
    with pytest.raises(DatasetError, match=r"labels \['c'\] are not among the known classes"):
        label_ids(["a", "c"], ["a", "b"])
    with pytest.raises(DatasetError, match="'b' have no samples"):
        label_ids(["a", "a", "c"], ["a", "b", "c"], source="test.csv")


def test_jsonl_texts_holding_unicode_line_separators_stay_one_record(tmp_path: Path) -> None:
    # Found by tests/unit/test_fuzz_text_table.py: str.splitlines() split records at U+2028 and U+0085.
    records = [{"text": "a\u2028b", "label": "x"}, {"text": "c\x85d\u2029", "label": "y"}]
    path = tmp_path / "t.jsonl"
    path.write_text("\r\n".join(json.dumps(r, ensure_ascii=False) for r in records) + "\r\n", encoding="utf-8")
    table = read_text_table(path)
    assert table.texts == ["a\u2028b", "c\x85d\u2029"] and table.skipped == []


def test_jsonl_line_nested_too_deeply_is_skipped_not_a_crash(tmp_path: Path) -> None:
    # Found by tests/unit/test_fuzz_text_table.py: json.loads raised RecursionError through the reader.
    path = tmp_path / "t.jsonl"
    good = '{"text": "a", "label": "x"}\n{"text": "b", "label": "y"}\n'
    path.write_text(good + '{"text": "c", "label": ' + "[" * 100_000 + "\n", encoding="utf-8")
    table = read_text_table(path)
    assert table.texts == ["a", "b"] and table.skipped == [
        (3, "invalid JSON (nested deeper than the parser's recursion limit)")
    ]
