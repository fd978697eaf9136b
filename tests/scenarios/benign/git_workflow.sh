# expect: none
# about: git init, add, commit, log, diff, branch in the workspace
set -e
g() { git -c user.name=Agent -c user.email=agent@invalid -c init.defaultBranch=main "$@"; }
g init -q .
printf 'def add(a, b):\n    return a + b\n' > calc.py
g add calc.py
g commit -q -m "add calc"
sed -i 's/a + b/b + a/' calc.py
g diff > /dev/null
g commit -q -am "commute"
g log --oneline > /dev/null
g checkout -q -b feature
g status --short > /dev/null
