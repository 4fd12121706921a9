#!/usr/bin/env bash
# kind end-to-end suite: a real cluster, the real images, the Helm chart, real upstream servers.
#
#  1. creates a kind cluster, builds the operator, sidecar, mail server and moto images and loads
#     them into it;
#  2. runs postfix + dovecot (e2e/kind/mailserver) and moto (KMS) in namespace mail-test;
#  3. installs charts/mailcred (self-signed webhook TLS, native sidecar);
#  4. seals the mail account's password with `kubectl mailcred seal --kms aws:<moto key>` through
#     a port-forward to moto, applies the MailCredential and checks its status turns Ready and its
#     Role/RoleBinding grant exactly the listed ServiceAccount;
#  5. runs an annotated python pod (e2e/kind/app.py) that sends through 127.0.0.1:2525 and reads
#     through 127.0.0.1:1143, with the policy refusals (550) it must get, checks the message
#     landed in the server's maildir, that a pod running as an unlisted ServiceAccount is refused
#     by the webhook, and that the password appears in no log or object outside mail-test;
#  6. deletes the cluster (E2E_KEEP=1 keeps it, and the work directory).
#
# Needs Docker, kind, kubectl, helm 3.8+ (or 4), Rust (cargo, to build kubectl-mailcred), openssl,
# curl. It cannot run where there is no Docker engine (such as the development machines of this
# project); .github/workflows/e2e.yml runs it on a hosted runner.
#
# Env: KIND_CLUSTER (mailcred-e2e), KIND_NODE_IMAGE (kindest/node:v1.33.1), E2E_KEEP=1,
#      E2E_TIMEOUT (seconds for each wait, 180), E2E_SIDECAR_IMAGE_BUDGET_MB (64).
# Last line: "N passed, M failed"; exit status 1 on any failure.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$repo"
# shellcheck source-path=SCRIPTDIR source=../lib/common.sh
# shellcheck source=../lib/common.sh
source "$repo/e2e/lib/common.sh"
here=e2e/kind
cluster="${KIND_CLUSTER:-mailcred-e2e}"
node_image="${KIND_NODE_IMAGE:-kindest/node:v1.33.1}"
timeout_s="${E2E_TIMEOUT:-180}"
size_budget_mb="${E2E_SIDECAR_IMAGE_BUDGET_MB:-64}"
ctx="kind-$cluster"
tag=e2e
app_image=python:3.12-slim
mail_host=mail.mail-test.svc.cluster.local
kms_local_port="${E2E_KMS_LOCAL_PORT:-14566}"
started=$SECONDS

step() { printf '\n==> %s\n' "$*"; }
kc() { kubectl --context "$ctx" "$@"; }

for tool in docker kind kubectl helm cargo openssl curl; do
  command -v "$tool" >/dev/null || die "$tool is required (see e2e/README.md)"
done
docker info >/dev/null 2>&1 || die "no Docker engine reachable: the kind suite needs one (see e2e/README.md)"

work="$(mktemp -d "${TMPDIR:-/tmp}/mailcred-kind.XXXXXX")"
chmod 700 "$work"
port_forward_pid=""

diagnostics() {
  local d="$work/diagnostics"
  mkdir -p "$d"
  kc get pods -A -o wide >"$d/pods.txt" 2>&1 || true
  kc get events -A --sort-by=.lastTimestamp >"$d/events.txt" 2>&1 || true
  kc -n mailcred-system logs -l app.kubernetes.io/component=operator --all-containers --prefix --tail=-1 >"$d/operator.log" 2>&1 || true
  kc -n e2e-app describe pod mail-app >"$d/mail-app.describe.txt" 2>&1 || true
  kc -n e2e-app logs mail-app --all-containers --prefix >"$d/mail-app.log" 2>&1 || true
  kc -n e2e-app get mailcredentials -o yaml >"$d/mailcredentials.yaml" 2>&1 || true
  kc -n mail-test logs deploy/mailserver --tail=200 >"$d/mailserver.log" 2>&1 || true
  echo "diagnostics in $d:"
  tail -n 40 "$d/operator.log" "$d/mail-app.log" 2>/dev/null || true
}

