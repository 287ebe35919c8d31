{{/* A component's pod template: pass (list $ "agent") or (list $ "gateway"). */}}
{{- define "flowtel.pod" -}}
{{- $ := index . 0 -}}
{{- $component := index . 1 -}}
{{- $own := index $.Values $component -}}
metadata:
  labels:
    {{- include "flowtel.selector" (list $ $component) | nindent 4 }}
    {{- with $.Values.podLabels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  annotations:
    # A changed config rolls the pods.
    checksum/config: {{ include "flowtel.config" (list $ $component) | sha256sum }}
    {{- with $.Values.podAnnotations }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
spec:
  serviceAccountName: {{ include "flowtel.serviceAccountName" $ }}
  {{- with $.Values.imagePullSecrets }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- if eq $component "agent" }}
  # The node's interfaces, and every process's sockets for host_attributes.
  hostNetwork: true
  hostPID: true
  dnsPolicy: ClusterFirstWithHostNet
  {{- with $own.priorityClassName }}
  priorityClassName: {{ . }}
  {{- end }}
  {{- end }}
  {{- $tolerations := concat (default (list) $own.tolerations) $.Values.tolerations }}
  {{- with $tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $.Values.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $.Values.affinity }}
  affinity:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  containers:
    - name: flowtel
      image: {{ include "flowtel.image" $ }}
      imagePullPolicy: {{ $.Values.image.pullPolicy }}
      args: [--config, /etc/flowtel/otel-config.yaml]
      env:
        - name: MY_POD_IP
          valueFrom: {fieldRef: {fieldPath: status.podIP}}
        - name: K8S_NODE_NAME
          valueFrom: {fieldRef: {fieldPath: spec.nodeName}}
      ports:
        - {name: otlp-grpc, containerPort: {{ $.Values.ports.otlpGrpc }}}
        - {name: otlp-http, containerPort: {{ $.Values.ports.otlpHttp }}}
        - {name: hubble, containerPort: {{ $.Values.ports.hubble }}}
        - {name: metrics, containerPort: {{ $.Values.ports.metrics }}}
      readinessProbe:
        httpGet: {path: /readyz, port: metrics}
      livenessProbe:
        httpGet: {path: /healthz, port: metrics}
      resources:
        {{- toYaml $own.resources | nindent 8 }}
      securityContext:
        {{- if eq $component "agent" }}
        {{- include "flowtel.securityContext" $ | nindent 8 }}
        {{- else }}
        # The gateway loads no kernel programs.
        capabilities: {drop: [ALL]}
        allowPrivilegeEscalation: false
        {{- end }}
      volumeMounts:
        - {name: config, mountPath: /etc/flowtel}
        {{- if eq $component "agent" }}
        - {name: bpffs, mountPath: /sys/fs/bpf}
        - {name: tracefs, mountPath: /sys/kernel/tracing}
        - {name: btf, mountPath: /sys/kernel/btf, readOnly: true}
        {{- end }}
  volumes:
    - name: config
      configMap: {name: {{ include "flowtel.fullname" $ }}-{{ $component }}}
    {{- if eq $component "agent" }}
    - name: bpffs
      hostPath: {path: /sys/fs/bpf}
    - name: tracefs
      hostPath: {path: /sys/kernel/tracing}
    - name: btf
      hostPath: {path: /sys/kernel/btf}
    {{- end }}
{{- end -}}
