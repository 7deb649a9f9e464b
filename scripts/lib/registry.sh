# shellcheck shell=bash
# scripts/lib/registry.sh — start and stop a private docker-registry.
#
# A bash library, to be sourced (`. scripts/lib/registry.sh`), not run.
# crabbox's scripts (fixtures, bench, local-registry) need a real registry
# on this machine: Debian's `docker-registry` (the reference implementation
# of the registry HTTP API v2, github.com/distribution/distribution).
#
#   registry_start STORAGE_DIR [readonly]
#       Serves STORAGE_DIR (a registry filesystem storage root, created if
#       missing) on 127.0.0.1 only. The port is $REGISTRY_PORT if the caller
#       set it, otherwise a free one. With `readonly`, pushes are refused and
#       nothing in STORAGE_DIR is ever changed. Returns once /v2/ answers,
#       with these exported:
#           REGISTRY_PID    the registry's process id
#           REGISTRY_PORT   its port
#           REGISTRY_ADDR   127.0.0.1:PORT  (what `pull` and skopeo are given)
#       On failure: prints why on stderr and returns 1 (it never exits: the
#       caller's shell decides what a failure means).
#
#   registry_stop
#       Stops the registry started by registry_start (by its PID, nothing
#       else), waits for it to go, and removes its temporary config.
#
#   registry_port_listening PORT
#       True when something on this machine already listens on TCP PORT.
#
# One registry per shell at a time. The registry runs under
# `setpriv --pdeathsig TERM`: if the shell that started it dies, even by
# SIGKILL with no trap run, the kernel stops the registry too, so no
# forgotten registry keeps a port. Needs only bash, setpriv (util-linux)
# and docker-registry: no curl, no python.

REGISTRY_PID=${REGISTRY_PID:-}
# The temporary directory holding the config and the registry's log.
_REGISTRY_TMP=""
# True when registry_start chose the port (so registry_stop forgets it).
_REGISTRY_PORT_CHOSEN=""

# _registry_port_in_use PORT [listening]: true when a TCP socket on this
# machine uses PORT locally (with `listening`: a socket listening there).
# /proc/net/tcp{,6} list them: the local address is HEXIP:HEXPORT in the
# second column, the state the fourth (0A is LISTEN).
_registry_port_in_use() {
    local hex
    printf -v hex '%04X' "$1"
    awk -v p=":$hex" -v listening="${2:-}" '
        FNR > 1 && substr($2, length($2) - 4) == p && (listening == "" || $4 == "0A") { found = 1 }
        END { exit !found }' /proc/net/tcp /proc/net/tcp6 2>/dev/null
}

registry_port_listening() {
    _registry_port_in_use "$1" listening
}

# _registry_free_port: prints a port nobody uses. Taken below the kernel's
# range for outgoing connections (32768 and up by default), so that a
# connection made meanwhile is unlikely to take it. Someone may still grab
# it before the registry binds it; registry_start then tries another.
_registry_free_port() {
    local port attempt
    for attempt in $(seq 50); do
        port=$((20000 + RANDOM % 12000))
        if ! _registry_port_in_use "$port"; then
            echo "$port"
            return 0
        fi
    done
    return 1
}

# _registry_answers PORT: true when a Docker registry answers GET /v2/ on
# 127.0.0.1:PORT. Speaks HTTP/1.0 by hand over bash's /dev/tcp (curl may
# not be installed); a v2 registry always sends the header
# `Docker-Distribution-Api-Version: registry/2.0`, even when it asks for a
# login (401), so that header is what we look for.
_registry_answers() {
    (
        exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
        printf 'GET /v2/ HTTP/1.0\r\nHost: 127.0.0.1:%s\r\n\r\n' "$1" >&3
        while IFS= read -r -t 2 line <&3; do
            line=${line%$'\r'}
            [[ -z $line ]] && break # end of the headers
            shopt -s nocasematch
            [[ $line == 'docker-distribution-api-version: registry/2.0' ]] && exit 0
            shopt -u nocasematch
        done
        exit 1
    ) 2>/dev/null
}

# _registry_write_config FILE STORAGE_DIR PORT READONLY
_registry_write_config() {
    local file=$1 storage=$2 port=$3 readonly=$4
    {
        echo 'version: 0.1'
        echo 'log:'
        echo '  level: error'
        echo '  accesslog:'
        echo '    disabled: true'
        echo 'storage:'
        echo '  filesystem:'
        echo "    rootdirectory: $storage"
        if [[ -n $readonly ]]; then
            # readonly: refuse pushes. uploadpurging off: the registry would
            # otherwise delete old unfinished uploads from the storage now
            # and then, which is a write too.
            echo '  maintenance:'
            echo '    readonly:'
            echo '      enabled: true'
            echo '    uploadpurging:'
            echo '      enabled: false'
        fi
        echo 'http:'
        # 127.0.0.1 only: never reachable from another machine.
        echo "  addr: 127.0.0.1:$port"
    } >"$file"
}

