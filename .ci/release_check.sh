#!/usr/bin/env bash
# Release check: build the sdist and the wheel as a user receives them, check their metadata, install the
# wheel (not editable) into a fresh venv and use the installed package from there, outside the source tree.
# Usage: bash .ci/release_check.sh [WORK_DIR]   (default: a new temporary folder, removed at the end)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore
KEEP=${1:-}
WORK=${KEEP:-$(mktemp -d)}
mkdir -p "$WORK"
SERVER_PID=""
cleanup_server() { if [ -n "$SERVER_PID" ]; then kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; fi; }
trap 'cleanup_server; [ -n "$KEEP" ] || rm -rf "$WORK"' EXIT
step() { echo "== release check: $*"; }
fail() { echo "release check FAILED: $*" >&2; exit 1; }

step "build the sdist and the wheel (python -m build: the wheel is built from the sdist)"
rm -rf "$WORK/dist"
python3 -m build --outdir "$WORK/dist" . >"$WORK/build.log" 2>&1 || { tail -40 "$WORK/build.log"; fail "python -m build"; }
WHEEL=$(ls "$WORK"/dist/*.whl)
SDIST=$(ls "$WORK"/dist/*.tar.gz)
VERSION=$(python3 -c "import runpy; print(runpy.run_path('src/mnist_vae/_version.py')['__version__'])")
case "$(basename "$WHEEL")" in "mnist_vae-$VERSION-"*) ;; *) fail "$WHEEL does not carry version $VERSION" ;; esac
ls -l "$WORK"/dist

step "twine check --strict (metadata and the README as the package index renders it)"
python3 -m twine check --strict "$WORK"/dist/*

step "what the wheel and the sdist must contain"
python3 - "$WHEEL" "$SDIST" <<'EOF'
import sys, tarfile, zipfile
wheel, sdist = sys.argv[1], sys.argv[2]
need = ["mnist_vae/py.typed", "mnist_vae/assets/mnist_embedded.npz", "mnist_vae/assets/pretrained/pretrained.json",
        "mnist_vae/assets/pretrained/lstm-plus.safetensors", "mnist_vae/assets/pretrained/mlp-vae.safetensors",
        "mnist_vae/assets/pretrained/optimized.safetensors", "mnist_vae/serve/web/index.html"]
names = set(zipfile.ZipFile(wheel).namelist())
in_sdist = {n.split("/", 1)[1] for n in tarfile.open(sdist).getnames() if "/" in n}
missing = [f"wheel: {n}" for n in need if n not in names] + [f"sdist: src/{n}" for n in need if f"src/{n}" not in in_sdist]
meta = next(n for n in names if n.endswith(".dist-info/METADATA"))
text = zipfile.ZipFile(wheel).read(meta).decode()
if "Requires-Python: >=3.10" not in text:
    missing.append("wheel METADATA: Requires-Python: >=3.10")
if missing:
    sys.exit("missing: " + ", ".join(missing))
print(f"{len(names)} files in the wheel, {len(in_sdist)} in the sdist; py.typed, digits, 3 pretrained models and the web page in both")
EOF

step "fresh venv: torch==2.13.0 first (the CPU build), then the wheel with the web extra, not editable"
rm -rf "$WORK/venv"
python3 -m venv "$WORK/venv"
V="$WORK/venv/bin"
"$V/python" -m pip install -q torch==2.13.0
"$V/python" -m pip install -q "$WHEEL[web]"
# Everything below runs outside the source tree, so only the installed package can be imported.
RUN="$WORK/use"
rm -rf "$RUN" && mkdir -p "$RUN" && cd "$RUN"
"$V/python" -c "import mnist_vae, pathlib, sys; p = pathlib.Path(mnist_vae.__file__); sys.exit(0 if 'site-packages' in str(p) else f'imported from {p}')"
[ "$("$V/mnist-vae" --version)" = "mnist-vae $VERSION" ] || fail "mnist-vae --version does not say $VERSION"
echo "mnist-vae --version: $("$V/mnist-vae" --version)"

step "mnist-vae train --config mlp-vae --epochs 1 --dataset embedded"
"$V/mnist-vae" train --config mlp-vae --epochs 1 --dataset embedded --no-progress --out "$RUN/runs/mlp"
[ -f "$RUN/runs/mlp/metrics.jsonl" ] || fail "train wrote no metrics.jsonl"

step "load_pretrained from Python; a digit image of its own making"
"$V/python" - <<'EOF'
import numpy as np
from matplotlib import pyplot as plt
from mnist_vae import load_pretrained, load_run

vae = load_pretrained("lstm-plus")
digits = vae.sample(4, seed=0, numpy=True)
assert digits.shape == (4, 28, 28) and 0 <= digits.min() and digits.max() <= 1, digits.shape
plt.imsave("digit.png", digits[0], cmap="gray")
run = load_run("runs/mlp")
print(vae, run, f"mean |x - reconstruct(x)| = {np.abs(vae.reconstruct(digits) - digits).mean():.3f}")
EOF

step "mnist-vae score --pretrained lstm-plus digit.png"
"$V/mnist-vae" score --pretrained lstm-plus --k 100 digit.png --out scores.json
"$V/python" -c "import json; print(json.dumps(json.load(open('scores.json')))[:300])"

step "mnist-vae serve --pretrained lstm-plus answers /api/info"
"$V/mnist-vae" serve --pretrained lstm-plus --port 0 >serve.log 2>&1 &
SERVER_PID=$!
URL=""
for _ in $(seq 1 120); do
  URL=$(grep -o 'http://127.0.0.1:[0-9]*/' serve.log | head -1 || true)
  [ -n "$URL" ] && "$V/python" -c "import sys, urllib.request; urllib.request.urlopen(sys.argv[1] + 'api/info', timeout=5)" "$URL" 2>/dev/null && break
  kill -0 "$SERVER_PID" 2>/dev/null || { cat serve.log; fail "serve exited"; }
  sleep 1
done
[ -n "$URL" ] || { cat serve.log; fail "serve printed no address"; }
"$V/python" - "$URL" <<'EOF'
import json, sys, urllib.request
info = json.load(urllib.request.urlopen(sys.argv[1] + "api/info", timeout=10))
assert info["latent_dim"] == 16 and info["name"] == "lstm-plus", {k: info[k] for k in ("name", "latent_dim")}
print(f"{sys.argv[1]}api/info: {info['name']}, latent_dim {info['latent_dim']}, {info['n_active']} active, {info['epochs']} epochs")
EOF
cleanup_server; SERVER_PID=""

step "errors a user can act on, from the installed wheel"
# An empty cache, so that only a download could bring full MNIST (CI has no network but the package index).
if out=$(MNIST_VAE_DATA="$WORK/empty-cache" "$V/mnist-vae" train --config mlp-vae --epochs 1 --dataset mnist --no-progress \
    --out "$RUN/runs/offline" 2>&1 </dev/null); then
  echo "full MNIST was downloaded (this machine has a network): the offline message is checked by tests/test_user_errors.py"
else
  echo "$out" | tail -1
  echo "$out" | tail -1 | grep -q -- "--dataset embedded" || fail "offline --dataset mnist does not point to --dataset embedded"
  echo "$out" | tail -1 | grep -q -- "--data-path DIR" || fail "offline --dataset mnist does not say where the files go"
fi
for cmd in "train --config mlp-vae --epochs 1 --dataset embedded --tensorboard --out $RUN/runs/tb" "export $RUN/runs/mlp"; do
  out=$("$V/mnist-vae" $cmd 2>&1) && continue  # the extra's package may have come with another one
  echo "$out" | tail -1
  echo "$out" | tail -1 | grep -q "pip install 'mnist-vae\[" || fail "mnist-vae $cmd: no pip install line"
done

step "Python older than 3.10 is refused at install"
OLD=""
for p in "$HOME"/.pyenv/versions/3.9*/bin/python3.9 /usr/bin/python3.9 /usr/local/bin/python3.9; do
  [ -x "$p" ] && "$p" -m pip --version >/dev/null 2>&1 && OLD=$p && break
done
if [ -n "$OLD" ]; then
  out=$("$OLD" -m pip install --no-deps --no-index --target "$WORK/py39" "$WHEEL" 2>&1) && fail "$OLD installed the wheel"
  echo "$out" | grep -m1 "requires a different Python" || { echo "$out" | tail -3; fail "no clear refusal from $OLD"; }
else
  echo "no Python 3.9 here: skipped (the wheel's Requires-Python: >=3.10 was checked above)"
fi
cd "$ROOT"
echo "release check passed: $(basename "$SDIST"), $(basename "$WHEEL")"
