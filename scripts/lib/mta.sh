# shellcheck shell=bash
# Real MTAs for the truth set of tests/mta_truth.rs: Postfix, Exim, OpenSMTPD
# and Sendmail from Debian, each run from a private prefix with its own
# configuration, spool, loopback ports and logs. Source this file, then:
#
#   mta_provision DIR        # unpack/install what is missing; exports
#                            # INMAIL_TEST_MTA_DIR, INMAIL_TEST_MTAS, INMAIL_TEST_MTA_SH
#   mta_start NAME WORK PEER_PORT SMTP_PORT STRICT_PORT CLOSED_PORT
#   mta_kick NAME WORK       # a queue run now (OpenSMTPD), else nothing
#   mta_stop NAME WORK
#
# Debian's MTA packages conflict with one another (each provides
# mail-transport-agent), so none is installed: each package is fetched with
# `apt-get download` and unpacked (`dpkg-deb -x`) into DIR/<name>/root; only
# the shared libraries they link against (which do not conflict) and m4 are
# installed. Must run as root: the daemons switch to their own users, which
# are created when missing. When an MTA cannot be provisioned it is left out
# of INMAIL_TEST_MTAS with one line saying why; the test then runs the
# others, or prints one skip line when none is left.
#
# Every MTA relays every domain to the test's scripted SMTP peer on
# 127.0.0.1:PEER_PORT (no DNS), except:
#   refused.test      -> 127.0.0.1:CLOSED_PORT, where nothing listens
#   nxdomain.invalid  -> the MTA's own DNS lookup (RFC 2606: .invalid never
#                        exists), so the MTA reports the missing domain itself
#   strict.test       -> the same MTA's second listener on STRICT_PORT, which
#                        relays for nobody and takes at most 4000-byte
#                        messages: the MTA's own "relay denied" and "too large"
#   local.test        -> local delivery, where no user exists: the MTA's own
#                        "unknown user"
# Bounces go to bounces@sender.test, which the peer stores in a maildir.
# Outside DIR, only the daemons' users are created, and for OpenSMTPD the
# (empty) mount points /var/spool/smtpd and /var/lib/opensmtpd/empty.
# Retry and queue lifetimes are seconds, so delay warnings and expiry happen
# within the test.

# shellcheck source=scripts/lib/apt.sh
source "$(dirname "${BASH_SOURCE[0]}")/apt.sh"

MTA_ALL="postfix exim opensmtpd sendmail"
MTA_SH_PATH="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)/mta.sh"

_mta_log() { echo "mta.sh: $*" >&2; }

_mta_packages() {
    case $1 in
    postfix) echo postfix ;;
    exim) echo exim4-daemon-light ;;
    opensmtpd) echo opensmtpd ;;
    sendmail) echo sendmail-bin sendmail-cf ;;
    esac
}

# The daemon's users and groups, as the Debian maintainer scripts make them.
_mta_users() {
    case $1 in
    postfix)
        getent group postdrop >/dev/null || groupadd --system postdrop
        getent passwd postfix >/dev/null ||
            useradd --system --home-dir /nonexistent --no-create-home --shell /usr/sbin/nologin postfix
        ;;
    exim)
        getent passwd Debian-exim >/dev/null ||
            useradd --system --user-group --home-dir /nonexistent --no-create-home --shell /usr/sbin/nologin Debian-exim
        ;;
    opensmtpd)
        getent passwd opensmtpd >/dev/null ||
            useradd --system --user-group --home-dir /nonexistent --no-create-home --shell /usr/sbin/nologin opensmtpd
        getent passwd opensmtpq >/dev/null ||
            useradd --system --user-group --home-dir /nonexistent --no-create-home --shell /usr/sbin/nologin opensmtpq
        ;;
    sendmail)
        getent group smmsp >/dev/null || groupadd --system smmsp
        getent passwd smmta >/dev/null ||
            useradd --system --user-group --home-dir /nonexistent --no-create-home --shell /usr/sbin/nologin smmta
        getent passwd smmsp >/dev/null ||
            useradd --system --gid smmsp --home-dir /nonexistent --no-create-home --shell /usr/sbin/nologin smmsp
        ;;
    esac
}

