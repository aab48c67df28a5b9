#!/usr/bin/env bash
# install-timescaledb.sh - build and install the TimescaleDB extension
# (Apache-2 edition) for the local PostgreSQL on Debian 12, from the
# Debian 13 (trixie) source package, and enable it in the local cluster(s).
# Run with --help for details. Safe to re-run: a second run changes nothing.
set -Eeuo pipefail

SCRIPT_NAME=install-timescaledb
TSDB_SOURCE_SUITE=trixie        # Debian release whose source package we build
TSDB_SOURCE_PACKAGE=timescaledb
TSDB_EXPECTED_SERIES=2.19       # what trixie shipped when this was written
CHECK_DB=liftwatch_tsdb_check   # scratch database for the CREATE EXTENSION check
DROPIN_NAME=99-liftwatch-timescaledb.conf
ARCHIVE_KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg

# Debian packages the Liftwatch test suite needs besides TimescaleDB:
# mosquitto (broker) + mosquitto-clients (mosquitto_pub/mosquitto_sub) for
# the MQTT tests, docker-compose to validate docker-compose.yml with
# `docker-compose config -q` (no container engine needed), chromium for the
# browser tests of the web pages (driven by Playwright's Python package through
# /usr/bin/chromium; `playwright install` is never used) and a CJK font so
# that the pages' Chinese renders in its screenshots.
PROJECT_SUPPORT_PACKAGES=(mosquitto mosquitto-clients docker-compose chromium fonts-wqy-microhei)

