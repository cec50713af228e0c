"""config.cmd_extender and the extender settings: commands registered on `gridshift`, help
text naming the URL paths, settings bounds and cross-field rules, command-line overrides
validated like the file/env layers, bad --listen rejected before anything starts, the
wiring's policy/rules derived from the settings group, and the carbon providers' clients of
the snapshot job closed when the command's stack closes."""

from __future__ import annotations

import contextlib
import functools
from datetime import UTC, datetime

import pytest
from click.testing import CliRunner
from prometheus_client import CollectorRegistry
from pydantic import ValidationError

import config.cmd_extender
from config.cli import cli
from config.errors import ConfigError
from config.loading import Override
from config.settings import ExtenderSettings, Settings
from config.wiring import (
    build_carbon_source,
    build_extender,
    load_settings,
    region_rules,
    scoring_policy,
)
from forecasts.time import FrozenClock
from tests.fakes import FakeNodeInventory
from tests.unit.carbon.conftest import RecordingClients


def test_commands_are_registered_and_documented() -> None:
    runner = CliRunner()
    out = runner.invoke(cli, ["--help"]).output
    assert "extender" in out
    assert "agent" in out
    help_text = runner.invoke(cli, ["extender", "--help"]).output
    assert "/scheduler/filter" in help_text
    assert "--tls-cert" in help_text
    assert "--node-name" in runner.invoke(cli, ["agent", "--help"]).output


def test_bad_listen_is_rejected_before_serving() -> None:
    result = CliRunner().invoke(cli, ["extender", "--listen", "nowhere"])
    assert result.exit_code == 2
    assert "expected HOST:PORT" in result.output


def test_overrides_are_validated(tmp_path) -> None:
    """Flags go through the settings loader: a cert without a key is a readable error, exit 2."""
    cert = tmp_path / "x.crt"
    cert.write_text("not used: validation fails first\n")
    result = CliRunner().invoke(cli, ["extender", "--tls-cert", str(cert)])
    assert result.exit_code == 2
    assert "tls_cert_file and tls_key_file" in result.output
    assert "extender" in result.output
    loaded = load_settings(overrides=[Override("extender.listen", "0.0.0.0:9443")], environ={})
    assert loaded.extender.listen == "0.0.0.0:9443"
    assert load_settings(environ={}).extender == ExtenderSettings()


@pytest.mark.parametrize(
    ("fields", "fragment"),
    [
        pytest.param({"neutral_score": 11}, "less than or equal to 10", id="neutral"),
        pytest.param({"carbon_weight": -1}, "greater than or equal to 0", id="weight"),
        pytest.param({"gpu_source": "nvml"}, "'agent', 'dcgm', 'kepler' or 'none'", id="source"),
        pytest.param(
            {"agent_annotation_max_age_seconds": 1000},
            "below gpu_stale_after_seconds",
            id="agent writes too rarely",
        ),
        pytest.param(
            {"agent_annotation_interval_seconds": 400},
            "must not exceed agent_annotation_max_age_seconds",
            id="interval > max age",
        ),
        pytest.param({"max_body_bytes": 0}, "greater than 0", id="body limit"),
        pytest.param(
            {"inventory_request_timeout_seconds": 0}, "greater than 0", id="no list timeout"
        ),
        pytest.param(
            {"inventory_request_timeout_seconds": 301},
            "less than or equal to 300",
            id="list timeout past 5 min",
        ),
    ],
)
def test_settings_bounds(fields, fragment) -> None:
    with pytest.raises(ValidationError, match=fragment):
        ExtenderSettings(**fields)


def test_settings_from_environment(monkeypatch) -> None:
    monkeypatch.setenv("GRIDSHIFT_EXTENDER__CARBON_WEIGHT", "2.5")
    monkeypatch.setenv("GRIDSHIFT_EXTENDER__DEFAULT_REGION", "FR")
    settings = load_settings()
    assert scoring_policy(settings.extender).carbon_weight == 2.5
    rules = region_rules(settings)
    # one region model: the carbon regions' match rules place cloud regions (no aliases)
    assert rules.region_for({"topology.kubernetes.io/region": "eu-west-1"}) == "IE"
    assert rules.region_for({"topology.kubernetes.io/region": "eu-west-2"}) == "GB"
    assert rules.region_for({}) == "FR"  # the default


