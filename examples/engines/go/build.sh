#!/usr/bin/env bash
# Builds the Go engine offline from Debian's Go packages (scripts/setup-dev installs them):
#   examples/engines/go/build/c2d-go-engine
# GOPATH mode (GO111MODULE=off): the libraries come from /usr/share/gocode, the engine API's Go
# code is generated into build/gopath by protoc (the protos have no go_package: M options).
# Fast when nothing changed. Run it from anywhere: bash examples/engines/go/build.sh
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../../.." && pwd)"
out="${C2D_GO_ENGINE_BUILD:-$here/build}"
binary="$out/c2d-go-engine"
gen="$out/gopath/src/c2dexample/gen"

for tool in go protoc protoc-gen-go protoc-gen-go-grpc; do
  command -v "$tool" >/dev/null 2>&1 || {
    echo "build.sh: $tool not found; run scripts/setup-dev as root (Debian's golang-go and friends)" >&2
    exit 2
  }
done

# One build at a time (pytest -n runs the tests that need the binary in several workers).
mkdir -p "$out"
exec 9>"$out/.lock"
flock 9

# Newer than every input: nothing to do.
if [[ -x "$binary" && -z "$(find "$here"/*.go "$here/build.sh" "$root/proto/c2d/common" "$root/proto/c2d/engine" \
        -newer "$binary" -print -quit)" ]]; then
  echo "build.sh: $binary is up to date" >&2
  exit 0
fi

common="c2d/common/v1/common.proto"
engine="c2d/engine/v1/engine.proto"
maps="M$common=c2dexample/gen/commonv1;commonv1,M$engine=c2dexample/gen/enginev1;enginev1"
rm -rf "$gen" && mkdir -p "$out/gopath/src"
protoc -I "$root/proto" -I /usr/include \
  --go_out="$out/gopath/src" --go_opt="$maps" \
  --go-grpc_out="$out/gopath/src" --go-grpc_opt="$maps" \
  "$common" "$engine"

cd "$here"
GO111MODULE=off GOPATH="$out/gopath:/usr/share/gocode" GOCACHE="${GOCACHE:-$out/gocache}" GOFLAGS= \
  go build -o "$binary.tmp" .
mv -f "$binary.tmp" "$binary"
echo "build.sh: built $binary" >&2
