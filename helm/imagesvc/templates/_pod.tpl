{{/*
The pod template of both modes: the app container, and in dind mode the Docker daemon as
a native sidecar (an init container with restartPolicy: Always). A native sidecar starts
before the app (its startup probe passes once the daemon answers, so the app finds its
socket) and stops after the app, so calls that drain on SIGTERM still have their daemon.
*/}}
{{- define "imagesvc.podTemplate" -}}
{{- $dind := eq .Values.mode "dind" -}}
metadata:
  labels:
    {{- include "imagesvc.labels" . | nindent 4 }}
    app.kubernetes.io/component: server
    {{- with .Values.podLabels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  annotations:
    kubectl.kubernetes.io/default-container: imagesvc
    {{- with .Values.podAnnotations }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
spec:
  serviceAccountName: {{ include "imagesvc.serviceAccountName" . }}
  automountServiceAccountToken: {{ .Values.serviceAccount.automountServiceAccountToken }}
  enableServiceLinks: false
  {{- with .Values.imagePullSecrets }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.priorityClassName }}
  priorityClassName: {{ . }}
  {{- end }}
  terminationGracePeriodSeconds: {{ .Values.terminationGracePeriodSeconds }}
  securityContext:
    {{- with .Values.podSecurityContext }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
    # The Docker socket's group: the app uses the socket without being root.
    supplementalGroups:
      - {{ include "imagesvc.socketGroupId" . }}
  {{- if $dind }}
  initContainers:
    - name: dind
      image: {{ include "imagesvc.dindImage" . | quote }}
      imagePullPolicy: {{ include "imagesvc.pullPolicy" (dict "image" .Values.dind.image) }}
      restartPolicy: Always
      # `dockerd` first: the image's entry point then starts the daemon as given, on the
      # shared socket only (no TCP port, no generated TLS certificates).
      args:
        - dockerd
        - --host=unix:///var/run/docker.sock
        - --group={{ include "imagesvc.socketGroupId" . }}
        {{- range .Values.dind.extraArgs }}
        - {{ . | quote }}
        {{- end }}
      env:
        - name: DOCKER_TLS_CERTDIR
          value: ""
      # Docker-in-Docker needs a privileged container (mounts, cgroups, iptables). Only
      # this container is privileged; the app container is restricted.
      securityContext:
        privileged: true
        runAsNonRoot: false
        runAsUser: 0
        runAsGroup: 0
      startupProbe:
        exec:
          command: ["docker", "version"]
        periodSeconds: 1
        timeoutSeconds: 5
        failureThreshold: 120
      livenessProbe:
        exec:
          command: ["docker", "version"]
        periodSeconds: 20
        timeoutSeconds: 10
        failureThreshold: 3
      readinessProbe:
        exec:
          command: ["docker", "version"]
        periodSeconds: 10
        timeoutSeconds: 5
        failureThreshold: 3
      resources:
        {{- toYaml .Values.dind.resources | nindent 8 }}
      volumeMounts:
        - name: docker-socket
          mountPath: /var/run
        - name: docker-data
          mountPath: /var/lib/docker
  {{- end }}
  containers:
    - name: imagesvc
      image: {{ include "imagesvc.image" . | quote }}
      imagePullPolicy: {{ include "imagesvc.pullPolicy" (dict "image" .Values.image) }}
      {{- with .Values.server.extraArgs }}
      args:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      env:
        {{- include "imagesvc.serverEnv" . | nindent 8 }}
      ports:
        - name: grpc
          containerPort: {{ .Values.server.grpcPort }}
          protocol: TCP
        - name: http
          containerPort: {{ .Values.server.httpPort }}
          protocol: TCP
      startupProbe:
        {{- include "imagesvc.probe" (dict "root" . "service" "liveness" "path" "/healthz" "timing" .Values.probes.startup) | nindent 8 }}
      livenessProbe:
        {{- include "imagesvc.probe" (dict "root" . "service" "liveness" "path" "/healthz" "timing" .Values.probes.liveness) | nindent 8 }}
      readinessProbe:
        {{- include "imagesvc.probe" (dict "root" . "service" "imagesvc.v1.ImageService" "path" "/readyz" "timing" .Values.probes.readiness) | nindent 8 }}
      resources:
        {{- toYaml .Values.resources | nindent 8 }}
      securityContext:
        {{- toYaml .Values.securityContext | nindent 8 }}
      volumeMounts:
        - name: tmp
          mountPath: /tmp
        # The socket's directory, not the socket file: the daemon replaces the file when
        # it restarts. Read-only: connecting to a socket needs no write access to the mount.
        - name: docker-socket
          mountPath: {{ include "imagesvc.paths.socketDir" . }}
          readOnly: true
        {{- if .Values.auth.tokens.enabled }}
        - name: tokens
          mountPath: {{ include "imagesvc.paths.tokensDir" . }}
          readOnly: true
        {{- end }}
        {{- if .Values.tls.enabled }}
        - name: tls
          mountPath: {{ include "imagesvc.paths.tlsDir" . }}
          readOnly: true
        {{- end }}
        {{- if .Values.tls.clientCA.existingSecret }}
        - name: client-ca
          mountPath: {{ include "imagesvc.paths.clientCADir" . }}
          readOnly: true
        {{- end }}
        {{- if .Values.auth.clientCertRoles.existingSecret }}
        - name: client-cert-roles
          mountPath: {{ include "imagesvc.paths.clientsDir" . }}
          readOnly: true
        {{- end }}
        {{- if include "imagesvc.fleetUsesToken" . }}
        - name: fleet-token
          mountPath: {{ include "imagesvc.paths.fleetTokenDir" . }}
          readOnly: true
        {{- end }}
        {{- if and .Values.fleet.enabled .Values.tls.enabled }}
        - name: fleet-ca
          mountPath: {{ include "imagesvc.paths.fleetCADir" . }}
          readOnly: true
        {{- end }}
        {{- if .Values.fleet.keepImages }}
        - name: keep-images
          mountPath: {{ include "imagesvc.paths.keepImagesDir" . }}
          readOnly: true
        {{- end }}
  volumes:
    - name: tmp
      emptyDir:
        sizeLimit: {{ .Values.tmpSizeLimit }}
    {{- if $dind }}
    - name: docker-socket
      emptyDir: {}
    - name: docker-data
      {{- if .Values.dind.dataVolume.existingClaim }}
      persistentVolumeClaim:
        claimName: {{ .Values.dind.dataVolume.existingClaim }}
      {{- else }}
      emptyDir:
        sizeLimit: {{ .Values.dind.dataVolume.sizeLimit }}
      {{- end }}
    {{- else }}
    # The node's Docker socket directory (root on the node; Pod Security baseline forbids it).
    - name: docker-socket
      hostPath:
        path: {{ .Values.hostSocket.directory }}
        type: Directory
    {{- end }}
    {{- if .Values.auth.tokens.enabled }}
    - name: tokens
      secret:
        secretName: {{ include "imagesvc.tokensSecretName" . }}
        # Only the tokens file (a generated Secret also holds the plain admin token).
        items:
          - key: {{ .Values.auth.tokens.key }}
            path: tokens.json
        defaultMode: 288  # 0440: owner and fsGroup; a world-readable file gets a warning
    {{- end }}
    {{- if .Values.tls.enabled }}
    - name: tls
      secret:
        secretName: {{ .Values.tls.existingSecret }}
        items:
          - key: {{ .Values.tls.certKey }}
            path: tls.crt
          - key: {{ .Values.tls.keyKey }}
            path: tls.key
        defaultMode: 288
    {{- end }}
    {{- if .Values.tls.clientCA.existingSecret }}
    - name: client-ca
      secret:
        secretName: {{ .Values.tls.clientCA.existingSecret }}
        items:
          - key: {{ .Values.tls.clientCA.key }}
            path: ca.crt
        defaultMode: 288
    {{- end }}
    {{- if .Values.auth.clientCertRoles.existingSecret }}
    - name: client-cert-roles
      secret:
        secretName: {{ .Values.auth.clientCertRoles.existingSecret }}
        items:
          - key: {{ .Values.auth.clientCertRoles.key }}
            path: clients.json
        defaultMode: 288
    {{- end }}
    {{- if include "imagesvc.fleetUsesToken" . }}
    # The token this pod presents to its peers (only that key of a generated Secret).
    - name: fleet-token
      secret:
        secretName: {{ include "imagesvc.fleetTokenSecretName" . }}
        items:
          - key: {{ include "imagesvc.fleetTokenKey" . }}
            path: token
        defaultMode: 288
    {{- end }}
    {{- if and .Values.fleet.enabled .Values.tls.enabled }}
    - name: fleet-ca
      secret:
        secretName: {{ include "imagesvc.fleetCASecretName" . }}
        items:
          - key: {{ .Values.fleet.tls.caKey }}
            path: ca.crt
        defaultMode: 288
    {{- end }}
    {{- if .Values.fleet.keepImages }}
    # A directory, never subPath: an edited list reaches the running pods.
    - name: keep-images
      configMap:
        name: {{ include "imagesvc.keepImagesConfigMapName" . }}
        items:
          - key: images
            path: images
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
  {{- if and $dind .Values.topologySpreadConstraints }}
  topologySpreadConstraints:
    {{- toYaml .Values.topologySpreadConstraints | nindent 4 }}
  {{- end }}
{{- end }}
