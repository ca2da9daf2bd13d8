{{/* Names, labels, images and URLs shared by every template. */}}

{{- define "wattwise.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The prefix of every object name; kept short enough for "<fullname>-scheduler" (53 chars max). */}}
{{- define "wattwise.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 42 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 42 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 42 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "wattwise.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels of every object; call with (dict "root" $ "component" "operator"). */}}
{{- define "wattwise.labels" -}}
helm.sh/chart: {{ include "wattwise.chart" .root }}
{{ include "wattwise.selectorLabels" . }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/part-of: wattwise
{{- with .root.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* The labels a selector matches: stable across upgrades (never the version). */}}
{{- define "wattwise.selectorLabels" -}}
app.kubernetes.io/name: {{ include "wattwise.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "wattwise.componentName" -}}
{{- printf "%s-%s" (include "wattwise.fullname" .root) .component -}}
{{- end -}}

{{- define "wattwise.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository $tag -}}
{{- end -}}
{{- end -}}

{{/* kube-scheduler must match the cluster: v1.31.4-eks-1234 becomes v1.31.4. */}}
{{- define "wattwise.schedulerImage" -}}
{{- $tag := .Values.scheduler.image.tag -}}
{{- if not $tag -}}
{{- $tag = regexReplaceAll "^(v[0-9]+\\.[0-9]+\\.[0-9]+).*$" .Capabilities.KubeVersion.Version "${1}" -}}
{{- end -}}
{{- printf "%s:%s" .Values.scheduler.image.repository $tag -}}
{{- end -}}

{{- define "wattwise.operatorURL" -}}
{{- $scheme := ternary "https" "http" (not (empty .Values.operator.tls.secretName)) -}}
{{- printf "%s://%s.%s.svc:%d" $scheme (include "wattwise.componentName" (dict "root" . "component" "operator")) .Release.Namespace (int .Values.operator.port) -}}
{{- end -}}

{{/* Where the agents and the extender find the operator's CA (only with operator.tls.secretName). */}}
{{- define "wattwise.operatorCAFile" -}}
/etc/wattwise/operator-ca/ca.crt
{{- end -}}

{{- define "wattwise.operatorCAVolume" -}}
- name: operator-ca
  secret:
    secretName: {{ .Values.operator.tls.secretName }}
    items:
      - key: ca.crt
        path: ca.crt
{{- end -}}

{{- define "wattwise.operatorCAMount" -}}
- name: operator-ca
  mountPath: /etc/wattwise/operator-ca
  readOnly: true
{{- end -}}

{{- define "wattwise.extenderURL" -}}
{{- printf "http://%s.%s.svc:%d" (include "wattwise.componentName" (dict "root" . "component" "extender")) .Release.Namespace (int .Values.extender.port) -}}
{{- end -}}

{{/* The restricted Pod Security Standard, for every container that needs no device access. */}}
{{- define "wattwise.restrictedContainerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "wattwise.restrictedPodSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
fsGroup: 65532
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "wattwise.imagePullSecrets" -}}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
{{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* The KubeSchedulerConfiguration of the secondary scheduler (see templates/scheduler.yaml). */}}
{{- define "wattwise.schedulerConfig" -}}
apiVersion: kubescheduler.config.k8s.io/v1
kind: KubeSchedulerConfiguration
leaderElection:
  leaderElect: true
  resourceName: {{ .Values.scheduler.name }}
  resourceNamespace: {{ .Release.Namespace }}
profiles:
- schedulerName: {{ .Values.scheduler.name }}
extenders:
- urlPrefix: {{ include "wattwise.extenderURL" . }}
  filterVerb: filter
  prioritizeVerb: prioritize
  weight: 10
  nodeCacheCapable: true
  enableHTTPS: false
  httpTimeout: 5s
  ignorable: false
  managedResources:
  - name: nvidia.com/gpu
    ignoredByScheduler: false
{{- end -}}