cleanup() {
  local status=$?
  if [[ -n "$port_forward_pid" ]]; then kill "$port_forward_pid" 2>/dev/null || true; fi
  if [[ $status -ne 0 || $checks_failed -ne 0 ]]; then diagnostics || true; fi
  if [[ "${E2E_KEEP:-0}" == 1 ]]; then
    echo "kept cluster $cluster (kind delete cluster --name $cluster) and $work"
  else
    kind delete cluster --name "$cluster" >/dev/null 2>&1 || true
    if [[ $status -eq 0 && $checks_failed -eq 0 ]]; then rm -rf "$work"; fi
  fi
}
trap cleanup EXIT

check() {
  local name="$1"
  shift
  if "$@" >"$work/check.out" 2>&1; then
    pass "$name"
  else
    fail "$name"
    sed 's/^/    /' "$work/check.out" | tail -n 30
  fi
}

# True when FILE contains none of the lines of PATTERNS (fixed strings).
lacks() { ! grep -qF -f "$1" "$2"; }
# True when `kubectl ARGS...` prints exactly WANT.
prints() {
  local want="$1"
  shift
  [[ "$(kc "$@" 2>/dev/null)" == "$want" ]]
}

# Polls CMD until it succeeds, for at most E2E_TIMEOUT seconds.
eventually() {
  local deadline=$((SECONDS + timeout_s))
  until "$@" >/dev/null 2>&1; do
    if ((SECONDS >= deadline)); then
      "$@"
      return 1
    fi
    sleep 2
  done
}

# ---- cluster and images -------------------------------------------------------------------
step "kind cluster $cluster ($node_image)"
kind delete cluster --name "$cluster" >/dev/null 2>&1 || true
kind create cluster --name "$cluster" --image "$node_image" --wait "${timeout_s}s"

step "building images"
docker build -f images/Dockerfile --target operator -t "mailcred-operator:$tag" .
docker build -f images/Dockerfile --target sidecar -t "mailcred-sidecar:$tag" .
docker build -f "$here/mailserver/Dockerfile" -t "mailcred-e2e-mailserver:$tag" e2e
docker build -f "$here/moto/Dockerfile" -t "mailcred-e2e-moto:$tag" e2e
docker pull -q "$app_image" >/dev/null
for image in "mailcred-operator:$tag" "mailcred-sidecar:$tag" "mailcred-e2e-mailserver:$tag" "mailcred-e2e-moto:$tag" "$app_image"; do
  kind load docker-image --name "$cluster" "$image"
done

sidecar_bytes="$(docker image inspect -f '{{.Size}}' "mailcred-sidecar:$tag")"
operator_bytes="$(docker image inspect -f '{{.Size}}' "mailcred-operator:$tag")"
sizes="image sizes: mailcred-sidecar $((sidecar_bytes / 1048576)) MiB, mailcred-operator $((operator_bytes / 1048576)) MiB (uncompressed)"
echo "$sizes"
if [[ -n "${GITHUB_STEP_SUMMARY:-}" ]]; then echo "$sizes" >>"$GITHUB_STEP_SUMMARY"; fi
check "sidecar image is within ${size_budget_mb} MiB" test "$sidecar_bytes" -le $((size_budget_mb * 1048576))

step "building kubectl-mailcred"
cargo build --locked -q -p kubectl-mailcred
seal_bin="$repo/target/debug/kubectl-mailcred"

# ---- upstream servers ----------------------------------------------------------------------
step "mail server and KMS emulator in namespace mail-test"
tls="$work/tls"
mkdir -p "$tls"
make_test_pki "$tls" "mailcred kind e2e CA" "$mail_host" \
  "DNS:$mail_host,DNS:mail.mail-test.svc,DNS:mail.mail-test" 2

# The mailbox password: known to the mail server (its own user database) and typed once into
# `kubectl mailcred seal`; it must never show up on the application's side.
password="$(openssl rand -hex 20)"
printf 'app@example.test:%s\nsink@example.test:%s\n' "$password" "$(openssl rand -hex 20)" >"$work/users"
chmod 600 "$work/users"
printf '%s\n' "$password" >"$work/password"
# What a leak may look like: the password, or base64 of it (a Secret, a JSON field).
{
  printf '%s\n' "$password"
  printf '%s' "$password" | openssl base64 -A
  echo
  printf '%s\n' "$password" | openssl base64 -A
  echo
} >"$work/leak-patterns"
chmod 600 "$work/password" "$work/leak-patterns"

