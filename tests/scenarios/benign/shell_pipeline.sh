# expect: none
# about: log analysis with sort, uniq, cut, xargs and a Python one-liner
set -e
for i in $(seq 1 300); do echo "host$((i % 7)) GET /p$((i % 13)) $((i * 37 % 500))"; done > access.log
cut -d' ' -f1 access.log | sort | uniq -c | sort -rn > hosts.txt
awk '{s += $3} END {print s}' access.log > total.txt
ls | xargs -n1 wc -l > /dev/null
"$PY" -c 'import json,sys; json.dump({"n": 300}, open("stats.json", "w"))'
