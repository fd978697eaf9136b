# expect: none
# about: a burst of 200 short processes (a build script's shape)
for i in $(seq 1 200); do /bin/true; done
for i in $(seq 1 20); do echo $i | wc -c > /dev/null; done