usage() {
	cat <<'EOF'
Usage: scripts/install-timescaledb.sh [--no-cluster] [--force] [--help]

Builds the TimescaleDB extension (Apache-2 edition only, telemetry compiled
out) from Debian 13 "trixie"'s source package `timescaledb` against the local
PostgreSQL, installs it, and enables it in the local PostgreSQL cluster(s).
Idempotent: when the extension is already installed and loaded, it only checks
and changes nothing (no download, no build, no restart).

Options:
  --no-cluster  Install the extension files only; do not touch any cluster
                configuration, do not restart anything (same as
                LIFTWATCH_SKIP_CLUSTER=1). For machines whose tests use
                throwaway clusters started with
                -c shared_preload_libraries=timescaledb.
  --force       Download and rebuild even if the extension is already installed.
  -h, --help    Show this help.

Environment:
  PG_CONFIG                  pg_config to build against (default: the highest
                             /usr/lib/postgresql/*/bin/pg_config, else the one
                             on PATH).
  LIFTWATCH_SKIP_CLUSTER=1   Same as --no-cluster.
  LIFTWATCH_TSDB_CACHE_DIR   Cache/work directory (default:
                             /var/cache/liftwatch-timescaledb as root, else
                             ${XDG_CACHE_HOME:-~/.cache}/liftwatch-timescaledb).
  LIFTWATCH_DEBIAN_MIRROR    Debian mirror URI to fetch the source from
                             (default: the one in this machine's apt sources).

What it changes on the machine (needs root; uses sudo when not root):
  * apt-get install (only when missing): cmake, build-essential, xz-utils,
    libssl-dev, postgresql-server-dev-<major>, and the project support
    packages mosquitto, mosquitto-clients, docker-compose, chromium,
    fonts-wqy-microhei. `apt-get update`
    runs only when a missing package has no install candidate.
  * Fetches the trixie source package with a PRIVATE apt configuration (one
    deb-src line + private lists/cache in the cache directory); the machine's
    own apt sources and lists are not modified.
  * `make install` of TimescaleDB into the PostgreSQL directories given by
    pg_config (extension/timescaledb*.sql + .control in --sharedir,
    timescaledb*.so in --pkglibdir). The build happens in a temporary
    directory; nothing is installed unless the build succeeded.
  * Unless --no-cluster: for each Debian cluster of that PostgreSQL major
    (pg_lsclusters) whose shared_preload_libraries lacks timescaledb, writes
    /etc/postgresql/<major>/<name>/conf.d/99-liftwatch-timescaledb.conf
    (keeping the libraries already configured) and restarts the cluster; a
    stopped cluster is started. Then checks CREATE EXTENSION timescaledb in a
    scratch database (liftwatch_tsdb_check, created and dropped).
Logs go to <cache dir>/logs/; on failure the tail of the log is printed.
EOF
}

# ---------------------------------------------------------------- helpers --
say()  { printf '%s: %s\n' "$SCRIPT_NAME" "$*"; }
warn() { printf '%s: WARNING: %s\n' "$SCRIPT_NAME" "$*" >&2; }

STEP="starting"
LOG=""
die() {
	printf '%s: ERROR during step "%s": %s\n' "$SCRIPT_NAME" "$STEP" "$1" >&2
	if [[ $# -ge 2 ]]; then printf '%s: what to do: %s\n' "$SCRIPT_NAME" "$2" >&2; fi
	if [[ -n $LOG && -s $LOG ]]; then printf '%s: full log: %s\n' "$SCRIPT_NAME" "$LOG" >&2; fi
	exit 1
}
on_err() {
	local rc=$? line=$1 cmd=$2
	# inside $(...) or ( ): just exit, the parent shell reports the failure once
	if ((BASH_SUBSHELL > 0)); then exit "$rc"; fi
	trap - ERR
	printf '%s: ERROR during step "%s": command failed (exit %s, line %s): %s\n' \
		"$SCRIPT_NAME" "$STEP" "$rc" "$line" "$cmd" >&2
	if [[ -n $LOG && -s $LOG ]]; then
		printf '%s: last lines of %s:\n' "$SCRIPT_NAME" "$LOG" >&2
		tail -n 30 "$LOG" | sed 's/^/    /' >&2
	fi
	printf '%s: nothing was installed by the failing step unless it was "make install"; fix the cause above and re-run.\n' \
		"$SCRIPT_NAME" >&2
	exit "$rc"
}
trap 'on_err "$LINENO" "$BASH_COMMAND"' ERR

# run_logged "description" "hint" cmd...: output to $LOG, tail on failure
run_logged() {
	local what=$1 hint=$2
	shift 2
	printf '\n===== %s: %s\n' "$(date '+%F %T')" "$*" >>"$LOG"
	if ! "$@" >>"$LOG" 2>&1 9>&-; then
		printf '%s: ERROR during step "%s": %s failed. Last lines of %s:\n' \
			"$SCRIPT_NAME" "$STEP" "$what" "$LOG" >&2
		tail -n 40 "$LOG" | sed 's/^/    /' >&2
		printf '%s: what to do: %s\n' "$SCRIPT_NAME" "$hint" >&2
		exit 1
	fi
}

# fd 9 is our lock file: close it for children (a restarted postmaster or a
# daemon started by apt would otherwise hold the lock forever).
as_root() {
	if [[ $EUID -eq 0 ]]; then
		"$@" 9>&-
	elif command -v sudo >/dev/null 2>&1; then
		sudo "$@" 9>&-
	else
		die "need root for: $*" "re-run this script as root (or install sudo)."
	fi
}

as_postgres() {
	# cd / so that postgres tools don't complain about an unreadable cwd
	if [[ $(id -un) == postgres ]]; then
		(cd / && "$@" 9>&-)
	elif [[ $EUID -eq 0 ]]; then
		(cd / && runuser -u postgres -- "$@" 9>&-)
	else
		(cd / && sudo -u postgres -- "$@" 9>&-)
	fi
}

pkg_installed() {
	[[ $(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null || true) == installed ]]
}

APT_UPDATED=0
# apt_install_missing LABEL pkg...: install (with the machine's apt) what is missing
apt_install_missing() {
	local label=$1 p cand
	shift
	local missing=()
	for p in "$@"; do pkg_installed "$p" || missing+=("$p"); done
	if [[ ${#missing[@]} -eq 0 ]]; then
		say "$label already installed ($*)"
		return 0
	fi
	STEP="install $label"
	local need_update=0
	for p in "${missing[@]}"; do
		cand=$(apt-cache policy "$p" 2>/dev/null | awk '/Candidate:/ {print $2}')
		if [[ -z $cand || $cand == "(none)" ]]; then need_update=1; fi
	done
	if [[ $need_update -eq 1 && $APT_UPDATED -eq 0 ]]; then
		say "apt-get update (a needed package has no install candidate yet)"
		run_logged "apt-get update" "check the machine's apt sources and network access to the Debian mirror" \
			as_root apt-get update
		APT_UPDATED=1
	fi
	say "installing $label: ${missing[*]}"
	printf '\n===== %s: apt-get install %s\n' "$(date '+%F %T')" "${missing[*]}" >>"$LOG"
	if ! as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
		"${missing[@]}" >>"$LOG" 2>&1; then
		if [[ $APT_UPDATED -eq 0 ]]; then
			say "apt-get install failed; retrying after apt-get update"
			run_logged "apt-get update" "check the machine's apt sources and network access to the Debian mirror" \
				as_root apt-get update
			APT_UPDATED=1
			run_logged "apt-get install ${missing[*]}" "install these packages by hand: apt-get install ${missing[*]}" \
				as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
		else
			printf '%s: ERROR during step "%s": apt-get install %s failed. Last lines of %s:\n' \
				"$SCRIPT_NAME" "$STEP" "${missing[*]}" "$LOG" >&2
			tail -n 30 "$LOG" | sed 's/^/    /' >&2
			printf '%s: what to do: fix the apt problem above, or install them by hand: apt-get install %s\n' \
				"$SCRIPT_NAME" "${missing[*]}" >&2
			exit 1
		fi
	fi
}

# Debian mirror URI from the machine's apt sources (the suite that is not -security).
find_debian_mirror() {
	local uri="" f
	for f in /etc/apt/sources.list.d/*.sources; do
		[[ -r $f ]] || continue
		uri=$(awk '
			function flush() {
				if (types ~ /(^|[ \t])deb(-src)?([ \t]|$)/ && enabled != "no" && uri != "" && nonsec && !found) {
					print uri; found = 1
				}
				types = ""; uri = ""; nonsec = 0; enabled = ""
			}
			/^[ \t]*#/ { next }
			/^[ \t]*$/ { flush(); next }
			{
				key = tolower($1); sub(/:$/, "", key)
				if (key == "types") { types = $0; sub(/^[^:]*:/, "", types) }
				else if (key == "uris") {
					for (i = 2; i <= NF; i++) if ($i ~ /^https?:\/\//) { uri = $i; break }
				}
				else if (key == "suites") {
					for (i = 2; i <= NF; i++) if ($i !~ /-security$/) nonsec = 1
				}
				else if (key == "enabled") { enabled = tolower($2) }
			}
			END { flush() }' "$f")
		[[ -n $uri ]] && break
	done
	if [[ -z $uri && -r /etc/apt/sources.list ]]; then
		uri=$(awk '
			/^[ \t]*deb(-src)?[ \t]/ {
				i = 2
				if ($i ~ /^\[/) { while (i <= NF && $i !~ /\]$/) i++; i++ }
				if ($i ~ /^https?:\/\// && $(i + 1) !~ /-security$/) { print $i; exit }
			}' /etc/apt/sources.list)
	fi
	printf '%s' "${uri%/}"
}

upstream_version() { # 2.19.3+dfsg-1+deb13u1 -> 2.19.3
	local v=${1#*:}
	v=${v%-*}
	printf '%s' "$v" | sed -E 's/[+~](dfsg|ds|repack).*$//'
}

installed_version() { # prints the installed default_version if control + .so files exist
	local control="$SHAREDIR/extension/timescaledb.control" v
	[[ -f $control ]] || return 0
	v=$(sed -nE "s/^[[:space:]]*default_version[[:space:]]*=[[:space:]]*'([^']*)'.*/\1/p" "$control" | head -n1)
	[[ -n $v ]] || return 0
	[[ -f $PKGLIBDIR/timescaledb.so && -f $PKGLIBDIR/timescaledb-$v.so && -f $SHAREDIR/extension/timescaledb--$v.sql ]] || return 0
	printf '%s' "$v"
}

has_timescaledb() { # "a, 'b',timescaledb" -> true
	local item
	IFS=',' read -r -a _items <<<"$1"
	for item in "${_items[@]}"; do
		item=$(printf '%s' "$item" | tr -d " \t\"'")
		[[ $item == timescaledb ]] && return 0
	done
	return 1
}

# ------------------------------------------------------------------- args --
SKIP_CLUSTER=${LIFTWATCH_SKIP_CLUSTER:-0}
[[ $SKIP_CLUSTER == 1 || $SKIP_CLUSTER == true || $SKIP_CLUSTER == yes ]] && SKIP_CLUSTER=1 || SKIP_CLUSTER=0
FORCE=0
while [[ $# -gt 0 ]]; do
	case $1 in
	--no-cluster) SKIP_CLUSTER=1 ;;
	--force) FORCE=1 ;;
	-h | --help) usage; exit 0 ;;
	*) usage >&2; die "unknown argument: $1" "see --help" ;;
	esac
	shift
