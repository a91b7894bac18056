#!/usr/bin/env bash
# [ONLY=stem,...] device_prepare.sh CHAPTER: everything a chapter's `gpu` run on the remote GPU machine carries,
# in the git-ignored .device/ folder, and the commands to give the device tool (DESIGN.md, "GPU runs
# from a remote machine"). Nothing here touches the GPU.
#
#   .device/clean/            the committed tree (git archive HEAD): results name exactly this commit
#   .device/nb.tar.xz         papermill + an IPython kernel + gguf for Python 3.12 (about 3 MB)
#   .device/numba-nb.tar.xz   the same plus numba and llvmlite (about 47 MB; swarmthinkers)
#   .device/p0, .device/p1    the model lab's corpus and SmolLM2 GGUF in two parts (bitdecoding)
#
# The machine keeps /tmp only about 30 s after a run: give the runs one right after another.
set -euo pipefail
chapter=${1:?usage: tools/device_prepare.sh CHAPTER}
root=$(git rev-parse --show-toplevel)
cd "$root"
mkdir -p .device
exclude=$(git rev-parse --git-path info/exclude)  # .git is a file in a worktree
grep -qxF '/.device/' "$exclude" 2>/dev/null || echo '/.device/' >> "$exclude"
[[ -z $(git status --porcelain --untracked-files=no) ]] || echo "note: uncommitted changes are NOT in the export" >&2

rm -rf .device/clean && mkdir -p .device/clean && git archive HEAD | tar -x -C .device/clean
commit=$(git rev-parse HEAD)

bundle() {  # bundle NAME PACKAGES...: cp312 wheels unpacked into one xz tar
  local out=.device/$1; shift
  [[ -f $out ]] && return
  local tmp; tmp=$(mktemp -d)
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform manylinux1_x86_64 --platform any -d "$tmp/w" "$@"
  mkdir -p "$tmp/site"
  for w in "$tmp"/w/*.whl; do python3 -m zipfile -e "$w" "$tmp/site"; done
  tar -C "$tmp/site" -cf - . | xz -6 -T0 > "$out"
  rm -rf "$tmp"
}
nb=(papermill nbclient nbformat ipykernel ipython ipython_pygments_lexers jupyter_client jupyter_core traitlets
    tornado pyzmq comm matplotlib_inline nest_asyncio2 entrypoints tenacity fastjsonschema jsonschema
    jsonschema_specifications referencing rpds_py platformdirs prompt_toolkit wcwidth pexpect ptyprocess
    stack_data executing asttokens pure_eval parso gguf)
run="cd .device/clean && export PYTHONPATH=/tmp/site:\$PYTHONPATH PYTHONUNBUFFERED=1"
run+=" && python3 -m pip install -q --no-deps --no-build-isolation -e . ;"
only=${ONLY:+ --only $ONLY}  # ONLY=02-gpu-speed tools/device_prepare.sh swarmthinkers: rerun one notebook
if [[ -n ${ONLY:-} ]]; then  # start from the committed gpu results (in the export), so the others are kept;
  # every device's folder goes along: the runner seeds from the one of the device it finds there
  run+=" mkdir -p /tmp/res/$chapter && cp -r data/results/$chapter/gpu /tmp/res/$chapter/ ;"
fi
run+=" MSRBOOK_RESULTS=/tmp/res MSRBOOK_COMMIT=$commit MSRBOOK_DIRTY=0 timeout 560 python3 -m msrbook.pipeline.cli reproduce $chapter --profile gpu$only;"
# only the folder of the device that ran comes back (results are kept per device: DESIGN.md)
run+=" rc=\$?; dev=\$(python3 -m msrbook.pipeline.cli device); echo \"device folder: gpu/\$dev\";"
run+=" tar czf \$OUT/res.tgz /tmp/res/$chapter/gpu/\$dev _build/executed; exit \$rc"

case $chapter in
  bitdecoding)
    bundle nb.tar.xz "${nb[@]}"
    make -s data >/dev/null
    tar -C .cache -cf .device/cache.tar corpora smollm2
    sum=$(sha256sum .device/cache.tar | cut -c1-64)
    rm -rf .device/p0 .device/p1 && mkdir -p .device/p0 .device/p1
    split -b 60M -d -a 1 .device/cache.tar .device/cache.tar.
    mv .device/cache.tar.0 .device/p0/ && mv .device/cache.tar.1 .device/p1/ && rm .device/cache.tar
    echo "run 1: carry [\".device/p0\"]; command: mkdir -p /tmp/big && cp .device/p0/cache.tar.0 /tmp/big/"
    echo "run 2: carry [\".device/p1\", \".device/nb.tar.xz\", \".device/clean\"]; command:"
    echo "  test -f /tmp/big/cache.tar.0 || exit 3; cp .device/p1/cache.tar.1 /tmp/big/ && cat /tmp/big/cache.tar.? > /tmp/big/cache.tar && echo '$sum  /tmp/big/cache.tar' | sha256sum -c - && mkdir -p /tmp/cache /tmp/site && tar -C /tmp/cache -xf /tmp/big/cache.tar && tar -C /tmp/site -xJf .device/nb.tar.xz && export MSRBOOK_CACHE=/tmp/cache && $run"
    ;;
  swarmthinkers)
    bundle numba-nb.tar.xz "${nb[@]}" numba==0.68.1 llvmlite==0.50.0
    echo "run: carry [\".device/numba-nb.tar.xz\", \".device/clean\"]; command:"
    echo "  mkdir -p /tmp/site && tar -C /tmp/site -xJf .device/numba-nb.tar.xz && $run"
    ;;
  decode-roofline)
    echo "decode-roofline needs TileLang: build .device/site.tar.xz with ../shared/tools/device-bundle (from an empty git repository) and carry it instead of nb.tar.xz" >&2
    echo "run: carry [\".device/site.tar.xz\", \".device/clean\"]; command:"
    echo "  mkdir -p /tmp/site && tar -C /tmp/site -xJf .device/site.tar.xz && $run"
    ;;
  *)
    bundle nb.tar.xz "${nb[@]}"
    echo "run: carry [\".device/nb.tar.xz\", \".device/clean\"]; command:"
    echo "  mkdir -p /tmp/site && tar -C /tmp/site -xJf .device/nb.tar.xz && $run"
    ;;
esac
got=/tmp/got/tmp/res/$chapter/gpu
echo "then (replaces only the folder of the device that ran; the other devices' results stay):"
echo "  rm -rf /tmp/got && mkdir -p /tmp/got && tar -xzf <files_at>/res.tgz -C /tmp/got && d=\$(ls $got) && rm -rf data/results/$chapter/gpu/\$d && mkdir -p data/results/$chapter/gpu && cp -r $got/\$d data/results/$chapter/gpu/"
echo "  and commit data/results/$chapter/gpu/<device> with the device and commit $commit in the message"
