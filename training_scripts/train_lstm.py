"""Train an LSTM text classifier (the review-sentiment scenario) and export it to ONNX.

    python -m training_scripts.train_lstm --data reviews.csv --output OUT [--glove glove.6B.300d.txt] ...

The data is a CSV/TSV or JSONL file with a text column and a label column (ints or strings); malformed rows are
skipped and counted (OUT/data_report.json). The vocabulary is built from the training split only and saved as
OUT/vocab.json. Defaults follow the reference scenario: sequences of 100 tokens, 300-d embeddings (optionally
initialised from a GloVe file), dropout 0.5, Adam at lr 1e-3, batch 64, up to 10 epochs with early stopping.
Runs unchanged as one process, under torchrun, and as an Azure ML command job.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from training_scripts import progress
from training_scripts.distributed import DistContext
from training_scripts.export_onnx import INPUT_IDS
from training_scripts.glove import load_glove
from training_scripts.lstm import LSTMClassifier
from training_scripts.models import build_model, freeze
from training_scripts.preprocess_config import TextPreprocessConfig
from training_scripts.splits import DatasetError, split_indices
from training_scripts.text_data import TextDataset
from training_scripts.text_encode import encode_texts
from training_scripts.text_table import TextTable, label_ids, label_names, read_text_table
from training_scripts.text_vocab import Vocabulary, tokenize
from training_scripts.train_common import PreparedTask, add_common_args, main_for


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="LSTM text classification (CSV/TSV or JSONL with text and label).")
    add_common_args(parser, epochs=10, batch_size=64, lr=1e-3, patience=3, imbalance="weighted-loss")
    text = parser.add_argument_group("text")
    text.add_argument("--text-column", default="text", help="column (or JSON key) with the text (default text)")
    text.add_argument("--label-column", default="label", help="column (or JSON key) with the label (default label)")
    text.add_argument(
        "--seq-len", type=int, default=100, help="tokens kept per text, padded or truncated (default 100)"
    )
    text.add_argument(
        "--max-vocab", type=int, default=30_000, help="vocabulary size incl. <pad> and <unk> (default 30000)"
    )
    text.add_argument(
        "--min-freq", type=int, default=1, help="tokens seen fewer times in training become <unk> (default 1)"
    )
    text.add_argument("--no-lowercase", action="store_true", help="keep letter case (default: lowercase)")
    model = parser.add_argument_group("model")
    model.add_argument("--embed-dim", type=int, default=300, help="embedding size (default 300)")
    model.add_argument("--hidden-size", type=int, default=128, help="LSTM hidden size per direction (default 128)")
    model.add_argument("--num-layers", type=int, default=1, help="stacked LSTM layers (default 1)")
    model.add_argument("--bidirectional", action="store_true", help="bidirectional LSTM (default: forward only)")
    model.add_argument("--dropout", type=float, default=0.5, help="dropout before the head (default 0.5)")
    model.add_argument(
        "--glove",
        default=None,
        help="GloVe-format vectors to initialise the embedding: a .txt, a .gz of one, or ARCHIVE.zip:MEMBER "
        "(e.g. glove.6B.zip:glove.6B.300d.txt, read without extracting); the vectors' dimension must equal "
        "--embed-dim (default: none, random init)",
    )
    model.add_argument(
        "--glove-member",
        default=None,
        help="the member of a --glove .zip to read (the same as --glove ARCHIVE.zip:MEMBER; for a pipeline, where "
        "the archive is a mounted input) (default: the archive's only .txt)",
    )
    model.add_argument(
        "--freeze-embedding", action="store_true", help="keep the (GloVe) embedding fixed (default: train it)"
    )
    return parser


def _read(path: str, args: argparse.Namespace, what: str) -> TextTable:
    table = read_text_table(path, text_column=args.text_column, label_column=args.label_column)
    if table.skipped:
        progress.warning(f"{what}: {table.skipped_summary()}")
    return table


def prepare(args: argparse.Namespace, ctx: DistContext) -> PreparedTask:
    table = _read(args.data, args, "training data")
    report: dict[str, Any] = {"skipped_rows": len(table.skipped)}
    val_fraction = 0.0 if args.val_data else args.val_fraction
    test_fraction = 0.0 if args.test_data else args.test_fraction
    split = split_indices(table.labels, val_fraction, test_fraction, seed=args.seed)
    texts = {name: [table.texts[i] for i in getattr(split, name)] for name in ("train", "val", "test")}
    labels = {name: [table.labels[i] for i in getattr(split, name)] for name in ("train", "val", "test")}
    for name, path in (("val", args.val_data), ("test", args.test_data)):
        if path:
            other = _read(path, args, f"{name} data")
            texts[name], labels[name] = other.texts, other.labels
            report["skipped_rows"] += len(other.skipped)
    if not texts["val"]:
        raise DatasetError("no validation data: give --val-data or a --val-fraction above 0")

    classes = label_names(labels["train"])
    ids = {name: label_ids(labels[name], classes, f"{name} split") for name in ("train", "val")}
    ids["test"] = label_ids(labels["test"], classes, "test split") if texts["test"] else []
    for name in ("train", "val", "test"):
        report[f"{name}_counts"] = {c: ids[name].count(i) for i, c in enumerate(classes)}

    try:
        cfg = TextPreprocessConfig(seq_len=args.seq_len, lowercase=not args.no_lowercase)
        vocab = Vocabulary.build(
            (tokenize(text, cfg.lowercase) for text in texts["train"]), max_size=args.max_vocab, min_freq=args.min_freq
        )
    except ValueError as exc:
        raise DatasetError(str(exc)) from exc
    report["vocab_size"] = len(vocab)
    encoded = {name: encode_texts(texts[name], vocab, cfg) for name in ("train", "val", "test")}
    datasets = {name: TextDataset(encoded[name], ids[name]) for name in ("train", "val", "test")}

    try:
        model = build_model(
            "lstm",
            num_classes=len(classes),
            vocab_size=len(vocab),
            embed_dim=args.embed_dim,
            hidden_size=args.hidden_size,
            num_layers=args.num_layers,
            bidirectional=args.bidirectional,
            dropout=args.dropout,
        )
    except ValueError as exc:
        raise DatasetError(f"invalid model option: {exc}") from exc
    assert isinstance(model, LSTMClassifier)
    if args.glove_member and not args.glove:
        raise DatasetError("--glove-member names a member of the --glove archive, but no --glove was given")
    if args.glove:
        source = f"{args.glove}:{args.glove_member}" if args.glove_member else args.glove
        try:
            glove = load_glove(source, vocab.itos, args.embed_dim, seed=args.seed)
        except ValueError as exc:
            raise DatasetError(str(exc)) from exc
        with torch.no_grad():
            model.embedding.weight.copy_(torch.from_numpy(glove.weights))
        report.update(glove_found=glove.found, glove_missing=glove.missing, glove_malformed_lines=glove.malformed_lines)
        if ctx.is_main:
            examples = ", ".join(glove.missing_examples[:5])
            print(
                f"GloVe: {glove.found} of {len(vocab)} vocabulary words found in {args.glove}; "
                f"{glove.missing} missing (randomly initialised){': ' + examples if examples else ''}",
                flush=True,
            )
    if args.freeze_embedding:
        model.embedding.weight.requires_grad_(False)
    else:
        freeze(model, "none")

    val_rows = encoded["val"]

    def parity_inputs() -> list[torch.Tensor]:
        # Held-out validation rows at two batch sizes and two lengths (the ONNX sequence axis is dynamic).
        rows = np.stack([val_rows[i % len(val_rows)] for i in range(3)])
        half = max(1, cfg.seq_len // 2)
        return [torch.from_numpy(rows[:1].copy()), torch.from_numpy(rows[:, :half].copy())]

    def write_sidecars(folder: Path) -> list[Path]:
        return [vocab.save(folder)]

    return PreparedTask(
        task="lstm",
        model=model,
        train=datasets["train"],
        val=datasets["val"],
        test=datasets["test"] if texts["test"] else None,
        class_names=classes,
        train_labels=ids["train"],
        preprocess=cfg,
        input_name=INPUT_IDS,
        parity_inputs=parity_inputs,
        run_params={
            "seq_len": args.seq_len,
            "embed_dim": args.embed_dim,
            "hidden_size": args.hidden_size,
            "num_layers": args.num_layers,
            "bidirectional": args.bidirectional,
            "dropout": args.dropout,
            "max_vocab": args.max_vocab,
            "min_freq": args.min_freq,
            "glove": Path(args.glove).name if args.glove else None,
        },
        data_report=report,
        write_sidecars=write_sidecars,
        dynamic_sequence=True,
    )


def main(argv: Sequence[str] | None = None) -> int:
    return main_for(get_args_parser, prepare, argv)


if __name__ == "__main__":
    raise SystemExit(main())
