"""The end-of-run Markdown: one row per stage (status, seconds, its headline figures), and one per ResNet batch."""

from __future__ import annotations

from typing import Any


def _fmt(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:,.4g}" if abs(value) < 1 else f"{value:,.1f}"
    return str(value).replace("|", "\\|")


def _headline(name: str, record: dict[str, Any]) -> str:
    """The one or two figures a reader looks for in each stage's record."""
    if record.get("status") != "ok":
        return _fmt(record.get("error") or record.get("reason") or "")
    if name == "environment":
        return (
            f"torch {record.get('torch')}, CUDA {_fmt(record.get('cuda_runtime'))}, {record.get('device_name')}"
            f", {_fmt(record.get('memory_gib'))} GiB, bf16 {_fmt(record.get('bf16_supported'))}"
        )
    if name in ("resnet_eager", "resnet_compiled"):
        rows = record.get("rows", [])
        text = "; ".join(f"batch {r['batch_size']}: {_fmt(r['images_per_s'])} img/s" for r in rows)
        return text + (f" (not run: {'; '.join(record['not_run'])})" if record.get("not_run") else "")
    if name == "cache_loader":
        return (
            f"loader {_fmt(record.get('loader_images_per_s'))} img/s, fed train step "
            f"{_fmt(record.get('train_images_per_s_fed'))} img/s ({record.get('image_cache')})"
        )
    if name == "lstm":
        return f"{_fmt(record.get('samples_per_s'))} samples/s ({record.get('precision')})"
    if name == "fp16_grad_scaler":
        return f"{record.get('steps')} steps, loss finite {record.get('loss_finite')}, scale {record['grad_scale'][-1]}"
    if name == "checkpoint_resume":
        return f"max loss diff {record.get('max_abs_diff'):.2e} after resuming at step {record.get('resumed_at_step')}"
    if name == "ddp_step":
        return f"{record.get('backend')} world_size {record.get('world_size')}, init {record.get('init_seconds')} s"
    return ""


def render(report: dict[str, Any]) -> str:
    """Markdown for a gpu_check.json report (complete or partial)."""
    env = report["stages"].get("environment", {})
    device = env.get("device_name") or report.get("device")
    lines = [
        f"## GPU check ({'smoke, CPU' if report['smoke'] else device})",
        "",
        f"- Command: `{report['command']}`; started {report['started_at']}; {report.get('elapsed_s')} s in all; "
        f"finished: {report['finished']}",
        "",
        "| stage | check | status | s | result |",
        "|---|---|---|---|---|",
    ]
    for name in report["order"]:
        record = report["stages"][name]
        lines.append(
            f"| {record['letter']} | {name} | {record['status']} | {_fmt(record.get('seconds'))} | "
            f"{_fmt(_headline(name, record))} |"
        )
    rows = [
        (name, row)
        for name in ("resnet_eager", "resnet_compiled")
        for row in report["stages"].get(name, {}).get("rows", [])
    ]
    if rows:
        arch = report["stages"]["resnet_eager"].get("arch", "resnet")
        lines += [
            "",
            f"{arch} train step (bf16 autocast where supported, channels_last; warm-up excluded, CUDA-synchronised)",
            "",
            "| batch | torch.compile | images/s | MFU | timed steps | warm-up s |",
            "|---|---|---|---|---|---|",
        ]
        for _, row in rows:
            lines.append(
                f"| {row['batch_size']} | {'yes' if row['compiled'] else 'no'} | {_fmt(row['images_per_s'])} | "
                f"{_fmt(row['mfu'])} | {row['timed_steps']} | {_fmt(row['warmup_seconds'])} |"
            )
    return "\n".join(lines) + "\n"
