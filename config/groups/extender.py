"""`extender`: the scheduler extender's scoring, listener, inventory and GPU agent."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import ClassVar, Literal

from pydantic import Field, model_validator

from config.groups.base import Group

__all__ = [
    "ExtenderSettings",
]


class ExtenderSettings(Group):
    #: Removed keys and where their meaning went (shown instead of "unknown key").
    moved_fields: ClassVar[Mapping[str, str]] = MappingProxyType(
        {
            "region_aliases": "region aliases moved to the one region model: list each cloud "
            "region/zone under carbon.regions.<REGION>.aliases (e.g. carbon.regions.IE.aliases"
            ": [eu-west-1]); nodes are also placed by the regions' `match` rules",
        }
    )

    listen: str = Field(
        "127.0.0.1:8888", description="Loopback by default; set 0.0.0.0:8888 in-cluster."
    )
    tls_cert_file: str | None = Field(
        None, description="PEM certificate; unset serves plain HTTP (fine behind a mesh)."
    )
    tls_key_file: str | None = Field(None, description="PEM key for tls_cert_file.")
    tls_reload_check_interval_seconds: float = Field(
        10.0,
        gt=0,
        le=3600,
        description="Rotated cert/key files are served within 10 s; cert-manager renews days "
        "ahead, so checking more often only costs stat calls.",
    )
    carbon_weight: float = Field(
        1.0, ge=0, le=100, description="Carbon is the point of the extender: full weight."
    )
    gpu_energy_weight: float = Field(
        0.5,
        ge=0,
        le=100,
        description="Half of carbon: GPU efficiency matters but grid mix differs more.",
    )
    neutral_score: int = Field(
        5, ge=0, le=10, description="Mid-scale, so missing data neither helps nor hurts a node."
    )
    stale_after_seconds: float = Field(
        7200.0,
        gt=0,
        description="Two hours: providers publish hourly, so one missed update is fine.",
    )
    gpu_stale_after_seconds: float = Field(
        900.0, gt=0, description="Three agent rewrites (every 300 s at most) may be missed."
    )
    max_body_bytes: int = Field(
        16 * 1024 * 1024,
        gt=0,
        le=1024 * 1024 * 1024,
        description="16 MiB fits a 5,000-node NodeList with images; more is abuse.",
    )
    region_labels: tuple[str, ...] = Field(
        (
            "gridshift.io/region",
            "topology.kubernetes.io/region",
            "failure-domain.beta.kubernetes.io/region",
        ),
        min_length=1,
        description="Our own label first, then the well-known ones clouds set.",
    )
    zone_labels: tuple[str, ...] = Field(
        ("topology.kubernetes.io/zone", "failure-domain.beta.kubernetes.io/zone"),
        description="Well-known zone labels; zones may be aliased to carbon regions.",
    )
    nodes_file: str | None = Field(
        None,
        description="A NodeList (YAML/JSON) to serve instead of watching the cluster; without"
        " it and without credentials the extender serves the SAMPLE DATA nodes (offline).",
    )
    default_region: str | None = Field(
        None,
        description="Configured carbon region of nodes no label or match rule places; unset "
        "leaves them neutral.",
    )
    max_intensity_g_per_kwh: float | None = Field(
        None,
        gt=0,
        le=10_000,
        description="Cluster-wide carbon threshold: filter out nodes whose region is fresher "
        "and dirtier than this; off by default; a pod's gridshift.io/max-gco2-per-kwh wins.",
    )
    prefer_regions: tuple[str, ...] = Field(
        (),
        description="Regions whose nodes get a score bonus; none by default; a pod's "
        "gridshift.io/prefer-regions annotation replaces the list.",
    )
    avoid_regions: tuple[str, ...] = Field(
        (),
        description="Regions filtered out unless no other node fits (fails open); none by "
        "default; a pod's gridshift.io/avoid-regions annotation replaces the list.",
    )
    prefer_bonus: float = Field(
        0.2,
        ge=0,
        le=1,
        description="A fifth of the best node's goodness: breaks near-ties toward preferred "
        "regions without overriding a clearly cleaner grid.",
    )
    regions: tuple[str, ...] = Field(
        (),
        description="Configured carbon regions to rank for /regions/rank even without nodes.",
    )
    refresh_interval_seconds: float = Field(
        10.0, gt=0, le=3600, description="Node changes reach scores within ten seconds."
    )
    carbon_refresh_interval_seconds: float = Field(
        300.0, gt=0, description="Five minutes: providers update at most every 5-60 minutes."
    )
    freeze_gc: bool = Field(
        True,
        description="Freeze each published snapshot out of the cyclic GC: full collections"
        " walking 5,000 nodes caused 90 ms request tails (see extender/refresh.py).",
    )
    forecast_horizon_seconds: float = Field(
        86400.0, gt=0, description="A day covers the expected durations of most batch jobs."
    )
    gpu_source: Literal["agent", "dcgm", "kepler", "none"] = Field(
        "agent", description="The gridshift agent's node annotations, unless you run DCGM."
    )
    node_label_selector: str | None = Field(
        None, description="Watch all nodes by default; narrow in very large clusters."
    )
    watch_timeout_seconds: int = Field(
        300, gt=0, le=3600, description="client-go's reflector uses 5-10 minute watches."
    )
    inventory_request_timeout_seconds: float = Field(
        10.0,
        gt=0,
        le=300,
        description="One node LIST page (500 nodes) answers in well under 1 s; 10 s spares a "
        "loaded API server yet counts a hung one within seconds, re-send included.",
    )
    agent_listen: str = Field(
        "127.0.0.1:9402", description="Agent /metrics on loopback; 0.0.0.0:9402 in the pod."
    )
    agent_sample_interval_seconds: float = Field(
        5.0, gt=0, le=600, description="NVML power is a 1 s average: 5 s sampling is plenty."
    )
    agent_window_seconds: float = Field(
        300.0, gt=0, description="A five-minute rolling average smooths batch step noise."
    )
    agent_annotation_interval_seconds: float = Field(
        60.0, gt=0, description="At most one node PATCH a minute per node keeps API load low."
    )
    agent_annotation_max_age_seconds: float = Field(
        300.0,
        gt=0,
        description="Rewrite unchanged values every 5 min so readers see them as fresh.",
    )
    agent_min_change_fraction: float = Field(
        0.05, ge=0, le=1, description="Skip rewrites for changes under 5 %."
    )

    @model_validator(mode="after")
    def _agent_rewrites_before_stale(self) -> ExtenderSettings:
        if self.agent_annotation_max_age_seconds >= self.gpu_stale_after_seconds:
            raise ValueError(
                "agent_annotation_max_age_seconds must be below gpu_stale_after_seconds, "
                "or idle nodes' GPU facts would look stale"
            )
        if self.agent_annotation_interval_seconds > self.agent_annotation_max_age_seconds:
            raise ValueError(
                "agent_annotation_interval_seconds must not exceed agent_annotation_max_age_seconds"
            )
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("tls_cert_file and tls_key_file must be set together")
        return self