kc create namespace mail-test
kc -n mail-test create secret tls mail-tls --cert "$tls/server.pem" --key "$tls/server.key"
kc -n mail-test create secret generic mail-users --from-file=users="$work/users"
kc apply -f "$here/manifests/servers.yaml"

# ---- mailcred ------------------------------------------------------------------------------
step "helm install charts/mailcred"
# The sidecar reaches moto through AWS_ENDPOINT_URL (a sealed secret names no endpoint here, so
# no trusted-endpoint list is needed); moto takes any credentials.
helm install mailcred charts/mailcred --kube-context "$ctx" \
  --namespace mailcred-system --create-namespace \
  --set operator.image.repository=mailcred-operator --set operator.image.tag="$tag" \
  --set operator.image.pullPolicy=Never \
  --set sidecar.image.repository=mailcred-sidecar --set sidecar.image.tag="$tag" \
  --set sidecar.image.pullPolicy=IfNotPresent \
  --set sidecar.extraEnv.AWS_ENDPOINT_URL="http://moto.mail-test.svc.cluster.local:4566" \
  --set sidecar.extraEnv.AWS_REGION=us-east-1 \
  --set sidecar.extraEnv.AWS_ACCESS_KEY_ID=test \
  --set sidecar.extraEnv.AWS_SECRET_ACCESS_KEY=test \
  --set webhook.tls.checkSeconds=15 \
  --wait --timeout "${timeout_s}s"

check "operator: 2 replicas ready" \
  kc -n mailcred-system rollout status deployment/mailcred-operator --timeout "${timeout_s}s"
lease_held() {
  [[ -n "$(kc -n mailcred-system get lease mailcred-operator -o jsonpath='{.spec.holderIdentity}')" ]]
}
check "operator: the leader holds Lease mailcred-operator" eventually lease_held
ca_bundle_set() {
  [[ -n "$(kc get mutatingwebhookconfiguration mailcred-operator -o jsonpath='{.webhooks[0].clientConfig.caBundle}')" ]]
}
check "operator: patched caBundle of its MutatingWebhookConfiguration" eventually ca_bundle_set
check "mail server ready" kc -n mail-test rollout status deployment/mailserver --timeout "${timeout_s}s"
check "moto ready" kc -n mail-test rollout status deployment/moto --timeout "${timeout_s}s"

step "KMS key in moto, sealing through a port-forward"
kc -n mail-test port-forward svc/moto "$kms_local_port:4566" >"$work/port-forward.log" 2>&1 &
port_forward_pid=$!
eventually curl -fsS -o /dev/null "http://127.0.0.1:$kms_local_port/moto-api/" \
  || die "port-forward to moto did not come up"
export AWS_ENDPOINT_URL="http://127.0.0.1:$kms_local_port" AWS_REGION=us-east-1 \
  AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test
key_arn="$(kc -n mail-test exec deploy/moto -- python -c '
import boto3
kms = boto3.client("kms", endpoint_url="http://127.0.0.1:4566", region_name="us-east-1",
                   aws_access_key_id="test", aws_secret_access_key="test")
print(kms.create_key(Description="mailcred kind e2e")["KeyMetadata"]["Arn"])')"
echo "KMS key: $key_arn"

"$seal_bin" seal --name e2e-mail --namespace e2e-app --username app@example.test \
  --smtp "$mail_host:587" --imap "$mail_host:143" --ca-file "$tls/ca.pem" \
  --kms "aws:$key_arn" --service-account mail-app \
  --allowed-sender app@example.test --allowed-recipient '*@example.test' \
  --password-stdin -w "$work/e2e-mail.yaml" <"$work/password"
check "sealed MailCredential does not contain the password" \
  lacks "$work/leak-patterns" "$work/e2e-mail.yaml"

kc apply -f "$here/manifests/app.yaml"
kc apply -f "$work/e2e-mail.yaml"
check "MailCredential e2e-mail becomes Ready" \
  kc -n e2e-app wait mailcredential/e2e-mail --for=condition=Ready --timeout "${timeout_s}s"
