{{/* Chart name. */}}
{{- define "rrp.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Prefix of every object name: the release name unless overridden (room left for suffixes). */}}
{{- define "rrp.fullname" -}}
{{- default .Release.Name .Values.fullnameOverride | trunc 50 | trimSuffix "-" }}
{{- end }}

{{- define "rrp.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels on every object. */}}
{{- define "rrp.labels" -}}
helm.sh/chart: {{ include "rrp.chart" . }}
app.kubernetes.io/name: {{ include "rrp.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: rallyrobopilot
{{- end }}

{{/* Selector labels of one component: (dict "ctx" $ "component" "evaluator"). */}}
{{- define "rrp.selectorLabels" -}}
app.kubernetes.io/name: {{ include "rrp.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "rrp.componentLabels" -}}
{{ include "rrp.labels" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "rrp.evaluatorName" -}}
{{- printf "%s-evaluator" (include "rrp.fullname" .) }}
{{- end }}

{{- define "rrp.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "rrp.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* image reference: (dict "ctx" $ "image" .Values.image.evaluator) */}}
{{- define "rrp.image" -}}
{{- printf "%s:%s" .image.repository (default .ctx.Chart.AppVersion .image.tag) }}
{{- end }}

{{/* Evaluator discovery URL used by GA pods. */}}
{{- define "rrp.gaEvaluators" -}}
{{- default (printf "k8s://%s/%s" .Release.Namespace (include "rrp.evaluatorName" .)) .Values.ga.evaluators }}
{{- end }}

{{/* Redis URL for game pods ("" when frames are not recorded). */}}
{{- define "rrp.redisUrl" -}}
{{- if .Values.game.redisUrl }}
{{- .Values.game.redisUrl }}
{{- else if .Values.redis.enabled }}
{{- include "rrp.releaseRedisUrl" . }}
{{- end }}
{{- end }}

{{/* This release's Redis; with auth the password comes from the REDIS_PASSWORD env var
(Kubernetes expands $(VAR) in env values), never from the command line. */}}
{{- define "rrp.releaseRedisUrl" -}}
{{- $auth := ternary ":$(REDIS_PASSWORD)@" "" .Values.redis.auth.enabled }}
{{- printf "redis://%s%s-redis:%d/0" $auth (include "rrp.fullname" .) (int .Values.redis.port) }}
{{- end }}

{{/* The Secret holding this release's Redis password (key "password"). */}}
{{- define "rrp.redisSecret" -}}
{{- .Values.redis.auth.existingSecret | default (printf "%s-redis" (include "rrp.fullname" .)) }}
{{- end }}

{{/* Env entries a client of this release's Redis needs when auth is on: the password, first. */}}
{{- define "rrp.redisPasswordEnv" -}}
- name: REDIS_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ include "rrp.redisSecret" . }}
      key: password
{{- end }}

{{/* Redis URL for collection pods (this release's Redis unless collect.redisUrl is set). */}}
{{- define "rrp.collectRedisUrl" -}}
{{- if .Values.collect.redisUrl }}
{{- .Values.collect.redisUrl }}
{{- else if .Values.redis.enabled }}
{{- include "rrp.releaseRedisUrl" . }}
{{- else }}
{{- fail "collect.enabled needs redis.enabled=true or collect.redisUrl" }}
{{- end }}
{{- end }}

{{/* Restricted pod security context (Pod Security Standards "restricted"). */}}
{{- define "rrp.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .uid | default 10001 }}
runAsGroup: {{ .uid | default 10001 }}
fsGroup: {{ .uid | default 10001 }}
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{- define "rrp.containerSecurityContext" -}}
runAsNonRoot: true
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
privileged: false
capabilities:
  drop:
    - ALL
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/* RRP_TOKEN from the optional Secret. */}}
{{- define "rrp.tokenEnv" -}}
{{- if .Values.evaluator.auth.existingSecret }}
- name: RRP_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ .Values.evaluator.auth.existingSecret }}
      key: {{ .Values.evaluator.auth.secretKey }}
{{- end }}
{{- end }}

{{- define "rrp.imagePullSecrets" -}}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}
