# shellcheck shell=bash
# Throw-away Dovecot (IMAP + POP3, plain/STARTTLS and implicit TLS) for the
# mailbox protocol tests. Source this file, then:
#
#   dovecot_start DIR    # idempotent: (re)uses DIR, exports INMAIL_TEST_* vars
#   dovecot_restart DIR  # stop + start on the same ports (live sessions drop)
#   dovecot_stop DIR
#
# Everything lives under DIR (config, CA, logs, mail homes); /etc/dovecot is
# never read or written. Must run as root: Dovecot needs it to switch to the
# `dovecot`/`dovenull` users, and the package may have to be installed.
#
# Accounts: bounces1 .. bounces$DOVECOT_TEST_USERS (default 12), all with the
# password in $INMAIL_TEST_MAIL_PASSWORD, mail in DIR/home/<user>/Maildir.
# Tests take one account each so they can run in parallel without sharing
# mailboxes. INMAIL_TEST_MAIL_USER / INMAIL_TEST_MAILDIR name the first one.

# shellcheck source=scripts/lib/apt.sh
source "$(dirname "${BASH_SOURCE[0]}")/apt.sh"

DOVECOT_TEST_USERS="${DOVECOT_TEST_USERS:-12}"
# Spaces, quotes and a backslash on purpose: clients must quote it correctly.
DOVECOT_TEST_PASSWORD='B0unce pass "q" \ x'

_dovecot_log() { echo "dovecot.sh: $*" >&2; }

_dovecot_ensure_installed() {
    if [[ -x /usr/sbin/dovecot ]] && command -v openssl >/dev/null; then
        return 0
    fi
    _dovecot_log "installing dovecot-imapd dovecot-pop3d openssl"
    apt_install dovecot-imapd dovecot-pop3d openssl
}

# True when something accepts TCP connections on 127.0.0.1:$1.
_dovecot_port_open() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

_dovecot_free_port() {
    local port tries=0
    while ((tries < 200)); do
        port=$((20000 + RANDOM % 40000))
        tries=$((tries + 1))
        if ! _dovecot_port_open "$port" && ! grep -qx "$port" "$1" 2>/dev/null; then
            echo "$port"
            return 0
        fi
    done
    _dovecot_log "no free port found"
    return 1
}

# Ports are chosen once per DIR and kept while free, so a restart keeps
# client endpoints valid; called only while our Dovecot is not running.
_dovecot_ports() {
    local dir=$1 name port reuse=1
    if [[ -s "$dir/ports" ]]; then
        while read -r port; do
            if _dovecot_port_open "$port"; then reuse=0; fi
        done <"$dir/ports"
        ((reuse)) && return 0
        _dovecot_log "a saved port is taken by another program; choosing new ports"
    fi
    : >"$dir/ports.tmp"
    for name in imap imaps pop3 pop3s; do
        _dovecot_free_port "$dir/ports.tmp" >>"$dir/ports.tmp"
    done
    mv "$dir/ports.tmp" "$dir/ports"
}

_dovecot_port() {
    local index
    case $2 in
    imap) index=1 ;; imaps) index=2 ;; pop3) index=3 ;; pop3s) index=4 ;;
    esac
    sed -n "${index}p" "$1/ports"
}

_dovecot_certs() {
    local dir=$1
    if [[ -s "$dir/ca.pem" && -s "$dir/server.pem" && -s "$dir/server.key" ]]; then
        return 0
    fi
    local tmp="$dir/certs.tmp"
    rm -rf "$tmp" && mkdir -p "$tmp"
    openssl req -x509 -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
        -keyout "$tmp/ca.key" -out "$tmp/ca.pem" -days 365 -subj "/CN=inmail test CA" \
        -addext "basicConstraints=critical,CA:TRUE" \
        -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
    openssl req -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
        -keyout "$tmp/server.key" -out "$tmp/server.csr" -subj "/CN=localhost" 2>/dev/null
    cat >"$tmp/server.ext" <<EXT
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=DNS:localhost,IP:127.0.0.1
EXT
    openssl x509 -req -in "$tmp/server.csr" -CA "$tmp/ca.pem" -CAkey "$tmp/ca.key" \
        -CAcreateserial -days 365 -extfile "$tmp/server.ext" -out "$tmp/server.pem" 2>/dev/null
    chmod 600 "$tmp/ca.key" "$tmp/server.key"
    mv "$tmp/ca.pem" "$tmp/ca.key" "$tmp/server.pem" "$tmp/server.key" "$dir/"
    rm -rf "$tmp"
}

