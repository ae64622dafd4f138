"""The POSIX sh scripts that run on the device (or in a rootfs), one ssh call each.

Nothing but standard tools runs there: sh, mkdir, mv, ln, readlink, rm, chmod, stat, df,
du, find, awk, sha256sum (and timeout when present).  Each script answers with lines
``KEYWORD value...`` on stdout that :mod:`.single_host` parses, and exit codes:

0 ok, 3 verification failed (bad files named and removed from staging), 4 health check
failed and the previous version was switched back, 5 no space left, 10+ other errors
(the ``ERROR`` line says what).

Layout under ROOT (see docs/deploy.md)::

    bundles/NAME/VERSION/        verified, read-only
    bundles/NAME/.VERSION.sha256 the checksums it was verified against
    active/NAME -> ../bundles/NAME/VERSION
    staging/NAME/VERSION/        uploads in progress (rsync partials in .rsync-partial/)
    staging/NAME/.VERSION.sha256 expected checksums of the upload
    state/NAME.history           activation history, one version a line, last = active
"""
import shlex
from typing import Iterable, Optional

RC_OK = 0
RC_VERIFY = 3
RC_HEALTH = 4
RC_NOSPACE = 5

# Shared prologue: variables, helpers.  `trap '' HUP PIPE` keeps a mutating script running
# to its end when a flaky link drops mid-call, so a switch is never left half-done.
_PROLOGUE = r"""
set -u
trap '' HUP PIPE
umask 022
LC_ALL=C; export LC_ALL
# a relative --root is relative to the login directory (the remote home); make it absolute
# because checks run after cd
case "$R" in /*) ;; *) R="$(pwd -P)/$R" ;; esac
B="$R/bundles/$N"; A="$R/active"; ST="$R/state"; H="$ST/$N.history"
say() { printf '%s\n' "$*"; }
die() { printf 'ERROR %s\n' "$1"; exit "${2:-10}"; }
nospace() { case "$1" in *"No space left"*) die "No space left on device under $R" 5;; esac; }
active_target() { readlink "$A/$N" 2>/dev/null || true; }
# one deploy/rollback of NAME at a time on this device; a lock older than 10 minutes is stale
take_lock() {
  LOCK="$ST/$N.lock"; n=0
  while ! mkdir "$LOCK" 2>/dev/null; do
    if [ -n "$(find "$LOCK" -maxdepth 0 -mmin +10 2>/dev/null)" ]; then rmdir "$LOCK" 2>/dev/null; continue; fi
    n=$((n + 1)); [ $n -gt 60 ] && die "another deploy of $N holds $LOCK" 12
    sleep 1
  done
}
# swap TARGET: point active/NAME at TARGET atomically (new link under a temp name, rename over)
swap() {
  tmp="$A/.$N.tmp.$$"
  rm -f "$tmp"
  ln -s "$1" "$tmp" || die "cannot create a symlink in $A"
  if mv -T "$tmp" "$A/$N" 2>/dev/null; then :
  elif command -v python3 >/dev/null 2>&1 && python3 -c 'import os,sys; os.replace(sys.argv[1], sys.argv[2])' "$tmp" "$A/$N" 2>/dev/null; then :
  else rm -f "$tmp"; ln -sfn "$1" "$A/$N" || die "cannot switch $A/$N"
  fi
}
fsize() { stat -c %s "$1" 2>/dev/null || wc -c < "$1" | tr -d ' '; }
rmtree() { [ -e "$1" ] || [ -L "$1" ] || return 0; chmod -R u+w "$1" 2>/dev/null; rm -rf "$1"; }
# run_sums DIR SUMSFILE: sha256sum -c in DIR; prints FAILED lines as "BAD path sha256"
run_sums() {
  out="$ST/.$N.check.$$"
  ( cd "$1" && sha256sum -c "$2" ) > "$out" 2>&1
  rc=$?
  if [ $rc -ne 0 ]; then
    grep -v ': OK$' "$out" | while IFS= read -r line; do
      case "$line" in
        sha256sum:*) ;;
        *": FAILED open"*) say "BAD ${line%%: FAILED*} missing" ;;
        *": FAILED"*) say "BAD ${line%%: FAILED*} sha256" ;;
        *) say "CHECKMSG $line" ;;
      esac
    done
  fi
  rm -f "$out"
  return $rc
}
"""


