"""The VM size catalogue: lookups, retired sizes, user overlay, and `catalog refresh` against a recorded API reply."""

from __future__ import annotations

import urllib.error
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from azure_dl import catalog
from azure_dl.catalog import get_vm_size, list_vm_sizes, load_catalog, lookup_vm_size, refresh_catalog
from azure_dl.cli.main import main
from azure_dl.errors import ConfigError, SpecError

REQUIRED_SIZES = [
    "Standard_NC4as_T4_v3",
    "Standard_NC8as_T4_v3",
    "Standard_NC16as_T4_v3",
    "Standard_NC64as_T4_v3",
    "Standard_NC24ads_A100_v4",
    "Standard_NC48ads_A100_v4",
    "Standard_NC96ads_A100_v4",
    "Standard_NC40ads_H100_v5",
    "Standard_NC80adis_H100_v5",
    "Standard_NC6s_v3",
    "Standard_NC12s_v3",
    "Standard_NC24s_v3",
    "Standard_D4s_v3",
    "Standard_DS3_v2",
    "Standard_E4s_v3",
]


@pytest.fixture(autouse=True)
def no_user_catalog(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "user_vm_sizes.toml"
    monkeypatch.setenv(catalog.CATALOG_ENV_VAR, str(path))
    return path


def test_every_required_size_is_listed_with_its_hardware() -> None:
    names = {size.name for size in list_vm_sizes()}
    assert set(REQUIRED_SIZES) <= names
    t4 = get_vm_size("Standard_NC4as_T4_v3")
    assert (t4.gpu_model, t4.gpu_count, t4.gpu_memory_gb, t4.vcpus, t4.ram_gb, t4.bf16) == ("T4", 1, 16, 4, 28, False)
    assert t4.family.lower() == "standardncasv3_t4family"
    a100 = get_vm_size("Standard_NC96ads_A100_v4")
    assert (a100.gpu_count, a100.gpu_memory_gb, a100.bf16) == (4, 80, True)
    h100 = get_vm_size("Standard_NC80adis_H100_v5")
    assert (h100.gpu_count, h100.gpu_memory_gb, h100.vcpus, h100.ram_gb) == (2, 94, 80, 640)
    cpu = get_vm_size("Standard_DS3_v2")
    assert (cpu.gpu_count, cpu.gpu_model, cpu.is_gpu) == (0, None, False)


def test_no_price_is_invented() -> None:
    # Every packaged price is positive and names its dated source; a region no source lists stays unknown.
    for size in list_vm_sizes():
        assert size.price_per_hour is None  # no packaged one-rate-everywhere override
        for region in size.priced_regions:
            quote = size.price_in(region)
            assert quote is not None and quote.per_hour > 0
            assert "skypilot-catalog" in quote.source and "retrieved 2026-12-06" in quote.source
        assert size.price_in("westeurope") is None


def test_every_catalogued_size_has_an_eastus_price() -> None:
    for size in list_vm_sizes():
        assert size.price_in("eastus") is not None, size.name


@pytest.mark.parametrize(
    ("name", "region", "list_price", "spot"),
    [
        # Rows of skypilot-catalog catalogs/v5/azure/az_ml_vms.csv (commit a7fff17), copied into vm_sizes.toml.
        ("Standard_NC4as_T4_v3", "eastus", 0.526, 0.068959),
        ("Standard_NC4as_T4_v3", "WestUS", 0.631, 0.076351),
        ("Standard_D4s_v3", "eastus", 0.192, 0.023232),
        ("Standard_NC24ads_A100_v4", "southcentralus", 4.408, 0.61712),
        ("Standard_NC40ads_H100_v5", "eastus", 6.98, None),  # the list gives no spot rate for H100
    ],
)
def test_prices_by_region(name: str, region: str, list_price: float, spot: float | None) -> None:
    quote = get_vm_size(name).price_in(region)
    assert quote is not None
    assert (quote.region, quote.per_hour, quote.low_priority_estimate) == (region.lower(), list_price, spot)


def test_lookup_is_case_insensitive_and_prefix_optional() -> None:
    assert get_vm_size("standard_nc4as_t4_v3").name == "Standard_NC4as_T4_v3"
    assert get_vm_size("NC24ads_A100_v4").name == "Standard_NC24ads_A100_v4"


def test_unknown_size_lists_close_matches_and_the_list_command() -> None:
    with pytest.raises(SpecError) as error:
        get_vm_size("Standard_NC4as_T4")
    text = str(error.value)
    assert "'Standard_NC4as_T4'" in text
    assert "Standard_NC4as_T4_v3" in text
    assert "azure-dl catalog list" in text


@pytest.mark.parametrize("name", ["Standard_NC6s_v3", "standard_nc12s_v3", "Standard_NC24s_v3"])
def test_retired_size_names_the_date_and_successors(name: str) -> None:
    with pytest.raises(SpecError) as error:
        get_vm_size(name)
    text = str(error.value)
    assert "retired on 30 Sep 2025" in text
    assert "NCasT4_v3" in text and "for cost" in text
    assert "NC A100 v4" in text and "NCads H100 v5" in text and "for speed" in text
    # Still listed, so `catalog list --all` shows it.
    found = lookup_vm_size(name)
    assert found is not None and found.status == "retired"


def test_default_compute_names_are_valid_cluster_names() -> None:
    for size in list_vm_sizes():
        name = size.compute_name
        assert 2 <= len(name) <= 16 and name[0].isalpha() and name[-1] != "-", name
    assert len({size.compute_name for size in list_vm_sizes()}) == len(list_vm_sizes())


def test_user_overlay_overrides_fields_and_adds_sizes(no_user_catalog: Path) -> None:
    no_user_catalog.write_text(
        '[[size]]\nname = "standard_nc4as_t4_v3"\nprice_per_hour = 0.5\nprice_source = "my contract, 2026-01-01"\n'
        '\n[[size]]\nname = "Standard_NC8ads_A10_v4"\nseries = "NCads A10 v4"\ngpu_model = "A10"\ngpu_count = 1\n'
        'gpu_memory_gb = 24\nvcpus = 8\nram_gb = 100\nbf16 = true\nfamily = "StandardNCADSA10v4Family"\n'
        'status = "current"\n',
        encoding="utf-8",
    )
    t4 = get_vm_size("Standard_NC4as_T4_v3")
    assert t4.price_per_hour == 0.5 and t4.vcpus == 4
    # A one-rate price_per_hour overrides every region, with its own source.
    for region in ("eastus", "westeurope"):
        quote = t4.price_in(region)
        assert quote is not None and quote.per_hour == 0.5 and quote.source == "my contract, 2026-01-01"
    a10 = get_vm_size("Standard_NC8ads_A10_v4")
    assert a10.gpu_memory_gb == 24 and a10.price_in("eastus") is None


def test_overlay_region_prices_merge_region_by_region(no_user_catalog: Path) -> None:
    no_user_catalog.write_text(
        '[[size]]\nname = "Standard_D4s_v3"\nprices = { westeurope = 0.23 }\n'
        'price_sources = { westeurope = "my price sheet, 2026-11-01" }\n',
        encoding="utf-8",
    )
    d4 = get_vm_size("Standard_D4s_v3")
    europe, east = d4.price_in("westeurope"), d4.price_in("eastus")
    assert europe is not None and (europe.per_hour, europe.source) == (0.23, "my price sheet, 2026-11-01")
    assert east is not None and east.per_hour == 0.192 and "skypilot-catalog" in east.source


@pytest.mark.parametrize("value", ["0", "-1", '"cheap"', "true"])
def test_overlay_with_a_bad_region_price_is_refused(no_user_catalog: Path, value: str) -> None:
    no_user_catalog.write_text(f'[[size]]\nname = "Standard_D4s_v3"\nprices = {{ eastus = {value} }}\n')
    with pytest.raises(ConfigError, match=r"prices\.eastus"):
        load_catalog()


def test_overlay_with_a_zero_price_is_refused(no_user_catalog: Path) -> None:
    no_user_catalog.write_text('[[size]]\nname = "Standard_D4s_v3"\nprice_per_hour = 0\n', encoding="utf-8")
    with pytest.raises(ConfigError, match="price_per_hour 0"):
        load_catalog()


def _item(sku: str, price: float, **overrides: Any) -> dict[str, Any]:
    item = {
        "currencyCode": "USD",
        "retailPrice": price,
        "unitPrice": price,
        "armRegionName": "eastus",
        "location": "US East",
        "effectiveStartDate": "2024-01-01T00:00:00Z",
        "meterName": sku.removeprefix("Standard_").replace("_", " "),
        "productName": "Virtual Machines Series",
        "skuName": sku.removeprefix("Standard_").replace("_", " "),
        "serviceName": "Virtual Machines",
        "unitOfMeasure": "1 Hour",
        "type": "Consumption",
        "armSkuName": sku,
    }
    item.update(overrides)
    return item


def test_refresh_pages_filters_and_writes_source_and_date(tmp_path: Path) -> None:
    # A recorded-style reply in two pages, with the meters refresh must skip (Windows, Spot, Low Priority).
    pages: dict[str, dict[str, Any]] = {
        "first": {
            "Items": [
                _item("Standard_NC4as_T4_v3", 0.111),
                _item("Standard_NC4as_T4_v3", 0.999, productName="Virtual Machines NCasT4 v3 Series Windows"),
                _item("Standard_NC4as_T4_v3", 0.05, skuName="NC4as T4 v3 Spot", meterName="NC4as T4 v3 Spot"),
                _item("Standard_NC4as_T4_v3", 0.04, skuName="NC4as T4 v3 Low Priority"),
            ],
            "NextPageLink": "https://prices.azure.com/api/retail/prices?page=2",
        },
        "https://prices.azure.com/api/retail/prices?page=2": {
            "Items": [
                _item("Standard_D4s_v3", 0.222),
                _item("Standard_D4s_v3", 0.2, effectiveStartDate="2020-01-01T00:00:00Z"),
            ],
            "NextPageLink": None,
        },
    }
    requested: list[str] = []

    def fake_get(url: str, timeout: float) -> dict[str, Any]:
        requested.append(url)
        return pages["first"] if len(requested) == 1 else pages[url]

    out = tmp_path / "prices.toml"
    path, prices = refresh_catalog("eastus", out=out, http_get=fake_get, today=date(2026, 3, 1))
    assert path == out
    assert prices == {"Standard_NC4as_T4_v3": (0.111, "USD"), "Standard_D4s_v3": (0.222, "USD")}
    first = requested[0]
    assert first.startswith("https://prices.azure.com/api/retail/prices?$filter=")
    for fragment in ("Virtual%20Machines", "Consumption", "eastus", "Standard_NC4as_T4_v3"):
        assert fragment in first
    assert "Standard_NC6s_v3" not in first  # retired sizes are not priced
    t4 = get_vm_size("Standard_NC4as_T4_v3", user_path=out).price_in("eastus")
    assert t4 is not None and t4.per_hour == 0.111
    assert "2026-03-01" in t4.source and "prices.azure.com" in t4.source
    # A size the API did not price keeps the packaged, dated list price; other regions are untouched.
    e4 = get_vm_size("Standard_E4s_v3", user_path=out).price_in("eastus")
    assert e4 is not None and e4.per_hour == 0.252 and "skypilot-catalog" in e4.source
    west = get_vm_size("Standard_NC4as_T4_v3", user_path=out).price_in("westus")
    assert west is not None and west.per_hour == 0.631


def test_refresh_fails_promptly_and_leaves_the_catalogue_alone(tmp_path: Path) -> None:
    def unreachable(url: str, timeout: float) -> dict[str, Any]:
        raise urllib.error.URLError("Name or service not known")

    out = tmp_path / "prices.toml"
    with pytest.raises(ConfigError, match="could not read prices"):
        refresh_catalog("eastus", out=out, http_get=unreachable)
    assert not out.exists()


def test_refresh_cli_reports_the_network_error(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    def unreachable(url: str, timeout: float) -> dict[str, Any]:
        raise TimeoutError("timed out")

    monkeypatch.setattr(catalog, "_http_get_json", unreachable)
    assert main(["catalog", "refresh", "--region", "westeurope"]) == 2
    assert "could not read prices" in capsys.readouterr().err


def test_catalog_list_prints_every_current_size_with_its_price(capsys: pytest.CaptureFixture) -> None:
    assert main(["catalog", "list"]) == 0
    captured = capsys.readouterr()
    out = captured.out + captured.err
    assert "Standard_NC4as_T4_v3" in out and "0.5260" in out and "eastus" in out
    assert "skypilot-catalog" in out and "2026-12-06" in out
    assert "Standard_NC6s_v3" not in out
    assert main(["catalog", "list", "--all"]) == 0
    assert "Standard_NC6s_v3" in capsys.readouterr().out


def test_catalog_list_in_a_region_without_prices_says_unknown(capsys: pytest.CaptureFixture) -> None:
    assert main(["catalog", "list", "--region", "westeurope"]) == 0
    captured = capsys.readouterr()
    assert "unknown" in captured.out and "catalog refresh --region westeurope" in captured.out + captured.err
