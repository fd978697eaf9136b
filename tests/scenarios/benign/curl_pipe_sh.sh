# expect: none
# about: curl | sh from a loopback web server, the installer's output piped on (not a reverse shell)
set -e
mkdir -p site
printf 'echo installing\necho done\n' > site/install.sh
"$PY" -m http.server 0 --bind 127.0.0.1 --directory site > http.log 2>&1 &
srv=$!
for _ in $(seq 50); do
  port=$(sed -n 's/.*port \([0-9]*\).*/\1/p' http.log | head -1)
  [ -n "$port" ] && break
  sleep 0.1
done
curl -s "http://127.0.0.1:$port/install.sh" | sh | cat
kill $srv
