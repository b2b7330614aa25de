{{/* Chart name, truncated to the 63 characters a label value allows. */}}
{{- define "ingestion-exporter.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Name of the release's objects: the release name, prefixed with the chart name unless it contains it. */}}
{{- define "ingestion-exporter.fullname" -}}
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

{{/* Chart name and version, for the helm.sh/chart label. */}}
{{- define "ingestion-exporter.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels that select the pods; never change them in an upgrade. */}}
{{- define "ingestion-exporter.selectorLabels" -}}
app.kubernetes.io/name: {{ include "ingestion-exporter.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Labels on every object. */}}
{{- define "ingestion-exporter.labels" -}}
helm.sh/chart: {{ include "ingestion-exporter.chart" . }}
{{ include "ingestion-exporter.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | trunc 63 | trimSuffix "-" | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: ingestion-exporter
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* The ServiceAccount the pod runs as. */}}
{{- define "ingestion-exporter.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "ingestion-exporter.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The Secret mounted as credential files: existingSecret, or the one the chart makes from .Values.secrets. */}}
{{- define "ingestion-exporter.secretName" -}}
{{- if .Values.existingSecret }}
{{- .Values.existingSecret }}
{{- else if .Values.secrets }}
{{- include "ingestion-exporter.fullname" . }}
{{- end }}
{{- end }}

{{/* Image reference: repository, then the digest when given, else the tag (default: the chart's appVersion). */}}
{{- define "ingestion-exporter.image" -}}
{{- $repository := .Values.image.repository }}
{{- if .Values.image.registry }}
{{- $repository = printf "%s/%s" .Values.image.registry .Values.image.repository }}
{{- end }}
{{- if .Values.image.digest }}
{{- printf "%s@%s" $repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" $repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}
{{- end }}

{{/* Where the config file is mounted, and its full path. */}}
{{- define "ingestion-exporter.configDir" -}}
/etc/ingestion-exporter/config
{{- end }}

{{/* The exporter's config file, rendered from .Values.config; only non-secret settings belong here. */}}
{{- define "ingestion-exporter.configFile" -}}
{{- toYaml .Values.config }}
{{- end }}

{{/* Namespace of an optional monitoring object: its own setting, else the release's. */}}
{{- define "ingestion-exporter.namespace" -}}
{{- default .context.Release.Namespace .namespace }}
{{- end }}

{{/* A file name as a DNS-1123 label fragment: lower case, [a-z0-9-] only. */}}
{{- define "ingestion-exporter.dnsFragment" -}}
{{- regexReplaceAll "[^a-z0-9-]+" (lower .) "-" | trimAll "-" }}
{{- end }}

{{/* Where the web-config file and the TLS Secret are mounted. */}}
{{- define "ingestion-exporter.webConfigDir" -}}
/etc/ingestion-exporter/web
{{- end }}
{{- define "ingestion-exporter.tlsDir" -}}
/etc/ingestion-exporter/tls
{{- end }}

{{/* The Secret holding web-config.yml: webConfig.existingSecret, or the chart's own one ("<fullname>-web-config")
made from webConfig.config and webConfig.tls; empty when the exporter serves plain, unauthenticated HTTP. */}}
{{- define "ingestion-exporter.webConfigSecretName" -}}
{{- if .Values.webConfig.existingSecret }}
{{- .Values.webConfig.existingSecret }}
{{- else if or .Values.webConfig.config .Values.webConfig.tls.existingSecret }}
{{- printf "%s-web-config" (include "ingestion-exporter.fullname" . | trunc 52 | trimSuffix "-") }}
{{- end }}
{{- end }}

{{/* The web-config file the chart renders: webConfig.config, with tls_server_config's cert_file and key_file
pointing at the mounted webConfig.tls.existingSecret unless given. */}}
{{- define "ingestion-exporter.webConfigFile" -}}
{{- $config := deepCopy (.Values.webConfig.config | default (dict)) }}
{{- if .Values.webConfig.tls.existingSecret }}
{{- $tlsDir := include "ingestion-exporter.tlsDir" . }}
{{- $defaults := dict "cert_file" (printf "%s/tls.crt" $tlsDir) "key_file" (printf "%s/tls.key" $tlsDir) }}
{{- $_ := set $config "tls_server_config" (merge ($config.tls_server_config | default (dict)) $defaults) }}
{{- end }}
{{- toYaml $config }}
{{- end }}

{{/* "true" when the exporter serves HTTPS: a TLS Secret is mounted or webConfig.config has tls_server_config. */}}
{{- define "ingestion-exporter.tlsEnabled" -}}
{{- if or .Values.webConfig.tls.existingSecret (and .Values.webConfig.config .Values.webConfig.config.tls_server_config) }}
{{- print "true" }}
{{- end }}
{{- end }}

{{/* Scheme Prometheus scrapes with: serviceMonitor.scheme when set, else https with TLS and http without. */}}
{{- define "ingestion-exporter.scrapeScheme" -}}
{{- if .Values.serviceMonitor.scheme }}
{{- .Values.serviceMonitor.scheme }}
{{- else if include "ingestion-exporter.tlsEnabled" . }}
{{- print "https" }}
{{- else }}
{{- print "http" }}
{{- end }}
{{- end }}

{{/* The Service in front of the pods: "<fullname>", or, sharded, the StatefulSet's headless "<fullname>-headless"
(a new name, since a Service's clusterIP cannot change in place). */}}
{{- define "ingestion-exporter.serviceName" -}}
{{- if .Values.sharding.enabled }}
{{- printf "%s-headless" (include "ingestion-exporter.fullname" . | trunc 54 | trimSuffix "-") }}
{{- else }}
{{- include "ingestion-exporter.fullname" . }}
{{- end }}
{{- end }}

{{/* The shards' StatefulSet, its pods "<name>-0" to "<name>-<shards - 1>": at most 52 characters, so that the
controller-revision-hash label Kubernetes puts on the pods ("<name>-<hash>") stays within 63. */}}
{{- define "ingestion-exporter.statefulSetName" -}}
{{- include "ingestion-exporter.fullname" . | trunc 52 | trimSuffix "-" }}
{{- end }}

{{/* The exporter pod (metadata and spec), the one template of the Deployment and of the sharded StatefulSet; a
shard takes its ordinal from its pod's name, which the downward API passes in POD_NAME. */}}
{{- define "ingestion-exporter.podTemplate" -}}
metadata:
  labels:
    {{- include "ingestion-exporter.labels" . | nindent 4 }}
    {{- with .Values.podLabels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  annotations:
    checksum/config: {{ include "ingestion-exporter.configFile" . | sha256sum }}
    {{- if and .Values.secrets (not .Values.existingSecret) }}
    checksum/secret: {{ toJson .Values.secrets | sha256sum }}
    {{- end }}
    {{- with include "ingestion-exporter.webConfigSecretName" . }}
    checksum/web-config: {{ list . $.Values.webConfig.tls.existingSecret (include "ingestion-exporter.webConfigFile" $) | toJson | sha256sum }}
    {{- end }}
    {{- with .Values.podAnnotations }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
spec:
  serviceAccountName: {{ include "ingestion-exporter.serviceAccountName" . }}
  automountServiceAccountToken: {{ .Values.serviceAccount.automountServiceAccountToken }}
  {{- with .Values.imagePullSecrets }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  securityContext:
    {{- toYaml .Values.podSecurityContext | nindent 4 }}
  terminationGracePeriodSeconds: {{ .Values.terminationGracePeriodSeconds }}
  {{- with .Values.priorityClassName }}
  priorityClassName: {{ . }}
  {{- end }}
  containers:
    - name: exporter
      image: {{ include "ingestion-exporter.image" . | quote }}
      imagePullPolicy: {{ .Values.image.pullPolicy }}
      args:
        {{- if .Values.demo }}
        - --demo
        {{- else }}
        - --config.file={{ include "ingestion-exporter.configDir" . }}/config.yaml
        {{- end }}
        - --web.listen-address=:{{ .Values.port }}
        - --web.telemetry-path={{ .Values.telemetryPath }}
        - --log.level={{ .Values.logLevel }}
        - --log.format={{ .Values.logFormat }}
        {{- if .Values.sharding.enabled }}
        - --shard.from-pod-name=$(POD_NAME)
        - --total-shards={{ .Values.sharding.shards }}
        {{- end }}
        {{- if include "ingestion-exporter.webConfigSecretName" . }}
        - --web.config.file={{ include "ingestion-exporter.webConfigDir" . }}/web-config.yml
        {{- end }}
        {{- range .Values.extraArgs }}
        - {{ . | quote }}
        {{- end }}
      {{- if or .Values.sharding.enabled .Values.env }}
      env:
        {{- if .Values.sharding.enabled }}
        - name: POD_NAME
          valueFrom:
            fieldRef:
              fieldPath: metadata.name
        {{- end }}
        {{- with .Values.env }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      {{- end }}
      ports:
        - name: http
          containerPort: {{ .Values.port }}
          protocol: TCP
      livenessProbe:
        httpGet:
          path: /healthz
          port: http
          {{- if include "ingestion-exporter.tlsEnabled" . }}
          scheme: HTTPS
          {{- end }}
        {{- toYaml .Values.livenessProbe | nindent 8 }}
      readinessProbe:
        httpGet:
          path: /readyz
          port: http
          {{- if include "ingestion-exporter.tlsEnabled" . }}
          scheme: HTTPS
          {{- end }}
        {{- toYaml .Values.readinessProbe | nindent 8 }}
      securityContext:
        {{- toYaml .Values.securityContext | nindent 8 }}
      resources:
        {{- toYaml .Values.resources | nindent 8 }}
      volumeMounts:
        - name: config
          mountPath: {{ include "ingestion-exporter.configDir" . }}
          readOnly: true
        {{- if include "ingestion-exporter.secretName" . }}
        - name: secrets
          mountPath: {{ .Values.secretsMountPath }}
          readOnly: true
        {{- end }}
        {{- if include "ingestion-exporter.webConfigSecretName" . }}
        - name: web-config
          mountPath: {{ include "ingestion-exporter.webConfigDir" . }}
          readOnly: true
        {{- end }}
        {{- if .Values.webConfig.tls.existingSecret }}
        - name: tls
          mountPath: {{ include "ingestion-exporter.tlsDir" . }}
          readOnly: true
        {{- end }}
        {{- with .Values.extraVolumeMounts }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
  volumes:
    - name: config
      configMap:
        name: {{ include "ingestion-exporter.fullname" . }}
    {{- with include "ingestion-exporter.secretName" . }}
    - name: secrets
      secret:
        secretName: {{ . }}
        defaultMode: 0440
    {{- end }}
    {{- with include "ingestion-exporter.webConfigSecretName" . }}
    - name: web-config
      secret:
        secretName: {{ . }}
        defaultMode: 0440
        items:
          - key: web-config.yml
            path: web-config.yml
    {{- end }}
    {{- with .Values.webConfig.tls.existingSecret }}
    - name: tls
      secret:
        secretName: {{ . }}
        defaultMode: 0440
    {{- end }}
    {{- with .Values.extraVolumes }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- with .Values.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.affinity }}
  affinity:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.topologySpreadConstraints }}
  topologySpreadConstraints:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end }}
