{{/* Chart name, truncated to the 63 characters a label allows. */}}
{{- define "agentline.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Full name: <release>-<chart> unless the release name already contains the chart name. */}}
{{- define "agentline.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Name of one component's objects: <fullname>-<component>. Call with (dict "root" $ "component" "token-api"). */}}
{{- define "agentline.componentName" -}}
{{- printf "%s-%s" (include "agentline.fullname" .root | trunc 50 | trimSuffix "-") .component -}}
{{- end -}}

{{- define "agentline.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels of every object. */}}
{{- define "agentline.labels" -}}
helm.sh/chart: {{ include "agentline.chart" . }}
app.kubernetes.io/name: {{ include "agentline.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: agentline
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Selector labels of one component. Call with (dict "root" $ "component" "..."). */}}
{{- define "agentline.selectorLabels" -}}
app.kubernetes.io/name: {{ include "agentline.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* All labels of one component's objects. */}}
{{- define "agentline.componentLabels" -}}
{{ include "agentline.labels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "agentline.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "agentline.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* The image of one component. Call with (dict "root" $ "component" "token-api" "values" .Values.tokenApi). */}}
{{- define "agentline.image" -}}
{{- $repository := .values.image.repository | default (printf "%s/%s" .root.Values.image.registry .component) -}}
{{- $tag := .values.image.tag | default .root.Values.image.tag | default .root.Chart.AppVersion -}}
{{- printf "%s:%s" $repository $tag -}}
{{- end -}}

{{/* Name of the Secret holding the credentials. */}}
{{- define "agentline.secretName" -}}
{{- if .Values.secrets.existingSecret -}}
{{- .Values.secrets.existingSecret -}}
{{- else -}}
{{- printf "%s-secrets" (include "agentline.fullname" .) -}}
{{- end -}}
{{- end -}}

{{/* The Redis stream the dispatchers read (agentline.keys.Keys.requests). */}}
{{- define "agentline.requestsStream" -}}
{{- printf "{%s}:dispatch-requests" .Values.redis.namespace -}}
{{- end -}}

{{/* Checks run once, before anything renders. */}}
{{- define "agentline.validate" -}}
{{- if not .Values.livekit.url -}}
{{- fail "livekit.url is required (the LiveKit server, e.g. wss://livekit.example.com)" -}}
{{- end -}}
{{- if and (not .Values.redis.url) (not .Values.redis.existingSecret) -}}
{{- fail "redis.url or redis.existingSecret is required (the chart ships no Redis)" -}}
{{- end -}}
{{- if not .Values.secrets.existingSecret -}}
{{- if or (not .Values.secrets.livekitApiKey) (not .Values.secrets.livekitApiSecret) -}}
{{- fail "secrets.livekitApiKey and secrets.livekitApiSecret are required unless secrets.existingSecret is set" -}}
{{- end -}}
{{- if and .Values.tokenApi.enabled (not .Values.secrets.tokenApiKeys) -}}
{{- fail "secrets.tokenApiKeys needs at least one key unless secrets.existingSecret is set" -}}
{{- end -}}
{{- end -}}
{{- if and .Values.dispatcher.autoscaling.enabled .Values.dispatcher.autoscaling.keda.enabled (not .Values.dispatcher.autoscaling.keda.redisAddress) -}}
{{- fail "dispatcher.autoscaling.keda.redisAddress (host:port) is required when KEDA scaling is on" -}}
{{- end -}}
{{- if lt (int .Values.dispatcher.terminationGracePeriodSeconds) (add (int .Values.dispatcher.drainSeconds) 5 | int) -}}
{{- fail "dispatcher.terminationGracePeriodSeconds must be at least dispatcher.drainSeconds + 5" -}}
{{- end -}}
{{- if and (not (kindIs "invalid" .Values.agentWorker.terminationGracePeriodSeconds)) (lt (int .Values.agentWorker.terminationGracePeriodSeconds) (int .Values.agentWorker.drainTimeoutSeconds)) -}}
{{- fail "agentWorker.terminationGracePeriodSeconds must be at least agentWorker.drainTimeoutSeconds" -}}
{{- end -}}
{{- end -}}

{{/* An env var read from the credentials Secret. */}}
{{- define "agentline.secretEnv" -}}
- name: {{ .name }}
  valueFrom:
    secretKeyRef:
      name: {{ include "agentline.secretName" .root }}
      key: {{ .name }}
{{- if .optional }}
      optional: true
{{- end }}
{{- end -}}

{{/* Plain (non-secret) settings every service reads (CommonSettings), as ConfigMap data. */}}
{{- define "agentline.commonConfig" -}}
AGENTLINE_ENV: {{ .Values.environment | quote }}
AGENTLINE_REDIS_NAMESPACE: {{ .Values.redis.namespace | quote }}
LOG_LEVEL: {{ .Values.logging.level | quote }}
LOG_FORMAT: {{ .Values.logging.format | quote }}
LIVEKIT_URL: {{ .Values.livekit.url | quote }}
{{- end -}}

{{/* Secret settings every service reads: Redis URL and LiveKit credentials. */}}
{{- define "agentline.commonSecretEnv" -}}
- name: REDIS_URL
  valueFrom:
    secretKeyRef:
{{- if .Values.redis.existingSecret }}
      name: {{ .Values.redis.existingSecret }}
      key: {{ .Values.redis.existingSecretKey }}
{{- else }}
      name: {{ printf "%s-redis" (include "agentline.fullname" .) }}
      key: REDIS_URL
{{- end }}
{{ include "agentline.secretEnv" (dict "root" . "name" "LIVEKIT_API_KEY") }}
{{ include "agentline.secretEnv" (dict "root" . "name" "LIVEKIT_API_SECRET") }}
{{- end -}}

{{/* Checksum of what a component's pods read, so that a change rolls them. */}}
{{- define "agentline.configChecksums" -}}
checksum/config: {{ include (print .root.Template.BasePath "/" .component "/configmap.yaml") .root | sha256sum }}
checksum/secrets: {{ include (print .root.Template.BasePath "/secrets.yaml") .root | sha256sum }}
{{- end -}}

{{/* Pod spec parts shared by the three Deployments. Call with (dict "root" $ "component" "..." "values" ...). */}}
{{- define "agentline.podCommon" -}}
serviceAccountName: {{ include "agentline.serviceAccountName" .root }}
automountServiceAccountToken: {{ .root.Values.automountServiceAccountToken }}
securityContext:
  {{- toYaml .root.Values.podSecurityContext | nindent 2 }}
{{- with .root.Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- if .root.Values.topologySpread.enabled }}
topologySpreadConstraints:
{{- range .root.Values.topologySpread.topologyKeys }}
  - maxSkew: {{ $.root.Values.topologySpread.maxSkew }}
    topologyKey: {{ . }}
    whenUnsatisfiable: ScheduleAnyway
    labelSelector:
      matchLabels:
        {{- include "agentline.selectorLabels" (dict "root" $.root "component" $.component) | nindent 8 }}
{{- end }}
{{- end }}
{{- with .values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* Probes on /healthz and /readyz of the named port "http". */}}
{{- define "agentline.probes" -}}
startupProbe:
  httpGet:
    path: /healthz
    port: http
  periodSeconds: 2
  failureThreshold: 30
livenessProbe:
  httpGet:
    path: /healthz
    port: http
  periodSeconds: 10
  timeoutSeconds: 3
  failureThreshold: 3
readinessProbe:
  httpGet:
    path: /readyz
    port: http
  periodSeconds: 5
  timeoutSeconds: 3
  failureThreshold: 2
{{- end -}}

{{/* A ServiceMonitor scraping /metrics on the component's "http" port. */}}
{{- define "agentline.serviceMonitor" -}}
{{- $m := .root.Values.metrics.serviceMonitor -}}
apiVersion: monitoring.coreos.com/v1
kind: ServiceMonitor
metadata:
  name: {{ include "agentline.componentName" . }}
  labels:
    {{- include "agentline.componentLabels" . | nindent 4 }}
    {{- with $m.labels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
spec:
  selector:
    matchLabels:
      {{- include "agentline.selectorLabels" . | nindent 6 }}
  namespaceSelector:
    matchNames:
      - {{ .root.Release.Namespace }}
  endpoints:
    - port: http
      path: /metrics
      interval: {{ $m.interval }}
      scrapeTimeout: {{ $m.scrapeTimeout }}
{{- end -}}

{{/* A NetworkPolicy admitting traffic to the component's port only: from the given peers plus
networkPolicy.metricsFrom (Prometheus), or from anywhere when no peer is given. */}}
{{- define "agentline.networkPolicy" -}}
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: {{ include "agentline.componentName" . }}
  labels:
    {{- include "agentline.componentLabels" . | nindent 4 }}
spec:
  podSelector:
    matchLabels:
      {{- include "agentline.selectorLabels" . | nindent 6 }}
  policyTypes:
    - Ingress
  ingress:
    - ports:
        - port: {{ .port }}
          protocol: TCP
      {{- if .from }}
      from:
        {{- toYaml (concat .from .root.Values.networkPolicy.metricsFrom | uniq) | nindent 8 }}
      {{- end }}
{{- end -}}

{{/* The agent workers' grace period: the value given, else the drain timeout + 15 s. */}}
{{- define "agentline.workerGracePeriod" -}}
{{- $v := .Values.agentWorker -}}
{{- if kindIs "invalid" $v.terminationGracePeriodSeconds -}}
{{- add (int $v.drainTimeoutSeconds) 15 -}}
{{- else -}}
{{- $v.terminationGracePeriodSeconds -}}
{{- end -}}
{{- end -}}