# Libraries (and m4) the unpacked packages need, from their Depends fields.
_mta_deps() {
    local deb
    for deb in "$@"; do
        dpkg-deb -f "$deb" Depends
    done | tr ',' '\n' | sed 's/[(|].*//; s/^ *//; s/ *$//' |
        grep -E '^(lib[a-z0-9.+-]+|zlib1g|m4)$' | sort -u
}

_mta_unpack() {
    local name=$1 dir=$2 pkgs deb missing=()
    local root="$dir/$name/root" debs="$dir/debs"
    if [[ -s "$dir/$name/version" && -d "$root" ]]; then
        return 0
    fi
    read -r -a pkgs <<<"$(_mta_packages "$name")"
    mkdir -p "$debs"
    for deb in "${pkgs[@]}"; do
        if ! compgen -G "$debs/${deb}_*.deb" >/dev/null; then
            missing+=("$deb")
        fi
    done
    if ((${#missing[@]} > 0)); then
        command -v apt-get >/dev/null 2>&1 || {
            _mta_log "$name: no apt-get to fetch ${missing[*]}"
            return 1
        }
        if [[ ! -s "$dir/.apt-updated" ]]; then
            apt-get update -qq >/dev/null 2>&1 || true
            date >"$dir/.apt-updated"
        fi
        (cd "$debs" && apt-get download -qq "${missing[@]}" >/dev/null 2>&1) || {
            _mta_log "$name: apt-get download ${missing[*]} failed"
            return 1
        }
    fi
    local files=()
    for deb in "${pkgs[@]}"; do
        files+=("$(compgen -G "$debs/${deb}_*.deb" | head -n 1)")
    done
    local libs=()
    mapfile -t libs < <(_mta_deps "${files[@]}")
    local need=()
    for deb in "${libs[@]}"; do
        dpkg-query -W -f='${Status}' "$deb" 2>/dev/null | grep -q 'install ok installed' || need+=("$deb")
    done
    if ((${#need[@]} > 0)); then
        apt_install "${need[@]}" || return 1
    fi
    rm -rf "$root" && mkdir -p "$root"
    for deb in "${files[@]}"; do
        dpkg-deb -x "$deb" "$root"
    done
    dpkg-deb -f "${files[0]}" Version >"$dir/$name/version"
}

# The version the MTA itself reports, after the Debian package version.
_mta_version() {
    local name=$1 root=$2 v=""
    case $name in
    postfix) v=$(LD_LIBRARY_PATH="$root/usr/lib/postfix" "$root/usr/sbin/postconf" -d -h mail_version 2>/dev/null) ;;
    exim) v=$("$root/usr/sbin/exim4" -C /dev/null -bV 2>/dev/null | sed -n 's/^Exim version \([^ ]*\).*/\1/p') ;;
    opensmtpd) v=$("$root/usr/sbin/smtpd" -h 2>&1 | sed -n 's/^version: OpenSMTPD \(.*\)/\1/p' | head -n 1) ;;
    sendmail) v=$(unshare --uts sh -c 'hostname sendmail.mta.test && exec "$1" -d0.1 -bt' sh \
        "$root/usr/libexec/sendmail/sendmail" </dev/null 2>/dev/null | sed -n 's/^Version \(.*\)/\1/p' | head -n 1) ;;
    esac
    echo "${v:-?}"
}

# OpenSMTPD needs a mount namespace and Sendmail a UTS namespace (see their
# start functions): a container without CAP_SYS_ADMIN has neither.
_mta_can_run() {
    local flag
    case $1 in
    opensmtpd) flag=--mount ;;
    sendmail) flag=--uts ;;
    *) return 0 ;;
    esac
    command -v unshare >/dev/null 2>&1 && unshare "$flag" true 2>/dev/null && return 0
    _mta_log "$1: cannot make a namespace (unshare $flag)"
    return 1
}

