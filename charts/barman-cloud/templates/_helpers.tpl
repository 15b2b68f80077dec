{{/* The plugin's name: CloudNativePG's key for it (Service label, Cluster.spec.plugins[].name). */}}
{{- define "barman-cloud.pluginName" -}}
barman-cloud.cloudnative-pg.io
{{- end }}

{{- define "barman-cloud.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "barman-cloud.fullname" -}}
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

{{- define "barman-cloud.namespace" -}}
{{- default .Release.Namespace .Values.namespaceOverride }}
{{- end }}

{{- define "barman-cloud.selectorLabels" -}}
app.kubernetes.io/name: {{ include "barman-cloud.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "barman-cloud.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "barman-cloud.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: barman-cloud-plugin
{{- end }}

{{- define "barman-cloud.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "barman-cloud.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* An image reference from {registry, repository, tag, digest} and a default tag. */}}
{{- define "barman-cloud.imageRef" -}}
{{- $ref := .image.repository }}
{{- if .image.registry }}
{{- $ref = printf "%s/%s" (trimSuffix "/" .image.registry) .image.repository }}
{{- end }}
{{- if .image.digest }}
{{- printf "%s@%s" $ref .image.digest }}
{{- else }}
{{- printf "%s:%s" $ref (toString (.image.tag | default .defaultTag)) }}
{{- end }}
{{- end }}

{{- define "barman-cloud.image" -}}
{{- include "barman-cloud.imageRef" (dict "image" .Values.image "defaultTag" .Chart.AppVersion) }}
{{- end }}

{{/* The sidecar image: sidecarImage.*, each empty field taken from image.* (one image). */}}
{{- define "barman-cloud.sidecarImage" -}}
{{- $sidecar := .Values.sidecarImage }}
{{- if $sidecar.repository }}
{{- include "barman-cloud.imageRef" (dict "image" $sidecar "defaultTag" .Chart.AppVersion) }}
{{- else }}
{{- $image := dict
  "registry" .Values.image.registry
  "repository" .Values.image.repository
  "tag" (default .Values.image.tag $sidecar.tag)
  "digest" (default .Values.image.digest $sidecar.digest) }}
{{- include "barman-cloud.imageRef" (dict "image" $image "defaultTag" .Chart.AppVersion) }}
{{- end }}
{{- end }}

{{/* The issuer of both certificates. */}}
{{- define "barman-cloud.issuerName" -}}
{{- if .Values.certificate.createIssuer }}
{{- printf "%s-%s" (include "barman-cloud.fullname" .) .Values.certificate.issuerName | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- .Values.certificate.issuerName }}
{{- end }}
{{- end }}

{{- define "barman-cloud.issuerKind" -}}
{{- if .Values.certificate.createIssuer }}Issuer{{ else }}{{ .Values.certificate.issuerKind }}{{ end }}
{{- end }}
