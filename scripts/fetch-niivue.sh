#!/usr/bin/env bash
# Fetches the pinned NiiVue release from the npm registry, checks the tarball's SHA-256 and
# writes its browser bundle (dist/niivue.umd.js: one self-contained UMD file, global
# `niivue`) to assets/niivue/, where the report viewer embeds it (src/report/viewer.rs).
# Needs npm (for the registry and its proxy settings), tar and sha256sum.
set -euo pipefail
cd "$(dirname "$0")/.."

VERSION=0.69.0
SHA256=6e9a6a471b428eb3b258a0086beca9187d95e43a781a39e8a519c6da246af485

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack --silent "@niivue/niivue@$VERSION" >/dev/null)
tarball="$work/niivue-niivue-$VERSION.tgz"
echo "$SHA256  $tarball" | sha256sum --check --quiet
tar -xzf "$tarball" -C "$work" package/dist/niivue.umd.js
cp "$work/package/dist/niivue.umd.js" assets/niivue/niivue.umd.js.tmp
mv assets/niivue/niivue.umd.js.tmp assets/niivue/niivue.umd.js
echo "assets/niivue/niivue.umd.js: @niivue/niivue $VERSION ($(wc -c <assets/niivue/niivue.umd.js) bytes)"
