#!/usr/bin/env bash
# Each install extra works alone: a fresh venv with only `.[serve]` serves a tiny repository and scores one image,
# and a fresh venv with only `pip install ./client` scores through that gateway. The tiny repository (a 2-step pixel
# reward run, exported) is built with the main .venv, which `make test` has set up. Bounded: every step has a timeout
# (generous: a step that hangs fails the run instead of holding CI; each takes seconds to a few minutes).
set -euo pipefail
trap 'echo "extras_alone.sh: failed at line $LINENO (exit $?)" >&2' ERR
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
MAIN=.venv/bin
WORK=$(mktemp -d)
GATEWAY_PID=
cleanup() {
    if [ -n "$GATEWAY_PID" ]; then kill "$GATEWAY_PID" 2>/dev/null || true; wait "$GATEWAY_PID" 2>/dev/null || true; fi
    rm -rf "$WORK"
}
trap cleanup EXIT
step() { echo "== $(date +%T) $*"; }

step "tiny repository (main .venv)"
timeout 900 $MAIN/rewarddance data synth --prompts 16 --images-per-prompt 4 --out "$WORK/data" --no-progress --workers 1
timeout 900 $MAIN/rewarddance data prompt-states "$WORK/data" --no-progress
timeout 900 $MAIN/rewarddance train pixel-reward --data "$WORK/data" --out "$WORK/run" --scale tiny --steps 2 \
    --eval-every 2 --prompts-per-batch 4 --val-prompts 4 --test-prompts 0 --workers 0 --no-progress
timeout 900 $MAIN/rewarddance export --run "$WORK/run" --repo "$WORK/repo"
# Not `| head -n 1`: head exits after one line and, under pipefail, the writer's SIGPIPE (exit 141) fails the run.
mapfile -t IMAGES < <(find "$WORK/data/images" -name '*.png' | sort)
IMAGE=${IMAGES[0]}

step "serve-only venv: pip install '.[serve]'"
"$PYTHON" -m venv "$WORK/serve"
timeout 900 "$WORK/serve/bin/pip" install --quiet -c constraints.txt '.[serve]'
if "$WORK/serve/bin/python" -c "import torch" 2>/dev/null; then echo "the serve extra pulled in torch"; exit 1; fi

PORT=$("$WORK/serve/bin/python" -c "import socket; s = socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])")
URL="http://127.0.0.1:$PORT"
"$WORK/serve/bin/rewarddance" serve --repo "$WORK/repo" --host 127.0.0.1 --http-port "$PORT" --grpc-port 0 \
    > "$WORK/gateway.log" 2>&1 &
GATEWAY_PID=$!
if ! timeout 300 "$WORK/serve/bin/python" - "$URL" "$GATEWAY_PID" <<'EOF'
import os, sys, time, urllib.request
url, pid = sys.argv[1], int(sys.argv[2])
while True:
    os.kill(pid, 0)  # the gateway exited: ProcessLookupError
    try:
        if urllib.request.urlopen(url + "/readyz", timeout=2).status == 200:
            break
    except OSError:
        time.sleep(0.5)
EOF
then
    echo "the serve-only gateway did not get ready"; cat "$WORK/gateway.log"; exit 1
fi

step "serve-only venv: score one image over HTTP"
timeout 120 "$WORK/serve/bin/python" - "$URL" "$IMAGE" <<'EOF'
import base64, json, sys, urllib.request
url, image = sys.argv[1], sys.argv[2]
body = {"prompt": "a red circle in the center", "images": [base64.b64encode(open(image, "rb").read()).decode()]}
request = urllib.request.Request(url + "/v1/score", json.dumps(body).encode(), {"content-type": "application/json"})
reply = json.loads(urllib.request.urlopen(request, timeout=60).read())
reward = reply["results"][0]["reward"]
assert 0.0 <= reward <= 1.0, reply
print(f"serve-only gateway: {reply['model']['name']} v{reply['model']['version']} reward {reward:.4f}")
EOF

step "client-only venv: pip install ./client"
"$PYTHON" -m venv "$WORK/client"
timeout 600 "$WORK/client/bin/pip" install --quiet -c constraints.txt ./client
timeout 120 "$WORK/client/bin/python" - "$URL" "$IMAGE" <<'EOF'
import sys
from rewarddance_client import RewardClient
url, image = sys.argv[1], sys.argv[2]
with RewardClient(url) as client:
    reply = client.score("a red circle in the center", [open(image, "rb").read()])
reward = reply.results[0].reward
assert 0.0 <= reward <= 1.0, reply
print(f"client-only SDK: {reply.model.name} v{reply.model.version} reward {reward:.4f}")
EOF
step "each install extra works alone: ok"
