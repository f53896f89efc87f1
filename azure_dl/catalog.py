"""The compute catalogue: VM sizes with their GPUs, quota family and list price, from an editable TOML file.

The packaged catalogue (azure_dl/data/vm_sizes.toml) is overlaid, entry by entry, with a user catalogue
(~/.azure-dl/vm_sizes.toml, or the file named by AZURE_DL_CATALOG) that `azure-dl catalog refresh` writes prices
into. Each size carries list prices per region from the dated public price list named in the packaged file's
[price_list] table; `catalog refresh` overrides a region's prices from the live Azure Retail Prices API, and a
`price_per_hour` in an entry (a negotiated rate) overrides every region. A price always comes with where and when
it was read; a region without one is unknown - never invented.
"""

from __future__ import annotations

import difflib
import json
import os
import tomllib
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

from azure_dl.errors import ConfigError, SpecError

PACKAGED_CATALOG = Path(__file__).resolve().parent / "data" / "vm_sizes.toml"
CATALOG_ENV_VAR = "AZURE_DL_CATALOG"
DEFAULT_USER_CATALOG = Path("~/.azure-dl/vm_sizes.toml")
RETAIL_PRICES_URL = "https://prices.azure.com/api/retail/prices"
LIST_HINT = "run `azure-dl catalog list` to see the known sizes"
DEFAULT_REGION = "eastus"
LOW_PRIORITY_NOTE = "estimate: the Azure VM spot rate; Azure ML bills low-priority nodes at its own rate"

_REQUIRED = ("name", "gpu_count", "gpu_memory_gb", "vcpus", "ram_gb", "bf16", "family", "status")
_STATUSES = ("current", "retired")


@dataclass(frozen=True)
class Price:
    """A list price per VM-hour in one region, with where and when it was read."""

    region: str
    per_hour: float
    source: str
    low_priority_estimate: float | None  # the VM spot rate, only an estimate of Azure ML's low-priority rate


@dataclass(frozen=True)
class VMSize:
    """One Azure VM size. `gpu_memory_gb` is the memory of ONE GPU.

    `prices` / `spot_prices` / `price_sources` are (region, value) pairs (tuples keep the frozen size hashable);
    `price_per_hour`, when set, is one rate for every region that overrides them. Use `price_in(region)`.
    """

    name: str
    gpu_model: str | None
    gpu_count: int
    gpu_memory_gb: int
    vcpus: int
    ram_gb: float
    bf16: bool
    family: str  # quota family as compute.list_usage() reports it; compare case-insensitively
    price_per_hour: float | None
    price_source: str
    status: str  # "current" | "retired"
    retired_on: str | None
    successors: tuple[str, ...]
    series: str = ""
    spec_source: str = ""
    prices: tuple[tuple[str, float], ...] = ()
    spot_prices: tuple[tuple[str, float], ...] = ()
    price_sources: tuple[tuple[str, str], ...] = ()

    def price_in(self, region: str = DEFAULT_REGION) -> Price | None:
        """The list price in `region` (case-insensitive), or None when no source gives one."""
        key = region.strip().lower()
        spot = dict(self.spot_prices).get(key)
        if self.price_per_hour is not None:
            return Price(key, self.price_per_hour, self.price_source, spot)
        price = dict(self.prices).get(key)
        if price is None:
            return None
        return Price(key, price, dict(self.price_sources).get(key, self.price_source), spot)

    @property
    def priced_regions(self) -> tuple[str, ...]:
        return tuple(region for region, _ in self.prices)

    @property
    def is_gpu(self) -> bool:
        return self.gpu_count > 0

    @property
    def gpu_summary(self) -> str:
        """E.g. '1 x NVIDIA T4 (16 GB)' or 'CPU only'."""
        if not self.is_gpu:
            return "CPU only"
        return f"{self.gpu_count} x {self.gpu_model or 'GPU'} ({self.gpu_memory_gb} GB)"

    @property
    def compute_name(self) -> str:
        """A default AmlCompute cluster name for this size (<= 16 characters, starts with a letter).

        One cluster per VM size, so that choosing another --vm-size never resizes an existing cluster.
        """
        short = self.name.removeprefix("Standard_").lower().replace("_", "-")
        return short[:16].rstrip("-")


