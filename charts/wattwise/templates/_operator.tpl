{{/*
The operator's permissions: what it reads, what it writes, and nothing else. Kept in one place so the RBAC test
(tests/chart/test_rbac.py) and the operator's own list (wattwise/operator) can be compared with it.
*/}}
{{- define "wattwise.operatorClusterRules" -}}
# Its own resources: watch them, keep kopf's finalizers and progress annotations on them, write their status.
- apiGroups: ["wattwise.dev"]
  resources: ["powerbudgets", "workloadclasses"]
  verbs: ["get", "list", "watch", "patch"]
- apiGroups: ["wattwise.dev"]
  resources: ["powerbudgets/status", "workloadclasses/status"]
  verbs: ["get", "patch", "update"]
# Which nodes each budget holds (nodeSelector), and which pods hold which GPUs with which tier.
- apiGroups: [""]
  resources: ["nodes", "pods"]
  verbs: ["get", "list", "watch"]
# Events on budgets (OverBudget, floors do not fit) and on pods (annotations that could not be used).
- apiGroups: ["", "events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
# Agent reports carry a projected ServiceAccount token: verify it and the node it is bound to.
- apiGroups: ["authentication.k8s.io"]
  resources: ["tokenreviews"]
  verbs: ["create"]
# kopf discovers and follows the CRDs it serves (read-only).
- apiGroups: ["apiextensions.k8s.io"]
  resources: ["customresourcedefinitions"]
  verbs: ["list", "watch"]
{{- end -}}

{{/* Namespaced permissions in the release namespace (peering between the operator replicas). */}}
{{- define "wattwise.operatorNamespaceRules" -}}
{{- end -}}

{{- define "wattwise.operatorArgs" -}}
- operator
- --port={{ .Values.operator.port }}
- --log-level={{ .Values.operator.logLevel }}
{{- end -}}
