{{/*
Chart name.
*/}}
{{- define "imagesvc.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Fully qualified app name: release name + chart name, at most 63 characters (DNS label).
*/}}
{{- define "imagesvc.fullname" -}}
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

{{/*
Namespace of every object.
*/}}
{{- define "imagesvc.namespace" -}}
{{- default .Release.Namespace .Values.namespaceOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Chart name and version, for the helm.sh/chart label.
*/}}
{{- define "imagesvc.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Labels of every object.
*/}}
{{- define "imagesvc.labels" -}}
helm.sh/chart: {{ include "imagesvc.chart" . }}
{{ include "imagesvc.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: imagesvc
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
Labels naming this release of the chart.
*/}}
{{- define "imagesvc.selectorLabels" -}}
app.kubernetes.io/name: {{ include "imagesvc.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
Labels selecting the server pods (workload selector, Service, PDB, NetworkPolicy). The
component keeps the `helm test` pod out: a controller adopts any pod its selector matches.
*/}}
{{- define "imagesvc.serverSelectorLabels" -}}
{{ include "imagesvc.selectorLabels" . }}
app.kubernetes.io/component: server
{{- end }}

{{/*
Labels of the `helm test` pod.
*/}}
{{- define "imagesvc.testSelectorLabels" -}}
{{ include "imagesvc.selectorLabels" . }}
app.kubernetes.io/component: test
{{- end }}

{{/*
ServiceAccount name.
*/}}
{{- define "imagesvc.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "imagesvc.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
An image reference from {repository, tag, digest}: by digest when one is given.
Call with (dict "image" <map> "defaultTag" <string>).
*/}}
{{- define "imagesvc.imageRef" -}}
{{- if .image.digest }}
{{- printf "%s@%s" .image.repository .image.digest }}
{{- else }}
{{- printf "%s:%s" .image.repository (default .defaultTag .image.tag | toString) }}
{{- end }}
{{- end }}

{{/*
A pull policy: the one given, else IfNotPresent for a digest (immutable) and Always for a
tag (tags move). Call with (dict "image" <map>).
*/}}
{{- define "imagesvc.pullPolicy" -}}
{{- if .image.pullPolicy }}{{ .image.pullPolicy }}{{ else if .image.digest }}IfNotPresent{{ else }}Always{{ end }}
{{- end }}

{{/*
The imagesvc image.
*/}}
{{- define "imagesvc.image" -}}
{{- include "imagesvc.imageRef" (dict "image" .Values.image "defaultTag" .Chart.AppVersion) }}
{{- end }}

{{/*
The `helm test` image (the imagesvc image unless overridden).
*/}}
{{- define "imagesvc.testImage" -}}
{{- $image := dict "repository" (default .Values.image.repository .Values.tests.image.repository) "tag" (default .Values.image.tag .Values.tests.image.tag) "digest" (default .Values.image.digest .Values.tests.image.digest) }}
{{- include "imagesvc.imageRef" (dict "image" $image "defaultTag" .Chart.AppVersion) }}
{{- end }}

{{/*
The Docker-in-Docker image.
*/}}
{{- define "imagesvc.dindImage" -}}
{{- include "imagesvc.imageRef" (dict "image" .Values.dind.image "defaultTag" "dind") }}
{{- end }}

{{/*
Names of the Secrets the chart reads.
*/}}
{{- define "imagesvc.tokensSecretName" -}}
{{- default (printf "%s-tokens" (include "imagesvc.fullname" .)) .Values.auth.tokens.existingSecret }}
{{- end }}

