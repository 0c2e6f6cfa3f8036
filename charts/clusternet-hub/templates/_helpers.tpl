{{/* Labels on every object: the app label the Deployment selects on, the chart's, and commonLabels. */}}
{{- define "clusternet-hub.labels" -}}
app: clusternet-hub
app.kubernetes.io/name: {{ default .Chart.Name .Values.nameOverride }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "clusternet-hub.annotations" -}}
{{- with .Values.commonAnnotations }}
annotations:
{{ toYaml . | indent 2 }}
{{- end }}
{{- end -}}

{{- define "clusternet-hub.image" -}}
{{- /* Clusternet's values files name Clusternet's (Go) image, which would crash on this chart's flags */}}
{{- if and (eq (toString .Values.image.repository) "clusternet/clusternet-hub") (has (toString .Values.image.registry) (list "ghcr.io" "docker.io" "")) -}}
{{- fail "image.repository clusternet/clusternet-hub is Clusternet's Go hub, which does not take this chart's flags: drop the image block from Clusternet's values file to use ours, or set image.registry/repository/tag to your build (README, Build the images)" -}}
{{- end -}}
{{- /* global.imageRegistry replaces the registry, as bitnami common's image helper does in Clusternet's charts */}}
{{- $registry := .Values.image.registry -}}
{{- with (.Values.global | default dict).imageRegistry -}}
{{- $registry = . -}}
{{- end -}}
{{- if $registry -}}
{{ $registry }}/{{ .Values.image.repository }}:{{ .Values.image.tag }}
{{- else -}}
{{ .Values.image.repository }}:{{ .Values.image.tag }}
{{- end -}}
{{- end -}}

{{/*
The pod's imagePullSecrets, as bitnami common's in Clusternet's charts: global.imagePullSecrets, then
image.pullSecrets, each a name or a {name: x} map, each name once. Empty when none is given.
*/}}
{{- define "clusternet-hub.imagePullSecrets" -}}
{{- $names := list -}}
{{- range concat ((.Values.global | default dict).imagePullSecrets | default list) (.Values.image.pullSecrets | default list) -}}
{{- $name := . -}}
{{- if kindIs "map" . -}}
{{- $name = .name -}}
{{- end -}}
{{- if and $name (not (has (toString $name) $names)) -}}
{{- $names = append $names (toString $name) -}}
{{- end -}}
{{- end -}}
{{- range $names }}
- name: {{ . }}
{{- end -}}
{{- end -}}

{{/*
The container's flags, each given once (Clusternet's charts render a flag from a value and again from extraArgs,
and the binary keeps the last one, or merges --feature-gates, so a value could be undone without a word).
  - A flag the chart renders from a value is left out when extraArgs names it: the extraArgs entry replaces it,
    as the repeated flag would (e.g. extraArgs.kube-api-qps over kubeAPI.qps).
  - feature-gates is merged: featureGates, then extraArgs.feature-gates over it gate by gate, as the binary
    merges two --feature-gates. When featureGates was changed from the chart's default and the two give one gate
    different values, the render fails naming both, instead of extraArgs silently winning (Clusternet's agent
    values file carries extraArgs.feature-gates, so a featureGates AppPusher=false used to be undone).
  - Flags the chart's own wiring depends on (ports, probes, the Lease's RBAC) cannot come from extraArgs.
Arguments: "root" (the chart's context), "flags" (list of [name, value]; "feature-gates" marks where the merged
gates go), "fixed" (flag -> what to set instead), "defaultGates" (the featureGates default of values.yaml).
*/}}
{{- define "clusternet-hub.args" -}}
{{- $extra := .root.Values.extraArgs | default dict -}}
{{- range $name, $instead := .fixed -}}
{{- if hasKey $extra $name -}}
{{- fail (printf "extraArgs.%s cannot be set here: %s" $name $instead) -}}
{{- end -}}
{{- end -}}
{{- $gates := include "clusternet-hub.featureGates" (dict "root" .root "defaultGates" .defaultGates) -}}
{{- range .flags -}}
{{- if eq (index . 0) "feature-gates" -}}
{{- if $gates }}
- --feature-gates={{ $gates }}
{{- end -}}
{{- else if not (hasKey $extra (index . 0)) }}
- --{{ index . 0 }}={{ index . 1 }}
{{- end -}}
{{- end -}}
{{- range $key, $value := $extra -}}
{{- if ne $key "feature-gates" }}
- --{{ $key }}={{ $value }}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* featureGates merged with extraArgs.feature-gates, in the order the gates first appear (see clusternet-hub.args). */}}
{{- define "clusternet-hub.featureGates" -}}
{{- $extra := .root.Values.extraArgs | default dict -}}
{{- $value := toString (.root.Values.featureGates | default "") -}}
{{- $order := list -}}
{{- $gates := dict -}}
{{- $fromValue := dict -}}
{{- $sources := list (list "featureGates" $value) -}}
{{- if hasKey $extra "feature-gates" -}}
{{- $sources = append $sources (list "extraArgs.feature-gates" (toString (get $extra "feature-gates" | default ""))) -}}
{{- end -}}
{{- range $source := $sources -}}
{{- range $item := splitList "," (index $source 1) -}}
{{- $item = trim $item -}}
{{- if $item -}}
{{- $parts := splitList "=" $item -}}
{{- $name := trim (first $parts) -}}
{{- $on := lower (trim (last $parts)) -}}
{{- if eq (index $source 0) "featureGates" -}}
{{- $_ := set $fromValue $name $on -}}
{{- else if and (hasKey $fromValue $name) (ne (get $fromValue $name) $on) (ne $value $.defaultGates) -}}
{{- fail (printf "featureGates sets %s=%s but extraArgs.feature-gates sets %s=%s (Clusternet's values files carry extraArgs.feature-gates): give each gate in one of them" $name (get $fromValue $name) $name $on) -}}
{{- end -}}
{{- if not (hasKey $gates $name) -}}
{{- $order = append $order $name -}}
{{- end -}}
{{- $_ := set $gates $name $item -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- $out := list -}}
{{- range $order -}}
{{- $out = append $out (get $gates .) -}}
{{- end -}}
{{- join "," $out -}}
{{- end -}}

