#!/usr/bin/env bash
# Build Guidance Studio's installers on the current OS (see packaging/README.md).
#
#   packaging/build.sh              # PyInstaller bundle, then the OS's packages
#   packaging/build.sh --reuse      # skip every step whose output is newer than its inputs
#
# Every OS: dist/guidance-studio/ (one-folder bundle, `guidance-studio` inside).
# Linux:    dist/guidance-studio-<version>-linux-<arch>.tar.gz and dist/guidance-studio_<version>_<debarch>.deb
# macOS:    dist/Guidance Studio.app and dist/guidance-studio-<version>-macos.dmg (hdiutil)
# Windows:  (Git Bash) dist/guidance-studio-<version>-setup.exe when Inno Setup's iscc is on PATH
#
# Needs the app's dependencies plus PyInstaller: pip install -e ".[build]". The bundle contains the
# torch of the build environment: CPU torch unless a CUDA wheel was installed first.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PYTHON="${PYTHON:-python3}"
NAME=guidance-studio
VERSION="$("$PYTHON" -c 'import tomllib; print(tomllib.load(open("pyproject.toml", "rb"))["project"]["version"])')"
BUNDLE="dist/$NAME"
REUSE=0
for arg in "$@"; do
    case "$arg" in
        --reuse) REUSE=1 ;;
        -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
        *) echo "build.sh: unknown option '$arg' (use --reuse or --help)" >&2; exit 2 ;;
    esac
done

say() { printf '\n== %s\n' "$*"; }

# With --reuse: true when $1 exists and is newer than the bundle it was made from.
reusable() {
    [[ $REUSE == 1 && -f "$1" && "$1" -nt "$BUNDLE/_internal" && "$1" -nt packaging/build.sh \
       && "$1" -nt packaging/linux/$NAME.desktop ]]
}

bundle_is_fresh() {
    [[ -x "$BUNDLE/$NAME" || -x "$BUNDLE/$NAME.exe" ]] || return 1
    # Fresh when no source, resource or recipe file is newer than the bundle's executable.
    local newer
    newer="$(find core desktop_app resources packaging/guidance-studio.spec packaging/launcher.py pyproject.toml \
             -newer "$BUNDLE/_internal" -type f ! -name '*.pyc' -print -quit)"
    [[ -z "$newer" ]]
}

build_bundle() {
    if [[ $REUSE == 1 ]] && bundle_is_fresh; then
        say "reusing $BUNDLE (nothing changed since it was built)"
        return
    fi
    "$PYTHON" -m PyInstaller --version >/dev/null 2>&1 || {
        echo "PyInstaller is missing: pip install -e '.[build]'" >&2; exit 1; }
    say "PyInstaller bundle -> $BUNDLE"
    local start=$SECONDS
    "$PYTHON" -m PyInstaller --noconfirm --log-level WARN --distpath dist --workpath build/pyinstaller \
        packaging/guidance-studio.spec
    touch "$BUNDLE/_internal"
    echo "bundle built in $((SECONDS - start)) s, $(du -sh "$BUNDLE" | cut -f1)"
}

linux_tarball() {
    local arch out
    arch="$(uname -m)"
    out="dist/$NAME-$VERSION-linux-$arch.tar.gz"
    if reusable "$out"; then say "reusing $out"; return; fi
    say "tarball -> $out"
    # One top folder, guidance-studio/, with the executable, the menu entry and the icon beside it.
    cp packaging/linux/$NAME.desktop "$BUNDLE/$NAME.desktop"
    cp resources/icons/app-256.png "$BUNDLE/$NAME.png"
    tar -C dist --owner=0 --group=0 -czf "$out" "$NAME"
    rm "$BUNDLE/$NAME.desktop" "$BUNDLE/$NAME.png"
    echo "$(du -h "$out" | cut -f1)  $out"
}

# Depends and Recommends come from what the bundle really loads from the OS: the package owning every
# system library its executables and libraries resolve outside it (packaging/linux/syslibs.sh, which
# packaging/smoke.sh checks with), so any allowed PySide6 or torch gives a correct package. Optional Qt
# plugins (GTK theme, Wayland) give Recommends. libc6 must be at least the build machine's glibc (2.36
# on Debian 12): build on an older distro for older targets.
. packaging/linux/syslibs.sh

