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
{{- $securityReserved := list "ssl.keystore.type" "ssl.keystore.location" "ssl.keystore.certificate.chain" "ssl.keystore.key" "ssl.truststore.type" "ssl.truststore.location" "ssl.truststore.certificates" "ssl.client.auth" "sasl.enabled.mechanisms" "authorizer.class.name" "super.users" "allow.everyone.if.no.acl.found" }}
{{- range $key, $_ := .Values.config }}
{{- if has $key $reserved }}
{{- fail (printf "config.%s is set by the chart itself; use the chart's values (ports, externalAccess, persistence, terminationGracePeriodSeconds) instead" $key) }}
{{- end }}
{{- if has $key $securityReserved }}
{{- fail (printf "config.%s is set by the chart itself; use the chart's tls, sasl and authorizer values instead" $key) }}
{{- end }}
{{- if or (eq $key "gateway.listener") (hasPrefix "gateway.ssl." $key) (eq $key "gateway.client.config") }}
{{- fail (printf "config.%s is set by the chart itself; use gateway.enabled, gateway.port, gateway.clientConfig and tls instead" $key) }}
{{- end }}
{{- if or (hasSuffix "sasl.jaas.config" $key) (hasPrefix "listener.name." $key) }}
{{- fail (printf "config.%s would put a listener's credentials into the pod spec; give PLAIN users in a secret (sasl.plain.secretName)" $key) }}
{{- end }}
{{- end }}
{{- $tls := .Values.tls }}
{{- $in := .Values.listeners.internal.protocol }}
{{- $out := ternary "" .Values.listeners.external.protocol (eq .Values.externalAccess.type "disabled") }}
{{- $usesTls := or (eq $out "SSL") (eq $out "SASL_SSL") }}
{{- $usesSasl := or (hasPrefix "SASL_" $in) (hasPrefix "SASL_" $out) }}
{{- if and $usesTls (not $tls.enabled) }}
{{- fail (printf "listeners.external.protocol=%s needs tls.enabled=true and a certificate (tls.secretName or tls.certManager)" $out) }}
{{- end }}
{{- if and $tls.enabled (not $usesTls) }}
{{- fail "tls.enabled=true, but no listener uses TLS: set listeners.external.protocol to SSL or SASL_SSL" }}
{{- end }}
{{- if $tls.enabled }}
{{- if and $tls.certManager.enabled $tls.secretName }}
{{- fail "give tls.secretName or tls.certManager.enabled, not both" }}
{{- end }}
{{- if not (or $tls.certManager.enabled $tls.secretName) }}
{{- fail "tls.enabled=true needs tls.secretName (a kubernetes.io/tls secret) or tls.certManager.enabled=true" }}
{{- end }}
{{- if and $tls.certManager.enabled (not $tls.certManager.issuerRef.name) }}
{{- fail "tls.certManager.enabled=true needs tls.certManager.issuerRef.name" }}
{{- end }}
{{- if and $tls.certManager.enabled (ne $tls.keystore.combinedKey "tls-combined.pem") }}
{{- fail "tls.certManager writes the combined PEM as tls-combined.pem: leave tls.keystore.combinedKey at that" }}
{{- end }}
{{- if and $tls.certManager.enabled (ne $tls.keystore.format "combined") }}
{{- fail "tls.certManager rotates the certificate in place: use tls.keystore.format=combined so the broker reloads it" }}
{{- end }}
{{- end }}
{{- if and $usesSasl (not .Values.sasl.enabled) }}
{{- fail "a SASL_* listener needs sasl.enabled=true" }}
{{- end }}
{{- if and .Values.sasl.enabled (not $usesSasl) }}
{{- fail "sasl.enabled=true, but no listener uses SASL: set listeners.internal.protocol to SASL_PLAINTEXT or listeners.external.protocol to SASL_SSL" }}
{{- end }}
{{- if and .Values.sasl.enabled (has "PLAIN" .Values.sasl.mechanisms) (not .Values.sasl.plain.secretName) }}
{{- fail "sasl.mechanisms has PLAIN: its users come from a secret, sasl.plain.secretName" }}
{{- end }}
{{- if and .Values.authorizer.enabled (not .Values.authorizer.superUsers) }}
{{- fail "authorizer.enabled=true needs authorizer.superUsers (at least the admin principal), or nobody can create the first ACL" }}
{{- end }}
{{- $ab := .Values.aclBootstrap }}
{{- if $ab.enabled }}
{{- if not $ab.commandConfig.secretName }}
{{- fail "aclBootstrap.enabled=true needs aclBootstrap.commandConfig.secretName (the super user's client properties)" }}
{{- end }}
{{- if and $ab.acls (not .Values.authorizer.enabled) }}
{{- fail "aclBootstrap.acls without authorizer.enabled=true: ACLs would be stored but never checked" }}
{{- end }}
{{- if and $ab.scramUsers (not (or (has "SCRAM-SHA-256" .Values.sasl.mechanisms) (has "SCRAM-SHA-512" .Values.sasl.mechanisms))) }}
{{- fail "aclBootstrap.scramUsers needs SCRAM-SHA-256 or SCRAM-SHA-512 in sasl.mechanisms" }}
{{- end }}
{{- range $ab.acls }}
{{- $n := 0 }}
{{- if .topic }}{{ $n = add1 $n }}{{ end }}
{{- if .group }}{{ $n = add1 $n }}{{ end }}
{{- if .transactionalId }}{{ $n = add1 $n }}{{ end }}
{{- if .cluster }}{{ $n = add1 $n }}{{ end }}
{{- if ne (int $n) 1 }}
{{- fail (printf "aclBootstrap.acls: each entry names one resource (topic, group, transactionalId or cluster: true): %v" .) }}
{{- end }}
{{- if not (or .allowPrincipals .denyPrincipals) }}
{{- fail (printf "aclBootstrap.acls: an entry needs allowPrincipals or denyPrincipals: %v" .) }}
{{- end }}
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
{{- $in := .Values.listeners.internal.protocol }}
{{- $l := list (printf "INTERNAL:%s" $in) (printf "LOCAL:%s" $in) }}
{{- if ne .Values.externalAccess.type "disabled" }}
{{- $l = append $l (printf "EXTERNAL:%s" .Values.listeners.external.protocol) }}
{{- end }}
{{- join "," $l }}
{{- end }}