{{/*
The fleet: its headless Service (every ready pod's address in DNS), the Secret and key of
the token the pods present to their peers, and the kept-images ConfigMap.
*/}}
{{- define "imagesvc.fleetServiceName" -}}
{{- printf "%s-fleet" (include "imagesvc.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "imagesvc.fleetPeers" -}}
{{- printf "dns:///%s.%s.svc.%s:%d" (include "imagesvc.fleetServiceName" .) (include "imagesvc.namespace" .) .Values.clusterDomain (.Values.server.grpcPort | int) }}
{{- end }}

{{/*
Whether the pods present a fleet token: with bearer tokens on (under mutual TLS alone
their certificate names them).
*/}}
{{- define "imagesvc.fleetUsesToken" -}}
{{- if and .Values.fleet.enabled .Values.auth.tokens.enabled }}true{{ end }}
{{- end }}

{{- define "imagesvc.fleetTokenSecretName" -}}
{{- default (include "imagesvc.tokensSecretName" .) .Values.fleet.token.existingSecret }}
{{- end }}

{{/*
The key of the token the chart generates in its tokens Secret.
*/}}
{{- define "imagesvc.generatedFleetTokenKey" -}}fleet-token{{- end }}

{{- define "imagesvc.fleetTokenKey" -}}
{{- if .Values.fleet.token.existingSecret }}{{ .Values.fleet.token.key }}{{ else }}{{ include "imagesvc.generatedFleetTokenKey" . }}{{ end }}
{{- end }}

{{- define "imagesvc.fleetCASecretName" -}}
{{- default .Values.tls.existingSecret .Values.fleet.tls.caSecret }}
{{- end }}

{{- define "imagesvc.keepImagesConfigMapName" -}}
{{- printf "%s-keep-images" (include "imagesvc.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Where the app container finds its files. Secrets are mounted as directories (never
subPath: subPath mounts receive no updates, and the server reloads these files).
*/}}
{{- define "imagesvc.paths.tokensDir" -}}/etc/imagesvc/tokens{{- end }}
{{- define "imagesvc.paths.tlsDir" -}}/etc/imagesvc/tls{{- end }}
{{- define "imagesvc.paths.clientCADir" -}}/etc/imagesvc/client-ca{{- end }}
{{- define "imagesvc.paths.clientsDir" -}}/etc/imagesvc/clients{{- end }}
{{- define "imagesvc.paths.socketDir" -}}/var/run/imagesvc-docker{{- end }}
{{- define "imagesvc.paths.fleetTokenDir" -}}/etc/imagesvc/fleet-token{{- end }}
{{- define "imagesvc.paths.fleetCADir" -}}/etc/imagesvc/fleet-ca{{- end }}
{{- define "imagesvc.paths.keepImagesDir" -}}/etc/imagesvc/keep-images{{- end }}

{{/*
The socket's group: the app container gets it as a supplementary group.
*/}}
{{- define "imagesvc.socketGroupId" -}}
{{- if eq .Values.mode "hostSocket" }}
{{- .Values.hostSocket.socketGroupId | int64 }}
{{- else }}
{{- .Values.dind.socketGroupId | int64 }}
{{- end }}
{{- end }}

{{/*
The socket's file name inside the shared directory.
*/}}
{{- define "imagesvc.socketName" -}}
{{- if eq .Values.mode "hostSocket" }}{{ .Values.hostSocket.socketName }}{{ else }}docker.sock{{ end }}
{{- end }}

{{/*
Refuse values that cannot work, with the setting to change. Included by the workload.
*/}}
{{- define "imagesvc.validate" -}}
{{- $authenticated := or .Values.auth.tokens.enabled .Values.tls.clientCA.existingSecret }}
{{- if and (not $authenticated) (not .Values.auth.insecureAllowUnauthenticated) }}
{{- fail "imagesvc refuses to listen beyond loopback without authentication: keep auth.tokens.enabled, or set tls.clientCA.existingSecret (mutual TLS), or (only behind something that authenticates callers) auth.insecureAllowUnauthenticated=true" }}
{{- end }}
{{- if and (eq .Values.mode "dind") .Values.auth.insecureAllowUnauthenticated (not (contains "$(POD_IP)" .Values.server.listenHost)) }}
{{- fail "auth.insecureAllowUnauthenticated in mode dind needs server.listenHost=$(POD_IP) (\"[$(POD_IP)]\" on IPv6): on 0.0.0.0 builds' RUN steps reach the server from inside the pod through the daemon's bridge, where no NetworkPolicy applies, and act as anyone" }}
{{- end }}
{{- if and .Values.tls.enabled (not .Values.tls.existingSecret) }}
{{- fail "tls.enabled needs tls.existingSecret: a kubernetes.io/tls Secret with the server certificate and key" }}
{{- end }}
{{- if and .Values.tls.clientCA.existingSecret (not .Values.tls.enabled) }}
{{- fail "tls.clientCA.existingSecret (mutual TLS) needs tls.enabled and tls.existingSecret" }}
{{- end }}
{{- if and .Values.auth.clientCertRoles.existingSecret (not .Values.tls.clientCA.existingSecret) }}
{{- fail "auth.clientCertRoles.existingSecret needs tls.clientCA.existingSecret (mutual TLS)" }}
{{- end }}
{{- if and (eq .Values.mode "hostSocket") (kindIs "invalid" .Values.hostSocket.socketGroupId) }}
{{- fail "mode hostSocket needs hostSocket.socketGroupId: the group id owning the Docker socket on the nodes (stat -c %g /var/run/docker.sock)" }}
{{- end }}
{{- if and .Values.fleet.enabled (ne .Values.mode "hostSocket") }}
{{- fail "fleet.enabled needs mode hostSocket: the fleet is the DaemonSet's pods, one per node (in mode dind every pod has a daemon of its own and no node of its own)" }}
{{- end }}
{{- if and .Values.fleet.keepImages (ne .Values.mode "hostSocket") }}
{{- fail "fleet.keepImages needs mode hostSocket: the images each node keeps are pulled by the node's own imagesvc pod" }}
{{- end }}
{{- if and .Values.fleet.enabled .Values.auth.tokens.enabled .Values.auth.tokens.existingSecret (not .Values.fleet.token.existingSecret) }}
{{- fail "fleet.enabled with auth.tokens.existingSecret needs fleet.token.existingSecret: a Secret with the plain token the pods present to their peers, whose identity has the fleet role (or admin) in your tokens file" }}
{{- end }}
{{- if and .Values.fleet.enabled .Values.fleet.token.existingSecret (not .Values.auth.tokens.existingSecret) }}
{{- fail "fleet.token.existingSecret needs auth.tokens.existingSecret: the chart's generated tokens file would not know that token (leave fleet.token.existingSecret empty and the chart generates the fleet token beside its admin token)" }}
{{- end }}
{{- if and .Values.fleet.enabled (not .Values.auth.tokens.enabled) (not .Values.auth.insecureAllowUnauthenticated) (not .Values.auth.clientCertRoles.existingSecret) }}
{{- fail "fleet.enabled with mutual TLS alone needs auth.clientCertRoles.existingSecret: the pods call their peers with their server certificate, whose name needs the fleet role (or admin) there (or keep auth.tokens.enabled for a fleet token)" }}
{{- end }}
{{- if le (.Values.terminationGracePeriodSeconds | float64) (.Values.server.shutdownGraceSeconds | float64) }}
{{- fail "terminationGracePeriodSeconds must exceed server.shutdownGraceSeconds, or the kubelet kills calls that are still draining" }}
{{- end }}
{{- end }}

{{/*
A comma-separated list for a server flag, from a list value.
*/}}
{{- define "imagesvc.joinList" -}}
{{- join "," . }}
{{- end }}

{{/*
The app container's environment: every `imagesvc serve` setting as its IMAGESVC_*
variable (config.py), so the image's entry point needs no arguments.
*/}}
{{- define "imagesvc.serverEnv" -}}
{{- if or (contains "$(POD_IP)" .Values.server.listenHost) .Values.fleet.enabled }}
# The pod's own address: server.listenHost may use it (the kubelet expands $(POD_IP)
# below), and the fleet's server gives it to its peers as its own address.
- name: POD_IP
  valueFrom:
    fieldRef:
      fieldPath: status.podIP
{{- end }}
{{- if .Values.fleet.enabled }}
# This node's name in FleetService answers (--node-name falls back to NODE_NAME).
- name: NODE_NAME
  valueFrom:
    fieldRef:
      fieldPath: spec.nodeName
{{- end }}
- name: DOCKER_HOST
  value: {{ printf "unix://%s/%s" (include "imagesvc.paths.socketDir" .) (include "imagesvc.socketName" .) | quote }}
- name: IMAGESVC_GRPC_ADDRESS
  value: {{ printf "%s:%d" (include "imagesvc.hostPort" .Values.server.listenHost) (.Values.server.grpcPort | int) | quote }}
- name: IMAGESVC_HTTP_ADDRESS
  value: {{ printf "%s:%d" (include "imagesvc.hostPort" .Values.server.listenHost) (.Values.server.httpPort | int) | quote }}
- name: IMAGESVC_LOG_LEVEL
  value: {{ .Values.server.logLevel | quote }}
- name: IMAGESVC_SHUTDOWN_GRACE_SECONDS
  value: {{ .Values.server.shutdownGraceSeconds | toString | quote }}
- name: IMAGESVC_DOCKER_WORKERS
  value: {{ .Values.server.dockerWorkers | int64 | toString | quote }}
- name: IMAGESVC_MAX_MESSAGE_BYTES
  value: {{ .Values.server.maxMessageBytes | int64 | toString | quote }}
- name: IMAGESVC_GRPC_MAX_CONNECTION_IDLE_SECONDS
  value: {{ .Values.server.grpcMaxConnectionIdleSeconds | toString | quote }}
- name: IMAGESVC_GRPC_MAX_CONNECTION_AGE_SECONDS
  value: {{ .Values.server.grpcMaxConnectionAgeSeconds | toString | quote }}
- name: IMAGESVC_GRPC_MAX_CONNECTION_AGE_GRACE_SECONDS
  value: {{ .Values.server.grpcMaxConnectionAgeGraceSeconds | toString | quote }}
- name: IMAGESVC_GRPC_MIN_PING_INTERVAL_SECONDS
  value: {{ .Values.server.grpcMinPingIntervalSeconds | toString | quote }}
- name: IMAGESVC_HTTP_HEADER_TIMEOUT_SECONDS
  value: {{ .Values.server.httpHeaderTimeoutSeconds | toString | quote }}
- name: IMAGESVC_HTTP_KEEPALIVE_TIMEOUT_SECONDS
  value: {{ .Values.server.httpKeepaliveTimeoutSeconds | toString | quote }}
- name: IMAGESVC_HTTP_MAX_CONNECTIONS
  value: {{ .Values.server.httpMaxConnections | int64 | toString | quote }}
- name: IMAGESVC_BUILD_SPOOL_DIR
  value: /tmp
{{- if .Values.auth.tokens.enabled }}
- name: IMAGESVC_TOKENS_FILE
  value: {{ printf "%s/tokens.json" (include "imagesvc.paths.tokensDir" .) | quote }}
{{- end }}
{{- if .Values.tls.enabled }}
- name: IMAGESVC_TLS_CERT_FILE
  value: {{ printf "%s/tls.crt" (include "imagesvc.paths.tlsDir" .) | quote }}
- name: IMAGESVC_TLS_KEY_FILE
  value: {{ printf "%s/tls.key" (include "imagesvc.paths.tlsDir" .) | quote }}
{{- end }}
{{- if .Values.tls.clientCA.existingSecret }}
- name: IMAGESVC_TLS_CLIENT_CA_FILE
  value: {{ printf "%s/ca.crt" (include "imagesvc.paths.clientCADir" .) | quote }}
{{- end }}
{{- if .Values.auth.clientCertRoles.existingSecret }}
- name: IMAGESVC_CLIENT_CERT_ROLES_FILE
  value: {{ printf "%s/clients.json" (include "imagesvc.paths.clientsDir" .) | quote }}
{{- end }}
{{- if .Values.auth.insecureAllowUnauthenticated }}
# DANGER: no authentication on the pod's network (auth.insecureAllowUnauthenticated).
- name: IMAGESVC_INSECURE_ALLOW_UNAUTHENTICATED
  value: "true"
{{- end }}
{{- with .Values.policy.pullAllowlist }}
- name: IMAGESVC_PULL_ALLOWLIST
  value: {{ include "imagesvc.joinList" . | quote }}
{{- end }}
{{- with .Values.policy.pushAllowlist }}
- name: IMAGESVC_PUSH_ALLOWLIST
  value: {{ include "imagesvc.joinList" . | quote }}
{{- end }}
- name: IMAGESVC_BUILD_CONTEXT_MAX_BYTES
  value: {{ .Values.build.contextMaxBytes | int64 | toString | quote }}
- name: IMAGESVC_BUILD_MEMORY_BYTES
  value: {{ .Values.build.memoryBytes | int64 | toString | quote }}
- name: IMAGESVC_BUILD_CPUS
  value: {{ .Values.build.cpus | toString | quote }}
- name: IMAGESVC_BUILD_CPU_SHARES
  value: {{ .Values.build.cpuShares | int64 | toString | quote }}
{{- with .Values.build.cpusetCpus }}
- name: IMAGESVC_BUILD_CPUSET_CPUS
  value: {{ . | quote }}
{{- end }}
- name: IMAGESVC_BUILD_TIMEOUT_SECONDS
  value: {{ .Values.build.timeoutSeconds | toString | quote }}
{{- with .Values.build.argAllowlist }}
- name: IMAGESVC_BUILD_ARG_ALLOWLIST
  value: {{ include "imagesvc.joinList" . | quote }}
{{- end }}
{{- with .Values.build.argDenylist }}
- name: IMAGESVC_BUILD_ARG_DENYLIST
  value: {{ include "imagesvc.joinList" . | quote }}
{{- end }}
- name: IMAGESVC_BUILD_ALLOW_REMOTE_ADD
  value: {{ .Values.build.allowRemoteAdd | toString | quote }}
- name: IMAGESVC_MAX_CONCURRENT_PULLS
  value: {{ .Values.limits.maxConcurrentPulls | int64 | toString | quote }}
- name: IMAGESVC_MAX_CONCURRENT_PUSHES
  value: {{ .Values.limits.maxConcurrentPushes | int64 | toString | quote }}
- name: IMAGESVC_MAX_CONCURRENT_BUILDS
  value: {{ .Values.limits.maxConcurrentBuilds | int64 | toString | quote }}
- name: IMAGESVC_TRANSFER_STALL_TIMEOUT_SECONDS
  value: {{ .Values.limits.transferStallTimeoutSeconds | toString | quote }}
- name: IMAGESVC_RATE_LIMIT_PER_SECOND
  value: {{ .Values.limits.rateLimitPerSecond | toString | quote }}
- name: IMAGESVC_RATE_LIMIT_BURST
  value: {{ .Values.limits.rateLimitBurst | int64 | toString | quote }}
- name: IMAGESVC_MAX_QUEUED_CALLS
  value: {{ .Values.limits.maxQueuedCalls | int64 | toString | quote }}
- name: IMAGESVC_MAX_QUEUE_WAIT_SECONDS
  value: {{ .Values.limits.maxQueueWaitSeconds | toString | quote }}
{{- if .Values.fleet.enabled }}
# The fleet: every ready pod of the DaemonSet, from its headless Service's DNS records.
- name: IMAGESVC_FLEET_PEERS
  value: {{ include "imagesvc.fleetPeers" . | quote }}
- name: IMAGESVC_FLEET_NODE_TIMEOUT_SECONDS
  value: {{ .Values.fleet.nodeTimeoutSeconds | toString | quote }}
- name: IMAGESVC_FLEET_PARALLELISM
  value: {{ .Values.fleet.parallelism | int64 | toString | quote }}
{{- if include "imagesvc.fleetUsesToken" . }}
- name: IMAGESVC_FLEET_TOKEN_FILE
  value: {{ printf "%s/token" (include "imagesvc.paths.fleetTokenDir" .) | quote }}
{{- end }}
{{- if .Values.tls.enabled }}
- name: IMAGESVC_FLEET_TLS_CA_FILE
  value: {{ printf "%s/ca.crt" (include "imagesvc.paths.fleetCADir" .) | quote }}
{{- with .Values.fleet.tls.serverName }}
- name: IMAGESVC_FLEET_TLS_SERVER_NAME
  value: {{ . | quote }}
{{- end }}
{{- end }}
{{- end }}
{{- if .Values.fleet.keepImages }}
- name: IMAGESVC_KEEP_IMAGES_FILE
  value: {{ printf "%s/images" (include "imagesvc.paths.keepImagesDir" .) | quote }}
{{- end }}
{{- with .Values.server.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
A host for host:port: IPv6 addresses in brackets.
*/}}
{{- define "imagesvc.hostPort" -}}
{{- if contains ":" . }}[{{ . }}]{{ else }}{{ . }}{{ end }}
{{- end }}

{{/*
Probes of the app container. Native gRPC probes while the gRPC port is plaintext; with
TLS the kubelet's gRPC probe cannot connect, so HTTPS GET /healthz and /readyz instead
(the kubelet does not verify the certificate; the HTTP port demands no client
certificate). Liveness asks for `liveness`, which stays SERVING through a Docker daemon
outage; readiness follows the daemon.
*/}}
{{- define "imagesvc.probe" -}}
{{- $root := .root }}
{{- $timing := .timing -}}
{{- if $root.Values.tls.enabled -}}
httpGet:
  path: {{ .path }}
  port: {{ $root.Values.server.httpPort }}
  scheme: HTTPS
{{- else -}}
grpc:
  port: {{ $root.Values.server.grpcPort }}
  service: {{ .service | quote }}
{{- end }}
periodSeconds: {{ $timing.periodSeconds }}
timeoutSeconds: {{ $timing.timeoutSeconds }}
failureThreshold: {{ $timing.failureThreshold }}
{{- end }}
