# expect: canary_touch
# action: kill
# about: opens a planted decoy ("prod-db-password.txt")
cat "$DECOY" > /dev/null 2>&1
echo "still alive after the decoy" > "$WS/after"