# Seconds the on_rollback command of finalize may take (systemctl restart waits for the stop).
ROLLBACK_TIMEOUT = 120

# run_limited SECS CMD: sh -c CMD, killed after SECS (with timeout(1) when it works, else a watchdog)
_FINALIZE_HELPERS = r"""
run_limited() {
  if command -v timeout >/dev/null 2>&1 && timeout -k 1 5 true >/dev/null 2>&1; then
    timeout -k 5 "$1" sh -c "$2"; return $?
  fi
  sh -c "$2" & hp=$!
  ( sleep "$1"; kill -TERM $hp; sleep 5; kill -KILL $hp ) >/dev/null 2>&1 & wp=$!
  wait $hp; hrc=$?
  kill $wp 2>/dev/null
  return $hrc
}
# after_rollback VERSION: finalize's on_rollback command (ONRB), VERSION = what is active again
after_rollback() {
  rlog="$ST/$N.rollback.log"
  ( JETSON_DEPLOY_PREVIOUS="$1"; export JETSON_DEPLOY_PREVIOUS; run_limited "$RBT" "$ONRB" ) > "$rlog" 2>&1 < /dev/null
  say "AFTER_ROLLBACK $?"
  tail -n 5 "$rlog" | while IFS= read -r l; do say "AFTER_ROLLBACK_LOG $l"; done
}
"""


def _whole(script: str) -> str:
    """Wrap a script in a function called on its last line: ``sh -s`` reads stdin as it goes, so
    a link dropping mid-send would otherwise run the first half of a script. Now the shell parses
    the whole body before anything runs, or runs nothing."""
    return "jd_main() {\n" + script + "\n}\njd_main\n"


def _vars(**values: "Optional[str]") -> str:
    return "".join("{}={}\n".format(k, shlex.quote(v if v is not None else "")) for k, v in values.items())


def _heredoc(path_var: str, body: str, redirect: str = "") -> str:
    # The body holds hex digests, sizes and validated relative paths only.
    return 'cat > "{}"{} <<\'JD_EOF\'\n{}JD_EOF\n'.format(path_var, redirect, body)