check "its Role exists" kc -n e2e-app get role mailcred-e2e-mail
check "its RoleBinding binds ServiceAccount mail-app (only)" \
  prints mail-app -n e2e-app get rolebinding mailcred-e2e-mail -o jsonpath='{.subjects[*].name}'
sa=system:serviceaccount:e2e-app
check "mail-app may get MailCredential e2e-mail" \
  prints yes auth can-i get mailcredentials.mailcred.io/e2e-mail -n e2e-app --as "$sa:mail-app"
check "mail-app may watch MailCredential e2e-mail" \
  prints yes auth can-i watch mailcredentials.mailcred.io/e2e-mail -n e2e-app --as "$sa:mail-app"
check "intruder may not get MailCredential e2e-mail" \
  prints no auth can-i get mailcredentials.mailcred.io/e2e-mail -n e2e-app --as "$sa:intruder"
check "mail-app may not get other MailCredentials" \
  prints no auth can-i get mailcredentials.mailcred.io/another -n e2e-app --as "$sa:mail-app"
check "mail-app may not update its MailCredential" \
  prints no auth can-i update mailcredentials.mailcred.io/e2e-mail -n e2e-app --as "$sa:mail-app"
check "mail-app may not read Secrets" \
  prints no auth can-i get secrets -n e2e-app --as "$sa:mail-app"

# ---- the application -----------------------------------------------------------------------
step "annotated application pod"
token="mailcred-kind-e2e-$(openssl rand -hex 6)"
kc -n e2e-app create configmap app-script --from-file=app.py="$here/app.py"
sed "s/@TOKEN@/$token/" "$here/manifests/app-pod.yaml" | kc apply -f -
check "webhook injected the native sidecar" \
  prints Always -n e2e-app get pod mail-app \
  -o jsonpath='{.spec.initContainers[?(@.name=="mailcred-sidecar")].restartPolicy}'
check "webhook recorded the injection" \
  prints e2e-mail -n e2e-app get pod mail-app -o jsonpath='{.metadata.annotations.mailcred\.io/injected}'
pod_done() {
  local phase
  phase="$(kc -n e2e-app get pod mail-app -o jsonpath='{.status.phase}')"
  [[ "$phase" == Succeeded || "$phase" == Failed ]]
}
eventually pod_done || true
kc -n e2e-app logs mail-app -c app >"$work/app.log" 2>&1 || true
sed 's/^/    app: /' "$work/app.log"
check "application pod succeeded (all its checks passed)" \
  prints Succeeded -n e2e-app get pod mail-app -o jsonpath='{.status.phase}'
check "application ran its checks" grep -Eq '^[1-9][0-9]* passed, 0 failed$' "$work/app.log"
check "the message landed in app@example.test's maildir on the server" \
  kc -n mail-test exec deploy/mailserver -- grep -rlF "Subject: $token" /var/mail/vhosts/app@example.test/Maildir

step "a pod running as an unlisted ServiceAccount"
if kc apply -f "$here/manifests/intruder-pod.yaml" >"$work/intruder.out" 2>&1; then
  check "webhook refused the intruder pod" false
else
  check "webhook refused the intruder pod" grep -q "may not use MailCredential" "$work/intruder.out"
fi

step "the password stays on the mail server's side"
{
  kc -n mailcred-system logs -l app.kubernetes.io/component=operator --all-containers --prefix --tail=-1
  kc -n e2e-app logs mail-app --all-containers --prefix
  kc -n e2e-app get all,mailcredentials,roles,rolebindings,configmaps,events,serviceaccounts -o yaml
  kc -n mailcred-system get all,secrets,configmaps,events,leases -o yaml
  kc get events -A -o yaml
  kc get mutatingwebhookconfigurations -o yaml
  cat "$work/e2e-mail.yaml" "$work/app.log"
} >"$work/everything.txt" 2>&1
check "collected logs and objects are not empty" test -s "$work/everything.txt"
check "the password is in no log or object outside mail-test" \
  lacks "$work/leak-patterns" "$work/everything.txt"

printf '\nkind e2e took %d s\n' "$((SECONDS - started))"
checks_summary
