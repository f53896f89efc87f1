"""Environments through the real SDK: curated names by version and @latest, and a registered image environment."""

from __future__ import annotations

import pytest


def test_a_curated_environment_resolves_by_version_and_latest(ml_client) -> None:  # type: ignore[no-untyped-def]
    by_version = ml_client.environments.get("AzureML-sklearn-1.5", version="3")
    latest = ml_client.environments.get("AzureML-sklearn-1.5", label="latest")
    assert (by_version.name, by_version.version) == ("AzureML-sklearn-1.5", "3")
    assert latest.name == "AzureML-sklearn-1.5"
    assert latest.version == "1"  # the service does not know Azure's curated version numbers


def test_a_registered_environment_round_trips_and_becomes_latest(ml_client) -> None:  # type: ignore[no-untyped-def]
    from azure.ai.ml.entities import Environment

    image = "mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu22.04"
    ml_client.environments.create_or_update(Environment(name="train-local", version="1", image=image))
    ml_client.environments.create_or_update(Environment(name="train-local", version="2", image=image))
    got = ml_client.environments.get("train-local", version="1")
    assert (got.version, got.image) == ("1", image)
    assert ml_client.environments.get("train-local", label="latest").version == "2"


def test_an_unknown_environment_is_not_found(ml_client) -> None:  # type: ignore[no-untyped-def]
    from azure.core.exceptions import ResourceNotFoundError

    with pytest.raises(ResourceNotFoundError):
        ml_client.environments.get("no-such-env", version="1")
