#!/usr/bin/env bash
# The C and Go hosts against libwire (built by `cargo build -p wire-ffi`, dev profile):
#   - examples/c/host.c linked statically, linked against the shared library, and linked
#     statically under AddressSanitizer with leak detection;
#   - examples/go through cgo (static link).
# Each runs in a fresh directory and must exit 0 (every check in it held).
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
lib="$root/target/debug"
out="$root/target/ffi"
mkdir -p "$out"
for f in libwire.a libwire.so; do
  [ -f "$lib/$f" ] || { echo "hosts: $lib/$f is missing; run cargo build -p wire-ffi" >&2; exit 1; }
done
CC=${CC:-cc}
cflags=(-std=c11 -Wall -Wextra -Werror -D_DEFAULT_SOURCE -I"$root/include")
libs=(-lpthread -ldl -lm -lz)

"$CC" "${cflags[@]}" -o "$out/host-static" "$root/examples/c/host.c" "$lib/libwire.a" "${libs[@]}"
"$CC" "${cflags[@]}" -o "$out/host-shared" "$root/examples/c/host.c" -L"$lib" -lwire -Wl,-rpath,"$lib"
"$CC" "${cflags[@]}" -g -fsanitize=address -fno-omit-frame-pointer -o "$out/host-asan" \
  "$root/examples/c/host.c" "$lib/libwire.a" "${libs[@]}"
(cd "$root/examples/go" && CGO_ENABLED=1 go build -o "$out/go-host" .)

run() { # name command...
  local dir
  dir=$(mktemp -d)
  if ! "$@" "$dir" >"$dir.log" 2>&1; then
    echo "hosts: $1 failed:" >&2; cat "$dir.log" >&2; rm -rf "$dir" "$dir.log"; exit 1
  fi
  # ASan reports go to stderr even when the exit code is 0 (for leaks it is not): look too.
  if grep -q "ERROR: AddressSanitizer\|ERROR: LeakSanitizer" "$dir.log"; then
    echo "hosts: $1 reported memory errors:" >&2; cat "$dir.log" >&2; exit 1
  fi
  echo "hosts: $(basename "$1"): $(tail -1 "$dir.log")"
  rm -rf "$dir" "$dir.log"
}
run "$out/host-static"
run "$out/host-shared"
ASAN_OPTIONS=detect_leaks=1:halt_on_error=1 run "$out/host-asan"
run "$out/go-host"
