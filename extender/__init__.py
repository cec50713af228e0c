"""The kube-scheduler extender (filter/prioritize by carbon and GPU energy) and the GPU agent."""

__all__: list[str] = []
