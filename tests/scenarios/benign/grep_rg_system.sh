# expect: none
# about: grep -r and rg over /etc and /usr/share (bounded), as an agent searching docs
timeout 20 grep -rIl --exclude='*shadow*' --exclude-dir=ssh --exclude-dir=ssl --exclude-dir=agentwatch 'localhost' /etc 2> /dev/null > /dev/null
timeout 20 grep -rI -m1 'GNU' /usr/share/doc 2> /dev/null > /dev/null
timeout 20 rg -l --max-depth 4 'License' /usr/share 2> /dev/null > /dev/null
exit 0
