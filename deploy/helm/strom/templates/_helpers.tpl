{{/*
Chart name, shortened to fit the 63-character label and DNS limits.
*/}}
{{- define "strom.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Name of every object. The StatefulSet's pods are <fullname>-N and each gets an
external Service <fullname>-N-external, so leave room for that suffix.
*/}}
{{- define "strom.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "strom.headlessName" -}}
{{ include "strom.fullname" . }}-headless
{{- end }}

{{- define "strom.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Labels that select the broker pods. Never change these in an upgrade: a
StatefulSet's selector is immutable.
*/}}
{{- define "strom.selectorLabels" -}}
app.kubernetes.io/name: {{ include "strom.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: broker
{{- end }}

{{- define "strom.labels" -}}
helm.sh/chart: {{ include "strom.chart" . }}
{{ include "strom.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/part-of: strom
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "strom.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "strom.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "strom.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/*
Refuses values the chart cannot honour yet, before anything is rendered.
Included from every template so that no partial release is produced.
*/}}
{{- define "strom.validate" -}}
{{- if gt (int .Values.replicas) 1 }}
{{- fail "Strom clustering is not implemented yet: replicas must be 1" }}
{{- end }}
{{- if and (eq .Values.externalAccess.type "loadBalancer") (not .Values.externalAccess.loadBalancer.advertisedHost) }}
{{- fail "externalAccess.type=loadBalancer needs externalAccess.loadBalancer.advertisedHost: the broker has no API access to learn its load balancer's address" }}
{{- end }}
{{- if lt (int .Values.terminationGracePeriodSeconds) 15 }}
{{- fail "terminationGracePeriodSeconds must be at least 15: Strom is given 10 s less than that to shut down cleanly" }}
{{- end }}
{{- $reserved := list "listeners" "advertised.listeners" "listener.security.protocol.map" "inter.broker.listener.name" "node.id" "log.dirs" "admin.http.listener" "shutdown.timeout.ms" }}
{{- range $key, $_ := .Values.config }}
{{- if has $key $reserved }}
{{- fail (printf "config.%s is set by the chart itself; use the chart's values (ports, externalAccess, persistence, terminationGracePeriodSeconds) instead" $key) }}
{{- end }}
{{- end }}
{{- end }}

{{/*
A config value as the env var's string. Helm reads every YAML number as a
float, which would print 604800000 as 6.048e+08; whole numbers are printed as
integers.
*/}}
{{- define "strom.configValue" -}}
{{- if and (kindIs "float64" .) (eq (float64 (int64 .)) .) }}
{{- int64 . }}
{{- else }}
{{- . }}
{{- end }}
{{- end }}

{{/*
listeners / advertised.listeners / protocol map for the chosen external
access. See docs/kubernetes.md for why each listener is there.
*/}}
{{- define "strom.listeners" -}}
{{- $p := .Values.ports }}
{{- $l := list (printf "INTERNAL://${env:POD_IP}:%d" (int $p.kafka)) (printf "LOCAL://127.0.0.1:%d" (int $p.kafka)) }}
{{- if ne .Values.externalAccess.type "disabled" }}
{{- $l = append $l (printf "EXTERNAL://0.0.0.0:%d" (int $p.external)) }}
{{- end }}
{{- join "," $l }}
{{- end }}

{{- define "strom.advertisedListeners" -}}
{{- $p := .Values.ports }}
{{- $ea := .Values.externalAccess }}
{{- $internal := printf "INTERNAL://${env:POD_NAME}.%s.${env:POD_NAMESPACE}.svc.%s:%d" (include "strom.headlessName" .) .Values.clusterDomain (int $p.kafka) }}
{{- $l := list $internal (printf "LOCAL://localhost:%d" (int $p.kafka)) }}
{{- if eq $ea.type "nodePort" }}
{{- $l = append $l (printf "EXTERNAL://%s:${ordinal:%d}" (default "${env:HOST_IP}" $ea.nodePort.advertisedHost) (int $ea.nodePort.base)) }}
{{- else if eq $ea.type "loadBalancer" }}
{{- $l = append $l (printf "EXTERNAL://%s:%d" $ea.loadBalancer.advertisedHost (int $ea.loadBalancer.port)) }}
{{- end }}
{{- join "," $l }}
{{- end }}

{{- define "strom.protocolMap" -}}
{{- if eq .Values.externalAccess.type "disabled" }}
{{- print "INTERNAL:PLAINTEXT,LOCAL:PLAINTEXT" }}
{{- else }}
{{- print "INTERNAL:PLAINTEXT,LOCAL:PLAINTEXT,EXTERNAL:PLAINTEXT" }}
{{- end }}
{{- end }}
