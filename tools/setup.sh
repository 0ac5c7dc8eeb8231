#!/usr/bin/env bash
# tools/setup.sh — development environment for sbm_ros on a machine WITHOUT a ROS 2 install.
#
# Idempotent: every step is skipped when its stamp matches, so a rerun takes about a second.
#   1. Debian packages (dpkg-query first; apt-get update/install only when something is missing).
#   2. ./.venv (python3.11) with tools/requirements-dev.txt: ROS 2 Jazzy as pip wheels, colcon,
#      the package's Python deps, pytest.      stamp: .venv/.sbm-stamp (hash of requirements)
#   3. `pip install -e .` of the checkout (when setup.py exists).
#                                               stamp: .venv/.sbm-stamp-editable
#   4. DEVELOPMENT-ONLY interface overlay: audio_common_msgs, vision_msgs, hri_msgs (ROS4HRI)
#      and tf2_msgs are not on the package registries.  Their .msg files live in
#      tools/dev_interfaces/<pkg>/msg/; package.xml and CMakeLists.txt are generated into
#      .dev/src/<pkg>/ and colcon builds them into .dev/install (merged prefix).  Nothing of
#      this is ever installed with sbm_ros itself; a robot uses the real
#      ros-<distro>-audio-common-msgs / -vision-msgs / -hri-msgs / -tf2-msgs.
#      tools/COLCON_IGNORE keeps colcon on a robot from discovering tools/.
#                                               stamp: .dev/install/.sbm-stamp
#   5. .dev/env.sh, to be sourced by a shell (tools/dev does that for you).
#
# Findings (verified on Debian 12 / Python 3.11, Jazzy wheels, 2026-11):
# * ros-wheels-bootstrapper installs a .pth file that runs at every interpreter start of the
#   venv: unless _ROS_WHEELS_BOOTSTRAP_COMPLETE is set, it os.execve()s the same interpreter
#   (same PID, same sys.orig_argv) with LD_LIBRARY_PATH += <venv>/lib and site-packages/ros_*.libs
#   (built from a set(), so the order of the entries is not preserved) and sets the guard.
#   Children inherit both, so `python -m sbm_ros.nodes.X` started via subprocess from a
#   bootstrapped process works.  env.sh computes the same LD_LIBRARY_PATH itself (globbing
#   ros_*.libs at *source* time, so it never goes stale after a pip install), prepends the
#   interface overlay's lib/, and sets the guard: no re-exec at all, a deterministic
#   LD_LIBRARY_PATH, and nodes started from any shell or subprocess work alike.
# * The wheels' exported CMake targets (share/*/cmake/export_*__rosidl_generator_pyExport.cmake)
#   name include dirs of the machine they were built on:
#     /opt/python/cp311-cp311/include/python3.11
#     /opt/python/cp311-cp311/lib/python3.11/site-packages/numpy/_core/include
#   CMake refuses non-existent INTERFACE_INCLUDE_DIRECTORIES.  We create those two paths as
#   symlinks (to this interpreter's include dir and the venv's numpy include dir), re-pointing
#   them on every build (they are only read at build time; several checkouts may share them).
#   Without write access to /opt (not root) we instead rewrite the two paths inside the venv's
#   copies of those .cmake files (set SBM_PATCH_CMAKE=1 to force that).
# * rclpy fails to import without ros-jazzy-rmw-fastrtps-cpp (librmw_fastrtps_cpp.so);
#   env.sh sets RMW_IMPLEMENTATION=rmw_fastrtps_cpp.
# * colcon (colcon-recursive-crawl) stops descending at a directory identified as a package
#   (one with package.xml/setup.py...), skips dot-directories (.venv, .dev) and any directory
#   holding COLCON_IGNORE.
#
# Environment knobs: SBM_PYTHON (interpreter, default python3.11), SBM_SKIP_APT=1,
# SBM_PATCH_CMAKE=1, SBM_QUIET=1 (only print when something is done).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
DEV="$ROOT/.dev"
PY="${SBM_PYTHON:-python3.11}"
PYVER=3.11
REQ="$ROOT/tools/requirements-dev.txt"
IFACE_SRC="$ROOT/tools/dev_interfaces"
# bump when the generated package.xml/CMakeLists.txt templates change (forces a rebuild)
GEN_VERSION=3

