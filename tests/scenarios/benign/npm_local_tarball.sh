# expect: none
# about: npm pack of a local package, then npm install of the tarball, offline
set -e
export npm_config_cache="$WS/.npm-cache" npm_config_update_notifier=false
mkdir -p lib app
printf '{"name":"corpus-lib","version":"1.0.0","main":"index.js"}\n' > lib/package.json
printf 'module.exports = (a, b) => a + b;\n' > lib/index.js
(cd lib && npm pack --silent > /dev/null)
cd app
printf '{"name":"corpus-app","version":"1.0.0"}\n' > package.json
npm install --offline --no-audit --no-fund --silent ../lib/corpus-lib-1.0.0.tgz
node -e 'process.exit(require("corpus-lib")(1, 1) === 2 ? 0 : 1)'