def prepare(root: str, name: str, version: str, sums_text: str) -> str:
    """Inspect the device and make staging ready; writes the expected checksums there."""
    return _whole(_vars(R=root, N=name, V=version) + _PROLOGUE + r"""
S="$R/staging/$N/$V"; SUMS="$R/staging/$N/.$V.sha256"
for t in sha256sum rsync stat df timeout python3; do
  command -v "$t" >/dev/null 2>&1 && say "HAVE $t"
done
err=$(mkdir -p "$S" "$B" "$A" "$ST" 2>&1) || { nospace "$err"; die "cannot create directories under $R: $err" 11; }
[ -w "$R/staging/$N" ] && [ -w "$B" ] && [ -w "$A" ] || die "no write permission under $R" 11
# stale uploads of other versions of this bundle
for d in "$R/staging/$N"/* "$R/staging/$N"/.*.sha256; do
  [ -e "$d" ] || [ -L "$d" ] || continue
  case "$d" in "$S"|"$SUMS") continue ;; esac
  rmtree "$d" && say "CLEANED ${d##*/}"
done
t=$(active_target); say "ACTIVE ${t##*/}"
for d in "$B"/*; do [ -d "$d" ] && say "INSTALLED ${d##*/}"; done
if [ -f "$H" ]; then while IFS= read -r l; do [ -n "$l" ] && say "HIST $l"; done < "$H"; fi
E="$ST/.$N.err.$$"
""" + _heredoc("$SUMS.tmp", sums_text, ' 2>"$E"') + r"""if [ $? -ne 0 ]; then err=$(cat "$E"); rm -f "$E" "$SUMS.tmp"; nospace "$err"; die "cannot write $SUMS: $err" 11; fi
rm -f "$E"
mv -f "$SUMS.tmp" "$SUMS" || die "cannot write $SUMS"
if [ -d "$B/$V" ]; then
  if run_sums "$B/$V" "$SUMS" >/dev/null; then
    say "TARGET ok"
    if [ "$(active_target)" = "../bundles/$N/$V" ]; then
      # already active and verified: nothing will be uploaded, leave no staging behind
      rmtree "$S"; rm -f "$SUMS"; rmdir "$R/staging/$N" 2>/dev/null
    fi
  else
    say "TARGET bad"
  fi
else
  say "TARGET absent"
fi
( cd "$S" && find . -type f ) 2>/dev/null | while IFS= read -r f; do
  f=${f#./}; say "STAGED $(fsize "$S/$f") $f"
done
say "DF $(df -Pk "$R" 2>/dev/null | awk 'NR==2 {print $4}')"
say "PREPARED"
""")


