"""DIR/quota.toml of the local workspace service: spellings, defaults and the errors that name the bad value."""

from __future__ import annotations

from pathlib import Path

import pytest

from azure_dl.workspace_service.context import ServiceContext
from azure_dl.workspace_service.http import ApiError
from azure_dl.workspace_service.store import Store
from azure_dl.workspace_service.usages import family_key, read_limits

FAMILIES = [family_key("standardNCASv3_T4Family"), family_key("standardDSv2Family")]


def _context(tmp_path: Path, quota: str | None) -> ServiceContext:
    if quota is not None:
        (tmp_path / "quota.toml").write_text(quota)
    return ServiceContext(
        base_url="https://127.0.0.1:1",
        subscription_id="s",
        resource_group="g",
        workspace="w",
        data_dir=tmp_path,
        store=Store(tmp_path / "state"),
        identity_secret="x",
        signing_key=b"k",
    )


@pytest.mark.parametrize(
    "spelling", ["standardNCASv3_T4Family", "StandardNCASv3_T4Family", "Standard NCASv3_T4 Family", "NCASv3_T4"]
)
def test_a_family_may_be_named_in_any_of_azures_spellings(spelling: str) -> None:
    assert family_key(spelling) == "ncasv3t4"


def test_without_a_file_each_family_has_100_dedicated_vcpus_and_no_separate_low_priority_limit(tmp_path: Path) -> None:
    limits = read_limits(_context(tmp_path, None), FAMILIES)
    assert limits["dedicated"].families == {"ncasv3t4": 100, "dsv2": 100}
    assert limits["dedicated"].regional == 200
    assert limits["low_priority"].families == {"ncasv3t4": -1, "dsv2": -1}
    assert limits["low_priority"].regional == 200


def test_named_families_defaults_and_regional_totals_are_read(tmp_path: Path) -> None:
    quota = (
        "[dedicated]\nfamily_vcpus = 8\n[dedicated.families]\n'Standard NCASv3_T4 Family' = 0\n"
        "[low_priority]\nregional_vcpus = 24\n"
    )
    limits = read_limits(_context(tmp_path, quota), FAMILIES)
    assert limits["dedicated"].families == {"ncasv3t4": 0, "dsv2": 8}
    assert limits["dedicated"].regional == 8
    assert limits["low_priority"].regional == 24


@pytest.mark.parametrize(
    ("quota", "named"),
    [
        ("[dedicated\n", "is not valid TOML"),
        ("[spot]\n", "unknown tables ['spot']"),
        ("[dedicated]\nfamily_vcpu = 3\n", "got ['family_vcpu']"),
        ("[dedicated]\nregional_vcpus = -5\n", "regional_vcpus must be a whole number"),
        ("[dedicated.families]\nstandardDSv2Family = 1.5\n", "standardDSv2Family must be a whole number"),
    ],
)
def test_a_bad_quota_file_is_a_400_naming_what_is_wrong(tmp_path: Path, quota: str, named: str) -> None:
    with pytest.raises(ApiError) as caught:
        read_limits(_context(tmp_path, quota), FAMILIES)
    assert caught.value.status == 400
    assert named in caught.value.message
