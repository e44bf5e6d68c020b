{{/*
Standard names and labels.
*/}}
{{- define "leadflow.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "leadflow.fullname" -}}
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

{{- define "leadflow.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Name of one component's objects: <fullname>-<component>. Takes (dict "root" $ "component" "x"). */}}
{{- define "leadflow.componentName" -}}
{{- printf "%s-%s" (include "leadflow.fullname" .root) .component | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "leadflow.selectorLabels" -}}
app.kubernetes.io/name: {{ include "leadflow.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
{{- with .component }}
app.kubernetes.io/component: {{ . }}
{{- end }}
{{- end }}

{{- define "leadflow.labels" -}}
helm.sh/chart: {{ include "leadflow.chart" .root }}
{{ include "leadflow.selectorLabels" . }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/part-of: leadflow
{{- with .root.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "leadflow.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag }}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository $tag }}
{{- end }}
{{- end }}

{{- define "leadflow.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "leadflow.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "leadflow.operatorServiceAccountName" -}}
{{- if .Values.operator.serviceAccount.create }}
{{- default (include "leadflow.componentName" (dict "root" . "component" "operator")) .Values.operator.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.operator.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The chart's own Secret, holding whichever secret values are given inline. */}}
{{- define "leadflow.secretName" -}}
{{- include "leadflow.fullname" . }}
{{- end }}

{{/* An env var read from a Secret: (dict "root" $ "name" "LEADFLOW_X" "cfg" .Values.x "inlineKey" "x"). */}}
{{- define "leadflow.secretEnv" -}}
- name: {{ .name }}
  valueFrom:
    secretKeyRef:
      {{- if .cfg.existingSecret }}
      name: {{ .cfg.existingSecret }}
      key: {{ .cfg.existingSecretKey }}
      {{- else }}
      name: {{ include "leadflow.secretName" .root }}
      key: {{ .inlineKey }}
      {{- end }}
{{- end }}

{{- define "leadflow.complianceAddr" -}}
{{- printf "%s:%d" (include "leadflow.componentName" (dict "root" . "component" "compliance")) (int .Values.compliance.port) }}
{{- end }}

{{- define "leadflow.dispatcherAddr" -}}
{{- printf "%s:%d" (include "leadflow.componentName" (dict "root" . "component" "dispatcher")) (int .Values.dispatcher.port) }}
{{- end }}

{{/* Environment every component shares: connections, secrets, peers' addresses.
     Takes (dict "root" $ "skip" "LEADFLOW_X_ADDR"): a server's own bind address replaces its peer address. */}}
{{- define "leadflow.commonEnv" -}}
{{- $root := .root }}
{{ include "leadflow.secretEnv" (dict "root" $root "name" "LEADFLOW_DATABASE_URL" "cfg" $root.Values.externalDatabase "inlineKey" "database-url") }}
{{ include "leadflow.secretEnv" (dict "root" $root "name" "LEADFLOW_REDIS_URL" "cfg" $root.Values.externalRedis "inlineKey" "redis-url") }}
{{ include "leadflow.secretEnv" (dict "root" $root "name" "LEADFLOW_PII_HASH_KEY" "cfg" $root.Values.piiHashKey "inlineKey" "pii-hash-key") }}
- name: LEADFLOW_REDIS_PREFIX
  value: {{ $root.Values.externalRedis.prefix | quote }}
- name: LEADFLOW_LOG_LEVEL
  value: {{ $root.Values.logLevel | quote }}
{{- if ne .skip "LEADFLOW_COMPLIANCE_ADDR" }}
- name: LEADFLOW_COMPLIANCE_ADDR
  value: {{ include "leadflow.complianceAddr" $root | quote }}
{{- end }}
{{- if ne .skip "LEADFLOW_DISPATCHER_ADDR" }}
- name: LEADFLOW_DISPATCHER_ADDR
  value: {{ include "leadflow.dispatcherAddr" $root | quote }}
{{- end }}
{{- with $root.Values.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Pod-level settings shared by every pod of the chart. */}}
{{- define "leadflow.podCommon" -}}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
{{- with .Values.priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
{{- with .Values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/*
The one Deployment of the chart, driven by a spec rather than copied per component:
(dict "root" $ "component" "gateway" "cfg" .Values.gateway "module" "leadflow_gateway"
      "autoscaled" false "env" (list ...) "ports" (list ...) "probes" (dict ...)
      "serviceAccountName" "..." "strategy" (dict ...) "automountToken" false
      "tlsIdentity" "dial-worker")   (mTLS identity; default: the component)
*/}}
{{- define "leadflow.deployment" -}}
{{- $root := .root }}
{{- $cfg := .cfg }}
{{- $sel := dict "root" $root "component" .component }}
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ include "leadflow.componentName" $sel }}
  namespace: {{ $root.Release.Namespace }}
  labels:
    {{- include "leadflow.labels" $sel | nindent 4 }}
spec:
  {{- if not .autoscaled }}
  replicas: {{ $cfg.replicaCount | default 1 }}
  {{- end }}
  revisionHistoryLimit: 5
  {{- with .strategy }}
  strategy:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  selector:
    matchLabels:
      {{- include "leadflow.selectorLabels" $sel | nindent 6 }}
  template:
    metadata:
      labels:
        {{- include "leadflow.selectorLabels" $sel | nindent 8 }}
        {{- with $root.Values.podLabels }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      annotations:
        checksum/secret: {{ include (print $root.Template.BasePath "/secret.yaml") $root | sha256sum }}
        {{- with $root.Values.podAnnotations }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
    spec:
      serviceAccountName: {{ .serviceAccountName }}
      automountServiceAccountToken: {{ .automountToken | default false }}
      terminationGracePeriodSeconds: {{ $cfg.terminationGracePeriodSeconds | default 30 }}
      {{- include "leadflow.podCommon" $root | nindent 6 }}
      {{- with $root.Values.topologySpreadConstraints }}
      topologySpreadConstraints:
        {{- toYaml . | nindent 8 }}
      {{- else }}
      topologySpreadConstraints:
        - maxSkew: 1
          topologyKey: kubernetes.io/hostname
          whenUnsatisfiable: ScheduleAnyway
          labelSelector:
            matchLabels:
              {{- include "leadflow.selectorLabels" $sel | nindent 14 }}
      {{- end }}
      containers:
        - name: {{ .component }}
          image: {{ include "leadflow.image" $root }}
          imagePullPolicy: {{ $root.Values.image.pullPolicy }}
          args: ["python", "-m", {{ .module | quote }}{{ range .extraArgs }}, {{ . | quote }}{{ end }}]
          securityContext:
            {{- toYaml $root.Values.containerSecurityContext | nindent 12 }}
          {{- with .ports }}
          ports:
            {{- toYaml . | nindent 12 }}
          {{- end }}
          env:
            {{- if .minimalEnv }}
            {{- /* No database or Redis credentials where they are not needed. */}}
            - name: LEADFLOW_LOG_LEVEL
              value: {{ $root.Values.logLevel | quote }}
            - name: LEADFLOW_COMPLIANCE_ADDR
              value: {{ include "leadflow.complianceAddr" $root | quote }}
            {{- else }}
            {{- include "leadflow.commonEnv" (dict "root" $root "skip" (.bindEnv | default "")) | nindent 12 }}
            {{- end }}
            {{- include "leadflow.tlsEnv" $root | nindent 12 }}
            - name: LEADFLOW_ENVIRONMENT
              value: production
            {{- if eq .component "compliance" }}
            - name: LEADFLOW_KEYRING_DIR
              value: {{ $root.Values.keyring.mountPath | quote }}
            - name: LEADFLOW_KEYRING_AUTOCREATE
              value: "false"
            {{- end }}
            {{- with .env }}
            {{- toYaml . | nindent 12 }}
            {{- end }}
            {{- with $cfg.extraEnv }}
            {{- toYaml . | nindent 12 }}
            {{- end }}
          {{- with .probes }}
          {{- toYaml . | nindent 10 }}
          {{- end }}
          resources:
            {{- toYaml .resources | nindent 12 }}
          volumeMounts:
            - name: tmp
              mountPath: /tmp
            - name: tls
              mountPath: {{ $root.Values.tls.mountPath }}
              readOnly: true
            {{- if eq .component "compliance" }}
            - name: keyring
              mountPath: {{ $root.Values.keyring.mountPath }}
              readOnly: true
            {{- end }}
      volumes:
        - name: tmp
          emptyDir:
            sizeLimit: 64Mi
        - name: tls
          secret:
            secretName: {{ printf "%s-tls-%s" (include "leadflow.fullname" $root) (.tlsIdentity | default .component) }}
            defaultMode: 0400
        {{- if eq .component "compliance" }}
        - name: keyring
          secret:
            secretName: {{ $root.Values.keyring.existingSecret | default (printf "%s-keyring" (include "leadflow.fullname" $root)) }}
            defaultMode: 0400
        {{- end }}
{{- end }}

{{/* A PodDisruptionBudget for one component: (dict "root" $ "component" "x" "pdb" .Values.x.podDisruptionBudget). */}}
{{- define "leadflow.pdb" -}}
{{- $sel := dict "root" .root "component" .component }}
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: {{ include "leadflow.componentName" $sel }}
  namespace: {{ .root.Release.Namespace }}
  labels:
    {{- include "leadflow.labels" $sel | nindent 4 }}
spec:
  {{- if hasKey .pdb "minAvailable" }}
  minAvailable: {{ .pdb.minAvailable }}
  {{- else }}
  maxUnavailable: {{ .pdb.maxUnavailable | default 1 }}
  {{- end }}
  selector:
    matchLabels:
      {{- include "leadflow.selectorLabels" $sel | nindent 6 }}
{{- end }}

{{/* Worker group queue list as a comma string. */}}
{{- define "leadflow.queues" -}}
{{- join "," .queues }}
{{- end }}

{{/* The list name Dramatiq keeps a queue's waiting message ids in. */}}
{{- define "leadflow.dramatiqList" -}}
{{- printf "%sdramatiq:%s" .root.Values.externalRedis.prefix .queue }}
{{- end }}

{{/* mTLS: the identity a worker group calls with, from its queues (see leadflow_core.access_policy). */}}
{{- define "leadflow.workerIdentity" -}}
{{- $dial := 0 }}
{{- range .queues }}{{ if hasPrefix "dial." . }}{{ $dial = add1 $dial }}{{ end }}{{ end }}
{{- if eq $dial (len .queues) }}dial-worker{{ else if eq $dial 0 }}jobs-worker{{ else }}worker{{ end }}
{{- end }}

{{/* mTLS: every identity the chart issues a certificate for, space-separated. */}}
{{- define "leadflow.tlsIdentities" -}}
{{- $ids := list "gateway" "compliance" "dispatcher" "operator" "cli" }}
{{- range $group, $g := .Values.workers.groups }}
{{- if $g.enabled }}{{ $ids = append $ids (include "leadflow.workerIdentity" $g) }}{{ end }}
{{- end }}
{{- uniq $ids | join " " }}
{{- end }}

{{/* mTLS: the SPIFFE IDs one certificate carries (a mixed worker group holds both worker identities). */}}
{{- define "leadflow.tlsUris" -}}
{{- if eq . "worker" }}spiffe://leadflow.local/dial-worker spiffe://leadflow.local/jobs-worker
{{- else }}{{ printf "spiffe://leadflow.local/%s" . }}{{ end }}
{{- end }}

{{/* mTLS: the DNS names a gRPC server's certificate answers to (clients dial the Service name). */}}
{{- define "leadflow.tlsDnsNames" -}}
{{- if has .identity (list "compliance" "dispatcher") }}
{{- $svc := include "leadflow.componentName" (dict "root" .root "component" .identity) }}
{{- $ns := .root.Release.Namespace }}
{{- printf "%s %s.%s %s.%s.svc %s.%s.svc.cluster.local" $svc $svc $ns $svc $ns $svc $ns }}
{{- end }}
{{- end }}

{{/* mTLS: env pointing a container at its mounted certificate. */}}
{{- define "leadflow.tlsEnv" -}}
- name: LEADFLOW_TLS_CA_FILE
  value: {{ printf "%s/ca.crt" .Values.tls.mountPath | quote }}
- name: LEADFLOW_TLS_CERT_FILE
  value: {{ printf "%s/tls.crt" .Values.tls.mountPath | quote }}
- name: LEADFLOW_TLS_KEY_FILE
  value: {{ printf "%s/tls.key" .Values.tls.mountPath | quote }}
{{- end }}