def user_catalog_path() -> Path:
    """The user catalogue overlay: $AZURE_DL_CATALOG, else ~/.azure-dl/vm_sizes.toml."""
    override = os.environ.get(CATALOG_ENV_VAR)
    return Path(override).expanduser() if override else DEFAULT_USER_CATALOG.expanduser()


def _load_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(
            f"the VM size catalogue {path} is not valid TOML: {exc}",
            hint="fix the file, or delete it to go back to the packaged catalogue",
        ) from exc


def _read_toml(path: Path) -> list[dict[str, Any]]:
    sizes = _load_toml(path).get("size", [])
    if not isinstance(sizes, list) or not all(isinstance(entry, dict) for entry in sizes):
        raise ConfigError(f"the VM size catalogue {path} must hold [[size]] tables")
    return sizes


def _to_vm_size(entry: dict[str, Any], path: Path) -> VMSize:
    missing = [key for key in _REQUIRED if key not in entry]
    name = entry.get("name", "<no name>")
    if missing:
        raise ConfigError(
            f"catalogue entry {name!r} ({path}) lacks {', '.join(missing)}",
            hint="every [[size]] needs " + ", ".join(_REQUIRED),
        )
    if entry["status"] not in _STATUSES:
        raise ConfigError(f"catalogue entry {name!r} has status {entry['status']!r}; use 'current' or 'retired'")
    price = entry.get("price_per_hour")
    if price is not None and (not isinstance(price, int | float) or price <= 0):
        # A zero price would make every cost bound look free: unknown must stay unknown.
        raise ConfigError(f"catalogue entry {name!r} has price_per_hour {price!r}; give a positive number or omit it")
    prices = _region_prices(entry, "prices", path)
    spot_prices = _region_prices(entry, "spot_prices", path)
    sources = entry.get("price_sources") or {}
    if not isinstance(sources, dict):
        raise ConfigError(f'catalogue entry {name!r} ({path}): price_sources must be a table of region = "text"')
    return VMSize(
        name=str(entry["name"]),
        gpu_model=entry.get("gpu_model"),
        gpu_count=int(entry["gpu_count"]),
        gpu_memory_gb=int(entry["gpu_memory_gb"]),
        vcpus=int(entry["vcpus"]),
        ram_gb=float(entry["ram_gb"]),
        bf16=bool(entry["bf16"]),
        family=str(entry["family"]),
        price_per_hour=float(price) if price is not None else None,
        price_source=str(entry.get("price_source", "unknown")),
        status=str(entry["status"]),
        retired_on=entry.get("retired_on"),
        successors=tuple(entry.get("successors", ())),
        series=str(entry.get("series", "")),
        spec_source=str(entry.get("spec_source", "")),
        prices=tuple(sorted(prices.items())),
        spot_prices=tuple(sorted(spot_prices.items())),
        price_sources=tuple(sorted((str(k).lower(), str(v)) for k, v in sources.items())),
    )


def _region_prices(entry: dict[str, Any], key: str, path: Path) -> dict[str, float]:
    table = entry.get(key) or {}
    name = entry.get("name", "<no name>")
    if not isinstance(table, dict):
        raise ConfigError(f"catalogue entry {name!r} ({path}): {key} must be a table of region = price")
    for region, value in table.items():
        if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
            raise ConfigError(
                f"catalogue entry {name!r} ({path}) has {key}.{region} = {value!r}",
                hint="give a positive USD price per VM-hour, or leave the region out (unknown)",
            )
    return {str(region).lower(): float(value) for region, value in table.items()}


