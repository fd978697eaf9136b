# expect: none
# about: bash job control: background jobs, jobs, fg, wait, kill %1, disown
bash -m -c '
sleep 91 &
sleep 92 &
jobs > /dev/null
kill %1
wait %1 2>/dev/null
sleep 0.1 &
fg %3 > /dev/null
sleep 93 &
disown
kill %2
wait 2>/dev/null
pkill -f "sleep 93" || kill %3 2>/dev/null
true
'
(sleep 0.2; true) &
wait
exit 0
