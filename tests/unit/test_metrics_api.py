"""External Metrics API routing and wire JSON without sockets: discovery (legacy and
aggregated, content negotiation), metric lists as the HPA requests them (protobuf-first
Accept, `+`-encoded and set-based selectors), golden bodies, Status errors (404 unknown
metric, 400 bad selector, 405, 406, 500 no/stale snapshot), timestamps and quantities,
what the HPA computes from the reply, and the OpenAPI documents kube-apiserver's aggregator
downloads (v2 and v3: valid, every reference resolved, ETag and If-None-Match, the v3
discovery URL's hash, stale-hash redirect, immutable caching)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlencode

import openapi_spec_validator
import pytest

from forecasts.time import FrozenClock
from scaler.core.quantity import milli_value
from scaler.metrics_api import (
    AGGREGATED_DISCOVERY_V2,
    AGGREGATED_DISCOVERY_V2BETA1,
    ApiRequest,
    ExternalMetricsApi,
    format_timestamp,
)
from scaler.snapshot import SnapshotHolder
from tests.snapshots import TAKEN_AT, sample_holder, sample_snapshot

GOLDEN = Path(__file__).resolve().parents[1] / "fixtures" / "metrics_api"
HPA_ACCEPT = "application/vnd.kubernetes.protobuf, */*"
BASE = "/apis/external.metrics.k8s.io/v1beta1"


def make_api(holder=None, *, max_age=None, now=TAKEN_AT + timedelta(seconds=30)):
    return ExternalMetricsApi(
        holder if holder is not None else sample_holder(),
        clock=FrozenClock(now),
        max_snapshot_age_seconds=max_age,
    )


def get(api, path, *, selector=None, accept=HPA_ACCEPT):
    # client-go: url.Values.Encode() -> spaces become '+', '/', '(' ',' ')' percent-encoded
    query = urlencode({"labelSelector": selector}) if selector is not None else ""
    return api.handle(ApiRequest("GET", path, query, accept))


def body(response):
    return json.loads(response.body)


def golden(name, response):
    path = GOLDEN / name
    expected = json.loads(path.read_text())
    assert json.loads(response.body) == expected, f"{name} drifted:\n{response.body.decode()}"
    assert list(json.loads(response.body)) == list(expected), "top-level key order"


def test_legacy_discovery_resource_list_golden():
    response = get(make_api(), BASE, accept="application/json")
    assert response.status == 200
    assert response.content_type == "application/json"
    golden("resource_list.json", response)


def test_discovery_works_before_the_first_snapshot():
    """The aggregator's availability probe must get 2xx even with nothing to serve yet."""
    api = make_api(SnapshotHolder())
    assert get(api, BASE).status == 200
    assert get(api, "/apis/external.metrics.k8s.io").status == 200


def test_group_and_group_list():
    api = make_api()
    group = body(get(api, "/apis/external.metrics.k8s.io", accept="application/json"))
    assert group["kind"] == "APIGroup"
    assert group["preferredVersion"] == {
        "groupVersion": "external.metrics.k8s.io/v1beta1",
        "version": "v1beta1",
    }
    groups = body(get(api, "/apis", accept="application/json"))
    assert groups["kind"] == "APIGroupList"
    assert [g["name"] for g in groups["groups"]] == ["external.metrics.k8s.io"]


@pytest.mark.parametrize(
    ("accept", "content_type", "api_version"),
    [
        pytest.param(
            f"{AGGREGATED_DISCOVERY_V2},{AGGREGATED_DISCOVERY_V2BETA1},application/json",
            AGGREGATED_DISCOVERY_V2,
            "apidiscovery.k8s.io/v2",
            id="what the aggregator sends",
        ),
        pytest.param(
            "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList",
            AGGREGATED_DISCOVERY_V2BETA1,
            "apidiscovery.k8s.io/v2beta1",
            id="v2beta1 only",
        ),
        pytest.param(
            "application/json; g=apidiscovery.k8s.io; v=v2; as=APIGroupDiscoveryList",
            AGGREGATED_DISCOVERY_V2,
            "apidiscovery.k8s.io/v2",
            id="spaces around parameters",
        ),
    ],
)
def test_aggregated_discovery(accept, content_type, api_version):
    response = get(make_api(), "/apis", accept=accept)
    assert response.status == 200
    assert response.content_type == content_type
    doc = body(response)
    assert doc["kind"] == "APIGroupDiscoveryList"
    assert doc["apiVersion"] == api_version
    (version,) = doc["items"][0]["versions"]
    assert version["version"] == "v1beta1"
    assert version["freshness"] == "Current"
    assert {r["resource"] for r in version["resources"]} == {
        "gridshift_desired_replicas",
        "gridshift_carbon_intensity_g_per_kwh",
        "gridshift_eco_mode",
    }
    assert all(r["scope"] == "Namespaced" and r["verbs"] == ["get"] for r in version["resources"])