_REGION_TABLES = ("prices", "spot_prices", "price_sources")


def _merge_entry(base: dict[str, Any], overlay: dict[str, Any]) -> dict[str, Any]:
    """Overlay fields replace the packaged ones, except the per-region tables, which merge region by region."""
    merged = {**base, **overlay}
    for key in _REGION_TABLES:
        if isinstance(base.get(key), dict) and isinstance(overlay.get(key), dict):
            merged[key] = {**base[key], **overlay[key]}
    return merged


def load_catalog(user_path: Path | None = None) -> dict[str, VMSize]:
    """All sizes keyed by lower-case name: the packaged catalogue overlaid with the user one (if it exists)."""
    merged: dict[str, dict[str, Any]] = {}
    packaged_source = packaged_price_source()
    for entry in _read_toml(PACKAGED_CATALOG):
        entry = dict(entry)
        # Every packaged region price is sourced from the one dated price list.
        entry["price_sources"] = {region: packaged_source for region in entry.get("prices", {})}
        entry.setdefault("price_source", packaged_source)
        merged[str(entry["name"]).lower()] = entry
    overlay = user_path if user_path is not None else user_catalog_path()
    if overlay.is_file():
        for entry in _read_toml(overlay):
            if "name" not in entry:
                raise ConfigError(f"an entry in {overlay} has no name", hint="every [[size]] needs a name")
            key = str(entry["name"]).lower()
            merged[key] = _merge_entry(merged.get(key, {}), entry)
    return {key: _to_vm_size(entry, overlay) for key, entry in merged.items()}


def packaged_price_source() -> str:
    """Where the packaged prices come from and when they were read, e.g. '<list> (retrieved 2026-12-06)'."""
    price_list = _load_toml(PACKAGED_CATALOG).get("price_list", {})
    source = price_list.get("source", "unknown price list")
    retrieved = price_list.get("retrieved", "an unknown date")
    return f"{source}, retrieved {retrieved}"


def list_vm_sizes(*, include_retired: bool = True, user_path: Path | None = None) -> list[VMSize]:
    """Every known size in catalogue order, current ones first."""
    sizes = [s for s in load_catalog(user_path).values() if include_retired or s.status == "current"]
    return sorted(sizes, key=lambda s: s.status != "current")


def lookup_vm_size(name: str, *, user_path: Path | None = None) -> VMSize | None:
    """The size called `name` (case-insensitive, 'Standard_' optional), retired or not; None if unknown."""
    catalog = load_catalog(user_path)
    key = name.strip().lower()
    return catalog.get(key) or catalog.get(f"standard_{key}")


def _format_date(iso: str | None) -> str:
    if not iso:
        return "an earlier date"
    parsed = date.fromisoformat(iso)
    return f"{parsed.day} {parsed.strftime('%b %Y')}"


def get_vm_size(name: str, *, user_path: Path | None = None) -> VMSize:
    """The current size called `name`; unknown or retired sizes raise a SpecError that says what to use instead."""
    found = lookup_vm_size(name, user_path=user_path)
    if found is None:
        catalog = load_catalog(user_path)
        names = [size.name for size in catalog.values() if size.status == "current"]
        close = difflib.get_close_matches(name, names, n=3, cutoff=0.5) or difflib.get_close_matches(
            f"Standard_{name}", names, n=3, cutoff=0.5
        )
        suggestion = f"did you mean {' or '.join(close)}? " if close else ""
        raise SpecError(
            f"unknown VM size {name!r}",
            hint=f"{suggestion}{LIST_HINT}; add a [[size]] to {user_catalog_path()} for a size not listed",
        )
    if found.status == "retired":
        raise SpecError(
            f"VM size {found.name} ({found.series or found.gpu_model}) was retired on "
            f"{_format_date(found.retired_on)} and can no longer be provisioned",
            hint=_successor_hint(found, load_catalog(user_path)),
        )
    return found