done

START_TS=$(date +%s)

# ------------------------------------------------------------------ setup --
STEP="prepare cache directory"
if [[ -n ${LIFTWATCH_TSDB_CACHE_DIR:-} ]]; then
	CACHE_DIR=$LIFTWATCH_TSDB_CACHE_DIR
elif [[ $EUID -eq 0 ]]; then
	CACHE_DIR=/var/cache/liftwatch-timescaledb
else
	CACHE_DIR=${XDG_CACHE_HOME:-$HOME/.cache}/liftwatch-timescaledb
fi
mkdir -p "$CACHE_DIR/logs"
LOG="$CACHE_DIR/logs/run-$(date +%Y%m%d-%H%M%S)-$$.log"
: >"$LOG"
# keep the 10 newest logs
{ ls -1t "$CACHE_DIR"/logs/run-*.log 2>/dev/null || true; } | tail -n +11 | xargs -r rm -f --

if command -v flock >/dev/null 2>&1; then
	exec 9>"$CACHE_DIR/.lock"
	flock -n 9 || die "another $SCRIPT_NAME run holds $CACHE_DIR/.lock" "wait for it to finish, then re-run."
fi

if ! command -v dpkg-query >/dev/null 2>&1 || ! command -v apt-get >/dev/null 2>&1; then
	die "this script needs a Debian system with apt" "install TimescaleDB by other means on this OS."
