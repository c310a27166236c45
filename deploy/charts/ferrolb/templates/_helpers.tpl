{{/* Labels every object carries. */}}
{{- define "ferrolb.labels" -}}
app.kubernetes.io/name: ferrolb
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* Selector labels of a component. */}}
{{- define "ferrolb.selector" -}}
app.kubernetes.io/name: ferrolb
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "ferrolb.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{/* The frr container's image: the ferrolb image unless speaker.frr.image says otherwise. */}}
{{- define "ferrolb.frrImage" -}}
{{- with .Values.speaker.frr.image -}}
{{ .repository }}:{{ .tag }}
{{- else -}}
{{ include "ferrolb.image" . }}
{{- end -}}
{{- end -}}

{{/* Flags both components take. */}}
{{- define "ferrolb.commonArgs" -}}
- --log-format={{ .Values.logFormat }}
{{- with .Values.loadBalancerClass }}
- --lb-class={{ . }}
{{- end }}
{{- end -}}
