{{/* Names and labels. */}}
{{- define "ringgate.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "ringgate.fullname" -}}
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

{{- define "ringgate.selectorLabels" -}}
app.kubernetes.io/name: {{ include "ringgate.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "ringgate.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "ringgate.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "ringgate.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "ringgate.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* The label that lets a pod of this namespace reach the control port. */}}
{{- define "ringgate.controlClientLabel" -}}
{{- printf "%s-control-client" (include "ringgate.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "ringgate.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/* A CPU quantity ("2", 2, "1500m", 0.5) in millicores. */}}
{{- define "ringgate.cpuMillis" -}}
{{- $v := toString . -}}
{{- if hasSuffix "m" $v -}}
{{- trimSuffix "m" $v | int -}}
{{- else -}}
{{- round (mulf (float64 $v) 1000.0) 0 | int -}}
{{- end -}}
{{- end -}}

{{/* Shards: pinned = the pod's CPUs; shared = the CPU limit rounded up. */}}
{{- define "ringgate.shards" -}}
{{- $millis := include "ringgate.cpuMillis" .Values.resources.limits.cpu | atoi -}}
{{- div (add $millis 999) 1000 -}}
{{- end -}}

{{/* Fixed paths inside the container. */}}
{{- define "ringgate.configDir" -}}/etc/ringgate{{- end -}}
{{- define "ringgate.dataDir" -}}/var/lib/ringgate{{- end -}}
{{- define "ringgate.tlsDir" -}}/etc/ringgate-tls{{- end -}}
{{- define "ringgate.spoolDir" -}}/var/lib/ringgate/spool{{- end -}}

{{/* Environment variables the chart itself fills from Secrets, by name. */}}
{{- define "ringgate.ownedSecretEnv" -}}
{{- $s := .Values.secrets -}}
{{- $out := dict -}}
{{- if $s.adminToken.key }}{{ $_ := set $out "RINGGATE_ADMIN_TOKEN" (dict "from" $s.adminToken "field" "secrets.adminToken") }}{{ end -}}
{{- if $s.secretKey.key }}{{ $_ := set $out "RINGGATE_SECRET_KEY" (dict "from" $s.secretKey "field" "secrets.secretKey") }}{{ end -}}
{{- if eq .Values.store.type "postgres" }}{{ $_ := set $out "RINGGATE_DATABASE_URL" (dict "from" $s.databaseUrl "field" "secrets.databaseUrl") }}{{ end -}}
{{- toJson $out -}}
{{- end -}}

{{/* One `env` entry from a Secret: (dict "name" NAME "from" {secret,key} "field" PATH "root" $). */}}
{{- define "ringgate.secretEnv" -}}
{{- $secret := default .root.Values.secrets.existingSecret .from.secret -}}
{{- if not $secret -}}
{{- fail (printf "%s: no Secret named: set its `secret` or secrets.existingSecret" .field) -}}
{{- end -}}
{{- if not .from.key -}}
{{- fail (printf "%s: `key` (the key inside Secret %s) is empty" .field $secret) -}}
{{- end -}}
- name: {{ .name }}
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: {{ .from.key }}
{{- end -}}

{{/*
The chart's rules. Every template includes this, so a release that breaks one never renders.
*/}}
{{- define "ringgate.validate" -}}
{{- $v := .Values -}}
{{- /* Store. */ -}}
{{- if eq $v.store.type "sqlite" -}}
{{- if ne (int $v.replicaCount) 1 -}}
{{- fail (printf "store.type sqlite runs exactly one replica (replicaCount is %v): SQLite is one node's file; use store.type postgres for several replicas" $v.replicaCount) -}}
{{- end -}}
{{- if $v.autoscaling.enabled -}}
{{- fail "store.type sqlite runs exactly one replica: autoscaling.enabled needs store.type postgres" -}}
{{- end -}}
{{- else if eq $v.store.type "postgres" -}}
{{- if not $v.secrets.databaseUrl.key -}}
{{- fail "store.type postgres: set secrets.databaseUrl.key (the database URL's key in an existing Secret)" -}}
{{- end -}}
{{- else -}}
{{- fail (printf "store.type must be sqlite or postgres, not %q" (toString $v.store.type)) -}}
{{- end -}}
{{- /* CPU. */ -}}
{{- $req := $v.resources.requests | default dict -}}
{{- $lim := $v.resources.limits | default dict -}}
{{- if not $lim.cpu -}}
{{- fail "resources.limits.cpu is required: it sets the number of shards" -}}
{{- end -}}
{{- if eq $v.cpu.mode "pinned" -}}
{{- if or (not $req.cpu) (not $req.memory) (not $lim.memory) -}}
{{- fail "cpu.mode pinned needs resources.requests.cpu, requests.memory, limits.cpu and limits.memory (Guaranteed QoS)" -}}
{{- end -}}
{{- $reqMillis := include "ringgate.cpuMillis" $req.cpu | atoi -}}
{{- $limMillis := include "ringgate.cpuMillis" $lim.cpu | atoi -}}
{{- if or (lt $limMillis 1000) (ne (mod $limMillis 1000) 0) -}}
{{- fail (printf "cpu.mode pinned needs a whole number of CPUs: resources.limits.cpu is %v" $lim.cpu) -}}
{{- end -}}
{{- if ne $reqMillis $limMillis -}}
{{- fail (printf "cpu.mode pinned needs resources.requests.cpu = limits.cpu (Guaranteed QoS): %v != %v" $req.cpu $lim.cpu) -}}
{{- end -}}
{{- if ne (toString $req.memory) (toString $lim.memory) -}}
{{- fail (printf "cpu.mode pinned needs resources.requests.memory = limits.memory (Guaranteed QoS): %v != %v" $req.memory $lim.memory) -}}
{{- end -}}
{{- else if ne $v.cpu.mode "shared" -}}
{{- fail (printf "cpu.mode must be shared or pinned, not %q" (toString $v.cpu.mode)) -}}
{{- end -}}
{{- /* Shutdown. */ -}}
{{- $t := $v.termination -}}
{{- $parts := add $t.preStopSleepSeconds $t.drainGraceSeconds $t.finalFlushSeconds -}}
{{- if lt (int $t.terminationGracePeriodSeconds) (int $parts) -}}
{{- fail (printf "termination.terminationGracePeriodSeconds (%v) must be at least preStopSleepSeconds + drainGraceSeconds + finalFlushSeconds (%v + %v + %v = %v)" $t.terminationGracePeriodSeconds $t.preStopSleepSeconds $t.drainGraceSeconds $t.finalFlushSeconds $parts) -}}
{{- end -}}
{{- /* Seccomp. */ -}}
{{- if not (has $v.seccomp.type (list "RuntimeDefault" "Localhost")) -}}
{{- fail (printf "seccomp.type must be RuntimeDefault or Localhost, not %q (Unconfined is not offered)" (toString $v.seccomp.type)) -}}
{{- end -}}
{{- /* Config: fields the chart owns. */ -}}
{{- $cfg := $v.config | default dict -}}
{{- range $key := list "listen" "control" "shards" "pin_cores" "shutdown" "tls" -}}
{{- if hasKey $cfg $key -}}
{{- fail (printf "config.%s is set by the chart; use %s instead" $key (get (dict "listen" "ports.data" "control" "ports.control" "shards" "cpu.mode and resources.limits.cpu" "pin_cores" "cpu.mode" "shutdown" "termination.drainGraceSeconds" "tls" "tls.enabled and tls.existingSecret") $key)) -}}
{{- end -}}
{{- end -}}
{{- range $key := list "database" "admin_token" "secret_key" "spool_dir" -}}
{{- if hasKey ($cfg.governance | default dict) $key -}}
{{- fail (printf "config.governance.%s is set by the chart; use %s instead" $key (get (dict "database" "store.type and secrets.databaseUrl" "admin_token" "secrets.adminToken" "secret_key" "secrets.secretKey" "spool_dir" "store.postgres.spoolSizeLimit (sqlite: beside the database)") $key)) -}}
{{- end -}}
{{- end -}}
{{- /* Config: secrets only as env.NAME references. */ -}}
{{- range $name, $p := $cfg.providers -}}
{{- range $field := list "api_key" "aws_access_key_id" "aws_secret_access_key" "aws_session_token" -}}
{{- $val := get ($p | default dict) $field -}}
{{- if and $val (not (hasPrefix "env." (toString $val))) -}}
{{- fail (printf "config.providers.%s.%s must be an env.NAME reference filled from a Secret (secrets.env), never the secret itself" $name $field) -}}
{{- end -}}
{{- end -}}
{{- range $i, $k := ($p | default dict).keys -}}
{{- if not (hasPrefix "env." (toString $k.key)) -}}
{{- fail (printf "config.providers.%s.keys[%d].key must be an env.NAME reference filled from a Secret (secrets.env), never the secret itself" $name $i) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- /* Every env.NAME the config reads must come from a Secret. */ -}}
{{- $owned := include "ringgate.ownedSecretEnv" . | fromJson -}}
{{- $seen := list -}}
{{- range $i, $e := $v.secrets.env -}}
{{- if or (hasKey $owned $e.name) (eq $e.name "RUST_LOG") (has $e.name $seen) -}}
{{- fail (printf "secrets.env[%d].name %s is taken (by the chart or an earlier entry)" $i $e.name) -}}
{{- end -}}
{{- $seen = append $seen $e.name -}}
{{- end -}}
{{- $provided := concat (keys $owned) $seen -}}
{{- range $ref := regexFindAll "env\\.[A-Za-z_][A-Za-z0-9_]*" (toYaml $cfg) -1 | uniq -}}
{{- $name := trimPrefix "env." $ref -}}
{{- if not (has $name $provided) -}}
{{- fail (printf "config references %s, but no Secret provides %s: add {name: %s, key: ...} to secrets.env" $ref $name $name) -}}
{{- end -}}
{{- end -}}
{{- /* The rest. */ -}}
{{- if and $v.tls.enabled (not $v.tls.existingSecret) -}}
{{- fail "tls.enabled needs tls.existingSecret (a kubernetes.io/tls Secret)" -}}
{{- end -}}
{{- if $v.podDisruptionBudget.enabled -}}
{{- if eq (kindIs "invalid" $v.podDisruptionBudget.minAvailable) (kindIs "invalid" $v.podDisruptionBudget.maxUnavailable) -}}
{{- fail "podDisruptionBudget: set exactly one of minAvailable and maxUnavailable (the other to null)" -}}
{{- end -}}
{{- end -}}
{{- if and $v.autoscaling.enabled (gt (int $v.autoscaling.minReplicas) (int $v.autoscaling.maxReplicas)) -}}
{{- fail "autoscaling.minReplicas must not exceed autoscaling.maxReplicas" -}}
{{- end -}}
{{- if and $v.autoscaling.enabled (or (not $req.cpu) (not $req.memory)) -}}
{{- fail "autoscaling measures utilisation against requests: set resources.requests.cpu and requests.memory" -}}
{{- end -}}
{{- end -}}

{{/* config.yaml: the user's config plus the fields the chart owns. */}}
{{- define "ringgate.configYaml" -}}
{{- $v := .Values -}}
{{- $cfg := deepCopy ($v.config | default dict) -}}
{{- $_ := set $cfg "listen" (printf "0.0.0.0:%d" (int $v.ports.data)) -}}
{{- $_ := set $cfg "control" (dict "listen" (printf "0.0.0.0:%d" (int $v.ports.control))) -}}
{{- $_ := set $cfg "shards" (include "ringgate.shards" . | atoi) -}}
{{- $_ := set $cfg "pin_cores" (eq $v.cpu.mode "pinned") -}}
{{- $_ := set $cfg "shutdown" (dict "grace_period_ms" (mul $v.termination.drainGraceSeconds 1000)) -}}
{{- if $v.tls.enabled -}}
{{- $_ := set $cfg "tls" (dict "cert_file" (printf "%s/tls.crt" (include "ringgate.tlsDir" .)) "key_file" (printf "%s/tls.key" (include "ringgate.tlsDir" .))) -}}
{{- end -}}
{{- $gov := deepCopy ($cfg.governance | default dict) -}}
{{- if eq $v.store.type "postgres" -}}
{{- $_ := set $gov "database" "env.RINGGATE_DATABASE_URL" -}}
{{- $_ := set $gov "spool_dir" (include "ringgate.spoolDir" .) -}}
{{- else -}}
{{- $_ := set $gov "database" (printf "%s/ringgate.db" (include "ringgate.dataDir" .)) -}}
{{- end -}}
{{- if $v.secrets.adminToken.key -}}
{{- $_ := set $gov "admin_token" "env.RINGGATE_ADMIN_TOKEN" -}}
{{- end -}}
{{- if $v.secrets.secretKey.key -}}
{{- $_ := set $gov "secret_key" "env.RINGGATE_SECRET_KEY" -}}
{{- end -}}
{{- $_ := set $cfg "governance" $gov -}}
{{- if not $cfg.providers -}}
{{- $_ := set $cfg "providers" (dict "openai" (dict "kind" "openai")) -}}
{{- end -}}
{{- toYaml $cfg -}}
{{- end -}}
