{{/* Names and labels. */}}
{{- define "beamside.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "beamside.fullname" -}}
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

{{- define "beamside.selectorLabels" -}}
app.kubernetes.io/name: {{ include "beamside.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "beamside.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "beamside.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
beamside.io/cluster: {{ .Values.config.cluster | quote }}
{{- end -}}

{{- define "beamside.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "beamside.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "beamside.sharded" -}}
{{- if gt (int .Values.sharding.count) 1 }}true{{ end -}}
{{- end -}}

{{/* Paths inside the container. */}}
{{- define "beamside.cookieDir" -}}/etc/beamside/cookie{{- end -}}
{{- define "beamside.cookieSecretDir" -}}/etc/beamside/cookie-secret{{- end -}}
{{- define "beamside.distTlsDir" -}}/etc/beamside/dist-tls{{- end -}}
{{- define "beamside.tokensDir" -}}/etc/beamside/tokens{{- end -}}
{{- define "beamside.tlsDir" -}}/etc/beamside/tls{{- end -}}
{{- define "beamside.spoolDir" -}}/var/lib/beamside/spool{{- end -}}

{{- define "beamside.tokensSecret" -}}
{{- if .Values.grpc.auth.existingSecret -}}
{{- .Values.grpc.auth.existingSecret -}}
{{- else if .Values.grpc.auth.tokens -}}
{{- printf "%s-tokens" (include "beamside.fullname" .) -}}
{{- end -}}
{{- end -}}

{{/* Namespaces where a target discovers pods, one per line (deduplicated). */}}
{{- define "beamside.discoveryNamespaces" -}}
{{- $namespaces := list -}}
{{- range .Values.config.targets -}}
{{- if eq (default "none" .discover) "kubernetes" -}}
{{- $k := default dict .kubernetes -}}
{{- $namespaces = append $namespaces (default $.Release.Namespace $k.namespace) -}}
{{- end -}}
{{- end -}}
{{- $namespaces | uniq | join "\n" -}}
{{- end -}}

{{/* Checks that stop rendering with a message saying what to set. */}}
{{- define "beamside.validate" -}}
{{- if not .Values.cookie.existingSecret -}}
{{- fail "cookie.existingSecret is required: create a Secret holding the cluster's Erlang cookie (kubectl create secret generic NAME --from-file=cookie=PATH) and name it here. The chart never takes the cookie itself." -}}
{{- end -}}
{{- if not .Values.config.cluster -}}
{{- fail "config.cluster is required: a short name for this cluster, used as the `cluster` label" -}}
{{- end -}}
{{- if not .Values.config.targets -}}
{{- fail "config.targets is required: at least one target (seed nodes, or discover: kubernetes/dns)" -}}
{{- end -}}
{{- if and .Values.grpc.expose (not (include "beamside.tokensSecret" .)) -}}
{{- fail "grpc.expose needs grpc.auth.existingSecret or grpc.auth.tokens: the control plane is not served unauthenticated outside the pod" -}}
{{- end -}}
{{- if and .Values.grpc.auth.existingSecret .Values.grpc.auth.tokens -}}
{{- fail "give grpc.auth.existingSecret or grpc.auth.tokens, not both" -}}
{{- end -}}
{{- if eq (int .Values.ports.metrics) (int .Values.ports.grpc) -}}
{{- fail "ports.metrics and ports.grpc must differ" -}}
{{- end -}}
{{- end -}}

{{/* host:port for a listen address (IPv6 addresses in brackets). */}}
{{- define "beamside.listen" -}}
{{- $host := index . 0 -}}
{{- if contains ":" $host -}}
{{- printf "[%s]:%d" $host (int (index . 1)) -}}
{{- else -}}
{{- printf "%s:%d" $host (int (index . 1)) -}}
{{- end -}}
{{- end -}}

{{/* The config file: values.config plus what the chart owns. */}}
{{- define "beamside.config" -}}
{{- $config := deepCopy .Values.config -}}
{{- $_ := set $config "node_name" .Values.nodeName -}}
{{- $targets := list -}}
{{- range .Values.config.targets -}}
{{- $target := deepCopy . -}}
{{- $_ := set $target "cookie_file" (printf "%s/%s" (include "beamside.cookieDir" $) $.Values.cookie.key) -}}
{{- with $.Values.distributionTls -}}
{{- if .existingSecret -}}
{{- $dir := include "beamside.distTlsDir" $ -}}
{{- $tls := dict "cacertfile" (printf "%s/%s" $dir .caKey) "certfile" (printf "%s/%s" $dir .certKey) "keyfile" (printf "%s/%s" $dir .keyKey) "verify" .verify -}}
{{- if .serverNameIndication -}}
{{- $_ := set $tls "server_name_indication" .serverNameIndication -}}
{{- end -}}
{{- $_ := set $target "tls" $tls -}}
{{- end -}}
{{- end -}}
{{- $targets = append $targets $target -}}
{{- end -}}
{{- $_ = set $config "targets" $targets -}}
{{- $_ = set $config "http" (dict "listen" (include "beamside.listen" (list .Values.listenAddress .Values.ports.metrics))) -}}
{{- $grpcHost := ternary .Values.listenAddress "127.0.0.1" .Values.grpc.expose -}}
{{- $grpc := dict "listen" (include "beamside.listen" (list $grpcHost .Values.ports.grpc)) -}}
{{- if include "beamside.tokensSecret" . -}}
{{- $_ = set $grpc "auth" (dict "tokens_file" (printf "%s/%s" (include "beamside.tokensDir" .) .Values.grpc.auth.key)) -}}
{{- end -}}
{{- if .Values.grpc.tls.existingSecret -}}
{{- $_ = set $grpc "tls" (dict "cert_file" (printf "%s/tls.crt" (include "beamside.tlsDir" .)) "key_file" (printf "%s/tls.key" (include "beamside.tlsDir" .))) -}}
{{- end -}}
{{- if .Values.grpc.evalEnabled -}}
{{- $_ = set $grpc "eval_enabled" true -}}
{{- end -}}
{{- $_ = set $config "grpc" $grpc -}}
{{- if .Values.config.loki -}}
{{- $loki := deepCopy .Values.config.loki -}}
{{- $_ = set $loki "spool_dir" (include "beamside.spoolDir" .) -}}
{{- $_ = set $config "loki" $loki -}}
{{- end -}}
{{- if include "beamside.sharded" . -}}
{{- $_ = set $config "sharding" (dict "count" (int .Values.sharding.count)) -}}
{{- end -}}
{{- if .Values.userPlugins.configMap -}}
{{- $plugins := deepCopy (.Values.config.plugins | default dict) -}}
{{- $_ = set $plugins "directory" "/etc/beamside/plugins" -}}
{{- $_ = set $config "plugins" $plugins -}}
{{- end -}}
{{- toYaml $config -}}
{{- end -}}

{{/* Destination ports of the sink URLs (Loki, Alertmanager, OTLP), for egress. */}}
{{- define "beamside.sinkPorts" -}}
{{- $urls := list -}}
{{- with .Values.config.loki }}{{ if .url }}{{ $urls = append $urls .url }}{{ end }}{{ end -}}
{{- with .Values.config.alertmanager }}{{ range (.urls | default list) }}{{ $urls = append $urls . }}{{ end }}{{ end -}}
{{- with .Values.config.otlp }}{{ if .endpoint }}{{ $urls = append $urls .endpoint }}{{ end }}{{ end -}}
{{- $ports := list -}}
{{- range $urls -}}
{{- $u := urlParse . -}}
{{- $hostport := splitList ":" $u.host -}}
{{- if gt (len $hostport) 1 -}}
{{- $ports = append $ports (last $hostport | int) -}}
{{- else if eq $u.scheme "https" -}}
{{- $ports = append $ports 443 -}}
{{- else -}}
{{- $ports = append $ports 80 -}}
{{- end -}}
{{- end -}}
{{- $ports | uniq | sortAlpha | join "," -}}
{{- end -}}
