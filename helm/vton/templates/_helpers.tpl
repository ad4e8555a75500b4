{{/* The chart's name, possibly overridden. */}}
{{- define "vton.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* <release>-<chart>, or the release alone when it already holds the chart's name; at most 63 characters. */}}
{{- define "vton.fullname" -}}
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

{{/* The stages in pipeline order: every per-stage template ranges over this list. */}}
{{- define "vton.stageNames" -}}
["pose", "densepose", "parsing", "warp", "diffusion"]
{{- end }}

{{/* The gRPC service each stage serves (its readiness is reported under this name in grpc.health.v1). */}}
{{- define "vton.grpcService" -}}
{{- $services := dict "pose" "PoseService" "densepose" "DensePoseService" "parsing" "ParsingService" "warp" "WarpService" "diffusion" "DiffusionService" -}}
vton.v1.{{ index $services . }}
{{- end }}

{{/* A component's resource name. Context: dict root, component. */}}
{{- define "vton.componentName" -}}
{{- printf "%s-%s" (include "vton.fullname" .root) .component | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels on every resource of a component. Context: dict root, component. */}}
{{- define "vton.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "vton.selectorLabels" . }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/part-of: vton
{{- end }}

{{/* The labels a component's selectors match. Context: dict root, component. */}}
{{- define "vton.selectorLabels" -}}
app.kubernetes.io/name: {{ include "vton.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* registry/repository:tag or registry/repository@digest. Context: dict root, image. */}}
{{- define "vton.image" -}}
{{- $repo := .image.repository -}}
{{- if .root.Values.imageRegistry }}{{ $repo = printf "%s/%s" (trimSuffix "/" .root.Values.imageRegistry) $repo }}{{ end -}}
{{- if .image.digest -}}
{{ $repo }}@{{ .image.digest }}
{{- else -}}
{{ $repo }}:{{ .image.tag | default .root.Chart.AppVersion }}
{{- end -}}
{{- end }}

{{- define "vton.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "vton.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The address the orchestrator dials for a stage. dns:/// lets a round_robin gRPC client see every pod
behind the headless Service. Context: dict root, component. */}}
{{- define "vton.stageAddress" -}}
{{- $stage := index .root.Values.stages .component -}}
{{- $override := index .root.Values.orchestrator.stageAddresses .component | default "" -}}
{{- if $override -}}
{{ $override }}
{{- else if not $stage.enabled -}}
{{- fail (printf "stages.%s.enabled is false: set orchestrator.stageAddresses.%s to where that stage runs" .component .component) -}}
{{- else -}}
dns:///{{ include "vton.componentName" . }}.{{ .root.Release.Namespace }}.svc:{{ $stage.grpcPort }}
{{- end -}}
{{- end }}

{{/* An env var read from the platform Secret. Context: dict root, env, key, optional. */}}
{{- define "vton.secretEnv" -}}
- name: {{ .env }}
  valueFrom:
    secretKeyRef:
      name: {{ .secret | default .root.Values.secrets.existingSecret }}
      key: {{ index .root.Values.secrets.keys .key }}
      {{- if .optional }}
      optional: true
      {{- end }}
{{- end }}

{{/* The `metrics:` list of an HPA. Context: dict values (the component's values), inFlightMetric. */}}
{{- define "vton.hpaMetrics" -}}
{{- $a := .values.autoscaling -}}
{{- if eq $a.metric "inFlight" }}
- type: Pods
  pods:
    metric:
      name: {{ .inFlightMetric }}
    target:
      type: AverageValue
      averageValue: {{ $a.targetInFlightPerPod | quote }}
{{- else }}
- type: Resource
  resource:
    name: cpu
    target:
      type: Utilization
      averageUtilization: {{ $a.targetCPUUtilizationPercentage }}
{{- end }}
{{- end }}

{{/* A HorizontalPodAutoscaler or a KEDA ScaledObject for a component whose autoscaling is enabled.
Context: dict root, component, values, inFlightMetric, scaleDownSeconds. */}}
{{- define "vton.autoscaler" -}}
{{- $a := .values.autoscaling -}}
{{- if $a.enabled }}
{{- if gt (int $a.minReplicas) (int $a.maxReplicas) }}
{{- fail (printf "%s.autoscaling: minReplicas (%v) is above maxReplicas (%v)" .component $a.minReplicas $a.maxReplicas) }}
{{- end }}
{{- $name := include "vton.componentName" . }}
{{- if eq .root.Values.scaling.provider "keda" }}
{{- $keda := .root.Values.scaling.keda }}
---
apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata:
  name: {{ $name }}
  namespace: {{ .root.Release.Namespace }}
  labels:
    {{- include "vton.labels" . | nindent 4 }}
spec:
  scaleTargetRef:
    name: {{ $name }}
  minReplicaCount: {{ $a.minReplicas }}
  maxReplicaCount: {{ $a.maxReplicas }}
  pollingInterval: {{ $keda.pollingInterval }}
  cooldownPeriod: {{ $keda.cooldownPeriod }}
  triggers:
    {{- if eq $a.metric "inFlight" }}
    - type: prometheus
      metadata:
        serverAddress: {{ $keda.prometheusServerAddress }}
        # In-flight requests summed over the component's pods; KEDA divides by the replica count.
        query: sum({{ .inFlightMetric }}{namespace="{{ .root.Release.Namespace }}", service="{{ $name }}"})
        threshold: {{ $a.targetInFlightPerPod | quote }}
    {{- else }}
    - type: cpu
      metricType: Utilization
      metadata:
        value: {{ $a.targetCPUUtilizationPercentage | quote }}
    {{- end }}
{{- else }}
---
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata:
  name: {{ $name }}
  namespace: {{ .root.Release.Namespace }}
  labels:
    {{- include "vton.labels" . | nindent 4 }}
spec:
  scaleTargetRef:
    apiVersion: apps/v1
    kind: Deployment
    name: {{ $name }}
  minReplicas: {{ $a.minReplicas }}
  maxReplicas: {{ $a.maxReplicas }}
  metrics:
    {{- include "vton.hpaMetrics" . | trim | nindent 4 }}
  behavior:
    # Scale up at once; scale down only after a quiet spell (a stage pod takes minutes to load its networks).
    scaleUp:
      stabilizationWindowSeconds: 0
    scaleDown:
      stabilizationWindowSeconds: {{ .scaleDownSeconds }}
{{- end }}
{{- end }}
{{- end }}

{{/* A PodDisruptionBudget. Context: dict root, component, values. */}}
{{- define "vton.pdb" -}}
{{- if .values.pdb.enabled }}
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: {{ include "vton.componentName" . }}
  namespace: {{ .root.Release.Namespace }}
  labels:
    {{- include "vton.labels" . | nindent 4 }}
spec:
  {{- if hasKey .values.pdb "minAvailable" }}
  minAvailable: {{ .values.pdb.minAvailable }}
  {{- else }}
  maxUnavailable: {{ .values.pdb.maxUnavailable }}
  {{- end }}
  selector:
    matchLabels:
      {{- include "vton.selectorLabels" . | nindent 6 }}
{{- end }}
{{- end }}

{{/* A ServiceMonitor, where the Prometheus Operator's API exists. Context: dict root, component. */}}
{{- define "vton.serviceMonitor" -}}
{{- $sm := .root.Values.metrics.serviceMonitor }}
{{- if and $sm.enabled (.root.Capabilities.APIVersions.Has "monitoring.coreos.com/v1") }}
---
apiVersion: monitoring.coreos.com/v1
kind: ServiceMonitor
metadata:
  name: {{ include "vton.componentName" . }}
  namespace: {{ .root.Release.Namespace }}
  labels:
    {{- include "vton.labels" . | nindent 4 }}
    {{- with $sm.labels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
spec:
  selector:
    matchLabels:
      {{- include "vton.selectorLabels" . | nindent 6 }}
  namespaceSelector:
    matchNames: [{{ .root.Release.Namespace | quote }}]
  endpoints:
    - port: metrics
      path: /metrics
      interval: {{ $sm.interval }}
      scrapeTimeout: {{ $sm.scrapeTimeout }}
{{- end }}
{{- end }}
