"""Replay: gridshift's tick and its peers side by side over recorded demand and carbon.

`model` (scenario and result values), `policies` (peers, oracle, scoring; pure), `engine`
(drives `ScalerLoop.tick()` with a `SteppingClock` over trace sources), `summary` (totals,
savings and the gap to the oracle as plain data).
"""

__all__: list[str] = []