deb_relations() {  # sets DEB_DEPENDS and DEB_RECOMMENDS ("a, b, c") for the bundle in $BUNDLE
    local internal="$BUNDLE/_internal" elfs required optional glibc missing
    elfs="$(find "$ROOT/$BUNDLE" -type f \( -name '*.so*' -o -name "$NAME" \) | sort)"
    missing="$( (grep -Ev "$SYSLIBS_OPTIONAL_RE" <<<"$elfs" || true) \
        | xargs -r env LD_LIBRARY_PATH="$ROOT/$internal" ldd 2>/dev/null | awk '/not found/ {print $1}' | sort -u)"
    if [[ -n "$missing" ]]; then
        echo "build.sh: the bundle needs libraries this build machine lacks: $(tr '\n' ' ' <<<"$missing")" >&2
        exit 1
    fi
    required="$( (grep -Ev "$SYSLIBS_OPTIONAL_RE" <<<"$elfs" || true) | syslibs_packages "$internal")"
    optional="$( (grep -E "$SYSLIBS_OPTIONAL_RE" <<<"$elfs" || true) | syslibs_packages "$internal" \
        | grep -vxF -f <(printf '%s\n' "$required") || true)"
    glibc="$(ldd --version | head -1 | grep -oE '[0-9]+\.[0-9]+$')"
    DEB_DEPENDS="$(sed "s/^libc6\$/libc6 (>= $glibc)/" <<<"$required" | paste -sd, | sed 's/,/, /g')"
    DEB_RECOMMENDS="$(paste -sd, <<<"$optional" | sed 's/,/, /g')"
}

linux_deb() {
    local debarch stage out
    debarch="$(dpkg --print-architecture)"
    stage="build/deb/${NAME}_${VERSION}_${debarch}"
    out="dist/${NAME}_${VERSION}_${debarch}.deb"
    if reusable "$out"; then say "reusing $out"; return; fi
    say "Debian package -> $out"
    deb_relations
    echo "Depends: $DEB_DEPENDS"
    echo "Recommends: ${DEB_RECOMMENDS:-(none)}"
    rm -rf "$stage"
    mkdir -p "$stage/DEBIAN" "$stage/opt" "$stage/usr/bin" "$stage/usr/share/applications" \
             "$stage/usr/share/doc/$NAME" "$stage/usr/share/icons/hicolor/scalable/apps"
    cp -a "$BUNDLE" "$stage/opt/$NAME"
    # A relative link, so the same tree also runs when unpacked under another root (dpkg -x).
    ln -s "../../opt/$NAME/$NAME" "$stage/usr/bin/$NAME"
    install -m 644 packaging/linux/$NAME.desktop "$stage/usr/share/applications/$NAME.desktop"
    local png size
    for png in resources/icons/app-[0-9]*.png; do
        size="$(basename "$png" .png)"; size="${size#app-}"
        install -D -m 644 "$png" "$stage/usr/share/icons/hicolor/${size}x${size}/apps/$NAME.png"
    done
    install -m 644 resources/icons/app.svg "$stage/usr/share/icons/hicolor/scalable/apps/$NAME.svg"
    printf 'Guidance Studio %s\nLicence: MIT. Bundles Python, PyTorch, Qt for Python (LGPLv3), NumPy,\nPillow, pyqtgraph, qasync, safetensors and platformdirs under their own licences.\n' \
        "$VERSION" > "$stage/usr/share/doc/$NAME/copyright"
    local size_kb
    size_kb="$(du -sk --exclude=DEBIAN "$stage" | cut -f1)"
    cat > "$stage/DEBIAN/control" <<EOF
Package: $NAME
Version: $VERSION
Section: science
Priority: optional
Architecture: $debarch
Maintainer: Guidance Studio developers <guidance-studio@users.noreply.github.com>
Installed-Size: $size_kb
Depends: $DEB_DEPENDS
${DEB_RECOMMENDS:+Recommends: $DEB_RECOMMENDS
}Description: watch guided diffusion sample, step by step
 A desktop app that shows how a diffusion model turns noise into an image
 and how classifier guidance and classifier-free guidance steer it. It runs
 the built-in models on the CPU (or a CUDA GPU in CUDA builds), with no
 download, and saves, compares and sweeps the results.
EOF
    chmod -R u+rwX,go+rX,go-w "$stage"
    # zstd -9: ~200 MB in seconds. DEB_COMPRESS="-Zxz" gives ~160 MB but takes ~15 minutes here.
    # (Debian 12 / Ubuntu 21.10 and later read zstd packages.)
    # shellcheck disable=SC2086
    dpkg-deb --root-owner-group ${DEB_COMPRESS:--Zzstd -z9} --build "$stage" "$out" >/dev/null
    echo "$(du -h "$out" | cut -f1)  $out"
}

macos_dmg() {
    local out="dist/$NAME-$VERSION-macos.dmg"
    say "disk image -> $out"
    rm -f "$out"
    hdiutil create -volname "Guidance Studio" -srcfolder "dist/Guidance Studio.app" -ov -format UDZO "$out"
}

windows_installer() {
    if command -v iscc >/dev/null 2>&1; then
        say "Inno Setup installer"
        iscc "/DAppVersion=$VERSION" packaging/windows/guidance-studio.iss
    else
        echo "iscc (Inno Setup 6) is not on PATH: the bundle is in $BUNDLE; see packaging/README.md" >&2
    fi
}

START=$SECONDS
build_bundle
case "$(uname -s)" in
    Linux) linux_tarball; linux_deb ;;
    Darwin) macos_dmg ;;
    MINGW*|MSYS*|CYGWIN*) windows_installer ;;
    *) echo "No installer recipe for $(uname -s); the bundle is in $BUNDLE" >&2 ;;
esac
say "done in $((SECONDS - START)) s"
