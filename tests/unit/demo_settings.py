"""A `Settings` subclass with the shapes the real groups will grow (secrets, maps, lists, a
cross-field rule), so the loader's behaviour is tested independently of today's fields."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from config.settings import Settings

__all__ = ["DemoSettings", "RegionDemo", "VaultDemo"]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)


class RegionDemo(_Frozen):
    model_config = ConfigDict(populate_by_name=True)
    zone: str
    api_key: SecretStr | None = None
    region_class: str = Field("standard", alias="class")


class VaultDemo(_Frozen):
    url: str = "http://127.0.0.1:8200"
    token: SecretStr | None = None
    password: SecretStr | None = None
    min_replicas: int = Field(1, ge=0)
    max_replicas: int = Field(10, ge=1)
    zones: list[str] = Field(default_factory=list)
    regions: dict[str, RegionDemo] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _bounds(self) -> VaultDemo:
        if self.min_replicas > self.max_replicas:
            raise ValueError("min_replicas must be <= max_replicas")
        return self


class DemoSettings(Settings):
    vault: VaultDemo = VaultDemo()
