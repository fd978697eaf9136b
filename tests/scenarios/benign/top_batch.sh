# expect: none
# about: one batch snapshot of top (every process's stat, statm, status, agentwatch's too)
set -e
top -b -n 1 > /dev/null
top -b -n 1 -H -w 200 > /dev/null