fi

STEP="locate pg_config"
if [[ -n ${PG_CONFIG:-} ]]; then
	PG_CONFIG_ARG=$PG_CONFIG
	[[ -x $PG_CONFIG ]] || PG_CONFIG=$(command -v "$PG_CONFIG" || true)
	[[ -n $PG_CONFIG && -x $PG_CONFIG ]] || die "PG_CONFIG=$PG_CONFIG_ARG is not an executable" "point PG_CONFIG at a pg_config binary, or unset it."
else
	PG_CONFIG=""
	# highest version that has a server; else highest pg_config; else PATH
	PG_BINDIRS=$({ ls -d /usr/lib/postgresql/*/bin 2>/dev/null || true; } | sort -V -r)
	for d in $PG_BINDIRS; do
		if [[ -x $d/pg_config && -x $d/postgres ]]; then PG_CONFIG=$d/pg_config; break; fi
	done
	if [[ -z $PG_CONFIG ]]; then
		for d in $PG_BINDIRS; do
			if [[ -x $d/pg_config ]]; then PG_CONFIG=$d/pg_config; break; fi
		done
	fi
	[[ -n $PG_CONFIG ]] || PG_CONFIG=$(command -v pg_config || true)
	[[ -n $PG_CONFIG ]] || die "no pg_config found" "install PostgreSQL (apt-get install postgresql) or set PG_CONFIG."
fi
PG_VERSION_STR=$("$PG_CONFIG" --version)
PG_MAJOR=$(printf '%s' "$PG_VERSION_STR" | sed -nE 's/^PostgreSQL ([0-9]+).*/\1/p')
[[ -n $PG_MAJOR ]] || die "cannot parse PostgreSQL version from '$PG_VERSION_STR'" "set PG_CONFIG to a valid pg_config."
SHAREDIR=$("$PG_CONFIG" --sharedir)
PKGLIBDIR=$("$PG_CONFIG" --pkglibdir)
PG_BINDIR=$("$PG_CONFIG" --bindir)
say "using $PG_CONFIG ($PG_VERSION_STR)"

# ---------------------------------------------------- support packages --
apt_install_missing "project support packages" "${PROJECT_SUPPORT_PACKAGES[@]}"

# ---------------------------------------------------- extension build --
STEP="check installed extension"
INSTALLED=$(installed_version)
if [[ -n $INSTALLED && $FORCE -eq 0 ]]; then
	say "timescaledb $INSTALLED already installed for PostgreSQL $PG_MAJOR — skipping build"
	# If a previous run left the trixie index in the cache, mention a newer version (offline).
	if [[ -f $CACHE_DIR/apt/sources.list && -d $CACHE_DIR/apt/lists ]]; then
		cached=$(apt-cache -o Dir::Etc::sourcelist="$CACHE_DIR/apt/sources.list" -o Dir::Etc::sourceparts=- \
			-o Dir::State::lists="$CACHE_DIR/apt/lists" -o Dir::Cache="$CACHE_DIR/apt/cache" \
			showsrc --only-source "$TSDB_SOURCE_PACKAGE" 2>/dev/null | awk '/^Version:/ {print $2}' | sort -V | tail -n1 || true)
		if [[ -n $cached && $(upstream_version "$cached") != "$INSTALLED" ]]; then
			say "note: $TSDB_SOURCE_SUITE had timescaledb $cached at the last download; re-run with --force to rebuild"
		fi
	fi
else
	[[ -n $INSTALLED ]] && say "--force: rebuilding although timescaledb $INSTALLED is installed"

	apt_install_missing "build dependencies" build-essential cmake xz-utils libssl-dev "postgresql-server-dev-$PG_MAJOR"
	INCLUDEDIR_SERVER=$("$PG_CONFIG" --includedir-server)
	[[ -f $INCLUDEDIR_SERVER/postgres.h ]] ||
		die "PostgreSQL server headers not found in $INCLUDEDIR_SERVER" \
			"install the server headers matching $PG_CONFIG (postgresql-server-dev-$PG_MAJOR) or set PG_CONFIG."

	STEP="fetch $TSDB_SOURCE_SUITE source package"
	MIRROR=${LIFTWATCH_DEBIAN_MIRROR:-$(find_debian_mirror)}
	[[ -n $MIRROR ]] || die "no Debian mirror URI found in /etc/apt/sources.list.d/*.sources or /etc/apt/sources.list" \
		"set LIFTWATCH_DEBIAN_MIRROR to a Debian mirror URI (the .../debian directory)."
	[[ -r $ARCHIVE_KEYRING ]] || apt_install_missing "Debian archive keyring" debian-archive-keyring
	APT_DIR=$CACHE_DIR/apt
	mkdir -p "$APT_DIR/lists/partial" "$APT_DIR/cache/archives/partial" "$CACHE_DIR/src"
	printf 'deb-src [signed-by=%s] %s %s main\n' "$ARCHIVE_KEYRING" "$MIRROR" "$TSDB_SOURCE_SUITE" >"$APT_DIR/sources.list"
	APT_PRIVATE=(-o Dir::Etc::sourcelist="$APT_DIR/sources.list" -o Dir::Etc::sourceparts=-
		-o Dir::State::lists="$APT_DIR/lists" -o Dir::Cache="$APT_DIR/cache")
	# let apt's unprivileged download user write into the download dirs
	if [[ $EUID -eq 0 ]] && id _apt >/dev/null 2>&1; then chown _apt "$CACHE_DIR/src" "$APT_DIR/lists/partial"; fi
	say "updating private apt index for $TSDB_SOURCE_SUITE (deb-src $MIRROR)"
	run_logged "private apt-get update" "check network access to $MIRROR (or set LIFTWATCH_DEBIAN_MIRROR)" \
		apt-get "${APT_PRIVATE[@]}" --error-on=any update
	SRC_VERSION=$({ apt-cache "${APT_PRIVATE[@]}" showsrc --only-source "$TSDB_SOURCE_PACKAGE" 2>>"$LOG" || true; } |
		awk '/^Version:/ {print $2}' | sort -V | tail -n1)
	[[ -n $SRC_VERSION ]] || die "source package $TSDB_SOURCE_PACKAGE not found in $TSDB_SOURCE_SUITE" \
		"check that $MIRROR carries $TSDB_SOURCE_SUITE/main sources."
	TSDB_VERSION=$(upstream_version "$SRC_VERSION")
	if [[ $TSDB_VERSION == "$TSDB_EXPECTED_SERIES".* ]]; then
		say "$TSDB_SOURCE_SUITE has $TSDB_SOURCE_PACKAGE $SRC_VERSION (TimescaleDB $TSDB_VERSION)"
	else
		say "NOTE: $TSDB_SOURCE_SUITE has $TSDB_SOURCE_PACKAGE $SRC_VERSION (TimescaleDB $TSDB_VERSION, not $TSDB_EXPECTED_SERIES.x) — building it anyway"
	fi
	NOEPOCH=${SRC_VERSION#*:}
	ORIG_PREFIX="${TSDB_SOURCE_PACKAGE}_${NOEPOCH%-*}.orig.tar."
	# drop files of other versions from the download cache
	find "$CACHE_DIR/src" -maxdepth 1 -type f -name "${TSDB_SOURCE_PACKAGE}_*" \
		! -name "${TSDB_SOURCE_PACKAGE}_${NOEPOCH}*" ! -name "${ORIG_PREFIX}*" -delete
	say "downloading source package $TSDB_SOURCE_PACKAGE $SRC_VERSION"
	cd "$CACHE_DIR/src"
	run_logged "apt-get source --download-only" "check network access to $MIRROR" \
		apt-get "${APT_PRIVATE[@]}" source --download-only "$TSDB_SOURCE_PACKAGE=$SRC_VERSION"
	cd - >/dev/null
	ORIG=$(ls -1 "$CACHE_DIR/src/${ORIG_PREFIX}"* 2>/dev/null | head -n1 || true)
	[[ -n $ORIG ]] || die "no ${ORIG_PREFIX}* in $CACHE_DIR/src after download" "see $LOG."

	STEP="build timescaledb $TSDB_VERSION"
	rm -rf "$CACHE_DIR"/build.* # leftovers of failed runs
	BUILD_TMP=$(mktemp -d "$CACHE_DIR/build.XXXXXX")
	trap 'rm -rf "$BUILD_TMP"' EXIT
	tar -xf "$ORIG" -C "$BUILD_TMP"
	SRC_DIR=$(find "$BUILD_TMP" -mindepth 1 -maxdepth 1 -type d | head -n1)
	[[ -x $SRC_DIR/bootstrap ]] || die "unexpected source layout in $ORIG (no bootstrap)" "see $BUILD_TMP."
	say "configuring (log: $LOG)"
	BUILD_HINT="TimescaleDB $TSDB_VERSION may not support PostgreSQL $PG_MAJOR, or a build dependency is missing; see the log"
	# Telemetry compiled out (as Debian's package does): no phone-home to an outside host.
	cd "$SRC_DIR"
	run_logged "cmake configure (./bootstrap)" "$BUILD_HINT" \
		env BUILD_FORCE_REMOVE=true ./bootstrap -DAPACHE_ONLY=ON -DREGRESS_CHECKS=OFF -DTAP_CHECKS=OFF -DWARNINGS_AS_ERRORS=OFF \
		-DLINTER=OFF -DCMAKE_BUILD_TYPE=Release -DUSE_TELEMETRY=OFF -DSEND_TELEMETRY_DEFAULT=OFF \
		-DPG_CONFIG="$PG_CONFIG" </dev/null
	cd - >/dev/null
	say "compiling with $(nproc) jobs (log: $LOG)"
	run_logged "make" "$BUILD_HINT" make -C "$SRC_DIR/build" -j"$(nproc)"

	STEP="install timescaledb $TSDB_VERSION"
	say "installing into $SHAREDIR/extension and $PKGLIBDIR"
	run_logged "make install" "re-run as root; if the install was interrupted, re-run with --force" \
		as_root make -C "$SRC_DIR/build" install
	INSTALLED=$(installed_version)
	[[ $INSTALLED == "$TSDB_VERSION" ]] ||
		die "after make install, installed version is '${INSTALLED:-none}', expected $TSDB_VERSION" "see $LOG."
	say "timescaledb $INSTALLED installed for PostgreSQL $PG_MAJOR"
	rm -rf "$BUILD_TMP"
	trap - EXIT
fi

# ----------------------------------------------------------- clusters --
if [[ $SKIP_CLUSTER -eq 1 ]]; then
	say "--no-cluster: not configuring or restarting any cluster"
	say "done in $(($(date +%s) - START_TS))s"
	exit 0
fi
STEP="configure clusters"
if ! command -v pg_lsclusters >/dev/null 2>&1; then
	say "pg_lsclusters not found (no postgresql-common) — skipping cluster configuration; add timescaledb to shared_preload_libraries yourself"
	say "done in $(($(date +%s) - START_TS))s"
	exit 0
fi
CLUSTERS=$(pg_lsclusters -h | awk -v v="$PG_MAJOR" '$1 == v {print $2, $4}')
if [[ -z $CLUSTERS ]]; then
	say "no PostgreSQL $PG_MAJOR cluster on this machine — skipping cluster configuration"
fi
PGCTL_OPTS=()
[[ -d /run/systemd/system ]] || PGCTL_OPTS=(--skip-systemctl-redirect)
PSQL=/usr/bin/psql # postgresql-common's wrapper, understands --cluster

while read -r CL_NAME CL_STATUS <&3; do
	[[ -n ${CL_NAME:-} ]] || continue
	CL="$PG_MAJOR/$CL_NAME"
	STEP="configure cluster $CL"
	CONFDIR=/etc/postgresql/$PG_MAJOR/$CL_NAME
	CONF=$CONFDIR/postgresql.conf
	[[ -f $CONF ]] || die "$CONF not found" "check pg_lsclusters; use --no-cluster to skip cluster setup."
	configured() { as_postgres "$PG_BINDIR/postgres" -C shared_preload_libraries -c config_file="$CONF"; }
	CURRENT=$(configured) || die "cannot read shared_preload_libraries of $CL" "check $CONF for syntax errors."
	if has_timescaledb "$CURRENT"; then
		say "cluster $CL: shared_preload_libraries already has timescaledb ('$CURRENT')"
	else
		NEW=$(printf '%s' "$CURRENT" | sed -E 's/^[[:space:],]+//; s/[[:space:],]+$//')
		NEW=${NEW:+$NEW,}timescaledb
		if grep -Eq "^[[:space:]]*include_dir[[:space:]]*=?[[:space:]]*'conf\.d'" "$CONF"; then
			DROPIN=$CONFDIR/conf.d/$DROPIN_NAME
			say "cluster $CL: shared_preload_libraries '$CURRENT' -> '$NEW' (writing $DROPIN)"
			TMPF=$(mktemp)
			printf "# Written by Liftwatch scripts/install-timescaledb.sh: load TimescaleDB.\n# Keeps the libraries that were configured before (%s).\nshared_preload_libraries = '%s'\n" \
				"${CURRENT:-none}" "$NEW" >"$TMPF"
			as_root install -m 0644 -o postgres -g postgres "$TMPF" "$DROPIN"
			rm -f "$TMPF"
		else
			say "cluster $CL: shared_preload_libraries '$CURRENT' -> '$NEW' (pg_conftool set in $CONF)"
			as_root pg_conftool "$PG_MAJOR" "$CL_NAME" set shared_preload_libraries "$NEW"
		fi
		AFTER=$(configured)
		has_timescaledb "$AFTER" ||
			die "shared_preload_libraries of $CL is still '$AFTER' after the change: it is overridden later (postgresql.auto.conf from ALTER SYSTEM, or a later include)" \
				"run as postgres: ALTER SYSTEM SET shared_preload_libraries = '$NEW'; or remove the overriding setting, then re-run."
	fi

	STEP="(re)start cluster $CL"
	if [[ $CL_STATUS != online* ]]; then
		say "cluster $CL is $CL_STATUS — starting it"
		run_logged "pg_ctlcluster start $CL" "see /var/log/postgresql/postgresql-$PG_MAJOR-$CL_NAME.log" \
			as_root pg_ctlcluster "${PGCTL_OPTS[@]}" "$PG_MAJOR" "$CL_NAME" start
	else
		RUNNING=$(as_postgres "$PSQL" --cluster "$CL" -XAtqc 'SHOW shared_preload_libraries' -d postgres) ||
			die "cannot connect to running cluster $CL as postgres" "check that the postgres OS user can connect via the local socket."
		if has_timescaledb "$RUNNING"; then
			say "cluster $CL is running with timescaledb loaded — no restart"
		else
			say "restarting cluster $CL to load timescaledb (running with '$RUNNING')"
			run_logged "pg_ctlcluster restart $CL" "see /var/log/postgresql/postgresql-$PG_MAJOR-$CL_NAME.log" \
				as_root pg_ctlcluster "${PGCTL_OPTS[@]}" "$PG_MAJOR" "$CL_NAME" restart
		fi
	fi

	STEP="check CREATE EXTENSION in cluster $CL"
	psql_c() { PGOPTIONS='-c client_min_messages=warning' as_postgres "$PSQL" --cluster "$CL" -XAtq -v ON_ERROR_STOP=1 "$@"; }
	psql_c -d postgres -c "DROP DATABASE IF EXISTS $CHECK_DB" -c "CREATE DATABASE $CHECK_DB" >>"$LOG" 2>&1 ||
		die "cannot create scratch database $CHECK_DB in $CL" "see $LOG."
	EXTV=$(psql_c -d "$CHECK_DB" -c 'CREATE EXTENSION IF NOT EXISTS timescaledb' \
		-c "SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'" 2>>"$LOG") || EXTV=""
	psql_c -d postgres -c "DROP DATABASE IF EXISTS $CHECK_DB" >>"$LOG" 2>&1 || warn "could not drop $CHECK_DB in $CL"
	[[ -n $EXTV ]] || {
		printf '%s: last lines of %s:\n' "$SCRIPT_NAME" "$LOG" >&2
		tail -n 20 "$LOG" | sed 's/^/    /' >&2
		die "CREATE EXTENSION timescaledb failed in cluster $CL" "see the log lines above and /var/log/postgresql/postgresql-$PG_MAJOR-$CL_NAME.log."
	}
	say "cluster $CL: CREATE EXTENSION timescaledb OK (version $EXTV, scratch database dropped)"
done 3<<<"$CLUSTERS"

say "done in $(($(date +%s) - START_TS))s"