mta_provision() {
    local dir=${1:?usage: mta_provision DIR} name available=()
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd -P)
    if [[ $(id -u) -ne 0 ]]; then
        _mta_log "not root: the MTAs cannot be provisioned"
    else
        for name in ${INMAIL_TEST_MTA_ONLY:-$MTA_ALL}; do
            if _mta_can_run "$name" && _mta_unpack "$name" "$dir" && _mta_users "$name"; then
                available+=("$name")
                _mta_version "$name" "$dir/$name/root" >"$dir/$name/mta-version"
                echo "mta.sh: $name $(cat "$dir/$name/mta-version") (Debian $(cat "$dir/$name/version"))" >&2
            else
                _mta_log "$name left out"
            fi
        done
    fi
    export INMAIL_TEST_MTA_DIR="$dir"
    export INMAIL_TEST_MTA_SH="$MTA_SH_PATH"
    INMAIL_TEST_MTAS="${available[*]}"
    export INMAIL_TEST_MTAS
}

# True when something accepts TCP connections on 127.0.0.1:$1.
_mta_port_open() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

_mta_wait_port() {
    local port=$1 log=$2 i
    for ((i = 0; i < 150; i++)); do
        _mta_port_open "$port" && return 0
        sleep 0.1
    done
    _mta_log "nothing listens on 127.0.0.1:$port; see $log"
    tail -n 20 "$log" >&2 2>/dev/null || true
    return 1
}

# --- Postfix -----------------------------------------------------------------

_mta_start_postfix() {
    local work=$1 root=$2 peer=$3 port=$4 strict=$5 closed=$6
    local conf="$work/conf" lib="$root/usr/lib/postfix"
    mkdir -p "$conf" "$work/spool" "$work/data"
    chown postfix "$work/data"
    cat >"$conf/main.cf" <<CONF
# Generated by scripts/lib/mta.sh for tests/mta_truth.rs; loopback only.
compatibility_level = 3.6
queue_directory = $work/spool
data_directory = $work/data
meta_directory = $root/etc/postfix
command_directory = $root/usr/sbin
daemon_directory = $lib/sbin
shlib_directory = $lib
sample_directory = $conf
mail_owner = postfix
setgid_group = postdrop
import_environment = MAIL_CONFIG MAIL_DEBUG MAIL_LOGTAG TZ LANG=C LD_LIBRARY_PATH=$lib
maillog_file_prefixes = $work
maillog_file = $work/maillog
myhostname = postfix.mta.test
mydomain = mta.test
myorigin = \$myhostname
mydestination = local.test
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
smtputf8_enable = yes
biff = no
alias_maps =
alias_database =
local_recipient_maps =
transport_maps = inline:{ refused.test=smtp:[127.0.0.1]:$closed, nxdomain.invalid=smtp:nxdomain.invalid, strict.test=smtp:[127.0.0.1]:$strict }
default_transport = smtp:[127.0.0.1]:$peer
relay_transport = \$default_transport
smtp_tls_security_level = none
smtpd_tls_security_level = none
smtp_connect_timeout = 5s
queue_run_delay = 2s
minimal_backoff_time = 2s
maximal_backoff_time = 4s
maximal_queue_lifetime = 40s
bounce_queue_lifetime = 40s
delay_warning_time = 8s
CONF
    cat >"$conf/master.cf" <<CONF
127.0.0.1:$port inet n - n - - smtpd
127.0.0.1:$strict inet n - n - - smtpd -o mynetworks=192.0.2.1/32 -o message_size_limit=4000 -o smtpd_relay_restrictions=reject_unauth_destination
pickup    unix  n       -       n       2       1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
local     unix  -       n       n       -       -       local
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
CONF
    local env=(env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LD_LIBRARY_PATH="$lib")
    "${env[@]}" "$root/usr/sbin/postfix" -c "$conf" set-permissions >>"$work/start.log" 2>&1 || true
    "${env[@]}" "$root/usr/sbin/postfix" -c "$conf" start </dev/null >>"$work/start.log" 2>&1 || {
        _mta_log "postfix did not start; see $work/start.log"
        tail -n 20 "$work/start.log" >&2
        return 1
    }
}

