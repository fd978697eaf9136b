# expect: none
# about: a local HTTP server on loopback and curl against it (dev server + tests)
set -e
echo hello > index.html
"$PY" -m http.server 0 --bind 127.0.0.1 > server.log 2>&1 &
srv=$!
for i in $(seq 1 50); do
  port=$(sed -n 's/.*port \([0-9]*\).*/\1/p' server.log | head -1)
  [ -n "$port" ] && break
  sleep 0.1
done
curl -s "http://127.0.0.1:$port/index.html" > /dev/null
kill $srv
wait $srv 2>/dev/null || true