log() { echo "[sbm] $*" >&2; }
die() { echo "[sbm] ERROR: $*" >&2; exit 1; }
hash_stdin() { sha256sum | cut -c1-16; }
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }
# run the venv's python without the bootstrapper's re-exec (helper calls need no ROS libs)
vpy() { _ROS_WHEELS_BOOTSTRAP_COMPLETE=1 "$VENV/bin/python" "$@"; }

T0="$(now)"
DID_WORK=0
mkdir -p "$DEV/logs"
touch "$DEV/COLCON_IGNORE"

# one setup at a time per checkout (two `tools/dev test` in parallel must not race)
exec 9>"$DEV/setup.lock"
if ! flock -n 9; then
    log "another setup.sh is running in this checkout; waiting for it"
    flock 9
fi

# ---------------------------------------------------------------------------------------------
# 1. Debian packages
# ---------------------------------------------------------------------------------------------
APT_PKGS=(libportaudio2 espeak-ng ffmpeg sox alsa-utils libasound2-plugins
          cmake make g++ libc6-dev)
if ! command -v "$PY" >/dev/null 2>&1; then
    APT_PKGS+=(python3.11 python3.11-venv python3.11-dev)
fi

missing=()
for p in "${APT_PKGS[@]}"; do
    st="$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)"
    [[ "$st" == installed ]] || missing+=("$p")