# _registry_launch CONFIG LOG: starts the registry in the background and
# sets REGISTRY_PID.
_registry_launch() {
    local config=$1 log=$2
    (
        # Close every file descriptor the caller had open beyond 0-2 (a lock
        # it holds, a pipe it reads): a long-lived registry holding them
        # would keep the lock taken or the pipe open after the caller ends.
        # (bash marks its own fd 255 close-on-exec.)
        for fd in "/proc/$BASHPID/fd/"*; do
            fd=${fd##*/}
            if ((fd > 2 && fd != 255)); then eval "exec $fd>&-"; fi
        done
        # exec: the registry takes over this process, so its PID is $! and
        # its parent is the caller's shell (which --pdeathsig watches).
        exec setpriv --pdeathsig TERM docker-registry serve "$config"
    ) </dev/null >"$log" 2>&1 &
    REGISTRY_PID=$!
}

# _registry_wait_ready PORT: waits up to 10 s for our registry to answer.
# Fails at once if it exited (for example: the port was taken).
_registry_wait_ready() {
    local port=$1 _
    for _ in $(seq 100); do
        kill -0 "$REGISTRY_PID" 2>/dev/null || return 1
        # Check it is still alive after it answered: if it died, whoever
        # answered is another server on that port.
        if _registry_answers "$port" && kill -0 "$REGISTRY_PID" 2>/dev/null; then
            return 0
        fi
        sleep 0.1
    done
    return 1
}

registry_start() {
    local storage=${1:-} readonly=""
    case "${2:-}" in
        "") ;;
        readonly) readonly=1 ;;
        *) echo "registry_start: unknown option '$2' (expected: readonly)" >&2; return 1 ;;
    esac
    if [[ -z $storage ]]; then
        echo "usage: registry_start STORAGE_DIR [readonly]" >&2
        return 1
    fi
    if [[ -n $REGISTRY_PID ]] && kill -0 "$REGISTRY_PID" 2>/dev/null; then
        echo "registry_start: a registry (pid $REGISTRY_PID) is already running; registry_stop it first" >&2
        return 1
    fi
    local tool
    for tool in docker-registry setpriv; do
        if ! command -v "$tool" >/dev/null 2>&1; then
            echo "registry_start: '$tool' not found; install the Debian packages docker-registry and util-linux" >&2
            return 1
        fi
    done
    storage=$(realpath -m -- "$storage")
    if [[ -n $readonly && ! -d $storage ]]; then
        echo "registry_start: $storage does not exist (nothing to serve read-only)" >&2
        return 1
    fi
    mkdir -p -- "$storage" || return 1

    _REGISTRY_TMP=$(mktemp -d "${TMPDIR:-/tmp}/crabbox-registry.XXXXXX") || return 1
    local config=$_REGISTRY_TMP/config.yml log=$_REGISTRY_TMP/registry.log

    # A port the caller chose is tried once (and "busy" is their problem to
    # solve); a port we chose may be grabbed by someone else before the
    # registry binds it, so then we try another one.
    local attempts=5 attempt port
    if [[ -n ${REGISTRY_PORT:-} ]]; then
        _REGISTRY_PORT_CHOSEN=""
        attempts=1
        if registry_port_listening "$REGISTRY_PORT"; then
            echo "registry_start: port $REGISTRY_PORT is already in use on this machine — choose another port" >&2
            _registry_cleanup_tmp
            return 1
        fi
    else
        _REGISTRY_PORT_CHOSEN=1
    fi
    for attempt in $(seq "$attempts"); do
        if [[ -n $_REGISTRY_PORT_CHOSEN ]]; then
            if ! port=$(_registry_free_port); then
                echo "registry_start: found no free port" >&2
                break
            fi
        else
            port=$REGISTRY_PORT
        fi
        _registry_write_config "$config" "$storage" "$port" "$readonly"
        _registry_launch "$config" "$log"
        if _registry_wait_ready "$port"; then
            export REGISTRY_PID REGISTRY_PORT=$port REGISTRY_ADDR=127.0.0.1:$port
            return 0
        fi
        echo "registry_start: docker-registry did not start on 127.0.0.1:$port (attempt $attempt of $attempts):" >&2
        sed 's/^/    /' "$log" >&2
        _registry_kill
    done
    _registry_cleanup_tmp
    return 1
}

# Stops the process REGISTRY_PID, and only it. `wait` works when it is our
# child; otherwise (a registry started by another shell) we poll until it
# is gone.
_registry_kill() {
    [[ -n $REGISTRY_PID ]] || return 0
    kill "$REGISTRY_PID" 2>/dev/null || true
    wait "$REGISTRY_PID" 2>/dev/null || true
    local _
    for _ in $(seq 50); do
        kill -0 "$REGISTRY_PID" 2>/dev/null || break
        sleep 0.1
    done
    REGISTRY_PID=""
}

_registry_cleanup_tmp() {
    if [[ -n $_REGISTRY_TMP ]]; then
        rm -rf -- "$_REGISTRY_TMP"
        _REGISTRY_TMP=""
    fi
}

registry_stop() {
    _registry_kill
    _registry_cleanup_tmp
    unset REGISTRY_ADDR
    # Forget a port we chose, so the next registry_start picks a free one;
    # keep one the caller set.
    if [[ -n $_REGISTRY_PORT_CHOSEN ]]; then
        unset REGISTRY_PORT
        _REGISTRY_PORT_CHOSEN=""
    fi
    return 0
}