_mta_stop_postfix() {
    local work=$1 root=$2
    env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LD_LIBRARY_PATH="$root/usr/lib/postfix" \
        "$root/usr/sbin/postfix" -c "$work/conf" stop >>"$work/start.log" 2>&1 || true
}

# --- Exim --------------------------------------------------------------------

_mta_start_exim() {
    local work=$1 root=$2 peer=$3 port=$4 strict=$5 closed=$6
    mkdir -p "$work/spool" "$work/log"
    chown -R Debian-exim:Debian-exim "$work/spool" "$work/log"
    cat >"$work/exim.conf" <<CONF
# Generated by scripts/lib/mta.sh for tests/mta_truth.rs; loopback only.
exim_path = $root/usr/sbin/exim4
keep_environment =
tls_advertise_hosts =
exim_user = Debian-exim
exim_group = Debian-exim
spool_directory = $work/spool
log_file_path = $work/log/%slog
pid_file_path = $work/exim.pid
primary_hostname = exim.mta.test
qualify_domain = exim.mta.test
domainlist local_domains = local.test
hostlist relay_from_hosts = 127.0.0.1
local_interfaces = <; 127.0.0.1
daemon_smtp_ports = $port : $strict
host_lookup =
rfc1413_hosts =
smtputf8_advertise_hosts = *
trusted_users = root
# the strict listener takes small messages only: Exim's own "too large"
message_size_limit = \${if ={\$received_port}{$strict}{4000}{50M}}
# one warning: the next would come after an hour
delay_warning = 8s:1h
ignore_bounce_errors_after = 1m
timeout_frozen_after = 2m
acl_smtp_rcpt = acl_check_rcpt

begin acl

acl_check_rcpt:
  accept  hosts = +relay_from_hosts
          condition = \${if ={\$received_port}{$port}}
  require message = relay not permitted
          domains = +local_domains
  accept

begin routers

nxdomain:
  driver = dnslookup
  domains = nxdomain.invalid
  transport = remote_smtp
  no_more

refused:
  driver = manualroute
  domains = refused.test
  route_list = * 127.0.0.1
  self = send
  transport = smtp_closed

strict:
  driver = manualroute
  domains = strict.test
  route_list = * 127.0.0.1
  self = send
  transport = smtp_strict

peer:
  driver = manualroute
  domains = ! +local_domains
  route_list = * 127.0.0.1
  self = send
  transport = smtp_peer

# no local user exists: every local address ends here, with the message of
# Exim's default configuration
localuser:
  driver = accept
  domains = +local_domains
  check_local_user
  local_part_suffix = +*
  local_part_suffix_optional
  transport = local_delivery
  cannot_route_message = Unknown user

begin transports

remote_smtp:
  driver = smtp

smtp_peer:
  driver = smtp
  port = $peer

smtp_closed:
  driver = smtp
  port = $closed

smtp_strict:
  driver = smtp
  port = $strict

local_delivery:
  driver = appendfile
  file = $work/mail/\$local_part

begin retry

*   *   F,40s,3s

begin rewrite
CONF
    "$root/usr/sbin/exim4" -C "$work/exim.conf" -bV >/dev/null 2>>"$work/start.log" || {
        _mta_log "exim: invalid $work/exim.conf"
        tail -n 20 "$work/start.log" >&2
        return 1
    }
    "$root/usr/sbin/exim4" -C "$work/exim.conf" -bd -q3s </dev/null >>"$work/start.log" 2>&1 || {
        _mta_log "exim did not start; see $work/start.log"
        tail -n 20 "$work/start.log" >&2
        return 1
    }
}

