"""scaler.kube.events.EventRecorder without a server (the Events it sends on the real API
server: tests/cluster/test_kube.py): a repeat of the last Event for an object and reason is not
sent again; what it remembers expires after `repeat_after` (a persisting problem is recorded
again once the API server has dropped the Event) and is capped at `max_remembered` pairs,
least recently sent forgotten first, so objects that come and go do not grow it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from forecasts.time import FrozenClock
from scaler.kube.events import WARNING, EventRecorder, ObjectRef

T0 = datetime(2025, 3, 1, 12, tzinfo=UTC)


class RecordingCoreApi:
    """The one CoreV1Api call EventRecorder makes, kept in a list."""

    def __init__(self) -> None:
        self.created: list[dict[str, Any]] = []

    def create_namespaced_event(self, namespace: str, body: Any, **_: Any) -> None:
        self.created.append(body)


def recorder(**kwargs: Any) -> tuple[EventRecorder, RecordingCoreApi, FrozenClock]:
    api = RecordingCoreApi()
    clock = FrozenClock(T0)
    return EventRecorder(api, clock=clock, instance="a", **kwargs), api, clock  # type: ignore[arg-type]


def problem(events: EventRecorder, name: str, message: str = "spec.region: 'x' is unknown") -> bool:
    ref = ObjectRef("shop", name, f"uid-{name}")
    return events.record(ref, type_=WARNING, reason="UnknownRegion", message=message)


def test_a_repeat_is_not_sent_until_the_event_would_have_expired() -> None:
    events, api, clock = recorder(repeat_after=timedelta(hours=1))
    assert problem(events, "web")
    clock.advance(timedelta(minutes=59))
    assert not problem(events, "web"), "the same problem a tick later is not a new Event"
    assert problem(events, "web", "spec.region: 'y' is unknown"), "a changed message is"
    clock.advance(timedelta(minutes=59))
    assert not problem(events, "web", "spec.region: 'y' is unknown")
    clock.advance(timedelta(minutes=1))
    assert problem(events, "web", "spec.region: 'y' is unknown"), "recorded again after an hour"
    assert [e["message"] for e in api.created] == [
        "spec.region: 'x' is unknown",
        "spec.region: 'y' is unknown",
        "spec.region: 'y' is unknown",
    ]


def test_objects_that_are_gone_are_forgotten_once_their_events_expire() -> None:
    events, _api, clock = recorder(repeat_after=timedelta(hours=1))
    for i in range(500):  # CRs created, refused, deleted over a day
        problem(events, f"cr-{i}")
        clock.advance(timedelta(minutes=3))
    # only what was sent within the last hour is remembered, not all 500
    assert events.remembered == 20
    clock.advance(timedelta(hours=1))
    problem(events, "web")
    assert events.remembered == 1


def test_at_most_max_remembered_pairs_least_recently_sent_forgotten_first() -> None:
    events, api, _clock = recorder(max_remembered=3)
    for name in ("a", "b", "c", "d"):
        assert problem(events, name)
    assert events.remembered == 3
    assert not problem(events, "d"), "the newest is remembered"
    assert problem(events, "a"), "the oldest was forgotten: sent again"
    assert events.remembered == 3
    assert len(api.created) == 5


def test_a_failed_create_is_not_remembered() -> None:
    events, api, _clock = recorder()

    def refuse(namespace: str, body: Any, **_: Any) -> None:
        from kubernetes.client.exceptions import ApiException

        raise ApiException(status=503, reason="Service Unavailable")

    api.create_namespaced_event = refuse  # type: ignore[method-assign]
    assert not problem(events, "web")
    assert (events.errors, events.remembered) == (1, 0)


@pytest.mark.parametrize(
    "kwargs",
    [
        pytest.param({"repeat_after": timedelta(0)}, id="zero repeat_after"),
        pytest.param({"max_remembered": 0}, id="zero max_remembered"),
    ],
)
def test_bounds_must_be_positive(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="repeat_after must be positive"):
        recorder(**kwargs)
