"""Fuzzing the External Metrics API's request handling (hypothesis).

Aspects: any method, path (random, and mutations of the real routes), query string
(selectors, garbage, percent-escapes) and Accept header gets a well-formed answer: a status
below 500 and, for JSON, a body that parses. Default profile: 60 cases per test;
`HYPOTHESIS_PROFILE=fuzz` (`make fuzz`): 10,000.
"""

from __future__ import annotations

from datetime import timedelta

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from forecasts.time import FrozenClock
from scaler.metrics_api import ApiRequest, ExternalMetricsApi
from tests.fuzz import timeout_s
from tests.snapshots import TAKEN_AT, sample_holder

# 60 cases per test in the unit run: more than the 2 s unit budget on a shared machine
pytestmark = pytest.mark.timeout(timeout_s(60))

API = ExternalMetricsApi(
    sample_holder(),
    clock=FrozenClock(TAKEN_AT + timedelta(seconds=30)),
    max_snapshot_age_seconds=600,
)
ROOT = "/apis/external.metrics.k8s.io/v1beta1"
SEGMENTS = st.sampled_from(
    [
        "apis",
        "external.metrics.k8s.io",
        "v1beta1",
        "namespaces",
        "shop",
        "default",
        "gridshift_desired_replicas",
        "gridshift_mode",
        "",
        "..",
        "%2F",
        "*",
        "\u00e9",
        "a" * 300,
    ]
) | st.text(max_size=20)
PATHS = st.one_of(
    st.text(max_size=200).map(lambda t: "/" + t),
    st.lists(SEGMENTS, max_size=8).map(lambda parts: ROOT + "/" + "/".join(parts)),
    st.lists(SEGMENTS, max_size=8).map(lambda parts: "/" + "/".join(parts)),
)
QUERIES = st.one_of(
    st.text(max_size=200),
    st.lists(
        st.tuples(
            st.sampled_from(["labelSelector", "metricLabelSelector", "x", ""]),
            st.sampled_from(["workload=web", "workload in (a,b)", "!x", "a!=b,c", "=", "%zz", ""])
            | st.text(max_size=40),
        ),
        max_size=4,
    ).map(lambda kv: "&".join(f"{k}={v}" for k, v in kv)),
)
ACCEPTS = st.sampled_from(
    [
        "",
        "*/*",
        "application/json",
        "application/vnd.kubernetes.protobuf, */*",
        "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList",
        "text/html",
        ";;;",
    ]
) | st.text(max_size=80)
METHODS = st.sampled_from(["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH"]) | st.text(max_size=8)


@given(method=METHODS, path=PATHS, query=QUERIES, accept=ACCEPTS)
def test_any_request_gets_a_well_formed_non_5xx_answer(
    method: str, path: str, query: str, accept: str
) -> None:
    response = API.handle(ApiRequest(method=method, path=path, query=query, accept=accept))
    assert 200 <= response.status < 500, (response.status, response.body[:200])
    if response.content_type.startswith("application/json") and response.body:
        msgspec.json.decode(response.body)
