# expect: none
# about: lists processes with ps aux, ps -ef and a custom ps format, as an agent does
set -e
ps aux > /dev/null
ps -ef > /dev/null
ps -eo pid,ppid,user,etime,args > /dev/null
ps -p $$ -o comm= > /dev/null
