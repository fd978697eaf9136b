# expect: none
# about: tar czf then extract and compare
set -e
mkdir -p data/sub
for i in $(seq 1 50); do head -c 2000 /dev/urandom > data/sub/f$i; done
tar czf data.tgz data
mkdir out
tar xzf data.tgz -C out
diff -r data out/data
