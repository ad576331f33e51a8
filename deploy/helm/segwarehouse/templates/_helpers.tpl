{{/*
Names and labels.
*/}}
{{- define "segwarehouse.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "segwarehouse.fullname" -}}
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

{{- define "segwarehouse.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "segwarehouse.selectorLabels" -}}
app.kubernetes.io/name: {{ include "segwarehouse.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "segwarehouse.labels" -}}
helm.sh/chart: {{ include "segwarehouse.chart" . }}
{{ include "segwarehouse.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: segwarehouse
{{- end }}

{{- define "segwarehouse.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "segwarehouse.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "segwarehouse.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}
{{- end }}

{{/* Deployment, or StatefulSet with static membership. */}}
{{- define "segwarehouse.workloadKind" -}}
{{- if .Values.staticMembership }}StatefulSet{{ else }}Deployment{{ end }}
{{- end }}

{{/* "true" when an autoscaler owns the replica count. */}}
{{- define "segwarehouse.autoscaled" -}}
{{- if or .Values.autoscaling.keda.enabled .Values.autoscaling.hpa.enabled }}true{{ end }}
{{- end }}

{{/* The autoscaler's maximum: autoscaling.maxReplicas, else partitions. */}}
{{- define "segwarehouse.maxReplicas" -}}
{{- if kindIs "invalid" .Values.autoscaling.maxReplicas }}
{{- .Values.partitions | int }}
{{- else }}
{{- .Values.autoscaling.maxReplicas | int }}
{{- end }}
{{- end }}

{{/* The Secret and key of SEGWH_DATABASE_URL. */}}
{{- define "segwarehouse.databaseSecretName" -}}
{{- if .Values.database.existingSecret }}{{ .Values.database.existingSecret }}{{ else }}{{ include "segwarehouse.fullname" . }}{{ end }}
{{- end }}
{{- define "segwarehouse.databaseSecretKey" -}}
{{- if .Values.database.existingSecret }}{{ .Values.database.secretKey }}{{ else }}database-url{{ end }}
{{- end }}

{{/* The Secret and key of SEGWH_KAFKA_SASL_PASSWORD. */}}
{{- define "segwarehouse.saslSecretName" -}}
{{- if .Values.kafka.sasl.existingSecret }}{{ .Values.kafka.sasl.existingSecret }}{{ else }}{{ include "segwarehouse.fullname" . }}{{ end }}
{{- end }}
{{- define "segwarehouse.saslSecretKey" -}}
{{- if .Values.kafka.sasl.existingSecret }}{{ .Values.kafka.sasl.secretKey }}{{ else }}kafka-sasl-password{{ end }}
{{- end }}

{{/* "true" when the chart must create its own Secret for inline values. */}}
{{- define "segwarehouse.inlineSecret" -}}
{{- if or (and .Values.database.url (not .Values.database.existingSecret)) (and .Values.kafka.sasl.mechanism .Values.kafka.sasl.password (not .Values.kafka.sasl.existingSecret)) }}true{{ end }}
{{- end }}

{{/*
A config value as a ConfigMap string. Numbers from values.yaml arrive as
float64, which would print 8388608 as 8.388608e+06.
*/}}
{{- define "segwarehouse.envValue" -}}
{{- if and (kindIs "float64" .) (eq (float64 (int64 .)) .) }}
{{- int64 . }}
{{- else }}
{{- toString . }}
{{- end }}
{{- end }}

{{/* Label matchers that select this release's series in alert rules. */}}
{{- define "segwarehouse.alertSelector" -}}
{{- if .Values.prometheusRule.selector }}
{{- .Values.prometheusRule.selector }}
{{- else }}
{{- printf "job=%q, namespace=%q" (include "segwarehouse.fullname" .) .Release.Namespace }}
{{- end }}
{{- end }}

{{/*
Validation: every misconfiguration the chart can see fails rendering with
the value to fix. Included by the workload template.
*/}}
{{- define "segwarehouse.validate" -}}
{{- $v := .Values }}
{{- if and (not $v.database.existingSecret) (not $v.database.url) }}
{{- fail "database: set database.existingSecret (an existing Secret whose key database.secretKey holds SEGWH_DATABASE_URL) or, for tests only, database.url" }}
{{- end }}
{{- if and $v.database.existingSecret $v.database.url }}
{{- fail "database: set only one of database.existingSecret and database.url" }}
{{- end }}
{{- if not $v.kafka.brokers }}
{{- fail "kafka.brokers is required: the seed brokers, host:port (SEGWH_KAFKA_BROKERS)" }}
{{- end }}
{{- if not $v.kafka.topics }}
{{- fail "kafka.topics is required: the topics to load (SEGWH_KAFKA_TOPICS)" }}
{{- end }}
{{- if not $v.kafka.group }}
{{- fail "kafka.group must not be empty (SEGWH_KAFKA_GROUP)" }}
{{- end }}
{{- with $v.kafka.sasl }}
{{- if .mechanism }}
{{- if not (has (upper .mechanism) (list "PLAIN" "SCRAM-SHA-256" "SCRAM-SHA-512")) }}
{{- fail (printf "kafka.sasl.mechanism %q is not PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512" .mechanism) }}
{{- end }}
{{- if not .user }}
{{- fail "kafka.sasl.user is required with kafka.sasl.mechanism" }}
{{- end }}
{{- if and (not .existingSecret) (not .password) }}
{{- fail "kafka.sasl: set kafka.sasl.existingSecret (an existing Secret whose key kafka.sasl.secretKey holds SEGWH_KAFKA_SASL_PASSWORD) or, for tests only, kafka.sasl.password" }}
{{- end }}
{{- if and .existingSecret .password }}
{{- fail "kafka.sasl: set only one of kafka.sasl.existingSecret and kafka.sasl.password" }}
{{- end }}
{{- else if or .user .password .existingSecret }}
{{- fail "kafka.sasl.user/password/existingSecret are set but kafka.sasl.mechanism is empty" }}
{{- end }}
{{- end }}
{{- if and $v.autoscaling.keda.enabled $v.autoscaling.hpa.enabled }}
{{- fail "autoscaling.keda.enabled and autoscaling.hpa.enabled are mutually exclusive: enable at most one autoscaler" }}
{{- end }}
{{- if include "segwarehouse.autoscaled" . }}
{{- $max := include "segwarehouse.maxReplicas" . | int }}
{{- if lt $max 1 }}
{{- fail "autoscaling.maxReplicas (or partitions) must be at least 1" }}
{{- end }}
{{- if gt ($v.autoscaling.minReplicas | int) $max }}
{{- fail (printf "autoscaling.minReplicas (%d) exceeds the maximum (%d, autoscaling.maxReplicas or partitions)" ($v.autoscaling.minReplicas | int) $max) }}
{{- end }}
{{- if and $v.autoscaling.hpa.enabled (lt ($v.autoscaling.minReplicas | int) 1) }}
{{- fail "autoscaling.minReplicas must be at least 1 with the HPA (scaling to zero needs KEDA)" }}
{{- end }}
{{- end }}
{{- if le ($v.terminationGracePeriodSeconds | int) ($v.shutdownTimeoutSeconds | int) }}
{{- fail (printf "terminationGracePeriodSeconds (%d) must exceed shutdownTimeoutSeconds (%d): the pod would be killed in its final flush" ($v.terminationGracePeriodSeconds | int) ($v.shutdownTimeoutSeconds | int)) }}
{{- end }}
{{- $secretVars := list "SEGWH_DATABASE_URL" "SEGWH_KAFKA_SASL_PASSWORD" }}
{{- $chartVars := list "SEGWH_KAFKA_BROKERS" "SEGWH_KAFKA_TOPICS" "SEGWH_KAFKA_GROUP" "SEGWH_KAFKA_SASL_MECHANISM" "SEGWH_KAFKA_SASL_USER" "SEGWH_KAFKA_INSTANCE_ID" "SEGWH_HTTP_ADDR" "SEGWH_SHUTDOWN_TIMEOUT" }}
{{- range $k, $_ := $v.config }}
{{- if has $k $secretVars }}
{{- fail (printf "config.%s is a secret and must not go into the ConfigMap: use a Secret reference (database.existingSecret or kafka.sasl.existingSecret)" $k) }}
{{- end }}
{{- if has $k $chartVars }}
{{- fail (printf "config.%s is set by the chart from a structured value (kafka.*, http.port, staticMembership, shutdownTimeoutSeconds): set that instead" $k) }}
{{- end }}
{{- if not (hasPrefix "SEGWH_" $k) }}
{{- fail (printf "config.%s: only SEGWH_* variables belong in config (use extraEnv or otel.* for others)" $k) }}
{{- end }}
{{- end }}
{{- end }}

{{/* The pod template shared by the Deployment and the StatefulSet. */}}
{{- define "segwarehouse.podTemplate" -}}
metadata:
  labels:
    {{- include "segwarehouse.selectorLabels" . | nindent 4 }}
    {{- with .Values.podLabels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  annotations:
    checksum/config: {{ include (print .Template.BasePath "/configmap.yaml") . | sha256sum }}
    {{- if include "segwarehouse.inlineSecret" . }}
    checksum/secret: {{ include (print .Template.BasePath "/secret.yaml") . | sha256sum }}
    {{- end }}
    {{- with .Values.podAnnotations }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
spec:
  serviceAccountName: {{ include "segwarehouse.serviceAccountName" . }}
  # The loader never calls the Kubernetes API.
  automountServiceAccountToken: false
  # No KAFKA_*/SEGWAREHOUSE_* variables injected from Services.
  enableServiceLinks: false
  # Must exceed SEGWH_SHUTDOWN_TIMEOUT: SIGTERM starts the final flush.
  terminationGracePeriodSeconds: {{ .Values.terminationGracePeriodSeconds }}
  {{- with .Values.priorityClassName }}
  priorityClassName: {{ . }}
  {{- end }}
  {{- with .Values.imagePullSecrets }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  securityContext:
    {{- toYaml .Values.podSecurityContext | nindent 4 }}
  containers:
    - name: segwarehouse
      image: {{ include "segwarehouse.image" . | quote }}
      imagePullPolicy: {{ .Values.image.pullPolicy }}
      args: ["run"]
      ports:
        - name: http
          containerPort: {{ .Values.http.port }}
          protocol: TCP
      envFrom:
        - configMapRef:
            name: {{ include "segwarehouse.fullname" . }}
      env:
        - name: POD_NAME
          valueFrom:
            fieldRef:
              fieldPath: metadata.name
        - name: POD_NAMESPACE
          valueFrom:
            fieldRef:
              fieldPath: metadata.namespace
        - name: SEGWH_DATABASE_URL
          valueFrom:
            secretKeyRef:
              name: {{ include "segwarehouse.databaseSecretName" . }}
              key: {{ include "segwarehouse.databaseSecretKey" . }}
        {{- if .Values.kafka.sasl.mechanism }}
        - name: SEGWH_KAFKA_SASL_PASSWORD
          valueFrom:
            secretKeyRef:
              name: {{ include "segwarehouse.saslSecretName" . }}
              key: {{ include "segwarehouse.saslSecretKey" . }}
        {{- end }}
        {{- if .Values.staticMembership }}
        # Static membership: the StatefulSet's stable pod name is the
        # group.instance.id.
        - name: SEGWH_KAFKA_INSTANCE_ID
          valueFrom:
            fieldRef:
              fieldPath: metadata.name
        {{- end }}
        {{- with .Values.goMemLimit }}
        - name: GOMEMLIMIT
          value: {{ . | quote }}
        {{- end }}
        - name: OTEL_SERVICE_NAME
          value: {{ .Values.otel.serviceName | default (include "segwarehouse.fullname" .) | quote }}
        {{- $attrs := list "k8s.pod.name=$(POD_NAME)" "k8s.namespace.name=$(POD_NAMESPACE)" }}
        {{- range $k, $val := .Values.otel.resourceAttributes }}
        {{- $attrs = append $attrs (printf "%s=%s" $k (toString $val)) }}
        {{- end }}
        - name: OTEL_RESOURCE_ATTRIBUTES
          value: {{ join "," $attrs | quote }}
        {{- with .Values.otel.endpoint }}
        - name: OTEL_EXPORTER_OTLP_ENDPOINT
          value: {{ . | quote }}
        {{- end }}
        {{- with .Values.otel.protocol }}
        - name: OTEL_EXPORTER_OTLP_PROTOCOL
          value: {{ . | quote }}
        {{- end }}
        {{- with .Values.extraEnv }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      livenessProbe:
        {{- toYaml .Values.livenessProbe | nindent 8 }}
      readinessProbe:
        {{- toYaml .Values.readinessProbe | nindent 8 }}
      resources:
        {{- toYaml .Values.resources | nindent 8 }}
      securityContext:
        {{- toYaml .Values.securityContext | nindent 8 }}
      volumeMounts:
        # The root filesystem is read-only; /tmp is the only writable place.
        - name: tmp
          mountPath: /tmp
        {{- with .Values.extraVolumeMounts }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
  volumes:
    - name: tmp
      emptyDir:
        sizeLimit: 64Mi
    {{- with .Values.extraVolumes }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- with .Values.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.affinity }}
  affinity:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  topologySpreadConstraints:
    {{- if .Values.topologySpreadConstraints }}
    {{- toYaml .Values.topologySpreadConstraints | nindent 4 }}
    {{- else }}
    - maxSkew: 1
      topologyKey: kubernetes.io/hostname
      whenUnsatisfiable: ScheduleAnyway
      labelSelector:
        matchLabels:
          {{- include "segwarehouse.selectorLabels" . | nindent 10 }}
    {{- end }}
{{- end }}
