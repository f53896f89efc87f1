"""`azure-dl catalog list|refresh`: the VM sizes azure-dl knows, and their prices from the Azure Retail Prices API."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "catalog",
        help="list the VM sizes (GPUs, quota family, price) or refresh their prices",
        description="The compute catalogue used by submit/sweep for validation, distribution and the cost plan.",
    )
    actions = parser.add_subparsers(dest="catalog_action", metavar="ACTION")

    listing = actions.add_parser("list", help="print the catalogue as a table")
    listing.add_argument("--all", action="store_true", help="include retired sizes (default: current sizes only)")
    listing.add_argument("--region", default="eastus", help="price the sizes in this Azure region (default: eastus)")
    listing.set_defaults(handler=_list)

    refresh = actions.add_parser(
        "refresh",
        help="fetch Linux pay-as-you-go prices from the public Azure Retail Prices API",
        description=(
            "Reads https://prices.azure.com/api/retail/prices (no credential needed) for every current size in one "
            "region and writes the prices, with source and date, into the user catalogue."
        ),
    )
    refresh.add_argument("--region", default="eastus", help="Azure region name, e.g. westeurope (default: eastus)")
    refresh.add_argument(
        "--out",
        type=Path,
        default=None,
        help="catalogue file to write (default: $AZURE_DL_CATALOG or ~/.azure-dl/vm_sizes.toml)",
    )
    refresh.add_argument("--timeout", type=float, default=10.0, help="seconds per HTTP request (default: 10)")
    refresh.set_defaults(handler=_refresh)
    parser.set_defaults(handler=_list, all=False)


def _list(args: argparse.Namespace) -> int:
    from azure_dl.catalog import as_row, list_vm_sizes, packaged_price_source, user_catalog_path
    from azure_dl.console import note, print_table

    rows = [as_row(size, args.region) for size in list_vm_sizes(include_retired=args.all)]
    columns = ["name", "series", "gpus", "bf16", "vcpus", "ram_gb", "family", "price_per_hour", "status"]
    table = [[row[column] for column in columns] for row in rows]
    print_table(f"VM sizes (price: USD per VM-hour in {args.region}, Linux pay-as-you-go)", columns, table)
    note(f"prices: {packaged_price_source()}, unless the user overlay gives newer ones")
    if any(row["price_per_hour"] == "unknown" for row in rows):
        note(
            f"unknown prices: no source lists these sizes in {args.region}; "
            f"run `azure-dl catalog refresh --region {args.region}` where prices.azure.com is reachable"
        )
    note(f"user overlay: {user_catalog_path()}")
    return 0


def _refresh(args: argparse.Namespace) -> int:
    from azure_dl.catalog import refresh_catalog
    from azure_dl.console import note, print_table

    path, prices = refresh_catalog(args.region, out=args.out, timeout=args.timeout)
    rows = [[name, f"{price:.4f}", currency] for name, (price, currency) in sorted(prices.items())]
    print_table(f"Prices in {args.region}", ["name", "price_per_hour", "currency"], rows)
    note(f"wrote {path}")
    return 0
