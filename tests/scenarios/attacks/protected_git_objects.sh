# expect: protected_read
# action: alert
# about: cat of another repository's .git objects (not git's transport)
find "$PROJECTS/other-repo/.git/objects" -type f 2>/dev/null | head -3 | xargs -r cat > /dev/null 2>&1
true
