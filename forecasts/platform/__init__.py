"""Shared I/O plumbing below `scaler` and `extender` (which may not import each other).

- `errors`: the `SourceError` tree every I/O edge raises.
- `http`: the outbound HTTP client (timeouts, retries with jittered backoff, limits, caching).
- `tls`: certificate/key files re-read on change, for listeners and clients.
- `serving`: `HOST:PORT` parsing and the uvicorn bootstrap of a Starlette app.
- `listener`: the bounded HTTP listener every server runs on (limits, deadlines, cap).
- `signals`: Ctrl-C like SIGTERM: a clean stop for every long-running command.
- `reflector`: list + watch of one Kubernetes resource kind into a store (client-go style).
- `kubeclient`: the Kubernetes ApiClient whose answers are read within a byte cap and a deadline.

Nothing here knows a carbon provider, a workload or a node: that is the rooms above.
"""
