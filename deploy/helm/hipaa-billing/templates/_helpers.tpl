{{/* Names and labels. */}}
{{- define "hipaa-billing.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "hipaa-billing.fullname" -}}
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

{{- define "hipaa-billing.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "hipaa-billing.labels" -}}
app.kubernetes.io/name: {{ include "hipaa-billing.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{ include "hipaa-billing.commonLabels" . }}
{{- end }}

{{/* The labels besides the selector's: on pods, beside hipaa-billing.selectorLabels. */}}
{{- define "hipaa-billing.commonLabels" -}}
helm.sh/chart: {{ include "hipaa-billing.chart" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: hipaa-billing
{{- end }}

{{/* Selector labels of one process kind: (dict "root" $ "component" "api") or "workers-<group>". */}}
{{- define "hipaa-billing.selectorLabels" -}}
app.kubernetes.io/name: {{ include "hipaa-billing.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* Every pod of the release, whatever its component (NetworkPolicies select workers by this and a kind). */}}
{{- define "hipaa-billing.releaseSelector" -}}
app.kubernetes.io/name: {{ include "hipaa-billing.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "hipaa-billing.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "hipaa-billing.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "hipaa-billing.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}

{{/* The processes' QUEUE_PREFIX: what KEDA's list names are built from. */}}
{{- define "hipaa-billing.queuePrefix" -}}
{{- default "{hb}" .Values.env.QUEUE_PREFIX }}
{{- end }}

{{/*
Longer than the processes' own shutdown deadline (SHUTDOWN_DEADLINE_MS) plus the api's preStop pause: Kubernetes
sends SIGKILL only after the process has had its whole deadline to finish its active jobs.
*/}}
{{- define "hipaa-billing.terminationGracePeriodSeconds" -}}
{{- add .Values.shutdown.deadlineSeconds .Values.api.preStopSleepSeconds .Values.shutdown.marginSeconds }}
{{- end }}

{{/* Where the chart mounts the secret files it names in the environment. */}}
{{- define "hipaa-billing.paths" -}}
kmsKey: /etc/hipaa-billing/kms/master-key
kmsCa: /etc/hipaa-billing/kms-ca/ca.pem
anchorPrivate: /etc/hipaa-billing/audit-anchor/private.pem
anchorPublic: /etc/hipaa-billing/audit-anchor/public.pem
tlsCert: /etc/hipaa-billing/tls/tls.crt
tlsKey: /etc/hipaa-billing/tls/tls.key
{{- end }}

{{/*
A container's environment: (dict "root" $ "api" bool "signer" bool "env" <the process kind's own settings>).
Plain values are only the chart's own and the non-secret settings of `env` (the schema refuses secret names there);
secrets come from secretKeyRef here and from envFrom (hipaa-billing.envFrom).
*/}}
{{- define "hipaa-billing.env" -}}
{{- $root := .root }}
{{- $v := $root.Values }}
{{- $paths := include "hipaa-billing.paths" . | fromYaml }}
- name: SHUTDOWN_DEADLINE_MS
  value: {{ mul $v.shutdown.deadlineSeconds 1000 | quote }}
- name: METRICS_HOST
  value: "0.0.0.0"
- name: METRICS_PORT
  value: {{ $v.metrics.port | quote }}
{{- if .api }}
- name: HOST
  value: "0.0.0.0"
- name: PORT
  value: {{ $v.api.port | quote }}
{{- if $v.api.tls.enabled }}
- name: TLS_CERT_FILE
  value: {{ $paths.tlsCert }}
- name: TLS_KEY_FILE
  value: {{ $paths.tlsKey }}
{{- end }}
{{- end }}
- name: KMS_PROVIDER
  value: {{ $v.kms.provider | quote }}
{{- if eq $v.kms.provider "local" }}
- name: LOCAL_MASTER_KEY_FILE
  value: {{ $paths.kmsKey }}
{{- end }}
{{- if $v.kms.tlsCaSecretName }}
- name: KMS_TLS_CA_FILE
  value: {{ $paths.kmsCa }}
{{- end }}
{{- if .signer }}
- name: AUDIT_ANCHOR_KEY_FILE
  value: {{ $paths.anchorPrivate }}
{{- else }}
- name: AUDIT_ANCHOR_PUBLIC_KEY_FILE
  value: {{ $paths.anchorPublic }}
{{- end }}
{{- $settings := merge (deepCopy (.env | default (dict))) (deepCopy $v.env) }}
{{- range $name := keys $settings | sortAlpha }}
- name: {{ $name }}
  value: {{ get $settings $name | toString | quote }}
{{- end }}
{{- range $v.secretEnv.keys }}
- name: {{ .name }}
  valueFrom:
    secretKeyRef:
      name: {{ .secretName }}
      key: {{ .key }}
      {{- if .optional }}
      optional: true
      {{- end }}
{{- end }}
{{- end }}

{{- define "hipaa-billing.envFrom" -}}
{{- range .Values.secretEnv.fromSecrets }}
- secretRef:
    name: {{ . }}
{{- end }}
{{- end }}

{{/* Volumes: (dict "root" $ "api" bool "signer" bool). Secrets are mounted read-only, only the keys needed. */}}
{{- define "hipaa-billing.volumes" -}}
{{- $v := .root.Values }}
- name: tmp
  emptyDir:
    sizeLimit: {{ $v.tmpVolume.sizeLimit }}
{{- if eq $v.kms.provider "local" }}
- name: kms-master-key
  secret:
    secretName: {{ $v.kms.localMasterKey.secretName }}
    defaultMode: 288
    items:
      - key: {{ $v.kms.localMasterKey.key }}
        path: master-key
{{- end }}
{{- if $v.kms.tlsCaSecretName }}
- name: kms-ca
  secret:
    secretName: {{ $v.kms.tlsCaSecretName }}
    defaultMode: 288
    items:
      - key: ca.pem
        path: ca.pem
{{- end }}
- name: audit-anchor
  secret:
    secretName: {{ $v.auditAnchor.secretName }}
    defaultMode: 288
    items:
      {{- if .signer }}
      - key: {{ $v.auditAnchor.privateKeyKey }}
        path: private.pem
      {{- else }}
      - key: {{ $v.auditAnchor.publicKeyKey }}
        path: public.pem
      {{- end }}
{{- if and .api $v.api.tls.enabled }}
- name: tls
  secret:
    secretName: {{ required "api.tls.secretName: the kubernetes.io/tls Secret of the api's certificate" $v.api.tls.secretName }}
    defaultMode: 288
    items:
      - key: tls.crt
        path: tls.crt
      - key: tls.key
        path: tls.key
{{- end }}
{{- end }}

{{- define "hipaa-billing.volumeMounts" -}}
{{- $v := .root.Values }}
- name: tmp
  mountPath: /tmp
{{- if eq $v.kms.provider "local" }}
- name: kms-master-key
  mountPath: /etc/hipaa-billing/kms
  readOnly: true
{{- end }}
{{- if $v.kms.tlsCaSecretName }}
- name: kms-ca
  mountPath: /etc/hipaa-billing/kms-ca
  readOnly: true
{{- end }}
- name: audit-anchor
  mountPath: /etc/hipaa-billing/audit-anchor
  readOnly: true
{{- if and .api $v.api.tls.enabled }}
- name: tls
  mountPath: /etc/hipaa-billing/tls
  readOnly: true
{{- end }}
{{- end }}

{{/* What every pod shares: service account, security, scheduling. (dict "root" $ "component" name) */}}
{{- define "hipaa-billing.podCommon" -}}
{{- $v := .root.Values }}
serviceAccountName: {{ include "hipaa-billing.serviceAccountName" .root }}
automountServiceAccountToken: false
enableServiceLinks: false
terminationGracePeriodSeconds: {{ include "hipaa-billing.terminationGracePeriodSeconds" .root }}
securityContext:
  {{- toYaml $v.podSecurityContext | nindent 2 }}
{{- with $v.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $v.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $v.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- if $v.affinity }}
affinity:
  {{- toYaml $v.affinity | nindent 2 }}
{{- else }}
topologySpreadConstraints:
  - maxSkew: 1
    topologyKey: topology.kubernetes.io/zone
    whenUnsatisfiable: ScheduleAnyway
    labelSelector:
      matchLabels:
        {{- include "hipaa-billing.selectorLabels" . | nindent 8 }}
  - maxSkew: 1
    topologyKey: kubernetes.io/hostname
    whenUnsatisfiable: ScheduleAnyway
    labelSelector:
      matchLabels:
        {{- include "hipaa-billing.selectorLabels" . | nindent 8 }}
{{- end }}
{{- end }}

{{- define "hipaa-billing.podMetadata" -}}
labels:
  {{- include "hipaa-billing.selectorLabels" . | nindent 2 }}
  {{- include "hipaa-billing.commonLabels" .root | nindent 2 }}
  hipaa-billing/kind: {{ .kind }}
  {{- with .root.Values.podLabels }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
{{- with .root.Values.podAnnotations }}
annotations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/* The NetworkPolicy rule admitting scrapes of the metrics port from the monitoring namespace alone. */}}
{{- define "hipaa-billing.metricsPeer" -}}
- from:
    - namespaceSelector:
        {{- toYaml .Values.metrics.monitoringNamespaceSelector | nindent 8 }}
      podSelector:
        {{- toYaml .Values.metrics.monitoringPodSelector | nindent 8 }}
  ports:
    - port: metrics
      protocol: TCP
{{- end }}

{{/* queues/names.ts, in its order (test/unit/helm-chart.test.ts keeps this list and the schema's equal to it). */}}
{{- define "hipaa-billing.queueNames" -}}
charges audit maintenance stripe-events refunds renewals invoices webhook-deliveries
{{- end }}

{{/* Refuses values that would leave a queue unserved or name two groups alike. */}}
{{- define "hipaa-billing.validate" -}}
{{- $served := list }}
{{- $names := list }}
{{- range .Values.workers.groups }}
{{- if has .name $names }}
{{- fail (printf "workers.groups: two groups are named %q" .name) }}
{{- end }}
{{- $names = append $names .name }}
{{- $served = concat $served .queues }}
{{- end }}
{{- range splitList " " (include "hipaa-billing.queueNames" .) }}
{{- if not (has . $served) }}
{{- fail (printf "workers.groups: no group serves the %s queue; its jobs would wait forever" .) }}
{{- end }}
{{- end }}
{{- end }}
