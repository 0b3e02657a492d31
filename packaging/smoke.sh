#!/usr/bin/env bash
# Smoke test of the Linux installers: build (or reuse a fresh build), unpack the .deb into a fresh
# root, check what it installs, and run the INSTALLED launcher's headless self-test.
#
#   packaging/smoke.sh             # reuse dist/ when nothing changed since the last build
#   packaging/smoke.sh --rebuild   # always run PyInstaller first
#
# Exits 0 only when every check passes. Needs dpkg-deb (and uses desktop-file-validate and
# apt-cache when present). Takes about as long as the build plus ~1 minute.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PYTHON="${PYTHON:-python3}"
NAME=guidance-studio
VERSION="$("$PYTHON" -c 'import tomllib; print(tomllib.load(open("pyproject.toml", "rb"))["project"]["version"])')"
DEB="dist/${NAME}_${VERSION}_$(dpkg --print-architecture).deb"
TARBALL="dist/$NAME-$VERSION-linux-$(uname -m).tar.gz"

case "${1:-}" in
    --rebuild) packaging/build.sh ;;
    "") packaging/build.sh --reuse ;;
    *) echo "smoke.sh: unknown option '$1' (use --rebuild)" >&2; exit 2 ;;
esac

FAILED=0
pass() { echo "ok    $*"; }
fail() { echo "FAIL  $*"; FAILED=1; }

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
FAKEROOT="$WORK/root"

echo; echo "== unpacking $DEB into $FAKEROOT"
dpkg-deb -x "$DEB" "$FAKEROOT"
[[ "$(dpkg-deb -f "$DEB" Package)" == "$NAME" ]] && pass "package name $NAME" || fail "package name"
[[ "$(dpkg-deb -f "$DEB" Version)" == "$VERSION" ]] && pass "version $VERSION" || fail "version"

# --- what the package installs ---------------------------------------------------------------
[[ -x "$FAKEROOT/opt/$NAME/$NAME" ]] && pass "/opt/$NAME/$NAME" || fail "/opt/$NAME/$NAME missing"
[[ -L "$FAKEROOT/usr/bin/$NAME" && -x "$FAKEROOT/usr/bin/$NAME" ]] \
    && pass "/usr/bin/$NAME -> $(readlink "$FAKEROOT/usr/bin/$NAME")" || fail "/usr/bin/$NAME launcher"
DESKTOP="$FAKEROOT/usr/share/applications/$NAME.desktop"
if [[ ! -f "$DESKTOP" ]]; then
    fail "menu entry missing"
elif command -v desktop-file-validate >/dev/null && ! desktop-file-validate "$DESKTOP"; then
    fail "menu entry does not validate"
else
    pass "menu entry /usr/share/applications/$NAME.desktop"
fi
for size in 16 32 48 64 128 256 512; do
    [[ -f "$FAKEROOT/usr/share/icons/hicolor/${size}x${size}/apps/$NAME.png" ]] || fail "icon ${size}x${size} missing"
done
[[ -f "$FAKEROOT/usr/share/icons/hicolor/scalable/apps/$NAME.svg" ]] && pass "hicolor icons" || fail "scalable icon"
if ls "$FAKEROOT/opt/$NAME/_internal/resources/models/"*.safetensors >/dev/null 2>&1; then
    pass "built-in models: $(ls "$FAKEROOT/opt/$NAME/_internal/resources/models/"*.safetensors | xargs -n1 basename | tr '\n' ' ')"
else
    echo "note  no built-in model files in the package (resources/models is empty)"
fi

# --- Depends: every library the bundle loads from the OS must come from a declared package ----
DEPENDS="$(dpkg-deb -f "$DEB" Depends | tr ',' '\n' | sed -E 's/\(.*\)//; s/[[:space:]]//g' | grep -v '^$')"
ALLOWED="$DEPENDS"
if command -v apt-cache >/dev/null; then  # and what those pull in themselves
    ALLOWED="$(apt-cache depends --recurse --no-recommends --no-suggests --no-conflicts --no-breaks \
               --no-replaces --no-enhances $DEPENDS 2>/dev/null | grep -v '^ ' | sed 's/:.*//' | sort -u)"
fi
SYSTEM_LIBS="$(find "$FAKEROOT/opt/$NAME" -type f \( -name '*.so*' -o -name "$NAME" \) -exec ldd {} + 2>/dev/null \
    | awk '$2 == "=>" && $3 ~ /^\// {print $3}' | grep -v "^$FAKEROOT" | sort -u)"
UNDECLARED=""
for lib in $SYSTEM_LIBS; do
    owner="$(dpkg -S "$(readlink -f "$lib")" 2>/dev/null | head -1 | cut -d: -f1 || true)"
    [[ -z "$owner" ]] && owner="$(dpkg -S "$lib" 2>/dev/null | head -1 | cut -d: -f1 || true)"
    if [[ -z "$owner" ]] || ! grep -qx "$owner" <<<"$ALLOWED"; then
        UNDECLARED+=" $(basename "$lib")(${owner:-no package})"
    fi
done
[[ -z "$UNDECLARED" ]] && pass "Depends covers the $(wc -w <<<"$SYSTEM_LIBS") system libraries the bundle links" \
    || fail "libraries from packages not in Depends:$UNDECLARED"
MISSING="$(find "$FAKEROOT/opt/$NAME" -type f -name '*.so*' -exec ldd {} + 2>/dev/null | awk '/not found/ {print $1}' | sort -u | tr '\n' ' ')"
[[ -n "$MISSING" ]] && echo "note  not on this machine, needed only by optional Qt plugins (e.g. the GTK theme): $MISSING"

# --- the tarball -----------------------------------------------------------------------------
if tar -tzf "$TARBALL" | grep -qx "$NAME/$NAME" && tar -tzf "$TARBALL" | grep -qx "$NAME/$NAME.desktop"; then
    pass "tarball $(basename "$TARBALL") has $NAME/$NAME and its menu entry"
else
    fail "tarball contents"
fi

# --- run the installed app -------------------------------------------------------------------
echo; echo "== $FAKEROOT/usr/bin/$NAME --self-test"
mkdir -p "$WORK/home" "$WORK/cwd"
set +e
(cd "$WORK/cwd" && env -i HOME="$WORK/home" PATH=/usr/bin:/bin LANG=C.UTF-8 QT_QPA_PLATFORM=offscreen \
    OMP_NUM_THREADS="${OMP_NUM_THREADS:-2}" timeout 600 "$FAKEROOT/usr/bin/$NAME" --self-test) | tee "$WORK/selftest.log"
STATUS=${PIPESTATUS[0]}
set -e
if [[ $STATUS == 0 ]] && grep -q "self-test passed" "$WORK/selftest.log"; then
    pass "installed self-test exit 0"
else
    fail "installed self-test exited $STATUS"
fi

echo
if [[ $FAILED == 0 ]]; then echo "smoke test passed"; else echo "smoke test FAILED"; fi
exit $FAILED
