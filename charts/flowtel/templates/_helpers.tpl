{{/* The release's full name. */}}
{{- define "flowtel.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* Labels every object carries. */}}
{{- define "flowtel.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* Selector labels of one component (agent or gateway): pass (list $ "agent"). */}}
{{- define "flowtel.selector" -}}
app.kubernetes.io/name: {{ (index . 0).Chart.Name }}
app.kubernetes.io/instance: {{ (index . 0).Release.Name }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end -}}

{{- define "flowtel.serviceAccountName" -}}
{{- default (include "flowtel.fullname" .) .Values.serviceAccount.name -}}
{{- end -}}

{{- define "flowtel.image" -}}
{{- $repository := required "image.repository is required" .Values.image.repository -}}
{{- printf "%s:%s" $repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{- define "flowtel.modeValid" -}}
{{- if not (has .Values.mode (list "daemonset" "deployment" "both")) -}}
{{- fail (printf "mode must be daemonset, deployment or both, not %q" .Values.mode) -}}
{{- end -}}
{{- end -}}

{{/* Whether the agent runs. */}}
{{- define "flowtel.agent" -}}{{ if has .Values.mode (list "daemonset" "both") }}true{{ end }}{{- end -}}
{{/* Whether the gateway runs. */}}
{{- define "flowtel.gateway" -}}{{ if has .Values.mode (list "deployment" "both") }}true{{ end }}{{- end -}}

{{/* The container's security context. */}}
{{- define "flowtel.securityContext" -}}
{{- if .Values.privileged -}}
privileged: true
{{- else -}}
{{ toYaml .Values.securityContext }}
{{- end -}}
{{- end -}}