{{/*
Names (lower case, as in Kafka's listener.name.<name>. prefix) of the
listeners whose protocol is SASL_*: each gets the PLAIN users' JAAS entry.
*/}}
{{- define "strom.saslListeners" -}}
{{- $l := list }}
{{- if hasPrefix "SASL_" .Values.listeners.internal.protocol }}
{{- $l = list "internal" "local" }}
{{- end }}
{{- if and (ne .Values.externalAccess.type "disabled") (hasPrefix "SASL_" .Values.listeners.external.protocol) }}
{{- $l = append $l "external" }}
{{- end }}
{{- join "," $l }}
{{- end }}

{{/*
The secret holding the broker's certificate.
*/}}
{{- define "strom.tlsSecretName" -}}
{{- if .Values.tls.certManager.enabled }}
{{- printf "%s-tls" (include "strom.fullname" .) }}
{{- else }}
{{- .Values.tls.secretName }}
{{- end }}
{{- end }}

{{/*
The in-cluster bootstrap address (the INTERNAL listener, through the
bootstrap Service).
*/}}
{{- define "strom.bootstrap" -}}
{{- printf "%s.%s.svc.%s:%d" (include "strom.fullname" .) .Release.Namespace .Values.clusterDomain (int .Values.ports.kafka) }}
{{- end }}

{{/*
Labels of the ACL bootstrap Job: not the brokers' component, so no Service or
PodDisruptionBudget selects its pod.
*/}}
{{- define "strom.bootstrapLabels" -}}
helm.sh/chart: {{ include "strom.chart" . }}
app.kubernetes.io/name: {{ include "strom.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: acl-bootstrap
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/part-of: strom
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* The secret of the gateway's own client properties: gateway.clientConfig's, else the ACL bootstrap's. */}}
{{- define "strom.gatewayClientSecret" -}}
{{- .Values.gateway.clientConfig.secretName | default .Values.aclBootstrap.commandConfig.secretName -}}
{{- end }}
