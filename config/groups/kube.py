"""`kube`: Kubernetes I/O of the scaler (CarbonAwareScaler watch, actuation, leader Lease)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, model_validator

from config.groups.base import Group

__all__ = [
    "KubeSettings",
]


class KubeSettings(Group):
    """Kubernetes I/O: CarbonAwareScaler watch, status, actuation and leader election."""

    enabled: bool = Field(False, description="Off outside a cluster; the Deployment turns it on.")
    kubeconfig: Path | None = Field(
        None, description="None = in-cluster service account, else ~/.kube/config."
    )
    watch_namespace: str | None = Field(
        None, description="None watches CarbonAwareScalers in all namespaces."
    )
    identity: str = Field(
        "", description="Leader-election identity; empty = host name (the pod name in-cluster)."
    )
    lease_name: str = Field("gridshift-scaler", min_length=1, description="One Lease per install.")
    lease_namespace: str = Field(
        "carbon-system", min_length=1, description="The namespace the scaler runs in."
    )
    lease_duration_seconds: int = Field(
        15, ge=2, le=600, description="client-go's default; a dead leader is replaced in 15 s."
    )
    renew_deadline_seconds: float = Field(
        10.0, gt=0, description="client-go's default; must stay below lease_duration_seconds."
    )
    retry_period_seconds: float = Field(
        2.0, gt=0, le=60, description="client-go's default renew/acquire cadence."
    )
    watch_timeout_seconds: int = Field(
        300, ge=1, le=3600, description="Re-issue watches every 5 min, as informers do."
    )
    request_timeout_seconds: float = Field(
        5.0,
        gt=0,
        le=60,
        description="Per API call, so a hung API server never stalls a sync or shutdown; "
        "Lease calls use at most a quarter of renew_deadline_seconds.",
    )

    shards: int = Field(
        0,
        ge=0,
        le=1024,
        description="0: one leader decides for all (Lease lease_name). N > 0: the sharded "
        "scaler, N shards over the live replicas (Leases <lease_name>-shard-<i> and "
        "<lease_name>-member-<identity>); a few per replica, so a dead one's share spreads.",
    )
    watch_scale_targets: bool = Field(
        True,
        description="Read Deployments' and StatefulSets' replicas from a list + watch, not "
        "one GET per workload per tick (10,000 workloads: 10,000 GETs a tick).",
    )
    status_refresh_seconds: float = Field(
        300.0,
        ge=0,
        le=86400,
        description="Status is written when the decision changes; the reasons' figures and "
        "gram counters alone at most this often (5 min: 10,000 CRs cost ~33 writes/s).",
    )

    @model_validator(mode="after")
    def _renew_before_expiry(self) -> KubeSettings:
        if not self.renew_deadline_seconds < self.lease_duration_seconds:
            raise ValueError(
                f"renew_deadline_seconds ({self.renew_deadline_seconds}) must be < "
                f"lease_duration_seconds ({self.lease_duration_seconds})"
            )
        if not self.retry_period_seconds < self.renew_deadline_seconds:
            raise ValueError(
                f"retry_period_seconds ({self.retry_period_seconds}) must be < "
                f"renew_deadline_seconds ({self.renew_deadline_seconds})"
            )
        return self
