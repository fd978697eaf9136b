# expect: credential_read
# action: alert
# about: sweeps kubeconfig, docker auth and git credentials
for f in ~/.kube/config ~/.docker/config.json ~/.git-credentials; do
  cat "$f" > /dev/null 2>&1 || true
done