def finalize(root: str, name: str, version: str, mode: str, sizes_text: str, prune: "Iterable[str]",
             health_cmd: "Optional[str]", health_timeout: float, on_rollback: "Optional[str]" = None) -> str:
    """Verify staging (mode 'upload'), install, switch, health-check, prune.

    ``on_rollback``: shell run on the device right after a failed health check switched back
    (``JETSON_DEPLOY_PREVIOUS`` = the version switched back to, empty when none), here rather
    than in a later call so that it happens even when the link drops; it answers
    ``AFTER_ROLLBACK rc`` and may take ``ROLLBACK_TIMEOUT`` seconds."""
    return _whole(_vars(R=root, N=name, V=version, MODE=mode, HEALTH=health_cmd or "",
                 HT=str(max(1, int(round(health_timeout)))), PRUNE=" ".join(prune), ONRB=on_rollback or "",
                 RBT=str(ROLLBACK_TIMEOUT)) + _PROLOGUE + _FINALIZE_HELPERS + r"""
S="$R/staging/$N/$V"; SUMS="$R/staging/$N/.$V.sha256"; SIZES="$ST/.$N.sizes.$$"
mkdir -p "$ST" || die "cannot create $ST"
take_lock
trap 'rm -f "$SIZES" "$SIZES.bad" "$SIZES.paths" "$H.bak.$$"; rmdir "$LOCK" 2>/dev/null' EXIT
[ -f "$SUMS" ] || die "expected checksums $SUMS are missing; run deploy again" 12
if [ "$MODE" = upload ]; then
  [ -d "$S" ] || die "staging directory $S is missing; run deploy again" 12
""" + _heredoc("$SIZES", sizes_text) + r"""  rmtree "$S/.rsync-partial"
  bad=0
  while read -r size rel; do
    f="$S/$rel"
    if [ ! -f "$f" ] || [ -L "$f" ]; then say "BAD $rel missing"; bad=1; continue; fi
    got=$(fsize "$f")
    if [ "$got" != "$size" ]; then say "BAD $rel size $got expected $size"; rm -f "$f"; bad=1; fi
  done < "$SIZES"
  [ $bad -eq 0 ] || exit 3
  if ! run_sums "$S" "$SUMS" > "$SIZES.bad"; then
    cat "$SIZES.bad"
    grep '^BAD ' "$SIZES.bad" | while read -r _ rel _; do rm -f "$S/$rel"; done
    rm -f "$SIZES.bad"; exit 3
  fi
  rm -f "$SIZES.bad"
  # files nobody listed (a stray or tampered extra) never reach bundles/
  awk '{ print $2 }' "$SIZES" > "$SIZES.paths"
  ( cd "$S" && find . ! -type d ) | while IFS= read -r f; do
    f=${f#./}
    grep -qxF -- "$f" "$SIZES.paths" || { rm -f "$S/$f"; say "EXTRA $f"; }
  done
  rm -f "$SIZES.paths"
  say "VERIFIED"
  inc="$B/.$V.incoming"
  rmtree "$inc"
  err=$(mv "$S" "$inc" 2>&1) || { nospace "$err"; die "cannot move $S into $B: $err" 13; }
  chmod -R a-w "$inc"
  old=""
  if [ -e "$B/$V" ]; then old="$B/.$V.old.$$"; mv "$B/$V" "$old" || die "cannot replace $B/$V"; fi
  mv "$inc" "$B/$V" || die "cannot install $B/$V"
  mv -f "$SUMS" "$B/.$V.sha256" || die "cannot store checksums in $B"
  [ -n "$old" ] && rmtree "$old"
  say "INSTALLED_NEW"
else
  [ -d "$B/$V" ] || die "$B/$V vanished; run deploy again" 12
  mv -f "$SUMS" "$B/.$V.sha256"
  rmtree "$S"
fi
rmdir "$R/staging/$N" 2>/dev/null
prev=$(active_target)
new="../bundles/$N/$V"
[ -f "$H" ] && cp "$H" "$H.bak.$$"
if [ "$prev" != "$new" ]; then
  swap "$new"
  last=$(tail -n 1 "$H" 2>/dev/null || true)
  if [ "$last" != "$V" ]; then
    { [ -f "$H" ] && tail -n 99 "$H"; say "$V"; } > "$H.tmp.$$" && mv -f "$H.tmp.$$" "$H"
  fi
fi
say "SWITCHED ${prev##*/}"
if [ -n "$HEALTH" ]; then
  log="$ST/$N.health.log"
  (
    cd "$A/$N" || exit 125
    JETSON_DEPLOY_ROOT="$R"; JETSON_DEPLOY_NAME="$N"; JETSON_DEPLOY_VERSION="$V"; JETSON_DEPLOY_ACTIVE="$A/$N"
    export JETSON_DEPLOY_ROOT JETSON_DEPLOY_NAME JETSON_DEPLOY_VERSION JETSON_DEPLOY_ACTIVE
    run_limited "$HT" "$HEALTH"
  ) > "$log" 2>&1 < /dev/null
  hrc=$?
  if [ $hrc -ne 0 ]; then
    if [ -n "$prev" ]; then swap "$prev"; else rm -f "$A/$N"; fi
    if [ -f "$H.bak.$$" ]; then mv -f "$H.bak.$$" "$H"; else rm -f "$H"; fi
    say "HEALTH_FAILED $hrc"
    tail -n 20 "$log" | while IFS= read -r l; do say "HEALTH_LOG $l"; done
    [ -n "$ONRB" ] && after_rollback "${prev##*/}"
    exit 4
  fi
  say "HEALTH_OK"
fi
for v in $PRUNE; do
  [ "$v" = "$V" ] && continue
  t=$(active_target); [ "${t##*/}" = "$v" ] && continue
  [ "${prev##*/}" = "$v" ] && continue
  [ -d "$B/$v" ] || continue
  rmtree "$B/$v"; rm -f "$B/.$v.sha256"; say "PRUNED $v"
done
say "DONE"
""")


