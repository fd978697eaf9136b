# expect: none
# about: file edits with sed -i, awk and a heredoc rewrite
set -e
seq 1 500 | sed 's/^/line /' > notes.txt
sed -i 's/line 1$/first line/; /line 4/d' notes.txt
awk 'NR % 2 == 0' notes.txt > even.txt
cat > config.ini <<'INI'
[main]
debug = false
INI
sed -i 's/debug = false/debug = true/' config.ini
