"""The node agent (`wattwise agent`): a DaemonSet that samples every GPU through NVML at 1 Hz, maps GPUs to
pods through the kubelet PodResources API, reports to the operator, applies the power limits in its replies
(falling back to the budget's fail-safe when the operator is gone), and exposes Prometheus metrics.

Layers, lowest first: `nvml` (every NVML call and error) < `backend` (GPU readings and setters; `simnvml` is
the simulated bindings) < `actuation`, `link`, `podresources` (decisions, pure where possible) < `agent` (the
loop) < `metrics`, `server`, `reporter` (I/O) < `cli`.
"""
