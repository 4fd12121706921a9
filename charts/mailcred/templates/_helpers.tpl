{{/* Chart name, truncated to the 63 characters of a label value. */}}
{{- define "mailcred.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Prefix of every object name. */}}
{{- define "mailcred.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* Operator object names (the operator's flags receive the same names). */}}
{{- define "mailcred.operator.fullname" -}}
{{- printf "%s-operator" (include "mailcred.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- define "mailcred.webhook.serviceName" -}}
{{- printf "%s-webhook" (include "mailcred.operator.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- define "mailcred.webhook.tlsSecretName" -}}
{{- printf "%s-webhook-tls" (include "mailcred.operator.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- define "mailcred.webhook.configName" -}}
{{- include "mailcred.operator.fullname" . }}
{{- end }}
{{- define "mailcred.leaseName" -}}
{{- include "mailcred.operator.fullname" . }}
{{- end }}

{{- define "mailcred.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "mailcred.operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "mailcred.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "mailcred.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: mailcred
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "mailcred.selectorLabels" -}}
app.kubernetes.io/name: {{ include "mailcred.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end }}

{{/* repository:tag or repository@digest; the tag defaults to the chart's appVersion. */}}
{{- define "mailcred.image" -}}
{{- if .image.digest }}
{{- printf "%s@%s" .image.repository .image.digest }}
{{- else }}
{{- printf "%s:%s" .image.repository (default .appVersion .image.tag) }}
{{- end }}
{{- end }}

{{- define "mailcred.operator.image" -}}
{{- include "mailcred.image" (dict "image" .Values.operator.image "appVersion" .Chart.AppVersion) }}
{{- end }}
{{- define "mailcred.sidecar.image" -}}
{{- include "mailcred.image" (dict "image" .Values.sidecar.image "appVersion" .Chart.AppVersion) }}
{{- end }}

{{- define "mailcred.selfSigned" -}}
{{- eq .Values.webhook.tls.mode "self-signed" }}
{{- end }}
{{- define "mailcred.certificateName" -}}
{{- printf "%s-webhook" (include "mailcred.operator.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The registration page (linkpage): its own names, labels and image. */}}
{{- define "mailcred.linkpage.fullname" -}}
{{- printf "%s-linkpage" (include "mailcred.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- define "mailcred.linkpage.selectorLabels" -}}
app.kubernetes.io/name: {{ include "mailcred.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: linkpage
{{- end }}
{{- define "mailcred.linkpage.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "mailcred.linkpage.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: mailcred
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}
{{- define "mailcred.linkpage.image" -}}
{{- include "mailcred.image" (dict "image" .Values.linkpage.image "appVersion" .Chart.AppVersion) }}
{{- end }}
