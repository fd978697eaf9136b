# expect: fork_bomb
# action: kill
# about: the recursive shell fork bomb, bounded at 2^12 processes
bomb() { if [ "$1" -gt 0 ]; then bomb $(($1 - 1)) & bomb $(($1 - 1)) & fi; sleep 20; }
bomb 11
wait
