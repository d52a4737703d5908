{{- define "petset.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "petset.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "petset.labels" -}}
{{ include "petset.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "petset.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "petset.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* What the operator does with the API, as RBAC rules: exactly enough, nothing more. */}}
{{- define "petset.rules" -}}
- apiGroups: ["petset.dev"]
  resources: ["petsets"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["petset.dev"]
  resources: ["petsets/status"]
  verbs: ["patch"]
- apiGroups: ["petset.dev"]
  resources: ["petsets/finalizers"]
  verbs: ["update"]
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["get", "list", "watch", "create", "delete", "patch"]
- apiGroups: [""]
  resources: ["persistentvolumeclaims"]
  verbs: ["get", "list", "watch", "create", "patch"]
- apiGroups: ["apps"]
  resources: ["controllerrevisions"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
# Clustering: the peers ConfigMap, the governing and leader Services, the election Lease.
- apiGroups: [""]
  resources: ["configmaps", "services"]
  verbs: ["get", "list", "watch", "create", "patch"]
- apiGroups: ["coordination.k8s.io"]
  resources: ["leases"]
  verbs: ["get", "list", "watch", "create"]
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- end -}}

{{/*
The oldest Kubernetes petset runs on. Checked here rather than as the chart's kubeVersion:
`helm template` without --kube-version renders for Helm's built-in v1.20.0, which says
nothing about the cluster the output is for, so that one version is let through.
*/}}
{{- define "petset.checkKubeVersion" -}}
{{- $version := .Capabilities.KubeVersion.Version -}}
{{- if and (ne $version "v1.20.0") (semverCompare "<1.33.0-0" $version) -}}
{{- fail (printf "petset needs Kubernetes 1.33 or newer, not %s" $version) -}}
{{- end -}}
{{- end -}}
