#!/usr/bin/env bash
# The web page's JavaScript dependencies (notebook 10, web/): ONNX Runtime Web and OpenCV.js from npm, at the exact
# versions of web/package-lock.json (npm ci), copied into web/vendor/, the only folder the page loads them from (it
# contacts no other host). Run by `make web` and `make test`. Without npm it installs Node.js from Debian/Ubuntu
# where this user may, else it says how and the browser test of the page is skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v npm >/dev/null; then
  bash scripts/apt_install.sh "the web page of notebook 10" nodejs npm || {
    echo "No npm: the web page cannot be built and its browser test will be skipped. Install Node.js (with npm)."
    exit 0
  }
fi
echo "Web page: installing ONNX Runtime Web and OpenCV.js (web/package-lock.json) and copying them into web/vendor/"
npm ci --prefix web --no-audit --no-fund --loglevel=error
mkdir -p web/vendor
ort=web/node_modules/onnxruntime-web/dist
cp "$ort/ort.wasm.min.mjs" "$ort/ort-wasm-simd-threaded.mjs" "$ort/ort-wasm-simd-threaded.wasm" web/vendor/
cp web/node_modules/@techstark/opencv-js/dist/opencv.js web/vendor/
touch web/vendor/.ready
