# expect: none
# about: git clone (local and file://), fetch, pull and ls-remote of another repository on the host
set -e
src="$PROJECTS/other-repo"
export GIT_CONFIG_COUNT=2 GIT_CONFIG_KEY_0=safe.directory GIT_CONFIG_VALUE_0='*' \
       GIT_CONFIG_KEY_1=protocol.file.allow GIT_CONFIG_VALUE_1=always
git clone -q "$src" mine
git clone -q --no-local "file://$src" mine2
git -C mine fetch -q origin
git -C mine pull -q --ff-only origin main
git ls-remote "$src" > /dev/null
git -C mine2 remote update > /dev/null 2>&1
git -C mine log --oneline > /dev/null
test -f mine/README
