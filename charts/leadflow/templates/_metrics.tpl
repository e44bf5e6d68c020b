{{/* The metrics/health container port every component but the dispatcher serves (the dispatcher
keeps its own dispatcher.metricsPort): /metrics, /healthz, /readyz, never a public port. */}}
{{- define "leadflow.metricsPort" -}}
name: metrics
containerPort: {{ int .Values.metrics.port }}
protocol: TCP
{{- end }}

{{/* (dict "root" $ "name" "LEADFLOW_X_METRICS_ADDR"): the env var that binds it. */}}
{{- define "leadflow.metricsEnv" -}}
name: {{ .name }}
value: {{ printf "0.0.0.0:%d" (int .root.Values.metrics.port) | quote }}
{{- end }}
