"""Telemetry shared by the node agent and the operator: the agent <-> operator wire schema (`wire`)."""
