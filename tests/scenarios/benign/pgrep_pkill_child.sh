# expect: none
# about: starts a background child, finds it with pgrep, stops it with pkill -f
sleep 97 &
child=$!
pgrep -f "sleep 97" > /dev/null
pgrep -x sleep > /dev/null
pkill -f "sleep 97"
wait $child 2>/dev/null
sleep 96 &
kill -TERM $! ; wait 2>/dev/null
exit 0
