{{- define "tocsin.fullname" -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "tocsin.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "tocsin.broker" -}}
{{- if .Values.mqtt.broker -}}
{{ .Values.mqtt.broker }}
{{- else if .Values.mosquitto.enabled -}}
tcp://{{ include "tocsin.fullname" . }}-mosquitto:1883
{{- else -}}
{{ fail "set mqtt.broker, or mosquitto.enabled" }}
{{- end -}}
{{- end -}}
