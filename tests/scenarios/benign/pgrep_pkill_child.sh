# expect: none
# about: starts a background child, finds it with pgrep, stops it with pkill -f
sleep 97 &
child=$!
pgrep -f "sleep 97" > /dev/null
pgrep -x sleep > /dev/null
# under srt (even without agentwatch) procps 4's pkill reports no match here (it signals
# through pidfds; srt's seccomp filter is the likely cause): kill the child directly then
pkill -f "sleep 97" || kill $child
wait $child 2>/dev/null
sleep 96 &
kill -TERM $! ; wait 2>/dev/null
exit 0
