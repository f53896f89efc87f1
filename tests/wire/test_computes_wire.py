"""AmlCompute clusters through the real SDK: create (long-running), get, list (paged), update, delete, refusals."""

from __future__ import annotations

import pytest

from azure_dl.workspace_service import computes
from azure_dl.workspace_service.service import WorkspaceService


@pytest.fixture()
def ml_client(connection: dict[str, str], module_ml_client):  # type: ignore[no-untyped-def]
    """This module's tests share one client (tests/wire/conftest.py: module_ml_client)."""
    return module_ml_client


def _cluster(name: str, size: str = "Standard_DS3_v2", max_nodes: int = 2, **extra):  # type: ignore[no-untyped-def]
    from azure.ai.ml.entities import AmlCompute

    return AmlCompute(name=name, size=size, min_instances=0, max_instances=max_nodes, **extra)


def test_a_cluster_is_created_read_listed_and_deleted(ml_client, workspace_service: WorkspaceService) -> None:  # type: ignore[no-untyped-def]
    from azure.core.exceptions import ResourceNotFoundError

    created = ml_client.compute.begin_create_or_update(
        _cluster("wire-cpu", idle_time_before_scale_down=100, tier="low_priority")
    ).result()
    assert (created.name, created.size, created.max_instances, created.tier) == (
        "wire-cpu",
        "Standard_DS3_v2",
        2,
        "low_priority",
    )
    assert created.provisioning_state == "Succeeded"
    assert created.idle_time_before_scale_down == 100

    fetched = ml_client.compute.get("wire-cpu")
    assert (fetched.type, fetched.location, fetched.min_instances) == ("amlcompute", "local", 0)
    assert "wire-cpu" in [compute.name for compute in ml_client.compute.list()]

    ml_client.compute.begin_delete("wire-cpu").result()
    with pytest.raises(ResourceNotFoundError):
        ml_client.compute.get("wire-cpu")
    assert workspace_service.context is not None
    assert workspace_service.context.store.get(computes.KIND, "wire-cpu") is None


