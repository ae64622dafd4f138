# Sourced by scripts/setup.sh and scripts/test_device_side.sh: virtualenvs cached outside the clone.
#
# venv_key LEG PYTHON FILE...   -> a key: sha256 of the leg, the interpreter (version and real path)
#                                  and the files that decide what is installed (setup.py, the
#                                  script with the pins); printed on stdout
# venv_current VENV KEY         -> 0 when VENV was set up with KEY and runs this clone's code:
#                                  nothing changed, the pip steps are skipped
# venv_restore VENV KEY         -> 0 when the cache has KEY: VENV becomes a copy of it (hard links,
#                                  the cache is never written through), then only this clone is
#                                  installed into it (pip install --no-deps -e .)
# venv_store VENV KEY           -> after a from-scratch build: stamp VENV and keep a copy in the cache
#
# The cache is off unless JD_VENV_CACHE names its directory (.ci/run sets it); a miss always builds
# from scratch with the script's own steps, so a missing install step fails on a fresh machine too.
# Copies are hard links on one filesystem (a plain copy otherwise); a venv's absolute paths (script
# shebangs, activate) are rewritten to the new place, its packages hold none.

_VC_STAMP=.jd-env-key

venv_key() {
  local leg=$1 py=$2; shift 2
  {
    echo "leg=$leg"
    "$py" -c 'import os, sys; print(sys.version); print(os.path.realpath(sys.executable))'
    for f in "$@"; do echo "== $f"; cat "$f"; done
  } | sha256sum | cut -c1-20
}

_vc_root() { [ -n "${JD_VENV_CACHE:-}" ] && echo "${JD_VENV_CACHE%/}"; }

_vc_runs_here() {  # the venv imports jetson_deploy from this clone (an editable install made elsewhere does not)
  local got py
  py="$(cd "$1" && pwd -P)/bin/python" || return 1
  got=$(cd / && "$py" -c 'import os, jetson_deploy; print(os.path.dirname(os.path.dirname(os.path.realpath(jetson_deploy.__file__))))' 2>/dev/null) || return 1
  [ "$got" = "$(pwd -P)" ]
}

venv_current() {
  local venv=$1 key=$2
  [ -x "$venv/bin/python" ] && [ "$(cat "$venv/$_VC_STAMP" 2>/dev/null)" = "$key" ] && _vc_runs_here "$venv"
}

venv_restore() {
  local venv=$1 key=$2 root src old new tmp
  root=$(_vc_root) || return 1
  src="$root/$key"
  [ -f "$src/$_VC_STAMP" ] || return 1
  old=$(cat "$src/.jd-env-origin")
  new="$(pwd -P)/${venv#./}"
  tmp="$venv.restore.$$"
  rm -rf "$tmp"
  cp -al "$src" "$tmp" 2>/dev/null || { rm -rf "$tmp"; cp -a "$src" "$tmp"; } || return 1
  # text files naming the old place (bin/ scripts' shebangs, activate*, pyvenv.cfg): rewritten
  # into new files (sed -i replaces the file, so the cache's hard-linked copy stays as it was)
  grep -rlIF -- "$old" "$tmp/bin" "$tmp/pyvenv.cfg" 2>/dev/null | while IFS= read -r f; do
    sed -i "s#$old#$new#g" "$f"
  done
  # files an editable install rewrites in place (old setuptools' easy-install.pth): unshared first
  find "$tmp" \( -name '*.pth' -o -name '*.egg-link' \) -type f | while IFS= read -r f; do
    cp -p "$f" "$f.unshare" && mv -f "$f.unshare" "$f"
  done
  rm -rf "$venv"
  mv "$tmp" "$venv"
  echo "$new" > "$venv/.jd-env-origin.tmp" && mv -f "$venv/.jd-env-origin.tmp" "$venv/.jd-env-origin"
  rm -f "$venv/$_VC_STAMP"
  # this clone's code, not the one the cache was built from (no dependency is touched)
  "$venv/bin/python" -m pip --disable-pip-version-check -q install --no-deps -e . || return 1
  _vc_runs_here "$venv" || return 1
  echo "$key" > "$venv/$_VC_STAMP"
}

venv_store() {
  local venv=$1 key=$2 root tmp
  rm -f "$venv/$_VC_STAMP"
  echo "$key" > "$venv/$_VC_STAMP"
  pwd -P | sed "s#\$#/${venv#./}#" > "$venv/.jd-env-origin"
  root=$(_vc_root) || return 0
  [ -f "$root/$key/$_VC_STAMP" ] && return 0
  mkdir -p "$root"
  tmp="$root/.$key.tmp.$$"
  rm -rf "$tmp"
  if cp -al "$venv" "$tmp" 2>/dev/null || { rm -rf "$tmp"; cp -a "$venv" "$tmp"; }; then
    mv -T "$tmp" "$root/$key" 2>/dev/null || rm -rf "$tmp"  # another run stored it first: keep theirs
  else
    rm -rf "$tmp"
  fi
  return 0
}
