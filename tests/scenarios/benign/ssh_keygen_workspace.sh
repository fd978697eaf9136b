# expect: none
# about: ssh-keygen -f in the workspace, then the key read back (cat, ssh-keygen -y, a script)
set -e
mkdir -p keys
ssh-keygen -q -t ed25519 -N '' -C corpus -f ./keys/id_ed25519
ssh-keygen -q -t rsa -b 2048 -N '' -C corpus -f ./deploy_key
cat ./keys/id_ed25519 > /dev/null
ssh-keygen -y -f ./keys/id_ed25519 > /dev/null
"$PY" -c 'open("deploy_key").read(); open("keys/id_ed25519.pub").read()'
mv ./deploy_key ./keys/deploy_key
cat ./keys/deploy_key > /dev/null
