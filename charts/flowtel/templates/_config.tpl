{{/*
The default config of each mode. `config`, then `agent.config` or
`gateway.config`, are merged over it (maps key by key; lists and values
replace).
*/}}

{{- define "flowtel.agentDefault" -}}
receivers:
  ebpf:
    interfaces: []
    flush_interval: 10s
  otlp:
    protocols:
      grpc: {endpoint: "${env:MY_POD_IP}:{{ .Values.ports.otlpGrpc }}"}
      http: {endpoint: "${env:MY_POD_IP}:{{ .Values.ports.otlpHttp }}"}
processors:
  memory_limiter: {limit_percentage: 80, spike_limit_percentage: 20}
  k8s_attributes:
    auth_type: serviceAccount
    filter: {node_from_env_var: K8S_NODE_NAME}
  host_attributes: {}
  # A pod's traffic crosses its veth and the NIC: count it once.
  log_dedup: {flow_mode: true}
  batch: {timeout: 1s}
exporters:
{{- if eq .Values.mode "both" }}
  otlp_grpc:
    endpoint: "{{ include "flowtel.fullname" . }}-gateway.{{ .Release.Namespace }}.svc:{{ .Values.ports.otlpGrpc }}"
    tls: {insecure: {{ .Values.otlpInsecure }}}
{{- else if .Values.otlpEndpoint }}
  otlp_grpc:
    endpoint: {{ .Values.otlpEndpoint | quote }}
    tls: {insecure: {{ .Values.otlpInsecure }}}
{{- else }}
  debug: {verbosity: basic}
{{- end }}
  hubble:
    endpoint: "${env:MY_POD_IP}:{{ .Values.ports.hubble }}"
service:
  telemetry:
    metrics: {address: "${env:MY_POD_IP}:{{ .Values.ports.metrics }}"}
  pipelines:
    logs:
      receivers: [ebpf, otlp]
      processors: [memory_limiter, host_attributes, k8s_attributes, log_dedup, batch]
      exporters: [{{ if or (eq .Values.mode "both") .Values.otlpEndpoint }}otlp_grpc{{ else }}debug{{ end }}, hubble]
    metrics:
      receivers: [ebpf, otlp]
      processors: [memory_limiter, k8s_attributes, batch]
      exporters: [{{ if or (eq .Values.mode "both") .Values.otlpEndpoint }}otlp_grpc{{ else }}debug{{ end }}]
    traces:
      receivers: [otlp]
      processors: [memory_limiter, k8s_attributes, batch]
      exporters: [{{ if or (eq .Values.mode "both") .Values.otlpEndpoint }}otlp_grpc{{ else }}debug{{ end }}]
{{- end -}}

{{- define "flowtel.gatewayDefault" -}}
receivers:
  otlp:
    protocols:
      grpc: {endpoint: "${env:MY_POD_IP}:{{ .Values.ports.otlpGrpc }}"}
      http: {endpoint: "${env:MY_POD_IP}:{{ .Values.ports.otlpHttp }}"}
processors:
  memory_limiter: {limit_percentage: 80, spike_limit_percentage: 20}
  # Agents described their records already; applications' resources are
  # found by their connection.
  k8s_attributes:
    auth_type: serviceAccount
  batch: {send_batch_size: 8192, timeout: 1s}
exporters:
{{- if .Values.otlpEndpoint }}
  otlp_grpc:
    endpoint: {{ .Values.otlpEndpoint | quote }}
    tls: {insecure: {{ .Values.otlpInsecure }}}
    sending_queue: {sizer: bytes, queue_size: 268435456}
{{- else }}
  debug: {verbosity: basic}
{{- end }}
  hubble:
    endpoint: "${env:MY_POD_IP}:{{ .Values.ports.hubble }}"
service:
  telemetry:
    metrics: {address: "${env:MY_POD_IP}:{{ .Values.ports.metrics }}"}
  pipelines:
    logs:
      receivers: [otlp]
      processors: [memory_limiter, k8s_attributes, batch]
      exporters: [{{ if .Values.otlpEndpoint }}otlp_grpc{{ else }}debug{{ end }}, hubble]
    metrics:
      receivers: [otlp]
      processors: [memory_limiter, k8s_attributes, batch]
      exporters: [{{ if .Values.otlpEndpoint }}otlp_grpc{{ else }}debug{{ end }}]
    traces:
      receivers: [otlp]
      processors: [memory_limiter, k8s_attributes, batch]
      exporters: [{{ if .Values.otlpEndpoint }}otlp_grpc{{ else }}debug{{ end }}]
{{- end -}}

{{/* A component's config: pass (list $ "agent") or (list $ "gateway"). */}}
{{- define "flowtel.config" -}}
{{- $ := index . 0 -}}
{{- $component := index . 1 -}}
{{- $default := include (printf "flowtel.%sDefault" $component) $ | fromYaml -}}
{{- $own := index $.Values $component -}}
{{- $config := mustMergeOverwrite $default (deepCopy $.Values.config) (deepCopy $own.config) -}}
{{- if not $config.exporters -}}
{{- fail (printf "the %s's config has no exporters: flowtel needs at least one" $component) -}}
{{- end -}}
{{- toYaml $config -}}
{{- end -}}
