// The POSIX sh join script served by the download server (`curl -fsSL http://SERVER/join | sh`).
//
// What it does, in order: checks root, /dev/net/tun, OS and architecture; finds node >= 20 (or
// downloads a runtime from the same server); downloads this VM's configured TinyVR (one-time URL,
// verified: config line + sha256 of the bundle); stops a previous instance; runs the TinyVR as a
// systemd unit, or without systemd under a small restart-with-backoff supervisor; waits for
// status.json to say "joined" and prints the address. `--uninstall` (or an uninstall rendering)
// removes all of it. Every server-provided value is shell-quoted with shQuote().
//
// The whole body is one function called on the last line, so a partial download runs nothing.

export interface JoinScriptOptions {
  /** Public base URL of the download server, e.g. "http://203.0.113.5:8080" (http or https). */
  serverUrl: string;
  /** The FullVR chosen for this VM and why (shown to the user). */
  fullvr: { id: number; endpoint: string; why: string };
  /** Overlay network the VM joins. */
  network: number;
  /** TinyViNe version (shown). */
  version: string;
  /** TinyvrBundle.sha256: digest of the bundle after its config line. */
  bundleSha256: string;
  /** TinyvrBundle.arch / os: what the embedded native addon was built for ("x64", "linux"). */
  arch: string;
  os: string;
  /** Where to fetch this VM's configured TinyVR (absolute, or relative to serverUrl). Required unless uninstall. */
  bundleUrl?: string;
  /** Render a script that removes TinyViNe (the normal script does that too with --uninstall). */
  uninstall?: boolean;
  /** Oldest usable node major version on the VM (default 20). */
  nodeMinMajor?: number;
}

/** Exit codes of the join script (also listed at its top). */
export const JOIN_EXIT = {
  usage: 2,
  notRoot: 10,
  noTun: 11,
  unsupported: 12,
  noNode: 13,
  downloadFailed: 14,
  joinTimeout: 15,
  tinyvrExited: 16,
} as const;

/**
 * Quotes a string for POSIX sh: the result is one word that expands to exactly `s`, whatever it
 * contains (quotes, $, backquotes, newlines, globs...). Throws on NUL, which no shell string holds.
 */
