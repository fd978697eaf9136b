# expect: none
# about: the agent reads its own /proc/self (status, maps, environ, fds, cwd, exe)
set -e
cat /proc/self/status /proc/self/maps > /dev/null
tr '\0' '\n' < /proc/self/environ > /dev/null
ls -l /proc/self/fd/ > /dev/null
readlink /proc/self/cwd /proc/self/exe > /dev/null
"$PY" -c 'import os; os.listdir("/proc/self/fd"); open("/proc/self/cmdline").read()'
ls /proc/$$/fd > /dev/null
