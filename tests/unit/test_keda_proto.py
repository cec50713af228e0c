"""The committed generated KEDA modules match `externalscaler.proto` (regenerated with
grpcio-tools into a temp dir and compared), and the wire names match KEDA's contract."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from scaler.keda_pb import externalscaler_pb2 as pb

ROOT = Path(__file__).resolve().parents[2]
PROTO = "scaler/keda_pb/externalscaler.proto"


@pytest.mark.timeout(30)
def test_committed_code_matches_the_proto(tmp_path):
    subprocess.run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            "-I.",
            f"--python_out={tmp_path}",
            f"--pyi_out={tmp_path}",
            f"--grpc_python_out={tmp_path}",
            PROTO,
        ],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    for name in ("externalscaler_pb2.py", "externalscaler_pb2.pyi", "externalscaler_pb2_grpc.py"):
        generated = (tmp_path / "scaler" / "keda_pb" / name).read_text()
        committed = (ROOT / "scaler" / "keda_pb" / name).read_text()
        assert generated == committed, f"{name} is stale: run `make proto`"


def test_wire_names_and_field_numbers_match_keda():
    service = pb.DESCRIPTOR.services_by_name["ExternalScaler"]
    assert service.full_name == "externalscaler.ExternalScaler"
    assert {m.name for m in service.methods} >= {
        "IsActive",
        "StreamIsActive",
        "GetMetricSpec",
        "GetMetrics",
    }
    fields = {
        msg: {f.name: f.number for f in pb.DESCRIPTOR.message_types_by_name[msg].fields}
        for msg in pb.DESCRIPTOR.message_types_by_name
    }
    assert fields == {
        "ScaledObjectRef": {"name": 1, "namespace": 2, "scalerMetadata": 3},
        "IsActiveResponse": {"result": 1},
        "GetMetricSpecResponse": {"metricSpecs": 1},
        "MetricSpec": {"metricName": 1, "targetSize": 2, "targetSizeFloat": 3},
        "GetMetricsRequest": {"scaledObjectRef": 1, "metricName": 2},
        "GetMetricsResponse": {"metricValues": 1},
        "MetricValue": {"metricName": 1, "metricValue": 2, "metricValueFloat": 3},
    }
