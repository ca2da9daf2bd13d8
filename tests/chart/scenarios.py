"""Named value sets the chart is rendered with: the default install and the switches users actually flip.

Every structural, schema and server-side test runs over all of them, so a template branch that only a
non-default value reaches is checked as hard as the default path.
"""

from __future__ import annotations

from typing import Any

#: (release, namespace, values)
Scenario = tuple[str, str, dict[str, Any]]

SCENARIOS: dict[str, Scenario] = {
    "default": ("wattwise", "wattwise-system", {}),
    # Clusters without GPUs: simulated GPUs, agents on every node, restricted security context.
    "sim": ("wattwise", "wattwise-system", {"agent": {"backend": "sim", "sim": {"gpus": 4, "model": "a100"}}}),
    # Measuring-only agents on nodes whose default runtime is already nvidia.
    "nvml-measure-only": (
        "wattwise",
        "wattwise-system",
        {"agent": {"setPowerLimits": False, "runtimeClassName": "", "podResources": {"enabled": False}}},
    ),
    # Everything optional on, pinned by digest, placement knobs set, another release and namespace.
    "everything": (
        "power",
        "gpu-power",
        {
            "commonLabels": {"team": "platform"},
            "image": {"digest": "sha256:" + "ab" * 32},
            "imagePullSecrets": [{"name": "registry"}],
            "operator": {
                "replicas": 3,
                "podDisruptionBudget": {"enabled": True, "minAvailable": 1},
                "tls": {"secretName": "power-operator-tls"},
                "extraEnv": [{"name": "EXTRA", "value": "1"}],
                "priorityClassName": "system-cluster-critical",
                "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "infra", "effect": "NoSchedule"}],
                "nodeSelector": {"node-role.kubernetes.io/infra": ""},
            },
            "defaultTier": "tolerant",
            "extender": {"replicas": 3, "podAnnotations": {"a": "b"}},
            "scheduler": {"name": "power-aware", "replicas": 2, "image": {"tag": "v1.37.2"}},
            "agent": {
                "priorityClassName": "system-node-critical",
                "affinity": {
                    "nodeAffinity": {
                        "requiredDuringSchedulingIgnoredDuringExecution": {
                            "nodeSelectorTerms": [
                                {"matchExpressions": [{"key": "gpu", "operator": "In", "values": ["h100"]}]}
                            ]
                        }
                    }
                },
                "updateStrategy": {"maxUnavailable": 2},
            },
            "networkPolicy": {
                "enabled": True,
                "metricsFrom": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}],
                "extenderFrom": [{"ipBlock": {"cidr": "10.0.0.0/24"}}],
            },
            "serviceMonitor": {"enabled": True, "labels": {"release": "kube-prometheus-stack"}},
            "dashboard": {"enabled": True, "namespace": "monitoring"},
        },
    ),
    # Operator alone (the extender and its scheduler off, no PDBs).
    "operator-only": (
        "ww",
        "wattwise-system",
        {
            "operator": {"replicas": 1},
            "extender": {"enabled": False},
            "scheduler": {"enabled": False},
            "agent": {"enabled": False},
        },
    ),
}

#: Kinds defined by CRDs (the Prometheus Operator's, kopf's), not by Kubernetes itself: the offline Kubernetes
#: schemas do not know them. kopf's CRD ships with the chart; the API server checks that one (test_on_apiserver).
CRD_KINDS = frozenset({"ServiceMonitor", "PodMonitor", "ClusterKopfPeering"})
PROMETHEUS_OPERATOR_KINDS = frozenset({"ServiceMonitor", "PodMonitor"})
