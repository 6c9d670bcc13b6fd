{{- define "eiplb.labels" -}}
app.kubernetes.io/name: eiplb
app.kubernetes.io/component: {{ . }}
{{- end -}}

{{- define "eiplb.commonArgs" -}}
{{- if ne .Values.loadBalancerClass "eiplb.io/bgp" }}
- --class={{ .Values.loadBalancerClass }}
{{- end }}
{{- if .Values.defaultClass }}
- --serve-services-without-class=true
{{- end }}
{{- if ne (toString .Values.logLevel) "info" }}
- --zap-log-level={{ .Values.logLevel }}
{{- end }}
{{- if not .Values.metrics.secure }}
- --metrics-insecure=true
{{- end }}
{{- end -}}