def rollback(root: str, name: str, to: "Optional[str]" = None) -> str:
    """Switch active/NAME to the previous verified version (or to TO) and fix the history."""
    return _whole(_vars(R=root, N=name, TO=to or "") + _PROLOGUE + r"""
mkdir -p "$ST" 2>/dev/null
take_lock
trap 'rmdir "$LOCK" 2>/dev/null' EXIT
cur_t=$(active_target); cur=${cur_t##*/}
[ -n "$cur" ] || die "$N is not active under $R: nothing to roll back" 20
ok() { [ -d "$B/$1" ] && [ -f "$B/.$1.sha256" ] && run_sums "$B/$1" "$B/.$1.sha256" >/dev/null; }
target=""; keep=0
if [ -n "$TO" ]; then
  [ "$TO" = "$cur" ] && { say "UNCHANGED $cur"; exit 0; }
  [ -d "$B/$TO" ] || die "version $TO of $N is not installed under $R" 21
  ok "$TO" || die "version $TO of $N under $R fails its checksums; deploy it again" 22
  target=$TO
else
  total=0; [ -f "$H" ] && total=$(wc -l < "$H")
  i=0
  while [ $i -lt $total ]; do
    line=$(tail -n $((i + 1)) "$H" | head -n 1)
    i=$((i + 1))
    [ -z "$line" ] && continue
    [ "$line" = "$cur" ] && continue
    if ok "$line"; then target=$line; keep=$((total - i + 1)); break; fi
    say "SKIPPED $line"
  done
  [ -n "$target" ] || die "no previous verified version of $N under $R to roll back to" 21
fi
swap "../bundles/$N/$target"
if [ -n "$TO" ]; then
  { [ -f "$H" ] && tail -n 99 "$H"; say "$TO"; } > "$H.tmp.$$" && mv -f "$H.tmp.$$" "$H"
else
  head -n $keep "$H" > "$H.tmp.$$" && mv -f "$H.tmp.$$" "$H"
fi
say "ROLLED_BACK $cur $target"
""")


def free_space(root: str) -> str:
    """Free KiB under ROOT (df -Pk), for diagnosing a failed upload."""
    return _whole(_vars(R=root) + r"""
say() { printf '%s\n' "$*"; }
say "DF $(df -Pk "$R" 2>/dev/null | awk 'NR==2 {print $4}')"
""")


def status(root: str, name: "Optional[str]" = None, verify: bool = False) -> str:
    """List bundles, versions, active version, history and leftover uploads."""
    return _whole(_vars(R=root, ONLY=name or "", VERIFY="1" if verify else "") + r"""
set -u
LC_ALL=C; export LC_ALL
case "$R" in /*) ;; *) R="$(pwd -P)/$R" ;; esac
say() { printf '%s\n' "$*"; }
[ -d "$R" ] || { say "NOROOT"; exit 0; }
for nd in "$R/bundles"/*; do
  [ -d "$nd" ] || continue
  n=${nd##*/}
  [ -n "$ONLY" ] && [ "$ONLY" != "$n" ] && continue
  say "NAME $n"
  for d in "$nd"/*; do [ -d "$d" ] && say "VERSION $n ${d##*/}"; done
  t=$(readlink "$R/active/$n" 2>/dev/null || true)
  [ -n "$t" ] && say "ACTIVE $n ${t##*/}"
  if [ -f "$R/state/$n.history" ]; then
    while IFS= read -r l; do [ -n "$l" ] && say "HIST $n $l"; done < "$R/state/$n.history"
  fi
  if [ -n "$VERIFY" ] && [ -n "$t" ]; then
    v=${t##*/}
    if [ -f "$nd/.$v.sha256" ] && ( cd "$R/active/$n" && sha256sum -c "$nd/.$v.sha256" ) >/dev/null 2>&1; then
      say "VERIFIED $n ok"
    else
      say "VERIFIED $n bad"
    fi
  fi
  if [ -d "$R/staging/$n" ]; then
    for s in "$R/staging/$n"/*; do [ -d "$s" ] && say "STAGING $n ${s##*/} $(du -sk "$s" | awk '{print $1}')"; done
  fi
done
say "DF $(df -Pk "$R" 2>/dev/null | awk 'NR==2 {print $4}')"
say "STATUS_DONE"
""")