def test_old_region_aliases_setting_says_where_it_went(monkeypatch) -> None:
    monkeypatch.setenv("GRIDSHIFT_EXTENDER__REGION_ALIASES", '{"eu-west-1": "IE"}')
    with pytest.raises(ConfigError, match=r"carbon\.regions\.<REGION>\.aliases"):
        load_settings()


def test_build_extender_needs_nodes_or_an_api() -> None:
    clock = FrozenClock(datetime(2026, 3, 2, tzinfo=UTC))
    with pytest.raises(ValueError, match="kube_api"):
        build_extender(
            Settings(), clock=clock, registry=CollectorRegistry(), carbon=None, kube_api=None
        )
    runtime = build_extender(
        Settings(),
        clock=clock,
        registry=CollectorRegistry(),
        carbon=None,
        kube_api=None,
        nodes=FakeNodeInventory(),
    )
    assert runtime.inventory is None
    assert runtime.refresher.refresh().nodes_synced


def test_an_alias_names_one_region_only() -> None:
    from config.settings import CarbonRegionSettings, CarbonSettings

    regions = {
        "IE": CarbonRegionSettings(zones={"electricitymaps": "IE"}, aliases=["eu-west-1"]),
        "GB": CarbonRegionSettings(zones={"uk": "national"}, aliases=["eu-west-1"]),
    }
    with pytest.raises(ValidationError, match="alias 'eu-west-1' is listed by both 'IE' and 'GB'"):
        CarbonSettings(regions=regions)


def test_an_alias_overrides_the_match_rules() -> None:
    from config.settings import CarbonRegionSettings, Settings

    settings = Settings()
    regions = dict(settings.carbon.regions)
    regions["FR"] = CarbonRegionSettings(**{**regions["FR"].model_dump(), "aliases": ["eu-west-1"]})
    carbon = settings.carbon.model_copy(update={"regions": regions})
    rules = region_rules(settings.model_copy(update={"carbon": carbon}))
    # IE's match rule claims eu-west-1, but FR's alias overrides it
    assert rules.region_for({"topology.kubernetes.io/region": "eu-west-1"}) == "FR"
    assert region_rules(settings).region_for({"topology.kubernetes.io/region": "eu-west-1"}) == "IE"


def kubeconfig(path, server: str):
    path.write_text(
        "apiVersion: v1\nkind: Config\nclusters:\n"
        f"- name: c\n  cluster:\n    server: {server}\n"
        "contexts:\n- name: c\n  context:\n    cluster: c\n    user: u\n"
        "current-context: c\nusers:\n- name: u\n  user:\n    token: t\n"
    )
    return path


def test_the_extender_client_reads_kube_kubeconfig(tmp_path, monkeypatch) -> None:
    """`kube.kubeconfig` names the cluster for the extender and the agent as it does for the
    scaler (it was ignored: in-cluster credentials or the default kubeconfig only)."""
    from config.settings import KubeSettings
    from config.wiring import kube_core_api

    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)  # not in a pod
    named = kubeconfig(tmp_path / "named", "http://127.0.0.1:7001")
    api = kube_core_api(KubeSettings(kubeconfig=named))
    assert api.api_client.configuration.host == "http://127.0.0.1:7001"
    with pytest.raises(RuntimeError, match=r"kube.kubeconfig=\S+missing is not usable"):
        kube_core_api(KubeSettings(kubeconfig=tmp_path / "missing"))


def test_an_unusable_kube_kubeconfig_stops_the_extender_instead_of_sample_nodes(
    tmp_path, monkeypatch
) -> None:
    """Without credentials the extender serves the SAMPLE DATA nodes (the offline quick
    start); a kubeconfig named in the settings that does not work is an error instead."""
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "no-kubeconfig"))
    missing = tmp_path / "missing"
    result = CliRunner().invoke(
        cli, ["extender", "--listen", "127.0.0.1:0", "--set", f"kube.kubeconfig={missing}"]
    )
    assert result.exit_code == 1, result.output
    assert f"kube.kubeconfig={missing} is not usable" in result.output


def test_the_snapshot_jobs_carbon_clients_close_with_the_command(monkeypatch) -> None:
    clients = RecordingClients()
    monkeypatch.setattr(
        config.cmd_extender,
        "build_carbon_source",
        functools.partial(build_carbon_source, http_client_factory=clients),
    )
    with contextlib.ExitStack() as closing:
        source = config.cmd_extender._carbon_source(Settings(), closing=closing)
        assert source.name == "sample+fallback"  # the chain behind the SAMPLE DATA regions
        assert clients.closed == [False]  # the keyless UK API
    assert clients.closed == [True]
