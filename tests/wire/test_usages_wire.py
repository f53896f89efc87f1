"""Quota and VM sizes through the real SDK: compute.list_usage() from DIR/quota.toml, compute.list_sizes()."""

from __future__ import annotations

from pathlib import Path

import pytest

from azure_dl.catalog import list_vm_sizes, lookup_vm_size


@pytest.fixture()
def ml_client(connection: dict[str, str], module_ml_client):  # type: ignore[no-untyped-def]
    """This module's tests share one client (tests/wire/conftest.py: module_ml_client)."""
    return module_ml_client


def _rows(ml_client) -> dict[tuple[str, str], object]:  # type: ignore[no-untyped-def]
    return {(usage.type, usage.name["value"]): usage for usage in ml_client.compute.list_usage()}


def test_the_default_quota_is_100_vcpus_per_catalogued_family(ml_client) -> None:  # type: ignore[no-untyped-def]
    rows = _rows(ml_client)
    families = {size.family for size in list_vm_sizes()}
    for family in families:
        row = rows[("Microsoft.MachineLearningServices/vmFamily/dedicatedCores/usages", family)]
        assert row.limit == 100
        assert row.unit == "Count"
        assert row.name["localizedValue"].endswith("Family Cluster Dedicated vCPUs")
    regional = rows[("Microsoft.MachineLearningServices/dedicatedCores/usages", "TotalDedicatedCores")]
    assert (regional.limit, regional.name["localizedValue"]) == (
        100 * len(families),
        "Total Cluster Dedicated Regional vCPUs",
    )
    low = rows[("Microsoft.MachineLearningServices/lowPriorityCores/usages", "TotalLowPriorityCores")]
    assert low.limit == 100 * len(families)


def test_the_quota_file_is_read_per_request_and_usage_counts_allocated_nodes(ml_client, quota_file: Path) -> None:  # type: ignore[no-untyped-def]
    from azure.ai.ml.entities import AmlCompute

    quota_file.write_text('[dedicated]\nregional_vcpus = 40\n[dedicated.families]\n"Standard DSv2 Family" = 12\n')
    # Two nodes kept (min 2) of a 4-vCPU size: 8 vCPUs allocated, as Azure counts them.
    ml_client.compute.begin_create_or_update(
        AmlCompute(name="quota-held", size="Standard_DS3_v2", min_instances=2, max_instances=3)
    ).result()
    try:
        rows = _rows(ml_client)
        family = rows[("Microsoft.MachineLearningServices/vmFamily/dedicatedCores/usages", "standardDSv2Family")]
        assert (family.limit, vars(family)["currentValue"]) == (12, 8)
        regional = rows[("Microsoft.MachineLearningServices/dedicatedCores/usages", "TotalDedicatedCores")]
        assert regional.limit == 40

        from azure_dl.backends.azureml.compute import QuotaError, check_quota

        assert check_quota(ml_client, "Standard_DS3_v2", 1).family_line.in_use == 8  # type: ignore[union-attr]
        with pytest.raises(QuotaError, match="allows 12"):
            check_quota(ml_client, "Standard_DS3_v2", 4)
    finally:
        ml_client.compute.begin_delete("quota-held").result()


def test_a_broken_quota_file_is_a_400_naming_it(ml_client, quota_file: Path) -> None:  # type: ignore[no-untyped-def]
    from azure.core.exceptions import HttpResponseError

    quota_file.write_text("[dedicated]\nfamily_vcpus = 'lots'\n")
    with pytest.raises(HttpResponseError) as caught:
        list(ml_client.compute.list_usage())
    assert caught.value.status_code == 400
    assert "family_vcpus" in str(caught.value)


def test_list_sizes_is_the_catalogue(ml_client) -> None:  # type: ignore[no-untyped-def]
    sizes = {size.name: size for size in ml_client.compute.list_sizes()}
    t4 = lookup_vm_size("Standard_NC4as_T4_v3")
    assert t4 is not None
    # The SDK's VmSize copies the REST model's as_dict(): wire names ("vCPUs"), as with Usage's "currentValue".
    assert (vars(sizes[t4.name])["vCPUs"], vars(sizes[t4.name])["family"]) == (t4.vcpus, t4.family)


def test_another_location_is_refused(ml_client) -> None:  # type: ignore[no-untyped-def]
    from azure.core.exceptions import HttpResponseError

    with pytest.raises(HttpResponseError) as caught:
        list(ml_client.compute.list_usage(location="eastus"))
    assert caught.value.status_code == 400
    assert "one location" in str(caught.value)
