# Shared by the hack/ scripts: where the pinned binaries live and how they are built.
# shellcheck shell=bash

repo=${repo:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
cache=${PETSET_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/petset}

say() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# The Go wrapper module (under hack/tools/) that provides each binary, and its package.
tool_module() {
  case $1 in
    kube-apiserver | kube-controller-manager | kube-scheduler | kubectl) echo kube ;;
    etcd | kwok | helm) echo "$1" ;;
    *) return 1 ;;
  esac
}
tool_package() {
  case $1 in
    etcd) echo go.etcd.io/etcd/server/v3 ;;
    kwok) echo sigs.k8s.io/kwok/cmd/kwok ;;
    helm) echo helm.sh/helm/v3/cmd/helm ;;
    *) echo "k8s.io/kubernetes/cmd/$1" ;;
  esac
}

# The version a wrapper module pins for its main dependency.
pinned() { # module dependency
  awk -v dep="$2" '$1 == dep { print $2; exit } $2 == dep { print $3; exit }' "$repo/hack/tools/$1/go.mod"
}

# A build is keyed by its module's go.mod and go.sum: a new pin is a new directory.
tool_dir() {
  local module=$1 key
  key=$(cat "$repo/hack/tools/$module/go.mod" "$repo/hack/tools/$module/go.sum" | sha256sum | cut -c1-12)
  echo "$cache/$module-$key"
}

bin() {
  local module
  if [[ $1 == sim-provisioner ]]; then echo "$repo/target/debug/sim-provisioner"; return; fi
  module=$(tool_module "$1") || { echo "unknown binary $1" >&2; return 1; }
  echo "$(tool_dir "$module")/$1"
}

# Version stamps: clients read them (Helm's kubeVersion checks, kwok's flag choice).
ldflags() {
  local module=$1 v minor flags="-s -w" p
  case $module in
    kube)
      v=$(pinned kube k8s.io/kubernetes) minor=${v#v1.} minor=${minor%%.*}
      for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
        flags+=" -X $p.gitVersion=$v -X $p.gitMajor=1 -X $p.gitMinor=$minor -X $p.gitTreeState=clean"
      done ;;
    helm) flags+=" -X helm.sh/helm/v3/internal/version.version=$(pinned helm helm.sh/helm/v3)" ;;
    kwok) flags+=" -X sigs.k8s.io/kwok/pkg/consts.Version=$(pinned kwok sigs.k8s.io/kwok)" ;;
  esac
  echo "$flags"
}

build_module() { # module binary...
  local module=$1; shift
  local dir missing=() b pkgs=() start=$SECONDS
  dir=$(tool_dir "$module")
  for b in "$@"; do [[ -x $dir/$b ]] || missing+=("$b"); done
  ((${#missing[@]})) || return 0
  for b in "${missing[@]}"; do pkgs+=("$(tool_package "$b")"); done
  say "building ${missing[*]} from hack/tools/$module (cold: many minutes on 2 cores; later runs reuse $dir)"
  mkdir -p "$dir.tmp"
  (
    cd "$repo/hack/tools/$module"
    export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-mod=mod
    if ((${#pkgs[@]} == 1)); then
      go build -ldflags "$(ldflags "$module")" -o "$dir.tmp/${missing[0]}" "${pkgs[0]}"
    else
      go build -ldflags "$(ldflags "$module")" -o "$dir.tmp/" "${pkgs[@]}"
    fi
  )
  mkdir -p "$dir"
  # Several packages build into files named for their directories, which are the binary names.
  for b in "${missing[@]}"; do mv "$dir.tmp/$b" "$dir/$b"; done
  rmdir "$dir.tmp" 2>/dev/null || true
  say "built ${missing[*]} in $((SECONDS - start))s"
}

build_all() {
  command -v go >/dev/null || { echo "error: Go is needed to build the control plane (https://go.dev/dl)" >&2; exit 1; }
  build_module etcd etcd
  build_module kube kube-apiserver kube-controller-manager kube-scheduler kubectl
  build_module kwok kwok
  build_module helm helm
  local start=$SECONDS
  say "building sim-provisioner (cargo)"
  (cd "$repo" && cargo build --quiet -p sim-provisioner)
  say "built sim-provisioner in $((SECONDS - start))s"
}
