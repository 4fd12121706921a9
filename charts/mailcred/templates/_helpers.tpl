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

{{/*
Env names the operator sets on the sidecar itself (core/src/sidecar_contract.rs RESERVED_ENV;
charts/render-check.py fails when the two lists differ).
*/}}
{{- define "mailcred.sidecarReservedEnv" -}}
POD_NAME POD_NAMESPACE MAILCRED_SERVICE_ACCOUNT MAILCRED_SMTP_LISTEN MAILCRED_IMAP_LISTEN MAILCRED_ADMIN_LISTEN MAILCRED_METRICS_LISTEN MAILCRED_CACHE_TTL_SECONDS MAILCRED_TRUSTED_KMS_ENDPOINTS MAILCRED_CREDENTIALS MAILCRED_ACCOUNT_SET MAILCRED_APP_TOKEN_FILE MAILCRED_REGISTRATION_LISTEN
{{- end }}

{{/*
Refuses, at template time, extra env, volumes and mounts that would replace the chart's own:
the operator would otherwise crash-loop on them (or silently lose its TLS or /tmp).
*/}}
{{- define "mailcred.checkExtras" -}}
{{- $op := .Values.operator }}
{{- $reservedSidecar := splitList " " (include "mailcred.sidecarReservedEnv" .) }}
{{- range $name, $_ := .Values.sidecar.extraEnv }}
{{- if has $name $reservedSidecar }}
{{- fail (printf "sidecar.extraEnv.%s: %s is set by the operator on every sidecar; use the matching chart value (sidecar.ports, sidecar.cacheTTLSeconds, sidecar.trustedKmsEndpoints, sidecar.metrics) instead" $name $name) }}
{{- end }}
{{- end }}
{{- if hasKey .Values.sidecar.extraEnv "RUST_LOG" }}
{{- if .Values.sidecar.logLevel }}
{{- fail "sidecar.extraEnv.RUST_LOG and sidecar.logLevel both set the sidecar's RUST_LOG; keep sidecar.logLevel" }}
{{- end }}
{{- end }}
{{- range $op.extraEnv }}
{{- if has .name (list "POD_NAMESPACE" "POD_NAME") }}
{{- fail (printf "operator.extraEnv: %s is set by the chart from the downward API and cannot be replaced" .name) }}
{{- end }}
{{- end }}
{{- range $op.extraVolumes }}
{{- if has .name (list "tmp" "webhook-tls") }}
{{- fail (printf "operator.extraVolumes: the volume name %q is the chart's own (tmp, webhook-tls); pick another name" .name) }}
{{- end }}
{{- end }}
{{- range $op.extraVolumeMounts }}
{{- if has .name (list "tmp" "webhook-tls") }}
{{- fail (printf "operator.extraVolumeMounts: the volume name %q is the chart's own (tmp, webhook-tls); pick another name" .name) }}
{{- end }}
{{- if has (trimSuffix "/" .mountPath) (list "/tmp" "/tls") }}
{{- fail (printf "operator.extraVolumeMounts: %s is where the chart mounts its own volume (/tmp, /tls); pick another path" .mountPath) }}
{{- end }}
{{- end }}
{{- if .Values.sidecar.metrics.enabled }}
{{- if has (int .Values.sidecar.metrics.port) (list (int .Values.sidecar.ports.smtp) (int .Values.sidecar.ports.imap) (int .Values.sidecar.ports.admin)) }}
{{- fail (printf "sidecar.metrics.port %d is one of sidecar.ports; the metrics listener binds 0.0.0.0:%d, pick another port" (int .Values.sidecar.metrics.port) (int .Values.sidecar.metrics.port)) }}
{{- end }}
{{- end }}
{{- if and .Values.podMonitor.enabled (not .Values.sidecar.metrics.enabled) }}
{{- fail "podMonitor.enabled needs sidecar.metrics.enabled: without it the sidecars have no port to scrape" }}
{{- end }}
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
