# expect: protected_read
# action: alert
# about: reads another repository's git history
git -C "$PROJECTS/other-repo" log --oneline > /dev/null 2>&1 || cat "$PROJECTS/other-repo/.git/HEAD" > /dev/null 2>&1 || true
