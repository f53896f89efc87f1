"""The cost plan: price x nodes x hours, a sweep's bound, and "unknown" (never 0) without a price."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest

from azure_dl import catalog
from azure_dl.cluster_needs import ClusterNeeds
from azure_dl.console import print_key_values
from azure_dl.plan import plan_job, plan_sweep
from azure_dl.spec import EnvironmentSpec, JobSpec, OutputSpec
from azure_dl.sweep_spec import SearchParam, SweepSpec


@pytest.fixture
def priced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    overlay = tmp_path / "prices.toml"
    overlay.write_text(
        '[[size]]\nname = "Standard_NC64as_T4_v3"\nprice_per_hour = 4.0\nprice_source = "test price, 2026-01-01"\n',
        encoding="utf-8",
    )
    monkeypatch.setenv(catalog.CATALOG_ENV_VAR, str(overlay))
    return overlay


def job(tmp_path: Path, **changes: Any) -> JobSpec:
    code = tmp_path / "code"
    code.mkdir(exist_ok=True)
    (code / "train.py").write_text("")
    fields: dict[str, Any] = {
        "display_name": "resnet",
        "experiment": "azure-dl-resnet",
        "code": code,
        "script": "train.py",
        "vm_size": "Standard_NC64as_T4_v3",
        "environment": EnvironmentSpec("azureml:env@latest"),
        "max_hours": 2.5,
        "compute": "nc64as-t4-v3",
        "instance_count": 3,
        "outputs": {"model": OutputSpec("--output")},
    }
    fields.update(changes)
    return JobSpec(**fields)


def test_job_bound_is_price_times_nodes_times_hours(tmp_path: Path, priced: Path) -> None:
    plan = plan_job(job(tmp_path))
    assert plan.price_per_hour == 4.0
    assert plan.node_hours == 7.5
    assert plan.cost_bound == pytest.approx(30.0)
    rows = dict(plan.rows())
    assert rows["cost bound"].startswith("30.00 USD = 4.0000 x 3 node(s) x 2.5 h")
    assert rows["GPUs"] == "T4 (16 GB) x 4 per node x 3 nodes = 12 GPU(s)"
    assert "world size 12" in rows["processes"]
    assert "test price, 2026-01-01" in rows["price"]


def test_unknown_price_gives_an_unknown_bound_never_zero(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(catalog.CATALOG_ENV_VAR, str(tmp_path / "none.toml"))
    # The packaged list prices cover US regions only (its source's coverage): West Europe has none.
    spec = job(tmp_path, vm_size="Standard_NC4as_T4_v3", instance_count=1, compute=None)
    plan = plan_job(spec, region="westeurope")
    assert plan.price_per_hour is None and plan.cost_bound is None
    rows = dict(plan.rows())
    assert rows["price"].startswith("unknown in westeurope") and "catalog refresh" in rows["price"]
    assert rows["cost bound"].startswith("unknown") and "0.00" not in rows["cost bound"]
    assert rows["compute"].startswith("serverless")


def test_sweep_bound_is_the_smaller_of_all_trials_and_busy_slots(tmp_path: Path, priced: Path) -> None:
    trial = job(tmp_path, instance_count=1, max_hours=2.0)
    space = (SearchParam.parse("lr=loguniform(1e-5, 1e-2)"),)
    # 10 trials x 2 h = 20 h, but 2 slots x 4 h timeout = 8 h caps it.
    capped = plan_sweep(
        SweepSpec(trial, space, "val_macro_f1", max_total_trials=10, max_concurrent_trials=2, timeout_hours=4.0)
    )
    assert capped.node_hours == 8.0 and capped.cost_bound == pytest.approx(32.0)
    assert "2 concurrent x 4 h sweep timeout" in dict(capped.rows())["cost bound"]
    # Default timeout: every wave fits, so all trials at their limit is the bound.
    full = plan_sweep(SweepSpec(trial, space, "val_macro_f1", max_total_trials=5, max_concurrent_trials=2))
    assert full.node_hours == 10.0 and full.cost_bound == pytest.approx(40.0)
    assert dict(full.rows())["time limit"] == "2 h per trial"


def test_plans_yield_the_cluster_needs_preflight_takes(tmp_path: Path, priced: Path) -> None:
    assert plan_job(job(tmp_path, low_priority=True)).needs == ClusterNeeds(
        "nc64as-t4-v3", "Standard_NC64as_T4_v3", nodes=3, low_priority=True, job_nodes=3
    )
    trial = job(tmp_path, instance_count=2)
    space = (SearchParam.parse("lr=loguniform(1e-5, 1e-2)"),)
    needs = plan_sweep(SweepSpec(trial, space, "val_macro_f1", max_total_trials=6, max_concurrent_trials=3)).needs
    # Every concurrent trial holds its nodes at once: 2 nodes x 3 trials; one trial alone needs 2.
    assert (needs.compute, needs.nodes, needs.least_nodes, needs.low_priority) == ("nc64as-t4-v3", 6, 2, False)


def test_low_priority_is_noted(tmp_path: Path, priced: Path) -> None:
    rows = dict(plan_job(job(tmp_path, low_priority=True)).rows())
    assert rows["priority"].startswith("low priority")
    assert dict(plan_job(job(tmp_path)).rows())["priority"] == "dedicated"


def test_plan_prints_as_a_table(tmp_path: Path, priced: Path) -> None:
    buffer = io.StringIO()
    print_key_values("Plan", plan_job(job(tmp_path)).rows(), file=buffer)
    text = buffer.getvalue()
    assert "Standard_NC64as_T4_v3" in text and "30.00 USD" in text


@pytest.mark.parametrize("preset", ["resnet", "lstm"])
def test_every_presets_default_size_has_a_dated_packaged_price(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, preset: str
) -> None:
    from azure_dl.presets import PRESETS

    monkeypatch.setenv(catalog.CATALOG_ENV_VAR, str(tmp_path / "none.toml"))
    vm_size = PRESETS[preset].default_vm_size
    plan = plan_job(job(tmp_path, vm_size=vm_size, instance_count=1, compute=None, max_hours=2.0))
    assert plan.price_per_hour is not None and plan.price_per_hour > 0
    assert plan.cost_bound == pytest.approx(plan.price_per_hour * 2.0)
    rows = dict(plan.rows())
    assert "USD per VM-hour in eastus" in rows["price"] and "retrieved 20" in rows["price"]
    assert rows["cost bound"].endswith("x 1 node(s) x 2 h")


def test_region_changes_the_price_and_an_unpriced_region_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from azure_dl.errors import SpecError

    monkeypatch.setenv(catalog.CATALOG_ENV_VAR, str(tmp_path / "none.toml"))
    regions = catalog.priced_regions()
    assert "eastus" in regions and len(regions) > 1
    spec = job(tmp_path, vm_size="Standard_NC4as_T4_v3", instance_count=1, compute=None)
    other = next(region for region in regions if region != "eastus")
    assert f"in {other}" in dict(plan_job(spec, region=other).rows())["price"]
    assert catalog.check_region(" EastUS ") == "eastus"
    with pytest.raises(SpecError, match="did you mean eastus"):
        catalog.check_region("eastuss")


def test_low_priority_shows_the_spot_estimate_but_bounds_at_list_price(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(catalog.CATALOG_ENV_VAR, str(tmp_path / "none.toml"))
    plan = plan_job(job(tmp_path, vm_size="Standard_NC4as_T4_v3", instance_count=1, compute=None, low_priority=True))
    assert plan.low_priority_estimate is not None and plan.price_per_hour is not None
    assert plan.low_priority_estimate < plan.price_per_hour
    assert plan.cost_bound == pytest.approx(plan.price_per_hour * plan.hours)
    assert "estimate" in dict(plan.rows())["price"]


def test_uploads_row_lists_each_local_input_and_the_total(tmp_path: Path, priced: Path) -> None:
    from azure_dl.spec import InputSpec

    data = tmp_path / "data.csv"
    data.write_bytes(b"x" * 2048)
    spec = job(tmp_path, inputs={"data": InputSpec(str(data), "--data", kind="uri_file")})
    (spec.code / "train.py").write_text("print(1)\n")
    plan = plan_job(spec)
    assert [(item.name, item.size_bytes) for item in plan.uploads] == [("code", 9), ("data", 2048)]
    assert dict(plan.rows())["uploads"] == "code 9 B, data 2.0 KB; total 2.0 KB"
