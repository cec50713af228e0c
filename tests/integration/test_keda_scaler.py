"""KEDA external scaler over a real gRPC channel on 127.0.0.1: GetMetricSpec/GetMetrics for
desired replicas and carbon intensity, IsActive (scale to zero), StreamIsActive pushing a
change, errors as gRPC statuses (bad metadata, unknown workload, no snapshot), and the
optional StreamMetricSpec answering UNIMPLEMENTED."""

from __future__ import annotations

import threading

import grpc
import pytest

from scaler.keda import KedaExternalScaler, KedaScalerServer
from scaler.keda_pb import externalscaler_pb2 as pb
from scaler.keda_pb import externalscaler_pb2_grpc as pb_grpc
from scaler.snapshot import SnapshotHolder
from tests.snapshots import sample_holder, sample_snapshot

pytestmark = pytest.mark.integration


@pytest.fixture
def holder():
    return sample_holder()


@pytest.fixture
def stub(holder):
    stop = threading.Event()
    scaler = KedaExternalScaler(holder, stream_poll_interval_seconds=0.02, stop=stop)
    server = KedaScalerServer(scaler, address="127.0.0.1:0", stop=stop)
    with server:
        channel = grpc.insecure_channel(f"127.0.0.1:{server.port}")
        try:
            yield pb_grpc.ExternalScalerStub(channel)
        finally:
            channel.close()


def ref(name="web", namespace="shop", **metadata):
    return pb.ScaledObjectRef(name=name, namespace=namespace, scalerMetadata=metadata)


def test_metric_spec_targets_one_replica(stub):
    spec = stub.GetMetricSpec(ref(), timeout=5).metricSpecs
    assert [(s.metricName, s.targetSize, s.targetSizeFloat) for s in spec] == [
        ("gridshift-desired-replicas-web", 1, 1.0)
    ]


def test_get_metrics_returns_desired_replicas(stub):
    response = stub.GetMetrics(
        pb.GetMetricsRequest(scaledObjectRef=ref(), metricName="s0-gridshift-desired-replicas-web"),
        timeout=5,
    )
    (value,) = response.metricValues
    assert (value.metricName, value.metricValue, value.metricValueFloat) == (
        "s0-gridshift-desired-replicas-web",
        4,
        4.0,
    )


def test_workload_metadata_overrides_the_scaledobject_name(stub):
    response = stub.GetMetrics(
        pb.GetMetricsRequest(
            scaledObjectRef=ref(name="train-so", namespace="ml", workload="train")
        ),
        timeout=5,
    )
    assert response.metricValues[0].metricValueFloat == 12.0


def test_carbon_intensity_metric(stub):
    query = ref(metric="carbonIntensity", region="eu-west-1", targetIntensity="250")
    spec = stub.GetMetricSpec(query, timeout=5).metricSpecs[0]
    assert (spec.targetSize, spec.targetSizeFloat) == (250, 250.0)
    value = stub.GetMetrics(pb.GetMetricsRequest(scaledObjectRef=query), timeout=5).metricValues[0]
    assert (value.metricValue, value.metricValueFloat) == (313, 312.5)
    assert (
        stub.IsActive(
            ref(metric="carbonIntensity", region="eu-west-1", activationIntensity="400"), timeout=5
        ).result
        is False
    )


def test_is_active_follows_desired_replicas(stub):
    assert stub.IsActive(ref("web"), timeout=5).result is True
    assert stub.IsActive(ref("worker"), timeout=5).result is False


@pytest.mark.parametrize(
    ("query", "code", "text"),
    [
        pytest.param(ref("nope"), grpc.StatusCode.NOT_FOUND, "shop/nope", id="unknown workload"),
        pytest.param(
            ref(metric="cpu"),
            grpc.StatusCode.INVALID_ARGUMENT,
            "scalerMetadata.metric",
            id="unknown metric",
        ),
        pytest.param(
            ref(metric="carbonIntensity"),
            grpc.StatusCode.INVALID_ARGUMENT,
            "scalerMetadata.region",
            id="region missing",
        ),
        pytest.param(
            ref(metric="carbonIntensity", region="mars"),
            grpc.StatusCode.NOT_FOUND,
            "mars",
            id="unknown region",
        ),
        pytest.param(
            ref(metric="carbonIntensity", region="ap-south-1"),
            grpc.StatusCode.UNAVAILABLE,
            "ap-south-1",
            id="region without data",
        ),
        pytest.param(
            ref(targetIntensity="abc"),
            grpc.StatusCode.INVALID_ARGUMENT,
            "scalerMetadata.targetIntensity",
            id="not a number",
        ),
        pytest.param(
            ref(targetIntensity="-1"),
            grpc.StatusCode.INVALID_ARGUMENT,
            "scalerMetadata.targetIntensity",
            id="negative",
        ),
    ],
)
def test_errors_are_grpc_statuses_naming_the_problem(stub, query, code, text):
    with pytest.raises(grpc.RpcError) as info:
        stub.GetMetrics(pb.GetMetricsRequest(scaledObjectRef=query), timeout=5)
    assert info.value.code() == code
    assert text in info.value.details()