done
if ((${#missing[@]})); then
    if [[ "${SBM_SKIP_APT:-0}" == 1 ]]; then
        log "SBM_SKIP_APT=1: not installing missing Debian packages: ${missing[*]}"
    else
        SUDO=()
        if [[ "$(id -u)" != 0 ]]; then
            if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
                SUDO=(sudo -n)
            else
                die "missing Debian packages: ${missing[*]}
      not root and no password-less sudo: run
        sudo apt-get update && sudo apt-get install -y ${missing[*]}
      then rerun (or set SBM_SKIP_APT=1 to go on without them)"
            fi
        fi
        log "installing Debian packages: ${missing[*]}"
        DID_WORK=1
        "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq \
            >"$DEV/logs/apt.log" 2>&1 || { cat "$DEV/logs/apt.log" >&2; die "apt-get update failed"; }
        "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
            --no-install-recommends "${missing[@]}" >>"$DEV/logs/apt.log" 2>&1 \
            || { tail -n 30 "$DEV/logs/apt.log" >&2; die "apt-get install failed (log: .dev/logs/apt.log)"; }
    fi
fi
command -v "$PY" >/dev/null 2>&1 || die "$PY not found (set SBM_PYTHON to a Python $PYVER interpreter)"
"$PY" -c "import sys; sys.exit(sys.version_info[:2] != (3, 11))" \
    || die "$PY is not Python $PYVER: the ROS 2 Jazzy wheels need CPython $PYVER (set SBM_PYTHON)"

# ---------------------------------------------------------------------------------------------
# 2. virtual environment
# ---------------------------------------------------------------------------------------------
if [[ -x "$VENV/bin/python" ]] && ! vpy -c "" >/dev/null 2>&1; then
    log ".venv is broken (interpreter moved?): recreating it"
    rm -rf "$VENV"
fi
if [[ ! -x "$VENV/bin/python" ]]; then
    log "creating .venv with $("$PY" -c 'import sys; print(sys.executable)')"
    DID_WORK=1
    "$PY" -m venv "$VENV"
fi
REQ_DATA="$ROOT/tools/requirements-data.txt"
REQ_HASH="$( { cat "$REQ" "$REQ_DATA" 2>/dev/null; vpy -VV; } | hash_stdin)"
if [[ "$(cat "$VENV/.sbm-stamp" 2>/dev/null || true)" != "$REQ_HASH" ]]; then
    log "installing Python requirements (tools/requirements-dev.txt; ~1 min the first time)"
    DID_WORK=1
    t="$(now)"
    if ! PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1 vpy -m pip install \
            -r "$REQ" >"$DEV/logs/pip.log" 2>&1; then
        grep -v "is ignored: it is neither" "$DEV/logs/pip.log" | tail -n 40 >&2
        die "pip install failed (full log: .dev/logs/pip.log)"
    fi
    if [[ -f "$REQ_DATA" ]] && ! PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1 vpy -m pip \
            install --no-deps -r "$REQ_DATA" >>"$DEV/logs/pip.log" 2>&1; then
        tail -n 20 "$DEV/logs/pip.log" >&2
        die "pip install --no-deps -r tools/requirements-data.txt failed (log: .dev/logs/pip.log)"
    fi
    echo "$REQ_HASH" >"$VENV/.sbm-stamp"
    rm -f "$VENV/.sbm-stamp-editable"
    log "Python requirements installed in $(elapsed "$t") s"
fi

# ---------------------------------------------------------------------------------------------
# 3. editable install of the package itself
# ---------------------------------------------------------------------------------------------
if [[ -f "$ROOT/setup.py" || -f "$ROOT/pyproject.toml" ]]; then
    ED_HASH="$( { echo "$REQ_HASH"; cd "$ROOT";
                  cat setup.py setup.cfg pyproject.toml package.xml 2>/dev/null || true; } | hash_stdin)"
    if [[ "$(cat "$VENV/.sbm-stamp-editable" 2>/dev/null || true)" != "$ED_HASH" ]]; then
        log "pip install -e . (sbm_ros, editable)"
        DID_WORK=1
        if ! PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1 vpy -m pip install \
                --no-build-isolation -e "$ROOT" >"$DEV/logs/pip-editable.log" 2>&1; then
            grep -v "is ignored: it is neither" "$DEV/logs/pip-editable.log" | tail -n 40 >&2
            die "pip install -e . failed (full log: .dev/logs/pip-editable.log)"
        fi
        echo "$ED_HASH" >"$VENV/.sbm-stamp-editable"
    fi
else
    log "WARNING: no setup.py in $ROOT yet: sbm_ros is not installed into .venv"
fi

# `pip install -e .` runs `setup.py develop`, which installs no data_files: give sbm_ros an
# ament prefix of symlinks into the checkout (like colcon --symlink-install) so that
# ament_index_python.get_package_share_directory('sbm_ros') finds package.xml, config/, launch/.
# config/ and launch/ are REAL directories holding one symlink per file: `ros2 launch sbm_ros
# X.launch.py` looks the file up with os.walk() over the share directory, which does not follow
# a symlinked directory ("file 'X.launch.py' was not found in the share directory").
# Links of files removed from the checkout are deleted, so a rerun mirrors it exactly.
link_tree() {   # link_tree SRC_DIR DST_DIR: DST_DIR = real dirs + a symlink per file of SRC_DIR
    local src="$1" dst="$2" rel
    [[ -L "$dst" ]] && rm -f "$dst"     # a directory symlink made by an older setup.sh
    mkdir -p "$dst"
    find "$dst" -mindepth 1 ! -type d -print0 | while IFS= read -r -d '' rel; do
        rel="${rel#"$dst"/}"
        [[ -f "$src/$rel" ]] || rm -f "$dst/$rel"
    done
    find "$dst" -mindepth 1 -depth -type d -empty -delete
    ( cd "$src" && find . -path '*/__pycache__' -prune -o -type f -print0 ) \
        | while IFS= read -r -d '' rel; do
            rel="${rel#./}"
            mkdir -p "$(dirname "$dst/$rel")"
            ln -sfn "$src/$rel" "$dst/$rel"
        done
}
SBM_PREFIX="$DEV/sbm_prefix"
mkdir -p "$SBM_PREFIX/share/ament_index/resource_index/packages" "$SBM_PREFIX/share/sbm_ros" \
         "$SBM_PREFIX/lib"
: >"$SBM_PREFIX/share/ament_index/resource_index/packages/sbm_ros"
for item in package.xml README.md; do
    if [[ -e "$ROOT/$item" ]]; then
        ln -sfn "$ROOT/$item" "$SBM_PREFIX/share/sbm_ros/$item"
    else
        rm -f "$SBM_PREFIX/share/sbm_ros/$item"
    fi
done
for item in config launch; do
    if [[ -d "$ROOT/$item" ]]; then
        link_tree "$ROOT/$item" "$SBM_PREFIX/share/sbm_ros/$item"
    else
        rm -rf "$SBM_PREFIX/share/sbm_ros/$item"
    fi
done
# console scripts land in .venv/lib/sbm_ros (setup.cfg [develop] script_dir), where ros2 run looks
ln -sfn "$VENV/lib/sbm_ros" "$SBM_PREFIX/lib/sbm_ros"

# ---------------------------------------------------------------------------------------------
# 4. development-only interface overlay (.dev/install)
# ---------------------------------------------------------------------------------------------
# Make the build-machine paths named by the wheels' CMake exports exist (see header).
fix_wheel_cmake_paths() {
    local base=/opt/python/cp311-cp311
    local want_py want_np
    want_py="$(vpy -c 'import sysconfig; print(sysconfig.get_paths()["include"])')"
    want_np="$(vpy -c 'import numpy; print(numpy.get_include())')"
    [[ -f "$want_py/Python.h" ]] || die "no Python.h in $want_py (install python3.11-dev)"
    local -a pairs=("$base/include/python$PYVER" "$want_py"
                    "$base/lib/python$PYVER/site-packages/numpy/_core/include" "$want_np")
    local use_links=1
    [[ "${SBM_PATCH_CMAKE:-0}" == 1 ]] && use_links=0
    if ((use_links)); then
        local i link target
        for ((i = 0; i < ${#pairs[@]}; i += 2)); do
            link="${pairs[i]}"; target="${pairs[i+1]}"
            if [[ -d "$link" && ! -L "$link" ]]; then
                continue  # a real directory (e.g. a manylinux-style machine): leave it alone
            fi
            if ! { mkdir -p "$(dirname "$link")" && ln -sfn "$target" "$link"; } 2>/dev/null; then
                log "cannot create $link (no write access to /opt): patching the venv's CMake files instead"
                use_links=0
                break
            fi
        done
    fi
    if ((!use_links)); then
        local f
        grep -rl --include='*.cmake' "$base" "$VENV/share" 2>/dev/null | while read -r f; do
            sed -i -e "s#$base/include/python$PYVER#$want_py#g" \
                   -e "s#$base/lib/python$PYVER/site-packages/numpy/_core/include#$want_np#g" "$f"
        done
    fi
}

# Write package.xml + CMakeLists.txt for one interface package into .dev/src/<pkg>.
generate_interface_pkg() {
    local pkg="$1" src="$IFACE_SRC/$1" dst="$DEV/src/$1"
    mkdir -p "$dst/msg"
    cp "$src"/msg/*.msg "$dst/msg/"
    # dependencies = packages named in "pkg/Type" field types, other than this one
    local deps
    deps="$(sed -e 's/#.*//' "$src"/msg/*.msg | awk 'NF >= 2 { print $1 }' \
            | sed -n 's#^\([a-z][a-z0-9_]*\)/.*#\1#p' | sort -u | grep -vx "$pkg" || true)"
    local msgs
    msgs="$(cd "$dst" && ls msg/*.msg | LC_ALL=C sort | sed 's/.*/  "&"/')"
    {
        echo '<?xml version="1.0"?>'
        echo '<package format="3">'
        echo "  <name>$pkg</name>"
        echo '  <version>0.0.0</version>'
        echo "  <description>DEVELOPMENT-ONLY stand-in for $pkg, generated by sbm_ros tools/setup.sh."
        echo '    Never install it on a robot: use the released package there.</description>'
        echo '  <maintainer email="sbm-ros-dev@example.com">sbm_ros developers</maintainer>'
        echo '  <license>BSD-3-Clause</license>'
        echo '  <buildtool_depend>ament_cmake</buildtool_depend>'
        echo '  <buildtool_depend>rosidl_default_generators</buildtool_depend>'
        for d in $deps; do echo "  <depend>$d</depend>"; done
        echo '  <exec_depend>rosidl_default_runtime</exec_depend>'
        echo '  <member_of_group>rosidl_interface_packages</member_of_group>'
        echo '  <export><build_type>ament_cmake</build_type></export>'
        echo '</package>'
    } >"$dst/package.xml"
    {
        echo "# generated by sbm_ros tools/setup.sh (development-only overlay)"
        echo 'cmake_minimum_required(VERSION 3.8)'
        echo "project($pkg)"
        echo 'find_package(ament_cmake REQUIRED)'
        echo 'find_package(rosidl_default_generators REQUIRED)'
        for d in $deps; do echo "find_package($d REQUIRED)"; done
        echo 'rosidl_generate_interfaces(${PROJECT_NAME}'
        echo "$msgs"
        if [[ -n "$deps" ]]; then echo "  DEPENDENCIES" $deps; fi
        echo ')'
        echo 'ament_export_dependencies(rosidl_default_runtime)'
        echo 'ament_package()'
    } >"$dst/CMakeLists.txt"
}

IFACE_HASH="$( { echo "gen=$GEN_VERSION req=$REQ_HASH";
                 cd "$IFACE_SRC" && find . -name '*.msg' | LC_ALL=C sort | xargs sha256sum; } | hash_stdin)"
if [[ "$(cat "$DEV/install/.sbm-stamp" 2>/dev/null || true)" != "$IFACE_HASH" ]]; then
    log "building development-only interfaces ($(cd "$IFACE_SRC" && ls -d */ | tr -d / | xargs)) into .dev/install"
    DID_WORK=1
    t="$(now)"
    fix_wheel_cmake_paths
    rm -rf "$DEV/src" "$DEV/build" "$DEV/install" "$DEV/log"
    for d in "$IFACE_SRC"/*/; do
        [[ -d "$d/msg" ]] && generate_interface_pkg "$(basename "$d")"
    done
    if ! ( cd "$DEV" &&
           env AMENT_PREFIX_PATH="$VENV" CMAKE_PREFIX_PATH="$VENV" PATH="$VENV/bin:$PATH" \
               PYTHONPATH="" COLCON_HOME="$DEV/colcon_home" \
               "$VENV/bin/colcon" --log-base "$DEV/log" build \
               --base-paths "$DEV/src" --build-base "$DEV/build" --install-base "$DEV/install" \
               --merge-install --event-handlers console_direct- console_stderr- \
               --cmake-args -DPython3_EXECUTABLE="$VENV/bin/python" -DBUILD_TESTING=OFF \
                            -DCMAKE_BUILD_TYPE=Release
         ) >"$DEV/logs/colcon.log" 2>&1; then
        tail -n 60 "$DEV/logs/colcon.log" >&2
        die "colcon build of the interface overlay failed (log: .dev/logs/colcon.log, .dev/log/)"
    fi
    echo "$IFACE_HASH" >"$DEV/install/.sbm-stamp"
    log "interfaces built in $(elapsed "$t") s"
fi

# ---------------------------------------------------------------------------------------------
# 5. .dev/env.sh
# ---------------------------------------------------------------------------------------------
ENV_TMP="$(mktemp "$DEV/env.sh.XXXXXX")"
cat >"$ENV_TMP" <<EOF
# generated by tools/setup.sh (v$GEN_VERSION) — source it:  source "$DEV/env.sh"
# Development environment of sbm_ros on a machine without ROS 2 (pip-wheel ROS 2 Jazzy).
_sbm_root="$ROOT"
_sbm_venv="\$_sbm_root/.venv"
_sbm_overlay="\$_sbm_root/.dev/install"
if [ -n "\${AMENT_PREFIX_PATH:-}" ] && [ -z "\${_SBM_ENV_SOURCED:-}" ]; then
    echo "[sbm] note: replacing AMENT_PREFIX_PATH=\$AMENT_PREFIX_PATH (do not mix with a real ROS install)" >&2
fi
. "\$_sbm_venv/bin/activate"
# sbm_ros itself (symlinks into the checkout), the dev-only interface overlay, the wheels
export AMENT_PREFIX_PATH="\$_sbm_root/.dev/sbm_prefix:\$_sbm_overlay:\$_sbm_venv"
export CMAKE_PREFIX_PATH="\$_sbm_overlay:\$_sbm_venv"
_sbm_pp="\$_sbm_overlay/lib/python$PYVER/site-packages"
case ":\${PYTHONPATH:-}:" in *":\$_sbm_pp:"*) ;; *) export PYTHONPATH="\$_sbm_pp\${PYTHONPATH:+:\$PYTHONPATH}";; esac
# what ros-wheels-bootstrapper would add by re-executing python, computed here once (see setup.sh)
_sbm_ld="\$_sbm_overlay/lib:\$_sbm_venv/lib"
for _sbm_d in "\$_sbm_venv"/lib/python$PYVER/site-packages/ros_*.libs; do
    [ -d "\$_sbm_d" ] && _sbm_ld="\$_sbm_ld:\$_sbm_d"
done
case ":\${LD_LIBRARY_PATH:-}:" in
    *":\$_sbm_overlay/lib:"*) ;;
    *) export LD_LIBRARY_PATH="\$_sbm_ld\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}";;
esac
export _ROS_WHEELS_BOOTSTRAP_COMPLETE=1
# sbm_ros console scripts (sbm-train, nodes): setup.cfg puts them in lib/sbm_ros, as ros2 run expects
case ":\$PATH:" in *":\$_sbm_venv/lib/sbm_ros:"*) ;; *) export PATH="\$PATH:\$_sbm_venv/lib/sbm_ros";; esac
export RMW_IMPLEMENTATION="\${RMW_IMPLEMENTATION:-rmw_fastrtps_cpp}"
# per-checkout default domain (1..100) so a CI clone and a dev checkout do not talk to each other
export ROS_DOMAIN_ID="\${ROS_DOMAIN_ID:-$(( $(printf '%s' "$ROOT" | cksum | cut -d' ' -f1) % 100 + 1 ))}"
# keep DDS discovery on this machine (Jazzy+; older distros read ROS_LOCALHOST_ONLY)
export ROS_AUTOMATIC_DISCOVERY_RANGE="\${ROS_AUTOMATIC_DISCOVERY_RANGE:-LOCALHOST}"
export ROS_LOG_DIR="\${ROS_LOG_DIR:-\$_sbm_root/.dev/ros_log}"
export _SBM_ENV_SOURCED=1
unset _sbm_root _sbm_venv _sbm_overlay _sbm_pp _sbm_ld _sbm_d
EOF
if cmp -s "$ENV_TMP" "$DEV/env.sh"; then
    rm -f "$ENV_TMP"
else
    mv "$ENV_TMP" "$DEV/env.sh"
    DID_WORK=1
fi

if ((DID_WORK)); then
    log "setup done in $(elapsed "$T0") s — environment: source .dev/env.sh"
elif [[ "${SBM_QUIET:-0}" != 1 ]]; then
    log "environment up to date ($(elapsed "$T0") s)"
fi
