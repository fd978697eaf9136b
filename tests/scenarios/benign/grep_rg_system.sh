# expect: none
# about: grep -r and rg over parts of /etc and /usr/share (bounded), as an agent searching docs
timeout 20 grep -rIl 'localhost' /etc/hosts /etc/ssl/openssl.cnf /etc/apt /etc/default 2> /dev/null > /dev/null
timeout 20 grep -rI -m1 'GNU' /usr/share/doc/bash /usr/share/doc/coreutils 2> /dev/null > /dev/null
timeout 20 rg -l --max-depth 2 'License' /usr/share/doc /usr/share/common-licenses 2> /dev/null > /dev/null
exit 0
