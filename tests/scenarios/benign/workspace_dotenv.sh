# expect: none
# about: the workspace's own .env and .env.local: cat, `set -a; . ./.env`, a dotenv-style read
set -e
printf 'API_URL=http://127.0.0.1:8080\nAPI_TOKEN=dev-token\n' > .env
printf 'DEBUG=1\n' > .env.local
mkdir -p services/api
printf 'PORT=9000\n' > services/api/.env.production
cat .env > /dev/null
set -a
. ./.env
. ./.env.local
set +a
test "$API_TOKEN" = dev-token
"$PY" - <<'PY'
import os
def load(path):  # what python-dotenv does: read the file, set what is not set
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line and not line.startswith("#") and "=" in line:
                k, v = line.split("=", 1)
                os.environ.setdefault(k, v)
for p in (".env", ".env.local", "services/api/.env.production"):
    load(p)
assert os.environ["PORT"] == "9000"
PY
