# expect: fileless_exec
# action: kill
# about: drops a binary in /dev/shm and runs it
cp /bin/true /dev/shm/.x
/dev/shm/.x
rm -f /dev/shm/.x