def test_the_list_is_paged_and_the_sdk_follows_next_link(ml_client, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(computes, "PAGE_SIZE", 1)
    for name in ("page-a", "page-b", "page-c"):
        ml_client.compute.begin_create_or_update(_cluster(name)).result()
    try:
        assert {"page-a", "page-b", "page-c"} <= {compute.name for compute in ml_client.compute.list()}
    finally:
        for name in ("page-a", "page-b", "page-c"):
            ml_client.compute.begin_delete(name).result()


def test_begin_update_replaces_the_scale_settings(ml_client) -> None:  # type: ignore[no-untyped-def]
    ml_client.compute.begin_create_or_update(_cluster("wire-update")).result()
    try:
        cluster = ml_client.compute.get("wire-update")
        cluster.max_instances = 5
        updated = ml_client.compute.begin_update(cluster).result()
        assert updated.max_instances == 5
        assert ml_client.compute.get("wire-update").max_instances == 5
    finally:
        ml_client.compute.begin_delete("wire-update").result()


@pytest.mark.parametrize(
    ("cluster_args", "expected"),
    [
        ({"size": "Standard_Unknown_v9"}, "Standard_Unknown_v9"),
        ({"max_nodes": 0}, "maxNodeCount"),
        ({"name": "x"}, "compute name 'x' is not valid"),
        ({"size": "Standard_NC6s_v3"}, "Standard_NC6s_v3 was retired on 2025-09-30"),
        ({"name": "a-name-that-is-far-too-long"}, "3-24 letters"),
    ],
)
def test_bad_values_are_refused_with_a_400_naming_them(ml_client, cluster_args, expected) -> None:  # type: ignore[no-untyped-def]
    from azure.core.exceptions import HttpResponseError

    with pytest.raises(HttpResponseError) as caught:
        args = dict(cluster_args)
        ml_client.compute.begin_create_or_update(_cluster(args.pop("name", "wire-bad"), **args)).result()
    assert caught.value.status_code == 400
    assert expected in str(caught.value)


def test_min_above_max_is_refused(ml_client) -> None:  # type: ignore[no-untyped-def]
    from azure.ai.ml.entities import AmlCompute
    from azure.core.exceptions import HttpResponseError

    cluster = AmlCompute(name="wire-minmax", size="Standard_DS3_v2", min_instances=3, max_instances=2)
    with pytest.raises(HttpResponseError) as caught:
        ml_client.compute.begin_create_or_update(cluster).result()
    assert caught.value.status_code == 400
    assert "minNodeCount (3) is greater than maxNodeCount (2)" in str(caught.value)


def test_the_vm_size_of_an_existing_cluster_cannot_change(ml_client) -> None:  # type: ignore[no-untyped-def]
    from azure.core.exceptions import HttpResponseError

    ml_client.compute.begin_create_or_update(_cluster("wire-fixed")).result()
    try:
        with pytest.raises(HttpResponseError) as caught:
            ml_client.compute.begin_create_or_update(_cluster("wire-fixed", size="Standard_D4s_v3")).result()
        assert caught.value.status_code == 400
        assert "VM size of an existing cluster cannot be changed" in str(caught.value)
    finally:
        ml_client.compute.begin_delete("wire-fixed").result()


def test_compute_instances_and_kubernetes_are_refused_by_name(ml_client) -> None:  # type: ignore[no-untyped-def]
    from azure.ai.ml.entities import ComputeInstance, KubernetesCompute
    from azure.core.exceptions import HttpResponseError

    with pytest.raises(HttpResponseError) as caught:
        ml_client.compute.begin_create_or_update(ComputeInstance(name="wire-ci", size="Standard_DS3_v2")).result()
    assert caught.value.status_code == 400
    assert "ComputeInstance" in str(caught.value)

    kubernetes = KubernetesCompute(name="wire-k8s", resource_id="/subscriptions/x/resourceGroups/y/providers/z/k")
    with pytest.raises(HttpResponseError) as caught:
        ml_client.compute.begin_create_or_update(kubernetes).result()
    assert caught.value.status_code == 400  # attachable clusters: tests/wire/test_kubernetes_wire.py
    assert "/providers/z/k' is not an AKS cluster" in str(caught.value)


def test_start_stop_and_restart_name_themselves_in_a_400(ml_client) -> None:  # type: ignore[no-untyped-def]
    from azure.core.exceptions import HttpResponseError

    ml_client.compute.begin_create_or_update(_cluster("wire-actions")).result()
    try:
        for verb in ("start", "stop", "restart"):
            with pytest.raises(HttpResponseError) as caught:
                getattr(ml_client.compute, f"begin_{verb}")("wire-actions").result()
            assert caught.value.status_code == 400
            assert f"{verb} is for compute instances" in str(caught.value)
    finally:
        ml_client.compute.begin_delete("wire-actions").result()


def test_a_missing_cluster_is_not_found_on_get_and_delete(ml_client) -> None:  # type: ignore[no-untyped-def]
    from azure.core.exceptions import ResourceNotFoundError

    with pytest.raises(ResourceNotFoundError):
        ml_client.compute.get("no-such-cluster")
    with pytest.raises(ResourceNotFoundError):
        ml_client.compute.begin_delete("no-such-cluster").result()


def test_an_update_of_anything_but_the_scale_settings_is_refused(ml_client) -> None:  # type: ignore[no-untyped-def]
    from azure.core.exceptions import HttpResponseError

    ml_client.compute.begin_create_or_update(_cluster("wire-patch")).result()
    try:
        body = {"properties": {"properties": {"vmSize": "Standard_D4s_v3"}}}
        with pytest.raises(HttpResponseError) as caught:
            ml_client.compute._operation.begin_update("azure-dl-local", "local", "wire-patch", body).result()
        assert caught.value.status_code == 400
        assert "changes properties.properties.scaleSettings only, got ['vmSize']" in str(caught.value)
    finally:
        ml_client.compute.begin_delete("wire-patch").result()