def test_content_type_is_canonical_never_the_echoed_accept():
    accept = f"{AGGREGATED_DISCOVERY_V2};q=0.9, application/json;q=0.5"
    response = get(make_api(), "/apis", accept=accept)
    assert response.content_type == AGGREGATED_DISCOVERY_V2
    assert "q=" not in response.content_type


def test_aggregated_discovery_golden():
    golden("aggregated_discovery_v2.json", get(make_api(), "/apis", accept=AGGREGATED_DISCOVERY_V2))


def test_plain_json_on_apis_gets_the_legacy_group_list():
    response = get(make_api(), "/apis", accept="application/json")
    assert response.content_type == "application/json"
    assert body(response)["kind"] == "APIGroupList"


@pytest.mark.parametrize(
    "accept",
    [
        HPA_ACCEPT,
        "application/vnd.kubernetes.protobuf, application/json",
        "application/json",
        "",
        "*/*",
        "application/*",
    ],
)
def test_metric_reply_is_json_whatever_order_the_client_prefers(accept):
    response = get(make_api(), f"{BASE}/namespaces/shop/gridshift_desired_replicas", accept=accept)
    assert response.status == 200
    assert response.content_type == "application/json"


def test_protobuf_only_is_not_acceptable():
    response = get(
        make_api(),
        f"{BASE}/namespaces/shop/gridshift_desired_replicas",
        accept="application/vnd.kubernetes.protobuf",
    )
    assert response.status == 406
    assert body(response)["reason"] == "NotAcceptable"


def test_desired_replicas_golden_as_the_hpa_asks():
    response = get(
        make_api(), f"{BASE}/namespaces/shop/gridshift_desired_replicas", selector="workload=web"
    )
    assert response.status == 200
    golden("desired_replicas_web.json", response)