def _successor_hint(retired: VMSize, catalog: dict[str, VMSize]) -> str:
    described = []
    for name in retired.successors:
        successor = catalog.get(name.lower())
        described.append(f"{name} ({successor.series}, {successor.gpu_summary})" if successor else name)
    if not described:
        return f"choose a current size: {LIST_HINT}"
    cost, speed = described[0], described[1:]
    text = f"use {cost} for cost"
    if speed:
        text += f", or {' / '.join(speed)} for speed"
    return f"{text} (--vm-size NAME)"


# ----------------------------------------------------------------------------------------------------------------
# Prices from the public Azure Retail Prices API (no credential needed).

HttpGetJson = Callable[[str, float], dict[str, Any]]


def _http_get_json(url: str, timeout: float) -> dict[str, Any]:
    request = urllib.request.Request(url, headers={"Accept": "application/json", "User-Agent": "azure-dl"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return dict(json.loads(response.read().decode("utf-8")))


def retail_prices_url(region: str, sku_names: Iterable[str]) -> str:
    """The first-page URL: Linux-or-Windows pay-as-you-go VM meters of these sizes in one region."""
    skus = " or ".join(f"armSkuName eq '{name}'" for name in sku_names)
    odata = (
        f"serviceName eq 'Virtual Machines' and priceType eq 'Consumption' and armRegionName eq '{region}' and ({skus})"
    )
    return f"{RETAIL_PRICES_URL}?$filter={urllib.parse.quote(odata)}"


def _is_linux_on_demand(item: dict[str, Any]) -> bool:
    names = f"{item.get('skuName', '')} {item.get('meterName', '')}".lower()
    return (
        item.get("type") == "Consumption"
        and item.get("unitOfMeasure") == "1 Hour"
        and not str(item.get("productName", "")).endswith("Windows")
        and "spot" not in names
        and "low priority" not in names
        and float(item.get("retailPrice", 0)) > 0
    )


def fetch_prices(
    region: str,
    sku_names: Iterable[str],
    *,
    http_get: HttpGetJson | None = None,
    timeout: float = 10.0,
    max_pages: int = 50,
) -> dict[str, tuple[float, str]]:
    """Linux pay-as-you-go price per hour of each size in `region` -> {name: (price, currency)}.

    Follows NextPageLink. Sizes the API does not price in that region are left out. Network failures raise a
    ConfigError promptly (one timeout), so that `catalog refresh` never hangs.
    """
    get = http_get or _http_get_json
    wanted = {name.lower(): name for name in sku_names}
    url: str | None = retail_prices_url(region, wanted.values())
    found: dict[str, tuple[float, str, str]] = {}
    pages = 0
    while url and pages < max_pages:
        try:
            page = get(url, timeout)
        except (urllib.error.URLError, TimeoutError, OSError, ValueError) as exc:
            raise ConfigError(
                f"could not read prices from {RETAIL_PRICES_URL}: {exc}",
                hint="check the network (a proxy or firewall may block prices.azure.com); the catalogue is unchanged",
            ) from exc
        pages += 1
        for item in page.get("Items", []):
            key = str(item.get("armSkuName", "")).lower()
            if key not in wanted or not _is_linux_on_demand(item):
                continue
            start = str(item.get("effectiveStartDate", ""))
            # Several meters can match (older and newer effective dates): keep the most recent one.
            if key not in found or start > found[key][2]:
                found[key] = (float(item["retailPrice"]), str(item.get("currencyCode", "USD")), start)
        url = page.get("NextPageLink") or None
    return {wanted[key]: (price, currency) for key, (price, currency, _) in found.items()}


def refresh_catalog(
    region: str,
    *,
    out: Path | None = None,
    http_get: HttpGetJson | None = None,
    today: date | None = None,
    timeout: float = 10.0,
) -> tuple[Path, dict[str, tuple[float, str]]]:
    """Fetch current prices for every current size and write them into the user catalogue overlay.

    Entries already in the overlay keep their other fields. Returns the file written and the prices found.
    """
    target = out if out is not None else user_catalog_path()
    current = [size.name for size in list_vm_sizes(include_retired=False, user_path=target)]
    prices = fetch_prices(region, current, http_get=http_get, timeout=timeout)
    if not prices:
        raise ConfigError(
            f"the Azure Retail Prices API returned no Linux pay-as-you-go price for these sizes in region {region!r}",
            hint="check the region name (e.g. eastus, westeurope); the catalogue is unchanged",
        )
    stamp = (today or datetime.now().date()).isoformat()
    existing = {str(e["name"]).lower(): e for e in _read_toml(target)} if target.is_file() else {}
    key = region.strip().lower()
    for name, (price, currency) in prices.items():
        entry = existing.setdefault(name.lower(), {"name": name})
        entry.setdefault("prices", {})[key] = price
        entry.setdefault("price_sources", {})[key] = (
            f"Azure Retail Prices API ({RETAIL_PRICES_URL}), Linux pay-as-you-go, {currency}, retrieved {stamp}"
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    header = (
        "# azure-dl user catalogue: overlays the packaged VM size catalogue entry by entry (see\n"
        f"# azure_dl/data/vm_sizes.toml). Prices written by `azure-dl catalog refresh --region {region}` on {stamp}.\n"
    )
    target.write_text(header + "".join(_toml_table(entry) for entry in existing.values()), encoding="utf-8")
    return target, prices


def _toml_value(value: Any) -> str:
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + " }"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return json.dumps(str(value))  # a JSON string is a valid TOML basic string


def _toml_table(entry: dict[str, Any]) -> str:
    lines = ["\n[[size]]"] + [f"{key} = {_toml_value(value)}" for key, value in entry.items() if value is not None]
    return "\n".join(lines) + "\n"


def priced_regions(user_path: Path | None = None) -> tuple[str, ...]:
    """Every region some catalogued size has a list price in, sorted."""
    return tuple(sorted({region for size in load_catalog(user_path).values() for region in size.priced_regions}))


def check_region(region: str, *, user_path: Path | None = None) -> str:
    """`region` normalised (lower case, no spaces), or a SpecError naming the regions the catalogue prices.

    A region no size is priced in would give every plan an unknown cost: that is almost always a typo.
    """
    key = region.strip().lower().replace(" ", "")
    known = priced_regions(user_path)
    if key in known:
        return key
    close = difflib.get_close_matches(key, known, n=3, cutoff=0.6)
    raise SpecError(
        f"no list prices for region {region!r}" + (f"; did you mean {', '.join(close)}?" if close else ""),
        hint=f"priced regions: {', '.join(known)}; `azure-dl catalog refresh --region {key}` fetches that "
        "region's prices where prices.azure.com is reachable",
    )


def describe_price(price: Price, unit: str = "VM-hour") -> str:
    """E.g. '0.5260 USD per VM-hour in eastus (skypilot-catalog ..., retrieved 2026-12-06)'."""
    return f"{price.per_hour:.4f} USD per {unit} in {price.region} ({price.source})"


def as_row(size: VMSize, region: str = DEFAULT_REGION) -> dict[str, str]:
    """The size as display strings (for `catalog list`), priced in `region`."""
    quote = size.price_in(region)
    price = f"{quote.per_hour:.4f}" if quote is not None else "unknown"
    status = size.status if size.status == "current" else f"retired {size.retired_on or ''}".strip()
    return {
        "name": size.name,
        "series": size.series,
        "gpus": size.gpu_summary,
        "bf16": "yes" if size.bf16 else "no",
        "vcpus": str(size.vcpus),
        "ram_gb": f"{size.ram_gb:g}",
        "family": size.family,
        "price_per_hour": price,
        "status": status,
    }
