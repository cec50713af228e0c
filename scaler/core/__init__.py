"""The scaler's pure core: workloads, the replica/mode policy, carbon accounting, Kubernetes
quantities and label selectors, snapshot history. No I/O, no clock (an import contract in
pyproject.toml guards every module of this package)."""
