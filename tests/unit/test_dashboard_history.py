"""The history ring and the dashboard routes of the status API.

Aspects: the ring is bounded and keeps the newest points in order; re-publishing the same
instant replaces instead of appending; bad capacity is refused; NaN intensity becomes None;
the data note is not repeated as a reason; actual replicas in the points, and the
"reported"/note summary for every mix of known and unknown (with its reasons);
`RecordingHolder` records what it publishes;
`/status/history` (with `limit`, and a clear 400 for a bad one), `/status/extender` without
an extender, `/dashboard` and its packaged assets (media types, 404 for unknown names), and
that the page references only local assets.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest
from prometheus_client.registry import CollectorRegistry

from scaler.core.history import RecordingHolder, SnapshotHistory, history_point
from scaler.dashboard import load_dashboard_assets
from scaler.snapshot import RegionCarbon
from scaler.status_api import actual_replicas_json, create_status_app
from tests.snapshots import TAKEN_AT, sample_snapshot
from tests.unit.test_scaler_outputs import AsgiClient


def _snap(minutes: int, *, web_replicas: int = 4):
    return sample_snapshot(
        taken_at=TAKEN_AT + timedelta(minutes=minutes), web_replicas=web_replicas
    )


def test_ring_is_bounded_and_ordered():
    ring = SnapshotHistory(3)
    for m in range(5):
        ring.record(_snap(m, web_replicas=m))
    pts = ring.points()
    assert len(ring) == 3
    assert [p.taken_at for p in pts] == [TAKEN_AT + timedelta(minutes=m) for m in (2, 3, 4)]
    assert pts[-1].workloads["shop/web"]["desired_replicas"] == 4
    assert [p.taken_at for p in ring.points(limit=2)] == [p.taken_at for p in pts[1:]]


def test_same_instant_replaces_the_newest_point():
    ring = SnapshotHistory(5)
    ring.record(_snap(0, web_replicas=1))
    ring.record(_snap(0, web_replicas=7))
    assert len(ring) == 1
    assert ring.points()[0].workloads["shop/web"]["desired_replicas"] == 7


def test_capacity_must_be_positive():
    with pytest.raises(ValueError, match="capacity_points"):
        SnapshotHistory(0)


def test_point_nan_becomes_none_and_data_note_is_not_a_reason():
    snap = sample_snapshot()
    regions = dict(snap.regions)
    regions["eu-west-1"] = RegionCarbon("eu-west-1", float("nan"), None, "x", True, None)
    ws = dict(snap.workloads)
    ws["shop/web"] = replace(ws["shop/web"], reasons=("SAMPLE", "real reason"), saved_g=2.5)
    point = history_point(replace(snap, regions=regions, workloads=ws, data_note="SAMPLE"))
    assert point.regions["eu-west-1"]["intensity_g_per_kwh"] is None
    assert point.regions["eu-west-1"]["stale"] is True
    assert point.workloads["shop/web"]["reasons"] == ["real reason"]
    assert point.saved_g == 2.5


def test_recording_holder_records_publishes():
    ring = SnapshotHistory(10)
    holder = RecordingHolder(ring, _snap(0))
    holder.publish(_snap(1))
    assert holder.current() is not None
    assert len(ring) == 2


@pytest.fixture
def client():
    ring = SnapshotHistory(4)
    holder = RecordingHolder(ring)
    for m in range(6):
        holder.publish(_snap(m, web_replicas=m + 1))
    return AsgiClient(create_status_app(holder, registry=CollectorRegistry(), history=ring))


def test_history_endpoint(client):
    body = client.get("/status/history").json()
    assert body["capacity_points"] == 4
    assert body["actual_replicas"]["reported"] is False  # sample_snapshot knows no actual
    assert body["actual_replicas"]["note"] == "actual unknown: unknown"
    assert [p["workloads"]["shop/web"]["desired_replicas"] for p in body["points"]] == [3, 4, 5, 6]
    assert body["points"][-1]["taken_at"].endswith("Z")
    assert body["points"][0]["regions"]["eu-west-1"]["intensity_g_per_kwh"] == 312.5
    assert len(client.get("/status/history?limit=2").json()["points"]) == 2


@pytest.mark.parametrize("query", ["limit=0", "limit=-3"])
def test_history_rejects_bad_limit(client, query):
    r = client.get(f"/status/history?{query}")
    assert r.status_code == 422  # declared bound (ge=1) in scaler/status_openapi.json
    assert "limit" in r.text


def test_history_empty_before_first_tick():
    app = create_status_app(RecordingHolder(SnapshotHistory(3)), registry=CollectorRegistry())
    assert AsgiClient(app).get("/status/history").json()["points"] == []


def test_extender_panel_without_extender(client):
    assert client.get("/status/extender").json() == {
        "configured": False,
        "note": "no extender configured",
    }


def test_extender_panel_shows_the_region_policy_from_settings():
    """The region policy operators write (threshold, prefer, avoid) is on the dashboard's
    extender panel, from the same settings `config show` prints."""
    from config.settings import ExtenderSettings, Settings
    from config.wiring.scaler import region_policy_view

    settings = Settings(
        extender=ExtenderSettings(
            max_intensity_g_per_kwh=350, prefer_regions=("FR",), avoid_regions=("DE",)
        )
    )
    app = create_status_app(
        RecordingHolder(SnapshotHistory(3)),
        registry=CollectorRegistry(),
        region_policy=region_policy_view(settings),
    )
    body = AsgiClient(app).get("/status/extender").json()
    assert body["configured"] is False
    policy = body["region_policy"]
    assert (policy["max_intensity_g_per_kwh"], policy["prefer_regions"]) == (350, ["FR"])
    assert policy["avoid_regions"] == ["DE"]
    assert "gridshift.io/avoid-regions" in policy["pod_annotations"]
    js = AsgiClient(app).get("/dashboard/assets/dashboard.js").text
    assert "region_policy" in js


def test_dashboard_page_and_assets(client):
    page = client.get("/dashboard")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    refs = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert refs
    assert all(ref.startswith("/dashboard/assets/") for ref in refs), refs
    for ref in refs:
        r = client.get(ref)
        assert r.status_code == 200, ref
        assert r.content
    assert (
        client.get("/dashboard/assets/dashboard.js")
        .headers["content-type"]
        .startswith("text/javascript")
    )
    assert (
        client.get("/dashboard/assets/dashboard.css").headers["content-type"].startswith("text/css")
    )
    missing = client.get("/dashboard/assets/nope.js")
    assert missing.status_code == 404
    assert "nope.js" in missing.json()["error"]


def test_assets_are_local_only():
    assets = load_dashboard_assets()
    for name, (body, _) in assets.assets.items():
        assert b"http://" not in body.replace(b"http://www.w3.org/2000/svg", b""), name
        assert b"https://" not in body, name


def test_dashboard_files_are_package_data():
    """A wheel carries the page and its assets (setuptools package-data patterns)."""
    root = Path(__file__).resolve().parents[2]
    patterns = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-data"
    ]["scaler.dashboard"]
    folder = root / "scaler" / "dashboard"
    shipped = {p for pattern in patterns for p in folder.glob(pattern)}
    on_disk = {p for p in folder.rglob("*") if p.is_file() and p.suffix != ".py"}
    on_disk = {p for p in on_disk if "__pycache__" not in p.parts}
    assert on_disk <= shipped


def _with_actual(**by_name):
    """sample_snapshot with (actual, note) per workload name (web, worker, train)."""
    snap = sample_snapshot()
    ws = {
        key: replace(w, actual_replicas=by_name[w.name][0], actual_replicas_note=by_name[w.name][1])
        for key, w in snap.workloads.items()
    }
    return replace(snap, workloads=ws)


@pytest.mark.parametrize(
    ("by_name", "reported", "note"),
    [
        pytest.param(
            {"web": (4, ""), "worker": (0, ""), "train": (12, "")}, True, "", id="all known"
        ),
        pytest.param(
            {n: (None, "no cluster connection") for n in ("web", "worker", "train")},
            False,
            "actual unknown: no cluster connection",
            id="no cluster",
        ),
        pytest.param(
            {"web": (4, ""), "worker": (None, "read failed: kube: 403"), "train": (12, "")},
            True,
            "actual unknown for shop/worker: read failed: kube: 403",
            id="one read failed",
        ),
    ],
)
def test_actual_replicas_summary(by_name, reported, note):
    body = actual_replicas_json(_with_actual(**by_name))
    assert body["reported"] is reported
    assert body["note"] == note
    assert set(body["unknown"]) == {
        key for key, w in sample_snapshot().workloads.items() if by_name[w.name][0] is None
    }


def test_actual_replicas_summary_before_the_first_tick():
    assert actual_replicas_json(None)["reported"] is False


def test_history_points_carry_actual_replicas():
    point = history_point(
        _with_actual(web=(3, ""), worker=(None, "no cluster connection"), train=(12, ""))
    )
    assert point.workloads["shop/web"]["actual_replicas"] == 3
    assert point.workloads["shop/worker"]["actual_replicas"] is None
