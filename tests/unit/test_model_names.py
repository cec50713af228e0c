"""One vocabulary for models: the name a flag or setting takes is the name every output
prints (not `seasonal_naive_24` for `--model seasonal_naive_day`, `ets_24` for `ets`,
`profile_persistence_168_mul` for `load_model: profile_persistence`)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from config.replay_scenario import _load_model
from forecasts.models.catalog import MODEL_NAMES, build_load_forecaster, build_model


@pytest.mark.parametrize("step", [timedelta(hours=1), timedelta(minutes=30)], ids=["1h", "30m"])
@pytest.mark.parametrize("name", MODEL_NAMES)
def test_catalog_models_are_named_as_the_flags(name: str, step: timedelta) -> None:
    assert build_model(name, step=step).name == name


def test_replay_load_model_is_named_as_the_scenario_file() -> None:
    step = timedelta(hours=1)
    for profile in ("day", "week"):
        assert _load_model(step, profile=profile, seasons=3).name == "profile_persistence"


def test_auto_names_its_baseline_as_the_flag() -> None:
    auto = build_load_forecaster("auto", step=timedelta(minutes=5), horizon=3, history_steps=5000)
    assert "seasonal_naive_day" in {c.name for c in auto.candidates}  # type: ignore[attr-defined]
