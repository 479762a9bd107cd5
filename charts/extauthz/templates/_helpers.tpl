{{/* Object names: <release>-<role>; with the release named "extauthz" they are those of manifests/. */}}
{{- define "extauthz.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* Labels on every object: those of manifests/ plus Helm's own (instance, managed-by, chart, version). */}}
{{- define "extauthz.labels" -}}
app.kubernetes.io/part-of: extauthz
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* The sidecars' --admin-url: the admin Service, or with several admins the headless Service of their ready members, each followed in turn (docs/replication.md). */}}
{{- define "extauthz.adminURL" -}}
{{- if gt (int .Values.admin.replicas) 1 -}}
http://{{ include "extauthz.fullname" . }}-admin-members:8181
{{- else -}}
http://{{ include "extauthz.fullname" . }}-admin:8181
{{- end -}}
{{- end -}}

{{- define "extauthz.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{- define "extauthz.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
fsGroup: 65532
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "extauthz.securityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
readOnlyRootFilesystem: true
allowPrivilegeEscalation: false
privileged: false
capabilities:
  drop: [ALL]
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* The extauthz enforcement container (sidecar role); the argument is a dict with root and forwardHeaders. */}}
{{- define "extauthz.enforcementContainer" -}}
{{- $ := .root -}}
- name: extauthz
  image: {{ include "extauthz.image" $ }}
  {{- with $.Values.image.pullPolicy }}
  imagePullPolicy: {{ . }}
  {{- end }}
  args:
    - sidecar
    - --admin-url={{ include "extauthz.adminURL" $ }}
    - --data-dir=/var/lib/extauthz
    - --policy=/etc/extauthz/policy/policy.yaml
    - --replication-token-file=/etc/extauthz/secrets/replication-token
    - --log-format={{ $.Values.logFormat }}
    - --forward-headers={{ .forwardHeaders }}
    - --drain-delay=5s
  ports:
    - name: authz-grpc
      containerPort: 9191
      protocol: TCP
    - name: authz-http
      containerPort: 9192
      protocol: TCP
  startupProbe:
    grpc:
      port: 9191
    periodSeconds: 2
    failureThreshold: 150
  readinessProbe:
    httpGet:
      path: /readyz
      port: authz-http
    periodSeconds: 5
    failureThreshold: 2
  livenessProbe:
    httpGet:
      path: /healthz
      port: authz-http
    periodSeconds: 10
    failureThreshold: 3
  resources:
    {{- toYaml .resources | nindent 4 }}
  securityContext:
    {{- include "extauthz.securityContext" $ | nindent 4 }}
  volumeMounts:
    - name: {{ .dataVolume }}
      mountPath: /var/lib/extauthz
    - name: policy
      mountPath: /etc/extauthz/policy
      readOnly: true
    - name: replication-token
      mountPath: /etc/extauthz/secrets
      readOnly: true
{{- end -}}

{{- define "extauthz.enforcementVolumes" -}}
- name: {{ .dataVolume }}
  emptyDir:
    sizeLimit: 1Gi
- name: policy
  configMap:
    name: {{ include "extauthz.fullname" .root }}-policy
- name: replication-token
  secret:
    secretName: {{ .root.Values.existingSecret }}
    defaultMode: 0440
    items:
      - key: replication-token
        path: replication-token
{{- end -}}
