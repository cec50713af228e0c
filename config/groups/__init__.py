"""The settings groups, one module each (`prometheus`, `carbon`, `forecast`, `scaler`,
`extender`, `serving` for `server`/`metrics_api`/`keda`, `kube`), on the frozen `Group` base.
`config.settings` assembles them into `Settings` and re-exports every one."""

__all__: list[str] = []
