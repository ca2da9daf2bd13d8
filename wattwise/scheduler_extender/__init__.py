"""The scheduler extender (`wattwise extender`): kube-scheduler asks it which GPU nodes have power for a pod.

Layers, lowest first; a module imports only from layers below it:
`protocol` (wire format) -> `pod_power`, `scoring`, `reservations`, `snapshot` (pure) -> `placement`
(the rules) -> `state_cache`, `metrics` -> `service` (one call, no HTTP) -> `app` (FastAPI) -> `cli`.
`schedconfig` renders the KubeSchedulerConfiguration that points a scheduler profile at it.
"""