def test_hpa_average_value_one_gets_desired_replicas():
    """ReplicaCalculator: AverageValue target 1 -> ceil(sum(MilliValue)/1000) replicas."""
    api = make_api(SnapshotHolder(sample_snapshot(web_replicas=7)))
    doc = body(
        get(api, f"{BASE}/namespaces/shop/gridshift_desired_replicas", selector="workload=web")
    )
    total_milli = sum(milli_value(item["value"]) for item in doc["items"])
    target_milli = 1000
    assert -(-total_milli // target_milli) == 7
    assert datetime.fromisoformat(doc["items"][0]["timestamp"]) == TAKEN_AT.replace(microsecond=0)
    assert isinstance(doc["items"][0]["window"], int)


def test_set_based_selector_encoded_like_client_go():
    query = urlencode({"labelSelector": "topology.kubernetes.io/region in (eu-west-1,us-east-1)"})
    assert query == ("labelSelector=topology.kubernetes.io%2Fregion+in+%28eu-west-1%2Cus-east-1%29")
    response = make_api().handle(
        ApiRequest(
            "GET", f"{BASE}/namespaces/shop/gridshift_carbon_intensity_g_per_kwh", query, HPA_ACCEPT
        )
    )
    golden("carbon_intensity_two_regions.json", response)
    values = {i["metricLabels"]["region"]: i["value"] for i in body(response)["items"]}
    assert values == {"eu-west-1": "312500m", "us-east-1": "100u"}


@pytest.mark.parametrize(
    ("selector", "workloads"),
    [
        pytest.param(None, ["web", "worker"], id="no selector: all in the namespace"),
        pytest.param("", ["web", "worker"], id="empty selector"),
        pytest.param("workload!=web", ["worker"], id="not equals"),
        pytest.param("region notin (eu-west-1)", ["worker"], id="notin"),
        pytest.param("workload in (web,worker),mode=eco", ["web"], id="in and equals"),
        pytest.param("region", ["web", "worker"], id="exists"),
        pytest.param("!region", [], id="does not exist: empty items, still 200"),
        pytest.param("workload=nope", [], id="no match"),
    ],
)
def test_selectors_narrow_workload_items(selector, workloads):
    response = get(make_api(), f"{BASE}/namespaces/shop/gridshift_eco_mode", selector=selector)
    assert response.status == 200
    items = body(response)["items"]
    assert [i["metricLabels"]["workload"] for i in items] == workloads


def test_eco_mode_values_and_namespace_isolation():
    api = make_api()
    shop = body(get(api, f"{BASE}/namespaces/shop/gridshift_eco_mode"))["items"]
    assert {i["metricLabels"]["workload"]: i["value"] for i in shop} == {"web": "1", "worker": "0"}
    ml = body(get(api, f"{BASE}/namespaces/ml/gridshift_desired_replicas"))["items"]
    assert [(i["metricLabels"]["workload"], i["value"]) for i in ml] == [("train", "12")]
    assert body(get(api, f"{BASE}/namespaces/empty/gridshift_desired_replicas"))["items"] == []


def test_regions_without_intensity_are_left_out():
    items = body(get(make_api(), f"{BASE}/namespaces/any/gridshift_carbon_intensity_g_per_kwh"))
    assert [i["metricLabels"]["region"] for i in items["items"]] == ["eu-west-1", "us-east-1"]


def test_unknown_metric_is_404_status_golden():
    response = get(make_api(), f"{BASE}/namespaces/shop/foo")
    assert response.status == 404
    golden("status_unknown_metric.json", response)


@pytest.mark.parametrize("selector", ["a in (b", "workload=web region=x", "k@=1", "!"])
def test_bad_selector_is_400(selector):
    response = get(
        make_api(), f"{BASE}/namespaces/shop/gridshift_desired_replicas", selector=selector
    )
    assert response.status == 400
    doc = body(response)
    assert (doc["kind"], doc["reason"], doc["code"]) == ("Status", "BadRequest", 400)
    assert "labelSelector" in doc["message"]


def test_no_snapshot_yet_is_500():
    response = get(make_api(SnapshotHolder()), f"{BASE}/namespaces/shop/gridshift_desired_replicas")
    assert response.status == 500
    doc = body(response)
    assert doc["reason"] == "InternalError"
    assert "no scaler decision" in doc["message"]


def test_stale_snapshot_is_500_so_the_hpa_holds():
    api = make_api(max_age=300, now=TAKEN_AT + timedelta(seconds=301))
    response = get(api, f"{BASE}/namespaces/shop/gridshift_desired_replicas")
    assert response.status == 500
    assert "301s old" in body(response)["message"]
    fresh = make_api(max_age=300, now=TAKEN_AT + timedelta(seconds=299))
    assert get(fresh, f"{BASE}/namespaces/shop/gridshift_desired_replicas").status == 200


def test_new_snapshot_is_served_on_the_next_request():
    holder = sample_holder()
    api = make_api(holder)
    path = f"{BASE}/namespaces/shop/gridshift_desired_replicas"
    assert body(get(api, path, selector="workload=web"))["items"][0]["value"] == "4"
    holder.publish(sample_snapshot(web_replicas=9))
    assert body(get(api, path, selector="workload=web"))["items"][0]["value"] == "9"


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH"])
def test_other_verbs_are_405(method):
    response = make_api().handle(
        ApiRequest(method, f"{BASE}/namespaces/shop/gridshift_desired_replicas")
    )
    assert response.status == 405
    assert body(response)["reason"] == "MethodNotAllowed"


@pytest.mark.parametrize(
    "path",
    [
        "/apis/custom.metrics.k8s.io/v1beta1",
        "/apis/external.metrics.k8s.io/v1beta2",
        f"{BASE}/namespaces/shop",
        f"{BASE}/gridshift_desired_replicas",
        "/openapi/v3/apis/custom.metrics.k8s.io/v1beta2",
        "/openapi",
        "/",
    ],
)
def test_unknown_paths_are_404_status(path):
    response = get(make_api(), path)
    assert response.status == 404
    assert body(response)["kind"] == "Status"


def test_health_is_plain_text():
    response = get(make_api(SnapshotHolder()), "/healthz")
    assert (response.status, response.body) == (200, b"ok")


def test_timestamp_is_rfc3339_utc_seconds():
    at = datetime(2025, 3, 1, 13, 0, 0, 999999, tzinfo=UTC) + timedelta(hours=0)
    assert format_timestamp(at) == "2025-03-01T13:00:00Z"
    with pytest.raises(ValueError, match="timezone"):
        format_timestamp(datetime(2025, 3, 1))  # noqa: DTZ001 - the point of the test


def test_authorization_attributes_for_the_hpa_call():
    attrs = make_api().attributes("GET", f"{BASE}/namespaces/shop/gridshift_desired_replicas")
    assert (attrs.verb, attrs.resource, attrs.namespace, attrs.api_group) == (
        "list",
        "gridshift_desired_replicas",
        "shop",
        "external.metrics.k8s.io",
    )
    assert attrs.resource_request
    assert not make_api().attributes("GET", BASE).resource_request


# ---------------------------------------------------------------- /openapi (aggregator)
def openapi_get(path, *, query="", accept="application/json", if_none_match=""):
    return make_api().handle(ApiRequest("GET", path, query, accept, if_none_match))


def refs(node):
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                yield value
            else:
                yield from refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from refs(value)


def test_openapi_v2_is_swagger_with_every_reference_defined():
    response = openapi_get("/openapi/v2")  # what kube-aggregator's downloader sends
    assert (response.status, response.content_type) == (200, "application/json")
    doc = body(response)
    assert doc["swagger"] == "2.0"
    (path,) = doc["paths"]
    assert path == f"{BASE}/namespaces/{{namespace}}/{{metricName}}"
    enum = next(p["enum"] for p in doc["paths"][path]["parameters"] if p["name"] == "metricName")
    assert enum == [
        "gridshift_desired_replicas",
        "gridshift_carbon_intensity_g_per_kwh",
        "gridshift_eco_mode",
    ]
    for ref in refs(doc):
        assert ref.removeprefix("#/definitions/") in doc["definitions"], ref
    gvk = doc["definitions"][
        "io.k8s.metrics.pkg.apis.external_metrics.v1beta1.ExternalMetricValueList"
    ]["x-kubernetes-group-version-kind"]
    assert gvk == [
        {
            "group": "external.metrics.k8s.io",
            "kind": "ExternalMetricValueList",
            "version": "v1beta1",
        }
    ]


def test_openapi_documents_pass_a_spec_validator():

    openapi_spec_validator.validate(body(openapi_get("/openapi/v2")))
    discovery = body(openapi_get("/openapi/v3"))
    url = discovery["paths"]["apis/external.metrics.k8s.io/v1beta1"]["serverRelativeURL"]
    path, _, query = url.partition("?")
    openapi_spec_validator.validate(body(openapi_get(path, query=query)))


def test_openapi_v3_discovery_names_the_document_by_its_hash():
    import hashlib

    discovery = openapi_get("/openapi/v3")
    assert discovery.status == 200
    (gv,) = body(discovery)["paths"]
    assert gv == "apis/external.metrics.k8s.io/v1beta1"
    url = body(discovery)["paths"][gv]["serverRelativeURL"]
    path, _, query = url.partition("?")
    assert path == "/openapi/v3/apis/external.metrics.k8s.io/v1beta1"
    document = openapi_get(path, query=query)
    assert document.status == 200
    # kube-openapi's hash: SHA-512 of the served bytes, upper-case hex; the ETag quotes it
    digest = hashlib.sha512(document.body).hexdigest().upper()
    assert query == f"hash={digest}"
    assert document.headers["Etag"] == f'"{digest}"'
    assert document.headers["Cache-Control"] == "public, immutable"
    doc = body(document)
    assert doc["openapi"].startswith("3.0")
    for ref in refs(doc):
        assert ref.removeprefix("#/components/schemas/") in doc["components"]["schemas"], ref
    without_hash = openapi_get(path)
    assert without_hash.status == 200
    assert "Cache-Control" not in without_hash.headers


def test_openapi_v3_stale_hash_redirects_to_the_current_one():
    current = body(openapi_get("/openapi/v3"))["paths"]["apis/external.metrics.k8s.io/v1beta1"]
    response = openapi_get("/openapi/v3/apis/external.metrics.k8s.io/v1beta1", query="hash=ABC")
    assert response.status == 301
    assert response.headers["Location"] == current["serverRelativeURL"]


def test_openapi_etag_gives_304_when_unchanged():
    first = openapi_get("/openapi/v2")
    again = openapi_get("/openapi/v2", if_none_match=first.headers["Etag"])
    assert (again.status, again.body) == (304, b"")
    assert openapi_get("/openapi/v2", if_none_match='"OTHER"').status == 200


def test_openapi_is_served_before_the_first_snapshot_and_refuses_other_verbs():
    api = make_api(SnapshotHolder())
    assert api.handle(ApiRequest("GET", "/openapi/v2")).status == 200
    assert api.handle(ApiRequest("POST", "/openapi/v2")).status == 405
    assert api.handle(ApiRequest("GET", "/openapi/v2", accept="application/protobuf")).status == 406