{{/*
Is leader election on, from leaderElect or, when it names the flag, extraArgs.leader-elect (which replaces it):
"true" or "" (Go's ParseBool also takes t, 1).
*/}}
{{- define "clusternet-hub.leaderElect" -}}
{{- $extra := .Values.extraArgs | default dict -}}
{{- $on := .Values.leaderElect -}}
{{- if hasKey $extra "leader-elect" -}}
{{- $on = get $extra "leader-elect" -}}
{{- end -}}
{{- if has (lower (toString $on)) (list "true" "t" "1") -}}true{{- end -}}
{{- end -}}

{{/*
Affinity: `affinity` when set, else Clusternet's (bitnami's) presets: podAffinityPreset and podAntiAffinityPreset
(soft: preferred, hard: required, on this chart's pods per node) and nodeAffinityPreset (type soft|hard, key,
values). Anything else than soft, hard or empty fails the render (bitnami's templates render nothing for it).
*/}}
{{- define "clusternet-hub.affinity" -}}
{{- if .Values.affinity -}}
{{ toYaml .Values.affinity }}
{{- else -}}
{{- $out := dict -}}
{{- $app := "clusternet-hub" -}}
{{- range $key, $preset := dict "podAffinity" (list "podAffinityPreset" .Values.podAffinityPreset) "podAntiAffinity" (list "podAntiAffinityPreset" .Values.podAntiAffinityPreset) -}}
{{- $type := toString (index $preset 1 | default "") -}}
{{- $term := dict "topologyKey" "kubernetes.io/hostname" "labelSelector" (dict "matchLabels" (dict "app" $app)) -}}
{{- if eq $type "soft" -}}
{{- $_ := set $out $key (dict "preferredDuringSchedulingIgnoredDuringExecution" (list (dict "weight" 100 "podAffinityTerm" $term))) -}}
{{- else if eq $type "hard" -}}
{{- $_ := set $out $key (dict "requiredDuringSchedulingIgnoredDuringExecution" (list $term)) -}}
{{- else if $type -}}
{{- fail (printf "%s must be soft, hard or empty, not %q" (index $preset 0) $type) -}}
{{- end -}}
{{- end -}}
{{- $node := .Values.nodeAffinityPreset | default dict -}}
{{- $type := toString ($node.type | default "") -}}
{{- if $type -}}
{{- if not $node.key -}}
{{- fail (printf "nodeAffinityPreset.type %s needs nodeAffinityPreset.key (and values)" $type) -}}
{{- end -}}
{{- $match := dict "matchExpressions" (list (dict "key" (toString $node.key) "operator" "In" "values" ($node.values | default list))) -}}
{{- if eq $type "soft" -}}
{{- $_ := set $out "nodeAffinity" (dict "preferredDuringSchedulingIgnoredDuringExecution" (list (dict "weight" 1 "preference" $match))) -}}
{{- else if eq $type "hard" -}}
{{- $_ := set $out "nodeAffinity" (dict "requiredDuringSchedulingIgnoredDuringExecution" (dict "nodeSelectorTerms" (list $match))) -}}
{{- else -}}
{{- fail (printf "nodeAffinityPreset.type must be soft, hard or empty, not %q" $type) -}}
{{- end -}}
{{- end -}}
{{- if $out -}}
{{ toYaml $out }}
{{- end -}}
{{- end -}}
{{- end -}}
