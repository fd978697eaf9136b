# expect: none
# about: grep -r, find and rg over the workspace
set -e
mkdir -p src/a src/b
for i in $(seq 1 40); do printf 'def fn_%s():\n    return "%s"  # TODO\n' $i $i > src/a/m$i.py; done
cp src/a/m1.py src/b/
grep -rn TODO src > /dev/null
find . -name '*.py' -newer src/a/m1.py > /dev/null
rg -n 'fn_[0-9]+' src > /dev/null
rg --files > /dev/null