export function shQuote(s: string): string {
  if (typeof s !== 'string') throw new TypeError('shQuote: not a string');
  if (s.includes('\0')) throw new Error('shQuote: a NUL byte cannot be passed to the shell');
  if (s !== '' && /^[A-Za-z0-9_@%+=:,./-]+$/.test(s)) return s;
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

/** Text safe inside a `#` comment: printable ASCII only, one line. */
function commentSafe(s: string, max = 200): string {
  const t = s.replace(/[^\x20-\x7e]/g, '?');
  return t.length > max ? t.slice(0, max - 3) + '...' : t;
}

function resolveOptions(o: JoinScriptOptions) {
  let server: URL;
  try {
    server = new URL(o.serverUrl);
  } catch {
    throw new Error(`renderJoinScript: serverUrl "${o.serverUrl}" is not a URL`);
  }
  if (server.protocol !== 'http:' && server.protocol !== 'https:') throw new Error(`renderJoinScript: serverUrl must be http or https, got ${server.protocol}`);
  server.search = '';
  server.hash = '';
  const serverUrl = server.toString().replace(/\/+$/, '');
  const uninstall = o.uninstall === true;
  let bundleUrl = '';
  if (!uninstall) {
    if (!o.bundleUrl) throw new Error('renderJoinScript: bundleUrl is required (unless uninstall)');
    const u = new URL(o.bundleUrl, serverUrl + '/');
    if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new Error(`renderJoinScript: bundleUrl must be http or https, got ${u.protocol}`);
    bundleUrl = u.toString();
    if (!/^[0-9a-f]{64}$/.test(o.bundleSha256)) throw new Error('renderJoinScript: bundleSha256 must be 64 lowercase hex digits');
  }
  const nodeMinMajor = o.nodeMinMajor ?? 20;
  if (!Number.isInteger(nodeMinMajor) || nodeMinMajor < 1 || nodeMinMajor > 999) throw new Error('renderJoinScript: nodeMinMajor must be an integer 1..999');
  if (!Number.isInteger(o.network) || o.network < 0) throw new Error('renderJoinScript: network must be a non-negative integer');
  if (!Number.isInteger(o.fullvr.id) || o.fullvr.id < 0) throw new Error('renderJoinScript: fullvr.id must be a non-negative integer');
  return { serverUrl, bundleUrl, uninstall, nodeMinMajor };
}

/** Renders the join (or uninstall) script. Throws on invalid options (a server bug, not user input). */
export function renderJoinScript(o: JoinScriptOptions): string {
  const r = resolveOptions(o);
  const q = shQuote;
  const what = r.uninstall
    ? 'removes TinyViNe from this machine'
    : `joins this machine to overlay network ${o.network} through FullVR ${o.fullvr.id} (${commentSafe(o.fullvr.endpoint, 80)})`;
  return `#!/bin/sh
# TinyViNe ${commentSafe(o.version, 40)} join script from ${commentSafe(r.serverUrl)}
# It ${what}.
#
#   curl -fsSL ${commentSafe(r.serverUrl)}/join | sh                  join
#   curl -fsSL ${commentSafe(r.serverUrl)}/join | sh -s -- --uninstall   remove everything it installed
#
# Installs into $TINYVINE_PREFIX (default /opt/tinyvine): the TinyVR (tinyvr.mjs), a node runtime
# if the machine has no node >= ${r.nodeMinMajor}, status.json, tinyvr.log; runs it as the systemd unit
# tinyvine.service, or without systemd (or with TINYVINE_NO_SYSTEMD=1) under supervise.sh.
# Running it again replaces the running TinyVR; it never starts a second one.
#
# Environment: TINYVINE_PREFIX=/opt/tinyvine  TINYVINE_JOIN_WAIT=30 (seconds)  TINYVINE_NO_SYSTEMD=1
#
# Exit codes:
#    0  joined (or uninstalled)
#    2  usage: unknown argument or bad environment value
#   10  not root
#   11  /dev/net/tun missing
#   12  OS or architecture not supported by this download server
#   13  no usable node (none >= ${r.nodeMinMajor} installed, runtime download failed)
#   14  download of the TinyVR failed (or it is damaged)
#   15  the TinyVR did not join within TINYVINE_JOIN_WAIT seconds (it keeps trying)
#   16  the TinyVR exited (its last log line is printed)
#
# Everything is inside main(), called on the last line: a partial download does nothing.

main() {
  set -eu
  umask 077

  # Values from the download server.
  SERVER=${q(r.serverUrl)}
  BUNDLE_URL=${q(r.bundleUrl)}
  TV_VERSION=${q(o.version)}
  NETWORK=${q(String(o.network))}
  FULLVR_ID=${q(String(o.fullvr.id))}
  FULLVR_ENDPOINT=${q(o.fullvr.endpoint)}
  FULLVR_WHY=${q(o.fullvr.why)}
  BUNDLE_SHA256=${q(o.bundleSha256)}
  BUNDLE_ARCH=${q(o.arch)}
  BUNDLE_OS=${q(o.os)}
  NODE_MIN_MAJOR=${q(String(r.nodeMinMajor))}
  MODE=${q(r.uninstall ? 'uninstall' : 'install')}

  PREFIX=\${TINYVINE_PREFIX:-/opt/tinyvine}
  JOIN_WAIT=\${TINYVINE_JOIN_WAIT:-30}
  NO_SYSTEMD=\${TINYVINE_NO_SYSTEMD:-0}
  UNIT=/etc/systemd/system/tinyvine.service

  say() { printf 'tinyvine: %s\\n' "$*" >&2; }
  step() { printf 'tinyvine: %s…\\n' "$*" >&2; }
  die() {
    die_code=$1
    shift
    printf 'tinyvine: %s\\n' "$*" >&2
    exit "$die_code"
  }
  usage() {
    printf '%s\\n' "TinyViNe $TV_VERSION join script from $SERVER" \\
      "  joins network $NETWORK through FullVR $FULLVR_ID $FULLVR_ENDPOINT ($FULLVR_WHY)" \\
      "usage: sh join.sh [--uninstall]" \\
      "  --uninstall   stop the TinyVR and remove everything the join script installed" \\
      "environment: TINYVINE_PREFIX (default /opt/tinyvine), TINYVINE_JOIN_WAIT (default 30 s)," \\
      "  TINYVINE_NO_SYSTEMD=1 (supervised background process instead of a systemd unit)"
  }

  for arg in "$@"; do
    case $arg in
      --uninstall) MODE=uninstall ;;
      -h | --help)
        usage
        return 0
        ;;
      *)
        usage >&2
        die 2 "unknown argument: $arg"
        ;;
    esac
  done

  PREFIX=\${PREFIX%/}
  case $PREFIX in
    /*) ;;
    *) die 2 "TINYVINE_PREFIX must be an absolute path, not '$PREFIX'" ;;
  esac
  case $PREFIX in
    *[!A-Za-z0-9._/-]* | */. | */./* | */.. | */../*) die 2 "TINYVINE_PREFIX may contain only letters, digits, '.', '_', '-' and '/': '$PREFIX'" ;;
  esac
  case $JOIN_WAIT in
    '' | *[!0-9]*) die 2 "TINYVINE_JOIN_WAIT must be a whole number of seconds, not '$JOIN_WAIT'" ;;
  esac
  BUNDLE=$PREFIX/tinyvr.mjs
  NODE_RUNTIME=$PREFIX/node
  SUPERVISOR=$PREFIX/supervise.sh
  PIDFILE=$PREFIX/tinyvine.pid
  STATUS=$PREFIX/status.json
  TICKET=$PREFIX/ticket
  LOG=$PREFIX/tinyvr.log
  MARKER=$PREFIX/.tinyvine-prefix
  TMP_BUNDLE=$PREFIX/.tinyvr.mjs.$$
  TMP_NODE=$PREFIX/.node.$$
  trap 'rm -f "$TMP_BUNDLE" "$TMP_NODE" "$UNIT.tmp.$$" "$SUPERVISOR.tmp.$$" 2>/dev/null || :' EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM

  have_systemd() { [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; }

  # Pids of every process running our supervisor or our TinyVR (whoever started it).
  ours() {
    # One grep over every command line instead of a process per /proc entry. The patterns
    # bracket the last dot so grep's own command line (which holds them) never matches.
    ours_sup="\${SUPERVISOR%.sh}[.]sh"
    ours_bun="\${BUNDLE%.mjs}[.]mjs"
    grep -ls -e "$ours_sup" -e "$ours_bun" /proc/[0-9]*/cmdline 2>/dev/null | while IFS= read -r ours_f; do
      ours_pid=\${ours_f#/proc/}
      ours_pid=\${ours_pid%/cmdline}
      [ "$ours_pid" = "$$" ] || printf '%s\\n' "$ours_pid"
    done
    return 0
  }

  # Stops whatever runs now (unit, supervisor, stray TinyVR); true if something was running.
  stop_running() {
    stopped=
    if [ -f "$UNIT" ] && have_systemd && systemctl is-active --quiet tinyvine.service 2>/dev/null; then
      systemctl stop tinyvine.service || true
      stopped=1
    fi
    if [ -f "$PIDFILE" ]; then
      old_pid=$(cat "$PIDFILE" 2>/dev/null) || old_pid=
      case $old_pid in '' | *[!0-9]*) old_pid= ;; esac
      # only if that pid still is our supervisor (pids are reused)
      if [ -n "$old_pid" ] && tr '\\0' ' ' 2>/dev/null <"/proc/$old_pid/cmdline" | grep -qF " $SUPERVISOR "; then
        kill -TERM "$old_pid" 2>/dev/null || true
        stopped=1
      fi
    fi
    left=$(ours)
    if [ -n "$left" ]; then
      # shellcheck disable=SC2086 # one pid per word
      kill -TERM $left 2>/dev/null || true
      stopped=1
    fi
    waited=0
    while [ -n "$(ours)" ]; do
      if [ "$waited" -ge 15 ]; then
        say "the old TinyVR did not stop within 15 s: killing it"
        # shellcheck disable=SC2046 # one pid per word
        kill -KILL $(ours) 2>/dev/null || true
        sleep 1
        break
      fi
      sleep 1
      waited=$((waited + 1))
    done
    rm -f "$PIDFILE"
    [ -n "$stopped" ]
  }

  remove_unit() {
    [ -f "$UNIT" ] || return 1
    if have_systemd; then systemctl disable --now --quiet tinyvine.service >/dev/null 2>&1 || true; fi
    rm -f "$UNIT"
    if have_systemd; then systemctl daemon-reload || true; fi
    return 0
  }

  uninstall() {
    removed=
    if stop_running; then
      say "stopped the TinyVR"
      removed=1
    fi
    if remove_unit; then
      say "removed the systemd unit $UNIT"
      removed=1
    fi
    if [ -f "$MARKER" ]; then
      rm -rf "$PREFIX"
      say "removed $PREFIX"
      removed=1
    elif [ -d "$PREFIX" ]; then
      # a directory we did not create: remove only our files from it
      for f in "$BUNDLE" "$NODE_RUNTIME" "$SUPERVISOR" "$PIDFILE" "$STATUS" "$TICKET" "$LOG" "$LOG.1" "$PREFIX"/tinyvine_native-*.node; do
        if [ -e "$f" ]; then
          rm -f "$f"
          say "removed $f"
          removed=1
        fi
      done
      rmdir "$PREFIX" 2>/dev/null || true
    fi
    [ -n "$removed" ] || say "nothing to remove: TinyViNe is not installed in $PREFIX"
    return 0
  }

  fetch() { # URL FILE
    if command -v curl >/dev/null 2>&1; then
      curl -fsSL --retry 3 --connect-timeout 15 -o "$2" "$1"
    elif command -v wget >/dev/null 2>&1; then
      wget -q -T 30 -O "$2" "$1"
    else
      say "neither curl nor wget is installed"
      return 127
    fi
  }

  node_major() { # prints the major version of the node binary $1
    nm_v=$("$1" --version 2>/dev/null </dev/null) || return 1
    nm_v=\${nm_v#v}
    nm_v=\${nm_v%%.*}
    case $nm_v in '' | *[!0-9]*) return 1 ;; esac
    printf '%s\\n' "$nm_v"
  }

  sha256_of_body() { # digest of file $1 after its first line
    if command -v sha256sum >/dev/null 2>&1; then
      tail -n +2 "$1" | sha256sum | cut -d ' ' -f 1
    elif command -v openssl >/dev/null 2>&1; then
      tail -n +2 "$1" | openssl dgst -sha256 | sed 's/^.* //'
    fi
  }

  last_error() {
    le=$(grep '^tinyvine: ' "$LOG" 2>/dev/null | tail -n 1) || le=
    [ -n "$le" ] || le=$(grep -v '^tinyvine-supervise: ' "$LOG" 2>/dev/null | tail -n 1) || le=
    printf '%s\\n' "\${le#tinyvine: }"
  }

  # True once the TinyVR exited (supervisor restart line, one-line error, process gone).
  tinyvr_died() {
    grep -q '^tinyvine-supervise: tinyvr exited' "$LOG" 2>/dev/null && return 0
    grep -q '^tinyvine: ' "$LOG" 2>/dev/null && return 0
    if [ "$SERVICE" = systemd ]; then
      systemctl is-failed --quiet tinyvine.service 2>/dev/null && return 0
      restarts=$(systemctl show -p NRestarts --value tinyvine.service 2>/dev/null) || restarts=0
      case $restarts in '' | *[!0-9]*) restarts=0 ;; esac
      [ "$restarts" -gt 0 ] && return 0
    else
      kill -0 "$SUPERVISOR_PID" 2>/dev/null && return 1
      sup=$(cat "$PIDFILE" 2>/dev/null) || sup=
      [ -n "$sup" ] && kill -0 "$sup" 2>/dev/null && return 1
      return 0
    fi
    return 1
  }

  write_supervisor() {
    cat >"$SUPERVISOR.tmp.$$" <<'SUPERVISE'
#!/bin/sh
# tinyvine supervisor, written by the join script. Usage: supervise.sh PIDFILE COMMAND [ARG...]
# Runs COMMAND (the TinyVR) and restarts it when it exits non-zero, after 1, 2, 4 ... 60 s
# (back to 1 s after a run of 60 s or more). SIGTERM, SIGINT or SIGHUP stop the TinyVR (with
# SIGTERM) and then this loop. Lines it logs start with "tinyvine-supervise:".
pidfile=$1
shift
umask 077
echo "$$" >"$pidfile.$$" && mv -f "$pidfile.$$" "$pidfile"
child=
forget_pidfile() {
  if [ "$(cat "$pidfile" 2>/dev/null)" = "$$" ]; then rm -f "$pidfile"; fi
}
stop() {
  trap '' TERM INT HUP
  if [ -n "$child" ]; then
    kill -TERM "$child" 2>/dev/null
    wait "$child" 2>/dev/null
  fi
  forget_pidfile
  echo "tinyvine-supervise: stopped"
  exit 0
}
trap stop TERM INT HUP
delay=1
while :; do
  started=$(date +%s)
  "$@" </dev/null &
  child=$!
  wait "$child"
  code=$?
  child=
  if [ "$code" -eq 0 ]; then
    echo "tinyvine-supervise: tinyvr exited cleanly; not restarting"
    forget_pidfile
    exit 0
  fi
  if [ $(($(date +%s) - started)) -ge 60 ]; then delay=1; fi
  echo "tinyvine-supervise: tinyvr exited with code $code; restarting in $delay s"
  sleep "$delay" &
  child=$!
  wait "$child"
  child=
  delay=$((delay * 2))
  if [ "$delay" -gt 60 ]; then delay=60; fi
done
SUPERVISE
    chmod 700 "$SUPERVISOR.tmp.$$"
    mv -f "$SUPERVISOR.tmp.$$" "$SUPERVISOR"
  }

  unit_word() { # one ExecStart= word: quoted for systemd when it needs to be
    case $1 in
      *[!A-Za-z0-9._/+:=@-]*) printf '"%s"' "$(printf '%s' "$1" | sed -e 's/[\\\\"]/\\\\&/g' -e 's/%/%%/g' -e 's/[$]/$$/g')" ;;
      *) printf '%s' "$1" ;;
    esac
  }

  write_unit() {
    {
      printf '%s\\n' "# written by the tinyvine join script from $SERVER; to remove:" \\
        "#   curl -fsSL $SERVER/join | sh -s -- --uninstall" \\
        '[Unit]' \\
        "Description=TinyViNe TinyVR (overlay network $NETWORK)" \\
        'Wants=network-online.target' \\
        'After=network-online.target' \\
        'StartLimitIntervalSec=0' \\
        '' \\
        '[Service]' \\
        'Type=simple' \\
        "Environment=TINYVINE_STATE_DIR=$PREFIX" \\
        "ExecStart=$(unit_word "$NODE") $BUNDLE --status-file $STATUS --ticket-file $TICKET" \\
        'Restart=always' \\
        'RestartSec=2' \\
        'RestartSteps=5' \\
        'RestartMaxDelaySec=60' \\
        'UMask=0077' \\
        'StandardInput=null' \\
        "StandardOutput=append:$LOG" \\
        "StandardError=append:$LOG" \\
        'TimeoutStopSec=20' \\
        '' \\
        '[Install]' \\
        'WantedBy=multi-user.target'
    } >"$UNIT.tmp.$$"
    chmod 644 "$UNIT.tmp.$$"
    mv -f "$UNIT.tmp.$$" "$UNIT"
  }

  step "checking root"
  [ "$(id -u)" = 0 ] || die 10 "must run as root: curl -fsSL $SERVER/join | sudo sh"

  if [ "$MODE" = uninstall ]; then
    step "removing TinyViNe from $PREFIX"
    uninstall
    return 0
  fi

  step "checking /dev/net/tun"
  if [ ! -c /dev/net/tun ] && command -v modprobe >/dev/null 2>&1; then modprobe tun 2>/dev/null || true; fi
  [ -c /dev/net/tun ] || die 11 "/dev/net/tun does not exist: load the tun module (modprobe tun), or in a container pass the device (docker run --device /dev/net/tun --cap-add NET_ADMIN; LXC/Proxmox: enable TUN for the container)"

  step "checking OS and architecture"
  os=$(uname -s)
  [ "$os" = Linux ] || die 12 "OS $os not supported: the TinyVR runs on Linux"
  [ "$BUNDLE_OS" = linux ] || die 12 "this download server's TinyVR was built for $BUNDLE_OS, not Linux"
  machine=$(uname -m)
  case $machine in
    x86_64 | amd64) arch=x64 ;;
    aarch64 | arm64 | armv8*) arch=arm64 ;;
    armv7* | armv6*) arch=arm ;;
    i386 | i486 | i586 | i686) arch=ia32 ;;
    ppc64le) arch=ppc64 ;;
    *) arch=$machine ;;
  esac
  [ "$arch" = "$BUNDLE_ARCH" ] || die 12 "architecture $machine not supported by this download server (it serves $BUNDLE_ARCH)"

  if [ ! -d "$PREFIX" ]; then
    mkdir -p "$PREFIX" || die 2 "cannot create $PREFIX"
    chmod 755 "$PREFIX"
    : >"$MARKER"
  elif [ ! -f "$MARKER" ] && [ -z "$(ls -A "$PREFIX")" ]; then
    : >"$MARKER"
  fi

  step "checking node (>= $NODE_MIN_MAJOR)"
  NODE=
  if command -v node >/dev/null 2>&1; then
    m=$(node_major node) || m=0
    if [ "$m" -ge "$NODE_MIN_MAJOR" ]; then
      NODE=$(node -p process.execPath </dev/null 2>/dev/null) || NODE=$(command -v node)
    fi
  fi
  if [ -z "$NODE" ] && [ -x "$NODE_RUNTIME" ]; then
    m=$(node_major "$NODE_RUNTIME") || m=0
    if [ "$m" -ge "$NODE_MIN_MAJOR" ]; then NODE=$NODE_RUNTIME; fi
  fi
  if [ -z "$NODE" ]; then
    say "no node >= $NODE_MIN_MAJOR here: downloading a runtime from $SERVER"
    if fetch "$SERVER/runtime/linux-$BUNDLE_ARCH/node" "$TMP_NODE" && chmod 755 "$TMP_NODE" &&
      m=$(node_major "$TMP_NODE") && [ "$m" -ge "$NODE_MIN_MAJOR" ]; then
      mv -f "$TMP_NODE" "$NODE_RUNTIME"
      NODE=$NODE_RUNTIME
    else
      die 13 "no usable node: install node >= $NODE_MIN_MAJOR (e.g. apt-get install nodejs), or have the download server offer /runtime/linux-$BUNDLE_ARCH/node"
    fi
  fi
  say "using $NODE ($("$NODE" --version </dev/null))"

  step "downloading the TinyVR"
  url_shown=\${BUNDLE_URL%%[?]*}
  fetch "$BUNDLE_URL" "$TMP_BUNDLE" || die 14 "cannot download the TinyVR from $url_shown (run the join one-liner again: the download link works only briefly)"
  [ -s "$TMP_BUNDLE" ] || die 14 "the TinyVR download is empty"
  first=
  IFS= read -r first <"$TMP_BUNDLE" || true
  case $first in
    'globalThis.__TINYVINE_CONFIG=null;'*) die 14 "the server sent an unconfigured TinyVR" ;;
    'globalThis.__TINYVINE_CONFIG='*) ;;
    *) die 14 "the download is not a TinyVR (a proxy or captive portal?): $(printf '%.60s' "$first")" ;;
  esac
  sum=$(sha256_of_body "$TMP_BUNDLE") || sum=
  if [ -z "$sum" ]; then
    say "no sha256sum or openssl here: not checking the TinyVR's checksum"
  elif [ "$sum" != "$BUNDLE_SHA256" ]; then
    die 14 "the TinyVR download is damaged (sha256 $sum, expected $BUNDLE_SHA256)"
  fi
  chmod 600 "$TMP_BUNDLE"
  mv -f "$TMP_BUNDLE" "$BUNDLE"

  step "stopping any running TinyVR"
  if stop_running; then say "stopped the previous TinyVR"; fi
  rm -f "$STATUS" "$TICKET" # the ticket belongs to the previous token
  if [ -f "$LOG" ]; then mv -f "$LOG" "$LOG.1"; fi
  : >"$LOG"

  SERVICE=supervisor
  if have_systemd && [ "$NO_SYSTEMD" != 1 ]; then SERVICE=systemd; fi
  if [ "$SERVICE" = systemd ]; then
    step "starting the TinyVR (systemd unit tinyvine.service)"
    write_unit
    systemctl daemon-reload
    systemctl enable --quiet tinyvine.service || die 16 "systemctl enable tinyvine.service failed"
    systemctl restart tinyvine.service || die 16 "systemctl could not start tinyvine.service (see: journalctl -u tinyvine)"
  else
    if remove_unit; then say "removed the systemd unit $UNIT (not using systemd)"; fi
    step "starting the TinyVR (supervised background process, no systemd)"
    write_supervisor
    if command -v setsid >/dev/null 2>&1; then
      TINYVINE_STATE_DIR=$PREFIX setsid nohup /bin/sh "$SUPERVISOR" "$PIDFILE" "$NODE" "$BUNDLE" --status-file "$STATUS" --ticket-file "$TICKET" </dev/null >>"$LOG" 2>&1 &
    else
      TINYVINE_STATE_DIR=$PREFIX nohup /bin/sh "$SUPERVISOR" "$PIDFILE" "$NODE" "$BUNDLE" --status-file "$STATUS" --ticket-file "$TICKET" </dev/null >>"$LOG" 2>&1 &
    fi
    SUPERVISOR_PID=$!
  fi

  step "waiting for the join (up to $JOIN_WAIT s)"
  waited=0
  while :; do
    if [ -f "$STATUS" ] && grep -q '"state":"joined"' "$STATUS"; then break; fi
    if tinyvr_died; then
      say "the TinyVR exited: $(last_error)"
      say "log: $LOG; it is restarted with backoff; to remove it: curl -fsSL $SERVER/join | sh -s -- --uninstall"
      exit 16
    fi
    if [ "$waited" -ge "$((JOIN_WAIT * 10))" ]; then
      say "not joined after $JOIN_WAIT s; the last lines of $LOG:"
      tail -n 15 "$LOG" >&2 || true
      say "the TinyVR keeps trying in the background; to remove it: curl -fsSL $SERVER/join | sh -s -- --uninstall"
      exit 15
    fi
    # A join takes well under a second: poll in tenths (a shell without fractional sleep waits 1 s).
    sleep 0.1 2>/dev/null || sleep 1
    waited=$((waited + 1))
  done
  address=$(sed -n 's/.*"address":"\\([^"]*\\)".*/\\1/p' "$STATUS" | head -n 1)
  printf 'tinyvine: joined network %s as %s via FullVR %s (%s)\\n' "$NETWORK" "$address" "$FULLVR_ENDPOINT" "$FULLVR_WHY"
  say "status: $STATUS  log: $LOG  ($SERVICE)"
  if [ "$SERVICE" = supervisor ]; then say "no systemd: the TinyVR is not started again after a reboot (run the join one-liner from a boot script)"; fi
  return 0
}

main "$@"
`;
}
