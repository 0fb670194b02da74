# shellcheck shell=bash
# Installs Debian packages for the scripts that provision what they need.
# Source this file, then:
#
#   apt_install [apt-get install options] PACKAGE...
#
# updates the package lists and installs, non-interactively and quietly,
# through sudo when not root. Returns non-zero, with a line on stderr, when
# there is no apt-get or the install fails; the caller decides what that means.
apt_install() {
    command -v apt-get >/dev/null 2>&1 || {
        echo "apt.sh: no apt-get to install $*" >&2
        return 1
    }
    local sudo=""
    [ "$(id -u)" = 0 ] || sudo="sudo"
    {
        $sudo apt-get update -qq &&
            DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$@"
    } >/dev/null || {
        echo "apt.sh: apt-get install $* failed" >&2
        return 1
    }
}
