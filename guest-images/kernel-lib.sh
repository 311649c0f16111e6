# shellcheck shell=bash
# Shared by guest-images/build and tools/sandbox: fetches a stock Debian kernel
# package and resolves module load orders. Source it; it defines functions only.
#
# Flavours: "cloud" = linux-image-cloud-amd64, "generic" = linux-image-amd64.
# The ABI (6.1.0-NN) changes over time, so it is resolved through apt, never
# hard-coded; the extracted tree is cached under $EMBER_CACHE/kernels.

: "${EMBER_CACHE:=$HOME/.cache/ember}"

ki_log() { printf '%s\n' "$*" >&2; }
ki_die() { printf '%s: error: %s\n' "${KI_PROG:-kernel-lib}" "$*" >&2; exit 1; }

ki_meta_package() {
  case "$1" in
    cloud) echo linux-image-cloud-amd64 ;;
    generic) echo linux-image-amd64 ;;
    *) ki_die "unknown kernel flavour '$1' (use cloud or generic)" ;;
  esac
}

ki_depends_of() {
  apt-cache depends "$1" 2>/dev/null | sed -n 's/^ *Depends: \(linux-image-[^ <>]*\)$/\1/p' | head -n1
}

# Prints "PACKAGE VERSION" of the kernel image package the meta package depends on.
ki_resolve() {
  local meta pkg ver
  meta=$(ki_meta_package "$1")
  pkg=$(ki_depends_of "$meta")
  if [[ -z $pkg && $(id -u) == 0 ]]; then
    ki_log "${KI_PROG:-kernel-lib}: apt metadata missing, running apt-get update"
    apt-get update -qq >/dev/null 2>&1 || true
    pkg=$(ki_depends_of "$meta")
  fi
  if [[ -n $pkg ]]; then
    ver=$(apt-cache show --no-all-versions "$pkg" 2>/dev/null | sed -n 's/^Version: //p' | head -n1)
  fi
  if [[ -z $pkg || -z ${ver:-} ]]; then
    # Offline: fall back to the newest package of this flavour already cached.
    local cached
    cached=$(find "$EMBER_CACHE/kernels" -maxdepth 1 -type d -name 'linux-image-*-amd64_*' 2>/dev/null |
      if [[ $1 == cloud ]]; then grep -- '-cloud-amd64_'; else grep -v -- '-cloud-amd64_'; fi |
      sort -V | tail -n1 || true)
    [[ -n $cached && -f $cached/.complete ]] ||
      ki_die "cannot resolve the package behind $meta (apt-cache depends $meta) and nothing is cached"
    cached=${cached##*/}
    pkg=${cached%%_*}
    ver=${cached#*_}
  fi
  echo "$pkg $ver"
}

# Downloads and extracts the kernel of flavour $1; prints the extracted root.
# The root holds boot/vmlinuz-REL and lib/modules/REL with a generated modules.dep.
ki_fetch() {
  local flavour=$1 pkg ver root debdir tmp
  read -r pkg ver < <(ki_resolve "$flavour")
  root="$EMBER_CACHE/kernels/${pkg}_${ver}"
  if [[ ! -f $root/.complete ]]; then
    debdir="$EMBER_CACHE/debs"
    mkdir -p "$debdir" "$EMBER_CACHE/kernels"
    local deb
    deb=$(find "$debdir" -maxdepth 1 -name "${pkg}_${ver//:/%3a}_*.deb" | head -n1)
    if [[ -z $deb ]]; then
      ki_log "${KI_PROG:-kernel-lib}: downloading $pkg $ver"
      tmp=$(mktemp -d "$debdir/.dl.XXXXXX")
      # apt-get download writes into the current directory.
      if ! (cd "$tmp" && apt-get download -q "$pkg=$ver" >/dev/null 2>"$tmp/err"); then
        cat "$tmp/err" >&2
        rm -rf "$tmp"
        ki_die "apt-get download $pkg=$ver failed"
      fi
      deb=$(find "$tmp" -maxdepth 1 -name '*.deb' | head -n1)
      [[ -n $deb ]] || ki_die "apt-get download $pkg=$ver produced no .deb"
      mv "$deb" "$debdir/"
      deb="$debdir/${deb##*/}"
      rm -rf "$tmp"
    fi
    ki_log "${KI_PROG:-kernel-lib}: extracting ${deb##*/}"
    rm -rf "$root" "$root.tmp"
    mkdir -p "$root.tmp"
    dpkg -x "$deb" "$root.tmp"
    local rel
    rel=$(ki_release_in "$root.tmp")
    # Debian generates modules.dep at install time; generate it here so that
    # modprobe --show-depends can resolve load orders offline.
    depmod -b "$root.tmp" "$rel"
    touch "$root.tmp/.complete"
    mv "$root.tmp" "$root"
  fi
  echo "$root"
}

# Prints the kernel release (e.g. 6.1.0-56-cloud-amd64) of an extracted root.
ki_release_in() {
  local d
  d=$(find "$1/lib/modules" -mindepth 1 -maxdepth 1 -type d | head -n1)
  [[ -n $d ]] || ki_die "no lib/modules in $1"
  echo "${d##*/}"
}

# Prints the module files (absolute paths, load order, deduplicated) needed to
# load each named module; built-in modules print nothing. Fails on unknown names.
ki_module_files() {
  local root=$1 rel=$2; shift 2
  local m line seen=" "
  for m in "$@"; do
    local out
    out=$(modprobe -d "$root" -S "$rel" --show-depends "$m" 2>&1) ||
      ki_die "module $m not found in $rel: $out"
    while read -r line; do
      case $line in
        insmod\ *)
          line=${line#insmod }
          line=${line%% *}
          case $seen in *" $line "*) ;; *) seen+="$line "; echo "$line" ;; esac
          ;;
      esac
    done <<<"$out"
  done
}

