"""The operator (`wattwise operator`): reconciles PowerBudgets and WorkloadClasses into GPU power limits.

Layout, pure logic first, I/O last:

- `records`, `pods`, `policy_inputs`, `replies`, `above_cap`, `conditions`, `budget_status`, `live`, `controller`:
  no I/O. The cluster as the operator knows it, how it becomes the policy's inputs, and what one control tick
  produces (replies for agents, the live state, status patches, Events).
- `auth`, `kube`, `app`, `metrics`, `control_loop`, `handlers`, `peering`, `runtime`, `cli`: I/O. TokenReview,
  the Kubernetes API, the FastAPI ingest/state app, Prometheus, the 1 Hz loop, kopf, and the process itself.
"""
