# expect: namespace_escape
# action: kill
# about: unshare -U -r: a user namespace to become root inside
unshare -U -r id > /dev/null 2>&1
echo alive > "$WS/after"