# Copies module files into DIR as plain .ko (decompressing .ko.xz / .ko.zst so
# that BusyBox insmod needs no decompressor) and prints their base names in order.
ki_stage_modules() {
  local dir=$1; shift
  mkdir -p "$dir"
  local f base
  for f in "$@"; do
    base=${f##*/}
    case $f in
      *.ko.xz) base=${base%.xz}; xz -dc "$f" >"$dir/$base" ;;
      *.ko.zst) base=${base%.zst}; zstd -q -dc "$f" >"$dir/$base" ;;
      *.ko.gz) base=${base%.gz}; gzip -dc "$f" >"$dir/$base" ;;
      *.ko) cp "$f" "$dir/$base" ;;
      *) ki_die "unexpected module file $f" ;;
    esac
    echo "$base"
  done
}

# Populates DIR with a static BusyBox and its applet links.
ki_stage_busybox() {
  local dir=$1 bb
  bb=$(command -v busybox) || ki_die "busybox not found (install busybox-static)"
  mkdir -p "$dir/bin" "$dir/sbin" "$dir/usr/bin" "$dir/usr/sbin" "$dir/dev" "$dir/proc" \
    "$dir/sys" "$dir/tmp" "$dir/mnt" "$dir/etc" "$dir/root"
  cp "$bb" "$dir/bin/busybox"
  local a
  for a in $("$bb" --list); do
    [[ $a == busybox ]] || ln -sf busybox "$dir/bin/$a"
  done
}

# Packs DIR into a gzip-compressed newc cpio at OUT, owned by root.
ki_pack_cpio() {
  local dir=$1 out=$2
  (cd "$dir" && find . -print0 | LC_ALL=C sort -z |
    cpio --null -o -H newc -R 0:0 --quiet) | gzip -6 -n >"$out.tmp"
  mv "$out.tmp" "$out"
}

# Prints a hash of the given files' contents and base names (cache keys).
ki_hash_files() {
  local f
  for f in "$@"; do
    printf '%s\n' "${f##*/}"
    sha256sum <"$f"
  done | sha256sum | cut -c1-16
}
