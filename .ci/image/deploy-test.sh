# shellcheck shell=bash
# One blue-green deploy through the image: cf-sim runs on this machine (loopback only), and the image's own
# /opt/resource/out, check and in are run with Concourse-style stdin and env, with the host network.
# Sourced by .ci/image-tests (which provides docker, note, image, state and sim_pid, and stops cf-sim on exit).
#
#   put v1 (first deploy) → put v2 (blue-green) → the production route serves v2 → check reports the version out
#   emitted → in fetches it
#
# A build whose `out` (or check, or in) still answers "not implemented yet" skips that part with a line saying so.

: "${image:?}" "${state:?}"
deploy_app=image-ci
work=$(mktemp -d /tmp/cf-blue-green-image-deploy.XXXXXX)

# The cf-sim and sample-app binaries `cargo test --workspace` builds: after tests/run.sh, nothing to compile.
note "deploy: building cf-sim and sample-app for this machine"
cargo test --quiet --workspace --no-run 2>"$work/cargo.log" || {
  cat "$work/cargo.log" >&2
  exit 1
}
target_dir=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')

"$target_dir/debug/cf-sim" --route-propagation-delay-ms 200 --stop-grace-ms 2000 \
  >"$work/sim.json" 2>"$work/sim.log" &
sim_pid=$!
for _ in $(seq 1 100); do
  [ -s "$work/sim.json" ] && break
  kill -0 "$sim_pid" 2>/dev/null || {
    tail -n 20 "$work/sim.log" >&2
    note "deploy: cf-sim exited before it was ready"
    exit 1
  }
  sleep 0.1
done
[ -s "$work/sim.json" ] || {
  note "deploy: cf-sim did not print its ready line within 10 s"
  exit 1
}
sim() { python3 -c 'import json,sys; print(json.loads(open(sys.argv[1]).readline())[sys.argv[2]])' "$work/sim.json" "$1"; }
router=$(sim router)
domain=$(sim domain)
note "deploy: cf-sim at $(sim api), router $router"

# The put inputs, as Concourse lays them out: /tmp/build/put/<input>/...
mkdir -p "$work/put/app"
cp "$target_dir/debug/sample-app" "$work/put/app/"
echo 'web: ./sample-app' >"$work/put/app/Procfile"
cat >"$work/put/app/manifest.yml" <<EOF
applications:
- name: $deploy_app
  instances: 2
  memory: 64M
  health-check-type: http
  health-check-http-endpoint: /healthcheck
  routes:
  - route: $deploy_app.$domain
  env:
    APP_VERSION: ((version))
EOF

source_json=$(python3 - "$work/sim.json" "$deploy_app" <<'EOF'
import json, sys
sim = json.loads(open(sys.argv[1]).readline())
print(json.dumps({
    "api": sim["api"], "username": sim["username"], "password": sim["password"],
    "organization": sim["organization"], "space": sim["space"], "app": sys.argv[2],
    "router_address": sim["router"].split("://", 1)[1], "route_scheme": "http",
}))
EOF
)

# run_step NAME REQUEST-JSON [ARG]: runs /opt/resource/NAME in the image with REQUEST-JSON on stdin, the way
# Concourse does (plus NO_COLOR for a readable CI log); stdout goes to $work/NAME.out, stderr (the build log) is shown indented. Returns its status.
run_step() {
  local name=$1 request=$2
  shift 2
  local status=0
  echo "$request" | docker run --rm -i --network host \
    -v "$work/put:/tmp/build/put" -v "$work/get:/tmp/build/get" \
    -e BUILD_ID=1 -e BUILD_NAME=1 -e BUILD_JOB_NAME=deploy -e BUILD_PIPELINE_NAME=image-ci \
    -e BUILD_TEAM_NAME=main -e ATC_EXTERNAL_URL=https://ci.example.com -e NO_COLOR=1 \
    "$image:latest" "/opt/resource/$name" "$@" >"$work/$name.out" 2>"$work/$name.err" || status=$?
  sed 's/^/    /' "$work/$name.err" >&2
  return "$status"
}
last_error() { grep -v '^[[:space:]]*$' "$work/$1.err" | tail -n 1; }
put() {
  run_step out "{\"source\": $source_json, \"params\": {\"path\": \"app\", \"manifest\": \"app/manifest.yml\",
    \"vars\": {\"version\": \"$1\"}, \"verify\": [{\"path\": \"/version\", \"body_contains\": \"$1\"}],
    \"drain\": \"2s\"}}" /tmp/build/put
}

note "deploy: put v1 (first deploy)"
mkdir -p "$work/get"
if ! put v1; then
  if last_error out | grep -q 'not implemented yet'; then
    note "deploy through the image skipped: /opt/resource/out answers \"$(last_error out)\""
    return 0
  fi
  note "deploy: put v1 failed: $(last_error out)"
  exit 1
fi
note "deploy: put v2 (blue-green)"
put v2 || {
  note "deploy: put v2 failed: $(last_error out)"
  exit 1
}
version=$(python3 -c 'import json,sys; print(json.dumps(json.load(open(sys.argv[1]))["version"]))' "$work/out.out")
served=$(curl -sS --max-time 10 -H "Host: $deploy_app.$domain" "$router/version")
[ "$served" = v2 ] || {
  note "deploy: the production route serves '$served', not v2"
  exit 1
}
note "deploy: production serves v2; out emitted $version"

if run_step check "{\"source\": $source_json, \"version\": $version}"; then
  python3 - "$work/check.out" "$version" <<'EOF' || exit 1
import json, sys
versions, emitted = json.load(open(sys.argv[1])), json.loads(sys.argv[2])
if not versions or versions[-1] != emitted:
    sys.exit(f"image: deploy: check answered {versions}, expected the version out emitted last: {emitted}")
EOF
  note "deploy: check reports it"
elif last_error check | grep -q 'not implemented yet'; then
  note "deploy: check skipped: $(last_error check)"
else
  note "deploy: check failed: $(last_error check)"
  exit 1
fi

if run_step in "{\"source\": $source_json, \"version\": $version}" /tmp/build/get; then
  [ -s "$work/get/app_guid" ] || {
    note "deploy: in wrote no app_guid file"
    exit 1
  }
  note "deploy: in fetches it ($(cd "$work/get" && echo *))"
elif last_error in | grep -q 'not implemented yet'; then
  note "deploy: in skipped: $(last_error in)"
else
  note "deploy: in failed: $(last_error in)"
  exit 1
fi
