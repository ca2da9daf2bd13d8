{{/*
The operator's permissions: the list the operator's own cluster tests run under (deploy/rbac/operator.yaml, which
says what each rule is for), with peering get/patch narrowed to the release's own ClusterKopfPeering.
tests/chart/test_wiring.py checks the two grant the same verbs; test_on_apiserver.py asks the API server
(SubjectAccessReview: allowed and denied lists) and runs the operator under this ServiceAccount.
*/}}
{{- define "wattwise.operatorClusterRules" -}}
# PowerBudget and WorkloadClass: kopf watches them and keeps its progress annotations on them (patch); the
# control loop writes their status. The operator never creates or deletes them.
- apiGroups: ["wattwise.dev"]
  resources: ["powerbudgets", "workloadclasses"]
  verbs: ["get", "list", "watch", "patch"]
- apiGroups: ["wattwise.dev"]
  resources: ["powerbudgets/status", "workloadclasses/status"]
  verbs: ["get", "patch"]
# Nodes (labels, GPU capacity: which budgets hold them) and GPU pods (tier, class, node): read-only.
- apiGroups: [""]
  resources: ["nodes", "pods"]
  verbs: ["get", "list", "watch"]
# Events on budgets (in `default`, they are cluster-scoped) and on pods whose annotations could not be used.
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create"]
# Agent reports carry a projected ServiceAccount token: the operator asks the API server who sent it.
- apiGroups: ["authentication.k8s.io"]
  resources: ["tokenreviews"]
  verbs: ["create"]
# kopf follows CRDs appearing and going away (read-only).
- apiGroups: ["apiextensions.k8s.io"]
  resources: ["customresourcedefinitions"]
  verbs: ["get", "list", "watch"]
# kopf peering: watch the peering objects, keep alive in the release's own (get/patch by name only).
- apiGroups: ["kopf.dev"]
  resources: ["clusterkopfpeerings"]
  verbs: ["list", "watch"]
- apiGroups: ["kopf.dev"]
  resources: ["clusterkopfpeerings"]
  resourceNames: [{{ include "wattwise.peeringName" . | quote }}]
  verbs: ["get", "patch"]
{{- end -}}

{{/* The ClusterKopfPeering object the operator replicas share: one per release. */}}
{{- define "wattwise.peeringName" -}}
{{- include "wattwise.fullname" . -}}
{{- end -}}

{{- define "wattwise.operatorArgs" -}}
- operator
- --listen=0.0.0.0:{{ .Values.operator.port }}
- --agent-service-account={{ .Release.Namespace }}/{{ include "wattwise.componentName" (dict "root" . "component" "agent") }}
- --peering={{ include "wattwise.peeringName" . }}
- --default-tier={{ .Values.defaultTier }}
- --stale-after={{ .Values.operator.staleAfterSeconds }}
- --status-interval={{ .Values.operator.statusIntervalSeconds }}
- --log-level={{ .Values.operator.logLevel | upper }}
{{- if .Values.operator.tls.secretName }}
- --tls-cert=/etc/wattwise/tls/tls.crt
- --tls-key=/etc/wattwise/tls/tls.key
{{- end }}
{{- end -}}