def test_no_snapshot_is_unavailable():
    server = KedaScalerServer(KedaExternalScaler(SnapshotHolder()), address="127.0.0.1:0")
    with (
        server,
        grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel,
        pytest.raises(grpc.RpcError) as info,
    ):
        pb_grpc.ExternalScalerStub(channel).IsActive(ref(), timeout=5)
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE


def test_stream_is_active_sends_now_and_on_change(stub, holder):
    stream = stub.StreamIsActive(ref("web"), timeout=5)
    assert next(stream).result is True
    holder.publish(sample_snapshot(web_replicas=0))
    assert next(stream).result is False
    holder.publish(sample_snapshot(web_replicas=3))
    assert next(stream).result is True
    stream.cancel()


def test_stream_metric_spec_is_unimplemented_so_keda_polls(stub):
    with pytest.raises(grpc.RpcError) as info:
        next(stub.StreamMetricSpec(ref(), timeout=5))
    assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED


def test_stale_snapshot_is_unavailable():
    from datetime import timedelta

    from forecasts.time import FrozenClock
    from tests.snapshots import TAKEN_AT

    clock = FrozenClock(TAKEN_AT + timedelta(seconds=601))
    scaler = KedaExternalScaler(sample_holder(), clock=clock, max_snapshot_age_seconds=600)
    server = KedaScalerServer(scaler, address="127.0.0.1:0")
    with server, grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        stub = pb_grpc.ExternalScalerStub(channel)
        with pytest.raises(grpc.RpcError) as info:
            stub.GetMetrics(pb.GetMetricsRequest(scaledObjectRef=ref()), timeout=5)
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "601s old" in info.value.details()
        clock.set(TAKEN_AT + timedelta(seconds=599))
        assert stub.IsActive(ref(), timeout=5).result is True


@pytest.mark.parametrize("value", ["1e308", "inf", "nan", "100001"])
def test_absurd_intensity_is_invalid_argument_for_every_call(stub, value):
    query = ref(metric="carbonIntensity", region="eu-west-1", targetIntensity=value)
    calls = [
        lambda: stub.GetMetricSpec(query, timeout=5),
        lambda: stub.GetMetrics(pb.GetMetricsRequest(scaledObjectRef=query), timeout=5),
        lambda: stub.IsActive(query, timeout=5),
    ]
    for call in calls:
        with pytest.raises(grpc.RpcError) as info:
            call()
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "scalerMetadata.targetIntensity" in info.value.details()


def test_open_streams_never_starve_unary_calls_and_past_the_cap_are_refused(holder):
    import time

    stop = threading.Event()
    scaler = KedaExternalScaler(
        holder, stream_poll_interval_seconds=0.05, stop=stop, max_streams=12
    )
    server = KedaScalerServer(scaler, address="127.0.0.1:0", stop=stop, max_workers=2)
    with server, grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        stub = pb_grpc.ExternalScalerStub(channel)
        streams = [stub.StreamIsActive(ref("web"), timeout=30) for _ in range(12)]
        try:
            assert all(next(s).result is True for s in streams)  # all 12 open and served
            started = time.monotonic()
            for _ in range(10):
                assert stub.IsActive(ref(), timeout=2).result is True
                stub.GetMetrics(pb.GetMetricsRequest(scaledObjectRef=ref()), timeout=2)
            assert time.monotonic() - started < 2.0
            with pytest.raises(grpc.RpcError) as info:
                next(stub.StreamIsActive(ref("web"), timeout=5))
            assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        finally:
            for s in streams:
                s.cancel()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:  # a cancelled stream frees its slot
            try:
                assert next(stub.StreamIsActive(ref("web"), timeout=5)).result is True
                break
            except grpc.RpcError:
                time.sleep(0.1)
        else:
            pytest.fail("stream slots were not released after cancel")