_dovecot_users() {
    local dir=$1 uid gid i user home
    uid=$(id -u dovecot)
    gid=$(id -g dovecot)
    : >"$dir/users.tmp"
    for ((i = 1; i <= DOVECOT_TEST_USERS; i++)); do
        user="bounces$i"
        home="$dir/home/$user"
        mkdir -p "$home/Maildir/cur" "$home/Maildir/new" "$home/Maildir/tmp"
        printf '%s:{PLAIN}%s:%s:%s::%s::\n' "$user" "$DOVECOT_TEST_PASSWORD" "$uid" "$gid" "$home" \
            >>"$dir/users.tmp"
    done
    chown -R dovecot:dovecot "$dir/home"
    chmod 640 "$dir/users.tmp"
    chgrp dovecot "$dir/users.tmp"
    mv "$dir/users.tmp" "$dir/users"
}

# Unix sockets are limited to ~108 bytes, so a deep DIR gets its runtime
# directory under /run instead.
_dovecot_base_dir() {
    local dir=$1
    if ((${#dir} <= 60)); then
        echo "$dir/run"
    else
        echo "/run/inmail-dovecot-$(printf '%s' "$dir" | md5sum | cut -c1-12)"
    fi
}

_dovecot_config() {
    local dir=$1 dh=""
    if [[ -s /usr/share/dovecot/dh.pem ]]; then
        dh="ssl_dh = </usr/share/dovecot/dh.pem"
    fi
    cat >"$dir/dovecot.conf.tmp" <<CONF
# Generated by scripts/lib/dovecot.sh for tests; loopback only.
instance_name = inmail-test-$(printf '%s' "$dir" | md5sum | cut -c1-8)
base_dir = $(_dovecot_base_dir "$dir")
state_dir = $dir/state
protocols = imap pop3
listen = 127.0.0.1
log_path = $dir/dovecot.log
info_log_path = $dir/dovecot.log
auth_verbose = yes

default_login_user = dovenull
default_internal_user = dovecot
first_valid_uid = $(id -u dovecot)
last_valid_uid = 0

ssl = yes
ssl_cert = <$dir/server.pem
ssl_key = <$dir/server.key
$dh
disable_plaintext_auth = no
auth_mechanisms = plain login

passdb {
  driver = passwd-file
  args = scheme=PLAIN username_format=%u $dir/users
}
userdb {
  driver = passwd-file
  args = username_format=%u $dir/users
}

mail_location = maildir:~/Maildir
namespace inbox {
  inbox = yes
}

service imap-login {
  inet_listener imap {
    address = 127.0.0.1
    port = $(_dovecot_port "$dir" imap)
  }
  inet_listener imaps {
    address = 127.0.0.1
    port = $(_dovecot_port "$dir" imaps)
    ssl = yes
  }
}
service pop3-login {
  inet_listener pop3 {
    address = 127.0.0.1
    port = $(_dovecot_port "$dir" pop3)
  }
  inet_listener pop3s {
    address = 127.0.0.1
    port = $(_dovecot_port "$dir" pop3s)
    ssl = yes
  }
}
CONF
    mv "$dir/dovecot.conf.tmp" "$dir/dovecot.conf"
}

_dovecot_running() {
    local pid_file
    pid_file="$(_dovecot_base_dir "$1")/master.pid"
    [[ -s "$pid_file" ]] && kill -0 "$(cat "$pid_file")" 2>/dev/null
}

_dovecot_wait_ports() {
    local dir=$1 name i
    for name in imap imaps pop3 pop3s; do
        for ((i = 0; i < 100; i++)); do
            if _dovecot_port_open "$(_dovecot_port "$dir" "$name")"; then
                break
            fi
            sleep 0.1
        done
        if ((i == 100)); then
            _dovecot_log "$name port did not open; see $dir/dovecot.log"
            tail -n 20 "$dir/dovecot.log" >&2 || true
            return 1
        fi
    done
}

_dovecot_export() {
    local dir=$1
    export INMAIL_TEST_DOVECOT_DIR="$dir"
    INMAIL_TEST_IMAP_PORT="$(_dovecot_port "$dir" imap)"
    INMAIL_TEST_IMAPS_PORT="$(_dovecot_port "$dir" imaps)"
    INMAIL_TEST_POP3_PORT="$(_dovecot_port "$dir" pop3)"
    INMAIL_TEST_POP3S_PORT="$(_dovecot_port "$dir" pop3s)"
    export INMAIL_TEST_IMAP_PORT INMAIL_TEST_IMAPS_PORT INMAIL_TEST_POP3_PORT INMAIL_TEST_POP3S_PORT
    export INMAIL_TEST_MAIL_USER="bounces1"
    export INMAIL_TEST_MAIL_PASSWORD="$DOVECOT_TEST_PASSWORD"
    export INMAIL_TEST_MAIL_USERS="$DOVECOT_TEST_USERS"
    export INMAIL_TEST_CA_FILE="$dir/ca.pem"
    export INMAIL_TEST_MAILDIR="$dir/home/bounces1/Maildir"
}

dovecot_start() {
    local dir=${1:?usage: dovecot_start DIR}
    if [[ $(id -u) -ne 0 ]]; then
        _dovecot_log "must run as root"
        return 1
    fi
    _dovecot_ensure_installed
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd -P)
    if ! _dovecot_running "$dir"; then
        mkdir -p "$dir/state"
        _dovecot_ports "$dir"
        _dovecot_certs "$dir"
        _dovecot_users "$dir"
        _dovecot_config "$dir"
        if ! doveconf -c "$dir/dovecot.conf" -n >/dev/null; then
            _dovecot_log "invalid config $dir/dovecot.conf"
            return 1
        fi
        # Detach from our stdio: the daemon would otherwise hold the caller's
        # pipes open (e.g. `scripts/test.sh | tee log` would never finish).
        /usr/sbin/dovecot -c "$dir/dovecot.conf" </dev/null >>"$dir/dovecot.log" 2>&1
    fi
    _dovecot_wait_ports "$dir"
    _dovecot_export "$dir"
}

# Sends TERM, then KILL to whichever of the given pids are still alive.
_dovecot_kill_pids() {
    local pid i alive
    (($# > 0)) || return 0
    kill -TERM "$@" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do
        alive=()
        for pid in "$@"; do
            if kill -0 "$pid" 2>/dev/null; then alive+=("$pid"); fi
        done
        ((${#alive[@]} > 0)) || return 0
        sleep 0.1
    done
    kill -KILL "${alive[@]}" 2>/dev/null || true
}

# Pids whose parent is $1 (from /proc: procps may be missing on slim images).
_dovecot_children() {
    local status key value pid
    for status in /proc/[0-9]*/status; do
        pid=${status#/proc/}
        pid=${pid%/status}
        while read -r key value; do
            if [[ $key == PPid: ]]; then
                if [[ $value == "$1" ]]; then echo "$pid"; fi
                break
            fi
        done <"$status" 2>/dev/null || true
    done
}

dovecot_stop() {
    local dir=${1:?usage: dovecot_stop DIR} i master children
    [[ -d "$dir" ]] || return 0
    dir=$(cd "$dir" && pwd -P)
    _dovecot_running "$dir" || return 0
    master=$(cat "$(_dovecot_base_dir "$dir")/master.pid")
    # Observed with 2.3.19: after `dovecot stop` the imap/pop3 processes keep
    # serving their clients until those disconnect, so a "restart" would not
    # break live sessions. Remember the master's children to end them too.
    mapfile -t children < <(_dovecot_children "$master")
    /usr/sbin/dovecot -c "$dir/dovecot.conf" stop
    for ((i = 0; i < 100; i++)); do
        _dovecot_running "$dir" || break
        sleep 0.1
    done
    if _dovecot_running "$dir"; then
        _dovecot_log "dovecot in $dir did not stop"
        return 1
    fi
    _dovecot_kill_pids "${children[@]}"
}

dovecot_restart() {
    local dir=${1:?usage: dovecot_restart DIR}
    dovecot_stop "$dir"
    dovecot_start "$dir"
}