_mta_stop_exim() {
    local work=$1 pid
    [[ -s "$work/exim.pid" ]] || return 0
    pid=$(cat "$work/exim.pid")
    kill -TERM "$pid" 2>/dev/null || true
}

# --- OpenSMTPD ---------------------------------------------------------------

# smtpd has its spool, control socket and chroot compiled in (/var/spool/smtpd,
# /var/run/smtpd.sock, /var/lib/opensmtpd/empty): it runs in a mount
# namespace of its own where private directories are mounted over those.
_mta_start_opensmtpd() {
    local work=$1 root=$2 peer=$3 port=$4 strict=$5 closed=$6
    mkdir -p "$work/spool" "$work/run" "$work/empty" /var/spool/smtpd /var/lib/opensmtpd/empty
    chmod 711 "$work/spool"
    cat >"$work/smtpd.conf" <<CONF
# Generated by scripts/lib/mta.sh for tests/mta_truth.rs; loopback only.
queue ttl 40s
bounce warn-interval 8s
listen on 127.0.0.1 port $port tag MAIN hostname opensmtpd.mta.test
# relays for no client: OpenSMTPD's own "relay denied" and "unknown user"
listen on 127.0.0.1 port $strict tag STRICT hostname opensmtpd.mta.test

action "peer" relay host "smtp://127.0.0.1:$peer"
action "closed" relay host "smtp://127.0.0.1:$closed"
action "strict" relay host "smtp://127.0.0.1:$strict"
action "dns" relay
action "local" mbox

# bounces are made inside smtpd, on no listener
match from local for domain "sender.test" action "peer"
match tag STRICT from any for domain "local.test" action "local"
match tag MAIN from local for domain "local.test" action "strict"
match tag MAIN from local for domain "strict.test" action "strict"
match tag MAIN from local for domain "refused.test" action "closed"
match tag MAIN from local for domain "nxdomain.invalid" action "dns"
match tag MAIN from local for any action "peer"
CONF
    "$root/usr/sbin/smtpd" -n -f "$work/smtpd.conf" >>"$work/start.log" 2>&1 || {
        _mta_log "opensmtpd: invalid $work/smtpd.conf"
        tail -n 20 "$work/start.log" >&2
        return 1
    }
    setsid unshare --mount --propagation private sh -c '
        mount --bind "$1/spool" /var/spool/smtpd &&
        mount --bind "$1/run" /var/run &&
        mount --bind "$1/empty" /var/lib/opensmtpd/empty &&
        exec "$2" -d -f "$1/smtpd.conf"' sh "$work" "$root/usr/sbin/smtpd" \
        </dev/null >>"$work/smtpd.log" 2>&1 &
    echo $! >"$work/smtpd.pid"
}

# A queue run now: the scheduler's retry delay (minutes) is compiled in.
_mta_kick_opensmtpd() {
    local work=$1 root=$2
    unshare --mount --propagation private sh -c '
        mount --bind "$1/run" /var/run && exec "$2" schedule all' sh "$work" "$root/usr/sbin/smtpctl" \
        </dev/null >/dev/null 2>&1 || true
}

_mta_stop_opensmtpd() {
    local work=$1
    [[ -s "$work/smtpd.pid" ]] || return 0
    kill -TERM "$(cat "$work/smtpd.pid")" 2>/dev/null || true
}

# --- Sendmail ----------------------------------------------------------------

