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
# Resolve as the bootloader does (bundle first). Qt plugins for GTK themes and Wayland load only
# where their libraries exist; theirs may come from Recommends instead.
field() { dpkg-deb -f "$DEB" "$1" | tr ',' '\n' | sed -E 's/\(.*\)//; s/[[:space:]]//g' | grep -v '^$' || true; }
closure() {  # the packages named and everything they depend on, as installed here
    [[ -z "$*" ]] && return
    apt-cache depends --recurse --no-recommends --no-suggests --no-conflicts --no-breaks --no-replaces \
        --no-enhances "$@" 2>/dev/null | grep -v '^ ' | sed 's/:.*//' | sort -u || printf '%s\n' "$@"
}
DEPENDS="$(field Depends)"; RECOMMENDS="$(field Recommends)"
if command -v apt-cache >/dev/null; then
    REQUIRED_OK="$(closure $DEPENDS)"; OPTIONAL_OK="$(closure $DEPENDS $RECOMMENDS)"
else
    REQUIRED_OK="$DEPENDS"; OPTIONAL_OK="$DEPENDS $RECOMMENDS"
fi
INTERNAL="$FAKEROOT/opt/$NAME/_internal"
. packaging/linux/syslibs.sh  # the same resolution build.sh derived Depends with
ELFS="$(find "$FAKEROOT/opt/$NAME" -type f \( -name '*.so*' -o -name "$NAME" \) | sort)"
REQUIRED_LIBS="$( (grep -Ev "$SYSLIBS_OPTIONAL_RE" <<<"$ELFS" || true) | syslibs_resolve "$INTERNAL")"
OPTIONAL_LIBS="$( (grep -E "$SYSLIBS_OPTIONAL_RE" <<<"$ELFS" || true) | syslibs_resolve "$INTERNAL")"
undeclared() {  # $1: allowed packages; stdin: libraries -> "lib(package)" for each not allowed
    local lib owner
    while read -r lib; do
        [[ -z "$lib" ]] && continue
        owner="$(syslibs_owner "$lib")"
        grep -qx "${owner:-none}" <<<"$1" || printf ' %s(%s)' "$(basename "$lib")" "${owner:-no package}"
    done
}
BAD="$(undeclared "$REQUIRED_OK" <<<"$REQUIRED_LIBS")$(undeclared "$OPTIONAL_OK" <<<"$OPTIONAL_LIBS")"
[[ -z "$BAD" ]] && pass "Depends/Recommends cover the $(printf '%s\n%s\n' "$REQUIRED_LIBS" "$OPTIONAL_LIBS" | sort -u | grep -c .) system libraries the bundle links" \
    || fail "libraries from packages not declared:$BAD"
MISSING="$(xargs -r env LD_LIBRARY_PATH="$INTERNAL" ldd <<<"$ELFS" 2>/dev/null | awk '/not found/ {print $1}' | sort -u | tr '\n' ' ' || true)"
[[ -n "$MISSING" ]] && echo "note  not on this build machine (used by optional Qt plugins only): $MISSING"

if command -v apt-get >/dev/null && [[ "$(apt-cache policy libc6 2>/dev/null || true)" == *"Candidate: "[0-9]* ]]; then
    if apt-get install -s --no-install-recommends "./$DEB" >"$WORK/apt.log" 2>&1; then
        pass "apt resolves Depends here ($(grep -c '^Inst ' "$WORK/apt.log") packages to install)"
    else
        fail "apt cannot resolve Depends: $(grep -E '^ |^E:' "$WORK/apt.log" | head -5 | tr '\n' ' ')"
    fi
fi

# --- the tarball -----------------------------------------------------------------------------
LISTING="$(tar -tzf "$TARBALL")"
if grep -qx "$NAME/$NAME" <<<"$LISTING" && grep -qx "$NAME/$NAME.desktop" <<<"$LISTING"; then
    pass "tarball $(basename "$TARBALL") has $NAME/$NAME and its menu entry"
else
    fail "tarball contents"
fi

# --- run the installed app -------------------------------------------------------------------
echo; echo "== $FAKEROOT/usr/bin/$NAME --self-test"
mkdir -p "$WORK/home" "$WORK/cwd"
# As root, run it as an ordinary user (nobody) who cannot write to the installed files, as after apt.
AS_USER=()
if [[ $(id -u) == 0 ]] && command -v setpriv >/dev/null; then
    chmod 755 "$WORK"
    chown 65534:65534 "$WORK/home" "$WORK/cwd"
    AS_USER=(setpriv --reuid=65534 --regid=65534 --clear-groups)
    echo "(as uid 65534)"
fi
set +e
(cd "$WORK/cwd" && env -i HOME="$WORK/home" PATH=/usr/bin:/bin LANG=C.UTF-8 QT_QPA_PLATFORM=offscreen \
    OMP_NUM_THREADS="${OMP_NUM_THREADS:-2}" timeout 600 "${AS_USER[@]}" "$FAKEROOT/usr/bin/$NAME" --self-test) \
    | tee "$WORK/selftest.log"
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