# One sendmail.cf from the sendmail-cf m4 macros. $1 = work dir, $2 = root,
# $3 = instance name, $4 = its SMTP port, $5 = extra m4 lines.
_mta_sendmail_cf() {
    local work=$1 root=$2 inst=$3 port=$4 extra=$5
    local cf="$root/usr/share/sendmail/cf"
    mkdir -p "$work/$inst/mqueue" "$work/$inst/clientmqueue"
    chmod 700 "$work/$inst/mqueue"
    : >"$work/$inst/aliases"
    # The checkout may live under /tmp: TrustStickyBit lets Sendmail open its
    # aliases and queue below a world-writable sticky directory (otherwise it
    # defers every message with "alias database unavailable").
    cat >"$work/$inst/sendmail.mc" <<MC
divert(-1)
# Generated by scripts/lib/mta.sh for tests/mta_truth.rs; loopback only.
divert(0)dnl
VERSIONID(\`inmail test $inst')dnl
OSTYPE(\`linux')dnl
define(\`confHOST_NAME', \`$inst.sendmail.mta.test')dnl
define(\`confDOMAIN_NAME', \`$inst.sendmail.mta.test')dnl
define(\`QUEUE_DIR', \`$work/$inst/mqueue')dnl
define(\`MSP_QUEUE_DIR', \`$work/$inst/clientmqueue')dnl
define(\`confPID_FILE', \`$work/$inst/sendmail.pid')dnl
define(\`ALIAS_FILE', \`$work/$inst/aliases')dnl
define(\`STATUS_FILE', \`$work/$inst/statistics')dnl
define(\`confHELP_FILE', \`$work/$inst/helpfile')dnl
define(\`confHOST_STATUS_DIRECTORY', \`')dnl
define(\`confDEF_USER_ID', \`smmta:smmta')dnl
define(\`confDONT_BLAME_SENDMAIL', \`GroupWritableDirPathSafe,TrustStickyBit,GroupWritableAliasFile,WorldWritableAliasFile,ForwardFileInUnsafeDirPath,AssumeSafeChown')dnl
define(\`confTO_QUEUEWARN', \`8s')dnl
define(\`confTO_QUEUERETURN', \`40s')dnl
define(\`confMIN_QUEUE_AGE', \`0')dnl
define(\`confTO_CONNECT', \`5s')dnl
define(\`confTO_ICONNECT', \`5s')dnl
define(\`confDELIVERY_MODE', \`background')dnl
define(\`confCON_EXPENSIVE', \`False')dnl
define(\`confPRIVACY_FLAGS', \`authwarnings')dnl
define(\`SMART_HOST', \`')dnl
FEATURE(\`no_default_msa')dnl
FEATURE(\`nocanonify')dnl
FEATURE(\`accept_unresolvable_domains')dnl
FEATURE(\`mailertable', \`hash $work/$inst/mailertable')dnl
DAEMON_OPTIONS(\`Port=$port, Addr=127.0.0.1, Name=MTA-$inst')dnl
$extra
MAILER(\`local')dnl
MAILER(\`smtp')dnl
MC
    m4 -D_CF_DIR_="$cf/" "$cf/m4/cf.m4" "$work/$inst/sendmail.mc" >"$work/$inst/sendmail.cf" 2>>"$work/start.log"
}

_mta_start_sendmail() {
    local work=$1 root=$2 peer=$3 port=$4 strict=$5 closed=$6
    local sm="$root/usr/libexec/sendmail"
    mkdir -p "$work"
    # the main instance: every domain goes to the peer over its own port,
    # local.test and strict.test to the strict instance
    # It connects from 127.0.0.3: sendmail lets 127.0.0.1 relay whatever
    # the configuration says ("originated locally" in proto.m4).
    _mta_sendmail_cf "$work" "$root" main "$port" "dnl
define(\`confCLIENT_OPTIONS', \`Family=inet, Addr=127.0.0.3')dnl
MAILER_DEFINITIONS
Mpeer, P=[IPC], F=mDFMuXa, S=EnvFromSMTP/HdrFromSMTP, R=EnvToSMTP, E=\\r\\n, L=990, T=DNS/RFC822/SMTP, A=TCP \$h $peer
Mclosed, P=[IPC], F=mDFMuXa, S=EnvFromSMTP/HdrFromSMTP, R=EnvToSMTP, E=\\r\\n, L=990, T=DNS/RFC822/SMTP, A=TCP \$h $closed
Mstrict, P=[IPC], F=mDFMuXa, S=EnvFromSMTP/HdrFromSMTP, R=EnvToSMTP, E=\\r\\n, L=990, T=DNS/RFC822/SMTP, A=TCP \$h $strict" || return 1
    cat >"$work/main/mailertable.txt" <<MT
refused.test closed:[127.0.0.1]
strict.test strict:[127.0.0.1]
local.test strict:[127.0.0.1]
nxdomain.invalid esmtp:nxdomain.invalid
. peer:[127.0.0.1]
MT
    "$sm/makemap" -C "$work/main/sendmail.cf" hash "$work/main/mailertable" <"$work/main/mailertable.txt" 2>>"$work/start.log" || true
    # the strict instance: relays for nobody, knows no local user, takes
    # 4000-byte messages at most
    _mta_sendmail_cf "$work" "$root" strict "$strict" "dnl
define(\`confMAX_MESSAGE_SIZE', \`4000')dnl
LOCAL_CONFIG
Cw local.test" || return 1
    : >"$work/strict/mailertable.txt"
    "$sm/makemap" -C "$work/strict/sendmail.cf" hash "$work/strict/mailertable" <"$work/strict/mailertable.txt" 2>>"$work/start.log" || true
    local inst
    for inst in strict main; do
        # a host name of its own (UTS namespace): with an unqualified one
        # sendmail sleeps a minute trying to qualify it
        unshare --uts sh -c 'hostname "$1" && exec "$2" -C "$3" -bd -q3s' sh \
            "$inst.sendmail.mta.test" "$sm/sendmail" "$work/$inst/sendmail.cf" \
            </dev/null >>"$work/start.log" 2>&1 || {
            _mta_log "sendmail $inst did not start; see $work/start.log"
            tail -n 20 "$work/start.log" >&2
            return 1
        }
    done
    _mta_wait_port "$strict" "$work/start.log"
}

_mta_stop_sendmail() {
    local work=$1 inst
    for inst in main strict; do
        [[ -s "$work/$inst/sendmail.pid" ]] || continue
        kill -TERM "$(head -n 1 "$work/$inst/sendmail.pid")" 2>/dev/null || true
    done
}

# --- common ------------------------------------------------------------------

mta_start() {
    local name=${1:?usage: mta_start NAME WORK PEER_PORT SMTP_PORT STRICT_PORT CLOSED_PORT}
    local work=${2:?} peer=${3:?} port=${4:?} strict=${5:?} closed=${6:?}
    local root="${INMAIL_TEST_MTA_DIR:?mta_provision first}/$name/root"
    mkdir -p "$work"
    work=$(cd "$work" && pwd -P)
    "_mta_start_$name" "$work" "$root" "$peer" "$port" "$strict" "$closed" || return 1
    _mta_wait_port "$port" "$work/start.log"
}

# Asks the MTA for a queue run, for MTAs whose retry delays cannot be set
# short enough; a no-op for the others.
mta_kick() {
    local name=${1:?usage: mta_kick NAME WORK} work=${2:?}
    local root="${INMAIL_TEST_MTA_DIR:?mta_provision first}/$name/root"
    if declare -F "_mta_kick_$name" >/dev/null; then
        "_mta_kick_$name" "$work" "$root"
    fi
}

mta_stop() {
    local name=${1:?usage: mta_stop NAME WORK} work=${2:?}
    local root="${INMAIL_TEST_MTA_DIR:?mta_provision first}/$name/root"
    [[ -d "$work" ]] || return 0
    "_mta_stop_$name" "$work" "$root"
}
